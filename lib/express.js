'use strict'
// Ready (req, res) handlers for the system endpoints:
//
//   app.get('/api/system/cache-health', cacheHealthHandler(manager))
//   app.get('/api/system/cache-metrics', cacheMetricsHandler(manager))
//
// They use nothing but `req.headers`, `res.statusCode`, `res.setHeader` and
// `res.end`, so they work with Express 4 and 5, and with a plain `node:http`
// server. They never throw and always answer. The manager defaults to the
// package's `cacheManager`, looked up when a request comes in.

const { PROMETHEUS_CONTENT_TYPE, toPrometheusText, _normalizeLabels } = require('./prometheus.js')
const { invalid } = require('./errors.js')
const { checkManager, checkOptionsObject } = require('./validate.js')

const JSON_CONTENT_TYPE = 'application/json; charset=utf-8'
const DEFAULT_HEALTH_TIMEOUT_MS = 10_000
const MAX_TIMEOUT_MS = 2147483647 // setTimeout's limit

function defaultManager() {
  return require('./manager.js').cacheManager
}

/** Writes a complete response; never throws (a response already under way is ended as it is). */
function send(res, status, contentType, body, extraHeaders) {
  try {
    res.statusCode = status
    res.setHeader('Content-Type', contentType)
    res.setHeader('Cache-Control', 'no-store')
    if (extraHeaders) for (const [name, value] of extraHeaders) res.setHeader(name, value)
    res.setHeader('Content-Length', String(Buffer.byteLength(body)))
  } catch {
    // headers already sent (another middleware answered): still end the response
  }
  try {
    res.end(body)
  } catch {
    // nothing left to do: the socket is gone
  }
}

function errorBody(err, extra) {
  try {
    const body = { ...extra, error: String((err && err.message) || err || 'unknown error') }
    if (err && typeof err.code === 'string') body.code = err.code
    return JSON.stringify(body)
  } catch {
    return JSON.stringify({ ...extra, error: 'unknown error' })
  }
}

/**
 * A handler for `GET /api/system/cache-health`: the JSON of `manager.health()`,
 * 200 when healthy or degraded, 503 when unhealthy (and when health() fails or
 * takes longer than `options.timeoutMs`, default 10 s). `Cache-Control: no-store`.
 */
function cacheHealthHandler(manager, options) {
  checkManager('cacheHealthHandler', manager, ['health'])
  const opts = checkOptionsObject('cacheHealthHandler', options)
  let timeoutMs = DEFAULT_HEALTH_TIMEOUT_MS
  if (opts.timeoutMs !== undefined) {
    if (
      typeof opts.timeoutMs !== 'number' ||
      !Number.isFinite(opts.timeoutMs) ||
      opts.timeoutMs <= 0 ||
      opts.timeoutMs > MAX_TIMEOUT_MS
    ) {
      throw invalid(
        `cacheHealthHandler: options.timeoutMs must be a positive finite number of ms, got ${String(opts.timeoutMs)}`,
      )
    }
    timeoutMs = opts.timeoutMs
  }

  return function cacheHealth(req, res) {
    let done = false
    let timer = null
    const finish = (status, body) => {
      if (done) return
      done = true
      if (timer !== null) clearTimeout(timer)
      send(res, status, JSON_CONTENT_TYPE, body)
    }
    const fail = (err) => finish(503, errorBody(err, { status: 'unhealthy' }))
    try {
      const m = manager ?? defaultManager()
      timer = setTimeout(() => fail(new Error(`health check did not complete within ${timeoutMs} ms`)), timeoutMs)
      if (typeof timer.unref === 'function') timer.unref()
      new Promise((resolve) => resolve(m.health()))
        .then((health) => {
          const body = JSON.stringify(health)
          if (typeof body !== 'string') throw new Error('health() resolved with no JSON value')
          const ok =
            typeof health === 'object' &&
            health !== null &&
            (health.status === 'healthy' || health.status === 'degraded')
          finish(ok ? 200 : 503, body)
        })
        .catch(fail)
    } catch (err) {
      fail(err)
    }
  }
}

/**
 * Parses an Accept header into media ranges [{type, subtype, q, index}].
 * Ranges with an unparsable q-value are dropped.
 */
