// Types of ferrocache/prometheus: the Prometheus exposition of `metrics()`.
// prom-client is an optional peer dependency: nothing here imports its types.

import type { CacheManager, CacheMetrics } from './manager'

/** `'text/plain; version=0.0.4; charset=utf-8'`: the Content-Type of `toPrometheusText`'s output. */
export declare const PROMETHEUS_CONTENT_TYPE: 'text/plain; version=0.0.4; charset=utf-8'

/**
 * Constant labels added to every sample, e.g. `{ manager: 'sessions' }`.
 * Names must match `[a-zA-Z_][a-zA-Z0-9_]*`, must not start with `__` and must not be
 * `type`, `mode`, `le` or `quantile` (used by ferrocache's own families). Numbers and
 * booleans are written as strings. Invalid labels throw a TypeError with code `ERR_INVALID_ARG`.
 */
export type PrometheusLabels = Record<string, string | number | boolean>

export interface PrometheusOptions {
  /** Constant labels added to every sample. */
  labels?: PrometheusLabels
}

/**
 * The Prometheus text exposition (format 0.0.4) of a `metrics()` snapshot, ending with a newline.
 *
 * Families (HELP and TYPE lines for each; label values escaped per the format):
 * - counters `ferrocache_cache_hits_total`, `ferrocache_cache_misses_total`,
 *   `ferrocache_cache_sets_total`, `ferrocache_cache_deletes_total` (label `type="session"|"query"`),
 *   `ferrocache_invalidations_total`, `ferrocache_invalidated_entries_total`,
 *   `ferrocache_redis_errors_total`, `ferrocache_redis_timeouts_total`,
 *   `ferrocache_fallback_activations_total`, `ferrocache_memory_mode_seconds_total`
 * - gauges `ferrocache_mode{mode="redis"|"memory"}` (1 for the current mode, 0 for the other),
 *   `ferrocache_journal_depth`, `ferrocache_fallback_bytes`, `ferrocache_fallback_entries`,
 *   `ferrocache_fallback_max_bytes`, `ferrocache_hit_ratio{type}`
 * - histogram `ferrocache_redis_latency_seconds` (`_bucket{le}` in seconds, `+Inf` = `_count`, `_sum`)
 *
 * A family whose fields the snapshot lacks is left out. Throws a TypeError with code
 * `ERR_INVALID_ARG` if `metrics` is not an object or `options` is invalid.
 */
export declare function toPrometheusText(metrics: CacheMetrics, options?: PrometheusOptions): string

/** What `registerPrometheus` needs of a prom-client `Registry` (v14 or later). */
export interface PrometheusRegistry {
  registerMetric(metric: any): void
  getSingleMetric(name: string): any
  removeSingleMetric(name: string): void
}

/** The handle `registerPrometheus` returns. */
export interface PrometheusRegistration {
  /** The registry the families were registered in. */
  readonly registry: PrometheusRegistry
  /** The names of the families (the same as `toPrometheusText` writes). */
  readonly metricNames: readonly string[]
  /**
   * Removes this manager from the registry's ferrocache families; the families
   * themselves are removed once no registered manager is left. Idempotent.
   */
  unregister(): void
}

/**
 * Registers ferrocache's families (the same names, types and values as
 * `toPrometheusText`) in a prom-client registry; each scrape (`await registry.metrics()`)
 * reads `manager.metrics()` once. Several managers can share one registry when each
 * has distinct `options.labels`. Resetting the registry does not reset the cache's counters.
 * If `manager.metrics()` throws at scrape time, the scrape rejects with that error.
 *
 * @param manager  default: the package's `cacheManager`
 * @param registry default: prom-client's global `register`
 * @throws TypeError with code `ERR_INVALID_ARG` when prom-client cannot be loaded, the
 *   manager or registry is not one, the registry already has one of these names for
 *   another metric, or a manager with the same labels is already registered there.
 */
export declare function registerPrometheus(
  manager?: CacheManager | null,
  registry?: PrometheusRegistry,
  options?: PrometheusOptions,
): PrometheusRegistration
