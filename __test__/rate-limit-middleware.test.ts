// rateLimitMiddleware in real Express 4 and Express 5 apps (supertest): the RateLimit-Policy,
// RateLimit, Retry-After and legacy X-RateLimit fields, refusals, every option, validation, metrics,
// one limit shared by two managers over Redis, and an outage with and without failOpen/fallback.

import request from 'supertest'
import express5 from 'express'
import {
  createCacheManager,
  CacheManager,
  CacheOptions,
  RateLimitMiddleware,
  RateLimitMiddlewareOptions,
  RateLimitResult,
  rateLimitMiddleware,
} from '..'
import { rateLimitMiddleware as rateLimitMiddlewareFromExpressEntry } from '../lib/express'
import { RedisServer, killAllRedis, startRedis, uniquePrefix } from './helpers/redis-server'

// eslint-disable-next-line @typescript-eslint/no-require-imports
const express4: ExpressFactory = require('express4')

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type ExpressFactory = () => any

const FACTORIES: Array<[string, ExpressFactory]> = [
  ['Express 4', express4],
  ['Express 5', express5 as unknown as ExpressFactory],
]

const TOO_MANY = 'Too many requests, please try again later.\n'

// ---------------------------------------------------------------------------
// bookkeeping

const managers: CacheManager[] = []

afterEach(async () => {
  await Promise.all(managers.splice(0).map((m) => m.close()))
})

function manager(options: CacheOptions = { url: 'memory://' }): CacheManager {
  const m = createCacheManager(options)
  managers.push(m)
  return m
}

// ---------------------------------------------------------------------------
// the app under test

interface App {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  app: any
  /** How many times the route handler ran. */
  calls: { n: number }
  /** Errors that reached the Express error handler. */
  errors: Array<{ code?: string; message: string }>
}

/**
 * An app with `GET /r` behind `limiters`: the route answers 200 with `req.rateLimit` (null when
 * unset) and counts its calls; an error handler answers 503 with `{ code }`.
 */
function makeApp(express: ExpressFactory, ...limiters: RateLimitMiddleware[]): App {
  const calls = { n: 0 }
  const errors: App['errors'] = []
  const app = express()
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  app.get('/r', ...limiters, (req: any, res: any) => {
    calls.n += 1
    res.json({ rateLimit: req.rateLimit ?? null })
  })
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  app.use((err: any, _req: any, res: any, _next: any) => {
    errors.push({ code: err && err.code, message: String(err && err.message) })
    res.status(503).json({ code: err && err.code })
  })
  return { app, calls, errors }
}

/** The `RateLimit` field's list members, e.g. `[{ name: '3-in-60000ms', r: 2, t: 20 }]`. */
function parseRateLimit(field: string | undefined): Array<{ name: string; r: number; t: number }> {
  expect(typeof field).toBe('string')
  return field!.split(', ').map((member) => {
    const m = /^"([^"]+)";r=(\d+);t=(\d+)$/.exec(member)
    if (m === null) throw new Error(`malformed RateLimit member: ${member}`)
    return { name: m[1], r: Number(m[2]), t: Number(m[3]) }
  })
}

const get = (app: App, headers: Record<string, string> = {}) => request(app.app).get('/r').set(headers)

// ---------------------------------------------------------------------------

describe('rateLimitMiddleware: exports', () => {
  it('is the same function from the package root and from ferrocache/express', () => {
    expect(typeof rateLimitMiddleware).toBe('function')
    expect(rateLimitMiddlewareFromExpressEntry).toBe(rateLimitMiddleware)
  })
})

