'use strict'
// The error codes of ferrocache, and the one conversion of the errors the addon hands over.

const { isNativeError } = require('node:util').types

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

/** A RangeError with code ERR_INVALID_ARG (a number out of its range). */
function outOfRange(message) {
  return codedError(RangeError, codes.INVALID_ARG, message)
}

/** The error of a call made after `close()`. */
function closedError() {
  return codedError(Error, codes.CLOSED, 'the cache manager is closed')
}

// napi's own status codes for arguments it could not convert.
const NAPI_ARG_STATUSES = new Set([
  'InvalidArg',
  'ObjectExpected',
  'StringExpected',
  'NameExpected',
  'FunctionExpected',
  'NumberExpected',
  'BooleanExpected',
  'ArrayExpected',
  'BigintExpected',
])

/**
 * The error an addon error stands for, as the class its code calls for, in the caller's
 * realm: errors made by the addon belong to Node's main realm (under Jest, a VM context,
 * `instanceof Error` is false for them), so they are recognised by shape and made anew.
 * Anything that is not an error is returned as is.
 */
function fromNative(err) {
  if (typeof err !== 'object' || err === null || !isNativeError(err)) return err
  switch (err.code) {
    case codes.INVALID_ARG:
    case codes.SERIALIZE:
      return codedError(TypeError, err.code, err.message)
    case codes.TOO_LARGE:
      return codedError(RangeError, err.code, err.message)
    case codes.CLOSED:
    case codes.REDIS_UNAVAILABLE:
    case codes.REDIS:
      return codedError(Error, err.code, err.message)
    default:
      if (NAPI_ARG_STATUSES.has(err.code)) return codedError(TypeError, codes.INVALID_ARG, err.message)
      // not one of ours (a caught Rust panic, say): keep message and code, in this realm
      if (err instanceof Error) return err
      return codedError(Error, err.code, err.message, err)
  }
}

module.exports = { codes, codedError, invalid, outOfRange, closedError, fromNative }
