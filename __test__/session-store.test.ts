// ferrocache/session: the express-session store, driven through a REAL Express 5
// app (express-session + supertest) against private redis-server processes
// (never the shared 6379), the in-process store (memory://), a real Redis outage
// (SIGKILL + restart on the same port) and a simulated one.
//
// Every server is stopped by pid, every manager and raw client is closed, so Jest
// ends by itself.

import express from 'express'
import session from 'express-session'
import request from 'supertest'
import { createCacheManager, cacheManager, CacheManager, CacheOptions } from '..'
import { FerrocacheStore, createSessionStore, FerrocacheStoreOptions } from '../lib/session'
import { RawRedis, RedisServer, startRedis, uniquePrefix, sleep } from './helpers/redis-server'
import { RedisProc, killAllRedis, restartOn, startRedisFree, waitFor, watch } from './helpers/traffic'

// eslint-disable-next-line @typescript-eslint/no-require-imports
const signature: { sign(value: string, secret: string): string } = require('cookie-signature')

declare module 'express-session' {
  interface SessionData {
    user: string
    visits: number
    profile: unknown
  }
}

const SECRET = 'ferrocache-session-test-secret'

// ---------------------------------------------------------------------------
// bookkeeping

const managers: CacheManager[] = []
const raws: RawRedis[] = []
const servers: RedisServer[] = []

afterEach(async () => {
  await Promise.all(managers.splice(0).map((m) => m.close()))
  await Promise.all(raws.splice(0).map((r) => r.close()))
})
afterAll(async () => {
  await Promise.all(servers.splice(0).map((s) => s.stop()))
  await killAllRedis()
})

function manager(options: CacheOptions): CacheManager {
  const m = createCacheManager(options)
  managers.push(m)
  return m
}

function raw(port: number): RawRedis {
  const r = new RawRedis(port)
  raws.push(r)
  return r
}

let sharedRedis: RedisServer | null = null
/** One private redis-server for the tests that do not kill it (each test has its own keyPrefix). */
async function redis(): Promise<RedisServer> {
  if (sharedRedis === null) {
    sharedRedis = await startRedis()
    servers.push(sharedRedis)
  }
  return sharedRedis
}

// ---------------------------------------------------------------------------
// the app under test

interface AppOptions {
  cookie?: session.CookieOptions
  rolling?: boolean
  genid?: () => string
}

interface App {
  app: express.Express
  /** Errors that reached the Express error handler (from express-session's store callbacks). */
  errors: Array<{ code?: string; name: string; message: string }>
}

function makeApp(store: session.Store, options: AppOptions = {}): App {
  const errors: App['errors'] = []
  const app = express()
  app.use(
    session({
      store,
      secret: SECRET,
      resave: false,
      saveUninitialized: false,
      rolling: options.rolling ?? false,
      cookie: options.cookie ?? { maxAge: 60_000 },
      ...(options.genid ? { genid: options.genid } : {}),
    }),
  )
  app.post('/login', (req, res) => {
    req.session.user = String(req.query.user ?? 'ada')
    req.session.profile = { roles: ['admin', 'ops'], nested: { n: 1, list: [1, 2, 3] }, at: new Date(0) }
    res.json({ sid: req.sessionID })
  })
  app.get('/me', (req, res) => {
    const cookie = req.session.cookie
    res.json({
      sid: req.sessionID,
      user: req.session.user ?? null,
      visits: req.session.visits ?? 0,
      profile: req.session.profile ?? null,
      expiresIsDate: cookie.expires instanceof Date,
      expires: cookie.expires instanceof Date ? cookie.expires.toISOString() : null,
      maxAge: cookie.maxAge ?? null,
    })
  })
  app.post('/visit', (req, res) => {
    req.session.visits = (req.session.visits ?? 0) + 1
    res.json({ sid: req.sessionID, visits: req.session.visits })
  })
  app.post('/logout', (req, res, next) => {
    req.session.destroy((err) => {
      if (err) next(err)
      else res.json({ ok: true })
    })
  })
  app.use((err: any, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
    errors.push({ code: err && err.code, name: err && err.name, message: String(err && err.message) })
    // a store error at the end of a response (save/touch/destroy) arrives after it was sent
    if (res.headersSent) return
    res.status(500).json({ code: err && err.code, name: err && err.name })
  })
  return { app, errors }
}

/** The `connect.sid=...` pair of a response's Set-Cookie, for sending by hand. */
function sessionCookie(res: request.Response): string {
  const header = res.headers['set-cookie'] as unknown as string[] | undefined
  expect(header).toBeDefined()
  const c = header!.find((h) => h.startsWith('connect.sid='))
  expect(c).toBeDefined()
  return c!.split(';')[0]
}

/** A validly signed session cookie for an arbitrary session id (what a client holding the secret could send). */
function signedCookie(sid: string): string {
  return `connect.sid=${encodeURIComponent('s:' + signature.sign(sid, SECRET))}`
}

/** Calls a store method with a callback; resolves with the callback's arguments and how many times it was called. */
function call(fn: (cb: (...args: any[]) => void) => void): Promise<{ args: any[]; calls: number; threw: unknown }> {
  return new Promise((resolve) => {
    let calls = 0
    let args: any[] = []
    let threw: unknown = undefined
    try {
      fn((...a: any[]) => {
        calls += 1
        args = a
      })
    } catch (e) {
      threw = e
    }
    // give a second callback (a contract violation) time to show up
    setTimeout(() => resolve({ args, calls, threw }), 50)
  })
}

