'use strict'
// Batches the asynchronous gets and sets made in one event-loop tick into a few
// native calls (one crossing, one tokio task, one promise resolution from Rust per
// chunk), instead of one of each per call; while Redis is down (breaker open) the batch
// is answered synchronously from the in-process store and the journal. Each caller still gets its own promise,
// settled with its own result: the value (parsed by `parse`) or null of a get, or the JSON
// text with `raw`, undefined for a set; or rejected with the call's error as `error` maps it.
// The promise a caller gets is the one the public method returns: no further async layer
// (measured: an async wrapper per call costs more JS-thread time than the whole crossing).

// The flush waits for the event loop's check phase (setImmediate), not a microtask:
// a caller's next call comes several promise hops after its previous result, so a
// microtask flush splits one tick's calls into batches of ~1 (measured: 1.3 ops per
// batch at 256 concurrent callers; 16 with setImmediate). Node's own setImmediate,
// taken from node:timers, so that fake timers in tests (jest.useFakeTimers) do not
// hold the calls back.
const { setImmediate } = require('node:timers')

const GET = ['g', 'G'] // by kind: 0 = session, 1 = query
const SET = ['s', 'S']

// A tick's calls go out in chunks, one native call (one Redis pipeline) each, and the
// calls made while a chunk's results are handed over are sent right then (#deliver), not
// at the next check phase: new calls are on their way to Redis while the JS thread still
// works through earlier results, instead of the thread waiting a full round trip for every
// tick's batch. Measured (bench, same machine, alternating): W2 37-40k -> 53-57k ops/s, W1
// at 64 callers 51-60k -> 82-85k; event-loop utilization 0.72 -> 0.99. A chunk holds a
// quarter of the calls in flight, from MIN_CHUNK to MAX_CHUNK: enough chunks to overlap,
// and at high concurrency fewer crossings per call (bench/HISTORY.md).
const MIN_CHUNK = 32
const MAX_CHUNK = 256

/** Queues the calls of one tick and sends them to `native.batch` from the check phase. */
class Batcher {
  #native
  #parse
  #error
  #pending = null // the calls not sent yet: { chunks: [Chunk], chunkOf: Map | null, size, sent }
  #inFlight = 0 // calls sent to Redis and not answered yet
  #sent = new Set() // the promises of the chunks sent and not answered yet (for drain)

  /**
   * `parse(json)` turns a get's JSON text into its value (a throw rejects that call);
   * `error(err)` maps an Error the addon answered or threw to the one the caller sees.
   */
  constructor(native, { parse, error }) {
    this.#native = native
    this.#parse = parse
    this.#error = error
  }

  /** Resolves with the value of `key` (JSON text with `raw`) or null. */
  get(kind, key, tenant, raw = false) {
    return this.#queue(GET[kind], key, tenant, null, NaN, raw)
  }

  /** Resolves with undefined once `json` is stored; `ttl` undefined = default. */
  set(kind, key, json, ttl, tenant) {
    return this.#queue(SET[kind], key, tenant, json, ttl === undefined ? NaN : ttl, false)
  }

