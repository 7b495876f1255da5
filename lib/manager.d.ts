// Hand-written public types of ferrocache (the generated native types are in binding.d.ts).

/** Every `err.code` ferrocache produces. */
export declare const codes: Readonly<{
  /** Wrong type, empty key, lone surrogate, bad TTL or option. TypeError (RangeError for an out-of-range TTL). */
  INVALID_ARG: 'ERR_INVALID_ARG'
  /** The value cannot be serialized as JSON (circular, BigInt, function, symbol). TypeError. */
  SERIALIZE: 'ERR_SERIALIZE'
  /** A key or value over its limit (`limits`). RangeError. */
  TOO_LARGE: 'ERR_TOO_LARGE'
  /** The manager was closed. */
  CLOSED: 'ERR_CLOSED'
  /** Redis failed and `fallback.enabled` is false. */
  REDIS_UNAVAILABLE: 'ERR_REDIS_UNAVAILABLE'
  /** Redis replied with an error that is not an outage (e.g. WRONGTYPE on a foreign key). */
  REDIS: 'ERR_REDIS'
}>

/** One of the values of `codes`. */
export type CacheErrorCode = (typeof codes)[keyof typeof codes]

/** An error thrown or rejected by ferrocache: a TypeError, RangeError or Error with `code`. */
export interface CacheError extends Error {
  code: CacheErrorCode
}

/** Options of `createCacheManager`. Every field is optional. */
export interface CacheOptions {
  /**
   * `redis://[user:password@]host:port[/db]`, or `'memory://'` for the in-process store alone.
   * Default: `REDIS_URL` for the default instance, else `redis://127.0.0.1:6379`.
   */
  url?: string
  /** Namespace written before every key; default `'fc:'`. */
  keyPrefix?: string
  /** Default TTLs in seconds (positive, finite): session 3600, query 300. */
  ttl?: { session?: number; query?: number }
  /** A Redis call slower than this (ms) counts as a failure and is served from memory; default 250. */
  commandTimeoutMs?: number
  /** Deadline for opening a connection (ms); default 1000. */
  connectTimeoutMs?: number
  /** Retries within the call budget: 3 attempts, exponential backoff from 20 ms up to 2000 ms, with jitter. */
  retry?: { attempts?: number; baseDelayMs?: number; maxDelayMs?: number }
  /**
   * In-process store: on by default, bounded by `maxBytes` (default 64 MiB). One tenant holds at
   * most `maxBytesPerTenant` (default 1/8 of `maxBytes`, raised to fit the largest value); past it,
   * that tenant's own cold entries are evicted, never another tenant's.
   */
  fallback?: { enabled?: boolean; maxBytes?: number; maxBytesPerTenant?: number }
  /**
   * The near cache: a per-process L1 of the entries this process read or wrote, answered on the
   * calling thread, kept coherent by Redis client tracking (a change by any client removes the
   * entry within a few milliseconds; once this process's own write resolves, the value it
   * replaced is never served), and served through an outage for `failSafeMs`. README: "Near cache".
   * - `enabled`: default true whenever Redis is configured (`memory://` is in-process already).
   * - `maxBytes`: byte budget (keys + values + 320 bytes per entry); default 64 MiB. One tenant holds
   *   at most 1/8 of it.
   * - `failSafeMs`: how long its entries stay servable once Redis fails; default 60000, 0 = never.
   */
  nearCache?: { enabled?: boolean; maxBytes?: number; failSafeMs?: number }
  /** Size limits: key 4096 bytes, value 4 MiB of JSON by default. */
  limits?: { maxKeyBytes?: number; maxValueBytes?: number }
  /**
   * TLS for `rediss://` URLs: `caFile` (PEM CA instead of the system roots), `certFile` + `keyFile`
   * (mutual TLS). The server certificate and host name are always verified.
   */
  tls?: { caFile?: string; certFile?: string; keyFile?: string }
  /** Count hits, misses, errors and Redis latency for `metrics()`; default true. `false` skips all counting. */
  metrics?: boolean
  /**
   * Index query results in Redis (two sorted sets per scope) so that `invalidateCache(prefix)` costs
   * the number of keys it removes instead of a `SCAN` of the whole keyspace. Default true. On a Cluster
   * each scope's index is split into 16 buckets whose names carry a hash tag (query results too), at
   * some cost to write throughput (README, "Query index"). Every process sharing a `keyPrefix` must
   * use the same setting: entries written with `false` are not found by an indexed invalidation. Needs `MULTI`, `EXEC`,
   * `ZADD`, `PEXPIRE`, `EVALSHA` and `SCRIPT LOAD` in the Redis ACL. See README, "Query index".
   */
  queryIndex?: boolean
  /**
   * Tenants with their own counters in `metrics().tenants.list` and `tenant(id).metrics()` (the first
   * ones seen); later tenants are summed in `metrics().tenants.other`. Default 1000, 0..100000.
   */
  tenantMetricsLimit?: number
  /**
   * A Redis Cluster instead of `url` (exclusive with `url` and `sentinel`). `nodes`: seed URLs,
   * `redis://[user:password@]host:port` or `rediss://` (with `tls`); they must agree on credentials
   * and TLS, the other nodes are discovered. Keys are routed to their slot's master by redis-rs.
   */
  cluster?: { nodes: string[] }
  /**
   * A master monitored by Redis Sentinel instead of `url` (exclusive with `url` and `cluster`).
   * `nodes`: sentinel URLs (their credentials are the sentinels' own; `rediss://` for TLS to them);
   * `masterName`: the monitored name; `username`/`password`/`db`/`tls`: for the master itself.
   * Every reconnect asks the sentinels for the current master.
   */
  sentinel?: {
    nodes: string[]
    masterName: string
    username?: string
    password?: string
    db?: number
    tls?: boolean
  }
}

