// rateLimit against real redis-server processes: the results and their bounds, tenants and hostile
// keys, bad input, refusals without a Redis call, several Node processes on one key (the GCRA
// bound), Redis killed or hung under 4 processes (local shares, the consumption counted back on
// recovery), fallback disabled, and a Redis Cluster with a master failover. Numbers are printed.

import { createCacheManager, RateLimitResult, toPrometheusText } from '..'
import { RawRedis, sleep, startRedisOn, uniquePrefix } from './helpers/redis-server'
import { fixtures } from './helpers/fixtures'
import { startCluster } from './helpers/topology'
import { runNode } from './helpers/child'

const { managers, servers, manager, server } = fixtures()

/** The calls of EVALSHA (the check script) the server has run. */
async function scriptCalls(port: number): Promise<number> {
  const raw = new RawRedis(port)
  try {
    const stats = await raw.client.info('commandstats')
    const line = stats.split('\r\n').find((l) => l.startsWith('cmdstat_evalsha:'))
    return line ? Number(/calls=(\d+)/.exec(line)![1]) : 0
  } finally {
    await raw.close()
  }
}

describe('rateLimit', () => {
  it('a burst, then refusals with the time to wait; the refusals cost no Redis call', async () => {
    const s = await server()
    const m = manager({ url: s.url, keyPrefix: uniquePrefix('rl') })
    const policy = { limit: 5, windowMs: 60_000 }
    const results: RateLimitResult[] = []
    for (let i = 0; i < 6; i++) results.push(await m.rateLimit('1.2.3.4', policy))
    expect(results.map((r) => r.allowed)).toEqual([true, true, true, true, true, false])
    expect(results.map((r) => r.remaining)).toEqual([4, 3, 2, 1, 0, 0])
    expect(results[0]).toMatchObject({ limit: 5, retryAfterMs: 0 })
    expect(results[0].resetMs).toBeGreaterThan(11_900)
    expect(results[0].resetMs).toBeLessThanOrEqual(12_000)
    expect(results[5].retryAfterMs).toBeGreaterThan(11_000)
    expect(results[5].retryAfterMs).toBeLessThanOrEqual(12_000)
    const before = await scriptCalls(s.port)
    const flood = await Promise.all(Array.from({ length: 2000 }, () => m.rateLimit('1.2.3.4', policy)))
    expect(flood.every((r) => !r.allowed)).toBe(true)
    expect(await scriptCalls(s.port)).toBe(before)
    const metrics = m.metrics().rateLimit
    expect(metrics).toMatchObject({ allowed: 5, limited: 2001 })
    expect(metrics.refusedLocally).toBeGreaterThanOrEqual(2000)
    const text = toPrometheusText(m.metrics())
    expect(text).toContain('\nferrocache_rate_limit_allowed_total 5\n')
    expect(text).toContain('\nferrocache_rate_limit_limited_total 2001\n')
  })

  it('burst and cost; the checks of one tick share a pipeline and count exactly', async () => {
    const s = await server()
    const m = manager({ url: s.url, keyPrefix: uniquePrefix('rl') })
    const burst = await Promise.all(
      Array.from({ length: 10 }, () => m.rateLimit('k', { limit: 100, windowMs: 60_000, burst: 3 })),
    )
    expect(burst.filter((r) => r.allowed)).toHaveLength(3)
    const costly = await m.rateLimit('c', { limit: 10, windowMs: 60_000, cost: 4 })
    expect(costly).toMatchObject({ allowed: true, remaining: 6 })
    expect(await m.rateLimit('c', { limit: 10, windowMs: 60_000, cost: 7 })).toMatchObject({
      allowed: false,
      remaining: 6,
    })
    expect(await m.rateLimit('c', { limit: 10, windowMs: 60_000, cost: 6 })).toMatchObject({
      allowed: true,
      remaining: 0,
    })
  })

  it('tenants and policies count separately; hostile keys and tenant ids stay apart', async () => {
    const s = await server()
    const prefix = uniquePrefix('rlt')
    const m = manager({ url: s.url, keyPrefix: prefix })
    const policy = { limit: 2, windowMs: 60_000 }
    const keys = ['k', 'k*', '*', 'g:k', 't:1:a:k', '2:60000:2:k', 'é', '\u0000', 'a'.repeat(4000)]
    const tenants = ['a', 'a:', 'g', 'r:g:', '4:acme', '*', 'é']
    for (const key of keys) {
      expect((await m.rateLimit(key, policy)).remaining).toBe(1)
      for (const t of tenants) expect((await m.tenant(t).rateLimit(key, policy)).remaining).toBe(1)
      expect((await m.rateLimit(key, { limit: 3, windowMs: 60_000 })).remaining).toBe(2)
    }
    expect(m.tenant('a').metrics()).toMatchObject({ rateLimitAllowed: keys.length, rateLimitLimited: 0 })
    // every limiter is one key under the prefix, none of them in the near cache's namespaces
    const raw = new RawRedis(s.port)
    const names = await raw.keysStartingWith(prefix)
    await raw.close()
    const limiters = names.filter((n) => n.startsWith(`${prefix}r:`) && n !== `${prefix}r:p`)
    expect(limiters).toHaveLength(keys.length * (2 + tenants.length))
  })

  it('bad input rejects with ERR_INVALID_ARG and counts nothing', async () => {
    const s = await server()
    const m = manager({ url: s.url, keyPrefix: uniquePrefix('rlb') })
    const bad: unknown[] = [
      undefined,
      null,
      5,
      {},
      { limit: 10 },
      { windowMs: 1000 },
      { limit: 0, windowMs: 1000 },
      { limit: -1, windowMs: 1000 },
      { limit: 1.5, windowMs: 1000 },
      { limit: NaN, windowMs: 1000 },
      { limit: Infinity, windowMs: 1000 },
      { limit: '10', windowMs: 1000 },
      { limit: 10, windowMs: 0 },
      { limit: 10, windowMs: 1000, burst: 0 },
      { limit: 10, windowMs: 1000, cost: 0 },
      { limit: 10, windowMs: 1000, cost: 11 },
      { limit: 10, windowMs: 1000, burst: 2, cost: 3 },
      { limit: 1e10, windowMs: 1000 },
      { limit: 10, windowMs: 1000, window: 5 },
    ]
    for (const options of bad) {
      const err = await m.rateLimit('k', options as never).catch((e) => e)
      expect(err).toBeInstanceOf(Error)
      expect(err.code).toBe('ERR_INVALID_ARG')
    }
    for (const key of ['', 5, null, 'a\ud800b']) {
      const err = await m.rateLimit(key as never, { limit: 1, windowMs: 1 }).catch((e) => e)
      expect(err.code).toBe('ERR_INVALID_ARG')
    }
    expect((await m.rateLimit('x'.repeat(5000), { limit: 1, windowMs: 1 }).catch((e) => e)).code).toBe('ERR_TOO_LARGE')
    expect(m.metrics().rateLimit).toMatchObject({ allowed: 0, limited: 0 })
    const raw = new RawRedis(s.port)
    expect(await raw.client.dbsize()).toBe(0)
    await raw.close()
  })

  it('memory:// limits in-process with the same results', async () => {
    const m = manager({ url: 'memory://' })
    const r = await Promise.all(Array.from({ length: 4 }, () => m.rateLimit('k', { limit: 3, windowMs: 60_000 })))
    expect(r.map((x) => x.allowed)).toEqual([true, true, true, false])
    expect(r[3].retryAfterMs).toBeGreaterThan(19_000)
  })

  it('fallback disabled: an outage rejects with ERR_REDIS_UNAVAILABLE', async () => {
    const s = await server()
    const m = manager({ url: s.url, keyPrefix: uniquePrefix('rlf'), fallback: { enabled: false } })
    expect((await m.rateLimit('k', { limit: 3, windowMs: 1000 })).allowed).toBe(true)
    await s.kill()
    const err = await m.rateLimit('k', { limit: 3, windowMs: 1000 }).catch((e) => e)
    expect(err.code).toBe('ERR_REDIS_UNAVAILABLE')
  })

  it('one process: 5 allowed before a SIGKILL, at most the 15 left during it (limit 20 per window)', async () => {
    const s = await server()
    const prefix = uniquePrefix('rl1')
    const m = manager({ url: s.url, keyPrefix: prefix })
    const policy = { limit: 20, windowMs: 600_000 }
    for (let i = 0; i < 5; i++) expect((await m.rateLimit('k', policy)).allowed).toBe(true)
    // the heartbeat has counted this process
    for (let i = 0; i < 100 && m.metrics().rateLimit.processes !== 1; i++) await sleep(20)
    expect(m.metrics().rateLimit.processes).toBe(1)
    await s.kill()
    let during = 0
    for (let i = 0; i < 40; i++) during += (await m.rateLimit('k', policy)).allowed ? 1 : 0
    expect(during).toBe(15)
    expect(m.metrics().mode).toBe('memory')
    expect(m.metrics().rateLimit.localDecisions).toBeGreaterThan(0)
    expect(m.metrics().rateLimit.pendingSync).toBe(1)
    // restarted empty: on recovery the 15 are counted into Redis
    const back = await startRedisOn(s.port)
    if (back === null) throw new Error('the port was taken')
    servers.push(back)
    for (let i = 0; i < 500 && (m.metrics().mode !== 'redis' || m.metrics().rateLimit.pendingSync > 0); i++)
      await sleep(20)
    expect(m.metrics().rateLimit.pendingSync).toBe(0)
    const raw = new RawRedis(back.port)
    const pttl = await raw.pttl(`${prefix}r:g:20:600000:20:k`)
    await raw.close()
    // 15 units of 30 s
    expect(pttl).toBeGreaterThan(440_000)
    expect(pttl).toBeLessThanOrEqual(450_001)
    // and another process sharing Redis is refused
    expect(
      (await manager({ url: back.url, keyPrefix: prefix }).rateLimit('k', { limit: 20, windowMs: 600_000, cost: 6 }))
        .allowed,
    ).toBe(false)
  }, 30_000)
})