// ---------------------------------------------------------------------------
// Redis mode

describe('FerrocacheStore over Redis', () => {
  it('login sets a session cookie, the next request sees it, logout removes the key from Redis', async () => {
    const r = await redis()
    const prefix = uniquePrefix('sess')
    const m = manager({ url: r.url, keyPrefix: prefix })
    const store = new FerrocacheStore({ manager: m })
    const { app, errors } = makeApp(store)
    const rr = raw(r.port)
    const agent = request.agent(app)

    const login = await agent.post('/login?user=ada').expect(200)
    const sid: string = login.body.sid
    const key = `${prefix}s:${sid}`
    expect(sessionCookie(login)).toMatch(/^connect\.sid=s%3A/)

    const stored = JSON.parse((await rr.getUtf8(key))!)
    expect(stored.user).toBe('ada')
    expect(stored.profile).toEqual({
      roles: ['admin', 'ops'],
      nested: { n: 1, list: [1, 2, 3] },
      at: '1970-01-01T00:00:00.000Z',
    })
    // express-session derives originalMaxAge from `expires - Date.now()`: a millisecond may pass
    expect(stored.cookie.originalMaxAge).toBeGreaterThanOrEqual(59_990)
    expect(stored.cookie.originalMaxAge).toBeLessThanOrEqual(60_000)
    expect(typeof stored.cookie.expires).toBe('string')
    const pttl = await rr.pttl(key)
    expect(pttl).toBeGreaterThan(58_000)
    expect(pttl).toBeLessThanOrEqual(60_000)

    const me = await agent.get('/me').expect(200)
    expect(me.body.sid).toBe(sid)
    expect(me.body.user).toBe('ada')
    // JSON round trip: Dates in the data come back as strings, the cookie's expires is re-hydrated
    expect(me.body.profile.at).toBe('1970-01-01T00:00:00.000Z')
    expect(me.body.expiresIsDate).toBe(true)
    expect(me.body.expires).toBe(stored.cookie.expires)
    expect(me.body.maxAge).toBeGreaterThan(50_000)

    await agent.post('/visit').expect(200)
    const visits = await agent.post('/visit').expect(200)
    expect(visits.body).toEqual({ sid, visits: 2 })
    expect(JSON.parse((await rr.getUtf8(key))!).visits).toBe(2)

    await agent.post('/logout').expect(200, { ok: true })
    expect(await rr.exists(key)).toBe(0)
    const after = await agent.get('/me').expect(200)
    expect(after.body.user).toBeNull()
    expect(after.body.sid).not.toBe(sid)
    expect(errors).toEqual([])
  })

  it('the key lives as long as cookie.maxAge; once it expires the next request gets a fresh session', async () => {
    const r = await redis()
    const prefix = uniquePrefix('exp')
    const m = manager({ url: r.url, keyPrefix: prefix })
    const { app, errors } = makeApp(new FerrocacheStore({ manager: m }), { cookie: { maxAge: 300 } })
    const rr = raw(r.port)

    const login = await request(app).post('/login').expect(200)
    const cookie = sessionCookie(login)
    const key = `${prefix}s:${login.body.sid}`
    const pttl = await rr.pttl(key)
    expect(pttl).toBeGreaterThan(150)
    expect(pttl).toBeLessThanOrEqual(300)

    await sleep(600)
    expect(await rr.exists(key)).toBe(0)
    // the (server-side expired) cookie sent by hand: express-session finds nothing and starts afresh
    const me = await request(app).get('/me').set('Cookie', cookie).expect(200)
    expect(me.body.user).toBeNull()
    expect(me.body.sid).not.toBe(login.body.sid)
    expect(errors).toEqual([])
  })

  it.each([false, true])(
    'an unmodified request touches the session: its TTL is refreshed (rolling: %s)',
    async (rolling) => {
      const r = await redis()
      const prefix = uniquePrefix('touch')
      const m = manager({ url: r.url, keyPrefix: prefix })
      const { app, errors } = makeApp(new FerrocacheStore({ manager: m }), { cookie: { maxAge: 3000 }, rolling })
      const rr = raw(r.port)
      const agent = request.agent(app)

      const login = await agent.post('/login').expect(200)
      const key = `${prefix}s:${login.body.sid}`
      const before = JSON.parse((await rr.getUtf8(key))!)
      await sleep(1200)
      const aged = await rr.pttl(key)
      expect(aged).toBeLessThan(2000)

      const me = await agent.get('/me').expect(200)
      expect(me.body.user).toBe('ada')
      if (rolling) expect(me.headers['set-cookie']).toBeDefined()
      const refreshed = await rr.pttl(key)
      expect(refreshed).toBeGreaterThan(2700)
      expect(refreshed).toBeLessThanOrEqual(3000)
      const after = JSON.parse((await rr.getUtf8(key))!)
      expect(after.user).toBe('ada')
      expect(Date.parse(after.cookie.expires)).toBeGreaterThan(Date.parse(before.cookie.expires) + 1000)
      expect(errors).toEqual([])
    },
  )

  it('disableTouch: an unmodified request leaves the TTL alone', async () => {
    const r = await redis()
    const prefix = uniquePrefix('notouch')
    const m = manager({ url: r.url, keyPrefix: prefix })
    const { app } = makeApp(new FerrocacheStore({ manager: m, disableTouch: true }), { cookie: { maxAge: 3000 } })
    const rr = raw(r.port)
    const agent = request.agent(app)
    const login = await agent.post('/login').expect(200)
    const key = `${prefix}s:${login.body.sid}`
    await sleep(1200)
    await agent.get('/me').expect(200)
    const pttl = await rr.pttl(key)
    expect(pttl).toBeGreaterThan(0)
    expect(pttl).toBeLessThan(2000)
  })

  it('touch refreshes only the cookie of what is stored, and never resurrects a destroyed session', async () => {
    const r = await redis()
    const prefix = uniquePrefix('touch2')
    const m = manager({ url: r.url, keyPrefix: prefix })
    const store = new FerrocacheStore({ manager: m })
    const rr = raw(r.port)
    const cookie = (ms: number) => ({ originalMaxAge: ms, expires: new Date(Date.now() + ms).toISOString() })

    await store.set('s1', { cookie: cookie(1000), user: 'old' } as any)
    await store.set('s1', { cookie: cookie(1000), user: 'new' } as any) // another request changed it
    await store.touch('s1', { cookie: cookie(5000), user: 'old' } as any)
    const s1 = JSON.parse((await rr.getUtf8(`${prefix}s:s1`))!)
    expect(s1.user).toBe('new')
    expect(s1.cookie.originalMaxAge).toBe(5000)
    expect(await rr.pttl(`${prefix}s:s1`)).toBeGreaterThan(4000)

    await store.set('s2', { cookie: cookie(5000), user: 'x' } as any)
    await store.destroy('s2') // logout by another request
    await store.touch('s2', { cookie: cookie(5000), user: 'x' } as any)
    expect(await rr.exists(`${prefix}s:s2`)).toBe(0)
    await expect(store.get('s2')).resolves.toBeNull()
  })

  it('TTL: cookie.expires when there is no maxAge; ttlSeconds, else the manager default, for browser-session cookies', async () => {
    const r = await redis()
    const prefix = uniquePrefix('ttl')
    const m = manager({ url: r.url, keyPrefix: prefix, ttl: { session: 120 } })
    const rr = raw(r.port)
    const plain = new FerrocacheStore({ manager: m })
    const withTtl = new FerrocacheStore({ manager: m, ttlSeconds: 30 })

    // a plain object cookie (no maxAge getter): expires decides
    await plain.set('exp', {
      cookie: { originalMaxAge: null, expires: new Date(Date.now() + 8000).toISOString() },
    } as any)
    const e = await rr.pttl(`${prefix}s:exp`)
    expect(e).toBeGreaterThan(7000)
    expect(e).toBeLessThanOrEqual(8000)

    // browser-session cookies (no maxAge) through express-session
    const a = makeApp(plain, { cookie: {} })
    const la = await request(a.app).post('/login').expect(200)
    const pa = await rr.pttl(`${prefix}s:${la.body.sid}`)
    expect(pa).toBeGreaterThan(118_000)
    expect(pa).toBeLessThanOrEqual(120_000)

    const b = makeApp(withTtl, { cookie: {} })
    const lb = await request(b.app).post('/login').expect(200)
    const pb = await rr.pttl(`${prefix}s:${lb.body.sid}`)
    expect(pb).toBeGreaterThan(28_000)
    expect(pb).toBeLessThanOrEqual(30_000)
    // and express-session reads it back with no expires (a browser-session cookie)
    const me = await request(b.app).get('/me').set('Cookie', sessionCookie(lb)).expect(200)
    expect(me.body.user).toBe('ada')
    expect(me.body.expires).toBeNull()
  })

  it('an already expired cookie destroys the session instead of storing it', async () => {
    const r = await redis()
    const prefix = uniquePrefix('expired')
    const m = manager({ url: r.url, keyPrefix: prefix })
    const store = new FerrocacheStore({ manager: m })
    const rr = raw(r.port)
    const live = { originalMaxAge: 5000, expires: new Date(Date.now() + 5000).toISOString() }
    const past = { originalMaxAge: 5000, expires: new Date(Date.now() - 1000).toISOString() }
    await store.set('x', { cookie: live, user: 'a' } as any)
    expect(await rr.exists(`${prefix}s:x`)).toBe(1)
    await store.set('x', { cookie: past, user: 'b' } as any)
    expect(await rr.exists(`${prefix}s:x`)).toBe(0)
    await store.set('y', { cookie: { ...live, maxAge: 0 }, user: 'c' } as any)
    expect(await rr.exists(`${prefix}s:y`)).toBe(0)
    await store.set('y', { cookie: { ...live, maxAge: -5 }, user: 'c' } as any)
    expect(await rr.exists(`${prefix}s:y`)).toBe(0)
  })

  it('tenant option: two stores on one manager keep their sessions apart', async () => {
    const r = await redis()
    const prefix = uniquePrefix('tenant')
    const m = manager({ url: r.url, keyPrefix: prefix })
    const acme = new FerrocacheStore({ manager: m, tenant: 'acme' })
    const globex = createSessionStore({ manager: m, tenant: 'globex' })
    const rr = raw(r.port)
    expect(acme.tenant).toBe('acme')

    const A = makeApp(acme)
    const G = makeApp(globex)
    const login = await request(A.app).post('/login?user=acme-user').expect(200)
    const cookie = sessionCookie(login)
    const sid = login.body.sid
    expect(await rr.exists(`${prefix}t:4:acme:s:${sid}`)).toBe(1)
    expect(await rr.exists(`${prefix}t:6:globex:s:${sid}`)).toBe(0)
    expect(await rr.exists(`${prefix}s:${sid}`)).toBe(0)

    // the same (validly signed) cookie means nothing to the other tenant's app
    const other = await request(G.app).get('/me').set('Cookie', cookie).expect(200)
    expect(other.body.user).toBeNull()
    const mine = await request(A.app).get('/me').set('Cookie', cookie).expect(200)
    expect(mine.body.user).toBe('acme-user')

    // same id in both stores: isolated; destroy in one leaves the other
    const c = { originalMaxAge: 60_000, expires: new Date(Date.now() + 60_000).toISOString() }
    await acme.set('same', { cookie: c, user: 'A' } as any)
    await globex.set('same', { cookie: c, user: 'G' } as any)
    expect(((await acme.get('same')) as any).user).toBe('A')
    expect(((await globex.get('same')) as any).user).toBe('G')
    await globex.destroy('same')
    expect(await globex.get('same')).toBeNull()
    expect(((await acme.get('same')) as any).user).toBe('A')

    // ids/length/all: this store's tenant only
    await globex.set('g2', { cookie: c, user: 'G2' } as any)
    await expect(globex.ids()).resolves.toEqual(['g2'])
    await expect(globex.length()).resolves.toBe(1)
    await expect(acme.length()).resolves.toBe(2) // the login's and 'same'
    const all = await acme.all()
    expect(all.map((x) => x.id).sort()).toEqual([sid, 'same'].sort())
    expect(all.find((x) => x.id === 'same')!.user).toBe('A')

    // clear(): every session of that store's tenant, nothing of the other tenant or the manager
    await m.setSession('own', 'manager session')
    await m.cacheQueryResult('q', 'query result')
    await new Promise<void>((resolve, reject) => globex.clear((err?: unknown) => (err ? reject(err) : resolve())))
    expect(await globex.get('g2')).toBeNull()
    expect(await rr.keysStartingWith(`${prefix}t:6:globex:`)).toEqual([])
    expect(((await acme.get('same')) as any).user).toBe('A')
    await expect(m.getSession('own')).resolves.toBe('manager session')
    await expect(m.getCachedQuery('q')).resolves.toBe('query result')
    await expect(m.tenant('acme').deleteAllSessions()).resolves.toBe(2) // the login's and 'same'
    expect(await acme.get('same')).toBeNull()
  })

  it('hostile but valid ids (glob characters, unicode, control characters) are stored literally', async () => {
    const r = await redis()
    const prefix = uniquePrefix('weird')
    const m = manager({ url: r.url, keyPrefix: prefix })
    const store = new FerrocacheStore({ manager: m })
    const rr = raw(r.port)
    const c = { originalMaxAge: 60_000, expires: new Date(Date.now() + 60_000).toISOString() }
    for (const sid of ['*', 'a*b?[c]\\', 'ü🙂', '\r\n\u0000', ':s:', ' ']) {
      await store.set(sid, { cookie: c, user: sid } as any)
      expect(await rr.getUtf8(`${prefix}s:${sid}`)).toContain('"user"')
      expect(((await store.get(sid)) as any).user).toBe(sid)
    }
    await store.destroy('*')
    expect(((await store.get('a*b?[c]\\')) as any).user).toBe('a*b?[c]\\')
    expect(await store.get('*')).toBeNull()

    // through express: a genid with glob characters
    const { app, errors } = makeApp(store, { genid: () => 'sess*[x]?' })
    const agent = request.agent(app)
    await agent.post('/login?user=glob').expect(200)
    expect(await rr.exists(`${prefix}s:sess*[x]?`)).toBe(1)
    expect((await agent.get('/me').expect(200)).body.user).toBe('glob')
    expect(errors).toEqual([])
  })
})

