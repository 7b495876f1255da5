// The process's tokio runtime (src/runtime.rs): one worker thread by default,
// FERROCACHE_WORKER_THREADS to change it, an invalid value reported on stderr and
// ignored. A child process makes a Redis round trip, then counts the threads by name
// in /proc (Linux). Connecting to an IP address needs no blocking-pool thread (those
// would carry the same name).

import { RedisServer, startRedis } from './helpers/redis-server'
import { Run, runNode } from './helpers/child'

const VAR = 'FERROCACHE_WORKER_THREADS'

const SCRIPT = `
const fs = require('fs');
const { createCacheManager } = require('./index.js');
const names = () => fs.readdirSync('/proc/self/task').map((t) => {
  try { return fs.readFileSync('/proc/self/task/' + t + '/comm', 'utf8').trim() } catch { return '' }
});
(async () => {
  const m = createCacheManager({ url: process.env.FC_URL, keyPrefix: 'rt:' });
  await m.setSession('s', { n: 7 });
  const value = await m.getSession('s');
  const health = await m.health();
  await m.close();
  // counted once calls have run: a worker names itself when it starts
  const workers = names().filter((n) => n === 'ferrocache-io').length;
  console.log(JSON.stringify({ workers, value, status: health.status }));
})().catch((e) => { console.error(e && e.stack || e); process.exit(3) });
`

function parse(r: Run): { workers: number; value: unknown; status: string } {
  if (r.code !== 0 || r.timedOut) throw new Error(`child failed (code ${r.code}, timedOut ${r.timedOut})\n${r.stderr}`)
  return JSON.parse(r.stdout.trim().split('\n').pop() as string)
}

const linux = process.platform === 'linux' ? describe : describe.skip

linux('tokio runtime', () => {
  let server: RedisServer
  const saved = process.env[VAR]

  beforeAll(async () => {
    delete process.env[VAR] // the children below set it themselves
    server = await startRedis()
  })
  afterAll(async () => {
    if (saved !== undefined) process.env[VAR] = saved
    if (server) await server.stop()
  })

  it('has one worker thread by default, and serves Redis calls on it', async () => {
    const r = await runNode(SCRIPT, { env: { FC_URL: server.url } })
    expect(parse(r)).toEqual({ workers: 1, value: { n: 7 }, status: 'healthy' })
    expect(r.stderr).not.toContain('ferrocache:')
  })

  it(`takes the number of worker threads from ${VAR}`, async () => {
    const r = await runNode(SCRIPT, { env: { FC_URL: server.url, [VAR]: '3' } })
    expect(parse(r)).toEqual({ workers: 3, value: { n: 7 }, status: 'healthy' })
    expect(r.stderr).not.toContain('ferrocache:')
  })

  it.each(['0', '65', 'lots', '2.5'])(`reports ${VAR}=%s on stderr and uses one worker`, async (bad) => {
    const r = await runNode(SCRIPT, { env: { FC_URL: server.url, [VAR]: bad } })
    expect(parse(r)).toEqual({ workers: 1, value: { n: 7 }, status: 'healthy' })
    expect(r.stderr).toContain(`ferrocache: ${VAR}="${bad}" is not an integer from 1 to 64; using 1`)
  })
})
