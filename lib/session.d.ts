// Types of ferrocache/session: an express-session store over a ferrocache manager.
// Needs express-session (an optional peer dependency) and its types (@types/express-session).

import { Store, SessionData } from 'express-session'
import type { CacheManager } from './manager'

/** Options of `FerrocacheStore` / `createSessionStore`. Every field is optional. */
export interface FerrocacheStoreOptions {
  /** The manager holding the sessions; default: the package's `cacheManager`. */
  manager?: CacheManager
  /** Store the sessions in `manager.tenant(tenant)` (keys isolated to that tenant). */
  tenant?: string
  /**
   * TTL in seconds of a session whose cookie has no `maxAge`/`expires` (a browser-session
   * cookie). Default: the manager's session TTL (`ttl.session`, 3600 s).
   */
  ttlSeconds?: number
  /** Do not refresh the TTL on `touch` (express-session calls it for unmodified sessions). */
  disableTouch?: boolean
}

/**
 * An express-session store keeping sessions in ferrocache (`<keyPrefix>s:<sid>`, or the
 * tenant's session key) as JSON, so they follow its failover: served from the in-process
 * store while Redis is down, replayed to Redis when it returns.
 *
 * Every method calls its callback exactly once, asynchronously, as `callback(err, result)`,
 * and never throws synchronously; without a callback it returns a Promise. Errors are
 * ferrocache's (`err.code`: `ERR_INVALID_ARG` for a bad session id, `ERR_TOO_LARGE`, ...).
 *
 * `clear` removes every session of the store's scope (`deleteAllSessions`); `all`, `length` and
 * `ids` list them (`listSessionIds`: `SCAN` in pages, never blocking Redis, O(keyspace) per call).
 *
 * @throws TypeError with code `ERR_INVALID_ARG` for invalid options, or when express-session
 *   is not installed.
 */
export declare class FerrocacheStore extends Store {
  constructor(options?: FerrocacheStoreOptions)
  /** The manager the sessions are stored in. */
  readonly manager: CacheManager
  /** The tenant the sessions are stored under, if any. */
  readonly tenant: string | undefined

  /** `callback(err, session)`: the stored session as plain JSON data, `null` when there is none. */
  get(sid: string, callback: (err: any, session?: SessionData | null) => void): void
  get(sid: string): Promise<SessionData | null>
  /**
   * Stores the session for its cookie's remaining lifetime (`cookie.maxAge`, else `cookie.expires`,
   * else `ttlSeconds`/the manager's default); a cookie already expired destroys the session instead.
   */
  set(sid: string, session: SessionData, callback: (err?: any) => void): void
  set(sid: string, session: SessionData): Promise<void>
  /** Removes the session. */
  destroy(sid: string, callback: (err?: any) => void): void
  destroy(sid: string): Promise<void>
  /** The ids of every live session of the store's scope, sorted. */
  ids(callback: (err: any, ids?: string[]) => void): void
  ids(): Promise<string[]>
  /** How many live sessions the store's scope holds. */
  length(callback: (err: any, length?: number) => void): void
  length(): Promise<number>
  /** Every live session of the store's scope, each with its `id`. */
  all(callback: (err: any, sessions?: Array<Record<string, unknown> & { id: string }>) => void): void
  all(): Promise<Array<Record<string, unknown> & { id: string }>>
  /** Removes every session of the store's scope (its manager's own, or its tenant's). */
  clear(callback: (err?: any) => void): void
  clear(): Promise<void>
  /**
   * Resets the stored session's TTL to its refreshed cookie's lifetime (re-writes the stored data
   * with the new cookie; a session destroyed meanwhile is not resurrected). No-op with `disableTouch`.
   */
  touch(sid: string, session: SessionData, callback: (err?: any) => void): void
  touch(sid: string, session: SessionData): Promise<void>
}

/** Same as `new FerrocacheStore(options)`. */
export declare function createSessionStore(options?: FerrocacheStoreOptions): FerrocacheStore