/** One Redis node of the topology. */
export interface CacheNode {
  /** `host:port` */
  address: string
  role: 'master' | 'replica' | 'sentinel'
  /** It answered a PING within `commandTimeoutMs` during the last `health()` check. */
  reachable: boolean
}

/** The Redis deployment behind a manager. */
export interface CacheTopology {
  /** `single` (one server, `url`), `cluster` or `sentinel`. */
  kind: 'single' | 'cluster' | 'sentinel'
  /** Every known node: Cluster masters and replicas; or the Sentinel master, replicas and sentinels. */
  nodes: CacheNode[]
}

/** A rate limit: `limit` per `windowMs` sustained, at most `burst` at once. */
export interface RateLimitOptions {
  /** Units admitted per window (whole, 1 to 1e9). */
  limit: number
  /** The window in ms (whole, 1 ms to one year). */
  windowMs: number
  /** Units admitted at once (whole, 1 to 1e9); default `limit`. */
  burst?: number
  /** Units this check spends (whole, at most `burst`); default 1. */
  cost?: number
}

/** The outcome of one rate-limit check. */
export interface RateLimitResult {
  /** The check's cost was admitted (and counted). */
  allowed: boolean
  /** The policy's `limit`. */
  limit: number
  /** Units that could be admitted at once after this check. */
  remaining: number
  /** ms until the full `burst` is available again. */
  resetMs: number
  /** ms until a check of the same cost would be allowed; 0 when allowed. */
  retryAfterMs: number
}

