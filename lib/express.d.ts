// Types of ferrocache/express: ready (req, res) handlers for the system endpoints.
// No Express or Node types are needed: the handlers use only `req.headers`,
// `res.statusCode`, `res.setHeader` and `res.end` (Express 4 and 5, node:http).

import type { CacheManager } from './manager'
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
