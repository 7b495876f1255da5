// Reliability of the lifecycle and of partial outages, against real redis-server processes:
// - close() finishes the calls made before it (Redis up, killed, hung), through the manager,
//   the express-session store and the Keyv adapter;
// - a Redis that refuses writes (maxmemory + noeviction, a master demoted with REPLICAOF)
//   loses nothing and shows in health() and metrics();
// - a misconfiguration found by health() is handled like one found by a data call;
// - a small in-process budget works with the value limit's default.
// Measured numbers are printed with console.log.

import { createCacheManager, CacheManager, CacheOptions, codes, ErrorEvent } from '..'
import { FerrocacheStore } from '../lib/session'
import { KeyvFerrocache } from '../lib/keyv'
import { waitFor } from './helpers/traffic'
import { RawRedis, RedisServer, sleep, startRedis, killAllRedis, uniquePrefix } from './helpers/redis-server'

const TIMEOUT = 250 // commandTimeoutMs of the managers here
const WRITES = 2000

const managers: CacheManager[] = []
const raws: RawRedis[] = []
const servers: RedisServer[] = []

function manager(options: CacheOptions): CacheManager {
  const m = createCacheManager({ commandTimeoutMs: TIMEOUT, ...options })
  managers.push(m)
  return m
}

async function server(args: string[] = []): Promise<RedisServer> {
  const s = await startRedis(args)
  servers.push(s)
  return s
}

function raw(s: RedisServer): RawRedis {
  const r = new RawRedis(s.port)
  raws.push(r)
  return r
}

function errors(m: CacheManager): ErrorEvent[] {
  const seen: ErrorEvent[] = []
  m.on('error', (e) => seen.push(e))
  return seen
}

/** How many of `keys` exist in Redis (one pipeline). */
async function existing(r: RawRedis, keys: string[]): Promise<number> {
  const pipe = r.client.pipeline()
  for (const k of keys) pipe.exists(k)
  const replies = (await pipe.exec()) ?? []
  return replies.reduce((n, [err, v]) => n + (err === null && v === 1 ? 1 : 0), 0)
}

const waitUntil = (what: string, check: () => Promise<boolean> | boolean, ms = 10_000): Promise<number> =>
  waitFor(what, check, ms)

afterEach(async () => {
  await Promise.all(managers.splice(0).map((m) => m.close()))
  await Promise.all(raws.splice(0).map((r) => r.close()))
  await Promise.all(servers.splice(0).map((s) => s.stop()))
})
afterAll(killAllRedis)

