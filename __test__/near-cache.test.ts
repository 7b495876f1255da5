// The near cache against real redis-server processes: coherence with writes by another process
// and by a plain ioredis client (write, delete, expire, invalidate, FLUSHDB), reconnection to a
// server holding different data, the fail-safe through SIGKILL and SIGSTOP outages and its time
// limit, and a Redis Cluster with a master failover. Measured numbers are printed.

import Redis, { Cluster as IoCluster } from 'ioredis'
import { createCacheManager, CacheManager, CacheOptions, toPrometheusText } from '..'
import { sleep, startRedisOn, uniquePrefix } from './helpers/redis-server'
import { waitFor } from './helpers/traffic'
import { fixtures } from './helpers/fixtures'
import { startCluster, ClusterSetup } from './helpers/topology'

const { managers, servers, manager, server } = fixtures()

const waitUntil = (what: string, check: () => Promise<boolean> | boolean, ms = 15_000): Promise<number> =>
  waitFor(what, check, ms)

const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]

// The reader process: reads every key in a tight loop through its near cache, and records per
// key the runs of versions it saw (version, first read start, last read start; hrtime in ns,
// CLOCK_MONOTONIC, comparable across processes). Every 200 reads it writes a key of its own and
// reads it back at once: that read must return its own write.
const READER = `
const { createCacheManager } = require('.')
const m = createCacheManager({ url: process.env.URL, keyPrefix: process.env.PREFIX, queryIndex: false, commandTimeoutMs: 1000 })
const keys = JSON.parse(process.env.KEYS)
const runs = Object.fromEntries(keys.map((k) => [k, []]))
let stop = false, reads = 0, ownStale = 0, own = 0
process.stdin.on('data', () => { stop = true; process.stdin.destroy() })
;(async () => {
  for (const k of keys) await m.getCachedQuery(k)
  console.log('ready')
  while (!stop) {
    for (const k of keys) {
      const t = process.hrtime.bigint()
      const v = await m.getCachedQuery(k)
      const version = v === null ? null : v.v
      const r = runs[k], last = r[r.length - 1]
      if (last && last[0] === version) last[2] = String(t)
      else r.push([version, String(t), String(t)])
      if (++reads % 200 === 0) {
        own++
        await m.setSession('own', { own })
        const back = await m.getSession('own')
        if (!back || back.own !== own) ownStale++
      }
    }
  }
  const near = m.metrics().nearCache
  await m.close()
  console.log(JSON.stringify({ runs, reads, own, ownStale, near }))
  console.log('done')
})()
`

