'use strict'
// Express (4 and 5) / node:http middleware over `manager.rateLimit`:
//
//   app.use('/api', rateLimitMiddleware({ limit: 100, windowMs: 60_000 }))
//
// One check per request, keyed by `req.ip` (or `key(req)`), in a tenant's scope with
// `tenant(req)`. Allowed: the IETF `RateLimit-Policy` and `RateLimit` fields (draft-ietf-httpapi-
// ratelimit-headers), then `next()`. Refused: the same fields, `Retry-After`, and 429 (or
// `handler`). The decision is on `req.rateLimit`. A check that fails (Redis down with
// `fallback.enabled: false`) goes to `next(err)`, or lets the request through with `failOpen`.

const { invalid } = require('./errors.js')
const { checkManager, checkOptionsObject, checkRateLimit, describe } = require('./validate.js')

const OPTIONS = [
  'limit',
  'windowMs',
  'burst',
  'cost',
  'manager',
  'key',
  'tenant',
  'skip',
  'handler',
  'name',
  'headers',
  'legacyHeaders',
  'failOpen',
]
// a policy identifier (written as a Structured Fields string): printable, no space or quote
const NAME = /^[A-Za-z0-9:/!#$%&'*+\-.^_`|~]+$/

function defaultManager() {
  return require('./manager.js').cacheManager
}

function optionalFunction(name, value) {
  if (value !== undefined && typeof value !== 'function')
    throw invalid(`rateLimitMiddleware: ${name} must be a function, got ${describe(value)}`)
  return value
}

function optionalBoolean(name, value, fallback) {
  if (value === undefined) return fallback
  if (typeof value !== 'boolean')
    throw invalid(`rateLimitMiddleware: ${name} must be a boolean, got ${describe(value)}`)
  return value
}

/** `"name"` as a Structured Fields string (printable ASCII; `"` and `\` escaped). */
function sfString(name) {
  return `"${name.replace(/[\\"]/g, (c) => `\\${c}`)}"`
}

/** Adds `value` to the list field `name` (another limiter may have set it already). */
function appendField(res, name, value) {
  const current = res.getHeader(name)
  res.setHeader(name, current === undefined ? value : `${current}, ${value}`)
}

/**
 * Middleware that checks every request against a rate limit (see `manager.rateLimit`).
 * Options: `limit`, `windowMs`, `burst`, `cost` (the policy); `manager` (default: the package's
 * `cacheManager`, looked up per request); `key(req)` (default `req.ip`); `tenant(req)`; `skip(req)`;
 * `handler(req, res, next, result)` for a refused request (default: 429 and a short text);
 * `name` (the policy's identifier in the fields, default `<limit>-in-<windowMs>ms`); `headers`
 * (the IETF fields, default true); `legacyHeaders` (`X-RateLimit-Limit`/`-Remaining`/`-Reset`,
 * default false); `failOpen` (a failed check lets the request through instead of `next(err)`).
 */
function rateLimitMiddleware(options) {
  const opts = checkOptionsObject('rateLimitMiddleware', options)
  if (options === undefined || options === null)
    throw invalid('rateLimitMiddleware: options { limit, windowMs } are required')
  for (const name of Object.keys(opts)) {
    if (!OPTIONS.includes(name)) throw invalid(`rateLimitMiddleware: unknown option '${name}'`)
  }
  const policy = checkRateLimit({
    limit: opts.limit,
    windowMs: opts.windowMs,
    ...(opts.burst === undefined ? {} : { burst: opts.burst }),
    ...(opts.cost === undefined ? {} : { cost: opts.cost }),
  })
  checkManager('rateLimitMiddleware', opts.manager, ['rateLimit', 'tenant'])
  const keyOf = optionalFunction('key', opts.key)
  const tenantOf = optionalFunction('tenant', opts.tenant)
  const skip = optionalFunction('skip', opts.skip)
  const handler = optionalFunction('handler', opts.handler)
  const headers = optionalBoolean('headers', opts.headers, true)
  const legacy = optionalBoolean('legacyHeaders', opts.legacyHeaders, false)
  const failOpen = optionalBoolean('failOpen', opts.failOpen, false)
  const name = opts.name ?? `${policy.limit}-in-${policy.windowMs}ms`
  if (typeof name !== 'string' || !NAME.test(name) || name.length > 64)
    throw invalid(`rateLimitMiddleware: name must be a short token (letters, digits, -._:), got ${String(name)}`)
  const windowSeconds = Math.ceil(policy.windowMs / 1000)
  const policyField = `${sfString(name)};q=${policy.limit};w=${windowSeconds}`
  const check = { limit: policy.limit, windowMs: policy.windowMs, cost: policy.cost }
  if (policy.burst !== undefined) check.burst = policy.burst

  function setFields(res, result) {
    if (headers) {
      appendField(res, 'RateLimit-Policy', policyField)
      const t = Math.ceil((result.allowed ? result.resetMs : result.retryAfterMs) / 1000)
      appendField(res, 'RateLimit', `${sfString(name)};r=${result.remaining};t=${t}`)
    }
    if (legacy) {
      res.setHeader('X-RateLimit-Limit', String(result.limit))
      res.setHeader('X-RateLimit-Remaining', String(result.remaining))
      res.setHeader('X-RateLimit-Reset', String(Math.ceil((Date.now() + result.resetMs) / 1000)))
    }
  }

  function refuse(req, res, next, result) {
    res.setHeader('Retry-After', String(Math.ceil(result.retryAfterMs / 1000)))
    if (handler) return handler(req, res, next, result)
    const body = 'Too many requests, please try again later.\n'
    res.statusCode = 429
    res.setHeader('Content-Type', 'text/plain; charset=utf-8')
    res.setHeader('Content-Length', String(Buffer.byteLength(body)))
    res.end(body)
  }

  async function run(req, res, next) {
    if (skip && (await skip(req))) return next()
    const key = keyOf ? await keyOf(req) : (req.ip ?? req.socket?.remoteAddress)
    if (typeof key !== 'string' || key.length === 0)
      throw invalid(`rateLimitMiddleware: the request's key must be a non-empty string, got ${describe(key)}`)
    const manager = opts.manager ?? defaultManager()
    const tenant = tenantOf ? await tenantOf(req) : undefined
    const scope = tenant === undefined ? manager : manager.tenant(tenant)
    let result
    try {
      result = await scope.rateLimit(key, check)
    } catch (err) {
      if (failOpen) return next()
      throw err
    }
    req.rateLimit = result
    if (!res.headersSent) setFields(res, result)
    if (result.allowed) return next()
    return refuse(req, res, next, result)
  }

  return function rateLimit(req, res, next) {
    run(req, res, next).catch(next)
  }
}

module.exports = { rateLimitMiddleware }
