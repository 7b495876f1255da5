'use strict'
// The call protocol with the addon, the one way every data call takes:
// - each call is handed to the addon's `submit` at once (synchronously); the addon answers
//   it on the spot (memory://, a near-cache hit, bad input: settled at once, as any
//   in-process store that answers synchronously), or queues it and answers `undefined`;
// - the calls queued in one event-loop turn are handed over from the check phase (`flush`):
//   the answers the addon gave meanwhile (an outage: handed over from the check phase, so
//   that a loop of such calls keeps yielding to timers, I/O and the recovery) as an array,
//   and the calls for Redis in chunks, each one pipeline whose answers arrive as one array;
// - an answer is the value (JSON text or null of a get, null of a set, a boolean, a
//   number, an array) or an Error with `code`, turned into the caller's result in one place
//   (`#settle`).
// The promise a caller gets is the one the public method returns: no further async layer
// (measured: an async wrapper per call costs more JS-thread time than the whole crossing).
// While something subscribes to the tracing channel (tracing.js), a call is made as a traced
// operation instead, with who answered it: `submit` writes that into the slot's element 5 for
// an answer it gives, and an array of answers says it in `served` when not all were Redis's.

// The flush waits for the event loop's check phase (setImmediate), not a microtask: a
// caller's next call comes several promise hops after its previous result, so a microtask
// flush splits one turn's calls into batches of ~1 (measured: 1.3 calls per batch at 256
// concurrent callers; 16 with setImmediate). Node's own setImmediate, taken from
// node:timers, so that fake timers in tests (jest.useFakeTimers) do not hold calls back.
const { setImmediate } = require('node:timers')
const { Call } = require('./native.js')
const { tracing, message, trace, answered } = require('./tracing.js')

// A turn's calls go out in chunks that run concurrently, and the calls made while a chunk's
// answers are handed over are sent right then (#deliver), not at the next check phase: new
// calls are on their way to Redis while the JS thread still works through earlier answers
// (measured: W2 37-40k -> 53-57k ops/s, W1 at 64 callers 51-60k -> 82-85k; event-loop
// utilization 0.72 -> 0.99). A chunk holds a quarter of the calls in flight, from MIN_CHUNK
// to MAX_CHUNK: enough chunks to overlap, and at high concurrency fewer crossings per call.
const MIN_CHUNK = 32
const MAX_CHUNK = 256

// Answers given on the spot (near-cache hits, memory://, flood refusals) between two check
// phases, at most; past it an answer waits for the next check phase. An awaited on-the-spot
// answer resumes its caller within the same turn, so without this a loop of them (a batch job
// reading hot keys, a load test) would never let timers and I/O run again: not the recovery
// probe, not a server's other requests.
const SPOT_BUDGET = 1024

/** What a caller gets from an answer. */
const Result = Object.freeze({
  /** A get: the parsed value (a fresh copy), or null. */
  VALUE: 0,
  /** A get: the JSON text, or null. */
  TEXT: 1,
  /** A write: undefined. */
  NONE: 2,
  /** The answer as it is (a boolean, a number, an array). */
  PLAIN: 3,
  /** A rate-limit check: [allowed (1 or 0), limit, remaining, resetMs, retryAfterMs] as an object. */
  DECISION: 4,
})

// What each `Call` is, for tracing: [operation, kind, read].
const OPERATIONS = {
  [Call.GetSession]: ['getSession', 'session', true],
  [Call.GetQuery]: ['getCachedQuery', 'query', true],
  [Call.SetSession]: ['setSession', 'session', false],
  [Call.SetQuery]: ['cacheQueryResult', 'query', false],
  [Call.DeleteSession]: ['deleteSession', 'session', false],
  [Call.DeleteQuery]: ['deleteCachedQuery', 'query', false],
  [Call.InvalidateQueries]: ['invalidateCache', 'query', false],
  [Call.InvalidateAllQueries]: ['invalidateAll', 'query', false],
  [Call.DeleteAllSessions]: ['deleteAllSessions', 'session', false],
  [Call.ListSessions]: ['listSessionIds', 'session', false],
  [Call.RateLimit]: ['rateLimit', 'ratelimit', false],
}

/** The message of a traced call (tracing.js), its `read` (has a hit or miss) kept apart. */
function callMessage(call, key, tenant, parent) {
  const [operation, kind, read] = OPERATIONS[call]
  return [message(operation, kind, tenant, key, parent), read]
}

const decision = (a) => ({ allowed: a[0] === 1, limit: a[1], remaining: a[2], resetMs: a[3], retryAfterMs: a[4] })