// ---------------------------------------------------------------------------
// outages

describe('FerrocacheStore during a Redis outage', () => {
  it('Redis SIGKILLed mid-way: requests keep working from memory, the outage session reaches Redis after restart', async () => {
    const proc: RedisProc = await startRedisFree()
    const prefix = uniquePrefix('kill')
    const m = manager({ url: proc.url, keyPrefix: prefix, commandTimeoutMs: 250 })
    const w = watch(m)
    const { app, errors } = makeApp(new FerrocacheStore({ manager: m }))
    const ada = request.agent(app)
    const bob = request.agent(app)
    const eve = request.agent(app)

    const adaLogin = await ada.post('/login?user=ada').expect(200)
    let rr = new RawRedis(proc.port)
    expect(await rr.exists(`${prefix}s:${adaLogin.body.sid}`)).toBe(1)
    await rr.close()

    // ada's login (this manager's first call) is held by the near cache; cid logged in on
    // another process (another manager) and never reached this one
    const other = makeApp(new FerrocacheStore({ manager: manager({ url: proc.url, keyPrefix: prefix }) }))
    const cidCookie = sessionCookie(await request(other.app).post('/login?user=cid').expect(200))

    await proc.kill() // SIGKILL by pid

    // requests keep working; ada stays logged in (the near cache's fail-safe); cid looks logged
    // out on this process during the outage (documented), with no error
    const adaDuring = await ada.get('/me').expect(200)
    expect(adaDuring.body).toMatchObject({ sid: adaLogin.body.sid, user: 'ada' })
    expect(m.metrics().nearCache.failSafeHits).toBeGreaterThan(0)
    expect((await request(app).get('/me').set('Cookie', cidCookie).expect(200)).body.user).toBeNull()

    const bobLogin = await bob.post('/login?user=bob').expect(200)
    const bobSid = bobLogin.body.sid
    expect((await bob.get('/me').expect(200)).body).toMatchObject({ sid: bobSid, user: 'bob', expiresIsDate: true })
    expect((await bob.post('/visit').expect(200)).body.visits).toBe(1)
    expect((await bob.get('/me').expect(200)).body.visits).toBe(1)

    // a session created and destroyed during the outage
    const eveLogin = await eve.post('/login?user=eve').expect(200)
    await eve.post('/logout').expect(200)
    expect(w.fallback.length).toBeGreaterThanOrEqual(1)
    expect((await m.health()).mode).toBe('memory')

    const restarted = await restartOn(proc.port) // empty: no persistence
    await waitFor('recovered', () => w.recovered.length > 0, 10_000)
    expect(w.recovered[0].replayed).toBeGreaterThanOrEqual(2)

    rr = raw(restarted.port)
    const bobRaw = JSON.parse((await rr.getUtf8(`${prefix}s:${bobSid}`))!)
    expect(bobRaw.user).toBe('bob')
    expect(bobRaw.visits).toBe(1)
    const pttl = await rr.pttl(`${prefix}s:${bobSid}`)
    expect(pttl).toBeGreaterThan(50_000)
    expect(pttl).toBeLessThanOrEqual(60_000)
    expect(await rr.exists(`${prefix}s:${eveLogin.body.sid}`)).toBe(0)

    // and is served from Redis now
    expect((await bob.get('/me').expect(200)).body).toMatchObject({ sid: bobSid, user: 'bob', visits: 1 })
    expect(errors).toEqual([])
    await restarted.kill()
  })

  it("simulateOutage({mode:'refuse'}): the same flow without killing Redis", async () => {
    const r = await redis()
    const prefix = uniquePrefix('sim')
    const m = manager({ url: r.url, keyPrefix: prefix, commandTimeoutMs: 250 })
    const w = watch(m)
    const { app, errors } = makeApp(new FerrocacheStore({ manager: m }))
    const rr = raw(r.port)
    const ada = request.agent(app)
    const bob = request.agent(app)

    const adaSid = (await ada.post('/login?user=ada').expect(200)).body.sid
    expect((await ada.get('/me').expect(200)).body.user).toBe('ada') // read: held by the near cache

    m.simulateOutage({ mode: 'refuse' })
    expect((await ada.get('/me').expect(200)).body.user).toBe('ada') // pre-outage session: fail-safe
    const bobSid = (await bob.post('/login?user=bob').expect(200)).body.sid
    expect((await bob.get('/me').expect(200)).body).toMatchObject({ sid: bobSid, user: 'bob' })
    expect(await rr.exists(`${prefix}s:${bobSid}`)).toBe(0) // not in Redis yet
    expect(w.fallback.map((f) => f.kind)).toContain('simulated')

    m.endSimulatedOutage()
    await waitFor('recovered', () => w.recovered.length > 0, 10_000)
    expect(JSON.parse((await rr.getUtf8(`${prefix}s:${bobSid}`))!).user).toBe('bob')
    expect(await rr.pttl(`${prefix}s:${bobSid}`)).toBeGreaterThan(50_000)
    expect((await bob.get('/me').expect(200)).body).toMatchObject({ sid: bobSid, user: 'bob' })
    // Redis kept ada's session through the (simulated) outage
    expect((await ada.get('/me').expect(200)).body).toMatchObject({ sid: adaSid, user: 'ada' })
    expect(errors).toEqual([])
  })

  it('a session that expires during the outage is not replayed to Redis; a live one keeps its remaining TTL', async () => {
    const r = await redis()
    const prefix = uniquePrefix('simexp')
    const m = manager({ url: r.url, keyPrefix: prefix, commandTimeoutMs: 250 })
    const w = watch(m)
    const short = makeApp(new FerrocacheStore({ manager: m }), { cookie: { maxAge: 300 } })
    const long = makeApp(new FerrocacheStore({ manager: m }), { cookie: { maxAge: 5000 } })
    const rr = raw(r.port)

    m.simulateOutage({ mode: 'refuse' })
    const shortSid = (await request(short.app).post('/login').expect(200)).body.sid
    const longSid = (await request(long.app).post('/login').expect(200)).body.sid
    await sleep(1000)
    m.endSimulatedOutage()
    await waitFor('recovered', () => w.recovered.length > 0, 10_000)
    expect(await rr.exists(`${prefix}s:${shortSid}`)).toBe(0)
    const pttl = await rr.pttl(`${prefix}s:${longSid}`)
    expect(pttl).toBeGreaterThan(2500)
    expect(pttl).toBeLessThanOrEqual(4000)
  })

  it('fallback disabled: during an outage the ERR_REDIS_UNAVAILABLE error reaches the error handler', async () => {
    const r = await redis()
    const prefix = uniquePrefix('nofb')
    const m = manager({ url: r.url, keyPrefix: prefix, commandTimeoutMs: 250, fallback: { enabled: false } })
    const { app, errors } = makeApp(new FerrocacheStore({ manager: m }))
    const agent = request.agent(app)
    await agent.post('/login').expect(200)
    m.simulateOutage({ mode: 'refuse' })
    const res = await agent.get('/me').expect(500)
    expect(res.body).toEqual({ code: 'ERR_REDIS_UNAVAILABLE', name: 'Error' })
    expect(errors.map((e) => e.code)).toEqual(['ERR_REDIS_UNAVAILABLE'])
    m.endSimulatedOutage()
  })

  it('a logout during an outage reaches a session from before it that the near cache held', async () => {
    const r = await redis()
    const prefix = uniquePrefix('nearout')
    const m = manager({ url: r.url, keyPrefix: prefix, commandTimeoutMs: 250 })
    const w = watch(m)
    const { app } = makeApp(new FerrocacheStore({ manager: m }))
    const rr = raw(r.port)
    const ada = request.agent(app)
    const adaSid = (await ada.post('/login?user=ada').expect(200)).body.sid
    expect((await ada.get('/me').expect(200)).body.user).toBe('ada')

    m.simulateOutage({ mode: 'refuse' })
    await ada.post('/logout').expect(200)
    expect((await ada.get('/me').expect(200)).body.user).toBeNull()
    m.endSimulatedOutage()
    await waitFor('recovered', () => w.recovered.length > 0, 10_000)
    expect(await rr.exists(`${prefix}s:${adaSid}`)).toBe(0)
    expect((await ada.get('/me').expect(200)).body.user).toBeNull()
  })

  it('documented limit: without the near cache, a logout during an outage cannot reach a session created before it', async () => {
    const r = await redis()
    const prefix = uniquePrefix('limit')
    const m = manager({ url: r.url, keyPrefix: prefix, commandTimeoutMs: 250, nearCache: { enabled: false } })
    const w = watch(m)
    const { app } = makeApp(new FerrocacheStore({ manager: m }))
    const rr = raw(r.port)
    const ada = request.agent(app)
    const adaSid = (await ada.post('/login?user=ada').expect(200)).body.sid

    m.simulateOutage({ mode: 'refuse' })
    // express-session does not find ada's session, makes a new one, and destroys that one
    await ada.post('/logout').expect(200)
    m.endSimulatedOutage()
    await waitFor('recovered', () => w.recovered.length > 0, 10_000)
    expect(await rr.exists(`${prefix}s:${adaSid}`)).toBe(1)
    expect((await ada.get('/me').expect(200)).body.user).toBe('ada')
  })
})