describe('close() finishes what was called before it', () => {
  it('writes called in the same tick all reach Redis; later calls reject ERR_CLOSED', async () => {
    const s = await server()
    const r = raw(s)
    const prefix = uniquePrefix('close')
    const m = manager({ url: s.url, keyPrefix: prefix })
    const calls = Array.from({ length: WRITES }, (_, i) => m.setSession(`s${i}`, { i }, 600))
    const closed = m.close()
    const outcomes = await Promise.allSettled(calls)
    await closed
    const rejected = outcomes.filter((o) => o.status === 'rejected')
    const inRedis = await existing(
      r,
      Array.from({ length: WRITES }, (_, i) => `${prefix}s:s${i}`),
    )
    console.log(`close() after ${WRITES} writes in the same tick: ${rejected.length} rejected, ${inRedis} in Redis`)
    expect(rejected).toEqual([])
    expect(inRedis).toBe(WRITES)
    await expect(m.setSession('late', 1)).rejects.toMatchObject({ code: codes.CLOSED })
    await expect(m.getSession('s1')).rejects.toMatchObject({ code: codes.CLOSED })
    await expect(m.deleteSession('s1')).rejects.toMatchObject({ code: codes.CLOSED })
    await expect(m.invalidateAll()).rejects.toMatchObject({ code: codes.CLOSED })
    await expect(m.close()).resolves.toBeUndefined() // idempotent
  })

  it('a write already on its way when close() is called still lands', async () => {
    const s = await server()
    const r = raw(s)
    const prefix = uniquePrefix('close1')
    const m = manager({ url: s.url, keyPrefix: prefix })
    await m.setSession('warm', 1) // connected
    const p = m.setSession('s1', { a: 1 }, 60)
    await new Promise((resolve) => setImmediate(resolve)) // the batch is on its way
    await m.close()
    await expect(p).resolves.toBeUndefined()
    expect(await r.getUtf8(`${prefix}s:s1`)).toBe('{"a":1}')
  })

  it('with Redis killed, writes resolve and what cannot be replayed is reported before close() resolves', async () => {
    const s = await server()
    const prefix = uniquePrefix('closek')
    const m = manager({ url: s.url, keyPrefix: prefix })
    const seen = errors(m)
    await m.setSession('warm', 1)
    await s.kill()
    const calls = Array.from({ length: WRITES }, (_, i) => m.setSession(`s${i}`, { i }, 600))
    const started = Date.now()
    await m.close()
    const took = Date.now() - started
    const dropped = seen.filter((e) => e.kind === 'journal-dropped')
    const outcomes = await Promise.allSettled(calls)
    console.log(`close() with Redis killed: ${took} ms, events ${JSON.stringify(dropped)}`)
    expect(outcomes.filter((o) => o.status === 'rejected')).toEqual([])
    expect(dropped).toHaveLength(1)
    expect(dropped[0].count).toBe(WRITES)
    expect(dropped[0].message).toMatch(/could not be replayed/)
  })

  it('with Redis hung (SIGSTOP), close() resolves within the call budget and reports what it dropped', async () => {
    const s = await server()
    const prefix = uniquePrefix('closeh')
    const m = manager({ url: s.url, keyPrefix: prefix })
    const seen = errors(m)
    await m.setSession('warm', 1)
    s.pause()
    const calls = Array.from({ length: WRITES }, (_, i) => m.setSession(`s${i}`, { i }, 600))
    const started = Date.now()
    await m.close()
    const took = Date.now() - started
    const outcomes = await Promise.allSettled(calls)
    s.resume()
    const dropped = seen.filter((e) => e.kind === 'journal-dropped')
    console.log(`close() with Redis hung: ${took} ms (commandTimeoutMs ${TIMEOUT}), events ${JSON.stringify(dropped)}`)
    expect(outcomes.filter((o) => o.status === 'rejected')).toEqual([])
    // the writes in flight wait out their budget, then one budget for the last replay attempt
    expect(took).toBeLessThan(2 * TIMEOUT + 400)
    expect(dropped).toHaveLength(1)
    expect(dropped[0].count).toBe(WRITES)
  })

  it('journaled writes are replayed by close() when Redis is back', async () => {
    const s = await server()
    const r = raw(s)
    const prefix = uniquePrefix('closer')
    const m = manager({ url: s.url, keyPrefix: prefix })
    const seen = errors(m)
    m.simulateOutage({ mode: 'refuse' })
    await Promise.all(Array.from({ length: 100 }, (_, i) => m.setSession(`s${i}`, { i }, 600)))
    expect(m.metrics().journalDepth).toBe(100)
    m.endSimulatedOutage()
    await m.close() // before the probe's two healthy answers: close() replays itself
    expect(seen.filter((e) => e.kind === 'journal-dropped')).toEqual([])
    expect(
      await existing(
        r,
        Array.from({ length: 100 }, (_, i) => `${prefix}s:s${i}`),
      ),
    ).toBe(100)
  })

  it('a getOrSet whose loader finishes after close() resolves with the loaded value', async () => {
    const s = await server()
    const m = manager({ url: s.url, keyPrefix: uniquePrefix('gos') })
    let release: () => void = () => {}
    const gate = new Promise<void>((resolve) => (release = resolve))
    const loaded = m.getOrSet('k', async () => {
      await gate
      return { v: 1 }
    })
    await sleep(20)
    const closed = m.close()
    release()
    await closed
    await expect(loaded).resolves.toEqual({ v: 1 })
  })

  it('the express-session store: sessions set before close() are all in Redis', async () => {
    const s = await server()
    const r = raw(s)
    const prefix = uniquePrefix('sess')
    const m = manager({ url: s.url, keyPrefix: prefix })
    const store = new FerrocacheStore({ manager: m })
    const n = 500
    const done = Array.from(
      { length: n },
      (_, i) =>
        new Promise<unknown>((resolve) =>
          store.set(`sid${i}`, { cookie: { maxAge: 60_000 }, user: i } as never, (err?: unknown) =>
            resolve(err ?? null),
          ),
        ),
    )
    await m.close()
    expect((await Promise.all(done)).filter((e) => e !== null)).toEqual([])
    expect(
      await existing(
        r,
        Array.from({ length: n }, (_, i) => `${prefix}s:sid${i}`),
      ),
    ).toBe(n)
  })

  it("the Keyv adapter's disconnect() closes its own manager the same way", async () => {
    const s = await server()
    const r = raw(s)
    const prefix = uniquePrefix('keyv')
    const store = new KeyvFerrocache({ cache: { url: s.url, keyPrefix: prefix, commandTimeoutMs: TIMEOUT } })
    const n = 500
    const sets = Array.from({ length: n }, (_, i) => store.set(`k${i}`, `{"value":${i}}`, 60_000))
    await store.disconnect()
    expect(await Promise.all(sets)).toEqual(Array(n).fill(true))
    const keys = await r.keysStartingWith(`${prefix}q:keyv:`)
    expect(keys).toHaveLength(n)
  })
})

