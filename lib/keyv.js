'use strict'
// ferrocache/keyv: a Keyv storage adapter over a ferrocache manager.
//
//   const Keyv = require('keyv')
//   const { KeyvFerrocache } = require('ferrocache/keyv')
//   const keyv = new Keyv({ store: new KeyvFerrocache({ manager }) })
//
// Entries are ferrocache query results (cacheQueryResult / getCachedQuery /
// invalidateCache), so they follow its failover: served from the in-process
// store while Redis is down, replayed to Redis when it returns.
//
// Key layout inside the manager's (or tenant's) query keys:
//   <prefix><namespace byte length>:<namespace>:<key byte length>:<key>
// (no namespace = length 0). The lengths make the layout injective and every
// entry's key a prefix of no other entry's key, so `invalidateCache(<prefix><namespace part>)`
// removes exactly one namespace. A delete is `deleteCachedQuery(entry key)`: one key.
//
// The Keyv contract implemented is the relative-ttl one: `set(key, value, ttl ms)`,
// which Keyv 5 uses (and so cache-manager 7 and cacheable). Keyv 6 wraps such an
// adapter in its KeyvBridgeAdapter, which turns its absolute `expires` back into a
// ttl; because the adapter has a `namespace` property, the bridge leaves keys
// unprefixed and lets the adapter scope them (and `clear()`) itself. The adapter
// does not declare Keyv 6's `capabilities.expires`: a store declaring it gets an
// absolute timestamp as set's third argument, where Keyv 5 passes a relative ttl,
// and one adapter object cannot tell which of the two is calling it.

const EventEmitter = require('node:events')
const { invalid, outOfRange } = require('./errors.js')
const { MAX_TTL_SECONDS, describe, isPlainObject, checkManager } = require('./validate.js')

const DEFAULT_PREFIX = 'keyv:'
/** The longest TTL ferrocache accepts (seconds): what a set without ttl gets. */
const NO_EXPIRY_SECONDS = MAX_TTL_SECONDS
const MAX_TTL_MS = NO_EXPIRY_SECONDS * 1000
const MANAGER_METHODS = [
  'cacheQueryResult',
  'getCachedQuery',
  'deleteCachedQuery',
  'invalidateCache',
  'tenant',
  'close',
  'on',
  'off',
]

function checkKey(name, key) {
  if (typeof key !== 'string') throw invalid(`${name} must be a string, got ${describe(key)}`)
  if (key.length === 0) throw invalid(`${name} must not be empty`)
  return key
}

function checkArray(name, value) {
  if (!Array.isArray(value)) throw invalid(`${name} must be an array, got ${describe(value)}`)
  return value
}

/** `<byte length>:<text>`: no such string is a proper prefix of another. */
function lengthPrefixed(text) {
  return `${Buffer.byteLength(text, 'utf8')}:${text}`
}

/** Keyv ttl (ms; undefined, null or 0 = no expiry) -> ferrocache ttlSeconds. */
function ttlSeconds(ttl) {
  if (ttl === undefined || ttl === null || ttl === 0) return NO_EXPIRY_SECONDS
  if (typeof ttl !== 'number') throw invalid(`ttl must be a number of milliseconds, got ${describe(ttl)}`)
  if (!Number.isFinite(ttl) || ttl < 0 || ttl > MAX_TTL_MS) {
    throw outOfRange(`ttl must be positive, finite and at most ${MAX_TTL_MS} ms, got ${ttl}`)
  }
  return ttl / 1000
}

