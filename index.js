'use strict'
// ferrocache: the public entry point (the API lives in lib/). Every export is in one object
// literal, so that Node's CommonJS export detection sees each name and ESM apps can import
// them by name (`import { cacheHealthHandler } from 'ferrocache'`).

const { cacheManager, createCacheManager, CacheManager, TenantCache, codes } = require('./lib/manager.js')
const { cacheHealthHandler, cacheMetricsHandler, rateLimitMiddleware } = require('./lib/express.js')
const { toPrometheusText, registerPrometheus, PROMETHEUS_CONTENT_TYPE } = require('./lib/prometheus.js')
const { OPERATION_CHANNEL, operationChannel } = require('./lib/tracing.js')

module.exports = {
  cacheManager,
  createCacheManager,
  CacheManager,
  TenantCache,
  codes,
  cacheHealthHandler,
  cacheMetricsHandler,
  rateLimitMiddleware,
  toPrometheusText,
  registerPrometheus,
  PROMETHEUS_CONTENT_TYPE,
  OPERATION_CHANNEL,
  operationChannel,
}
