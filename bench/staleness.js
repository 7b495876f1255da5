#!/usr/bin/env node
// The near cache's two promises, measured on one private redis-server (free port, stopped by pid):
//
// 1. Staleness. A ferrocache reader (one manager, this thread) calls `getSession` on one key in a
//    tight loop while a plain ioredis client writes a new version of that key's JSON every ~20 ms.
//    The writer runs in a worker thread: the reader's loop of near-cache hits never yields to the
//    event loop, so a writer on this thread would not see its replies. For each write: the time from
//    the moment its `set` promise resolved (writer's clock) to the end of the reader's first read
//    returning that version or a newer one (0 when the reader saw it first), and every read that
//    started after a set had resolved yet returned an older version (a stale read). Both threads
//    read the same monotonic clock (process.hrtime.bigint) and meet in a SharedArrayBuffer.
// 2. What it saves Redis. A W1-like load (50 % getSession / 50 % setSession of ~1 KB values over
//    10,000 keys, 64 concurrent callers) by ferrocache with `nearCache: { enabled: false }` and
//    with the near cache on (the default): redis-server CPU per op from INFO cpu
//    (used_cpu_sys + used_cpu_user, delta over the window / ops). Runs in the order off, on, on, off
//    (STALENESS_ROUNDS pairs); every read is checked as in bench/index.js.
//
// Run: node bench/staleness.js
// Env: STALENESS_WRITES=200 STALENESS_INTERVAL_MS=20 STALENESS_LOAD_MS=3000 STALENESS_ROUNDS=1
// As a module: `measureNearCache({ url, port })` runs both against a running redis-server and returns the
// numbers (bench/index.js, section NC). Requiring this file starts nothing.
'use strict'

const { Worker, isMainThread, workerData } = require('node:worker_threads')

const { SESSION_BASE } = require('./workloads')

const num = (name, def) => Number(process.env[name] ?? def)
const WRITES = num('STALENESS_WRITES', 200)
const INTERVAL_MS = num('STALENESS_INTERVAL_MS', 20)
const LOAD_MS = num('STALENESS_LOAD_MS', 3000)
const ROUNDS = Math.max(1, num('STALENESS_ROUNDS', 1))
const LOAD = { keys: 10_000, concurrency: 64, writeRatio: 0.5, ttl: 3600, warmupMs: 500 }

// Shared between the reader and the writer: [ACKED] = the last version whose set has resolved,
// [DONE] = 1 once the writer has written every version; ackedAt[v] = when set(v) resolved.
const ACKED = 0
const DONE = 1

const sessionValue = (id, ver) => ({ id, ver, ...SESSION_BASE })

// Marks the worker this file starts on itself, so that no other worker that requires it runs the writer.
const WRITER_ROLE = 'ferrocache-staleness-writer'

// ---------------------------------------------------------------- the writer (worker thread)

async function writer({ port, redisKey, id, writes, intervalMs, ctlBuf, ackedAtBuf }) {
  const Redis = require('ioredis')
  const ctl = new Int32Array(ctlBuf)
  const ackedAt = new BigInt64Array(ackedAtBuf)
  const io = new Redis({ host: '127.0.0.1', port, lazyConnect: true })
  await io.connect()
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
  try {
    await sleep(intervalMs)
    for (let v = 1; v <= writes; v++) {
      const json = JSON.stringify(sessionValue(id, v))
      await io.set(redisKey, json, 'EX', 3600)
      ackedAt[v] = process.hrtime.bigint()
      Atomics.store(ctl, ACKED, v)
      await sleep(intervalMs)
    }
  } finally {
    Atomics.store(ctl, DONE, 1)
    await io.quit()
  }
}

// ---------------------------------------------------------------- measuring (main thread)

const hr = process.hrtime.bigint
const fInt = (x) => Math.round(x).toLocaleString('en-US')
const f1 = (x) => (Number.isFinite(x) ? x.toFixed(1) : '–')
const f2 = (x) => (Number.isFinite(x) ? x.toFixed(2) : '–')
const f3 = (x) => (Number.isFinite(x) ? x.toFixed(3) : '–')