/** The data methods; on a manager they use its own keys, on a TenantCache the tenant's. */
export interface CacheScope {
  /** Stores session data for `ttlSeconds` (default `ttl.session`). */
  setSession(sessionId: string, data: unknown, ttlSeconds?: number): Promise<void>
  /** The session's data as a fresh copy, or null on a miss. */
  getSession<T = unknown>(sessionId: string): Promise<T | null>
  /** Deletes a session; true if it existed. */
  deleteSession(sessionId: string): Promise<boolean>
  /** Caches a query result for `ttlSeconds` (default `ttl.query`). */
  cacheQueryResult(key: string, data: unknown, ttlSeconds?: number): Promise<void>
  /** The cached query result as a fresh copy, or null on a miss. */
  getCachedQuery<T = unknown>(key: string): Promise<T | null>
  /** Deletes one query result (exactly `key`, not a prefix); true if it existed. */
  deleteCachedQuery(key: string): Promise<boolean>
  /** Removes the query results whose key starts with `prefix` (literally; an empty prefix is refused); returns how many. */
  invalidateCache(prefix: string): Promise<number>
  /** Removes every query result of this scope; returns how many. */
  invalidateAll(): Promise<number>
  /**
   * Removes every session of this scope (the manager's own, or one tenant's): `SCAN` + `UNLINK`
   * like `invalidateAll`, never blocking Redis; returns how many. During an outage it is journaled.
   */
  deleteAllSessions(): Promise<number>
  /**
   * The ids of every live session of this scope, sorted: a `SCAN` of Redis in pages (never blocking
   * it, but O(keyspace) per call), plus the outage journal and the in-process store. During an outage
   * only the sessions written since it began are known.
   */
  listSessionIds(): Promise<string[]>
  /**
   * The cached query result for `key`, or else `await loader()` cached for `ttlSeconds` (default
   * `ttl.query`). Concurrent calls for one key in this process share one loader call; each gets a
   * fresh copy. A loader that throws (or returns undefined) caches nothing and rejects every waiter.
   */
  getOrSet<T>(key: string, loader: () => T | Promise<T>, ttlSeconds?: number): Promise<T>
  /**
   * The cached query results of `keys`; the missing ones are loaded by ONE call of
   * `loader(missing)` (exactly the keys not cached, in order, without duplicates) and cached for
   * `ttlSeconds` (default `ttl.query`). The reads are one pipeline, one Redis round trip (keys in the
   * near cache need none); the writes another. A key being loaded by a concurrent `getOrSet` or
   * `getOrSetMany` of this process is awaited, not loaded twice. Resolves with a record of every key:
   * its value (a fresh copy), or `null` for a key the loader did not return (or returned as
   * `undefined`). A loader that throws rejects the call and caches nothing; one that returns
   * something other than a record or a Map, or a key it was not asked for, rejects with
   * `ERR_INVALID_ARG` and caches nothing.
   */
  getOrSetMany<T>(
    keys: readonly string[],
    loader: (missing: string[]) => Record<string, T> | Map<string, T> | Promise<Record<string, T> | Map<string, T>>,
    ttlSeconds?: number,
  ): Promise<Record<string, T | null>>
  /**
   * Checks `key` against a rate limit and counts `cost` if allowed (GCRA): across every process
   * sharing Redis, never more than `burst` at once nor `limit` per `windowMs` sustained, one atomic
   * script per check; the checks of one event-loop turn share a pipeline. Checks of one key under
   * two policies count separately; a tenant's keys never meet another's. A key known to be over its
   * limit is refused in-process without a Redis call. While Redis is down each process limits
   * locally with its share (1/n for n live processes) from the state Redis last reported, and counts
   * what it admitted into Redis on recovery; with `fallback.enabled: false` the check rejects with
   * `ERR_REDIS_UNAVAILABLE`. Invalid options reject with `ERR_INVALID_ARG`; nothing is counted.
   */
  rateLimit(key: string, options: RateLimitOptions): Promise<RateLimitResult>
}

/** The data methods isolated to one tenant's keys. */
export interface TenantCache extends CacheScope {}
export declare class TenantCache {
  private constructor()
  /** The tenant this scope belongs to. */
  readonly tenantId: string
  /** This tenant's counters and in-process store usage; synchronous, no I/O. */
  metrics(): TenantMetrics
}

/** Counters of one tenant, or of the tenants past `tenantMetricsLimit` together. */
export interface TenantCounts {
  hits: number
  misses: number
  /** hits / (hits + misses), 0 without reads */
  hitRate: number
  /** Entries removed by the tenant's invalidateCache/invalidateAll. */
  invalidated: number
  /** Rate-limit checks allowed. */
  rateLimitAllowed: number
  /** Rate-limit checks refused. */
  rateLimitLimited: number
}

/** `tenant(id).metrics()`: one tenant's counters and what it holds in the in-process store. */
export interface TenantMetrics extends TenantCounts {
  tenantId: string
  /**
   * False when the tenant is past `tenantMetricsLimit`: its counters are summed in
   * `metrics().tenants.other` and read 0 here. The `memory` figures are always exact.
   */
  tracked: boolean
  memory: {
    fallbackBytes: number
    fallbackEntries: number
    fallbackMaxBytes: number
    /** What the tenant holds in the near cache. */
    nearCacheBytes: number
    nearCacheEntries: number
  }
}

