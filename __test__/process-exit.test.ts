// Background work never keeps the Node process alive:
// child `node -e` scripts must exit by themselves with code 0, with or without
// close(). Also checks the error contract in a plain Node process (no Jest vm).

import { freePort, RawRedis, RedisServer, startRedis } from './helpers/redis-server'
import { Run, runNode as runChild } from './helpers/child'

const EXIT_DEADLINE_MS = 5000

/** Runs `node -e script` in the package root; kills it by pid after `deadlineMs`. */
function runNode(script: string, env: Record<string, string> = {}, deadlineMs = EXIT_DEADLINE_MS): Promise<Run> {
  return runChild(script, { env, deadlineMs })
}

function expectCleanExit(r: Run) {
  if (r.timedOut || r.code !== 0) {
    throw new Error(
      `child did not exit cleanly by itself within ${EXIT_DEADLINE_MS} ms ` +
        `(timedOut=${r.timedOut}, code=${r.code}, signal=${r.signal}, ${r.ms} ms)\nstdout: ${r.stdout}\nstderr: ${r.stderr}`,
    )
  }
  expect(r.timedOut).toBe(false)
  expect(r.code).toBe(0)
}

const PRELUDE = `
const { createCacheManager, cacheManager } = require('./index.js');
const fail = (e) => { console.error(e && e.stack || e); process.exit(3) };
`

describe('process exit', () => {
  let server: RedisServer
  let raw: RawRedis

  beforeAll(async () => {
    server = await startRedis()
    raw = new RawRedis(server.port)
    await raw.client.ping()
  })
  afterAll(async () => {
    if (raw) await raw.close()
    if (server) await server.stop()
  })

  it('(a) Redis mode, close() called: exits with 0 by itself', async () => {
    const prefix = `exit-a-${Date.now()}:`
    const r = await runNode(
      `${PRELUDE}
      (async () => {
        const m = createCacheManager({ url: process.env.FC_URL, keyPrefix: process.env.FC_PREFIX });
        await m.setSession('s', { a: 1 });
        const v = await m.getSession('s');
        await m.close();
        console.log(JSON.stringify(v));
      })().catch(fail);`,
      { FC_URL: server.url, FC_PREFIX: prefix },
    )
    expectCleanExit(r)
    expect(r.stdout.trim()).toBe('{"a":1}')
    expect(await raw.getUtf8(`${prefix}s:s`)).toBe('{"a":1}')
  })

  it('(b) Redis mode, close() NOT called: exits with 0 by itself', async () => {
    const prefix = `exit-b-${Date.now()}:`
    const r = await runNode(
      `${PRELUDE}
      (async () => {
        const m = createCacheManager({ url: process.env.FC_URL, keyPrefix: process.env.FC_PREFIX });
        await m.setSession('s', { b: 2 });
        await m.cacheQueryResult('q', [1]);
        console.log(JSON.stringify([await m.getSession('s'), await m.getCachedQuery('q')]));
      })().catch(fail);`,
      { FC_URL: server.url, FC_PREFIX: prefix },
    )
    expectCleanExit(r)
    expect(r.stdout.trim()).toBe('[{"b":2},[1]]')
    expect(await raw.getUtf8(`${prefix}s:s`)).toBe('{"b":2}')
  })

  it.each(['cluster', 'sentinel'])(
    '(b2) %s mode (shared topology of the run), close() NOT called, health() checked: exits with 0 by itself',
    async (kind) => {
      const nodes = kind === 'cluster' ? process.env.FC_CLUSTER_NODES : process.env.FC_SENTINEL_NODES
      if (!nodes) throw new Error('the global setup did not start the topologies')
      const r = await runNode(
        `${PRELUDE}
      (async () => {
        const nodes = process.env.FC_NODES.split(',');
        const topo = process.env.FC_KIND === 'cluster' ? { cluster: { nodes } } : { sentinel: { nodes, masterName: 'mymaster' } };
        const m = createCacheManager({ ...topo, keyPrefix: process.env.FC_PREFIX });
        await m.setSession('s', { t: 1 });
        const h = await m.health();
        console.log(JSON.stringify([await m.getSession('s'), h.status, h.redis.topology.kind]));
      })().catch(fail);`,
        { FC_NODES: nodes, FC_KIND: kind, FC_PREFIX: `exit-${kind}-${Date.now()}:` },
      )
      expectCleanExit(r)
      expect(r.stdout.trim()).toBe(`[{"t":1},"healthy","${kind}"]`)
    },
  )

  it('(c) memory mode, close() NOT called: exits with 0 by itself', async () => {
    const r = await runNode(
      `${PRELUDE}
      (async () => {
        const m = createCacheManager({ url: 'memory://' });
        await m.setSession('s', { c: 3 }, 3600);
        console.log(JSON.stringify(await m.getSession('s')));
      })().catch(fail);`,
    )
    expectCleanExit(r)
    expect(r.stdout.trim()).toBe('{"c":3}')
  })

  it('(d) Redis at a dead port, close() NOT called: served from memory, exits with 0 by itself', async () => {
    const port = await freePort()
    const r = await runNode(
      `${PRELUDE}
      (async () => {
        const m = createCacheManager({ url: process.env.FC_URL });
        await m.setSession('s', { d: 4 });
        console.log(JSON.stringify(await m.getSession('s')));
      })().catch(fail);`,
      { FC_URL: `redis://127.0.0.1:${port}` },
    )
    expectCleanExit(r)
    expect(r.stdout.trim()).toBe('{"d":4}')
  })

  it('(e) the default cacheManager with REDIS_URL, close() NOT called: exits with 0 by itself', async () => {
    const id = `exit-e-${Date.now()}`
    const r = await runNode(
      `${PRELUDE}
      (async () => {
        await cacheManager.setSession(process.env.FC_ID, { e: 5 });
        console.log(JSON.stringify(await cacheManager.getSession(process.env.FC_ID)));
      })().catch(fail);`,
      { REDIS_URL: server.url, FC_ID: id },
    )
    expectCleanExit(r)
    expect(r.stdout.trim()).toBe('{"e":5}')
    expect(await raw.getUtf8(`fc:s:${id}`)).toBe('{"e":5}')
  })

  it('(f) a manager created but never used, and importing alone: exits with 0 by itself', async () => {
    const r = await runNode(
      `${PRELUDE}
      createCacheManager({ url: process.env.FC_URL });
      console.log('ok');`,
      { FC_URL: server.url },
    )
    expectCleanExit(r)
    expect(r.stdout.trim()).toBe('ok')
  })

  it('(g) a manager pointing at a dead port with fallback off, close() NOT called: exits with 0 by itself', async () => {
    const port = await freePort()
    const r = await runNode(
      `${PRELUDE}
      (async () => {
        const m = createCacheManager({ url: process.env.FC_URL, fallback: { enabled: false } });
        try { await m.getSession('s'); console.log('resolved') } catch (e) { console.log(e.code) }
      })().catch(fail);`,
      { FC_URL: `redis://127.0.0.1:${port}` },
    )
    expectCleanExit(r)
    expect(r.stdout.trim()).toBe('ERR_REDIS_UNAVAILABLE')
  })
})