function parseAccept(header) {
  const ranges = []
  const parts = header.split(',')
  for (let index = 0; index < parts.length; index++) {
    const [range, ...params] = parts[index].split(';')
    const slash = range.indexOf('/')
    if (slash === -1) continue
    const type = range.slice(0, slash).trim().toLowerCase()
    const subtype = range
      .slice(slash + 1)
      .trim()
      .toLowerCase()
    if (type === '' || subtype === '') continue
    let q = 1
    for (const param of params) {
      const eq = param.indexOf('=')
      if (eq === -1 || param.slice(0, eq).trim().toLowerCase() !== 'q') continue
      q = Number(param.slice(eq + 1).trim())
    }
    if (!Number.isFinite(q) || q < 0) continue
    ranges.push({ type, subtype, q: Math.min(q, 1), index })
  }
  return ranges
}

/** How `ranges` accept `mime`: {q, specificity, index} of the most specific matching range, or null. */
function acceptance(ranges, mime) {
  const [type, subtype] = mime.split('/')
  let best = null
  for (const r of ranges) {
    let specificity
    if (r.type === type && r.subtype === subtype) specificity = 2
    else if (r.type === type && r.subtype === '*') specificity = 1
    else if (r.type === '*' && r.subtype === '*') specificity = 0
    else continue
    if (best === null || specificity > best.specificity) best = { q: r.q, specificity, index: r.index }
  }
  return best
}

function better(a, b) {
  if (b === null || b.q === 0) return a !== null && a.q > 0
  if (a === null || a.q === 0) return false
  if (a.q !== b.q) return a.q > b.q
  if (a.specificity !== b.specificity) return a.specificity > b.specificity
  return a.index < b.index
}

/**
 * 'prometheus' when the Accept header prefers text/plain or
 * application/openmetrics-text to application/json (by q-value, then by how
 * specifically each is named, then by order); 'json' otherwise, including
 * without an Accept header, for `*\/*`, and when nothing offered is acceptable.
 */
function negotiate(accept) {
  if (Array.isArray(accept)) accept = accept.join(',')
  if (typeof accept !== 'string' || accept.trim() === '') return 'json'
  const ranges = parseAccept(accept)
  const json = acceptance(ranges, 'application/json')
  const plain = acceptance(ranges, 'text/plain')
  const openMetrics = acceptance(ranges, 'application/openmetrics-text')
  const text = better(openMetrics, plain) ? openMetrics : plain
  return better(text, json) ? 'prometheus' : 'json'
}

/**
 * A handler for `GET /api/system/cache-metrics`: the JSON of `manager.metrics()`,
 * or the Prometheus text format 0.0.4 when the Accept header prefers `text/plain`
 * (or `application/openmetrics-text`) to JSON. `options.labels` adds constant
 * labels to every Prometheus sample. 500 with a JSON error if metrics() throws.
 */
function cacheMetricsHandler(manager, options) {
  checkManager('cacheMetricsHandler', manager, ['metrics'])
  const opts = checkOptionsObject('cacheMetricsHandler', options)
  const labels = opts.labels
  _normalizeLabels(labels) // validate now, not at the first scrape

  return function cacheMetrics(req, res) {
    const vary = [['Vary', 'Accept']]
    try {
      const format = negotiate(req && typeof req === 'object' && req.headers ? req.headers.accept : undefined)
      const snapshot = (manager ?? defaultManager()).metrics()
      if (format === 'prometheus') {
        send(res, 200, PROMETHEUS_CONTENT_TYPE, toPrometheusText(snapshot, { labels }), vary)
      } else {
        const body = JSON.stringify(snapshot)
        if (typeof body !== 'string') throw new Error('metrics() returned nothing')
        send(res, 200, JSON_CONTENT_TYPE, body, vary)
      }
    } catch (err) {
      send(res, 500, JSON_CONTENT_TYPE, errorBody(err), vary)
    }
  }
}

// the rate-limit middleware is served from here too (`ferrocache/express`)
const { rateLimitMiddleware } = require('./ratelimit.js')

module.exports = { cacheHealthHandler, cacheMetricsHandler, rateLimitMiddleware }
