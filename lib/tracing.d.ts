// Types of ferrocache's tracing channel (node:diagnostics_channel). Nothing here imports node's
// types: an app type-checks without @types/node.

/** `'ferrocache:operation'`: the name of the tracing channel of every operation. */
export declare const OPERATION_CHANNEL: 'ferrocache:operation'

/** Handlers of an operation's events, as node's `TracingChannel#subscribe` takes them. */
export interface OperationSubscribers {
  start?: (message: OperationMessage, name: string | symbol) => void
  end?: (message: OperationMessage, name: string | symbol) => void
  asyncStart?: (message: OperationMessage, name: string | symbol) => void
  asyncEnd?: (message: OperationMessage, name: string | symbol) => void
  error?: (message: OperationMessage, name: string | symbol) => void
}

/** One of the channels of an operation's events (a node `Channel`). */
export interface OperationEventChannel {
  readonly name: string | symbol
  readonly hasSubscribers: boolean
  subscribe(onMessage: (message: unknown, name: string | symbol) => void): void
  unsubscribe(onMessage: (message: unknown, name: string | symbol) => void): boolean
}

/** What ferrocache's tracing channel is: node's `TracingChannel` of `OperationMessage`s. */
export interface OperationChannel {
  readonly start: OperationEventChannel
  readonly end: OperationEventChannel
  readonly asyncStart: OperationEventChannel
  readonly asyncEnd: OperationEventChannel
  readonly error: OperationEventChannel
  /** Any of the five channels has a subscriber (node >= 20.13 and 22; undefined before). */
  readonly hasSubscribers: boolean | undefined
  subscribe(subscribers: OperationSubscribers): void
  unsubscribe(subscribers: OperationSubscribers): boolean
}

/**
 * The tracing channel `ferrocache:operation` (null on a node without `tracingChannel`, before
 * 18.19): subscribe with `operationChannel.subscribe({ start, end, asyncStart, asyncEnd, error })`,
 * or to its channels `tracing:ferrocache:operation:start` (`:end`, `:asyncStart`, `:asyncEnd`,
 * `:error`). The events and their order are those of `tracingChannel.tracePromise`. Nothing is
 * published, and nothing is spent, while nothing subscribes.
 */
export declare const operationChannel: OperationChannel | null

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
  | 'getOrSetMany'

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
  /** `getOrSetMany`: the keys asked for. */
  keys?: readonly string[]
  /** The operation this one was made for: a `getOrSet`'s read and write have it as parent. */
  parent: OperationMessage | undefined
  /**
   * Reads (`getSession`, `getCachedQuery`, `getOrSet`), once settled: a value was found; for
   * `getOrSetMany`: every key was found (nothing loaded).
   */
  hit: boolean | undefined
  /** Once it succeeded: who answered (for `getOrSet`, its read; unset for `getOrSetMany`). */
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