// ---------------------------------------------------------------------------
// memory:// mode

describe('FerrocacheStore over memory://', () => {
  it('login, read, expiry, touch and logout', async () => {
    const m = manager({ url: 'memory://' })
    const store = new FerrocacheStore({ manager: m })
    const { app, errors } = makeApp(store, { cookie: { maxAge: 1000 } })
    // The cookie is sent by hand: its Expires attribute has a resolution of one second, so a
    // cookie jar may drop a sub-second cookie before the server-side session expires.
    const get = (cookie: string) => request(app).get('/me').set('Cookie', cookie).expect(200)

    const login = await request(app).post('/login?user=mem').expect(200)
    const sid = login.body.sid
    const cookie = sessionCookie(login)
    expect((await get(cookie)).body).toMatchObject({ sid, user: 'mem', expiresIsDate: true })
    expect(((await store.get(sid)) as any).user).toBe('mem')

    // touch (unmodified requests) keeps it alive past its original lifetime
    await sleep(600)
    expect((await get(cookie)).body.user).toBe('mem')
    await sleep(600)
    expect((await get(cookie)).body.user).toBe('mem')

    // expiry
    await sleep(1200)
    expect(await store.get(sid)).toBeNull()
    const fresh = await get(cookie)
    expect(fresh.body.user).toBeNull()
    expect(fresh.body.sid).not.toBe(sid)

    // logout
    const again = request.agent(app)
    const sid2 = (await again.post('/login').expect(200)).body.sid
    expect(((await store.get(sid2)) as any).user).toBe('ada')
    await again.post('/logout').expect(200)
    expect(await store.get(sid2)).toBeNull()
    expect(errors).toEqual([])
  })

  it('req.session.regenerate (login without session fixation) replaces the stored session', async () => {
    const m = manager({ url: 'memory://' })
    const store = new FerrocacheStore({ manager: m })
    const app = express()
    app.use(session({ store, secret: SECRET, resave: false, saveUninitialized: false, cookie: { maxAge: 60_000 } }))
    app.post('/visit', (req, res) => {
      req.session.visits = 1
      res.json({ sid: req.sessionID })
    })
    app.post('/login', (req, res, next) => {
      const old = req.sessionID
      req.session.regenerate((err) => {
        if (err) return next(err)
        req.session.user = 'regen'
        res.json({ old, sid: req.sessionID })
      })
    })
    const agent = request.agent(app)
    await agent.post('/visit').expect(200)
    const { old, sid } = (await agent.post('/login').expect(200)).body
    expect(sid).not.toBe(old)
    expect(await store.get(old)).toBeNull()
    expect(((await store.get(sid)) as any).user).toBe('regen')
  })

  it('tenant option isolates two stores', async () => {
    const m = manager({ url: 'memory://' })
    const a = new FerrocacheStore({ manager: m, tenant: 'a' })
    const b = new FerrocacheStore({ manager: m, tenant: 'b' })
    const A = makeApp(a)
    const B = makeApp(b)
    const cookie = sessionCookie(await request(A.app).post('/login?user=in-a').expect(200))
    expect((await request(B.app).get('/me').set('Cookie', cookie).expect(200)).body.user).toBeNull()
    expect((await request(A.app).get('/me').set('Cookie', cookie).expect(200)).body.user).toBe('in-a')
    await expect(m.getSession(cookie)).resolves.toBeNull()
  })
})

