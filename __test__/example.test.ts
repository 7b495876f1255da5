// The example Express app (example/app.js, example/server.js) end to end:
// in memory://, over a private redis-server, over a Redis URL where nothing
// listens (served by the in-process fallback), and as a real child process.

import { spawn, ChildProcess } from 'child_process'
import * as path from 'path'
import request from 'supertest'
import { createCacheManager, CacheManager, CacheOptions } from '..'
import { freePort, RawRedis, RedisServer, startRedis } from './helpers/redis-server'

interface Order {
  id: number
  item: string
  createdBy: string
  createdAt: string
}

interface Database {
  queries: number
  listOrders(tenantId: string): Promise<Order[]>
}
// Plain CommonJS JS without type declarations.
// eslint-disable-next-line @typescript-eslint/no-var-requires
const example = require('../example/app')
const createApp: (
  manager: CacheManager,
  options?: { db?: Database; logger?: { error: (...a: unknown[]) => void } },
) => any = example.createApp
const FakeDatabase: new (options?: { delayMs?: number }) => Database = example.FakeDatabase

const ROOT = path.join(__dirname, '..')
const SERVER_JS = path.join(ROOT, 'example', 'server.js')

type App = any
type Agent = ReturnType<typeof request.agent>

const managers: CacheManager[] = []
function manager(options: CacheOptions): CacheManager {
  const m = createCacheManager(options)
  managers.push(m)
  return m
}

const quietLogger = () => ({ error: jest.fn() })

afterAll(async () => {
  for (const m of managers) await m.close()
})

function setCookies(res: request.Response): string[] {
  const v = res.headers['set-cookie'] as unknown
  if (v === undefined) return []
  return Array.isArray(v) ? v : [String(v)]
}