/** `health()`: a live check. Never rejects. */
export interface CacheHealth {
  /**
   * healthy = the configured store serves (Redis, or memory:// by choice);
   * degraded = the in-process store serves because Redis failed, or Redis refuses writes
   * (`failover.writesRefused`: they are kept in memory and journaled);
   * unhealthy = cannot serve (closed, or Redis down with fallback off).
   */
  status: 'healthy' | 'degraded' | 'unhealthy'
  /** Which store serves calls now. */
  mode: 'redis' | 'memory'
  /** Since when the current mode holds (ISO 8601). */
  modeSince: string
  redis: {
    /** The PING of this check answered. */
    connected: boolean
    /** Round trip of that PING in ms, null when it failed (or memory://). */
    latencyMs: number | null
    /** The configured URL, password redacted. */
    url: string | null
    /** The last Redis failure (password-free), or null. */
    lastError: string | null
    /** Redis `used_memory` (INFO memory) in bytes, when connected. */
    usedMemoryBytes: number | null
    /** Round-trip percentiles (ms) of the last 128 PINGs (health checks and recovery probes). */
    pingMs: { p50: number; p95: number; p99: number } | null
    /** The nodes and whether each answered a PING in this check; null for memory:// (or a closed manager). */
    topology: CacheTopology | null
  }
  /** The in-process store. */
  fallback: { entries: number; bytes: number; maxBytes: number }
  /**
   * The near cache and its tracking connection: `active` (invalidations arrive, entries are
   * served), `connecting`, `lost` (nothing is served until tracking is back), `idle` (no connection
   * yet), `off` (disabled, or `memory://`).
   */
  nearCache?: {
    enabled: boolean
    tracking: 'active' | 'connecting' | 'lost' | 'idle' | 'off'
    entries: number
    bytes: number
    maxBytes: number
  }
  /** Failover state (absent when the manager could not be created). */
  failover?: {
    breaker: 'closed' | 'open' | 'half-open'
    /** Operations made during an outage, waiting for replay to Redis. */
    journalDepth: number
    /** Times the manager switched to memory mode. */
    fallbackActivations: number
    /** Total time spent in memory mode (ms), the current outage included. */
    memoryModeMs: number
    /**
     * Redis refuses writes for capacity or role (OOM under `noeviction`, READONLY, MISCONF,
     * NOREPLICAS): reads stay on Redis, writes go to the in-process store and the journal
     * until Redis accepts them again.
     */
    writesRefused: boolean
  }
}

/** Counters of one kind of entry. */
export interface TypeStats {
  hits: number
  misses: number
  /** hits / (hits + misses), 0 without reads */
  hitRate: number
  sets: number
  deletes: number
}

/** `metrics()`: a synchronous snapshot, no I/O. Counters count since the manager was created. */
export interface CacheMetrics {
  mode: 'redis' | 'memory'
  hits: number
  misses: number
  /** in [0, 1]; 0 when there were no reads */
  hitRate: number
  byType: { session: TypeStats; query: TypeStats }
  /** Failed Redis calls (outages and error replies), each counted once however many retries it took. */
  errors: number
  /** Failed Redis calls that ran out of their budget. */
  timeouts: number
  /** Writes Redis refused for capacity or role, kept in memory and journaled instead (also in `errors`). */
  writeRefusals: number
  /** Times the manager switched to memory mode. */
  fallbackActivations: number
  /** Redis round trips of successful calls, from a histogram (each within ~9 %); 0 before any. */
  latencyMs: { p50: number; p95: number; p99: number; max: number }
  memory: { fallbackBytes: number; fallbackEntries: number; fallbackMaxBytes: number }
  /** The near cache (all 0 and `tracking: 'off'` when disabled). */
  nearCache: {
    enabled: boolean
    /** Reads it answered (also counted in `hits`). */
    hits: number
    /** Reads that went to Redis. */
    misses: number
    hitRate: number
    /** Keys Redis invalidated (changed by another client, expired), flushes included. */
    invalidations: number
    /** Reads answered during an outage from what it held when the outage began. */
    failSafeHits: number
    entries: number
    bytes: number
    maxBytes: number
    tracking: 'active' | 'connecting' | 'lost' | 'idle' | 'off'
    /** Tracking subscriptions made so far (one per connection). */
    trackingEpochs: number
  }
  /** Rate-limit checks (`rateLimit`, the middleware). */
  rateLimit: {
    allowed: number
    /** Refused, by Redis, in-process or by the local limiter. */
    limited: number
    /** Refused in-process without a Redis call (a key known to be over its limit). */
    refusedLocally: number
    /** Decided by the local limiter (Redis down, or `memory://`). */
    localDecisions: number
    /** Live processes sharing the limits as Redis last counted them (0 before the first check). */
    processes: number
    /** Keys whose local consumption waits to be counted into Redis. */
    pendingSync: number
  }
  /** invalidateCache/invalidateAll calls, and the entries they removed. */
  invalidations: number
  invalidatedEntries: number
  /** Total time spent in memory mode (ms), the current outage included. */
  memoryModeMs: number
  /** Operations made during an outage, waiting for replay. */
  journalDepth: number
  /** Cumulative latency buckets (upper bound `le` in ms), for Prometheus. */
  latencyHistogram: { count: number; sumMs: number; buckets: Array<{ le: number; count: number }> }
  /** Per-tenant metrics: at most `limit` tenants one by one (sorted by id), the rest summed in `other`. */
  tenants: { tracked: number; limit: number; other: TenantCounts; list: TenantMetrics[] }
  /**
   * The Redis nodes as of the last `health()` check (no I/O here): kind, node count, how many
   * answered, and each node. Null for memory:// or before the first `health()`.
   */
  topology: (CacheTopology & { reachableNodes: number }) | null
}

