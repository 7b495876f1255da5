// Types of ferrocache/express: ready (req, res) handlers for the system endpoints.
// No Express or Node types are needed: the handlers use only `req.headers`,
// `res.statusCode`, `res.setHeader` and `res.end` (Express 4 and 5, node:http).

import type { CacheManager, RateLimitOptions, RateLimitResult } from './manager'
import type { PrometheusLabels } from './prometheus'

/** A request/response handler: `(req, res) => void`. It never throws and always answers. */
export type CacheRequestHandler = (req: any, res: any) => void

export interface CacheHealthHandlerOptions {
  /** Answer 503 if `health()` has not resolved after this many ms (default 10000). */
  timeoutMs?: number
}

export interface CacheMetricsHandlerOptions {
  /** Constant labels added to every Prometheus sample (see `toPrometheusText`). */
  labels?: PrometheusLabels
}

/**
 * A handler for `GET /api/system/cache-health`. Body: the JSON of `await manager.health()`;
 * status 200 when `healthy` or `degraded`, 503 when `unhealthy`; `Cache-Control: no-store`.
 * If health() throws or times out: 503 with `{ status: 'unhealthy', error, code? }`.
 *
 * @param manager default: the package's `cacheManager` (looked up per request)
 * @throws TypeError with code `ERR_INVALID_ARG` for an argument that is not a manager
 *   (e.g. `app.get(path, cacheHealthHandler)` without calling it)
 */
export declare function cacheHealthHandler(
  manager?: CacheManager | null,
  options?: CacheHealthHandlerOptions,
): CacheRequestHandler

/**
 * A handler for `GET /api/system/cache-metrics`. Body: the JSON of `manager.metrics()`,
 * or the Prometheus text format 0.0.4 (`Content-Type: text/plain; version=0.0.4; charset=utf-8`)
 * when the Accept header prefers `text/plain` or `application/openmetrics-text` to
 * `application/json` (q-values, then specificity, then order; `*\/*` or no Accept: JSON).
 * `Cache-Control: no-store`, `Vary: Accept`. If metrics() throws: 500 with `{ error, code? }`.
 *
 * @param manager default: the package's `cacheManager` (looked up per request)
 * @throws TypeError with code `ERR_INVALID_ARG` for an argument that is not a manager, or invalid labels
 */
export declare function cacheMetricsHandler(
  manager?: CacheManager | null,
  options?: CacheMetricsHandlerOptions,
): CacheRequestHandler

/** Express (4 and 5) / node:http middleware: `(req, res, next) => void`. */
export type RateLimitMiddleware = (req: any, res: any, next: (err?: unknown) => void) => void

export interface RateLimitMiddlewareOptions extends RateLimitOptions {
  /** The manager that counts (default: the package's `cacheManager`, looked up per request). */
  manager?: CacheManager
  /** The key a request is counted under (default `req.ip`). */
  key?: (req: any) => string | Promise<string>
  /** Counts the request in this tenant's scope (`manager.tenant(id)`); undefined: the manager's own. */
  tenant?: (req: any) => string | undefined | Promise<string | undefined>
  /** True: the request is not counted and goes on. */
  skip?: (req: any) => boolean | Promise<boolean>
  /**
   * Answers a refused request (default: status 429, `text/plain` "Too many requests, please try
   * again later."). `Retry-After` and the rate-limit fields are set before it is called.
   */
  handler?: (req: any, res: any, next: (err?: unknown) => void, result: RateLimitResult) => void
  /** The policy's identifier in the `RateLimit-Policy` and `RateLimit` fields (default `<limit>-in-<windowMs>ms`). */
  name?: string
  /** Set `RateLimit-Policy` and `RateLimit` (IETF draft-ietf-httpapi-ratelimit-headers); default true. */
  headers?: boolean
  /** Also set `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset` (epoch seconds); default false. */
  legacyHeaders?: boolean
  /**
   * A check that fails (Redis down with `fallback.enabled: false`: `ERR_REDIS_UNAVAILABLE`) lets the
   * request through (true) or goes to `next(err)` (false, the default). With fallback on (the
   * default) a check never fails for an outage: the manager limits locally.
   */
  failOpen?: boolean
}

/**
 * Middleware that counts every request with `manager.rateLimit(key, policy)`: allowed requests go
 * on with `RateLimit-Policy: "<name>";q=<limit>;w=<window s>` and `RateLimit: "<name>";r=<remaining>;t=<s>`;
 * refused ones get the same fields, `Retry-After` (seconds) and 429 (or `handler`). The decision is
 * on `req.rateLimit`.
 *
 * @throws TypeError/RangeError with code `ERR_INVALID_ARG` for invalid options
 */
export declare function rateLimitMiddleware(options: RateLimitMiddlewareOptions): RateLimitMiddleware
