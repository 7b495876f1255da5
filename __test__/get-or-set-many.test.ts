// getOrSetMany: one read round trip (counted by the manager's latency histogram and by Redis's
// INFO commandstats), one loader call with exactly the missing keys, the writes pipelined,
// single flight per key shared with getOrSet, errors that cache nothing, tenants, an outage,
// and Keyv's getMany/setMany over the same batch; in memory mode and against a private
// redis-server, a Cluster and Sentinel.
import { createCacheManager, CacheManager } from '..'
import { KeyvFerrocache } from '../lib/keyv'
import { modes, useManagers } from './helpers/modes'
import { RawRedis, sleep, startRedis, RedisServer, uniquePrefix } from './helpers/redis-server'
import { waitFor } from './helpers/traffic'

const keys = (n: number, from = 0) => Array.from({ length: n }, (_, i) => `item:${from + i}`)

/** Loads `{ id }` for each key asked, recording each call's keys. */
function recordingLoader(delayMs = 0) {
  const calls: string[][] = []
  const loader = async (missing: string[]) => {
    calls.push(missing)
    if (delayMs > 0) await sleep(delayMs)
    return Object.fromEntries(missing.map((k) => [k, { id: k }]))
  }
  return { calls, loader }
}

describe.each(modes().map((m) => [m.name, m] as const))('getOrSetMany (%s mode)', (_name, mode) => {
  const manager = useManagers(mode)

  it('100 keys with 60 missing: one loader call with exactly the 60, every key answered and cached', async () => {
    const cm = manager()
    const all = keys(100)
    await Promise.all(all.slice(0, 40).map((k) => cm.cacheQueryResult(k, { id: k, cached: true })))
    const { calls, loader } = recordingLoader()
    const page = await cm.getOrSetMany(all, loader, 60)
    expect(calls).toEqual([all.slice(40)])
    expect(Object.keys(page).sort()).toEqual([...all].sort())
    for (const k of all.slice(0, 40)) expect(page[k]).toEqual({ id: k, cached: true })
    for (const k of all.slice(40)) expect(page[k]).toEqual({ id: k })
    expect(await cm.getCachedQuery('item:77')).toEqual({ id: 'item:77' })
    const again = await cm.getOrSetMany(all, loader)
    expect(calls).toHaveLength(1) // all cached now
    expect(again).toEqual(page)
    expect(again['item:1']).not.toBe(page['item:1']) // fresh copies
  })

  it('keys the loader did not return are null and not cached; a Map works; duplicates are asked once', async () => {
    const cm = manager()
    const asked: string[][] = []
    const page = await cm.getOrSetMany(['a', 'b', 'a', 'c', 'd'], async (missing) => {
      asked.push(missing)
      return new Map<string, unknown>([
        ['a', 1],
        ['b', null],
        ['d', undefined],
      ])
    })
    expect(asked).toEqual([['a', 'b', 'c', 'd']])
    expect(page).toEqual({ a: 1, b: null, c: null, d: null })
    expect(await cm.getCachedQuery('a')).toBe(1)
    const next = recordingLoader()
    expect(await cm.getOrSetMany(['a', 'b', 'c', 'd'], next.loader)).toEqual({
      a: 1,
      b: null, // null was a value: cached
      c: { id: 'c' },
      d: { id: 'd' },
    })
    expect(next.calls).toEqual([['c', 'd']])
  })

  it('no keys: resolves {} without calling the loader', async () => {
    const cm = manager()
    const { calls, loader } = recordingLoader()
    expect(await cm.getOrSetMany([], loader)).toEqual({})
    expect(calls).toHaveLength(0)
  })

  it('overlapping concurrent calls load each key once; getOrSet joins a key being loaded', async () => {
    const cm = manager()
    const { calls, loader } = recordingLoader(50)
    const first = cm.getOrSetMany(keys(60), loader)
    await sleep(5) // the first call's loader is running
    let single = 0
    const joined = cm.getOrSet('item:10', () => ++single)
    const second = cm.getOrSetMany(keys(60, 30), loader)
    const [a, b, s] = await Promise.all([first, second, joined])
    expect(calls).toHaveLength(2)
    expect(calls[0]).toEqual(keys(60))
    expect(calls[1]).toEqual(keys(30, 60)) // 30..59 were awaited, not loaded again
    expect(single).toBe(0)
    expect(s).toEqual({ id: 'item:10' })
    expect(Object.keys(a)).toHaveLength(60)
    expect(Object.keys(b)).toHaveLength(60)
    for (const k of keys(30, 30)) expect(b[k]).toEqual(a[k])
  })

  it('getOrSet on a key a concurrent getOrSetMany loader did not return loads it itself', async () => {
    const cm = manager()
    const many = cm.getOrSetMany(['x', 'y'], async () => {
      await sleep(30)
      return { x: 'X' }
    })
    await sleep(5)
    const y = cm.getOrSet('y', () => 'Y')
    expect(await many).toEqual({ x: 'X', y: null })
    expect(await y).toBe('Y')
  })

  it('a loader that throws rejects the call, caches nothing, and the next call loads again', async () => {
    const cm = manager()
    await cm.cacheQueryResult('item:0', 'cached')
    const boom = new Error('db down')
    const waiter = cm.getOrSetMany(keys(3), async () => {
      await sleep(20)
      throw boom
    })
    const joined = cm.getOrSet('item:1', () => 'never') // waits on the failing load
    await expect(waiter).rejects.toBe(boom)
    await expect(joined).rejects.toBe(boom)
    expect(await cm.getCachedQuery('item:1')).toBeNull()
    expect(await cm.getCachedQuery('item:0')).toBe('cached')
    const { calls, loader } = recordingLoader()
    expect(await cm.getOrSetMany(keys(3), loader)).toEqual({
      'item:0': 'cached',
      'item:1': { id: 'item:1' },
      'item:2': { id: 'item:2' },
    })
    expect(calls).toEqual([['item:1', 'item:2']])
  })

  it('a loader returning a key it was not asked for, or no record, is refused and nothing is cached', async () => {
    const cm = manager()
    await cm.cacheQueryResult('hit', 1)
    const extra = cm.getOrSetMany(['hit', 'miss'], async () => ({ miss: 2, hit: 3 }))
    await expect(extra).rejects.toMatchObject({ code: 'ERR_INVALID_ARG', message: expect.stringMatching(/"hit"/) })
    expect(await cm.getCachedQuery('miss')).toBeNull()
    expect(await cm.getCachedQuery('hit')).toBe(1)
    for (const bad of [null, undefined, 'text', 42, ['miss']]) {
      await expect(cm.getOrSetMany(['miss'], async () => bad as never)).rejects.toMatchObject({
        code: 'ERR_INVALID_ARG',
      })
    }
    const circular: Record<string, unknown> = {}
    circular.self = circular
    await expect(cm.getOrSetMany(['miss', 'other'], async () => ({ other: 1, miss: circular }))).rejects.toMatchObject({
      code: 'ERR_SERIALIZE',
    })
    expect(await cm.getCachedQuery('other')).toBeNull() // nothing cached: values are encoded first
    expect(await cm.getCachedQuery('miss')).toBeNull()
  })

  it('bad arguments reject with ERR_INVALID_ARG before any read or load', async () => {
    const cm = manager()
    const { calls, loader } = recordingLoader()
    const bad: Array<[unknown, unknown, unknown]> = [
      ['k', loader, undefined],
      [['k', 5], loader, undefined],
      [['k', ''], loader, undefined],
      [['k'], 'loader', undefined],
      [['k'], loader, -1],
      [['k'], loader, 'soon'],
    ]
    for (const [k, l, ttl] of bad) {
      await expect((cm.getOrSetMany as (...a: unknown[]) => Promise<unknown>)(k, l, ttl)).rejects.toMatchObject({
        code: 'ERR_INVALID_ARG',
      })
    }
    expect(calls).toHaveLength(0)
  })

  it('isolates tenants and the manager scope for the same keys', async () => {
    const cm = manager()
    const tag = (t: string) => async (missing: string[]) => Object.fromEntries(missing.map((k) => [k, `${t}:${k}`]))
    expect(await cm.tenant('a').getOrSetMany(['k1', 'k2'], tag('a'))).toEqual({ k1: 'a:k1', k2: 'a:k2' })
    expect(await cm.tenant('b').getOrSetMany(['k1', 'k2'], tag('b'))).toEqual({ k1: 'b:k1', k2: 'b:k2' })
    expect(await cm.getOrSetMany(['k1'], tag('m'))).toEqual({ k1: 'm:k1' })
    expect(await cm.tenant('a').getCachedQuery('k2')).toBe('a:k2')
    expect(await cm.tenant('b').getCachedQuery('k2')).toBe('b:k2')
    expect(await cm.getCachedQuery('k2')).toBeNull()
  })

  it('close() while the loader runs: the call resolves with the loaded values', async () => {
    const cm = manager()
    const page = cm.getOrSetMany(['p', 'q'], async (missing) => {
      await sleep(30)
      return Object.fromEntries(missing.map((k) => [k, k.toUpperCase()]))
    })
    await sleep(5)
    await cm.close()
    expect(await page).toEqual({ p: 'P', q: 'Q' })
    await expect(cm.getOrSetMany(['p'], async () => ({}))).rejects.toMatchObject({ code: 'ERR_CLOSED' })
  })
})