// ---------------------------------------------------------------------------------------------
// Several Node processes on one key

// A process: checks `key` from `callers` concurrent callers between startAt and startAt +
// durationMs (epoch ms), and prints when each allowed check resolved and when checks ran.
const WORKER = `
const { createCacheManager } = require('.')
const cfg = JSON.parse(process.env.CFG)
const m = createCacheManager({ url: cfg.url, keyPrefix: cfg.prefix, commandTimeoutMs: 250, connectTimeoutMs: 250 })
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
;(async () => {
  await m.rateLimit('warm', { limit: 1e6, windowMs: 1000 })
  while (m.metrics().rateLimit.processes < cfg.processes) await sleep(20)
  console.log('ready')
  while (Date.now() < cfg.startAt) await sleep(1)
  const end = cfg.startAt + cfg.durationMs
  const allowedAt = []
  let checks = 0, first = Infinity, last = 0
  await Promise.all(Array.from({ length: cfg.callers }, async () => {
    while (Date.now() < end) {
      const t = Date.now()
      first = Math.min(first, t)
      last = Math.max(last, t)
      const r = await m.rateLimit(cfg.key, cfg.policy)
      checks++
      if (r.allowed) allowedAt.push(Date.now())
      if (cfg.pauseMs) await sleep(cfg.pauseMs)
    }
  }))
  console.log(JSON.stringify({ allowedAt, checks, first, last, rateLimit: m.metrics().rateLimit }))
  await m.close()
  console.log('done')
})()
`