describe('error contract in a plain Node process (outside the Jest vm)', () => {
  let server: RedisServer

  beforeAll(async () => {
    server = await startRedis()
  })
  afterAll(async () => {
    if (server) await server.stop()
  })

  it('native-side errors reject with the right class and code in both modes', async () => {
    const dead = `redis://127.0.0.1:${await freePort()}`
    const r = await runNode(
      `${PRELUDE}
      const outcome = async (f) => {
        try { const v = await f(); return ['resolved', v === undefined ? null : v] }
        catch (e) { return [e instanceof TypeError ? 'TypeError' : e instanceof RangeError ? 'RangeError' : e instanceof Error ? 'Error' : typeof e, e.code] }
      };
      (async () => {
        const out = {};
        for (const [mode, url] of [['memory', 'memory://'], ['redis', process.env.FC_URL]]) {
          const m = createCacheManager({ url, keyPrefix: 'plain-' + Date.now() + ':' });
          await m.setSession('k', 'kept');
          out[mode + ' key too large (set)'] = await outcome(() => m.setSession('k'.repeat(5000), 1));
          out[mode + ' key too large (get)'] = await outcome(() => m.getSession('é'.repeat(2049)));
          out[mode + ' value too large'] = await outcome(() => m.setSession('k', 'x'.repeat(4 * 1024 * 1024)));
          out[mode + ' kept'] = await outcome(() => m.getSession('k'));
          await m.close();
          out[mode + ' closed (set)'] = await outcome(() => m.setSession('k', 1));
          out[mode + ' closed (get)'] = await outcome(() => m.getSession('k'));
        }
        const off = createCacheManager({ url: process.env.FC_DEAD, fallback: { enabled: false } });
        out['unavailable'] = await outcome(() => off.setSession('k', 1));
        out['bad url option'] = await outcome(async () => createCacheManager({ url: 'http://x' }));
        console.log(JSON.stringify(out));
      })().catch(fail);`,
      { FC_URL: server.url, FC_DEAD: dead },
      15000,
    )
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    const out = JSON.parse(r.stdout)
    expect(out).toEqual({
      'memory key too large (set)': ['RangeError', 'ERR_TOO_LARGE'],
      'memory key too large (get)': ['RangeError', 'ERR_TOO_LARGE'],
      'memory value too large': ['RangeError', 'ERR_TOO_LARGE'],
      'memory kept': ['resolved', 'kept'],
      'memory closed (set)': ['Error', 'ERR_CLOSED'],
      'memory closed (get)': ['Error', 'ERR_CLOSED'],
      'redis key too large (set)': ['RangeError', 'ERR_TOO_LARGE'],
      'redis key too large (get)': ['RangeError', 'ERR_TOO_LARGE'],
      'redis value too large': ['RangeError', 'ERR_TOO_LARGE'],
      'redis kept': ['resolved', 'kept'],
      'redis closed (set)': ['Error', 'ERR_CLOSED'],
      'redis closed (get)': ['Error', 'ERR_CLOSED'],
      unavailable: ['Error', 'ERR_REDIS_UNAVAILABLE'],
      'bad url option': ['TypeError', 'ERR_INVALID_ARG'],
    })
  })
})