describe('getOrSetMany and Keyv getMany/setMany against one redis-server: round trips', () => {
  let server: RedisServer
  let raw: RawRedis
  const open: CacheManager[] = []
  beforeAll(async () => {
    server = await startRedis()
    raw = new RawRedis(server.port)
  })
  afterEach(async () => {
    await Promise.all(open.splice(0).map((m) => m.close()))
  })
  afterAll(async () => {
    await raw.close()
    await server.stop()
  })
  const managerOf = (near: boolean, keyPrefix = uniquePrefix('gm')) => {
    const m = createCacheManager({ url: server.url, keyPrefix, nearCache: { enabled: near } })
    open.push(m)
    return m
  }
  /** Redis commands by name, from INFO commandstats. */
  async function commandCounts(): Promise<Record<string, number>> {
    const info = (await raw.client.info('commandstats')) as string
    const out: Record<string, number> = {}
    for (const m of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) out[m[1]] = Number(m[2])
    return out
  }
  const delta = (before: Record<string, number>, after: Record<string, number>) =>
    Object.fromEntries(
      Object.keys(after)
        .filter((k) => after[k] !== (before[k] ?? 0))
        .map((k) => [k, after[k] - (before[k] ?? 0)]),
    )
  const roundTrips = (m: CacheManager) => m.metrics().latencyHistogram.count

  it('100 keys, 60 missing: the read is one round trip of 100 GETs, the 60 writes one more', async () => {
    const cm = managerOf(false)
    const all = keys(100)
    await Promise.all(all.slice(0, 40).map((k) => cm.cacheQueryResult(k, k)))
    const trips = roundTrips(cm)
    const before = await commandCounts()
    let atLoad: { trips: number; commands: Record<string, number> } | null = null
    const page = await cm.getOrSetMany(all, async (missing) => {
      atLoad = { trips: roundTrips(cm) - trips, commands: delta(before, await commandCounts()) }
      return Object.fromEntries(missing.map((k) => [k, k]))
    })
    expect(Object.keys(page)).toHaveLength(100)
    expect(atLoad).toEqual({ trips: 1, commands: { get: 100, info: 1 } })
    expect(roundTrips(cm) - trips).toBe(2)
    const writes = delta(before, await commandCounts())
    expect(writes.exec).toBe(60) // one query-index transaction per key written
    expect(writes.get).toBe(100)
  })

  it('with the near cache, a page this process wrote or read costs no round trip', async () => {
    const cm = managerOf(true)
    await cm.getSession('warm') // connects
    await waitFor('tracking active', () => cm.metrics().nearCache.tracking === 'active', 5000)
    const { loader } = recordingLoader()
    await cm.getOrSetMany(keys(100), loader)
    const trips = roundTrips(cm)
    const before = await commandCounts()
    const page = await cm.getOrSetMany(keys(100), loader)
    expect(Object.keys(page)).toHaveLength(100)
    expect(roundTrips(cm) - trips).toBe(0)
    expect(delta(before, await commandCounts())).toEqual({ info: 1 })
  })

  it("Keyv's getMany and setMany of 100 keys are one round trip each", async () => {
    const cm = managerOf(false)
    const store = new KeyvFerrocache({ manager: cm })
    const entries = keys(100).map((key, i) => ({ key, value: { i } }))
    let trips = roundTrips(cm)
    await store.setMany(entries)
    expect(roundTrips(cm) - trips).toBe(1)
    trips = roundTrips(cm)
    const values = await store.getMany(keys(100))
    expect(roundTrips(cm) - trips).toBe(1)
    expect(values).toEqual(entries.map((e) => e.value))
  })

  it('during an outage the page is loaded and kept locally, and reaches Redis on recovery', async () => {
    const prefix = uniquePrefix('gm')
    const cm = managerOf(true, prefix)
    cm.simulateOutage({ mode: 'refuse' })
    await cm.getSession('wake') // opens the breaker
    await waitFor('memory mode', () => cm.metrics().mode === 'memory', 5000)
    const { calls, loader } = recordingLoader()
    const page = await cm.getOrSetMany(keys(10), loader, 120)
    expect(calls).toEqual([keys(10)])
    expect(page['item:3']).toEqual({ id: 'item:3' })
    expect(await cm.getOrSetMany(keys(10), loader)).toEqual(page) // served by the in-process store
    expect(calls).toHaveLength(1)
    cm.endSimulatedOutage()
    await waitFor('recovered', () => cm.metrics().mode === 'redis', 10_000)
    const other = managerOf(false, prefix)
    const fromRedis = await other.getOrSetMany(keys(10), async () => ({}))
    expect(fromRedis).toEqual(page)
  })
})
