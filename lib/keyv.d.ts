// Types of ferrocache/keyv: a Keyv storage adapter over a ferrocache manager.
// Standalone: needs neither keyv's types nor @types/node (keyv is an optional peer dependency).

import type { CacheManager, CacheOptions } from './manager'

/** Options of `KeyvFerrocache` / `createKeyvStore`. Every field is optional. */
export interface KeyvFerrocacheOptions {
  /** The manager holding the entries (left open by `disconnect()`); default: the package's `cacheManager`. */
  manager?: CacheManager
  /** Create a manager of its own with these options (closed by `disconnect()`). Not with `manager`. */
  cache?: CacheOptions
  /** Store the entries in `manager.tenant(tenant)` (keys isolated to that tenant). */
  tenant?: string
  /**
   * Prefix of every entry's query key (non-empty); default `'keyv:'`. The adapter owns the query
   * keys starting with it: `clear()` without a namespace removes all of them.
   */
  prefix?: string
  /** Initial namespace (Keyv sets `namespace` itself when it has one). */
  namespace?: string
}

/** An `error` event: the manager's `error` event (misconfiguration, failed replay) as an Error. */
export interface KeyvFerrocacheError extends Error {
  kind: 'misconfiguration' | 'replay'
}

/** A set without ttl is stored for this many seconds (ferrocache's longest TTL, 2^31-1 s ≈ 68 years). */
export declare const NO_EXPIRY_SECONDS: 2147483647

/**
 * A Keyv storage adapter (`new Keyv({ store: new KeyvFerrocache({ manager }) })`) keeping entries
 * as ferrocache query results, so they follow its failover (served from the in-process store while
 * Redis is down, replayed when it returns). Implements Keyv's relative-ttl store contract: used
 * directly by Keyv 5 (cache-manager 7, cacheable), through Keyv's own bridge by Keyv 6.
 *
 * Every method returns a Promise and never throws synchronously; bad input (a key that is not a
 * non-empty string, a ttl that is not a positive finite number of ms, an undefined or circular
 * value, an oversized key or value) rejects with ferrocache's `TypeError`/`RangeError` carrying
 * `code` (`ERR_INVALID_ARG`, `ERR_SERIALIZE`, `ERR_TOO_LARGE`) and writes nothing (`setMany`: see there).
 *
 * `delete`/`deleteMany` remove one key each (`deleteCachedQuery`); `clear` is a prefix invalidation
 * (`invalidateCache`): on one Redis server or Sentinel it reads the query index and costs the
 * entries it removes; on a Cluster (or with `queryIndex: false`) it is a `SCAN` of the keyspace.
 * `iterator()` is not provided (ferrocache has no enumeration).
 */
export declare class KeyvFerrocache {
  /** `options` may be a Redis URL: a manager of its own with `{ url }`. */
  constructor(options?: KeyvFerrocacheOptions | string)
  /** Set by Keyv; every key, and `clear()`, are scoped to it. One adapter per Keyv instance. */
  namespace: string | undefined
  /** `{ dialect: 'ferrocache', prefix, tenant }` (read and written by Keyv). */
  opts: { dialect: 'ferrocache'; prefix: string; tenant: string | undefined; [option: string]: unknown }
  /** The manager the entries are stored in. */
  readonly manager: CacheManager
  /** The tenant the entries are stored under, if any. */
  readonly tenant: string | undefined

  /** The stored value (a fresh copy), or undefined. */
  get<Value = unknown>(key: string): Promise<Value | undefined>
  /** The stored values, undefined where missing, in the order of `keys`. */
  getMany<Value = unknown>(keys: string[]): Promise<Array<Value | undefined>>
  has(key: string): Promise<boolean>
  hasMany(keys: string[]): Promise<boolean[]>
  /**
   * Stores `value` (anything JSON represents; Keyv passes its serialized string) for `ttl`
   * milliseconds (fractions allowed, rounded up to whole ms). Without a ttl (undefined, null or 0)
   * the entry gets `NO_EXPIRY_SECONDS`: no expiry in practice, but still subject to the in-process
   * store's byte budget and to Redis's `maxmemory` policy. Resolves to true.
   */
  set(key: string, value: unknown, ttl?: number): Promise<boolean>
  /**
   * Stores every entry; one `true` per entry. Keys, ttls and undefined values are checked before
   * any write; a value ferrocache refuses while writing (circular, too large) rejects the call,
   * and the other entries may have been written.
   */
  setMany(entries: Array<{ key: string; value: unknown; ttl?: number }>): Promise<boolean[]>
  /** Removes `key`; true if it had a value. */
  delete(key: string): Promise<boolean>
  /** Removes every key; true if at least one had a value. */
  deleteMany(keys: string[]): Promise<boolean>
  /** Removes the current namespace's entries; with no namespace, every entry under `prefix`. */
  clear(): Promise<void>
  /** Stops forwarding `error` events; closes the manager if the adapter created it. */
  disconnect(): Promise<void>

  on(event: 'error', listener: (err: KeyvFerrocacheError) => void): this
  on(event: string | symbol, listener: (...args: any[]) => void): this
  once(event: string | symbol, listener: (...args: any[]) => void): this
  off(event: string | symbol, listener: (...args: any[]) => void): this
  removeListener(event: string | symbol, listener: (...args: any[]) => void): this
  emit(event: string | symbol, ...args: any[]): boolean
  listenerCount(event: string | symbol): number
}

/** Same as `new KeyvFerrocache(options)`. */
export declare function createKeyvStore(options?: KeyvFerrocacheOptions | string): KeyvFerrocache
