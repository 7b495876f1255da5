'use strict'
// Argument checks shared by the manager and the adapters: the ones that need V8 (types,
// well-formed UTF-16), JSON through V8, and recognising a manager passed in.

const { codes, codedError, invalid, outOfRange } = require('./errors.js')

/** The longest TTL in seconds (2^31 - 1, Redis's and timers' limit). */
const MAX_TTL_SECONDS = 2147483647

/** A short description of a value's type for error messages. */
function describe(value) {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'an array'
  if (typeof value === 'function') return 'a function'
  if (typeof value === 'symbol') return 'a symbol'
  return typeof value
}

function isPlainObject(value) {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** `value`, a non-empty, well-formed string; else a TypeError with ERR_INVALID_ARG naming `name`. */
function checkString(name, value) {
  if (typeof value !== 'string') throw invalid(`${name} must be a string, got ${describe(value)}`)
  if (value.length === 0) throw invalid(`${name} must not be empty`)
  if (!value.isWellFormed()) throw invalid(`${name} contains a lone surrogate (not well-formed UTF-16)`)
  return value
}

/** `value` (seconds), undefined or positive, finite and at most MAX_TTL_SECONDS. */
function checkTtl(name, value) {
  if (value === undefined) return undefined
  if (typeof value !== 'number') throw invalid(`${name} must be a number, got ${describe(value)}`)
  if (!Number.isFinite(value) || value <= 0 || value > MAX_TTL_SECONDS) {
    throw outOfRange(`${name} must be positive, finite and at most ${MAX_TTL_SECONDS}, got ${value}`)
  }
  return value
}

/** The largest `limit`, `burst` and `cost` of a rate limit. */
const MAX_RATE_COUNT = 1e9
/** The longest `windowMs` of a rate limit: one year. */
const MAX_WINDOW_MS = 365 * 24 * 3600 * 1000
const RATE_OPTIONS = ['limit', 'windowMs', 'burst', 'cost']

function wholeNumber(name, value, max, optional) {
  if (value === undefined && optional) return undefined
  if (typeof value !== 'number') throw invalid(`${name} must be a number, got ${describe(value)}`)
  if (!Number.isInteger(value) || value < 1 || value > max) {
    throw outOfRange(`${name} must be a whole number from 1 to ${max}, got ${value}`)
  }
  return value
}

/**
 * The policy of a rate-limit check from `options` ({ limit, windowMs, burst?, cost? }): whole
 * positive numbers within bounds, `cost` (default 1) at most `burst` (default `limit`), no
 * unknown names; else a coded TypeError/RangeError.
 */
function checkRateLimit(options) {
  if (!isPlainObject(options)) throw invalid(`rateLimit options must be an object, got ${describe(options)}`)
  for (const name of Object.keys(options)) {
    if (!RATE_OPTIONS.includes(name))
      throw invalid(`unknown rateLimit option '${name}' (known: ${RATE_OPTIONS.join(', ')})`)
  }
  const limit = wholeNumber('limit', options.limit, MAX_RATE_COUNT, false)
  const windowMs = wholeNumber('windowMs', options.windowMs, MAX_WINDOW_MS, false)
  const burst = wholeNumber('burst', options.burst, MAX_RATE_COUNT, true)
  const cost = wholeNumber('cost', options.cost, MAX_RATE_COUNT, true) ?? 1
  if (cost > (burst ?? limit)) {
    throw outOfRange(`cost ${cost} is more than burst ${burst ?? limit}: such a check could never be allowed`)
  }
  return { limit, windowMs, burst, cost }
}

/** The JSON text of `value` (V8's JSON.stringify), or a coded error. */
function encode(value) {
  if (value === undefined) throw invalid('data must not be undefined (use null, or delete the entry)')
  let json
  try {
    json = JSON.stringify(value)
  } catch (cause) {
    throw codedError(TypeError, codes.SERIALIZE, `data cannot be serialized to JSON: ${cause && cause.message}`, cause)
  }
  if (json === undefined)
    throw codedError(TypeError, codes.SERIALIZE, `data cannot be serialized to JSON: ${describe(value)}`)
  return json
}

/** The value of stored JSON text (a fresh copy), or null for a miss. */
function decode(json) {
  if (json === null) return null
  try {
    return JSON.parse(json)
  } catch (cause) {
    throw codedError(
      Error,
      codes.REDIS,
      'the value stored at this key is not valid JSON (written by another client?)',
      cause,
    )
  }
}

// An Express request passed where a manager belongs: `app.get(path, cacheHealthHandler)`
// (without the call) hands (req, res, next) to the factory.
function looksLikeRequest(value) {
  return isPlainObject(value) && typeof value.headers === 'object' && typeof value.method === 'string'
}

/**
 * `manager` when it is a ferrocache manager (an object with the `methods` that `who`
 * uses), or undefined/null (the default manager is meant); else a TypeError naming `who`.
 */
function checkManager(who, manager, methods) {
  if (manager === undefined || manager === null) return manager
  if (looksLikeRequest(manager)) {
    throw invalid(`${who}(manager?) returns a handler: mount ${who}() (called), not ${who} itself`)
  }
  const ok =
    (typeof manager === 'object' || typeof manager === 'function') &&
    methods.every((m) => typeof manager[m] === 'function')
  if (!ok)
    throw invalid(`${who}: manager must be a ferrocache CacheManager (createCacheManager()), got ${describe(manager)}`)
  return manager
}

/** `options` as an object ({} for undefined/null); else a TypeError naming `who`. */
function checkOptionsObject(who, options) {
  if (options === undefined || options === null) return {}
  if (!isPlainObject(options)) throw invalid(`${who}: options must be an object, got ${describe(options)}`)
  return options
}

module.exports = {
  MAX_TTL_SECONDS,
  describe,
  isPlainObject,
  checkString,
  checkTtl,
  encode,
  decode,
  checkManager,
  checkOptionsObject,
  checkRateLimit,
}