describe.each(FACTORIES)('rateLimitMiddleware in %s (memory://)', (label, express) => {
  it('runs the expected Express major version', () => {
    const major = label === 'Express 4' ? '4' : '5'
    const pkg = label === 'Express 4' ? 'express4/package.json' : 'express/package.json'
    expect(require(pkg).version.split('.')[0]).toBe(major)
  })

  it('lets allowed requests through with RateLimit-Policy, RateLimit and req.rateLimit', async () => {
    const cm = manager()
    const app = makeApp(express, rateLimitMiddleware({ limit: 3, windowMs: 60_000, manager: cm }))
    for (let i = 0; i < 3; i++) {
      const res = await get(app)
      expect(res.status).toBe(200)
      expect(res.headers['ratelimit-policy']).toBe('"3-in-60000ms";q=3;w=60')
      const body = res.body.rateLimit as RateLimitResult
      expect(body).toMatchObject({ allowed: true, limit: 3, remaining: 2 - i, retryAfterMs: 0 })
      // each request takes 20 s of the 60 s window
      expect(body.resetMs).toBeGreaterThan(20_000 * (i + 1) - 1000)
      expect(body.resetMs).toBeLessThanOrEqual(20_000 * (i + 1))
      const t = Math.ceil(body.resetMs / 1000)
      expect(res.headers['ratelimit']).toBe(`"3-in-60000ms";r=${2 - i};t=${t}`)
      expect(res.headers['retry-after']).toBeUndefined()
      expect(res.headers['x-ratelimit-limit']).toBeUndefined()
    }
    expect(app.calls.n).toBe(3)
  })

  it('refuses the request over the limit with 429, Retry-After and r=0, without calling the route', async () => {
    const cm = manager()
    const app = makeApp(express, rateLimitMiddleware({ limit: 3, windowMs: 60_000, manager: cm }))
    for (let i = 0; i < 3; i++) expect((await get(app)).status).toBe(200)
    for (let i = 0; i < 2; i++) {
      const res = await get(app)
      expect(res.status).toBe(429)
      expect(res.headers['content-type']).toBe('text/plain; charset=utf-8')
      expect(res.text).toBe(TOO_MANY)
      const retryAfter = res.headers['retry-after']
      expect(retryAfter).toMatch(/^\d+$/)
      // limit 3 per 60 s: one unit every 20 s
      expect(Number(retryAfter)).toBeGreaterThanOrEqual(19)
      expect(Number(retryAfter)).toBeLessThanOrEqual(20)
      expect(res.headers['ratelimit-policy']).toBe('"3-in-60000ms";q=3;w=60')
      expect(res.headers['ratelimit']).toBe(`"3-in-60000ms";r=0;t=${retryAfter}`)
    }
    expect(app.calls.n).toBe(3)
    expect(app.errors).toEqual([])
  })

  it('burst: admits `burst` at once, then refuses until the next unit (limit / window)', async () => {
    const cm = manager()
    const app = makeApp(express, rateLimitMiddleware({ limit: 10, windowMs: 60_000, burst: 2, manager: cm }))
    const first = await get(app)
    expect(first.status).toBe(200)
    expect(first.body.rateLimit).toMatchObject({ allowed: true, limit: 10, remaining: 1 })
    expect(first.headers['ratelimit-policy']).toBe('"10-in-60000ms";q=10;w=60')
    const second = await get(app)
    expect(second.status).toBe(200)
    expect(second.body.rateLimit).toMatchObject({ allowed: true, limit: 10, remaining: 0 })
    const third = await get(app)
    expect(third.status).toBe(429)
    // 10 per 60 s: the next unit in 6 s
    expect(Number(third.headers['retry-after'])).toBeGreaterThanOrEqual(5)
    expect(Number(third.headers['retry-after'])).toBeLessThanOrEqual(6)
    expect(third.headers['ratelimit']).toBe(`"10-in-60000ms";r=0;t=${third.headers['retry-after']}`)
    expect(app.calls.n).toBe(2)
  })

  it('cost: every request spends `cost` units', async () => {
    const cm = manager()
    const app = makeApp(express, rateLimitMiddleware({ limit: 10, windowMs: 60_000, cost: 4, manager: cm }))
    const a = await get(app)
    expect(a.status).toBe(200)
    expect(a.body.rateLimit).toMatchObject({ allowed: true, remaining: 6 })
    expect(parseRateLimit(a.headers['ratelimit'])[0].r).toBe(6)
    const b = await get(app)
    expect(b.status).toBe(200)
    expect(b.body.rateLimit).toMatchObject({ allowed: true, remaining: 2 })
    const c = await get(app)
    expect(c.status).toBe(429)
    // 2 units left, 4 needed: 2 more units, 6 s each
    expect(parseRateLimit(c.headers['ratelimit'])[0].r).toBe(2)
    expect(Number(c.headers['retry-after'])).toBeGreaterThanOrEqual(11)
    expect(Number(c.headers['retry-after'])).toBeLessThanOrEqual(12)
    expect(app.calls.n).toBe(2)
    expect(cm.metrics().rateLimit).toMatchObject({ allowed: 2, limited: 1 })
  })

  it('key(req): each user has a limit of its own', async () => {
    const cm = manager()
    const app = makeApp(
      express,
      // eslint-disable-next-line @typescript-eslint/no-explicit-any
      rateLimitMiddleware({ limit: 3, windowMs: 60_000, manager: cm, key: (req: any) => req.get('x-user') }),
    )
    for (let i = 0; i < 3; i++) expect((await get(app, { 'x-user': 'alice' })).status).toBe(200)
    expect((await get(app, { 'x-user': 'alice' })).status).toBe(429)
    const bob = await get(app, { 'x-user': 'bob' })
    expect(bob.status).toBe(200)
    expect(parseRateLimit(bob.headers['ratelimit'])[0].r).toBe(2)
    expect(bob.body.rateLimit.remaining).toBe(2)
    expect(app.calls.n).toBe(4)
  })

  it('counts by req.ip by default: different users from one address share the limit', async () => {
    const cm = manager()
    const app = makeApp(express, rateLimitMiddleware({ limit: 3, windowMs: 60_000, manager: cm }))
    const rs: number[] = []
    for (const user of ['alice', 'bob', 'carol']) {
      const res = await get(app, { 'x-user': user })
      expect(res.status).toBe(200)
      rs.push(parseRateLimit(res.headers['ratelimit'])[0].r)
    }
    expect(rs).toEqual([2, 1, 0])
    expect((await get(app, { 'x-user': 'dave' })).status).toBe(429)
    // the key counted is req.ip, in the manager's own scope
    const probe = express()
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    probe.get('/ip', (req: any, res: any) => res.json({ ip: req.ip }))
    const ip = (await request(probe).get('/ip')).body.ip
    expect(typeof ip).toBe('string')
    expect(ip.length).toBeGreaterThan(0)
    expect((await cm.rateLimit(ip, { limit: 3, windowMs: 60_000 })).allowed).toBe(false)
    expect((await cm.rateLimit('another-ip', { limit: 3, windowMs: 60_000 })).allowed).toBe(true)
  })

  it('tenant(req): the same key counts separately per tenant, in the tenant metrics', async () => {
    const cm = manager()
    const app = makeApp(
      express,
      rateLimitMiddleware({
        limit: 3,
        windowMs: 60_000,
        manager: cm,
        key: () => 'same-key',
        // eslint-disable-next-line @typescript-eslint/no-explicit-any
        tenant: (req: any) => req.get('x-tenant'),
      }),
    )
    for (let i = 0; i < 3; i++) expect((await get(app, { 'x-tenant': 'acme' })).status).toBe(200)
    expect((await get(app, { 'x-tenant': 'acme' })).status).toBe(429)
    const globex = await get(app, { 'x-tenant': 'globex' })
    expect(globex.status).toBe(200)
    expect(globex.body.rateLimit.remaining).toBe(2)
    // no tenant: the manager's own scope, yet another count
    const own = await get(app)
    expect(own.status).toBe(200)
    expect(own.body.rateLimit.remaining).toBe(2)

    expect(cm.tenant('acme').metrics()).toMatchObject({ rateLimitAllowed: 3, rateLimitLimited: 1 })
    expect(cm.tenant('globex').metrics()).toMatchObject({ rateLimitAllowed: 1, rateLimitLimited: 0 })
    expect(cm.metrics().rateLimit).toMatchObject({ allowed: 5, limited: 1 })
    expect(app.calls.n).toBe(5)
  })

  it('skip(req) returning true: not counted, no fields, no req.rateLimit', async () => {
    const cm = manager()
    const app = makeApp(
      express,
      // eslint-disable-next-line @typescript-eslint/no-explicit-any
      rateLimitMiddleware({ limit: 3, windowMs: 60_000, manager: cm, skip: (req: any) => req.get('x-skip') === '1' }),
    )
    for (let i = 0; i < 5; i++) {
      const res = await get(app, { 'x-skip': '1' })
      expect(res.status).toBe(200)
      expect(res.body.rateLimit).toBeNull()
      expect(res.headers['ratelimit']).toBeUndefined()
      expect(res.headers['ratelimit-policy']).toBeUndefined()
    }
    expect(cm.metrics().rateLimit).toMatchObject({ allowed: 0, limited: 0 })
    const counted = await get(app)
    expect(counted.status).toBe(200)
    expect(parseRateLimit(counted.headers['ratelimit'])[0].r).toBe(2)
    expect(app.calls.n).toBe(6)
  })

  it('async skip and key functions (returning promises) work', async () => {
    const cm = manager()
    const app = makeApp(
      express,
      rateLimitMiddleware({
        limit: 2,
        windowMs: 60_000,
        manager: cm,
        // eslint-disable-next-line @typescript-eslint/no-explicit-any
        key: async (req: any) => {
          await new Promise((resolve) => setTimeout(resolve, 1))
          return `user:${req.get('x-user')}`
        },
        // eslint-disable-next-line @typescript-eslint/no-explicit-any
        skip: (req: any) => Promise.resolve(req.get('x-user') === 'admin'),
      }),
    )
    expect((await get(app, { 'x-user': 'alice' })).status).toBe(200)
    expect((await get(app, { 'x-user': 'alice' })).status).toBe(200)
    expect((await get(app, { 'x-user': 'alice' })).status).toBe(429)
    expect((await get(app, { 'x-user': 'bob' })).status).toBe(200)
    for (let i = 0; i < 3; i++) {
      const admin = await get(app, { 'x-user': 'admin' })
      expect(admin.status).toBe(200)
      expect(admin.headers['ratelimit']).toBeUndefined()
    }
    // the async key is what was counted
    expect((await cm.rateLimit('user:alice', { limit: 2, windowMs: 60_000 })).allowed).toBe(false)
    const bob = await cm.rateLimit('user:bob', { limit: 2, windowMs: 60_000 })
    expect(bob).toMatchObject({ allowed: true, remaining: 0 })
    expect(app.calls.n).toBe(6)
  })

  it('handler: answers refused requests with the result, after Retry-After is set', async () => {
    const cm = manager()
    const seen: Array<{ result: RateLimitResult; retryAfter: unknown; hasNext: boolean }> = []
    const app = makeApp(
      express,
      rateLimitMiddleware({
        limit: 3,
        windowMs: 60_000,
        manager: cm,
        // eslint-disable-next-line @typescript-eslint/no-explicit-any
        handler: (_req: any, res: any, next, result) => {
          seen.push({ result, retryAfter: res.getHeader('Retry-After'), hasNext: typeof next === 'function' })
          res.status(418).json({ error: 'slow down', retryAfterMs: result.retryAfterMs })
        },
      }),
    )
    for (let i = 0; i < 3; i++) expect((await get(app)).status).toBe(200)
    expect(seen).toEqual([])
    const res = await get(app)
    expect(res.status).toBe(418)
    expect(res.headers['content-type']).toMatch(/^application\/json/)
    expect(res.body.error).toBe('slow down')
    expect(seen).toHaveLength(1)
    const { result, retryAfter, hasNext } = seen[0]
    expect(hasNext).toBe(true)
    expect(result).toMatchObject({ allowed: false, limit: 3, remaining: 0 })
    expect(result.retryAfterMs).toBeGreaterThan(19_000)
    expect(result.retryAfterMs).toBeLessThanOrEqual(20_000)
    expect(res.body.retryAfterMs).toBe(result.retryAfterMs)
    expect(retryAfter).toBe(String(Math.ceil(result.retryAfterMs / 1000)))
    expect(res.headers['retry-after']).toBe(retryAfter)
    expect(res.headers['ratelimit']).toBe(`"3-in-60000ms";r=0;t=${retryAfter}`)
    expect(app.calls.n).toBe(3)
  })

  it('legacyHeaders: X-RateLimit-Limit, -Remaining and -Reset (epoch seconds)', async () => {
    const cm = manager()
    const app = makeApp(express, rateLimitMiddleware({ limit: 3, windowMs: 60_000, manager: cm, legacyHeaders: true }))
    for (let i = 0; i < 4; i++) {
      const before = Date.now()
      const res = await get(app)
      const after = Date.now()
      expect(res.status).toBe(i < 3 ? 200 : 429)
      expect(res.headers['x-ratelimit-limit']).toBe('3')
      expect(res.headers['x-ratelimit-remaining']).toBe(String(Math.max(0, 2 - i)))
      const reset = Number(res.headers['x-ratelimit-reset'])
      expect(res.headers['x-ratelimit-reset']).toMatch(/^\d+$/)
      // resetMs is 20 s per unit taken, within the 60 s window of now
      const taken = Math.min(i + 1, 3)
      expect(reset).toBeGreaterThanOrEqual(Math.floor((before + taken * 20_000 - 1000) / 1000))
      expect(reset).toBeLessThanOrEqual(Math.ceil((after + taken * 20_000) / 1000))
      expect(reset).toBeLessThanOrEqual(Math.ceil((after + 60_000) / 1000))
      // the IETF fields stay on
      expect(res.headers['ratelimit-policy']).toBe('"3-in-60000ms";q=3;w=60')
    }
  })

  it('headers: false sets no rate-limit fields (a refusal still has Retry-After)', async () => {
    const cm = manager()
    const app = makeApp(express, rateLimitMiddleware({ limit: 1, windowMs: 60_000, manager: cm, headers: false }))
    const ok = await get(app)
    expect(ok.status).toBe(200)
    expect(ok.body.rateLimit).toMatchObject({ allowed: true, limit: 1, remaining: 0 })
    const refused = await get(app)
    expect(refused.status).toBe(429)
    expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(59)
    for (const res of [ok, refused]) {
      expect(res.headers['ratelimit']).toBeUndefined()
      expect(res.headers['ratelimit-policy']).toBeUndefined()
      expect(res.headers['x-ratelimit-limit']).toBeUndefined()
    }
  })

  it('name: the identifier of the policy in both fields; w is the window rounded up to seconds', async () => {
    const cm = manager()
    const named = makeApp(express, rateLimitMiddleware({ limit: 3, windowMs: 60_000, manager: cm, name: 'api' }))
    const res = await get(named)
    expect(res.headers['ratelimit-policy']).toBe('"api";q=3;w=60')
    expect(res.headers['ratelimit']).toMatch(/^"api";r=2;t=(19|20)$/)

    const odd = makeApp(express, rateLimitMiddleware({ limit: 3, windowMs: 1500, manager: cm }))
    const oddRes = await get(odd)
    expect(oddRes.headers['ratelimit-policy']).toBe('"3-in-1500ms";q=3;w=2')
    expect(oddRes.headers['ratelimit']).toBe('"3-in-1500ms";r=2;t=1')
  })

  it('two limiters on one route: both policies in the fields, as a list', async () => {
    const cm = manager()
    const app = makeApp(
      express,
      rateLimitMiddleware({ limit: 10, windowMs: 1000, manager: cm, name: 'per-second' }),
      rateLimitMiddleware({ limit: 3, windowMs: 60_000, manager: cm, name: 'per-minute' }),
    )
    const first = await get(app)
    expect(first.status).toBe(200)
    expect(first.headers['ratelimit-policy']).toBe('"per-second";q=10;w=1, "per-minute";q=3;w=60')
    expect(first.headers['ratelimit']).toBe('"per-second";r=9;t=1, "per-minute";r=2;t=20')
    // req.rateLimit is the last limiter's decision
    expect(first.body.rateLimit).toMatchObject({ allowed: true, limit: 3, remaining: 2 })
    await get(app)
    await get(app)
    const refused = await get(app)
    expect(refused.status).toBe(429)
    expect(refused.headers['ratelimit-policy']).toBe('"per-second";q=10;w=1, "per-minute";q=3;w=60')
    const members = parseRateLimit(refused.headers['ratelimit'])
    expect(members.map((m) => m.name)).toEqual(['per-second', 'per-minute'])
    expect(members[0].r).toBeGreaterThanOrEqual(6)
    expect(members[1]).toEqual({ name: 'per-minute', r: 0, t: Number(refused.headers['retry-after']) })
    expect(app.calls.n).toBe(3)
  })

  it('a key that is empty or not a string reaches the error handler with ERR_INVALID_ARG', async () => {
    const cm = manager()
    const keys: Record<string, () => unknown> = {
      empty: () => '',
      number: () => 42,
      undefined: () => undefined,
      'async empty': async () => '',
    }
    for (const [what, key] of Object.entries(keys)) {
      const app = makeApp(
        express,
        rateLimitMiddleware({ limit: 3, windowMs: 60_000, manager: cm, key: key as () => string }),
      )
      const res = await get(app)
      expect({ what, status: res.status, code: res.body.code }).toEqual({ what, status: 503, code: 'ERR_INVALID_ARG' })
      expect(app.errors).toHaveLength(1)
      expect(app.calls.n).toBe(0)
      expect(res.headers['ratelimit']).toBeUndefined()
    }
    expect(cm.metrics().rateLimit).toMatchObject({ allowed: 0, limited: 0 })
  })

  it('a key function that throws or rejects: its error reaches the error handler', async () => {
    const cm = manager()
    for (const key of [
      () => {
        throw Object.assign(new Error('no user'), { code: 'E_NO_USER' })
      },
      () => Promise.reject(Object.assign(new Error('no user'), { code: 'E_NO_USER' })),
    ]) {
      const app = makeApp(express, rateLimitMiddleware({ limit: 3, windowMs: 60_000, manager: cm, key }))
      const res = await get(app)
      expect(res.status).toBe(503)
      expect(res.body.code).toBe('E_NO_USER')
      expect(app.errors).toEqual([{ code: 'E_NO_USER', message: 'no user' }])
      expect(app.calls.n).toBe(0)
    }
  })

  it('metrics: allowed and limited count the decisions', async () => {
    const cm = manager()
    const app = makeApp(
      express,
      // eslint-disable-next-line @typescript-eslint/no-explicit-any
      rateLimitMiddleware({ limit: 3, windowMs: 60_000, manager: cm, key: (req: any) => req.get('x-user') }),
    )
    const statuses: number[] = []
    for (const user of ['a', 'a', 'a', 'a', 'a', 'b', 'b', 'a', 'c'])
      statuses.push((await get(app, { 'x-user': user })).status)
    expect(statuses).toEqual([200, 200, 200, 429, 429, 200, 200, 429, 200])
    expect(cm.metrics().rateLimit).toMatchObject({ allowed: 6, limited: 3 })
    expect(app.calls.n).toBe(6)
  })
})