function checkOptions(options) {
  if (options === undefined || options === null) return {}
  if (typeof options === 'string') return { cache: { url: options } }
  if (!isPlainObject(options))
    throw invalid(`KeyvFerrocache: options must be an object or a URL string, got ${describe(options)}`)
  const { manager, cache, tenant, prefix, namespace } = options
  if (checkManager('KeyvFerrocache', manager, MANAGER_METHODS) && cache !== undefined && cache !== null) {
    throw invalid('KeyvFerrocache: give either manager or cache options, not both')
  }
  if (cache !== undefined && cache !== null && !isPlainObject(cache)) {
    throw invalid(`KeyvFerrocache: cache must be an object of ferrocache CacheOptions, got ${describe(cache)}`)
  }
  if (tenant !== undefined && tenant !== null) checkKey('KeyvFerrocache: tenant', tenant)
  if (prefix !== undefined && prefix !== null) checkKey('KeyvFerrocache: prefix', prefix)
  if (namespace !== undefined && namespace !== null && typeof namespace !== 'string') {
    throw invalid(`KeyvFerrocache: namespace must be a string, got ${describe(namespace)}`)
  }
  return options
}

// Manager `error` events reach an adapter through a listener holding only a WeakRef to
// it, removed when the adapter is garbage-collected or disconnected: Keyv subscribes to
// every store's `error`, and an app may create many Keyv instances over one manager.
const unsubscribers = new FinalizationRegistry((unsubscribe) => unsubscribe())

/** A Keyv storage adapter keeping entries in a ferrocache manager (or one of its tenants). */
class KeyvFerrocache extends EventEmitter {
  /** Keyv sets this to its namespace; `clear()` and every key are scoped to it. */
  namespace
  /** `{ dialect: 'ferrocache', prefix, tenant }` (Keyv and its test suite read and write `opts`). */
  opts
  #manager
  #scope
  #prefix
  #owned
  #subscription = null

  /**
   * @param {string | { manager?: import('./manager').CacheManager, cache?: import('./manager').CacheOptions,
   *   tenant?: string, prefix?: string, namespace?: string }} [options]
   */
  constructor(options) {
    super()
    const opts = checkOptions(options)
    const index = require('./manager.js')
    this.#owned = opts.manager === undefined || opts.manager === null ? isPlainObject(opts.cache) : false
    // createCacheManager validates the options (TypeError with code) and never connects.
    this.#manager = this.#owned ? index.createCacheManager(opts.cache) : (opts.manager ?? index.cacheManager)
    // tenant() validates the id and never connects.
    this.#scope = typeof opts.tenant === 'string' ? this.#manager.tenant(opts.tenant) : this.#manager
    this.#prefix = typeof opts.prefix === 'string' ? opts.prefix : DEFAULT_PREFIX
    this.namespace = typeof opts.namespace === 'string' ? opts.namespace : undefined
    // no URL here: it may carry a password
    this.opts = { dialect: 'ferrocache', prefix: this.#prefix, tenant: this.tenant }
    this.on('newListener', (event) => {
      if (event === 'error' && this.#subscription === null) this.#subscribe()
    })
  }

  /** The manager the entries are stored in. */
  get manager() {
    return this.#manager
  }

  /** The tenant the entries are stored under, if any. */
  get tenant() {
    return this.#scope === this.#manager ? undefined : this.#scope.tenantId
  }

  /** The query-key prefix of the current namespace's entries. */
  #namespacePrefix() {
    const ns = this.namespace ?? '' // no namespace: length 0
    if (typeof ns !== 'string') throw invalid(`namespace must be a string, got ${describe(ns)}`)
    return `${this.#prefix}${lengthPrefixed(ns)}:`
  }

  #key(key) {
    return this.#namespacePrefix() + lengthPrefixed(checkKey('key', key))
  }

  #keys(keys) {
    return checkArray('keys', keys).map((key) => this.#key(key))
  }

