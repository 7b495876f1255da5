// Redis Cluster (3 masters + 3 replicas) and Sentinel (1 master, 1 replica, 3 sentinels)
// started by this file: prefix invalidation over every master, topology in health() and
// metrics(), and a master SIGKILLed (by pid) under live traffic — no call rejected,
// recovery onto the promoted replica, nothing invalidated during the failover served again.
// (The mode-parameterized suites also run on a shared cluster and sentinel set-up.)

import { createCacheManager, CacheManager, CacheOptions } from '..'
import { uniquePrefix } from './helpers/redis-server'
import { ClusterSetup, RawCluster, SentinelSetup, startCluster, startSentinel, MASTER_NAME } from './helpers/topology'
import { queryNames, untagged } from './helpers/layout'
import { describeError, runWorkers, sleep, waitFor } from './helpers/traffic'

jest.setTimeout(90000)

const open: CacheManager[] = []
afterEach(async () => {
  await Promise.all(open.splice(0).map((m) => m.close()))
})

function manager(options: CacheOptions): CacheManager {
  const m = createCacheManager({ keyPrefix: uniquePrefix('topo'), commandTimeoutMs: 500, ...options })
  open.push(m)
  return m
}

/**
 * Kills a master under 16 workers of setSession/getSession while invalidating 'orders_'
 * during the failover; returns what happened. `kill` kills and returns the old master port.
 */
async function failoverUnderTraffic(m: CacheManager, kill: () => Promise<void>) {
  for (let i = 0; i < 200; i++) await m.cacheQueryResult(`orders_${i}`, { v: 'old' })
  let recoveredAt = 0
  m.on('recovered', () => (recoveredAt = performance.now()))
  let stop = false
  const traffic = runWorkers(
    16,
    () => stop,
    async (w, i) => {
      const id = `live_${w}_${i % 50}`
      if (i % 2 === 0) {
        await m.setSession(id, { w, i })
        return 'set'
      }
      await m.getSession(id)
      return 'get'
    },
  )
  await sleep(300)
  const killedAt = performance.now()
  await kill()
  await sleep(200)
  await m.invalidateCache('orders_')
  await m.setSession('written-during', { v: 'new' })
  expect(await m.getCachedQuery('orders_1')).toBeNull()
  await waitFor(
    'recovery',
    () => recoveredAt > 0 && m.metrics().mode === 'redis' && m.metrics().journalDepth === 0,
    40000,
    20,
  )
  await sleep(300)
  stop = true
  const records = await traffic
  const rejected = records.filter((r) => r.error !== undefined)
  const result = {
    calls: records.length,
    rejected: rejected.length,
    firstRejection: rejected.length ? describeError(rejected[0].error) : null,
    recoveredMs: Math.round(recoveredAt - killedAt),
    maxCallMs: Math.round(records.reduce((mx, r) => Math.max(mx, r.end - r.start), 0)),
  }
  console.log(`failover under traffic: ${JSON.stringify(result)}`)
  expect(result.rejected).toBe(0)
  for (let i = 0; i < 200; i++) expect(await m.getCachedQuery(`orders_${i}`)).toBeNull()
  expect(await m.getSession('written-during')).toEqual({ v: 'new' })
  return result
}