interface WorkerResult {
  allowedAt: number[]
  checks: number
  first: number
  last: number
  rateLimit: { processes: number; localDecisions: number; refusedLocally: number; pendingSync: number }
}

interface Fleet {
  results: Promise<WorkerResult[]>
  ready: Promise<void>
}

function fleet(count: number, cfg: Record<string, unknown>, deadlineMs: number): Fleet {
  let readyCount = 0
  let allReady: () => void = () => {}
  const ready = new Promise<void>((resolve) => (allReady = resolve))
  const runs = Array.from({ length: count }, () =>
    runNode(WORKER, {
      env: { CFG: JSON.stringify({ ...cfg, processes: count }) },
      deadlineMs,
      onLine: (line) => {
        if (line === 'ready' && ++readyCount === count) allReady()
      },
    }),
  )
  const results = Promise.all(runs).then((done) =>
    done.map((run) => {
      const line = run.stdout.split('\n').find((l) => l.startsWith('{'))
      if (!line) throw new Error(`a worker printed no result (code ${run.code}): ${run.stderr.slice(-2000)}`)
      return JSON.parse(line) as WorkerResult
    }),
  )
  return { results, ready }
}

describe('rateLimit across processes', () => {
  it('4 processes x 50 callers on one key for 3 s: allowed within the GCRA bound and at least 99 % of it', async () => {
    const s = await server()
    const policy = { limit: 500, windowMs: 1000 } // 2 ms per check, burst 500
    const startAt = Date.now() + 4000
    const f = fleet(
      4,
      { url: s.url, prefix: uniquePrefix('rlx'), key: 'api', policy, callers: 50, startAt, durationMs: 3000 },
      30_000,
    )
    await f.ready
    const results = await f.results
    const allowed = results.reduce((n, r) => n + r.allowedAt.length, 0)
    const span = Math.max(...results.map((r) => r.last)) - Math.min(...results.map((r) => r.first))
    const bound = policy.limit + Math.floor(span / (policy.windowMs / policy.limit)) + 1
    const checks = results.reduce((n, r) => n + r.checks, 0)
    console.log(
      `4 processes x 50 callers, ${span} ms: ${allowed} allowed of ${checks} checks; GCRA bound ${bound} ` +
        `(${((100 * allowed) / bound).toFixed(2)} %); refused in-process ${results.map((r) => r.rateLimit.refusedLocally).join('/')}`,
    )
    expect(results.every((r) => r.rateLimit.processes === 4)).toBe(true)
    expect(allowed).toBeLessThanOrEqual(bound)
    expect(allowed).toBeGreaterThanOrEqual(Math.floor(0.99 * bound))
  }, 60_000)

  async function outage(kind: 'kill' | 'pause') {
    const s = await server()
    const policy = { limit: 100, windowMs: 1000 } // 10 ms per check, burst 100
    const startAt = Date.now() + 4000
    const killAt = startAt + 2000
    const backAt = killAt + 3000
    const durationMs = 7000
    const f = fleet(
      4,
      { url: s.url, prefix: uniquePrefix('rlo'), key: 'api', policy, callers: 8, startAt, durationMs, pauseMs: 2 },
      40_000,
    )
    await f.ready
    while (Date.now() < killAt) await sleep(5)
    if (kind === 'kill') await s.kill()
    else s.pause()
    while (Date.now() < backAt) await sleep(5)
    if (kind === 'kill') {
      const back = await startRedisOn(s.port)
      if (back === null) throw new Error('the port was taken')
      servers.push(back)
    } else s.resume()
    const results = await f.results
    const end = startAt + durationMs
    const all = results.flatMap((r) => r.allowedAt).sort((a, b) => a - b)
    const inSpan = all.filter((t) => t >= killAt && t <= end).length
    const before = all.filter((t) => t >= killAt - 1000 && t < killAt).length
    const span = end - killAt
    const rate = (policy.limit * span) / policy.windowMs
    const bound = policy.limit + rate
    console.log(
      `outage (${kind}) under 4 processes: ${before} allowed in the second before it; over the outage and the ` +
        `${end - backAt} ms after it (${span} ms): ${inSpan} allowed, ${(inSpan / rate).toFixed(3)}x the rate ` +
        `(${rate}), ${(inSpan / bound).toFixed(3)}x the GCRA bound (${bound}); local decisions ` +
        `${results.map((r) => r.rateLimit.localDecisions).join('/')}`,
    )
    expect(results.every((r) => r.rateLimit.localDecisions > 0)).toBe(true)
    expect(results.every((r) => r.rateLimit.pendingSync === 0)).toBe(true)
    expect(inSpan).toBeLessThanOrEqual(1.1 * bound)
    // it kept admitting during the outage (each process its share), not nothing
    const during = all.filter((t) => t >= killAt + 500 && t < backAt).length
    expect(during).toBeGreaterThan(0.5 * ((policy.limit * (backAt - killAt - 500)) / policy.windowMs))
    return inSpan
  }

  it('Redis SIGKILLed for 3 s under 4 processes: the outage and the window after it stay within 1.1x the bound', async () => {
    await outage('kill')
  }, 60_000)

  it('the same with Redis hung (SIGSTOP)', async () => {
    await outage('pause')
  }, 60_000)
})