async function login(app: App, user: string, tenant: string): Promise<{ agent: Agent; sessionId: string }> {
  const agent = request.agent(app)
  const res = await agent.post('/login').send({ user, tenant }).expect(201)
  const sessionId: string = res.body.sessionId
  expect(sessionId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
  expect(res.body.session).toEqual({ user, tenant, loginAt: expect.any(String) })
  expect(Number.isNaN(Date.parse(res.body.session.loginAt))).toBe(false)
  const cookies = setCookies(res)
  expect(cookies).toHaveLength(1)
  expect(cookies[0].startsWith(`sid=${sessionId};`)).toBe(true)
  expect(cookies[0]).toMatch(/;\s*HttpOnly(;|$)/i)
  return { agent, sessionId }
}

const items = (orders: Order[]) => orders.map((o) => o.item)

// Plain JS without type declarations: a real Prometheus text-format parser.
// eslint-disable-next-line @typescript-eslint/no-var-requires
const parsePrometheusTextFormat: (text: string) => {
  name: string
  type: string
  metrics: { value?: string; labels?: Record<string, string> }[]
}[] = require('parse-prometheus-text-format')

/** The value of `name{labels}` in a Prometheus text exposition (exactly one sample must match). */
function promSample(text: string, name: string, labels: Record<string, string> = {}): number {
  const family = parsePrometheusTextFormat(text).find((f) => f.name === name)
  if (!family) throw new Error(`no family ${name} in:\n${text}`)
  const want = JSON.stringify(Object.entries(labels).sort())
  const found = family.metrics.filter((s) => JSON.stringify(Object.entries(s.labels ?? {}).sort()) === want)
  expect(found).toHaveLength(1)
  return Number(found[0].value)
}

const HEALTH = '/api/system/cache-health'
const METRICS = '/api/system/cache-metrics'
const PROMETHEUS_TYPE = 'text/plain; version=0.0.4; charset=utf-8'

/**
 * The system endpoints after a known sequence of requests: login (1 session set),
 * /me (1 session hit), /api/orders twice (2 session hits; 1 query miss + 1 set, then 1 hit).
 */
async function checkSystemEndpoints(
  app: App,
  expected: { status: 'healthy' | 'degraded'; mode: 'redis' | 'memory' },
): Promise<void> {
  const before = (await request(app).get(METRICS).expect(200)).body
  const { agent } = await login(app, 'wile', 'acme')
  await agent.get('/me').expect(200)
  expect((await agent.get('/api/orders').expect(200)).body.source).toBe('db')
  expect((await agent.get('/api/orders').expect(200)).body.source).toBe('cache')

  const health = await request(app).get(HEALTH).expect(200)
  expect(health.headers['content-type']).toBe('application/json; charset=utf-8')
  expect(health.headers['cache-control']).toBe('no-store')
  expect(health.body).toMatchObject({ status: expected.status, mode: expected.mode })
  expect(health.body.fallback).toEqual({
    entries: expect.any(Number),
    bytes: expect.any(Number),
    maxBytes: expect.any(Number),
  })

  const json = await request(app).get(METRICS).set('Accept', 'application/json').expect(200)
  expect(json.headers['content-type']).toBe('application/json; charset=utf-8')
  const delta = (type: 'session' | 'query', field: string) => json.body.byType[type][field] - before.byType[type][field]
  expect({
    sets: delta('session', 'sets'),
    hits: delta('session', 'hits'),
    misses: delta('session', 'misses'),
  }).toEqual({ sets: 1, hits: 3, misses: 0 })
  expect({ sets: delta('query', 'sets'), hits: delta('query', 'hits'), misses: delta('query', 'misses') }).toEqual({
    sets: 1,
    hits: 1,
    misses: 1,
  })
  expect(json.body.mode).toBe(expected.mode)

  const text = await request(app).get(METRICS).set('Accept', 'text/plain').expect(200)
  expect(text.headers['content-type']).toBe(PROMETHEUS_TYPE)
  expect(promSample(text.text, 'ferrocache_cache_hits_total', { type: 'session' })).toBe(json.body.byType.session.hits)
  expect(promSample(text.text, 'ferrocache_cache_misses_total', { type: 'query' })).toBe(json.body.byType.query.misses)
  expect(promSample(text.text, 'ferrocache_mode', { mode: expected.mode })).toBe(1)
}

type Stage = 'loggedIn' | 'ordersCached' | 'ordersInvalidated' | 'loggedOut'
type Inspect = (stage: Stage, ctx: { sessionId: string; session?: unknown; orders?: Order[] }) => Promise<void>

/**
 * The whole user story against one app: two tenants (acme, globex) log in, read
 * and write their orders, and log out. `inspect` looks at the store in between.
 */
async function runFlow(app: App, inspect?: Inspect): Promise<void> {
  const db = app.locals.db

  // Login: a cookie, and /me sees the session.
  const a = await login(app, 'wile', 'acme')
  const b = await login(app, 'hank', 'globex')
  expect(a.sessionId).not.toBe(b.sessionId)

  const meA = await a.agent.get('/me').expect(200)
  expect(meA.body).toEqual({
    sessionId: a.sessionId,
    session: { user: 'wile', tenant: 'acme', loginAt: expect.any(String) },
  })
  const meB = await b.agent.get('/me').expect(200)
  expect(meB.body.session).toMatchObject({ user: 'hank', tenant: 'globex' })
  await inspect?.('loggedIn', { sessionId: a.sessionId, session: meA.body.session })

  // No cookie: 401 everywhere a session is needed.
  const anon = await request(app).get('/me').expect(401)
  expect(anon.body).toEqual({ error: expect.any(String), code: 'ERR_NO_SESSION' })
  await request(app).get('/api/orders').expect(401)
  await request(app).post('/api/orders').send({ item: 'x' }).expect(401)

  // Orders of acme: first from the database, then from the cache, same content.
  let queries = db.queries
  const first = await a.agent.get('/api/orders').expect(200)
  expect(first.body.source).toBe('db')
  expect(first.body.tenant).toBe('acme')
  expect(items(first.body.orders)).toEqual(['anvil', 'rocket skates'])
  expect(db.queries).toBe(queries + 1)
  const second = await a.agent.get('/api/orders').expect(200)
  expect(second.body.source).toBe('cache')
  expect(second.body.orders).toEqual(first.body.orders)
  expect(db.queries).toBe(queries + 1)
  await inspect?.('ordersCached', { sessionId: a.sessionId, orders: first.body.orders })

  // globex uses the same query key but never sees acme's cached list.
  const bFirst = await b.agent.get('/api/orders').expect(200)
  expect(bFirst.body.source).toBe('db')
  expect(bFirst.body.tenant).toBe('globex')
  expect(items(bFirst.body.orders)).toEqual(['doomsday device'])
  expect((await b.agent.get('/api/orders').expect(200)).body.source).toBe('cache')

  // A write invalidates acme's one cached query, and only acme's.
  queries = db.queries
  const created = await a.agent.post('/api/orders').send({ item: 'bird seed' }).expect(201)
  expect(created.body).toEqual({
    order: { id: 3, item: 'bird seed', createdBy: 'wile', createdAt: expect.any(String) },
    invalidated: 1,
  })
  expect(db.queries).toBe(queries + 1)
  await inspect?.('ordersInvalidated', { sessionId: a.sessionId })

  const third = await a.agent.get('/api/orders').expect(200)
  expect(third.body.source).toBe('db')
  expect(items(third.body.orders)).toEqual(['anvil', 'rocket skates', 'bird seed'])
  expect(third.body.orders[2]).toEqual(created.body.order)
  const fourth = await a.agent.get('/api/orders').expect(200)
  expect(fourth.body.source).toBe('cache')
  expect(fourth.body.orders).toEqual(third.body.orders)

  // globex: its cache survived acme's invalidation, and it never sees acme's order.
  const bAfter = await b.agent.get('/api/orders').expect(200)
  expect(bAfter.body.source).toBe('cache')
  expect(items(bAfter.body.orders)).toEqual(['doomsday device'])
  const bCreated = await b.agent.post('/api/orders').send({ item: 'hammock' }).expect(201)
  expect(bCreated.body.invalidated).toBe(1)
  expect(bCreated.body.order).toMatchObject({ id: 2, item: 'hammock', createdBy: 'hank' })
  const bFresh = await b.agent.get('/api/orders').expect(200)
  expect(bFresh.body.source).toBe('db')
  expect(items(bFresh.body.orders)).toEqual(['doomsday device', 'hammock'])
  const aAgain = await a.agent.get('/api/orders').expect(200)
  expect(aAgain.body.source).toBe('cache')
  expect(items(aAgain.body.orders)).toEqual(['anvil', 'rocket skates', 'bird seed'])

  // Logout deletes the session server-side and clears the cookie.
  const out = await a.agent.post('/logout').expect(200)
  expect(out.body).toEqual({ loggedOut: true })
  const cleared = setCookies(out)
  expect(cleared).toHaveLength(1)
  expect(cleared[0]).toMatch(/^sid=;/)
  expect(cleared[0]).toMatch(/Expires=Thu, 01 Jan 1970/)
  await a.agent.get('/me').expect(401)
  // Even replaying the old cookie: the session is gone from the store.
  const replay = await request(app).get('/me').set('Cookie', `sid=${a.sessionId}`).expect(401)
  expect(replay.body.code).toBe('ERR_NO_SESSION')
  await request(app).get('/api/orders').set('Cookie', `sid=${a.sessionId}`).expect(401)
  await inspect?.('loggedOut', { sessionId: a.sessionId })

  // globex is still logged in; then logs out too.
  await b.agent.get('/me').expect(200)
  expect((await b.agent.post('/logout').expect(200)).body).toEqual({ loggedOut: true })
  await b.agent.get('/me').expect(401)
}

describe('example app, memory://', () => {
  test('login, cached orders, invalidation, tenant isolation, logout', async () => {
    const app = createApp(manager({ url: 'memory://' }), { logger: quietLogger() })
    await runFlow(app)
  })

  test('bad input: invalid JSON is 400, missing fields are 400', async () => {
    const app = createApp(manager({ url: 'memory://' }), { logger: quietLogger() })
    const bad = await request(app)
      .post('/login')
      .set('Content-Type', 'application/json')
      .send('{"user": "wile",')
      .expect(400)
    expect(bad.body).toEqual({ error: expect.any(String), code: 'ERR_BAD_JSON' })
    await request(app).post('/login').send({ user: 'wile' }).expect(400)
    await request(app).post('/login').send({ tenant: 'acme' }).expect(400)
    await request(app).post('/login').send({ user: 'wile', tenant: '../etc' }).expect(400)
    await request(app).post('/login').send({ user: '', tenant: 'acme' }).expect(400)
    await request(app).post('/login').expect(400) // no body at all

    const { agent } = await login(app, 'wile', 'acme')
    const badOrder = await agent.post('/api/orders').set('Content-Type', 'application/json').send('{item:').expect(400)
    expect(badOrder.body.code).toBe('ERR_BAD_JSON')
    await agent.post('/api/orders').send({ item: '' }).expect(400)
    await agent.post('/api/orders').send({ item: 42 }).expect(400)
    expect(items((await agent.get('/api/orders').expect(200)).body.orders)).toEqual(['anvil', 'rocket skates'])
  })

  test('a garbage or expired session cookie is 401 and clears the cookie', async () => {
    const m = manager({ url: 'memory://' })
    const app = createApp(m, { logger: quietLogger() })
    for (const cookie of ['sid=', 'sid=not-a-uuid', 'sid=%E0%A4%A', 'other=1']) {
      const res = await request(app).get('/me').set('Cookie', cookie).expect(401)
      expect(res.body.code).toBe('ERR_NO_SESSION')
    }
    const { agent, sessionId } = await login(app, 'wile', 'acme')
    // The session expiring in the store is, to the app, a deleted session.
    expect(await m.deleteSession(sessionId)).toBe(true)
    const res = await agent.get('/me').expect(401)
    expect(setCookies(res).some((c) => /^sid=;/.test(c))).toBe(true)
  })

  test('errors from the cache are a 500 with {error, code}', async () => {
    const m = createCacheManager({ url: 'memory://' })
    const logger = quietLogger()
    const app = createApp(m, { logger })
    const { agent } = await login(app, 'wile', 'acme')
    await m.close()

    const me = await agent.get('/me').expect(500)
    expect(me.body).toEqual({ error: expect.any(String), code: 'ERR_CLOSED' })
    const orders = await agent.get('/api/orders').expect(500)
    expect(orders.body.code).toBe('ERR_CLOSED')
    const again = await request(app).post('/login').send({ user: 'road', tenant: 'acme' }).expect(500)
    expect(again.body.code).toBe('ERR_CLOSED')
    expect(logger.error).toHaveBeenCalledTimes(3)
  })

  test('GET /api/system/cache-health and /api/system/cache-metrics', async () => {
    const m = manager({ url: 'memory://' })
    await checkSystemEndpoints(createApp(m, { logger: quietLogger() }), { status: 'healthy', mode: 'memory' })
  })

  test('cache-health is 503 once the manager is closed', async () => {
    const m = createCacheManager({ url: 'memory://' })
    const app = createApp(m, { logger: quietLogger() })
    await request(app).get(HEALTH).expect(200)
    await m.close()
    const res = await request(app).get(HEALTH).expect(503)
    expect(res.body.status).toBe('unhealthy')
  })

  test('a write racing a cache miss never leaves the stale list in the cache', async () => {
    // listOrders returns its (pre-write) rows only after a whole POST went through.
    let racingWrite: (() => Promise<void>) | null = null
    class RacyDatabase extends FakeDatabase {
      async listOrders(tenantId: string) {
        const rows = await super.listOrders(tenantId)
        const write = racingWrite
        racingWrite = null
        if (write) await write()
        return rows
      }
    }
    const app = createApp(manager({ url: 'memory://' }), {
      db: new RacyDatabase({ delayMs: 1 }),
      logger: quietLogger(),
    })
    const { agent } = await login(app, 'wile', 'acme')
    racingWrite = async () => {
      const res = await agent.post('/api/orders').send({ item: 'bird seed' }).expect(201)
      expect(res.body.invalidated).toBe(0) // nothing cached yet
    }
    const stale = await agent.get('/api/orders').expect(200)
    expect(stale.body.source).toBe('db')
    expect(items(stale.body.orders)).toEqual(['anvil', 'rocket skates'])
    const next = await agent.get('/api/orders').expect(200)
    expect(next.body.source).toBe('db')
    expect(items(next.body.orders)).toEqual(['anvil', 'rocket skates', 'bird seed'])
    expect((await agent.get('/api/orders').expect(200)).body.source).toBe('cache')
  })
})

describe('example app, private redis-server', () => {
  let redis: RedisServer
  let raw: RawRedis
  const keyPrefix = 'fc-example-test:'

  beforeAll(async () => {
    redis = await startRedis()
    raw = new RawRedis(redis.port)
  })

  afterAll(async () => {
    await raw?.close()
    await redis?.stop()
  })

  test('the same flow, with sessions and query results in Redis', async () => {
    const m = manager({ url: redis.url, keyPrefix, commandTimeoutMs: 1000 })
    const app = createApp(m, { logger: quietLogger() })
    let ordersKey = ''

    await runFlow(app, async (stage, ctx) => {
      const all = await raw.keysStartingWith('')
      // This Redis is ours alone: every key in it is the manager's.
      for (const k of all) expect(k.startsWith(keyPrefix)).toBe(true)
      const sessionKeys = all.filter((k) => k.endsWith(ctx.sessionId))
      switch (stage) {
        case 'loggedIn': {
          expect(sessionKeys).toHaveLength(1)
          expect(JSON.parse((await raw.getUtf8(sessionKeys[0]))!)).toEqual(ctx.session)
          const pttl = await raw.pttl(sessionKeys[0])
          expect(pttl).toBeGreaterThan(3590_000)
          expect(pttl).toBeLessThanOrEqual(3600_000)
          break
        }
        case 'ordersCached': {
          const q = all.filter((k) => k.includes('acme') && k.endsWith('orders:list'))
          expect(q).toHaveLength(1)
          ordersKey = q[0]
          expect(JSON.parse((await raw.getUtf8(ordersKey))!)).toEqual(ctx.orders)
          const pttl = await raw.pttl(ordersKey)
          expect(pttl).toBeGreaterThan(50_000)
          expect(pttl).toBeLessThanOrEqual(60_000)
          break
        }
        case 'ordersInvalidated':
          expect(ordersKey).not.toBe('')
          expect(await raw.exists(ordersKey)).toBe(0)
          expect(sessionKeys).toHaveLength(1) // invalidating queries never touches sessions
          break
        case 'loggedOut':
          expect(sessionKeys).toHaveLength(0)
          break
      }
    })
  })

  test('system endpoints: healthy, in Redis mode', async () => {
    const m = manager({ url: redis.url, keyPrefix: 'fc-example-sys:', commandTimeoutMs: 1000 })
    const app = createApp(m, { logger: quietLogger() })
    await checkSystemEndpoints(app, { status: 'healthy', mode: 'redis' })
    const health = await request(app).get(HEALTH).expect(200)
    expect(health.body.redis).toMatchObject({ connected: true, url: redis.url, lastError: null })
  })

  test('two app instances over one Redis share sessions and cached queries', async () => {
    const app1 = createApp(manager({ url: redis.url, keyPrefix, commandTimeoutMs: 1000 }), { logger: quietLogger() })
    const db2 = new FakeDatabase({ delayMs: 1 })
    const app2 = createApp(manager({ url: redis.url, keyPrefix, commandTimeoutMs: 1000 }), {
      db: db2,
      logger: quietLogger(),
    })
    const { agent, sessionId } = await login(app1, 'road', 'initech')
    const cookie = `sid=${sessionId}`
    const me = await request(app2).get('/me').set('Cookie', cookie).expect(200)
    expect(me.body.session).toMatchObject({ user: 'road', tenant: 'initech' })

    expect((await agent.get('/api/orders').expect(200)).body).toMatchObject({ source: 'db', orders: [] })
    const via2 = await request(app2).get('/api/orders').set('Cookie', cookie).expect(200)
    expect(via2.body).toEqual({ source: 'cache', tenant: 'initech', orders: [] })
    expect(db2.queries).toBe(0)

    await request(app2).post('/logout').set('Cookie', cookie).expect(200)
    await agent.get('/me').expect(401)
  })
})

describe('example app, Redis unreachable', () => {
  test('the same flow, served by the in-process fallback store', async () => {
    const deadUrl = `redis://127.0.0.1:${await freePort()}`
    const m = manager({ url: deadUrl, keyPrefix: 'fc-example-dead:', commandTimeoutMs: 200, connectTimeoutMs: 200 })
    const app = createApp(m, { logger: quietLogger() })
    await runFlow(app)
  })

  test('system endpoints: 200 degraded, served from memory', async () => {
    const deadUrl = `redis://127.0.0.1:${await freePort()}`
    const m = manager({ url: deadUrl, keyPrefix: 'fc-example-dead:', commandTimeoutMs: 200, connectTimeoutMs: 200 })
    const app = createApp(m, { logger: quietLogger() })
    // a few failed calls open the circuit: memory mode
    for (let i = 0; i < 20 && m.metrics().mode !== 'memory'; i++) await m.getSession(`warmup-${i}`)
    expect(m.metrics().mode).toBe('memory')
    await checkSystemEndpoints(app, { status: 'degraded', mode: 'memory' })
    const health = await request(app).get(HEALTH).expect(200)
    expect(health.body.redis).toMatchObject({ connected: false, latencyMs: null, url: deadUrl })
  })
})

describe('example/server.js', () => {
  let child: ChildProcess | null = null

  afterAll(async () => {
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child!.once('exit', resolve))
      child.kill('SIGKILL')
      await exited
    }
  })

  test('starts with no Redis reachable, serves requests, exits 0 on SIGTERM', async () => {
    const deadUrl = `redis://127.0.0.1:${await freePort()}`
    const proc = spawn(process.execPath, [SERVER_JS], {
      cwd: ROOT,
      env: { ...process.env, PORT: '0', HOST: '127.0.0.1', REDIS_URL: deadUrl },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    child = proc
    let stdout = ''
    let stderr = ''
    proc.stderr!.on('data', (d) => (stderr += d.toString()))
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      proc.once('exit', (code, signal) => resolve({ code, signal })),
    )

    const baseUrl = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`server.js did not log its URL in 10 s:\n${stdout}\n${stderr}`)),
        10_000,
      )
      proc.stdout!.on('data', (d) => {
        stdout += d.toString()
        const m = /http:\/\/127\.0\.0\.1:(\d+)/.exec(stdout)
        if (m) {
          clearTimeout(timer)
          resolve(`http://127.0.0.1:${m[1]}`)
        }
      })
      proc.once('exit', (code) => {
        clearTimeout(timer)
        reject(new Error(`server.js exited with ${code} before listening:\n${stdout}\n${stderr}`))
      })
    })
    expect(stdout.trim().split('\n')).toHaveLength(1)
    expect(stdout).toContain(deadUrl)

    const agent = request.agent(baseUrl)
    const loggedIn = await agent.post('/login').send({ user: 'wile', tenant: 'acme' }).expect(201)
    expect(setCookies(loggedIn)[0]).toMatch(/^sid=[0-9a-f-]{36};.*HttpOnly/i)
    const first = await agent.get('/api/orders').expect(200)
    expect(first.body.source).toBe('db')
    expect(items(first.body.orders)).toEqual(['anvil', 'rocket skates'])
    expect((await agent.get('/api/orders').expect(200)).body.source).toBe('cache')
    expect((await agent.get('/me').expect(200)).body.session).toMatchObject({ user: 'wile', tenant: 'acme' })
    const health = await request(baseUrl).get('/api/system/cache-health').expect(200)
    expect(health.body).toMatchObject({ status: 'degraded', redis: { connected: false, url: deadUrl } })
    const metrics = await request(baseUrl).get('/api/system/cache-metrics').set('Accept', 'text/plain').expect(200)
    expect(metrics.headers['content-type']).toBe('text/plain; version=0.0.4; charset=utf-8')
    expect(promSample(metrics.text, 'ferrocache_cache_hits_total', { type: 'query' })).toBe(1)

    proc.kill('SIGTERM')
    expect(await exited).toEqual({ code: 0, signal: null })
    expect(stderr).toBe('')
  })
})