describe('Redis refusing writes is a partial outage', () => {
  it('a full Redis (maxmemory, noeviction): no call rejected, degraded, and nothing lost once it has room', async () => {
    const s = await server(['--maxmemory', '3mb', '--maxmemory-policy', 'noeviction'])
    const r = raw(s)
    const prefix = uniquePrefix('oom')
    const m = manager({ url: s.url, keyPrefix: prefix })
    const seen = errors(m)
    await m.setSession('before', { v: 'old' })
    const value = { pad: 'x'.repeat(1000) }
    const total = 5000
    let next = 0
    let rejected = 0
    const statuses = new Set<string>()
    let degraded: Awaited<ReturnType<CacheManager['health']>> | null = null
    await Promise.all(
      Array.from({ length: 50 }, async () => {
        while (next < total) {
          const i = next++
          try {
            await m.setSession(`s${i}`, value, 600)
          } catch {
            rejected += 1
          }
          if (i % 500 === 0) {
            const h = await m.health()
            statuses.add(h.status)
            if (h.status === 'degraded') degraded = h
          }
        }
      }),
    )
    const during = await m.health()
    const metrics = m.metrics()
    // reads of keys without a journal entry are Redis's: a delete by another client shows
    await r.client.del(`${prefix}s:before`)
    expect(await m.getSession('before')).toBeNull()
    expect(await m.getSession(`s${total - 1}`)).toEqual(value) // from the journal
    console.log(
      `full Redis: ${total} writes by 50 writers, ${rejected} rejected, ${metrics.writeRefusals} refused by Redis, ` +
        `journal ${during.failover?.journalDepth}, health ${[...statuses].join('/')}`,
    )
    expect(rejected).toBe(0)
    expect(during.status).toBe('degraded')
    expect(during.mode).toBe('redis')
    expect(during.failover?.writesRefused).toBe(true)
    expect(during.redis.lastError).toMatch(/OOM/)
    expect(degraded).not.toBeNull()
    expect(metrics.writeRefusals).toBeGreaterThan(0)
    expect(metrics.errors).toBeGreaterThanOrEqual(metrics.writeRefusals)
    expect(seen.filter((e) => e.kind === 'write-refused')).toHaveLength(1)

    await r.client.config('SET', 'maxmemory', '0')
    const tookMs = await waitUntil('healthy', async () => (await m.health()).status === 'healthy')
    const inRedis = await existing(
      r,
      Array.from({ length: total }, (_, i) => `${prefix}s:s${i}`),
    )
    console.log(`full Redis: healthy ${tookMs} ms after CONFIG SET maxmemory 0; ${inRedis}/${total} sessions in Redis`)
    expect(inRedis).toBe(total)
    const after = await m.health()
    expect(after.failover?.writesRefused).toBe(false)
    expect(after.failover?.journalDepth).toBe(0)
    expect(seen.filter((e) => e.kind === 'write-refused')).toHaveLength(1)
  })

  it('a master demoted to a replica (REPLICAOF): writes are kept and replayed once it is a master again', async () => {
    const master = await server()
    const s = await server()
    const r = raw(s)
    const prefix = uniquePrefix('ro')
    const m = manager({ url: s.url, keyPrefix: prefix })
    const seen = errors(m)
    await m.setSession('warm', 1)
    await r.client.replicaof('127.0.0.1', master.port)
    await waitUntil('the replica to sync', async () => /master_link_status:up/.test(await r.client.info('replication')))
    const total = 1000
    const outcomes = await Promise.allSettled(
      Array.from({ length: total }, (_, i) => m.setSession(`s${i}`, { i }, 600)),
    )
    const during = await m.health()
    console.log(
      `READONLY: ${outcomes.filter((o) => o.status === 'rejected').length} of ${total} writes rejected, ` +
        `health ${during.status}, lastError ${during.redis.lastError}`,
    )
    expect(outcomes.filter((o) => o.status === 'rejected')).toEqual([])
    expect(during.status).toBe('degraded')
    expect(during.failover?.writesRefused).toBe(true)
    expect(during.redis.lastError).toMatch(/read only/i)
    expect(await m.getSession('s7')).toEqual({ i: 7 })
    await r.client.replicaof('NO', 'ONE')
    await waitUntil('healthy', async () => (await m.health()).status === 'healthy')
    expect(
      await existing(
        r,
        Array.from({ length: total }, (_, i) => `${prefix}s:s${i}`),
      ),
    ).toBe(total)
    expect(seen.filter((e) => e.kind === 'write-refused')).toHaveLength(1)
  })
})

