'use strict'
// ferrocache/session: an express-session store over a ferrocache manager.
//
//   const session = require('express-session')
//   const { FerrocacheStore } = require('ferrocache/session')
//   app.use(session({ store: new FerrocacheStore({ manager }), secret, resave: false, saveUninitialized: false }))
//
// Sessions are stored with manager.setSession (key `<keyPrefix>s:<sid>`, or the
// tenant's session key), so they follow ferrocache's failover: served from the
// in-process store while Redis is down, replayed to Redis when it returns.
//
// Callback contract (express-session's): every method calls its callback exactly
// once, asynchronously, as callback(err, result); it never throws synchronously.
// Without a callback it returns a Promise instead.
//
// clear() removes every session of the store's scope (deleteAllSessions) and
// all/length/ids list them (listSessionIds): SCAN in pages, never blocking Redis,
// but O(keyspace) per call. During an outage only sessions written since it began
// are known.

const { invalid } = require('./errors.js')
const {
  MAX_TTL_SECONDS,
  describe,
  isPlainObject,
  checkManager,
  checkOptionsObject,
  checkTtl,
} = require('./validate.js')

// express-session is an optional peer dependency: a missing package is reported
// when a store is constructed, not when this file is loaded.
let expressSession = null
let loadError = null
try {
  expressSession = require('express-session')
} catch (err) {
  loadError = err
}

const EventEmitter = require('node:events')
const Base = expressSession && typeof expressSession.Store === 'function' ? expressSession.Store : EventEmitter

function checkOptions(options) {
  const opts = checkOptionsObject('FerrocacheStore', options)
  checkManager('FerrocacheStore', opts.manager, ['setSession', 'getSession', 'deleteSession', 'tenant'])
  if (opts.tenant !== undefined && opts.tenant !== null && typeof opts.tenant !== 'string') {
    throw invalid(`FerrocacheStore: tenant must be a string, got ${describe(opts.tenant)}`)
  }
  if (opts.ttlSeconds !== null) checkTtl('FerrocacheStore: ttlSeconds', opts.ttlSeconds)
  if (opts.disableTouch !== undefined && opts.disableTouch !== null && typeof opts.disableTouch !== 'boolean') {
    throw invalid(`FerrocacheStore: disableTouch must be a boolean, got ${describe(opts.disableTouch)}`)
  }
  return opts
}

/**
 * How long a session lives, from its cookie:
 *   { expired: true }            the cookie has already expired (maxAge <= 0, or expires in the past)
 *   { ttl: seconds }             from cookie.maxAge (ms), else cookie.expires
 *   { ttl: undefined }           no expiry on the cookie (a browser-session cookie): the default
 */
function lifetime(session) {
  const cookie = isPlainObject(session) ? session.cookie : undefined
  if (!isPlainObject(cookie)) return { ttl: undefined }
  let ms
  // On an express-session Cookie, maxAge is a getter: expires - now (ms).
  const maxAge = cookie.maxAge
  if (typeof maxAge === 'number' && !Number.isNaN(maxAge)) {
    ms = maxAge
  } else if (cookie.expires !== undefined && cookie.expires !== null && cookie.expires !== false) {
    const at = cookie.expires instanceof Date ? cookie.expires.getTime() : new Date(cookie.expires).getTime()
    if (!Number.isNaN(at)) ms = at - Date.now()
  }
  if (ms === undefined) return { ttl: undefined }
  if (ms <= 0) return { expired: true }
  return { ttl: Math.min(ms / 1000, MAX_TTL_SECONDS) }
}

// Runs `fn` (which may throw or return a promise) and reports its outcome to `callback`
// exactly once, on a later tick (so an exception thrown by the callback is not swallowed
// as a promise rejection, nor makes us call back twice). Without a callback: a Promise.
function run(callback, fn) {
  let promise
  try {
    promise = Promise.resolve(fn())
  } catch (err) {
    promise = Promise.reject(err)
  }
  if (typeof callback !== 'function') return promise
  promise.then(
    (value) => process.nextTick(callback, null, value),
    (err) => process.nextTick(callback, err),
  )
  return undefined
}

/** An express-session store that keeps sessions in a ferrocache manager (or one of its tenants). */
class FerrocacheStore extends Base {
  #scope = null
  #defaultTtl
  #disableTouch