describe('rateLimit on a Redis Cluster', () => {
  it('one key of a limiter lives on one slot; checks stay correct across a master failover', async () => {
    const cluster = await startCluster()
    try {
      const prefix = uniquePrefix('rlc')
      const m = manager({ cluster: { nodes: cluster.urls }, keyPrefix: prefix, commandTimeoutMs: 1000 })
      const policy = { limit: 10, windowMs: 600_000 }
      const first = await Promise.all(Array.from({ length: 6 }, () => m.rateLimit('api', policy)))
      expect(first.filter((r) => r.allowed)).toHaveLength(6)
      // a limiter is one key: one slot, one master
      const limiter = `${prefix}r:g:10:600000:10:api`
      const victim = await cluster.masterOf(limiter)
      await sleep(500) // the replica has the count
      await cluster.nodes.find((n) => n.port === victim)!.kill()
      let allowed = 0
      const until = Date.now() + 8000
      while (Date.now() < until) {
        allowed += (await Promise.all(Array.from({ length: 4 }, () => m.rateLimit('api', policy)))).filter(
          (r) => r.allowed,
        ).length
        await sleep(50)
      }
      console.log(
        `cluster failover: ${allowed} allowed after it (4 were left); mode ${m.metrics().mode}, ` +
          `local decisions ${m.metrics().rateLimit.localDecisions}`,
      )
      expect(await cluster.masterOf(limiter)).not.toBe(victim)
      expect(m.metrics().mode).toBe('redis')
      expect(6 + allowed).toBeLessThanOrEqual(10)
      expect(allowed).toBe(4)
    } finally {
      await Promise.all(managers.splice(0).map((m) => m.close()))
      await cluster.stop()
    }
  }, 120_000)
})