// ---------------------------------------------------------------------------
// bad input and the callback contract

describe('FerrocacheStore: bad input and the callback contract', () => {
  const BAD_IDS: Array<[string, unknown, string]> = [
    ['empty', '', 'ERR_INVALID_ARG'],
    ['lone surrogate', '\uD800abc', 'ERR_INVALID_ARG'],
    ['number', 42, 'ERR_INVALID_ARG'],
    ['null', null, 'ERR_INVALID_ARG'],
    ['undefined', undefined, 'ERR_INVALID_ARG'],
    ['object', { toString: () => 'x' }, 'ERR_INVALID_ARG'],
    ['too long', 'x'.repeat(5000), 'ERR_TOO_LARGE'],
  ]
  const cookie = () => ({ originalMaxAge: 60_000, expires: new Date(Date.now() + 60_000).toISOString() })

  it.each(BAD_IDS)(
    '%s id: every method calls back once with the coded error, never throws',
    async (_name, sid, code) => {
      const m = manager({ url: 'memory://' })
      const store = new FerrocacheStore({ manager: m })
      const s = sid as string
      for (const invoke of [
        (cb: any) => store.get(s, cb),
        (cb: any) => store.set(s, { cookie: cookie(), user: 'u' } as any, cb),
        (cb: any) => store.destroy(s, cb),
        (cb: any) => store.touch(s, { cookie: cookie(), user: 'u' } as any, cb),
      ]) {
        const r = await call(invoke)
        expect(r.threw).toBeUndefined()
        expect(r.calls).toBe(1)
        expect(r.args[0]).toBeInstanceOf(code === 'ERR_TOO_LARGE' ? RangeError : TypeError)
        expect(r.args[0].code).toBe(code)
      }
      // and as promises, without a callback
      await expect(store.get(s)).rejects.toMatchObject({ code })
    },
  )

  it('a session that cannot be serialized or is not an object calls back with the error', async () => {
    const m = manager({ url: 'memory://', limits: { maxValueBytes: 1000 } } as CacheOptions)
    const store = new FerrocacheStore({ manager: m })
    const circular: any = { cookie: cookie() }
    circular.self = circular
    const cases: Array<[unknown, string]> = [
      [circular, 'ERR_SERIALIZE'],
      [{ cookie: cookie(), big: 1n }, 'ERR_SERIALIZE'],
      [{ cookie: cookie(), blob: 'x'.repeat(2000) }, 'ERR_TOO_LARGE'],
      [null, 'ERR_INVALID_ARG'],
      ['string', 'ERR_INVALID_ARG'],
    ]
    for (const [sess, code] of cases) {
      const r = await call((cb) => store.set('ok', sess as any, cb))
      expect(r.threw).toBeUndefined()
      expect(r.calls).toBe(1)
      expect(r.args[0].code).toBe(code)
    }
  })

  it('success calls back exactly once with (null, value); a miss is null', async () => {
    const m = manager({ url: 'memory://' })
    const store = new FerrocacheStore({ manager: m })
    const miss = await call((cb) => store.get('nope', cb))
    expect(miss).toEqual({ args: [null, null], calls: 1, threw: undefined })
    const set = await call((cb) => store.set('yes', { cookie: cookie(), user: 'u' } as any, cb))
    expect(set.calls).toBe(1)
    expect(set.args[0]).toBeNull()
    const hit = await call((cb) => store.get('yes', cb))
    expect(hit.calls).toBe(1)
    expect(hit.args[1]).toMatchObject({ user: 'u' })
    // a value under the same id that is not a session (written by other code) reads as a miss
    await m.setSession('foreign', 'just a string')
    expect((await call((cb) => store.get('foreign', cb))).args).toEqual([null, null])
    await m.setSession('foreign2', { user: 'no cookie' })
    expect((await call((cb) => store.get('foreign2', cb))).args).toEqual([null, null])
  })

  it('a closed manager: the ERR_CLOSED error reaches the callback', async () => {
    const m = manager({ url: 'memory://' })
    const store = new FerrocacheStore({ manager: m })
    await m.close()
    const r = await call((cb) => store.get('x', cb))
    expect(r.calls).toBe(1)
    expect(r.args[0].code).toBe('ERR_CLOSED')
  })

  it('through express-session: hostile ids reach the error handler, the app keeps serving', async () => {
    const m = manager({ url: 'memory://' })
    const store = new FerrocacheStore({ manager: m })
    const { app, errors } = makeApp(store)

    // a validly signed cookie carrying an over-long id: store.get fails -> next(err)
    const tooLong = await request(app)
      .get('/me')
      .set('Cookie', signedCookie('x'.repeat(5000)))
      .expect(500)
    expect(tooLong.body).toEqual({ code: 'ERR_TOO_LARGE', name: 'RangeError' })
    expect(errors.map((e) => e.code)).toEqual(['ERR_TOO_LARGE'])
    errors.length = 0

    // a signed cookie with glob characters is simply a miss
    const glob = await request(app).get('/me').set('Cookie', signedCookie('*')).expect(200)
    expect(glob.body.user).toBeNull()

    // genid producing bad ids: store.set fails at the end of the response; the error goes to
    // the callback express-session gave the store, which passes it on to next(err)
    for (const [id, code] of [
      ['', 'ERR_INVALID_ARG'],
      ['\uDC00lone', 'ERR_INVALID_ARG'],
      ['y'.repeat(5000), 'ERR_TOO_LARGE'],
    ] as const) {
      const spied = new FerrocacheStore({ manager: m })
      const seen: any[] = []
      const set = spied.set.bind(spied)
      spied.set = ((sid: string, sess: any, cb: (err?: any) => void) =>
        set(sid, sess, (err?: any) => {
          seen.push(err)
          cb(err)
        })) as typeof spied.set
      const bad = makeApp(spied, { genid: () => id })
      await request(bad.app).post('/login').expect(200)
      await waitFor('the store callback', () => seen.length > 0, 2000)
      await sleep(50)
      expect(seen).toHaveLength(1)
      expect(seen[0]).toMatchObject({ code })
      if (id.startsWith('\uDC00')) {
        // express-session itself fails first, encoding that id into the cookie (URIError), so the
        // error handler gets that one; it then calls next() again with the store's error, which
        // goes past the handler to Express's final handler. Not the store's doing.
        expect(bad.errors).toEqual([expect.objectContaining({ name: 'URIError' })])
      } else {
        expect(bad.errors).toEqual([expect.objectContaining({ code })])
      }
    }

    // still serving
    const agent = request.agent(app)
    await agent.post('/login?user=after').expect(200)
    expect((await agent.get('/me').expect(200)).body.user).toBe('after')
    expect(errors).toEqual([])
  })
})