describe('Redis Cluster', () => {
  let cluster: ClusterSetup
  let raw: RawCluster
  beforeAll(async () => {
    cluster = await startCluster()
    raw = new RawCluster(cluster.nodes.map((n) => n.port))
  })
  afterAll(async () => {
    if (raw) await raw.close()
    if (cluster) await cluster.stop()
  })

  it('invalidates a prefix spread over every master, exactly the matching keys', async () => {
    const prefix = uniquePrefix('inv')
    const m = manager({ cluster: { nodes: cluster.urls }, keyPrefix: prefix })
    const acme = m.tenant('acme')
    await Promise.all(
      Array.from({ length: 600 }, async (_, i) => {
        await m.cacheQueryResult(`orders_${i}`, i)
        if (i % 6 === 0) {
          await m.cacheQueryResult(`ordersX${i}`, i)
          await acme.cacheQueryResult(`orders_${i}`, i)
        }
      }),
    )
    const perMaster = await Promise.all(
      (await raw.masters()).map(async (node) => {
        const [, keys] = await node.scan('0', 'MATCH', `${prefix}*`, 'COUNT', 10000)
        return keys.length
      }),
    )
    expect(perMaster).toHaveLength(3)
    for (const n of perMaster) expect(n).toBeGreaterThan(0)
    // every entry sits in the slot of the index sets listing it (its bucket's hash tag)
    const entries = (await raw.keysStartingWith(prefix)).filter(
      (k) => !/^(t:4:acme:)?[ix]:q\{/.test(k.slice(prefix.length)),
    )
    expect(entries).toHaveLength(800)
    for (const [i, scope] of [
      [6, undefined],
      [12, 'acme'],
    ] as const) {
      const { entry, lex } = queryNames(prefix, `orders_${i}`, { tenant: scope, cluster: true })
      expect(entries).toContain(entry)
      expect(await raw.slotOf(entry)).toBe(await raw.slotOf(lex))
      expect(await raw.client.zscore(lex, `orders_${i}`)).toBe('0')
    }
    expect(await m.invalidateCache('orders_')).toBe(600)
    const left = (await raw.keysStartingWith(prefix))
      .map(untagged)
      .filter((k) => !/^(t:4:acme:)?[ix]:q$/.test(k.slice(prefix.length)))
    expect(left).toHaveLength(200)
    expect(left.every((k) => k.startsWith(`${prefix}q:ordersX`) || k.startsWith(`${prefix}t:4:acme:q:orders_`))).toBe(
      true,
    )
    expect(await acme.invalidateAll()).toBe(100)
    expect(await m.getCachedQuery('ordersX0')).toBe(0)
  })

  it('health() and metrics() describe the nodes', async () => {
    const m = manager({ cluster: { nodes: cluster.urls } })
    expect(m.metrics().topology).toBeNull()
    const h = await m.health()
    expect(h.status).toBe('healthy')
    expect(h.redis.url).toBe(cluster.urls.join(','))
    const topo = h.redis.topology!
    expect(topo.kind).toBe('cluster')
    expect(topo.nodes).toHaveLength(6)
    expect(topo.nodes.filter((n) => n.role === 'master')).toHaveLength(3)
    expect(topo.nodes.every((n) => n.reachable)).toBe(true)
    expect(m.metrics().topology).toMatchObject({ kind: 'cluster', reachableNodes: 6 })
  })

  it('a master killed under live traffic: no rejected call, recovery onto the promoted replica, no stale entry', async () => {
    const m = manager({ cluster: { nodes: cluster.urls } })
    const victim = await cluster.masterOf(`${'x'}`) // any master will do
    const node = cluster.nodes.find((n) => n.port === victim)!
    await failoverUnderTraffic(m, () => node.kill())
    const topo = (await m.health()).redis.topology!
    expect(topo.nodes.filter((n) => n.role === 'master' && n.reachable)).toHaveLength(3)
    expect(topo.nodes.find((n) => n.address === `127.0.0.1:${victim}`)!.reachable).toBe(false)
  })
})

describe('Redis Sentinel', () => {
  let set: SentinelSetup
  beforeAll(async () => {
    set = await startSentinel()
  })
  afterAll(async () => {
    if (set) await set.stop()
  })

  it('health() and metrics() describe master, replica and sentinels', async () => {
    const m = manager({ sentinel: { nodes: set.urls, masterName: MASTER_NAME } })
    await m.setSession('s', 1)
    const h = await m.health()
    expect(h.status).toBe('healthy')
    const topo = h.redis.topology!
    expect(topo.kind).toBe('sentinel')
    expect(topo.nodes.map((n) => n.role)).toEqual(['master', 'replica', 'sentinel', 'sentinel', 'sentinel'])
    expect(topo.nodes[0].address).toBe(`127.0.0.1:${set.master.port}`)
    expect(topo.nodes.every((n) => n.reachable)).toBe(true)
    expect(m.metrics().topology).toMatchObject({ kind: 'sentinel', reachableNodes: 5 })
  })

  it('rejects bad sentinel and cluster options with ERR_INVALID_ARG', () => {
    const bad: CacheOptions[] = [
      { sentinel: { nodes: [], masterName: 'm' } },
      { sentinel: { nodes: set.urls, masterName: '' } },
      { sentinel: { nodes: ['http://x'], masterName: 'm' } },
      { cluster: { nodes: [] } },
      { cluster: { nodes: 'redis://h:1' as unknown as string[] } },
      { url: 'redis://h', cluster: { nodes: ['redis://h:1'] } },
    ]
    for (const options of bad) {
      expect(() => createCacheManager(options)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG' }))
    }
  })

  it("the master killed under live traffic: no rejected call, the sentinels' new master is used, no stale entry", async () => {
    const m = manager({ sentinel: { nodes: set.urls, masterName: MASTER_NAME } })
    await m.setSession('warm', 1)
    await failoverUnderTraffic(m, () => set.master.kill())
    expect(await set.masterPort()).toBe(set.replica.port)
    const topo = (await m.health()).redis.topology!
    const master = topo.nodes.find((n) => n.role === 'master')!
    expect(master).toEqual({ address: `127.0.0.1:${set.replica.port}`, role: 'master', reachable: true })
    // the query index was replicated with the entries: exact counts on the promoted replica
    for (let i = 0; i < 50; i++) await m.cacheQueryResult(`after_${i}`, i)
    await expect(m.invalidateCache('after_')).resolves.toBe(50)
    await expect(m.invalidateAll()).resolves.toBe(0)
  })
})