/** Nearest-rank percentile of an ascending array. */
const pct = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]

function createFerrocache(url, options) {
  const { createCacheManager } = require('./contenders').loadFerrocache()
  return createCacheManager({ url, ...options })
}

/**
 * Both measurements against a running redis-server (they FLUSHALL it). `log` receives the lines that
 * `node bench/staleness.js` prints. Returns
 * `{ staleness: { writes, intervalMs, reads, elapsedS, hits, nearMisses, invalidations, emptyReads, p50Us, p99Us,
 *    maxUs, seenBeforeAck, staleReads, staleBehindWrites },
 *    redisCpu: { keys, concurrency, writeRatio, loadMs, warmupMs, order,
 *    off: { usPerOp, runs, opsPerSec, nearHitRate }, on: { ... }, onOverOff } }`.
 */
async function measureNearCache({
  url,
  port,
  writes = WRITES,
  intervalMs = INTERVAL_MS,
  loadMs = LOAD_MS,
  rounds = ROUNDS,
  log = () => {},
}) {
  const Redis = require('ioredis')
  const admin = new Redis({ host: '127.0.0.1', port, lazyConnect: true })
  await admin.connect()
  try {
    const st = await staleness({ admin, url, port, writes, intervalMs, log })
    const cpu = await redisCpu({ admin, url, loadMs, rounds, log })
    return { staleness: st, redisCpu: cpu }
  } finally {
    await admin.quit()
  }
}

// ---------------------------------------------------------------- 1. staleness