const isError = (answer) => typeof answer === 'object' && answer !== null && !Array.isArray(answer)

/** The calls of one manager. */
class Calls {
  #native
  #submit
  #decode
  #error
  #waiting = [] // the queued calls of this turn: resolve, reject, result, three slots each
  #traced = null // the turn's traced calls: [message, read] by index in #waiting / 3, or null
  #scheduled = false
  #inFlight = 0 // calls sent and not answered yet
  #chunks = new Set() // the promises of the chunks sent and not answered yet (for drain)
  // where submit writes a rate-limit decision it answers on the spot, and who answered (at 5)
  #slot = new Float64Array(6)
  #together = 0 // the next flush's chunk size at least (see together)
  #spot = 0 // answers given on the spot since the last check phase
  #late = [] // answers given on the spot past SPOT_BUDGET: resolve, reject, result, answer each

  /**
   * `decode(json)` parses a get's text (a throw rejects that call); `error(err)` maps an
   * Error the addon answered to the one the caller sees.
   */
  constructor(native, { decode, error }) {
    this.#native = native
    this.#submit = native.submitFunction(this.#slot)
    this.#decode = decode
    this.#error = error
  }

  /**
   * Makes one call (`call` from the addon's `Call`) and resolves with its result, as `result`
   * (`Result`) says; rejects with its error. `parent`: the message of the traced operation the
   * call is made for (tracing.js), if any.
   */
  run(call, key, tenant, json, ttlSeconds, result, parent) {
    if (tracing()) {
      const traced = callMessage(call, key, tenant, parent)
      return trace(traced[0], this.#run, this, call, key, tenant, json, ttlSeconds, result, traced)
    }
    return this.#run(call, key, tenant, json, ttlSeconds, result, undefined)
  }

  #run(call, key, tenant, json, ttlSeconds, result, traced) {
    let answer
    try {
      // only the arguments there are: the addon reads each one it is given
      if (json !== undefined) answer = this.#submit(call, key, tenant, json, ttlSeconds)
      else if (tenant !== undefined) answer = this.#submit(call, key, tenant)
      else answer = this.#submit(call, key)
    } catch (err) {
      return Promise.reject(this.#error(err))
    }
    return this.#answer(answer, result, traced)
  }

  /**
   * A read answered as JSON text or null: the answer itself when the addon gives it on the spot
   * (a near-cache or in-process hit costs no promise), else a promise of it.
   */
  readText(call, key, tenant) {
    let answer
    try {
      answer = tenant === undefined ? this.#submit(call, key) : this.#submit(call, key, tenant)
    } catch (err) {
      return Promise.reject(this.#error(err))
    }
    if (answer === undefined) return this.#answer(answer, Result.TEXT)
    if (++this.#spot > SPOT_BUDGET) return this.#later(Result.TEXT, answer)
    return isError(answer) ? Promise.reject(this.#error(answer)) : answer
  }

  /**
   * Makes the next flush send every call queued so far in one chunk, so that a batch made in
   * one go (getOrSetMany, Keyv's getMany) is one pipeline: one round trip.
   */
  together() {
    this.#together = this.#waiting.length / 3
  }

  /** A rate-limit check (numbers checked by the caller); resolves with the decision. */
  rateLimit(key, tenant, limit, windowMs, burst, cost) {
    if (tracing()) {
      const traced = callMessage(Call.RateLimit, key, tenant, undefined)
      return trace(traced[0], this.#rateLimit, this, key, tenant, limit, windowMs, burst, cost, traced)
    }
    return this.#rateLimit(key, tenant, limit, windowMs, burst, cost, undefined)
  }

  #rateLimit(key, tenant, limit, windowMs, burst, cost, traced) {
    let answer
    try {
      answer = this.#submit(Call.RateLimit, key, tenant, limit, windowMs, burst, cost)
    } catch (err) {
      return Promise.reject(this.#error(err))
    }
    return this.#answer(answer, Result.DECISION, traced)
  }

  // What `submit` answered: a result now, or a promise settled by the flush. `traced`: the
  // call's [message, read] when it is traced.
  #answer(answer, result, traced) {
    if (answer !== undefined) {
      if (traced !== undefined && !isError(answer)) answered(traced[0], answer, this.#slot[5], traced[1])
      if (++this.#spot > SPOT_BUDGET)
        return this.#later(result, result === Result.DECISION && answer === true ? [...this.#slot] : answer)
      return this.#now(result, answer)
    }
    this.#schedule()
    const waiting = this.#waiting
    if (traced !== undefined) (this.#traced ??= [])[waiting.length / 3] = traced
    return new Promise((resolve, reject) => waiting.push(resolve, reject, result))
  }

  // An answer given on the spot past SPOT_BUDGET, settled at the next check phase (a decision as
  // its own array: the slot is written again by the next call).
  #later(result, answer) {
    this.#schedule()
    const late = this.#late
    return new Promise((resolve, reject) => late.push(resolve, reject, result, answer))
  }

  // A flush at the next check phase, unless one is due.
  #schedule() {
    if (this.#scheduled) return
    this.#scheduled = true
    setImmediate(this.#flush)
  }

  // The result of an answer given on the spot, as a settled promise.
  #now(result, answer) {
    if (isError(answer)) return Promise.reject(this.#error(answer))
    if (result === Result.VALUE) {
      try {
        return Promise.resolve(this.#decode(answer))
      } catch (err) {
        return Promise.reject(err)
      }
    }
    // a decision answered on the spot is in the slot
    if (result === Result.DECISION) return Promise.resolve(decision(answer === true ? this.#slot : answer))
    return Promise.resolve(result === Result.NONE ? undefined : answer)
  }

  #settle(resolve, reject, result, answer) {
    if (isError(answer)) reject(this.#error(answer))
    else if (result === Result.VALUE) {
      let value
      try {
        value = this.#decode(answer)
      } catch (err) {
        reject(err)
        return
      }
      resolve(value)
    } else if (result === Result.NONE) resolve(undefined)
    else if (result === Result.DECISION) resolve(decision(answer))
    else resolve(answer)
  }

  // Sends the turn's queued calls, in chunks.
  #flush = () => {
    this.#scheduled = false
    this.#spot = 0
    if (this.#late.length > 0) {
      const late = this.#late
      this.#late = []
      for (let i = 0; i < late.length; i += 4) this.#settle(late[i], late[i + 1], late[i + 2], late[i + 3])
    }
    const waiting = this.#waiting
    if (waiting.length === 0) return
    this.#waiting = []
    const traced = this.#traced
    this.#traced = null
    const size = Math.max(this.#together, Math.min(MAX_CHUNK, Math.max(MIN_CHUNK, this.#inFlight >> 2)))
    this.#together = 0
    let sent
    try {
      sent = this.#native.flush(size)
    } catch (err) {
      this.#fail(waiting, null, err)
      return
    }
    for (let c = 0; c < sent.length; c += 2) {
      const chunk = sent[c]
      const positions = sent[c + 1]
      if (Array.isArray(chunk)) {
        // answered already
        this.#deliver(waiting, positions, chunk, traced)
        continue
      }
      const n = positions === null ? waiting.length / 3 : positions.length
      this.#inFlight += n
      this.#chunks.add(chunk)
      chunk.then(
        (answers) => {
          this.#inFlight -= n
          this.#chunks.delete(chunk)
          this.#deliver(waiting, positions, answers, traced)
        },
        (err) => {
          this.#inFlight -= n
          this.#chunks.delete(chunk)
          this.#fail(waiting, positions, err)
        },
      )
    }
  }

  #deliver(waiting, positions, answers, traced) {
    // the calls made by the callers of answers delivered before go out now
    if (this.#waiting.length > 0) this.#flush()
    if (traced !== null) this.#served(positions, answers, traced)
    for (let i = 0; i < answers.length; i++) {
      const at = 3 * (positions === null ? i : positions[i])
      this.#settle(waiting[at], waiting[at + 1], waiting[at + 2], answers[i])
    }
  }

  // Who answered the traced calls among `answers` (Redis, unless the array says otherwise).
  #served(positions, answers, traced) {
    const served = answers.served
    for (let i = 0; i < answers.length; i++) {
      const call = traced[positions === null ? i : positions[i]]
      if (call !== undefined && !isError(answers[i])) answered(call[0], answers[i], served ? served[i] : 0, call[1])
    }
  }

  #fail(waiting, positions, err) {
    const mapped = this.#error(err)
    const count = positions === null ? waiting.length / 3 : positions.length
    for (let i = 0; i < count; i++) waiting[3 * (positions === null ? i : positions[i]) + 1](mapped)
  }

  /** Sends what is queued at once and resolves when every call made before has settled. */
  async drain() {
    for (;;) {
      if (this.#waiting.length > 0 || this.#late.length > 0) this.#flush()
      if (this.#chunks.size === 0) return
      await Promise.allSettled([...this.#chunks])
      // the callers' continuations run after the answers; they may have made more calls
      await new Promise((resolve) => setImmediate(resolve))
    }
  }
}

module.exports = { Calls, Result }
