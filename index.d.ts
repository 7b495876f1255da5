// ferrocache: the public API. The declarations live next to their code in lib/.
export * from './lib/manager'
export { cacheHealthHandler, cacheMetricsHandler, rateLimitMiddleware } from './lib/express'
export type {
  CacheRequestHandler,
  CacheHealthHandlerOptions,
  CacheMetricsHandlerOptions,
  RateLimitMiddleware,
  RateLimitMiddlewareOptions,
} from './lib/express'
export { toPrometheusText, registerPrometheus, PROMETHEUS_CONTENT_TYPE } from './lib/prometheus'
export type { PrometheusLabels, PrometheusOptions, PrometheusRegistry, PrometheusRegistration } from './lib/prometheus'
export { OPERATION_CHANNEL, operationChannel } from './lib/tracing'
export type {
  OperationChannel,
  OperationEventChannel,
  OperationMessage,
  OperationName,
  OperationSubscribers,
  ServedBy,
} from './lib/tracing'