async function staleness({ admin, url, port, writes, intervalMs, log }) {
  const keyPrefix = 'stale:'
  const id = 'staleness-probe-session'
  await admin.flushall()
  const cache = createFerrocache(url, { keyPrefix })
  try {
    // Version 0 through ferrocache, then find the Redis key it used (the one key under the prefix).
    await cache.setSession(id, sessionValue(id, 0), 3600)
    const [, found] = await admin.scan('0', 'MATCH', `${keyPrefix}*`, 'COUNT', 1000)
    if (found.length !== 1) throw new Error(`expected one key under ${keyPrefix}, found ${found.join(', ')}`)
    const redisKey = found[0]
    const first = await cache.getSession(id)
    if (!first || first.ver !== 0) throw new Error(`first read returned ${JSON.stringify(first)}`)

    const ctlBuf = new SharedArrayBuffer(8)
    const ackedAtBuf = new SharedArrayBuffer(8 * (writes + 1))
    const ctl = new Int32Array(ctlBuf)
    const ackedAt = new BigInt64Array(ackedAtBuf)
    const firstSeen = new BigInt64Array(writes + 1) // end of the first read returning >= v
    let seenUpTo = 0
    let reads = 0
    let misses = 0
    let stale = 0
    const staleWrites = new Set() // versions that some stale read was behind
    const m0 = cache.metrics().nearCache

    // The writer is this file run again in a worker (see the end of the file), also when it was required.
    const worker = new Worker(__filename, {
      workerData: { role: WRITER_ROLE, port, redisKey, id, writes, intervalMs, ctlBuf, ackedAtBuf },
    })
    let workerError = null
    const workerExit = new Promise((resolve) => {
      worker.once('error', (err) => (workerError = err))
      worker.once('exit', resolve)
    })

    const t0 = hr()
    const deadline = t0 + BigInt(Math.round((writes * intervalMs + 10_000) * 1e6))
    // The tight loop: until the writer is done and the last version has been read.
    while (seenUpTo < writes) {
      const lo = Atomics.load(ctl, ACKED) // acknowledged before this read started
      const value = await cache.getSession(id)
      const t = hr()
      reads++
      if (value === null || value === undefined) {
        misses++
      } else {
        if (value.id !== id || !(value.ver >= 0 && value.ver <= writes))
          throw new Error(`read returned id=${value.id} ver=${value.ver}`)
        if (value.ver < lo) {
          stale++
          staleWrites.add(lo)
        }
        while (seenUpTo < value.ver) firstSeen[++seenUpTo] = t
      }
      // past the deadline, or the writer stopped early (its error is thrown below)
      if (t > deadline || (Atomics.load(ctl, DONE) === 1 && Atomics.load(ctl, ACKED) < writes)) break
    }
    const elapsedS = Number(hr() - t0) / 1e9
    await workerExit
    if (workerError) throw workerError
    if (seenUpTo < writes) throw new Error(`the reader saw version ${seenUpTo} of ${writes} before the deadline`)
    const m1 = cache.metrics().nearCache

    const delaysUs = []
    let seenBeforeAck = 0
    for (let v = 1; v <= writes; v++) {
      const d = Number(firstSeen[v] - ackedAt[v]) / 1e3
      if (d < 0) seenBeforeAck++
      delaysUs.push(Math.max(0, d))
    }
    delaysUs.sort((a, b) => a - b)
    const r = {
      writes,
      intervalMs,
      reads,
      elapsedS,
      hits: m1.hits - m0.hits,
      nearMisses: m1.misses - m0.misses,
      invalidations: m1.invalidations - m0.invalidations,
      emptyReads: misses,
      p50Us: pct(delaysUs, 50),
      p99Us: pct(delaysUs, 99),
      maxUs: delaysUs.at(-1),
      seenBeforeAck,
      staleReads: stale,
      staleBehindWrites: staleWrites.size,
    }

    log('')
    log(
      `Staleness: ${writes} writes by a plain ioredis client (worker thread), one every ~${intervalMs} ms, of a ~1 KB session;`,
    )
    log(`one ferrocache reader (near cache on, defaults) calling getSession in a tight loop on this thread.`)
    log(
      `  reads: ${fInt(reads)} in ${elapsedS.toFixed(2)} s (${fInt(reads / elapsedS)}/s); near cache ${fInt(r.hits)} hits, ` +
        `${fInt(r.nearMisses)} misses (hit rate ${f3(r.hits / (r.hits + r.nearMisses))}), ${fInt(r.invalidations)} invalidations; ` +
        `reads that found nothing: ${misses}`,
    )
    log(
      `  set resolved -> first read of the new version, µs: p50 ${f1(r.p50Us)}, p99 ${f1(r.p99Us)}, ` +
        `max ${f1(r.maxUs)} (${seenBeforeAck} of ${writes} versions were read before their set resolved: counted as 0)`,
    )
    log(
      `  stale reads (started after a set had resolved, returned an older version): ${stale}` +
        (stale ? `, behind ${staleWrites.size} of the ${writes} writes` : ''),
    )
    return r
  } finally {
    await cache.close()
  }
}

// ---------------------------------------------------------------- 2. Redis CPU per op

/** Seconds of CPU redis-server has used (INFO cpu: used_cpu_sys + used_cpu_user). */
async function redisCpuS(admin) {
  const info = await admin.info('cpu')
  const field = (name) => {
    const m = new RegExp(`^${name}:([0-9.]+)`, 'm').exec(info)
    if (!m) throw new Error(`INFO cpu has no ${name}`)
    return Number(m[1])
  }
  return field('used_cpu_sys') + field('used_cpu_user')
}

