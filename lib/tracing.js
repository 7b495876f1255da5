'use strict'
// Tracing on node:diagnostics_channel. Every data call of a manager or tenant scope is one
// operation on the tracing channel `ferrocache:operation` (node's TracingChannel: the channels
// `tracing:ferrocache:operation:start`, `:end`, `:asyncStart`, `:asyncEnd`, `:error`), with the
// events and their order of `tracingChannel.tracePromise`: `start` and `end` around the
// synchronous part of the call, then `error` (when it rejects), `asyncStart` and `asyncEnd` when
// it settles. One message object travels through the events (OperationMessage in tracing.d.ts):
// `operation`, `kind`, `tenant`, `key`, `parent` at `start`; `hit` (reads), `servedBy`,
// `durationMs` and `result` or `error` once it settled.
//
// Nothing happens unless something subscribes: each call checks `tracing()` once and otherwise
// runs as if this file did not exist (measured in bench/tracing-overhead.js).

const dc = require('node:diagnostics_channel')
const { performance } = require('node:perf_hooks')

/** The name of the tracing channel. */
const OPERATION_CHANNEL = 'ferrocache:operation'

// node >= 18.19 and 19.9; on an older node nothing is ever published
const operationChannel = typeof dc.tracingChannel === 'function' ? dc.tracingChannel(OPERATION_CHANNEL) : null
const { start, end, asyncStart, asyncEnd, error } = operationChannel ?? {}

/** True when anything subscribes to the operation channel (or binds a store to its start). */
const tracing =
  operationChannel === null
    ? () => false
    : () =>
        start.hasSubscribers ||
        end.hasSubscribers ||
        asyncStart.hasSubscribers ||
        asyncEnd.hasSubscribers ||
        error.hasSubscribers

/** Who answered a call, by the code the addon gives (src/cache/op.rs `Served`). */
const SERVED_BY = Object.freeze(['redis', 'l1', 'memory'])

/**
 * A new operation's message. `key` is the key (the prefix of `invalidateCache`; undefined for
 * the calls of a whole scope); `parent` the message of the operation this call was made for
 * (the read and write of a `getOrSet`).
 */
function message(operation, kind, tenant, key, parent) {
  return {
    operation,
    kind,
    tenant,
    key,
    parent,
    hit: undefined,
    servedBy: undefined,
    durationMs: undefined,
  }
}

/**
 * Runs `fn(...args, msg)` (it returns a promise) as the operation `msg`, as
 * `tracingChannel.tracePromise` would, and records `durationMs` once it settles. `fn` may fill in
 * `msg.hit` and `msg.servedBy` before its promise settles. Call it only when `tracing()`.
 */
function trace(msg, fn, thisArg, ...args) {
  const begun = performance.now()
  const resolved = (result) => {
    msg.durationMs = performance.now() - begun
    msg.result = result
    asyncStart.publish(msg)
    asyncEnd.publish(msg)
    return result
  }
  const rejected = (err) => {
    msg.durationMs = performance.now() - begun
    msg.error = err
    error.publish(msg)
    asyncStart.publish(msg)
    asyncEnd.publish(msg)
    throw err
  }
  args.push(msg)
  return start.runStores(msg, () => {
    try {
      return Reflect.apply(fn, thisArg, args).then(resolved, rejected)
    } catch (err) {
      msg.durationMs = performance.now() - begun
      msg.error = err
      error.publish(msg)
      throw err
    } finally {
      end.publish(msg)
    }
  })
}

/**
 * What the addon answered the call of `msg` (not an error), and who answered it (a `SERVED_BY`
 * code): its `servedBy`, and for a read its `hit`. The first read made for a parent operation
 * gives the parent its `hit` and `servedBy` too (a composite operation may set its own later).
 */
function answered(msg, answer, served, read) {
  msg.servedBy = SERVED_BY[served]
  if (!read) return
  msg.hit = answer !== null
  const parent = msg.parent
  if (parent !== undefined && parent.hit === undefined) {
    parent.hit = msg.hit
    parent.servedBy = msg.servedBy
  }
}

// the operation of each single-flight load (a promise) whose caller was traced
const flights = new WeakMap()

/**
 * A traced single-flight operation (`getOrSet`) with message `msg` started the load `flight`
 * (`shared` false), or joined one under way (`shared` true: it gets the `hit` and `servedBy`
 * of the operation that started it, when that one was traced). Call before chaining on
 * `flight`.
 */
function flight(load, msg, shared) {
  if (!shared) {
    flights.set(load, msg)
    return
  }
  msg.shared = true
  const leader = flights.get(load)
  if (leader === undefined) return
  const copy = () => {
    msg.hit = leader.hit
    msg.servedBy = leader.servedBy
  }
  load.then(copy, copy)
}

module.exports = { OPERATION_CHANNEL, operationChannel, SERVED_BY, tracing, message, trace, answered, flight }
