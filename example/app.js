'use strict'
// Example: a database-per-tenant SaaS API that keeps its sessions and its query
// results in ferrocache.
//
//   POST /login   {user, tenant}  -> session in the cache, `sid` cookie
//   GET  /me                      -> the session behind the cookie (401 without one)
//   POST /logout                  -> deletes the session, clears the cookie
//   GET  /api/orders              -> the tenant's orders, from the cache or the "database"
//   POST /api/orders {item}       -> writes an order, invalidates the tenant's cached queries
//   GET  /api/orders/export       -> the tenant's orders as CSV; 3 a minute per user
//                                    (rateLimitMiddleware, 429 + Retry-After past that)
//   GET  /api/system/cache-health -> manager.health() (200 healthy/degraded, 503 unhealthy)
//   GET  /api/system/cache-metrics -> manager.metrics() as JSON, or Prometheus text
//                                    (`Accept: text/plain`)
//   GET  /status                  -> a live status page over the two system endpoints
//                                    (example/public/: HTML, CSS and a script, no build step)
//
// `createApp(manager)` takes any ferrocache CacheManager (Redis, memory://, or a
// Redis that is down: the manager then serves from its in-process store by itself,
// and this code does not change).
//
// `createApp(manager, { testRoutes: true })` adds two routes for tests (off by default;
// never turn them on in production, they take the cache off Redis for everyone):
//
//   POST /__test/outage {mode}    -> manager.simulateOutage({ mode }) ('refuse' by default, or 'hang')
//   POST /__test/recover          -> manager.endSimulatedOutage()
//
// With Redis, `GET /me` and `GET /api/orders` are mostly answered by the manager's near
// cache (a per-process copy of what it read or wrote) without a Redis round trip. Another
// process's logout or order reaches this process within a few milliseconds (Redis tells it
// which keys changed; README, "Near cache"); this process's own writes are seen at once. If
// Redis dies, users whose session this process had read stay logged in for
// `nearCache.failSafeMs` (60 s by default) instead of reading `null`.

const crypto = require('node:crypto')
const path = require('node:path')
const { setTimeout: sleep } = require('node:timers/promises')
const express = require('express')
// In an app: require('ferrocache')
const { cacheHealthHandler, cacheMetricsHandler, rateLimitMiddleware } = require('..')

const SESSION_COOKIE = 'sid'
const SESSION_TTL_SECONDS = 3600
const ORDERS_TTL_SECONDS = 60
// Query keys of the orders "table" all start with this, so one invalidation drops them all.
const ORDERS_PREFIX = 'orders:'
const ORDERS_LIST_KEY = `${ORDERS_PREFIX}list`

// Tenant ids name a database here, so keep them to a boring alphabet.
const TENANT_ID = /^[a-z0-9][a-z0-9-]{0,62}$/
const SESSION_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
const MAX_USER_LENGTH = 100
const MAX_ITEM_LENGTH = 200
// Exports are the expensive request: each user of a tenant gets 3 a minute.
const EXPORT_LIMIT = { limit: 3, windowMs: 60_000 }

const PUBLIC_DIR = path.join(__dirname, 'public')
// The status page loads only its own script and stylesheet and talks only to this origin.
const STATUS_PAGE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  'img-src data:',
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ')

const DEFAULT_SEED = {
  acme: [
    { item: 'anvil', createdBy: 'wile' },
    { item: 'rocket skates', createdBy: 'wile' },
  ],
  globex: [{ item: 'doomsday device', createdBy: 'hank' }],
}

/**
 * A tiny stand-in for one database per tenant: an orders array per tenant id,
 * and every query costs `delayMs` so the cache visibly matters. Unknown tenants
 * get an empty database on first use.
 */
class FakeDatabase {
  #tenants = new Map()
  #delayMs

  constructor({ delayMs = 5, seed = DEFAULT_SEED } = {}) {
    this.#delayMs = delayMs
    /** How many queries reached the database (reads and writes). */
    this.queries = 0
    for (const [tenantId, orders] of Object.entries(seed)) {
      for (const order of orders) this.#insert(tenantId, order)
    }
  }

  #db(tenantId) {
    let db = this.#tenants.get(tenantId)
    if (!db) {
      db = { orders: [], nextId: 1, generation: 0 }
      this.#tenants.set(tenantId, db)
    }
    return db
  }

  #insert(tenantId, { item, createdBy }) {
    const db = this.#db(tenantId)
    const order = { id: db.nextId++, item, createdBy, createdAt: new Date().toISOString() }
    db.orders.push(order)
    db.generation++
    return { ...order }
  }

  async #query() {
    this.queries++
    if (this.#delayMs > 0) await sleep(this.#delayMs)
  }

  /** Bumped by every write to the tenant's database. */
  generation(tenantId) {
    return this.#db(tenantId).generation
  }

  async listOrders(tenantId) {
    await this.#query()
    return this.#db(tenantId).orders.map((order) => ({ ...order }))
  }

  async insertOrder(tenantId, order) {
    await this.#query()
    return this.#insert(tenantId, order)
  }
}

