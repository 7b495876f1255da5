// Per-tenant byte budget of the in-process store and per-tenant metrics:
// a noisy tenant evicts only its own entries; hits, misses, hit rate, entries
// invalidated and bytes held are counted per tenant, with a bounded number of
// tenants tracked one by one and the rest aggregated.

import { createCacheManager, CacheManager, toPrometheusText } from '..'
import { expectReject, modes, useManagers } from './helpers/modes'
import { uniquePrefix } from './helpers/redis-server'
import { waitFor } from './helpers/traffic'

const KIB = 1024
const MIB = 1024 * KIB
const payload = (tag: string, i: number) => ({ tag, i, pad: 'x'.repeat(900) }) // ~1 KB of JSON

// A store of 2 MiB in which one tenant may hold 256 KiB; values up to 16 KiB.
const BUDGET = { fallback: { maxBytes: 2 * MIB, maxBytesPerTenant: 256 * KIB }, limits: { maxValueBytes: 16 * KIB } }

async function writeNoisy(m: CacheManager, count: number): Promise<void> {
  const noisy = m.tenant('noisy')
  for (let i = 0; i < count; i += 500) {
    const batch = []
    for (let j = i; j < Math.min(count, i + 500); j++) batch.push(noisy.setSession(`s${j}`, payload('noisy', j)))
    await Promise.all(batch)
  }
}

describe('per-tenant byte budget, memory:// mode', () => {
  const managers: CacheManager[] = []
  const make = (extra = {}) => {
    const m = createCacheManager({ url: 'memory://', ...BUDGET, ...extra })
    managers.push(m)
    return m
  }
  afterEach(async () => {
    await Promise.all(managers.splice(0).map((m) => m.close()))
  })

  it('a tenant writing far past its share (and past the whole store) evicts only its own entries', async () => {
    const m = make()
    const quiet = m.tenant('quiet')
    for (let i = 0; i < 100; i++) await quiet.setSession(`s${i}`, payload('quiet', i))
    for (let i = 0; i < 50; i++) await m.cacheQueryResult(`own${i}`, payload('manager', i))
    const quietBefore = quiet.metrics().memory

    await writeNoisy(m, 5000) // ~5 MB: 20x its share, 2.5x the whole store

    for (let i = 0; i < 100; i++) await expect(quiet.getSession(`s${i}`)).resolves.toEqual(payload('quiet', i))
    for (let i = 0; i < 50; i++) await expect(m.getCachedQuery(`own${i}`)).resolves.toEqual(payload('manager', i))
    expect(quiet.metrics().memory).toEqual(quietBefore)

    const noisy = m.tenant('noisy').metrics().memory
    expect(noisy.fallbackMaxBytes).toBe(256 * KIB)
    expect(noisy.fallbackBytes).toBeGreaterThan(128 * KIB)
    expect(noisy.fallbackBytes).toBeLessThanOrEqual(256 * KIB)
    // the ledger agrees with what is readable
    let readable = 0
    for (let i = 0; i < 5000; i++) if ((await m.tenant('noisy').getSession(`s${i}`)) !== null) readable++
    expect(readable).toBe(noisy.fallbackEntries)
    expect(readable).toBeLessThan(5000)
    // the latest write of the noisy tenant is there: it evicts its cold entries, not the new one
    await expect(m.tenant('noisy').getSession('s4999')).resolves.toEqual(payload('noisy', 4999))
    expect(m.metrics().memory.fallbackBytes).toBeLessThanOrEqual(2 * MIB)
  })

  it('without the option the default share is 1/8 of the store', () => {
    const m = make({ fallback: { maxBytes: 8 * MIB }, limits: { maxValueBytes: 16 * KIB } })
    expect(m.tenant('a').metrics().memory.fallbackMaxBytes).toBe(MIB)
  })

  it('bytes held follow writes, deletes and invalidations', async () => {
    const m = make()
    const a = m.tenant('a')
    expect(a.metrics().memory).toEqual({
      fallbackBytes: 0,
      fallbackEntries: 0,
      fallbackMaxBytes: 256 * KIB,
      nearCacheBytes: 0,
      nearCacheEntries: 0,
    })
    await a.cacheQueryResult('orders:1', 'x'.repeat(100))
    await a.cacheQueryResult('orders:2', 'x'.repeat(100))
    await a.setSession('s', 'x'.repeat(100))
    const held = a.metrics().memory
    expect(held.fallbackEntries).toBe(3)
    expect(held.fallbackBytes).toBeGreaterThan(3 * 102)
    await a.deleteSession('s')
    expect(a.metrics().memory.fallbackEntries).toBe(2)
    await a.invalidateCache('orders:')
    expect(a.metrics().memory).toEqual({
      fallbackBytes: 0,
      fallbackEntries: 0,
      fallbackMaxBytes: 256 * KIB,
      nearCacheBytes: 0,
      nearCacheEntries: 0,
    })
  })

  it('bad budgets are refused at construction with ERR_INVALID_ARG', () => {
    for (const bad of [0, -1, 0.5, NaN, 100, 3 * MIB]) {
      expect(() =>
        createCacheManager({ url: 'memory://', ...BUDGET, fallback: { maxBytes: 2 * MIB, maxBytesPerTenant: bad } }),
      ).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG' }))
    }
    for (const bad of [-1, 0.5, 1e9, NaN]) {
      expect(() => createCacheManager({ url: 'memory://', tenantMetricsLimit: bad })).toThrow(
        expect.objectContaining({ code: 'ERR_INVALID_ARG' }),
      )
    }
  })

  it('an entry larger than the tenant share is refused with ERR_TOO_LARGE and changes nothing', async () => {
    const m = make({
      fallback: { maxBytes: 2 * MIB, maxBytesPerTenant: 64 * KIB },
      limits: { maxValueBytes: 16 * KIB },
    })
    await m.tenant('a').setSession('s', 'small')
    // 16 KiB fits the share of 64 KiB: accepted
    await m.tenant('a').setSession('big', 'x'.repeat(16 * KIB - 10))
    await expect(m.tenant('a').getSession('s')).resolves.toBe('small')
  })
})