describe('near cache: coherence', () => {
  it('a reader process never serves a value past the bound after another process or ioredis changed it', async () => {
    const s = await server()
    const prefix = uniquePrefix('near')
    const keys = Array.from({ length: 12 }, (_, i) => `k${i}`)
    const writer = manager({ url: s.url, keyPrefix: prefix, queryIndex: false })
    const io = new Redis({ host: '127.0.0.1', port: s.port })
    // every version ever written, with when it was replaced (ns): unique values, so a read of a
    // replaced version is stale once it starts after the replacement
    const replacedAt = new Map<string, bigint>() // `${key}:${version}` -> ns
    const current = new Map<string, number | null>()
    let seq = 0
    const now = () => process.hrtime.bigint()
    const replaced = (key: string, at: bigint) => {
      const v = current.get(key)
      if (v !== null && v !== undefined) replacedAt.set(`${key}:${v}`, at)
    }
    for (const k of keys) {
      await writer.cacheQueryResult(k, { v: ++seq })
      current.set(k, seq)
    }

    let output = ''
    let ready: () => void = () => {}
    const readyP = new Promise<void>((resolve) => (ready = resolve))
    const { spawn } = await import('node:child_process')
    const child = spawn(process.execPath, ['-e', READER], {
      cwd: require('node:path').resolve(__dirname, '..'),
      env: { ...process.env, URL: s.url, PREFIX: prefix, KEYS: JSON.stringify(keys) },
      stdio: ['pipe', 'pipe', 'inherit'],
    })
    child.stdout.on('data', (d) => {
      output += d.toString()
      if (output.includes('ready')) ready()
    })
    const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()))
    await readyP

    const kinds: Record<string, number> = {}
    for (let round = 0; round < 60; round++) {
      const key = keys[round % keys.length]
      const kind = ['ferrocache', 'ioredis-set', 'ioredis-del', 'ioredis-expire', 'invalidate', 'flushdb'][round % 6]
      kinds[kind] = (kinds[kind] ?? 0) + 1
      const v = ++seq
      if (kind === 'ferrocache') {
        await writer.cacheQueryResult(key, { v })
        replaced(key, now())
        current.set(key, v)
      } else if (kind === 'ioredis-set') {
        await io.set(`${prefix}q:${key}`, JSON.stringify({ v }))
        replaced(key, now())
        current.set(key, v)
      } else if (kind === 'ioredis-del') {
        await io.del(`${prefix}q:${key}`)
        replaced(key, now())
        current.set(key, null)
      } else if (kind === 'ioredis-expire') {
        await io.set(`${prefix}q:${key}`, JSON.stringify({ v }), 'PX', 40)
        const set = now()
        replaced(key, set)
        current.set(key, v)
        await sleep(60)
        // it expired 40 ms after the write was acknowledged (the reader may see it until then)
        replacedAt.set(`${key}:${v}`, set + 40_000_000n)
        current.set(key, null)
      } else if (kind === 'invalidate') {
        await writer.invalidateCache('k')
        const at = now()
        for (const k of keys) {
          replaced(k, at)
          current.set(k, null)
        }
      } else {
        await io.flushdb()
        const at = now()
        for (const k of keys) {
          replaced(k, at)
          current.set(k, null)
        }
      }
      await sleep(15)
    }
    child.stdin.write('stop\n')
    await exited
    io.disconnect()
    const result = JSON.parse(output.split('\n').find((l) => l.startsWith('{'))!)

    // staleness: how long after its replacement a replaced version was still read
    const lags: number[] = []
    let beyond = 0
    const BOUND_NS = 50_000_000n // 50 ms: far above what is measured, for a busy CI machine
    for (const k of keys) {
      for (const [version, , lastStart] of result.runs[k] as Array<[number | null, string, string]>) {
        if (version === null) continue
        const at = replacedAt.get(`${k}:${version}`)
        if (at === undefined) continue
        const lag = BigInt(lastStart) - at
        if (lag > 0n) lags.push(Number(lag) / 1000)
        if (lag > BOUND_NS) beyond += 1
      }
    }
    lags.sort((a, b) => a - b)
    console.log(
      `near cache coherence: ${result.reads} reads in the reader process, ${JSON.stringify(kinds)} changes; ` +
        `replaced versions read after their replacement: ${lags.length} (lag µs p50 ${pct(lags, 50) ?? 0}, ` +
        `max ${lags[lags.length - 1] ?? 0}); own writes ${result.own}, stale own reads ${result.ownStale}; ` +
        `reader near cache ${JSON.stringify(result.near)}`,
    )
    expect(beyond).toBe(0)
    expect(result.ownStale).toBe(0)
    expect(result.own).toBeGreaterThan(10)
    expect(result.near.hits).toBeGreaterThan(result.reads / 4) // it did serve from the L1
    expect(result.near.invalidations).toBeGreaterThan(0)
  }, 60_000)

  it('a reader in memory mode meets a Redis restarted with other data: after recovery no pre-outage value', async () => {
    const s = await server()
    const prefix = uniquePrefix('rec')
    const m = manager({ url: s.url, keyPrefix: prefix })
    const keys = Array.from({ length: 100 }, (_, i) => `x${i}`)
    for (const k of keys) await m.setSession(k, { old: k })
    for (const k of keys) expect(await m.getSession(k)).toEqual({ old: k })
    let recovered = false
    m.on('recovered', () => (recovered = true))
    await s.kill()
    await waitUntil('memory mode', async () => {
      await m.getSession('x0')
      return m.metrics().mode === 'memory'
    })
    const back = await startRedisOn(s.port)
    if (back === null) throw new Error('the port was taken')
    servers.push(back)
    const io = new Redis({ host: '127.0.0.1', port: back.port })
    await Promise.all(keys.map((k) => io.set(`${prefix}s:${k}`, JSON.stringify({ fresh: k }))))
    io.disconnect()
    await waitUntil('recovery', () => recovered)
    let old = 0
    for (const k of keys) {
      const v = (await m.getSession(k)) as { old?: string; fresh?: string } | null
      if (!v || v.fresh !== k) old += 1
    }
    expect(old).toBe(0)
    expect(m.metrics().nearCache.tracking).toBe('active')
  }, 30_000)
})