/** The value of cookie `name` in a `Cookie` header, or null (no cookie-parser needed). */
function readCookie(header, name) {
  if (typeof header !== 'string') return null
  for (const part of header.split(';')) {
    const eq = part.indexOf('=')
    if (eq === -1) continue
    if (part.slice(0, eq).trim() !== name) continue
    let value = part.slice(eq + 1).trim()
    if (value.startsWith('"') && value.endsWith('"') && value.length >= 2) value = value.slice(1, -1)
    try {
      return decodeURIComponent(value)
    } catch {
      return null // malformed %-escape: treat as no cookie
    }
  }
  return null
}

function httpError(status, code, message) {
  const err = new Error(message)
  err.status = status
  err.code = code
  err.expose = true
  return err
}

function nonEmptyString(value, max) {
  return typeof value === 'string' && value.trim().length > 0 && value.length <= max
}

/** One CSV field: quoted when needed, and never read as a formula by a spreadsheet. */
function csvField(value) {
  let text = String(value)
  if (/^[=+\-@\t\r]/.test(text)) text = `'${text}`
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text
}

/**
 * The Express 5 app over `manager` (a ferrocache CacheManager).
 *
 * options.db       a FakeDatabase (default: a new one seeded with acme and globex)
 * options.dbDelayMs  artificial latency per database query when `db` is not given (default 5)
 * options.logger   where unexpected errors are reported (default console)
 * options.testRoutes  true adds POST /__test/outage and /__test/recover (default false)
 */
