'use strict'
// Hand-written public entry point over the generated native binding (binding.js).
// It owns what must happen on the JS side: argument checks that need V8
// (types, lone surrogates), V8's JSON once per value (so every read is a fresh
// copy), errors as TypeError/RangeError with a `code`, and the lazily configured
// default instance. Everything else is in Rust (src/).

const { isNativeError } = require('node:util').types
const { NativeCache, latencyBoundsMs } = require('./binding.js')
const { codes, codedError, invalid, describe } = require('./errors.js')
const { Batcher } = require('./batch.js')
// express.js and prometheus.js require index.js only inside functions (the default manager)
const { cacheHealthHandler, cacheMetricsHandler } = require('./express.js')
const { toPrometheusText, registerPrometheus, PROMETHEUS_CONTENT_TYPE } = require('./prometheus.js')

const SESSION = 0
const QUERY = 1
const MAX_TTL_SECONDS = 2147483647
const DEFAULT_URL = 'redis://127.0.0.1:6379'


// napi's own status codes for arguments it could not convert.
const NAPI_ARG_STATUSES = new Set([
  'InvalidArg',
  'ObjectExpected',
  'StringExpected',
  'NameExpected',
  'FunctionExpected',
  'NumberExpected',
  'BooleanExpected',
  'ArrayExpected',
  'BigintExpected',
])


// Errors made by the addon belong to Node's main realm: under Jest (a VM context)
// `instanceof Error` is false for them, so they are recognised by shape and
// re-created here, in the caller's realm, as the class their code calls for.
function isError(value) {
  return typeof value === 'object' && value !== null && isNativeError(value)
}

/** Maps a native error to the JS error class its code calls for. */
function fromNative(err) {
  if (!isError(err)) return err
  switch (err.code) {
    case codes.INVALID_ARG:
    case codes.SERIALIZE:
      return codedError(TypeError, err.code, err.message)
    case codes.TOO_LARGE:
      return codedError(RangeError, err.code, err.message)
    case codes.CLOSED:
    case codes.REDIS_UNAVAILABLE:
    case codes.REDIS:
      return codedError(Error, err.code, err.message)
    default:
      if (NAPI_ARG_STATUSES.has(err.code)) return codedError(TypeError, codes.INVALID_ARG, err.message)
      // not one of ours (a caught Rust panic, say): keep message and code, in this realm
      if (err instanceof Error) return err
      return codedError(Error, err.code, err.message, err)
  }
}


function checkString(name, value) {
  if (typeof value !== 'string') throw invalid(`${name} must be a string, got ${describe(value)}`)
  if (value.length === 0) throw invalid(`${name} must not be empty`)
  if (!value.isWellFormed()) throw invalid(`${name} contains a lone surrogate (not well-formed UTF-16)`)
  return value
}

// the shape of `cluster` / `sentinel` (values are validated natively)
function checkTopologyOptions(options) {
  for (const name of ['cluster', 'sentinel']) {
    const o = options && options[name]
    if (o === undefined || o === null) continue
    if (typeof o !== 'object') throw invalid(`${name} must be an object, got ${describe(o)}`)
    if (!Array.isArray(o.nodes)) throw invalid(`${name}.nodes must be an array of URLs, got ${describe(o.nodes)}`)
    o.nodes.forEach((n, i) => checkString(`${name}.nodes[${i}]`, n))
  }
  const s = options && options.sentinel
  if (s !== undefined && s !== null) checkString('sentinel.masterName', s.masterName)
}

function checkTtl(ttl) {
  if (ttl === undefined) return undefined
  if (typeof ttl !== 'number') throw invalid(`ttlSeconds must be a number, got ${describe(ttl)}`)
  if (!Number.isFinite(ttl) || ttl <= 0 || ttl > MAX_TTL_SECONDS) {
    throw codedError(RangeError, codes.INVALID_ARG, `ttlSeconds must be positive, finite and at most ${MAX_TTL_SECONDS}, got ${ttl}`)
  }
  return ttl
}

function encode(value) {
  if (value === undefined) throw invalid('data must not be undefined (use null, or delete the entry)')
  let json
  try {
    json = JSON.stringify(value)
  } catch (cause) {
    throw codedError(TypeError, codes.SERIALIZE, `data cannot be serialized to JSON: ${cause && cause.message}`, cause)
  }
  if (json === undefined) throw codedError(TypeError, codes.SERIALIZE, `data cannot be serialized to JSON: ${describe(value)}`)
  return json
}