describe('per-tenant byte budget, Redis mode during an outage', () => {
  const [, redis] = modes()
  const make = useManagers(redis)

  it('the quiet tenant keeps its outage writes readable; after recovery Redis has every write of both tenants', async () => {
    const keyPrefix = uniquePrefix('budget')
    const m = make({ ...BUDGET, keyPrefix, fallback: { maxBytes: 8 * MIB, maxBytesPerTenant: 256 * KIB } })
    await m.tenant('quiet').setSession('before', 'kept in redis')
    m.simulateOutage({ mode: 'refuse' })
    const quiet = m.tenant('quiet')
    for (let i = 0; i < 100; i++) await quiet.setSession(`s${i}`, payload('quiet', i))
    await writeNoisy(m, 3000) // ~3 MB: far past its 256 KiB share, within the journal's 8 MiB
    expect(m.tenant('noisy').metrics().memory.fallbackBytes).toBeLessThanOrEqual(256 * KIB)
    for (let i = 0; i < 100; i++) await expect(quiet.getSession(`s${i}`)).resolves.toEqual(payload('quiet', i))
    // evicted from the in-process store, the noisy tenant's writes are still journaled (nothing lost)
    await expect(m.tenant('noisy').getSession('s0')).resolves.toEqual(payload('noisy', 0))

    m.endSimulatedOutage()
    await waitFor('back on redis', () => m.metrics().mode === 'redis' && m.metrics().journalDepth === 0, 10_000)
    const raw = redis.raw()!
    const keys = await raw.keysStartingWith(keyPrefix)
    expect(keys.filter((k) => k.includes(':quiet:s:')).length).toBe(101)
    expect(keys.filter((k) => k.includes(':noisy:s:')).length).toBe(3000)
    for (const i of [0, 1499, 2999])
      await expect(m.tenant('noisy').getSession(`s${i}`)).resolves.toEqual(payload('noisy', i))
  })

  it('past the fallback budget the journal drops the noisy tenant namespace, never the quiet one', async () => {
    const m = make({ ...BUDGET, fallback: { maxBytes: 2 * MIB, maxBytesPerTenant: 256 * KIB } })
    const quiet = m.tenant('quiet')
    const noisy = m.tenant('noisy')
    await noisy.setSession('before', 'old')
    m.simulateOutage({ mode: 'refuse' })
    for (let i = 0; i < 100; i++) await quiet.setSession(`s${i}`, payload('quiet', i))
    await writeNoisy(m, 5000) // ~5 MB of outage writes against a 2 MiB budget
    for (let i = 0; i < 100; i++) await expect(quiet.getSession(`s${i}`)).resolves.toEqual(payload('quiet', i))
    // the journal stayed within the budget by wiping the noisy namespace (later writes are kept after the wipe)
    expect(m.metrics().journalDepth).toBeLessThan(2500)
    await expect(noisy.getSession('s4999')).resolves.toEqual(payload('noisy', 4999))

    m.endSimulatedOutage()
    await waitFor('back on redis', () => m.metrics().mode === 'redis' && m.metrics().journalDepth === 0, 10_000)
    for (let i = 0; i < 100; i++) await expect(quiet.getSession(`s${i}`)).resolves.toEqual(payload('quiet', i))
    await expect(noisy.getSession('before')).resolves.toBeNull() // wiped in Redis too: nothing stale
    await expect(noisy.getSession('s4999')).resolves.toEqual(payload('noisy', 4999))
  })
})