function createApp(manager, options = {}) {
  if (!manager || typeof manager.getSession !== 'function' || typeof manager.tenant !== 'function') {
    throw new TypeError('createApp(manager): a ferrocache CacheManager is required')
  }
  const db = options.db ?? new FakeDatabase({ delayMs: options.dbDelayMs })
  const logger = options.logger ?? console
  const cookieOptions = { httpOnly: true, sameSite: 'lax', path: '/' }

  const app = express()
  app.disable('x-powered-by')
  app.locals.db = db
  app.locals.manager = manager
  app.use(express.json({ limit: '16kb' }))

  // Loads the session named by the `sid` cookie into req.session, or answers 401.
  async function requireSession(req, res, next) {
    const sid = readCookie(req.headers.cookie, SESSION_COOKIE)
    // Only ids this app could have issued reach the cache.
    const session = sid !== null && SESSION_ID.test(sid) ? await manager.getSession(sid) : null
    if (session === null) {
      if (sid !== null) res.clearCookie(SESSION_COOKIE, cookieOptions)
      res.status(401).json({ error: 'not logged in (no session, or it expired)', code: 'ERR_NO_SESSION' })
      return
    }
    req.sessionId = sid
    req.session = session
    next()
  }

  app.get('/', (req, res) => {
    res.json({
      name: 'ferrocache example',
      endpoints: [
        'POST /login {"user":"wile","tenant":"acme"}',
        'GET /me',
        'POST /logout',
        'GET /api/orders',
        'POST /api/orders {"item":"anvil"}',
        'GET /api/orders/export (CSV, 3 a minute per user)',
        'GET /api/system/cache-health',
        'GET /api/system/cache-metrics (Accept: text/plain for Prometheus)',
        'GET /status (live status page)',
      ],
    })
  })

  app.post('/login', async (req, res) => {
    const { user, tenant } = req.body ?? {}
    if (!nonEmptyString(user, MAX_USER_LENGTH)) {
      throw httpError(
        400,
        'ERR_BAD_REQUEST',
        `"user" must be a non-empty string of at most ${MAX_USER_LENGTH} characters`,
      )
    }
    if (typeof tenant !== 'string' || !TENANT_ID.test(tenant)) {
      throw httpError(400, 'ERR_BAD_REQUEST', '"tenant" must match /^[a-z0-9][a-z0-9-]{0,62}$/')
    }
    const sessionId = crypto.randomUUID()
    const session = { user, tenant, loginAt: new Date().toISOString() }
    await manager.setSession(sessionId, session, SESSION_TTL_SECONDS)
    res.cookie(SESSION_COOKIE, sessionId, { ...cookieOptions, maxAge: SESSION_TTL_SECONDS * 1000 })
    res.status(201).json({ sessionId, session })
  })

  app.get('/me', requireSession, (req, res) => {
    res.json({ sessionId: req.sessionId, session: req.session })
  })

  app.post('/logout', async (req, res) => {
    const sid = readCookie(req.headers.cookie, SESSION_COOKIE)
    const deleted = sid !== null && SESSION_ID.test(sid) ? await manager.deleteSession(sid) : false
    res.clearCookie(SESSION_COOKIE, cookieOptions)
    res.json({ loggedOut: deleted })
  })

  // The tenant's orders from the cache, or from the database (then cached).
  async function readOrders(tenantId) {
    const cache = manager.tenant(tenantId)
    const cached = await cache.getCachedQuery(ORDERS_LIST_KEY)
    if (cached !== null) return { source: 'cache', orders: cached }
    const generation = db.generation(tenantId)
    const orders = await db.listOrders(tenantId)
    await cache.cacheQueryResult(ORDERS_LIST_KEY, orders, ORDERS_TTL_SECONDS)
    // A write that landed between our read and our cache write may have run its
    // invalidation before our (older) result reached the cache: drop it again, or
    // the stale list would be served for 60 s. (Per process; several app
    // instances would keep this generation in the shared store instead.)
    if (db.generation(tenantId) !== generation) {
      await cache.invalidateCache(ORDERS_LIST_KEY)
    }
    return { source: 'db', orders }
  }

  app.get('/api/orders', requireSession, async (req, res) => {
    const tenantId = req.session.tenant
    const { source, orders } = await readOrders(tenantId)
    res.json({ source, tenant: tenantId, orders })
  })

  // One limiter per user inside the tenant, shared by every process over the same Redis.
  const exportLimit = rateLimitMiddleware({
    manager,
    ...EXPORT_LIMIT,
    name: 'orders-export',
    key: (req) => `export:${req.session.user}`,
    tenant: (req) => req.session.tenant,
    handler: (req, res, _next, result) => {
      res.status(429).json({
        error: `at most ${EXPORT_LIMIT.limit} exports a minute`,
        code: 'ERR_RATE_LIMITED',
        retryAfterMs: result.retryAfterMs,
      })
    },
  })

  app.get('/api/orders/export', requireSession, exportLimit, async (req, res) => {
    const tenantId = req.session.tenant
    const { orders } = await readOrders(tenantId)
    const lines = [['id', 'item', 'createdBy', 'createdAt'].join(',')]
    for (const o of orders) lines.push([o.id, o.item, o.createdBy, o.createdAt].map(csvField).join(','))
    res
      .type('text/csv')
      .attachment(`orders-${tenantId}.csv`)
      .send(`${lines.join('\r\n')}\r\n`)
  })

  app.post('/api/orders', requireSession, async (req, res) => {
    const { item } = req.body ?? {}
    if (!nonEmptyString(item, MAX_ITEM_LENGTH)) {
      throw httpError(
        400,
        'ERR_BAD_REQUEST',
        `"item" must be a non-empty string of at most ${MAX_ITEM_LENGTH} characters`,
      )
    }
    const tenantId = req.session.tenant
    const order = await db.insertOrder(tenantId, { item, createdBy: req.session.user })
    const invalidated = await manager.tenant(tenantId).invalidateCache(ORDERS_PREFIX)
    res.status(201).json({ order, invalidated })
  })

  // System endpoints: no session needed (put them behind your own auth or network
  // policy if the numbers are sensitive). Both are ready-made by ferrocache.
  app.get('/api/system/cache-health', cacheHealthHandler(manager))
  app.get('/api/system/cache-metrics', cacheMetricsHandler(manager))

  // The status page polls the two endpoints above from the browser.
  const sendPublic = (file, headers) => (req, res, next) => {
    res.sendFile(file, { root: PUBLIC_DIR, headers }, (err) => {
      if (err) next(err)
    })
  }
  app.get('/status', sendPublic('status.html', { 'Content-Security-Policy': STATUS_PAGE_CSP }))
  app.get('/status.css', sendPublic('status.css'))
  app.get('/status.js', sendPublic('status.js'))

  if (options.testRoutes === true) {
    app.post('/__test/outage', (req, res) => {
      const mode = req.body?.mode ?? 'refuse'
      if (mode !== 'refuse' && mode !== 'hang') {
        throw httpError(400, 'ERR_BAD_REQUEST', `"mode" must be "refuse" or "hang"`)
      }
      manager.simulateOutage({ mode })
      res.json({ outage: mode })
    })
    app.post('/__test/recover', (req, res) => {
      manager.endSimulatedOutage()
      res.json({ outage: 'none' })
    })
  }

  app.use((req, res) => {
    res.status(404).json({ error: `no route for ${req.method} ${req.path}`, code: 'ERR_NOT_FOUND' })
  })

  // Express 5 forwards rejected promises from async handlers here.
  app.use((err, req, res, next) => {
    if (res.headersSent) {
      next(err)
      return
    }
    if (err && err.type === 'entity.parse.failed') {
      res.status(400).json({ error: 'request body is not valid JSON', code: 'ERR_BAD_JSON' })
      return
    }
    const status = err && Number.isInteger(err.status) ? err.status : 500
    if (status >= 400 && status < 500 && err.expose) {
      // body-parser's other client errors (too large, bad charset...) and our own 400s.
      res.status(status).json({ error: err.message, code: err.code ?? err.type ?? 'ERR_BAD_REQUEST' })
      return
    }
    // Anything else, including a rejection from the cache (err.code: ERR_CLOSED,
    // ERR_REDIS_UNAVAILABLE when fallback is off, ERR_REDIS, ...).
    logger.error(`${req.method} ${req.originalUrl} failed:`, err)
    res.status(500).json({
      error: err && err.message ? err.message : 'internal error',
      code: (err && typeof err.code === 'string' && err.code) || 'ERR_INTERNAL',
    })
  })

  return app
}

module.exports = { createApp, FakeDatabase, readCookie }