function decode(json) {
  if (json === null) return null
  try {
    return JSON.parse(json)
  } catch (cause) {
    throw codedError(Error, codes.REDIS, 'the value stored at this key is not valid JSON (written by another client?)', cause)
  }
}


// Async native methods resolve with their value (string, null, boolean, number,
// undefined) or with an Error carrying `code`: any object is an error.
function settle(result) {
  if (typeof result === 'object' && result !== null) throw fromNative(result)
  return result
}

function closedError() {
  return codedError(Error, codes.CLOSED, 'the cache manager is closed')
}

// One data scope: the manager's own keys (tenant undefined) or one tenant's.
// `owner` resolves the native handle lazily (the default instance is created on first use).
class Scope {
  #owner
  #tenant

  constructor(owner, tenant) {
    this.#owner = owner ?? this // a manager is its own owner
    this.#tenant = tenant
  }

  // #get and #set return the batcher's promise itself (settled with the final value or
  // error, see batch.js), not an async wrapper around it; what they throw becomes a rejection.
  #get(kind, name, key) {
    try {
      checkString(name, key)
      const owner = this.#owner
      owner._open() // the default instance is created on first use
      if (owner._sync) return Promise.resolve(decode(owner._local.get(kind, key, this.#tenant)))
      return owner._batcher.get(kind, key, this.#tenant)
    } catch (err) {
      return Promise.reject(fromNative(err))
    }
  }

  #set(kind, name, key, data, ttlSeconds) {
    try {
      checkString(name, key)
      const ttl = checkTtl(ttlSeconds)
      this.#owner._open()
      return this.#store(kind, key, encode(data), ttl) ?? Promise.resolve()
    } catch (err) {
      return Promise.reject(err)
    }
  }

  // Writes JSON text already validated and serialized. memory:// writes on the calling
  // thread and returns undefined; otherwise the promise of the batched write.
  #store(kind, key, json, ttl) {
    const owner = this.#owner
    owner._native()
    try {
      if (owner._sync) return void owner._local.set(kind, key, json, ttl, this.#tenant)
    } catch (err) {
      throw fromNative(err)
    }
    return owner._batcher.set(kind, key, json, ttl, this.#tenant)
  }

  async #delete(kind, name, key) {
    checkString(name, key)
    const native = this.#owner._open()
    try {
      if (this.#owner._sync) return native.deleteSync(kind, key, this.#tenant)
      return settle(await this.#owner._track(native.delete(kind, key, this.#tenant)))
    } catch (err) {
      throw fromNative(err)
    }
  }

  async #invalidate(prefix, all, kind = QUERY) {
    if (!all) checkString('prefix', prefix)
    const native = this.#owner._open()
    try {
      if (this.#owner._sync) return native.invalidateSync(kind, prefix, all, this.#tenant)
      return settle(await this.#owner._track(native.invalidate(kind, prefix, all, this.#tenant)))
    } catch (err) {
      throw fromNative(err)
    }
  }

  /** Stores session data for `ttlSeconds` (default `ttl.session`, 3600). */
  setSession(sessionId, data, ttlSeconds) {
    return this.#set(SESSION, 'sessionId', sessionId, data, ttlSeconds)
  }

  /** The session's data (a fresh copy), or null on a miss. */
  getSession(sessionId) {
    return this.#get(SESSION, 'sessionId', sessionId)
  }

  /** Deletes a session; true if it existed. */
  deleteSession(sessionId) {
    return this.#delete(SESSION, 'sessionId', sessionId)
  }

  /** Caches a query result for `ttlSeconds` (default `ttl.query`, 300). */
  cacheQueryResult(key, data, ttlSeconds) {
    return this.#set(QUERY, 'key', key, data, ttlSeconds)
  }

  /** The cached query result (a fresh copy), or null on a miss. */
  getCachedQuery(key) {
    return this.#get(QUERY, 'key', key)
  }

  /** Deletes one query result (exactly `key`, not a prefix); true if it existed. */
  deleteCachedQuery(key) {
    return this.#delete(QUERY, 'key', key)
  }

  /** Removes the query results whose key starts with `prefix` (literally); returns how many. */
  invalidateCache(prefix) {
    return this.#invalidate(prefix, false)
  }

  /** Removes every query result of this scope; returns how many. */
  invalidateAll() {
    return this.#invalidate('', true)
  }

  /**
   * The ids of every live session of this scope, sorted: a `SCAN` of Redis in pages (never
   * blocking it, but O(keyspace)), plus the outage journal and the in-process store. During an
   * outage only sessions written since it began are known.
   */
  async listSessionIds() {
    const native = this.#owner._open()
    try {
      const ids = await this.#owner._track(native.keys(SESSION, this.#tenant))
      return Array.isArray(ids) ? ids : settle(ids) // an array is the answer, any other object an Error
    } catch (err) {
      throw fromNative(err)
    }
  }

  /** Removes every session of this scope (SCAN + UNLINK); returns how many. */
  deleteAllSessions() {
    return this.#invalidate('', true, SESSION)
  }

  /**
   * The cached query result for `key`, or else `await loader()`, cached for
   * `ttlSeconds` (default `ttl.query`) and returned. Concurrent callers of the same
   * key in this process share one lookup and one loader call (single flight); each
   * gets its own fresh copy. A loader that throws (or returns undefined) caches
   * nothing and rejects every waiter with its error.
   */
  getOrSet(key, loader, ttlSeconds) {
    try {
      checkString('key', key)
      if (typeof loader !== 'function') throw invalid(`loader must be a function, got ${describe(loader)}`)
      checkTtl(ttlSeconds)
      this.#owner._open()
    } catch (err) {
      return Promise.reject(err)
    }
    const flights = this.#owner._flights
    const id = this.#tenant === undefined ? `m\u0000${key}` : `t${this.#tenant.length}:${this.#tenant}\u0000${key}`
    let flight = flights.get(id)
    if (flight === undefined) {
      flight = this.#load(key, loader, ttlSeconds).finally(() => flights.delete(id))
      flights.set(id, flight)
    }
    return flight.then(decode)
  }

  // One flight: read, else load + store; resolves with JSON text (each waiter parses its own copy).
  async #load(key, loader, ttlSeconds) {
    const owner = this.#owner
    owner._native()
    try {
      const cached = owner._sync
        ? owner._local.get(QUERY, key, this.#tenant)
        : await owner._batcher.get(QUERY, key, this.#tenant, true)
      if (cached !== null) return cached
    } catch (err) {
      throw fromNative(err)
    }
    const value = await loader()
    if (value === undefined) throw invalid(`loader for '${key}' returned undefined; return null or a value`)
    const json = encode(value) // once: stored, and parsed by each waiter
    try {
      await this.#store(QUERY, key, json, ttlSeconds)
    } catch (err) {
      // close() came while the loader ran: the value is still the caller's, uncached
      if (!(err && err.code === codes.CLOSED)) throw err
    }
    return json
  }
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
   * This tenant's counters (hits, misses, hitRate, entries invalidated) and what it
   * holds in the in-process store; synchronous, no I/O. `tracked` is false past
   * `tenantMetricsLimit`: the counters then read 0 (they are in
   * `metrics().tenants.other`), the in-process figures stay exact.
   */
  metrics() {
    return tenantStats(this.#owner._native().tenantMetrics(this.tenantId))
  }
}

function counts(c) {
  return { hits: c.hits, misses: c.misses, hitRate: c.hitRate, invalidated: c.invalidated }
}

function tenantStats(t) {
  return {
    tenantId: t.tenant,
    tracked: t.tracked,
    ...counts(t),
    memory: { fallbackBytes: t.fallbackBytes, fallbackEntries: t.fallbackEntries, fallbackMaxBytes: t.fallbackMaxBytes },
  }
}

const EVENTS = ['fallback', 'recovered', 'error']
const LATENCY_BOUNDS_MS = latencyBoundsMs()

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
  #options
  /** @internal in-flight getOrSet loads, shared by the manager and its tenant scopes */
  _flights = new Map()
  #listeners = new Map(EVENTS.map((name) => [name, new Set()]))
  #subscribed = false
  #closing = null // the promise of close(), once called
  #calls = new Set() // unbatched native calls in flight (delete, invalidate, listings)

  /** Same as `createCacheManager(options)`. `options` may be a function, called on first use. */
  constructor(options) {
    super(null, undefined)
    this.#options = options
    if (typeof options !== 'function') this._native()
  }

  /** @internal the native handle, created on first use. */
  _native() {
    if (this.#native === null) {
      const options = typeof this.#options === 'function' ? this.#options() : this.#options
      if (options !== undefined && options !== null && typeof options !== 'object') {
        throw invalid(`options must be an object, got ${describe(options)}`)
      }
      for (const name of ['url', 'keyPrefix']) {
        const v = options && options[name]
        if (v !== undefined && v !== null) checkString(name, v)
      }
      checkTopologyOptions(options)
      try {
        this.#native = new NativeCache(options ?? undefined)
      } catch (err) {
        throw fromNative(err)
      }
      this._sync = this.#native.memoryOnly
      // memory:// reads and writes: getSync/setSync as plain functions, without napi-rs's
      // ~0.4 µs of method-call overhead (src/lib.rs, module `local`; bench/native-calls.js).
      // They answer on the calling thread, so a loop of awaited memory:// calls runs in
      // microtasks and lets timers and I/O in only when it ends, as with any in-process
      // store that answers synchronously (lru-cache, a Map).
      this._local = this._sync ? this.#native.localFunctions() : null
      this._batcher = new Batcher(this.#native, { parse: decode, error: fromNative })
    }
    return this.#native
  }

  /** @internal the native handle for a data call: throws ERR_CLOSED once close() was called. */
  _open() {
    if (this.#closing !== null) throw closedError()
    return this._native()
  }

  /** @internal follows an unbatched native call until it settles, for close(). */
  _track(promise) {
    this.#calls.add(promise)
    const done = () => this.#calls.delete(promise)
    promise.then(done, done)
    return promise
  }

  /** The data methods isolated to `tenantId`'s keys. */
  tenant(tenantId) {
    checkString('tenantId', tenantId)
    return new TenantCache(this, tenantId)
  }

  /**
   * Listens to `fallback` ({cause, kind}: switched to the in-process store),
   * `recovered` ({outageMs, replayed}: back on Redis after replaying the outage
   * journal) and `error` ({message, kind}: misconfiguration or failed replay).
   * Listeners never keep the process alive; one that throws is reported with
   * `process.emitWarning` and does not affect the others.
   */
  on(event, listener) {
    if (!EVENTS.includes(event)) throw invalid(`event must be one of ${EVENTS.join(', ')}, got ${String(event)}`)
    if (typeof listener !== 'function') throw invalid(`listener must be a function, got ${describe(listener)}`)
    this.#listeners.get(event).add(listener)
    if (!this.#subscribed) {
      try {
        this._native().setEventListener((e) => this.#dispatch(e))
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

  #dispatch(e) {
    this.#emit(e.type, eventInfo(e))
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
      return unhealthy('memory', String(err && err.message), 0)
    }
    const memoryOnly = this._sync
    const stats = native.memoryStats()
    const fallback = { entries: stats.entries, bytes: stats.bytes, maxBytes: stats.maxBytes }
    const closed = native.closed
    let check = null
    let checkError = null
    if (!memoryOnly && !closed) {
      try {
        check = await native.healthCheck()
      } catch (err) {
        checkError = String(err && err.message)
      }
    }
    const connected = check !== null && check.connected
    const st = native.failoverStatus()
    let status
    if (closed) status = 'unhealthy'
    else if (memoryOnly || (st.mode === 'redis' && connected && !st.writesRefused)) status = 'healthy'
    else if (native.fallbackEnabled) status = 'degraded'
    else status = 'unhealthy'
    const round = (ms) => Math.round(ms * 1000) / 1000
    const pings = check && check.pingMs ? check.pingMs.map(round) : null
    return {
      status,
      mode: st.mode,
      modeSince: new Date(Date.now() - st.modeAgeMs).toISOString(),
      redis: {
        connected,
        latencyMs: connected && check.latencyMs != null ? round(check.latencyMs) : null,
        url: native.url,
        lastError: closed ? 'closed' : memoryOnly ? null : ((check && check.error) ?? checkError ?? st.lastError ?? null),
        usedMemoryBytes: check && check.usedMemory != null ? check.usedMemory : null,
        pingMs: pings ? { p50: pings[0], p95: pings[1], p99: pings[2] } : null,
        topology: check && check.topology ? check.topology : null,
      },
      fallback,
      failover: {
        breaker: st.breaker,
        journalDepth: st.journalDepth,
        fallbackActivations: st.fallbackActivations,
        memoryModeMs: st.memoryModeMs,
        writesRefused: st.writesRefused,
      },
    }
  }

  /**
   * A snapshot of the counters (no I/O): hits/misses/hitRate overall and per type,
   * sets/deletes, invalidations, Redis errors/timeouts, fallback activations, time in
   * memory mode, Redis round-trip latency percentiles (from a histogram), the
   * in-process store's size and the outage journal's depth; per tenant (at most
   * `tenantMetricsLimit` tenants, the rest summed in `tenants.other`) in `tenants.list`.
   */
  metrics() {
    const native = this._native()
    const m = native.metrics()
    const byType = (k) => ({ hits: k.hits, misses: k.misses, hitRate: k.hitRate, sets: k.sets, deletes: k.deletes })
    return {
      mode: m.mode,
      hits: m.hits,
      misses: m.misses,
      hitRate: m.hitRate,
      byType: { session: byType(m.session), query: byType(m.query) },
      errors: m.errors,
      timeouts: m.timeouts,
      writeRefusals: m.writeRefusals,
      fallbackActivations: m.fallbackActivations,
      latencyMs: { p50: m.latencyMs[0], p95: m.latencyMs[1], p99: m.latencyMs[2], max: m.latencyMs[3] },
      memory: { fallbackBytes: m.fallbackBytes, fallbackEntries: m.fallbackEntries, fallbackMaxBytes: m.fallbackMaxBytes },
      invalidations: m.invalidations,
      invalidatedEntries: m.invalidatedEntries,
      memoryModeMs: m.memoryModeMs,
      journalDepth: m.journalDepth,
      latencyHistogram: {
        count: m.latencyCount,
        sumMs: m.latencySumMs,
        buckets: LATENCY_BOUNDS_MS.map((le, i) => ({ le, count: m.latencyBuckets[i] })),
      },
      tenants: {
        tracked: m.tenants.tracked,
        limit: m.tenants.limit,
        other: counts(m.tenants.other),
        list: native.allTenantMetrics().map(tenantStats),
      },
      topology: m.topology ? { ...m.topology, reachableNodes: m.topology.nodes.filter((n) => n.reachable).length } : null,
    }
  }

  /**
   * Makes every Redis call of this manager fail as if Redis refused connections
   * (`mode: 'refuse'`) or hung (`'hang'`: calls wait out commandTimeoutMs), through
   * the real failover path: the manager switches to the in-process store, journals
   * changes, and replays them after `endSimulatedOutage()`. For your own tests.
   */
  simulateOutage(options) {
    const mode = options && options.mode
    if (mode !== 'refuse' && mode !== 'hang') throw invalid(`simulateOutage: mode must be 'refuse' or 'hang', got ${String(mode)}`)
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
      await this._batcher.drain()
      await Promise.allSettled([...this.#calls])
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
function unhealthy(mode, lastError, maxBytes, url = null) {
  return {
    status: 'unhealthy',
    mode,
    modeSince: new Date().toISOString(),
    redis: { connected: false, latencyMs: null, url, lastError, usedMemoryBytes: null, pingMs: null, topology: null },
    fallback: { entries: 0, bytes: 0, maxBytes },
  }
}

/** A manager configured by `options` (see CacheOptions). Throws on invalid options; never connects. */
function createCacheManager(options) {
  return new CacheManager(options ?? {})
}

/** The default instance: configured from REDIS_URL (else redis://127.0.0.1:6379) on first use. */
const cacheManager = new CacheManager(() => ({ url: process.env.REDIS_URL || DEFAULT_URL }))

// Every export in one object literal, so that Node's CommonJS export detection sees each
// name and ESM apps can import them by name (`import { cacheHealthHandler } from 'ferrocache'`).
module.exports = {
  cacheManager,
  createCacheManager,
  CacheManager,
  TenantCache,
  codes,
  cacheHealthHandler,
  cacheMetricsHandler,
  toPrometheusText,
  registerPrometheus,
  PROMETHEUS_CONTENT_TYPE,
}