/** `fallback` event: switched to the in-process store. */
export interface FallbackEvent {
  /** The failure that opened the circuit (password-free). */
  cause: string
  kind: 'timeout' | 'connection' | 'misconfiguration' | 'simulated'
}

/** `recovered` event: back on Redis after the outage journal was replayed. */
export interface RecoveredEvent {
  outageMs: number
  /** Journal operations applied to Redis. */
  replayed: number
}

/**
 * `error` event: a misconfiguration (once per episode, whichever found it: a data call,
 * `health()` or the recovery probe), a failed replay (retried), Redis refusing writes (once
 * per episode), or operations of the outage journal that `close()` could not replay (`count`).
 */
export interface ErrorEvent {
  message: string
  kind: 'misconfiguration' | 'replay' | 'write-refused' | 'journal-dropped'
  /** journal-dropped: how many journaled operations were lost. */
  count?: number
}

/** One cache object over Redis with an in-process fallback store. */
export interface CacheManager extends CacheScope {}
export declare class CacheManager {
  /** Same as `createCacheManager(options)`; throws a TypeError with `code` on invalid options. Never connects. */
  constructor(options?: CacheOptions)
  /** The data methods isolated to `tenantId`'s keys. */
  tenant(tenantId: string): TenantCache
  /** Counters and latency percentiles; synchronous, no I/O. */
  metrics(): CacheMetrics
  /** Live check: pings Redis within commandTimeoutMs. Never rejects. */
  health(): Promise<CacheHealth>
  /** Event listeners; they never keep the process alive. A listener that throws is reported via process.emitWarning. */
  on(event: 'fallback', listener: (info: FallbackEvent) => void): this
  on(event: 'recovered', listener: (info: RecoveredEvent) => void): this
  on(event: 'error', listener: (info: ErrorEvent) => void): this
  /** Removes a listener added with `on`. */
  off(event: 'fallback' | 'recovered' | 'error', listener: (info: any) => void): this
  /**
   * For your own tests: every Redis call fails as if Redis refused connections ('refuse') or hung
   * ('hang'), through the real failover path (memory mode, journal, replay on `endSimulatedOutage()`).
   * No effect with memory://.
   */
  simulateOutage(options: { mode: 'refuse' | 'hang' }): void
  /** Ends a simulated outage; the manager recovers as from a real one. */
  endSimulatedOutage(): void
  /**
   * Stops taking calls (later ones reject with `ERR_CLOSED`) and finishes those made before it
   * as they would have finished without it: a write reaches Redis, or during an outage the
   * in-process store and the journal. What the outage journal still holds is replayed within
   * one `commandTimeoutMs`; what could not be is reported by an `error` event (`kind:
   * 'journal-dropped'`, `count`) before it resolves. Takes at most about the call budget of the
   * calls in flight plus one `commandTimeoutMs`, even with Redis hung. Idempotent; never rejects.
   */
  close(): Promise<void>
}

/** A manager configured by `options`. Throws on invalid options; never connects (the first call does). */
export declare function createCacheManager(options?: CacheOptions): CacheManager

/** The default instance, configured from `REDIS_URL` (else `redis://127.0.0.1:6379`) on first use. */
export declare const cacheManager: CacheManager
