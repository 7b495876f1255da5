'use strict'
// Measurement plumbing: seeded PRNG, Zipf sampler, CPU clocks, the closed-loop
// load runner with per-op latency capture, and the read-your-writes checker.

const fs = require('node:fs')
const { performance } = require('node:perf_hooks')

const hr = process.hrtime.bigint

// ---------------------------------------------------------------- randomness

/** mulberry32: a small seeded PRNG, uniform in [0, 1). */
function prng(seed) {
  let a = seed >>> 0
  return function next() {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** Zipf(s) over ranks 0..n-1 (rank 0 hottest), sampled by binary search on the CDF. */
function zipf(n, s) {
  const cdf = new Float64Array(n)
  let sum = 0
  for (let i = 0; i < n; i++) {
    sum += 1 / Math.pow(i + 1, s)
    cdf[i] = sum
  }
  for (let i = 0; i < n; i++) cdf[i] /= sum
  return function sample(u) {
    let lo = 0
    let hi = n - 1
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (cdf[mid] < u) lo = mid + 1
      else hi = mid
    }
    return lo
  }
}

// ---------------------------------------------------------------- CPU clocks

const CLK_TCK = 100

function readStatTicksNs(file) {
  // utime and stime are fields 14 and 15; the comm field (2) may hold spaces, so split after ')'.
  const s = fs.readFileSync(file, 'utf8')
  const rest = s.slice(s.lastIndexOf(')') + 2).split(' ')
  return ((Number(rest[11]) + Number(rest[12])) * 1e9) / CLK_TCK
}

/** On-CPU nanoseconds of the JS (main) thread: schedstat when available, else stat ticks. */
const mainThreadCpuNs = (() => {
  const sched = `/proc/self/task/${process.pid}/schedstat`
  try {
    const v = Number(fs.readFileSync(sched, 'utf8').split(' ')[0])
    if (Number.isFinite(v) && v > 0) return () => Number(fs.readFileSync(sched, 'utf8').split(' ')[0])
  } catch {
    // no schedstat: fall back to /proc/<pid>/task/<tid>/stat
  }
  const stat = `/proc/self/task/${process.pid}/stat`
  try {
    readStatTicksNs(stat)
    return () => readStatTicksNs(stat)
  } catch {
    return () => NaN
  }
})()

/** CPU nanoseconds (all threads) of another process, e.g. redis-server. */
function processCpuNs(pid) {
  if (!pid) return NaN
  try {
    return readStatTicksNs(`/proc/${pid}/stat`)
  } catch {
    return NaN
  }
}

/** A snapshot of every clock a measurement window needs. */
function snapshot(redisPid) {
  return {
    t: hr(),
    cpu: process.cpuUsage(),
    main: mainThreadCpuNs(),
    redis: processCpuNs(redisPid),
    elu: performance.eventLoopUtilization(),
  }
}

/** Differences between two snapshots, per op where it makes sense. */
function window(a, b, ops) {
  const wallNs = Number(b.t - a.t)
  const cpuUs = b.cpu.user - a.cpu.user + (b.cpu.system - a.cpu.system)
  return {
    wallNs,
    opsPerSec: ops / (wallNs / 1e9),
    cpuUsPerOp: cpuUs / ops,
    mainCpuUsPerOp: (b.main - a.main) / 1e3 / ops,
    redisCpuUsPerOp: (b.redis - a.redis) / 1e3 / ops,
    elu: performance.eventLoopUtilization(b.elu, a.elu).utilization,
  }
}

// ---------------------------------------------------------------- latency

/** Per-op latencies in ns, in one preallocated array. */
class Latencies {
  constructor(capacity) {
    this.buf = new Float64Array(capacity)
    this.n = 0
  }
  reset() {
    this.n = 0
  }
  get full() {
    return this.n >= this.buf.length
  }
  /** p in [0,100] -> µs. Sorts the recorded prefix in place (call after the run). */
  percentiles(ps) {
    const a = this.buf.subarray(0, this.n).sort()
    return ps.map((p) => (a.length === 0 ? NaN : a[Math.min(a.length - 1, Math.floor((p / 100) * a.length))] / 1e3))
  }
}

// ---------------------------------------------------------------- correctness

class CheckError extends Error {}

/**
 * Tracks, per key, the versions written, so every read can be checked: a read
 * must return the key it asked for, with a version at least the one last
 * acknowledged before the read started and at most the newest one issued before
 * it finished — or a miss. Writes to one key are never concurrent (a worker that
 * draws a key with a write in flight draws again), so "last written" is exact.
 */
class Versions {
  constructor(n) {
    this.issued = new Uint32Array(n)
    this.acked = new Uint32Array(n)
    this.busy = new Uint8Array(n)
    this.misses = 0
    this.unexpectedMisses = 0 // a miss after an acknowledged write (TTLs are far away)
    this.hits = 0
  }
  beginWrite(k) {
    this.busy[k] = 1
    return ++this.issued[k]
  }
  endWrite(k, v) {
    this.acked[k] = v
    this.busy[k] = 0
  }
  check(label, k, expectId, lo, value) {
    if (value === null || value === undefined) {
      this.misses++
      if (lo > 0) this.unexpectedMisses++
      return
    }
    this.hits++
    const hi = this.issued[k]
    if (value === null || typeof value !== 'object' || value.id !== expectId || !(value.ver >= lo && value.ver <= hi)) {
      const got = value && typeof value === 'object' ? `id=${value.id} ver=${value.ver}` : JSON.stringify(value)
      throw new CheckError(
        `${label}: read of ${expectId} returned ${got}; expected id=${expectId} and ver in [${lo}, ${hi}]`,
      )
    }
  }
}

// ---------------------------------------------------------------- load runner

/**
 * Closed loop: `concurrency` async workers each run `step(worker, rng)` back to
 * back until `durationMs` has passed (checked after every op with hrtime, so a
 * loop of already-resolved promises cannot starve the deadline) or the latency
 * buffer is full. `step` returns a function to time (the op) so that drawing
 * the key and building the value are not counted; the op's result is passed to
 * `step`'s `after` callback, outside the timed region.
 */
async function runLoad({ concurrency, durationMs, prepare, lat, seed = 1 }) {
  const deadline = hr() + BigInt(Math.round(durationMs * 1e6))
  let ops = 0
  let failed = null // the first error (a failed check, a failed call): every worker stops after its current op
  async function worker(w) {
    const rng = prng(seed * 7919 + w)
    const buf = lat ? lat.buf : null
    const cap = buf ? buf.length : Infinity
    try {
      while (!failed) {
        const job = prepare(rng, w)
        const t0 = hr()
        const result = await job.run()
        const t1 = hr()
        if (job.after) job.after(result)
        ops++
        if (buf && lat.n < cap) buf[lat.n++] = Number(t1 - t0)
        if (t1 >= deadline || (buf && lat.n >= cap)) return
      }
    } catch (err) {
      failed ??= err
    }
  }
  const workers = []
  for (let w = 0; w < concurrency; w++) workers.push(worker(w))
  await Promise.all(workers)
  if (failed) throw failed
  return ops
}

/**
 * Runs `items` through `fn` with at most `concurrency` in flight. On the first error no new
 * item starts; it is thrown once the ones in flight have finished (so none outlives the call).
 */
async function pool(items, concurrency, fn) {
  let i = 0
  let failed = null
  async function w() {
    try {
      while (i < items && !failed) await fn(i++)
    } catch (err) {
      failed ??= err
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, items) }, w))
  if (failed) throw failed
}

/** The middle value (the mean of the two middle ones for an even count). */
function median(values) {
  const v = [...values].sort((a, b) => a - b)
  const mid = v.length >> 1
  return v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2
}

module.exports = { prng, zipf, snapshot, window, Latencies, Versions, CheckError, runLoad, pool, hr, median }