// ---------------------------------------------------------------------------

describe('rateLimitMiddleware: invalid options', () => {
  const cases: Array<[string, unknown, 'TypeError' | 'RangeError']> = [
    ['missing options', undefined, 'TypeError'],
    ['null options', null, 'TypeError'],
    ['options not an object', 'limit=3', 'TypeError'],
    ['missing limit', { windowMs: 60_000 }, 'TypeError'],
    ['missing windowMs', { limit: 3 }, 'TypeError'],
    ['limit 0', { limit: 0, windowMs: 60_000 }, 'RangeError'],
    ['limit 1.5', { limit: 1.5, windowMs: 60_000 }, 'RangeError'],
    ['limit over 1e9', { limit: 1e9 + 1, windowMs: 60_000 }, 'RangeError'],
    ["windowMs 'x'", { limit: 3, windowMs: 'x' }, 'TypeError'],
    ['windowMs over one year', { limit: 3, windowMs: 366 * 24 * 3600 * 1000 }, 'RangeError'],
    ['burst 0', { limit: 3, windowMs: 60_000, burst: 0 }, 'RangeError'],
    ['cost > burst', { limit: 10, windowMs: 60_000, burst: 2, cost: 3 }, 'RangeError'],
    ['cost > limit', { limit: 3, windowMs: 60_000, cost: 4 }, 'RangeError'],
    ['unknown option', { limit: 3, windowMs: 60_000, max: 3 }, 'TypeError'],
    ['key not a function', { limit: 3, windowMs: 60_000, key: 'ip' }, 'TypeError'],
    ['tenant not a function', { limit: 3, windowMs: 60_000, tenant: 'acme' }, 'TypeError'],
    ['skip not a function', { limit: 3, windowMs: 60_000, skip: true }, 'TypeError'],
    ['handler not a function', { limit: 3, windowMs: 60_000, handler: {} }, 'TypeError'],
    ['headers not a boolean', { limit: 3, windowMs: 60_000, headers: 'yes' }, 'TypeError'],
    ['legacyHeaders not a boolean', { limit: 3, windowMs: 60_000, legacyHeaders: 1 }, 'TypeError'],
    ['failOpen not a boolean', { limit: 3, windowMs: 60_000, failOpen: 'true' }, 'TypeError'],
    ['name with a space', { limit: 3, windowMs: 60_000, name: 'my limit' }, 'TypeError'],
    ['empty name', { limit: 3, windowMs: 60_000, name: '' }, 'TypeError'],
    ['name not a string', { limit: 3, windowMs: 60_000, name: 42 }, 'TypeError'],
    ['manager not a manager', { limit: 3, windowMs: 60_000, manager: { get: () => 1 } }, 'TypeError'],
    ['manager a URL', { limit: 3, windowMs: 60_000, manager: 'memory://' }, 'TypeError'],
  ]

  it.each(cases)('%s throws ERR_INVALID_ARG at creation', (_what, options, errorClass) => {
    let thrown: unknown
    try {
      ;(rateLimitMiddleware as (o: unknown) => unknown)(options)
    } catch (err) {
      thrown = err
    }
    expect(thrown).toBeInstanceOf(errorClass === 'TypeError' ? TypeError : RangeError)
    expect((thrown as { code?: string }).code).toBe('ERR_INVALID_ARG')
  })

  it('valid options with every field are accepted', () => {
    const cm = manager()
    const options: RateLimitMiddlewareOptions = {
      limit: 10,
      windowMs: 60_000,
      burst: 5,
      cost: 2,
      manager: cm,
      key: () => 'k',
      tenant: () => undefined,
      skip: () => false,
      handler: (_req, res) => res.end(),
      name: 'api.v1:read',
      headers: true,
      legacyHeaders: true,
      failOpen: false,
    }
    const mw = rateLimitMiddleware(options)
    expect(typeof mw).toBe('function')
    expect(mw.length).toBe(3)
  })
})