describe('near cache: fail-safe', () => {
  const SESSIONS = 10_000

  async function readAll(m: CacheManager): Promise<number> {
    let nulls = 0
    for (let i = 0; i < SESSIONS; i += 500) {
      const batch = await Promise.all(Array.from({ length: 500 }, (_, j) => m.getSession(`s${i + j}`)))
      nulls += batch.filter((v) => v === null).length
    }
    return nulls
  }

  async function warm(m: CacheManager) {
    for (let i = 0; i < SESSIONS; i += 500) {
      await Promise.all(Array.from({ length: 500 }, (_, j) => m.setSession(`s${i + j}`, { user: i + j })))
    }
    expect(await readAll(m)).toBe(0)
    expect(m.metrics().nearCache.entries).toBe(SESSIONS)
  }

  it('sessions read before a SIGKILL stay readable through the outage', async () => {
    const s = await server()
    const m = manager({ url: s.url, keyPrefix: uniquePrefix('fsk') })
    await warm(m)
    await s.kill()
    const started = Date.now()
    const nulls = await readAll(m)
    const near = m.metrics().nearCache
    console.log(
      `fail-safe (SIGKILL): ${SESSIONS} sessions read in ${Date.now() - started} ms, ${nulls} null, failSafeHits ${near.failSafeHits}`,
    )
    expect(nulls).toBe(0)
    expect(m.metrics().mode).toBe('memory')
    expect(near.failSafeHits).toBeGreaterThan(0)
    const text = toPrometheusText(m.metrics())
    expect(text).toContain(`\nferrocache_near_cache_fail_safe_hits_total ${near.failSafeHits}\n`)
    expect(text).toContain(`\nferrocache_near_cache_entries ${SESSIONS}\n`)
    expect(text).toContain('\nferrocache_near_cache_tracking_active 0\n')
  }, 60_000)

  it('and through a SIGSTOP (hung server)', async () => {
    const s = await server()
    const m = manager({ url: s.url, keyPrefix: uniquePrefix('fss') })
    await warm(m)
    s.pause()
    const started = Date.now()
    const nulls = await readAll(m)
    const took = Date.now() - started
    s.resume()
    console.log(`fail-safe (SIGSTOP): ${SESSIONS} sessions read in ${took} ms, ${nulls} null`)
    expect(nulls).toBe(0)
  }, 60_000)

  it('entries older than failSafeMs are not served', async () => {
    const s = await server()
    const m = manager({ url: s.url, keyPrefix: uniquePrefix('fsx'), nearCache: { failSafeMs: 800 } })
    await m.setSession('a', { a: 1 })
    expect(await m.getSession('a')).toEqual({ a: 1 })
    await s.kill()
    await waitUntil('memory mode', async () => {
      await m.getSession('a')
      return m.metrics().mode === 'memory'
    })
    expect(await m.getSession('a')).toEqual({ a: 1 })
    await sleep(1000)
    expect(await m.getSession('a')).toBeNull()
  }, 30_000)

  it('with the near cache off, behaviour is as without one (no fail-safe)', async () => {
    const s = await server()
    const m = manager({ url: s.url, keyPrefix: uniquePrefix('off'), nearCache: { enabled: false } })
    await m.setSession('a', { a: 1 })
    expect(await m.getSession('a')).toEqual({ a: 1 })
    expect(m.metrics().nearCache).toMatchObject({ enabled: false, hits: 0, tracking: 'off' })
    expect((await m.health()).nearCache).toMatchObject({ enabled: false, tracking: 'off' })
    await s.kill()
    expect(await m.getSession('a')).toBeNull()
  })
})