  // Calls made in one go, sent as one pipeline (a manager of this package; else as they come).
  #together(calls) {
    return typeof this.#scope._together === 'function' ? this.#scope._together(calls) : Promise.all(calls)
  }

  async #read(fullKey) {
    const value = await this.#scope.getCachedQuery(fullKey)
    return value === null ? undefined : value
  }

  /** The stored value, or undefined. */
  async get(key) {
    return this.#read(this.#key(key))
  }

  /** The stored values, undefined where missing, in the order of `keys`. */
  async getMany(keys) {
    return this.#together(this.#keys(keys).map((k) => this.#read(k)))
  }

  /** True if `key` has a value. */
  async has(key) {
    return (await this.#read(this.#key(key))) !== undefined
  }

  /** One boolean per key: has it a value? */
  async hasMany(keys) {
    return this.#together(this.#keys(keys).map(async (k) => (await this.#read(k)) !== undefined))
  }

  /**
   * Stores `value` (anything JSON can represent; Keyv passes its serialized string) for
   * `ttl` ms. Without a ttl (undefined, null or 0): ferrocache's longest TTL, 2^31-1 s.
   */
  async set(key, value, ttl) {
    await this.#scope.cacheQueryResult(this.#key(key), value, ttlSeconds(ttl))
    return true
  }

  /**
   * Stores every entry ({ key, value, ttl? }). Keys, ttls and undefined values are checked
   * before any write; a value refused while writing (circular, too large) rejects the call
   * after the other entries may have been written.
   */
  async setMany(entries) {
    const writes = checkArray('entries', entries).map((entry, i) => {
      if (!isPlainObject(entry))
        throw invalid(`entries[${i}] must be an object { key, value, ttl? }, got ${describe(entry)}`)
      if (entry.value === undefined)
        throw invalid(`entries[${i}].value must not be undefined (use null, or delete the entry)`)
      return [this.#key(entry.key), entry.value, ttlSeconds(entry.ttl)]
    })
    await this.#together(writes.map(([k, value, ttl]) => this.#scope.cacheQueryResult(k, value, ttl)))
    return writes.map(() => true)
  }

  async #remove(fullKey) {
    return this.#scope.deleteCachedQuery(fullKey)
  }

  /** Removes `key`; true if it had a value. */
  async delete(key) {
    return this.#remove(this.#key(key))
  }

  /** Removes every key; true if at least one had a value. */
  async deleteMany(keys) {
    const removed = await Promise.all(this.#keys(keys).map((k) => this.#remove(k)))
    return removed.includes(true)
  }

  /**
   * Removes the entries of the current namespace; with no namespace, every entry under
   * this adapter's prefix (all namespaces), as Keyv's "no namespace clears the store".
   */
  async clear() {
    const ns = this.namespace
    const unscoped = ns === undefined || ns === null || ns === ''
    await this.#scope.invalidateCache(unscoped ? this.#prefix : this.#namespacePrefix())
  }

  /**
   * Stops forwarding the manager's `error` events and, when the adapter created its
   * manager (`cache` options or a URL), closes it. A manager passed in stays open.
   */
  async disconnect() {
    this.#unsubscribe()
    if (this.#owned) await this.#manager.close()
  }

  // The manager's `error` events ({ message, kind }: misconfiguration or failed replay)
  // become `error` events of the adapter (an Error with `kind`), which Keyv re-emits.
  #subscribe() {
    const ref = new WeakRef(this)
    const manager = this.#manager
    const listener = (info) => {
      const adapter = ref.deref()
      if (adapter === undefined) return
      const err = new Error(`ferrocache: ${info && info.message}`)
      err.kind = info && info.kind
      if (adapter.listenerCount('error') > 0) adapter.emit('error', err)
    }
    try {
      manager.on('error', listener)
    } catch {
      return // a manager whose configuration is invalid emits nothing; its calls reject
    }
    const unsubscribe = () => manager.off('error', listener)
    const token = {}
    this.#subscription = { unsubscribe, token }
    unsubscribers.register(this, unsubscribe, token)
  }

  #unsubscribe() {
    if (this.#subscription === null) return
    unsubscribers.unregister(this.#subscription.token)
    this.#subscription.unsubscribe()
    this.#subscription = null
  }
}

/** Same as `new KeyvFerrocache(options)`. */
function createKeyvStore(options) {
  return new KeyvFerrocache(options)
}

module.exports = { KeyvFerrocache, createKeyvStore, NO_EXPIRY_SECONDS }
