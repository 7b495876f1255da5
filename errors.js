'use strict'
// The error codes of ferrocache and the helpers every module uses to raise them.

/** Every `err.code` ferrocache produces. */
const codes = Object.freeze({
  INVALID_ARG: 'ERR_INVALID_ARG',
  SERIALIZE: 'ERR_SERIALIZE',
  TOO_LARGE: 'ERR_TOO_LARGE',
  CLOSED: 'ERR_CLOSED',
  REDIS_UNAVAILABLE: 'ERR_REDIS_UNAVAILABLE',
  REDIS: 'ERR_REDIS',
})

/** `new Ctor(message, { cause })` with `code`. */
function codedError(Ctor, code, message, cause) {
  const err = cause === undefined ? new Ctor(message) : new Ctor(message, { cause })
  err.code = code
  return err
}

/** A TypeError with code ERR_INVALID_ARG. */
function invalid(message, cause) {
  return codedError(TypeError, codes.INVALID_ARG, message, cause)
}

/** A short description of a value's type for error messages. */
function describe(value) {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'an array'
  if (typeof value === 'function') return 'a function'
  if (typeof value === 'symbol') return 'a symbol'
  return typeof value
}

module.exports = { codes, codedError, invalid, describe }