describe('a misconfiguration is reported by whatever finds it', () => {
  const wrong = (s: RedisServer) => `redis://default:WRONG@127.0.0.1:${s.port}`

  it('found by health() first: error event within the call, circuit open, served from memory', async () => {
    const s = await server(['--requirepass', 'right'])
    const m = manager({ url: wrong(s), keyPrefix: uniquePrefix('mh') })
    const seen = errors(m)
    const h = await m.health()
    expect(seen.map((e) => e.kind)).toEqual(['misconfiguration'])
    expect(h.status).toBe('degraded')
    expect(h.mode).toBe('memory')
    expect(h.failover?.breaker).toBe('open')
    expect(h.redis.lastError).toMatch(/Authentication|WRONGPASS/i)
    await m.setSession('s', { a: 1 })
    expect(await m.getSession('s')).toEqual({ a: 1 })
    expect(seen.map((e) => e.kind)).toEqual(['misconfiguration']) // once per episode
  })

  it('found by a data call first: the same, and health() agrees', async () => {
    const s = await server(['--requirepass', 'right'])
    const m = manager({ url: wrong(s), keyPrefix: uniquePrefix('md') })
    const seen = errors(m)
    await m.setSession('s', { a: 1 })
    expect(seen.map((e) => e.kind)).toEqual(['misconfiguration'])
    const h = await m.health()
    expect(h.mode).toBe('memory')
    expect(h.failover?.breaker).toBe('open')
    expect(h.redis.lastError).toMatch(/Authentication|WRONGPASS/i)
    expect(seen.map((e) => e.kind)).toEqual(['misconfiguration'])
  })

  it('found by the recovery probe: a Redis back with a password the manager lacks', async () => {
    const s = await server()
    const m = manager({ url: s.url, keyPrefix: uniquePrefix('mp') })
    const seen = errors(m)
    await m.setSession('warm', 1)
    await s.kill()
    await m.setSession('during', 1) // fallback
    const back = await startRedis(['--requirepass', 'right'], async () => s.port)
    servers.push(back)
    await waitUntil('the probe to report', () => seen.some((e) => e.kind === 'misconfiguration'), 5000)
    expect(m.metrics().mode).toBe('memory')
    expect((await m.health()).redis.lastError).toMatch(/NOAUTH|Authentication/i)
  })
})

describe('a small in-process budget', () => {
  it('works without maxValueBytes: the value limit follows the budget', async () => {
    const m = manager({ url: 'memory://', fallback: { maxBytes: 1024 * 1024 } })
    await m.setSession('small', { pad: 'x'.repeat(100_000) })
    expect(await m.getSession('small')).toEqual({ pad: 'x'.repeat(100_000) })
    const err = await m.setSession('small', { pad: 'y'.repeat(1024 * 1024) }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(RangeError)
    expect(err).toMatchObject({ code: codes.TOO_LARGE })
    expect(await m.getSession('small')).toEqual({ pad: 'x'.repeat(100_000) }) // unchanged
  })

  it('in Redis mode too, where the budget holds outage writes', async () => {
    const s = await server()
    const m = manager({ url: s.url, keyPrefix: uniquePrefix('small'), fallback: { maxBytes: 256 * 1024 } })
    await m.cacheQueryResult('q', { pad: 'z'.repeat(50_000) })
    expect(await m.getCachedQuery('q')).toEqual({ pad: 'z'.repeat(50_000) })
    await expect(m.cacheQueryResult('q', 'w'.repeat(300_000))).rejects.toMatchObject({ code: codes.TOO_LARGE })
  })

  it('an explicit value limit larger than the budget is refused at construction', () => {
    expect(() =>
      createCacheManager({
        url: 'memory://',
        fallback: { maxBytes: 1024 * 1024 },
        limits: { maxValueBytes: 4 * 1024 * 1024 },
      }),
    ).toThrow(expect.objectContaining({ code: codes.INVALID_ARG }))
  })
})