  #queue(op, key, tenant, json, ttl, raw) {
    let pending = this.#pending
    if (pending === null) {
      const size = Math.min(MAX_CHUNK, Math.max(MIN_CHUNK, this.#inFlight >> 2))
      pending = { chunks: [newChunk()], chunkOf: null, size, sent: false }
      this.#pending = pending
      setImmediate(() => this.#flush(pending))
    }
    const chunk = chunkFor(pending, op, key, tenant)
    chunk.ops += op
    chunk.keys.push(key)
    if (tenant === undefined) chunk.tenants.push('')
    else {
      chunk.tenants.push(tenant) // tenant ids are never empty
      chunk.scoped = true
    }
    if (json !== null) {
      chunk.values.push(json)
      chunk.ttls.push(ttl)
    }
    chunk.raw.push(raw)
    return new Promise((resolve, reject) => chunk.settle.push(resolve, reject))
  }

  // Settles call `i` of `chunk` with what the addon answered for it: text or null (a get),
  // null (a set), or an Error.
  #settle(chunk, i, answer) {
    const { settle } = chunk
    if (typeof answer === 'object' && answer !== null) settle[2 * i + 1](this.#error(answer))
    else if (typeof answer !== 'string' || chunk.raw[i]) settle[2 * i](answer === null && isSet(chunk.ops[i]) ? undefined : answer)
    else {
      let value
      try {
        value = this.#parse(answer)
      } catch (err) {
        settle[2 * i + 1](err)
        return
      }
      settle[2 * i](value)
    }
  }

  #flush(pending) {
    if (pending.sent) return
    pending.sent = true
    if (this.#pending === pending) this.#pending = null
    for (const chunk of pending.chunks) this.#send(chunk)
  }

  #send(chunk) {
    const native = this.#native
    try {
      // Redis down and the breaker open: answered here, without a thread hop. Still
      // from the check phase, so a loop of calls keeps yielding to the event loop.
      if (native.servesLocally) this.#answerLocally(chunk)
      else {
        const n = chunk.keys.length
        // no tenant ids when none is set: reading them back in Rust costs ~70 ns per call
        const done = native.batch(chunk.ops, chunk.keys, chunk.values, chunk.ttls, chunk.scoped ? chunk.tenants : NO_TENANTS)
        this.#inFlight += n
        this.#sent.add(done)
        done.finally(() => this.#sent.delete(done)).catch(() => {}) // settled below
        done.then(
          (values) => {
            this.#inFlight -= n
            this.#deliver(chunk, values)
          },
          (err) => {
            this.#inFlight -= n
            this.#failAll(chunk, err)
          },
        )
      }
    } catch (err) {
      this.#failAll(chunk, err)
    }
  }

  /**
   * Sends the calls queued so far at once and resolves when every call made before settled
   * (calls a chunk answered locally may queue again: they are followed too).
   */
  async drain() {
    for (;;) {
      if (this.#pending !== null) this.#flush(this.#pending)
      if (this.#sent.size === 0) return
      await Promise.allSettled([...this.#sent])
      // the callers' settle callbacks run in the microtasks after the answers
      await new Promise((resolve) => setImmediate(resolve))
    }
  }

  #failAll(chunk, err) {
    const { settle } = chunk
    const mapped = this.#error(err)
    for (let i = 1; i < settle.length; i += 2) settle[i](mapped)
  }

  #deliver(chunk, values) {
    // the calls made by the callers of results delivered before go out now
    const pending = this.#pending
    if (pending !== null && !this.#native.servesLocally) this.#flush(pending)
    for (let i = 0; i < values.length; i++) this.#settle(chunk, i, values[i])
  }

  // The gets answered `undefined` found Redis back meanwhile: they go to Redis.
  #answerLocally(chunk) {
    const { settle } = chunk
    const values = this.#native.batchSync(chunk.ops, chunk.keys, chunk.values, chunk.ttls, chunk.tenants)
    for (let i = 0; i < values.length; i++) {
      if (values[i] !== undefined) this.#settle(chunk, i, values[i])
      else this.#queue(chunk.ops[i], chunk.keys[i], chunk.tenants[i] || undefined, null, NaN, chunk.raw[i]).then(settle[2 * i], settle[2 * i + 1])
    }
  }
}

const NO_TENANTS = Object.freeze([])

function newChunk() {
  return { ops: '', keys: [], values: [], ttls: [], tenants: [], scoped: false, raw: [], settle: [] }
}

const isSet = (op) => op === 's' || op === 'S'

// The chunk a call joins: the last one, or a new one when it is full; but a call on a key
// an earlier chunk of this tick already holds joins that chunk, so that calls on one key
// stay in one pipeline, in the order they were made (chunks run concurrently).
function chunkFor(pending, op, key, tenant) {
  const { chunks } = pending
  let last = chunks[chunks.length - 1]
  if (last.keys.length < pending.size && chunks.length === 1) return last
  if (pending.chunkOf === null) {
    pending.chunkOf = new Map()
    for (let i = 0; i < last.keys.length; i++) pending.chunkOf.set(callKey(last.ops[i], last.keys[i], last.tenants[i]), 0)
  }
  const id = callKey(op, key, tenant === undefined ? '' : tenant)
  const at = pending.chunkOf.get(id)
  if (at !== undefined) return chunks[at]
  if (last.keys.length >= pending.size) {
    last = newChunk()
    chunks.push(last)
  }
  pending.chunkOf.set(id, chunks.length - 1)
  return last
}

// One string per (kind, tenant, key): g/s are the session kind, G/S the query kind.
const callKey = (op, key, tenant) => `${op === 'g' || op === 's' ? 's' : 'q'}${tenant}\u0000${key}`

module.exports = { Batcher }
