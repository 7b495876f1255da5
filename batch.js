'use strict'
// Batches the asynchronous gets and sets made in one event-loop tick into one
// native call (one crossing, one tokio task, one promise resolution from Rust),
// instead of one of each per call; while Redis is down (breaker open) the batch
// is answered synchronously from the in-process store and the journal. Each caller still gets its own promise,
// settled with its own result: the JSON text or null of a get, null for a set,
// or an Error carrying `code` (index.js turns that into a rejection).

// The flush waits for the event loop's check phase (setImmediate), not a microtask:
// a caller's next call comes several promise hops after its previous result, so a
// microtask flush splits one tick's calls into batches of ~1 (measured: 1.3 ops per
// batch at 256 concurrent callers; 16 with setImmediate). Node's own setImmediate,
// taken from node:timers, so that fake timers in tests (jest.useFakeTimers) do not
// hold the calls back.
const { setImmediate } = require('node:timers')

const GET = ['g', 'G'] // by kind: 0 = session, 1 = query
const SET = ['s', 'S']

/** Queues the calls of one tick and sends them to `native.batch` in a microtask. */
class Batcher {
  #native
  #pending = null

  constructor(native) {
    this.#native = native
  }

  /** Resolves with the JSON text of `key` or null (or an Error value). */
  get(kind, key, tenant) {
    return this.#queue(GET[kind], key, tenant, null, NaN)
  }

  /** Resolves with null once `json` is stored (or with an Error value); `ttl` undefined = default. */
  set(kind, key, json, ttl, tenant) {
    return this.#queue(SET[kind], key, tenant, json, ttl === undefined ? NaN : ttl)
  }

  #queue(op, key, tenant, json, ttl) {
    let batch = this.#pending
    if (batch === null) {
      batch = { ops: '', keys: [], values: [], ttls: [], tenants: [], settle: [] }
      this.#pending = batch
      setImmediate(() => this.#flush(batch))
    }
    batch.ops += op
    batch.keys.push(key)
    batch.tenants.push(tenant === undefined ? '' : tenant) // tenant ids are never empty
    if (json !== null) {
      batch.values.push(json)
      batch.ttls.push(ttl)
    }
    return new Promise((resolve, reject) => batch.settle.push(resolve, reject))
  }

  #flush(batch) {
    this.#pending = null
    const { settle } = batch
    const failAll = (err) => {
      for (let i = 1; i < settle.length; i += 2) settle[i](err)
    }
    const deliver = (values) => {
      for (let i = 0; i < values.length; i++) settle[2 * i](values[i])
    }
    const native = this.#native
    try {
      // Redis down and the breaker open: answered here, without a thread hop. Still
      // from the check phase, so a loop of calls keeps yielding to the event loop.
      if (native.servesLocally) this.#answerLocally(batch)
      else native.batch(batch.ops, batch.keys, batch.values, batch.ttls, batch.tenants).then(deliver, failAll)
    } catch (err) {
      failAll(err)
    }
  }

  // The gets answered `undefined` found Redis back meanwhile: they go to Redis.
  #answerLocally(batch) {
    const { settle } = batch
    const values = this.#native.batchSync(batch.ops, batch.keys, batch.values, batch.ttls, batch.tenants)
    for (let i = 0; i < values.length; i++) {
      if (values[i] !== undefined) settle[2 * i](values[i])
      else this.#queue(batch.ops[i], batch.keys[i], batch.tenants[i] || undefined, null, NaN).then(settle[2 * i], settle[2 * i + 1])
    }
  }
}

module.exports = { Batcher }
