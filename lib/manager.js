'use strict'
// CacheManager and TenantCache: the public API over the native cache (binding.js). This file
// owns what must happen on the JS side: argument checks that need V8 (types, lone
// surrogates), V8's JSON once per value (so every read is a fresh copy), the lazily
// configured default instance, and the lifecycle (close finishes what was called). Every
// data call goes through one protocol (calls.js); options, health, metrics and every cache
// decision are Rust's (src/).

const { NativeCache, Call } = require('./native.js')
const { codes, invalid, closedError, fromNative } = require('./errors.js')
const { Calls, Result } = require('./calls.js')
const { describe, checkString, checkTtl, checkRateLimit, encode, decode } = require('./validate.js')
const { tracing, message, trace, flight: traceFlight } = require('./tracing.js')

const DEFAULT_URL = 'redis://127.0.0.1:6379'

// One data scope: the manager's own keys (tenant undefined) or one tenant's.
// `owner` resolves the native half lazily (the default instance is created on first use).
class Scope {
  #owner
  #tenant

  constructor(owner, tenant) {
    this.#owner = owner ?? this // a manager is its own owner
    this.#tenant = tenant
  }

  // One data call: checked, then handed to the protocol; what this throws becomes a rejection.
  // `parent`: the message of the traced operation it is made for (tracing.js), if any.
  #call(call, key, json, ttlSeconds, result, parent) {
    try {
      return this.#owner._calls().run(call, key, this.#tenant, json, ttlSeconds, result, parent)
    } catch (err) {
      return Promise.reject(err)
    }
  }

  #read(call, name, key, result = Result.VALUE) {
    try {
      checkString(name, key)
    } catch (err) {
      return Promise.reject(err)
    }
    return this.#call(call, key, undefined, undefined, result)
  }

  #write(call, name, key, data, ttlSeconds) {
    let json
    try {
      checkString(name, key)
      checkTtl('ttlSeconds', ttlSeconds)
      json = encode(data)
    } catch (err) {
      return Promise.reject(err)
    }
    return this.#call(call, key, json, ttlSeconds, Result.NONE)
  }

  /** Stores session data for `ttlSeconds` (default `ttl.session`, 3600). */
  setSession(sessionId, data, ttlSeconds) {
    return this.#write(Call.SetSession, 'sessionId', sessionId, data, ttlSeconds)
  }

  /** The session's data (a fresh copy), or null on a miss. */
  getSession(sessionId) {
    return this.#read(Call.GetSession, 'sessionId', sessionId)
  }

  /** Deletes a session; true if it existed. */
  deleteSession(sessionId) {
    return this.#read(Call.DeleteSession, 'sessionId', sessionId, Result.PLAIN)
  }

  /** Caches a query result for `ttlSeconds` (default `ttl.query`, 300). */
  cacheQueryResult(key, data, ttlSeconds) {
    return this.#write(Call.SetQuery, 'key', key, data, ttlSeconds)
  }

  /** The cached query result (a fresh copy), or null on a miss. */
  getCachedQuery(key) {
    return this.#read(Call.GetQuery, 'key', key)
  }

  /** Deletes one query result (exactly `key`, not a prefix); true if it existed. */
  deleteCachedQuery(key) {
    return this.#read(Call.DeleteQuery, 'key', key, Result.PLAIN)
  }

  /** Removes the query results whose key starts with `prefix` (literally); returns how many. */
  invalidateCache(prefix) {
    return this.#read(Call.InvalidateQueries, 'prefix', prefix, Result.PLAIN)
  }

  /** Removes every query result of this scope; returns how many. */
  invalidateAll() {
    return this.#call(Call.InvalidateAllQueries, undefined, undefined, undefined, Result.PLAIN)
  }

  /**
   * The ids of every live session of this scope, sorted: a `SCAN` of Redis in pages (never
   * blocking it, but O(keyspace)), plus the outage journal and the in-process store. During an
   * outage only sessions written since it began are known.
   */
  listSessionIds() {
    return this.#call(Call.ListSessions, undefined, undefined, undefined, Result.PLAIN)
  }

  /** Removes every session of this scope (SCAN + UNLINK); returns how many. */
  deleteAllSessions() {
    return this.#call(Call.DeleteAllSessions, undefined, undefined, undefined, Result.PLAIN)
  }

  /**
   * Checks `key` against a rate limit of `limit` per `windowMs` (at most `burst`, default
   * `limit`, at once) and counts `cost` (default 1) if allowed: one atomic step in Redis across
   * every process, refused in-process without a Redis call while the key is known to be over
   * its limit, limited locally with this process's share while Redis is down. Resolves with
   * `{ allowed, limit, remaining, resetMs, retryAfterMs }`.
   */
  rateLimit(key, options) {
    let policy
    try {
      checkString('key', key)
      policy = checkRateLimit(options)
      return this.#owner._calls().rateLimit(key, this.#tenant, policy.limit, policy.windowMs, policy.burst, policy.cost)
    } catch (err) {
      return Promise.reject(err)
    }
  }

  /**
   * The cached query result for `key`, or else `await loader()`, cached for
   * `ttlSeconds` (default `ttl.query`) and returned. Concurrent callers of the same
   * key in this process share one lookup and one loader call (single flight); each
   * gets its own fresh copy. A loader that throws (or returns undefined) caches
   * nothing and rejects every waiter with its error.
   */
  getOrSet(key, loader, ttlSeconds) {
    if (tracing()) {
      return trace(message('getOrSet', 'query', this.#tenant, key), this.#getOrSet, this, key, loader, ttlSeconds)
    }
    return this.#getOrSet(key, loader, ttlSeconds, undefined)
  }

  // `traced`: the operation's message when it is traced (tracing.js).
  #getOrSet(key, loader, ttlSeconds, traced) {
    try {
      checkString('key', key)
      if (typeof loader !== 'function') throw invalid(`loader must be a function, got ${describe(loader)}`)
      checkTtl('ttlSeconds', ttlSeconds)
      this.#owner._calls()
    } catch (err) {
      return Promise.reject(err)
    }
    const flights = this.#owner._flights
    const id = this.#flightId(key)
    let flight = flights.get(id)
    if (flight === undefined) {
      flight = this.#load(key, loader, ttlSeconds, traced).finally(() => flights.delete(id))
      flights.set(id, flight)
      if (traced !== undefined) traceFlight(flight, traced, false)
    } else if (traced !== undefined) traceFlight(flight, traced, true)
    // a getOrSetMany whose loader did not return this key: load it here
    return flight.then((json) => (json === NOT_LOADED ? this.#getOrSet(key, loader, ttlSeconds, traced) : decode(json)))
  }

  /**
   * @internal `calls` made in one go (each a promise), sent as one pipeline: one round trip for
   * Keyv's getMany and setMany.
   */
  _together(calls) {
    try {
      this.#owner._calls().together()
    } catch {
      // closed: every call has rejected with ERR_CLOSED already
    }
    return Promise.all(calls)
  }

  // The key of a load in `_flights`: the scope and the key.
  #flightId(key) {
    return this.#tenant === undefined ? `m\u0000${key}` : `t${this.#tenant.length}:${this.#tenant}\u0000${key}`
  }

  /**
   * The cached query results of `keys`, the missing ones loaded by one call of
   * `loader(missing)` and cached for `ttlSeconds` (default `ttl.query`). The reads are one
   * pipeline (one round trip; near-cache hits need none), so are the writes. A key being loaded
   * by a concurrent getOrSet or getOrSetMany of this process is awaited, not loaded again.
   * Resolves with a record of every key: its value (a fresh copy), or null for a key the loader
   * did not return. A loader that throws, returns something other than a record or a Map, or
   * returns a key it was not asked for caches nothing and rejects the call.
   */
  getOrSetMany(keys, loader, ttlSeconds) {
    if (tracing()) {
      const traced = message('getOrSetMany', 'query', this.#tenant, undefined)
      traced.keys = keys
      return trace(traced, this.#getOrSetMany, this, keys, loader, ttlSeconds)
    }
    return this.#getOrSetMany(keys, loader, ttlSeconds, undefined)
  }

  // `traced`: the operation's message when it is traced (its writes are its children; `hit`: no
  // key had to be loaded).
  #getOrSetMany(keys, loader, ttlSeconds, traced) {
    let unique, calls
    try {
      if (!Array.isArray(keys)) throw invalid(`keys must be an array of strings, got ${describe(keys)}`)
      for (let i = 0; i < keys.length; i++) checkString(`keys[${i}]`, keys[i])
      if (typeof loader !== 'function') throw invalid(`loader must be a function, got ${describe(loader)}`)
      checkTtl('ttlSeconds', ttlSeconds)
      unique = [...new Set(keys)]
      calls = this.#owner._calls()
    } catch (err) {
      return Promise.reject(err)
    }
    const flights = this.#owner._flights
    const waits = new Array(unique.length) // JSON text answered on the spot, or a flight
    const reads = { keys: [], ids: [], answers: [], at: [] } // the keys this call loads
    let now = true // every key answered on the spot (near-cache or in-process hits)
    for (let i = 0; i < unique.length; i++) {
      const key = unique[i]
      const id = this.#flightId(key)
      const flight = flights.get(id)
      const answer = flight === undefined ? calls.readText(Call.GetQuery, key, this.#tenant) : flight
      if (typeof answer === 'string') {
        waits[i] = answer
        continue
      }
      now = false
      if (flight !== undefined) waits[i] = flight
      else {
        reads.keys.push(key)
        reads.ids.push(id)
        reads.answers.push(answer)
        reads.at.push(i)
      }
    }
    calls.together()
    if (reads.keys.length > 0) {
      const loads = this.#loadMany(calls, reads, loader, ttlSeconds, traced)
      for (let j = 0; j < loads.length; j++) {
        flights.set(reads.ids[j], loads[j])
        waits[reads.at[j]] = loads[j]
      }
    }
    if (traced !== undefined) traced.hit = reads.keys.length === 0
    const record = (texts) =>
      Object.fromEntries(unique.map((key, i) => [key, texts[i] === NOT_LOADED ? null : decode(texts[i])]))
    if (!now) return Promise.all(waits).then(record)
    try {
      return Promise.resolve(record(waits))
    } catch (err) {
      return Promise.reject(err)
    }
  }

  // The flights of `reads.keys` (none in flight; `reads.ids` their keys in `_flights`, which each
  // leaves as it settles; `reads.answers` each read's answer: null for a miss answered on the
  // spot, else a promise): one promise per key of its JSON text, or NOT_LOADED. Once every read
  // is answered, the loader is called once with the missing keys.
  #loadMany(calls, { keys, ids, answers }, loader, ttlSeconds, traced) {
    const flights = this.#owner._flights
    const texts = new Array(keys.length) // each read's JSON text, null on a miss
    let unread = keys.length
    let startLoad
    const loading = new Promise((resolve) => (startLoad = resolve))
    const read = () => {
      if (--unread > 0) return
      const asked = keys.filter((_, i) => texts[i] === null)
      startLoad(this.#loadMissing(calls, asked, loader, ttlSeconds, traced))
    }
    const leave = (i) => flights.delete(ids[i])
    // each callback runs once the flights are registered (a promise's callback is never synchronous)
    return keys.map((key, i) =>
      Promise.resolve(answers[i]).then(
        (json) => {
          texts[i] = json
          read()
          if (json !== null) {
            leave(i)
            return json
          }
          return loading.then(
            (loaded) => {
              leave(i)
              if (loaded.failed.has(key)) throw loaded.failed.get(key)
              return loaded.texts.get(key) ?? NOT_LOADED
            },
            (err) => {
              leave(i)
              throw err
            },
          )
        },
        (err) => {
          read()
          leave(i)
          throw err
        },
      ),
    )
  }

  // One loader call for `asked` (the keys read as missing), its values written as one pipeline:
  // resolves with { texts: key -> JSON text, failed: key -> the error of its write }.
  async #loadMissing(calls, asked, loader, ttlSeconds, traced) {
    if (asked.length === 0) return { texts: new Map(), failed: new Map() }
    const texts = loaded(await loader(asked), asked)
    const writes = []
    for (const [key, json] of texts) writes.push(this.#call(Call.SetQuery, key, json, ttlSeconds, Result.NONE, traced))
    calls.together()
    const outcomes = await Promise.allSettled(writes)
    // a key whose write failed rejects (close() while the loader ran does not: the value is
    // still the caller's, uncached)
    const failed = new Map()
    let i = 0
    for (const key of texts.keys()) {
      const outcome = outcomes[i++]
      if (outcome.status === 'rejected' && !(outcome.reason && outcome.reason.code === codes.CLOSED))
        failed.set(key, outcome.reason)
    }
    return { texts, failed }
  }

  // One flight: read, else load + store; resolves with JSON text (each waiter parses its own copy).
  async #load(key, loader, ttlSeconds, traced) {
    const cached = await this.#call(Call.GetQuery, key, undefined, undefined, Result.TEXT, traced)
    if (cached !== null) return cached
    const value = await loader()
    if (value === undefined) throw invalid(`loader for '${key}' returned undefined; return null or a value`)
    const json = encode(value) // once: stored, and parsed by each waiter
    try {
      await this.#call(Call.SetQuery, key, json, ttlSeconds, Result.NONE, traced)
    } catch (err) {
      // close() came while the loader ran: the value is still the caller's, uncached
      if (!(err && err.code === codes.CLOSED)) throw err
    }
    return json
  }
}

// A key a getOrSetMany loader did not return (its flight resolves with this, not JSON text).
const NOT_LOADED = Symbol('not loaded')

/**
 * What a getOrSetMany loader returned for `asked`, as a Map of key to JSON text: a record or a
 * Map; a key with an undefined value counts as not returned; a key not asked for is refused.
 * Every value is encoded before anything is cached.
 */
function loaded(result, asked) {
  let entries
  if (result instanceof Map) entries = [...result]
  else if (typeof result === 'object' && result !== null && !Array.isArray(result)) entries = Object.entries(result)
  else
    throw invalid(`getOrSetMany: the loader must return a record or a Map of the missing keys, got ${describe(result)}`)
  const wanted = new Set(asked)
  const texts = new Map()
  for (const [key, value] of entries) {
    if (!wanted.has(key))
      throw invalid(
        `getOrSetMany: the loader returned the key ${typeof key === 'string' ? JSON.stringify(key) : describe(key)}, which it was not asked for; nothing was cached`,
      )
    if (value !== undefined) texts.set(key, encode(value))
  }
  return texts
}

/** The data methods of a manager, isolated to one tenant's keys. */
class TenantCache extends Scope {
  #owner

  /** @internal use `manager.tenant(id)` */
  constructor(owner, tenantId) {
    super(owner, tenantId)
    this.#owner = owner
    this.tenantId = tenantId
  }

  /**
   * This tenant's counters (hits, misses, hitRate, entries invalidated) and what it holds in
   * the in-process store; synchronous, no I/O. `tracked` is false past `tenantMetricsLimit`:
   * the counters then read 0 (they are in `metrics().tenants.other`), the in-process figures
   * stay exact.
   */
  metrics() {
    return JSON.parse(this.#owner._native().tenantMetrics(this.tenantId))
  }
}

const EVENTS = ['fallback', 'recovered', 'error']

function eventInfo(e) {
  switch (e.type) {
    case 'fallback':
      return { cause: e.cause, kind: e.kind }
    case 'recovered':
      return { outageMs: e.outageMs, replayed: e.replayed }
    default:
      return { message: e.message, kind: e.kind }
  }
}

/** One cache object over Redis with an in-process fallback store. */
class CacheManager extends Scope {
  #native = null
  #calls = null
  #options
  /** @internal in-flight getOrSet loads, shared by the manager and its tenant scopes */
  _flights = new Map()
  #listeners = new Map(EVENTS.map((name) => [name, new Set()]))
  #subscribed = false
  #closing = null // the promise of close(), once called

  /** Same as `createCacheManager(options)`. `options` may be a function, called on first use. */
  constructor(options) {
    super(null, undefined)
    this.#options = options
    if (typeof options !== 'function') this._native()
  }

  /** @internal the native half, created on first use (the options are checked there). */
  _native() {
    if (this.#native === null) {
      const options = typeof this.#options === 'function' ? this.#options() : this.#options
      try {
        this.#native = new NativeCache(options)
      } catch (err) {
        throw fromNative(err)
      }
      this.#calls = new Calls(this.#native, { decode, error: fromNative })
    }
    return this.#native
  }

  /** @internal the protocol of data calls; throws ERR_CLOSED once close() was called. */
  _calls() {
    if (this.#closing !== null) throw closedError()
    this._native()
    return this.#calls
  }

  /** The data methods isolated to `tenantId`'s keys. */
  tenant(tenantId) {
    checkString('tenantId', tenantId)
    return new TenantCache(this, tenantId)
  }

  /**
   * Listens to `fallback` ({cause, kind}: switched to the in-process store), `recovered`
   * ({outageMs, replayed}: back on Redis after replaying the outage journal) and `error`
   * ({message, kind, count?}). Listeners never keep the process alive; one that throws is
   * reported with `process.emitWarning` and does not affect the others.
   */
  on(event, listener) {
    if (!EVENTS.includes(event)) throw invalid(`event must be one of ${EVENTS.join(', ')}, got ${String(event)}`)
    if (typeof listener !== 'function') throw invalid(`listener must be a function, got ${describe(listener)}`)
    this.#listeners.get(event).add(listener)
    if (!this.#subscribed) {
      try {
        this._native().setEventListener((e) => this.#emit(e.type, eventInfo(e)))
      } catch (err) {
        throw fromNative(err)
      }
      this.#subscribed = true
    }
    return this
  }

  /** Removes a listener added with `on`. */
  off(event, listener) {
    const set = this.#listeners.get(event)
    if (set) set.delete(listener)
    return this
  }

  #emit(type, info) {
    const listeners = this.#listeners.get(type)
    if (!listeners || listeners.size === 0) return
    for (const listener of [...listeners]) {
      try {
        listener(info)
      } catch (err) {
        process.emitWarning(`ferrocache '${type}' listener threw: ${err && err.stack ? err.stack : err}`)
      }
    }
  }

  /**
   * Live check: pings Redis (within commandTimeoutMs) and reports the state.
   * Never rejects: a closed manager is 'unhealthy'.
   */
  async health() {
    let native
    try {
      native = this._native()
    } catch (err) {
      return unhealthy(String(err && err.message))
    }
    return JSON.parse(await native.health())
  }

  /**
   * A snapshot of the counters (no I/O): hits/misses/hitRate overall and per type,
   * sets/deletes, invalidations, Redis errors/timeouts, fallback activations, time in
   * memory mode, Redis round-trip latency percentiles (from a histogram), the
   * in-process store's size and the outage journal's depth; per tenant (at most
   * `tenantMetricsLimit` tenants, the rest summed in `tenants.other`) in `tenants.list`.
   */
  metrics() {
    return JSON.parse(this._native().metrics())
  }

  /**
   * Makes every Redis call of this manager fail as if Redis refused connections
   * (`mode: 'refuse'`) or hung (`'hang'`: calls wait out commandTimeoutMs), through
   * the real failover path: the manager switches to the in-process store, journals
   * changes, and replays them after `endSimulatedOutage()`. For your own tests.
   */
  simulateOutage(options) {
    const mode = options && options.mode
    if (mode !== 'refuse' && mode !== 'hang')
      throw invalid(`simulateOutage: mode must be 'refuse' or 'hang', got ${String(mode)}`)
    this._native().simulateOutage(mode)
  }

  /** Ends a simulated outage; the manager recovers as it would from a real one. */
  endSimulatedOutage() {
    this._native().simulateOutage('none')
  }

  /**
   * Stops taking calls (later ones reject with `ERR_CLOSED`), lets every call made before it
   * finish as it would have (a write reaches Redis, or during an outage the in-process store
   * and the journal), tries once, within `commandTimeoutMs`, to replay what the outage
   * journal holds, then closes the connection. Journaled operations that could not be
   * replayed are reported by an `error` event (`kind: 'journal-dropped'`, `count`) before it
   * resolves. Idempotent; never rejects.
   */
  close() {
    if (this.#closing === null) this.#closing = this.#shutdown()
    return this.#closing
  }

  async #shutdown() {
    let native
    try {
      native = this._native()
    } catch {
      return // a default instance whose environment is invalid has nothing to close
    }
    try {
      await this.#calls.drain()
      const dropped = await native.close()
      if (dropped > 0) {
        this.#emit('error', {
          message: `close(): ${dropped} operations of the outage journal could not be replayed to Redis and are lost`,
          kind: 'journal-dropped',
          count: dropped,
        })
      }
    } catch (err) {
      process.emitWarning(`ferrocache close() failed: ${err && err.stack ? err.stack : err}`)
    }
  }
}

// health() of a manager whose native half could not be created (invalid REDIS_URL, say)
function unhealthy(lastError) {
  return {
    status: 'unhealthy',
    mode: 'memory',
    modeSince: new Date().toISOString(),
    redis: {
      connected: false,
      latencyMs: null,
      url: null,
      lastError,
      usedMemoryBytes: null,
      pingMs: null,
      topology: null,
    },
    fallback: { entries: 0, bytes: 0, maxBytes: 0 },
  }
}

/** A manager configured by `options` (see CacheOptions). Throws on invalid options; never connects. */
function createCacheManager(options) {
  return new CacheManager(options ?? {})
}

/** The default instance: configured from REDIS_URL (else redis://127.0.0.1:6379) on first use. */
const cacheManager = new CacheManager(() => ({ url: process.env.REDIS_URL || DEFAULT_URL }))

module.exports = { cacheManager, createCacheManager, CacheManager, TenantCache, codes }