// ---------------------------------------------------------------------------
// construction

describe('FerrocacheStore construction', () => {
  it('is an express-session Store; defaults to the package cacheManager (without connecting)', () => {
    const store = new FerrocacheStore()
    expect(store).toBeInstanceOf(session.Store)
    expect(store.manager).toBe(cacheManager)
    expect(createSessionStore({ manager: cacheManager }).manager).toBe(cacheManager)
    // the optional Store methods too (listSessionIds / deleteAllSessions)
    for (const name of ['all', 'length', 'ids', 'clear']) expect(typeof (store as any)[name]).toBe('function')
  })

  it('invalid options throw a TypeError/RangeError with code ERR_INVALID_ARG', () => {
    const m = manager({ url: 'memory://' })
    const bad: Array<[unknown, ErrorConstructor]> = [
      ['nope', TypeError],
      [[], TypeError],
      [{ manager: {} }, TypeError],
      [{ manager: 'redis://x' }, TypeError],
      [{ manager: m, tenant: '' }, TypeError],
      [{ manager: m, tenant: 5 }, TypeError],
      [{ manager: m, ttlSeconds: 0 }, RangeError],
      [{ manager: m, ttlSeconds: -1 }, RangeError],
      [{ manager: m, ttlSeconds: Infinity }, RangeError],
      [{ manager: m, ttlSeconds: '60' }, TypeError],
      [{ manager: m, disableTouch: 'yes' }, TypeError],
    ]
    for (const [options, Ctor] of bad) {
      let err: any
      try {
        new FerrocacheStore(options as FerrocacheStoreOptions)
      } catch (e) {
        err = e
      }
      expect(err).toBeInstanceOf(Ctor)
      expect(err.code).toBe('ERR_INVALID_ARG')
    }
  })

  it('without express-session installed, constructing throws a TypeError explaining how to install it', () => {
    jest.isolateModules(() => {
      jest.doMock('express-session', () => {
        const err: any = new Error("Cannot find module 'express-session'")
        err.code = 'MODULE_NOT_FOUND'
        throw err
      })
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const isolated = require('../lib/session.js') as typeof import('../lib/session')
      let err: any
      try {
        new isolated.FerrocacheStore({ manager: manager({ url: 'memory://' }) })
      } catch (e) {
        err = e
      }
      expect(err).toBeInstanceOf(TypeError)
      expect(err.code).toBe('ERR_INVALID_ARG')
      expect(err.message).toMatch(/npm install express-session/)
      expect(() => isolated.createSessionStore()).toThrow(/express-session/)
    })
    jest.dontMock('express-session')
  })
})
