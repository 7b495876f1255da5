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

  it('serves caches in several worker_threads, also after the first ones exited', async () => {
    // the runtime is process-wide: two workers at once, one after they exit, the main
    // thread, then one more
    const script = `
const { Worker } = require('worker_threads');
const { createCacheManager } = require('./index.js');
const code = \`
  const { workerData, parentPort } = require('worker_threads');
  const { createCacheManager } = require(workerData.root + '/index.js');
  (async () => {
    const m = createCacheManager({ url: workerData.url, keyPrefix: 'wt:' });
    await m.setSession('s' + workerData.i, { i: workerData.i });
    const v = await m.getSession('s' + workerData.i);
    await m.close();
    parentPort.postMessage(v);
  })();
\`;
const run = (i) => new Promise((resolve, reject) => {
  const w = new Worker(code, { eval: true, workerData: { root: process.cwd(), url: process.env.FC_URL, i } });
  w.once('message', resolve);
  w.once('error', reject);
});
(async () => {
  const out = await Promise.all([run(1), run(2)]);
  out.push(await run(3));
  const m = createCacheManager({ url: process.env.FC_URL, keyPrefix: 'wt:' });
  out.push(await m.getSession('s1'));
  await m.close();
  out.push(await run(4));
  console.log(JSON.stringify(out));
})().catch((e) => { console.error(e && e.stack || e); process.exit(3) });
`
    const r = await runNode(script, { env: { FC_URL: server.url }, deadlineMs: 15000 })
    if (r.code !== 0 || r.timedOut)
      throw new Error(`child failed (code ${r.code}, timedOut ${r.timedOut})\n${r.stderr}`)
    expect(JSON.parse(r.stdout.trim())).toEqual([{ i: 1 }, { i: 2 }, { i: 3 }, { i: 1 }, { i: 4 }])
  })

  it.each(['0', '65', 'lots', '2.5'])(`reports ${VAR}=%s on stderr and uses one worker`, async (bad) => {
    const r = await runNode(SCRIPT, { env: { FC_URL: server.url, [VAR]: bad } })
    expect(parse(r)).toEqual({ workers: 1, value: { n: 7 }, status: 'healthy' })
    expect(r.stderr).toContain(`ferrocache: ${VAR}="${bad}" is not an integer from 1 to 64; using 1`)
  })
})