describe('near cache: options', () => {
  it('are checked with coded errors', () => {
    for (const nearCache of [
      { maxBytes: 10 },
      { failSafeMs: -1 },
      { failSafeMs: 'soon' },
      { enabled: 'yes' },
      { maxByte: 1 },
    ]) {
      expect(() => createCacheManager({ url: 'redis://127.0.0.1:1', nearCache } as CacheOptions)).toThrow(
        expect.objectContaining({ code: 'ERR_INVALID_ARG' }),
      )
    }
    expect(() => createCacheManager({ url: 'memory://', nearCache: { enabled: true } })).toThrow(/memory:\/\//)
  })
})

describe('near cache: Redis Cluster', () => {
  let cluster: ClusterSetup
  beforeAll(async () => {
    cluster = await startCluster()
  }, 60_000)
  afterAll(async () => {
    await cluster?.stop()
  })

  async function seenWithin(m: CacheManager, key: string, value: unknown, ms = 5000): Promise<number> {
    const started = process.hrtime.bigint()
    await waitUntil(
      `${key} = ${JSON.stringify(value)}`,
      async () => JSON.stringify(await m.getCachedQuery(key)) === JSON.stringify(value),
      ms,
    )
    return Number(process.hrtime.bigint() - started) / 1000
  }

  it('external writes reach the L1 of every master; a master failover moves the tracking to the promoted replica', async () => {
    const prefix = uniquePrefix('cl')
    const m = manager({ cluster: { nodes: cluster.urls }, keyPrefix: prefix, queryIndex: false, commandTimeoutMs: 500 })
    const io = new IoCluster(cluster.nodes.map((n) => ({ host: '127.0.0.1', port: n.port })))
    try {
      const keys = Array.from({ length: 30 }, (_, i) => `c${i}`)
      for (const k of keys) await m.cacheQueryResult(k, { v: 0 })
      await waitUntil('tracking', async () => {
        for (const k of keys) await m.getCachedQuery(k)
        return m.metrics().nearCache.tracking === 'active' && m.metrics().nearCache.hits > 0
      })
      const lags: number[] = []
      for (const k of keys) {
        await io.set(`${prefix}q:${k}`, JSON.stringify({ v: 1 }))
        lags.push(await seenWithin(m, k, { v: 1 }))
      }
      const epochs = m.metrics().nearCache.trackingEpochs
      // kill the master of the first key; the cluster promotes its replica
      const victim = await cluster.masterOf(`${prefix}q:${keys[0]}`)
      await cluster.nodes.find((n) => n.port === victim)!.kill()
      await cluster.waitOk()
      await waitUntil(
        'back on Redis with tracking',
        async () => {
          for (const k of keys) await m.getCachedQuery(k)
          const near = m.metrics().nearCache
          return m.metrics().mode === 'redis' && near.tracking === 'active' && near.trackingEpochs > epochs
        },
        30_000,
      )
      for (const k of keys) await m.getCachedQuery(k) // read (and installed) again
      const after: number[] = []
      for (const k of keys) {
        await io.set(`${prefix}q:${k}`, JSON.stringify({ v: 2 }))
        after.push(await seenWithin(m, k, { v: 2 }))
      }
      lags.sort((a, b) => a - b)
      after.sort((a, b) => a - b)
      console.log(
        `near cache on a Cluster: external write seen after µs p50 ${pct(lags, 50)}, max ${lags[lags.length - 1]}; ` +
          `after the failover p50 ${pct(after, 50)}, max ${after[after.length - 1]}; ${JSON.stringify(m.metrics().nearCache)}`,
      )
      expect(lags[lags.length - 1]).toBeLessThan(50_000)
      expect(after[after.length - 1]).toBeLessThan(50_000)
    } finally {
      io.disconnect()
    }
  }, 90_000)
})