async function redisCpu({ admin, url, loadMs, rounds, log }) {
  const { Versions, runLoad, pool, sessionIds, median } = {
    ...require('./lib'),
    ...require('./workloads'),
  }
  const ids = sessionIds(LOAD.keys)
  const modes = {
    'nearCache off': { nearCache: { enabled: false } },
    'nearCache on (default)': {},
  }
  const names = Object.keys(modes)
  const order = []
  for (let r = 0; r < rounds; r++) order.push(...names, ...[...names].reverse())
  const results = new Map(names.map((n) => [n, []]))

  for (const name of order) {
    await admin.flushall()
    const cache = createFerrocache(url, { keyPrefix: 'w1:', ...modes[name] })
    try {
      const versions = new Versions(LOAD.keys)
      await pool(LOAD.keys, LOAD.concurrency, async (i) => {
        const v = versions.beginWrite(i)
        await cache.setSession(ids[i], sessionValue(ids[i], v), LOAD.ttl)
        versions.endWrite(i, v)
      })
      const prepare = (rng) => {
        let k = Math.floor(rng() * LOAD.keys)
        if (rng() < LOAD.writeRatio) {
          for (let tries = 0; versions.busy[k] && tries < 8; tries++) k = Math.floor(rng() * LOAD.keys)
          if (!versions.busy[k]) {
            const v = versions.beginWrite(k)
            const value = sessionValue(ids[k], v)
            return {
              run: () => cache.setSession(ids[k], value, LOAD.ttl),
              after: () => versions.endWrite(k, v),
            }
          }
        }
        const lo = versions.acked[k]
        return {
          run: () => cache.getSession(ids[k]),
          after: (value) => versions.check(`staleness.js ${name}`, k, ids[k], lo, value),
        }
      }
      await runLoad({ concurrency: LOAD.concurrency, durationMs: LOAD.warmupMs, prepare, lat: null, seed: 21 })
      const n0 = cache.metrics().nearCache
      const cpu0 = await redisCpuS(admin)
      const t0 = hr()
      const ops = await runLoad({ concurrency: LOAD.concurrency, durationMs: loadMs, prepare, lat: null, seed: 22 })
      const wallS = Number(hr() - t0) / 1e9
      const cpu1 = await redisCpuS(admin)
      const n1 = cache.metrics().nearCache
      const hits = n1.hits - n0.hits
      const misses = n1.misses - n0.misses
      results.get(name).push({
        ops,
        opsPerSec: ops / wallS,
        redisUsPerOp: ((cpu1 - cpu0) * 1e6) / ops,
        nearHitRate: hits + misses > 0 ? hits / (hits + misses) : NaN,
      })
    } finally {
      await cache.close()
    }
  }

  log('')
  log(
    `Redis CPU per op, W1-like load: 50% getSession / 50% setSession, ~1 KB, ${fInt(LOAD.keys)} keys uniform, ` +
      `${LOAD.concurrency} concurrent callers, ${fInt(loadMs)} ms per run after ${fInt(LOAD.warmupMs)} ms of warm-up, runs in the order ${order.join(', ')}`,
  )
  const summary = names.map((name) => {
    const rs = results.get(name)
    const s = {
      usPerOp: median(rs.map((r) => r.redisUsPerOp)),
      runs: rs.map((r) => r.redisUsPerOp),
      opsPerSec: median(rs.map((r) => r.opsPerSec)),
      nearHitRate: median(rs.map((r) => r.nearHitRate)),
    }
    log(
      `  ${name.padEnd(24)} redis-server CPU ${f2(s.usPerOp)} µs/op (runs: ${s.runs.map(f2).join(', ')}); ` +
        `${fInt(s.opsPerSec)} ops/s; near-cache hit rate of the reads ${f3(s.nearHitRate)}`,
    )
    return s
  })
  const [off, on] = summary
  const onOverOff = on.usPerOp / off.usPerOp
  log(`  on / off: ${f2(onOverOff)}× the Redis CPU per op`)
  return {
    keys: LOAD.keys,
    concurrency: LOAD.concurrency,
    writeRatio: LOAD.writeRatio,
    loadMs,
    warmupMs: LOAD.warmupMs,
    order,
    off,
    on,
    onOverOff,
  }
}

// ---------------------------------------------------------------- standalone: own redis-server

function main() {
  const { runWithRedis } = require('./redis-server')
  return runWithRedis((redis) => measureNearCache({ url: redis.url, port: redis.port, log: (s) => console.log(s) }))
}

module.exports = { measureNearCache, WRITES, INTERVAL_MS, LOAD_MS, ROUNDS, LOAD }

if (!isMainThread && workerData?.role === WRITER_ROLE) {
  writer(workerData).catch((err) => {
    console.error(err)
    process.exit(1)
  })
} else if (require.main === module) {
  main()
}