  /**
   * @param {{ manager?: import('./manager').CacheManager, tenant?: string, ttlSeconds?: number, disableTouch?: boolean }} [options]
   */
  constructor(options) {
    super()
    if (expressSession === null || Base === EventEmitter) {
      const why = loadError && loadError.message ? `: ${loadError.message}` : ''
      throw invalid(
        `ferrocache/session needs the express-session package, which could not be loaded${why}. Install it with \`npm install express-session\``,
        loadError ?? undefined,
      )
    }
    const opts = checkOptions(options)
    this.#defaultTtl = opts.ttlSeconds ?? undefined
    this.#disableTouch = opts.disableTouch === true
    const manager = opts.manager ?? require('./manager.js').cacheManager
    // tenant() validates the id (TypeError with code) and never connects.
    this.#scope = typeof opts.tenant === 'string' ? manager.tenant(opts.tenant) : manager
    this.manager = manager
    this.tenant = typeof opts.tenant === 'string' ? opts.tenant : undefined
  }

  /** callback(err, session | null): the stored session (plain JSON data), null when there is none. */
  get(sid, callback) {
    return run(callback, async () => {
      const data = await this.#scope.getSession(sid)
      // Something that is not an express-session session (written under the same id with
      // setSession by other code) is treated as a miss: express-session then starts a new
      // session under a new id and leaves that value alone.
      if (!isPlainObject(data) || !isPlainObject(data.cookie)) return null
      return data
    })
  }

  /** callback(err): stores the session for its cookie's remaining lifetime (destroys it if already expired). */
  set(sid, session, callback) {
    return run(callback, () => this.#write(sid, session, false))
  }

  /**
   * callback(err): removes every session of this store's scope (its manager's own
   * sessions, or its tenant's) — not only express-session's, if the app stores others there.
   */
  clear(callback) {
    return run(callback, async () => {
      await this.#scope.deleteAllSessions()
    })
  }

  /** callback(err, ids): the ids of every live session of this store's scope, sorted. */
  ids(callback) {
    return run(callback, () => this.#scope.listSessionIds())
  }

  /** callback(err, count): how many live sessions this store's scope holds. */
  length(callback) {
    return run(callback, async () => (await this.#scope.listSessionIds()).length)
  }

  /**
   * callback(err, sessions): every live session of this store's scope (an array, as
   * express-session documents), each with its `id`; read 64 at a time.
   */
  all(callback) {
    return run(callback, async () => {
      const ids = await this.#scope.listSessionIds()
      const sessions = []
      for (let i = 0; i < ids.length; i += 64) {
        const page = await Promise.all(ids.slice(i, i + 64).map((id) => this.#scope.getSession(id)))
        page.forEach((data, j) => {
          if (isPlainObject(data)) sessions.push({ ...data, id: ids[i + j] })
        })
      }
      return sessions
    })
  }

  /** callback(err): removes the session. */
  destroy(sid, callback) {
    return run(callback, async () => {
      await this.#scope.deleteSession(sid)
    })
  }

  /**
   * callback(err): resets the session's TTL to its (refreshed) cookie's lifetime.
   * Only the cookie is refreshed: the stored data is re-read and re-written with the new
   * cookie, and a session that no longer exists (destroyed meanwhile by another request)
   * is not resurrected. No-op with `disableTouch`.
   */
  touch(sid, session, callback) {
    return run(callback, () => (this.#disableTouch ? undefined : this.#write(sid, session, true)))
  }

  async #write(sid, session, touching) {
    if (!isPlainObject(session)) {
      throw invalid(`session must be an object, got ${describe(session)}`)
    }
    const life = lifetime(session)
    if (life.expired) {
      await this.#scope.deleteSession(sid)
      return
    }
    const ttl = life.ttl ?? this.#defaultTtl
    let data = session
    if (touching) {
      const current = await this.#scope.getSession(sid)
      if (!isPlainObject(current) || !isPlainObject(current.cookie)) return // gone meanwhile: do not resurrect
      data = { ...current, cookie: session.cookie }
    }
    if (ttl === undefined) await this.#scope.setSession(sid, data)
    else await this.#scope.setSession(sid, data, ttl)
  }
}

/** Same as `new FerrocacheStore(options)`. */
function createSessionStore(options) {
  return new FerrocacheStore(options)
}

module.exports = { FerrocacheStore, createSessionStore }