// ---------------------------------------------------------------------------

describe('rateLimitMiddleware over a private redis-server', () => {
  let server: RedisServer
  beforeAll(async () => {
    server = await startRedis()
  })
  afterAll(async () => {
    await server?.stop()
    await killAllRedis()
  })

  describe.each(FACTORIES)('%s', (_label, express) => {
    it('two managers with one keyPrefix (two processes) share one limit', async () => {
      const keyPrefix = uniquePrefix('rl-shared')
      const a = manager({ url: server.url, keyPrefix })
      const b = manager({ url: server.url, keyPrefix })
      const appA = makeApp(express, rateLimitMiddleware({ limit: 3, windowMs: 60_000, manager: a }))
      const appB = makeApp(express, rateLimitMiddleware({ limit: 3, windowMs: 60_000, manager: b }))
      const order = [appA, appB, appA, appB, appA]
      const statuses: number[] = []
      const remaining: number[] = []
      for (const app of order) {
        const res = await get(app)
        statuses.push(res.status)
        remaining.push(parseRateLimit(res.headers['ratelimit'])[0].r)
      }
      expect(statuses).toEqual([200, 200, 200, 429, 429])
      expect(remaining).toEqual([2, 1, 0, 0, 0])
      expect(appA.calls.n).toBe(2)
      expect(appB.calls.n).toBe(1)
      expect(a.metrics().rateLimit).toMatchObject({ allowed: 2, limited: 1 })
      expect(b.metrics().rateLimit).toMatchObject({ allowed: 1, limited: 1 })

      // another keyPrefix: another count
      const other = manager({ url: server.url, keyPrefix: uniquePrefix('rl-other') })
      const appOther = makeApp(express, rateLimitMiddleware({ limit: 3, windowMs: 60_000, manager: other }))
      const res = await get(appOther)
      expect(res.status).toBe(200)
      expect(res.headers['ratelimit']).toMatch(/^"3-in-60000ms";r=2;t=(19|20)$/)
    })

    it('fallback off and Redis refusing: next(err) with ERR_REDIS_UNAVAILABLE, or through with failOpen', async () => {
      const cm = manager({ url: server.url, keyPrefix: uniquePrefix('rl-failopen'), fallback: { enabled: false } })
      const strict = makeApp(express, rateLimitMiddleware({ limit: 3, windowMs: 60_000, manager: cm }))
      const open = makeApp(express, rateLimitMiddleware({ limit: 3, windowMs: 60_000, manager: cm, failOpen: true }))
      expect((await get(strict)).status).toBe(200)
      cm.simulateOutage({ mode: 'refuse' })
      try {
        const refused = await get(strict)
        expect(refused.status).toBe(503)
        expect(refused.body.code).toBe('ERR_REDIS_UNAVAILABLE')
        expect(strict.errors.map((e) => e.code)).toEqual(['ERR_REDIS_UNAVAILABLE'])
        expect(strict.calls.n).toBe(1)
        expect(refused.headers['ratelimit']).toBeUndefined()

        const through = await get(open)
        expect(through.status).toBe(200)
        expect(through.body.rateLimit).toBeNull()
        expect(through.headers['ratelimit']).toBeUndefined()
        expect(open.errors).toEqual([])
        expect(open.calls.n).toBe(1)
      } finally {
        cm.endSimulatedOutage()
      }
    })

    it('fallback on and Redis refusing: the limit still holds, decided locally', async () => {
      const cm = manager({ url: server.url, keyPrefix: uniquePrefix('rl-local') })
      const app = makeApp(
        express,
        // eslint-disable-next-line @typescript-eslint/no-explicit-any
        rateLimitMiddleware({ limit: 3, windowMs: 60_000, manager: cm, key: (req: any) => req.get('x-user') }),
      )
      // one check through Redis first, on another key
      expect((await get(app, { 'x-user': 'warm-up' })).status).toBe(200)
      expect(cm.metrics().rateLimit.localDecisions).toBe(0)
      cm.simulateOutage({ mode: 'refuse' })
      try {
        const statuses: number[] = []
        const remaining: number[] = []
        for (let i = 0; i < 5; i++) {
          const res = await get(app, { 'x-user': 'during-outage' })
          statuses.push(res.status)
          remaining.push(parseRateLimit(res.headers['ratelimit'])[0].r)
          if (res.status === 429) expect(Number(res.headers['retry-after'])).toBeGreaterThanOrEqual(1)
        }
        expect(statuses).toEqual([200, 200, 200, 429, 429])
        expect(remaining).toEqual([2, 1, 0, 0, 0])
        expect(app.errors).toEqual([])
        expect(cm.metrics().rateLimit.localDecisions).toBeGreaterThan(0)
        expect(cm.metrics().rateLimit).toMatchObject({ allowed: 4, limited: 2 })
      } finally {
        cm.endSimulatedOutage()
      }
    })
  })
})
