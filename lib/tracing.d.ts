// Types of ferrocache's tracing channel (node:diagnostics_channel).

import type { TracingChannel } from 'node:diagnostics_channel'

/** `'ferrocache:operation'`: the name of the tracing channel of every operation. */
export declare const OPERATION_CHANNEL: 'ferrocache:operation'

/**
 * The tracing channel `ferrocache:operation` (null on a node without `tracingChannel`, before
 * 18.19): subscribe with `operationChannel.subscribe({ start, end, asyncStart, asyncEnd, error })`,
 * or to its channels `tracing:ferrocache:operation:start` (`:end`, `:asyncStart`, `:asyncEnd`,
 * `:error`). The events and their order are those of `tracingChannel.tracePromise`. Nothing is
 * published, and nothing is spent, while nothing subscribes.
 */
export declare const operationChannel: TracingChannel<unknown, OperationMessage> | null

/** A traced operation: the data methods of a manager or tenant scope, by name. */
export type OperationName =
  | 'getSession'
  | 'setSession'
  | 'deleteSession'
  | 'getCachedQuery'
  | 'cacheQueryResult'
  | 'deleteCachedQuery'
  | 'invalidateCache'
  | 'invalidateAll'
  | 'deleteAllSessions'
  | 'listSessionIds'
  | 'rateLimit'
  | 'getOrSet'

/**
 * Who answered: `l1` the near cache in this process (its fail-safe copy during an outage
 * included; for `rateLimit`, a check refused in-process from the debt Redis last reported),
 * `redis` a Redis round trip, `memory` the in-process store and the outage journal (`memory://`,
 * an outage, a key with a change not yet replayed to Redis; for `rateLimit`, the local limiter).
 */
export type ServedBy = 'l1' | 'redis' | 'memory'

/** The message of one operation, the same object at each of its events. */
export interface OperationMessage {
  /** The method called. */
  operation: OperationName
  /** What it works on. */
  kind: 'session' | 'query' | 'ratelimit'
  /** The tenant of a `tenant(id)` scope; undefined for the manager's own keys. */
  tenant: string | undefined
  /** The key (the prefix of `invalidateCache`); undefined for the calls of a whole scope. */
  key: string | undefined
  /** The operation this one was made for: a `getOrSet`'s read and write have it as parent. */
  parent: OperationMessage | undefined
  /** Reads (`getSession`, `getCachedQuery`, `getOrSet`), once settled: a value was found. */
  hit: boolean | undefined
  /** Once it succeeded: who answered (for `getOrSet`, its read). */
  servedBy: ServedBy | undefined
  /** `getOrSet`: it joined a load of the same key already under way in this process. */
  shared?: boolean
  /** Once settled: ms from the call to its result. */
  durationMs: number | undefined
  /** Once resolved: what the caller gets. */
  result?: unknown
  /** Once rejected: the error (a `CacheError` for ferrocache's own). */
  error?: unknown
}