describe.each(modes())('per-tenant metrics ($name mode)', (mode) => {
  const make = useManagers(mode)

  it('hits, misses, hit rate and invalidated entries are exact per tenant; the manager own keys are not a tenant', async () => {
    const m = make()
    const a = m.tenant('a')
    const b = m.tenant('b')
    await a.cacheQueryResult('orders:1', 1)
    await a.cacheQueryResult('orders:2', 2)
    await a.cacheQueryResult('users:1', 3)
    await a.getCachedQuery('orders:1') // hit
    await a.getCachedQuery('nope') // miss
    await a.getSession('nope') // miss
    await b.setSession('s', 1)
    await b.getSession('s') // hit
    await m.getSession('s') // manager: not counted for any tenant
    await expect(a.invalidateCache('orders:')).resolves.toBe(2)
    await b.invalidateAll()

    expect(a.metrics()).toMatchObject({
      tenantId: 'a',
      tracked: true,
      hits: 1,
      misses: 2,
      hitRate: 1 / 3,
      invalidated: 2,
    })
    expect(b.metrics()).toMatchObject({ tenantId: 'b', tracked: true, hits: 1, misses: 0, hitRate: 1, invalidated: 0 })
    const all = m.metrics()
    expect(all.tenants.tracked).toBe(2)
    expect(all.tenants.limit).toBe(1000)
    expect(all.tenants.list.map((t) => t.tenantId)).toEqual(['a', 'b'])
    expect(all.tenants.other).toEqual({
      hits: 0,
      misses: 0,
      hitRate: 0,
      invalidated: 0,
      rateLimitAllowed: 0,
      rateLimitLimited: 0,
    })
    expect(all.hits).toBe(2)
    expect(all.misses).toBe(3) // the manager's own miss too
    if (mode.name === 'memory') expect(a.metrics().memory.fallbackEntries).toBe(1)
    else expect(a.metrics().memory.fallbackEntries).toBe(0) // Redis holds it; the in-process store only outage data
  })

  it('at most tenantMetricsLimit tenants are tracked; the rest are summed in tenants.other', async () => {
    const m = make({ tenantMetricsLimit: 3 })
    const ids = ['t0', 't1', 't2', 't3', 't4', 't5']
    for (const id of ids) {
      await m.tenant(id).getSession('x') // miss
      await m.tenant(id).setSession('x', 1)
      await m.tenant(id).getSession('x') // hit
    }
    const all = m.metrics()
    expect(all.tenants).toMatchObject({
      tracked: 3,
      limit: 3,
      other: { hits: 3, misses: 3, hitRate: 0.5, invalidated: 0, rateLimitAllowed: 0, rateLimitLimited: 0 },
    })
    expect(all.tenants.list.map((t) => t.tenantId)).toEqual(['t0', 't1', 't2'])
    expect(m.tenant('t5').metrics()).toMatchObject({ tenantId: 't5', tracked: false, hits: 0, misses: 0 })
    const total =
      all.tenants.list.reduce((n, t) => n + t.hits + t.misses, 0) + all.tenants.other.hits + all.tenants.other.misses
    expect(total).toBe(12)
  })

  it('tenantMetricsLimit 0 tracks no tenant one by one', async () => {
    const m = make({ tenantMetricsLimit: 0 })
    await m.tenant('a').getSession('x')
    expect(m.metrics().tenants).toMatchObject({ tracked: 0, list: [], other: { misses: 1 } })
  })

  it('Prometheus: one series per tracked tenant, hostile tenant ids escaped', async () => {
    const m = make()
    const hostile = 'a"b\\c\nd'
    await m.tenant(hostile).getSession('x')
    await m.tenant('plain').setSession('x', 1)
    await m.tenant('plain').getSession('x')
    const text = toPrometheusText(m.metrics())
    expect(text).toContain('ferrocache_tenant_misses_total{tenant="a\\"b\\\\c\\nd"} 1')
    expect(text).toContain('ferrocache_tenant_hits_total{tenant="plain"} 1')
    expect(text).toContain('ferrocache_tenants_tracked 2')
    expect(text).toContain('ferrocache_untracked_tenant_hits_total 0')
    expect(() => toPrometheusText(m.metrics(), { labels: { tenant: 'x' } })).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_ARG' }),
    )
  })

  it('metrics: false counts nothing per tenant', async () => {
    const m = make({ metrics: false })
    await m.tenant('a').getSession('x')
    expect(m.tenant('a').metrics()).toMatchObject({ tracked: false, hits: 0, misses: 0 })
    await expectReject(() => m.tenant('a').getSession(''), TypeError, 'ERR_INVALID_ARG')
  })
})
