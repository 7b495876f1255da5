#!/usr/bin/env node
// Rate limiting over one private redis-server (free port, stopped by pid), three limiters that each make one
// atomic Redis script call per check:
//   ferrocache              `manager.rateLimit(key, { limit, windowMs })` (GCRA; a key known to be over its
//                           limit is refused in-process)
//   rate-limiter-flexible   `RateLimiterRedis` over ioredis, `consume(key)` (it rejects when limited), with the
//                           in-memory block on (`inMemoryBlockOnConsumed: limit`: a key over its limit is refused
//                           in-process until its window ends)
//   express-rate-limit      the Redis store of rate-limit-redis over ioredis (`sendCommand` -> `client.call`),
//                           `store.init({ windowMs })` first as the middleware does, then `store.increment(key)`
//                           per check, called directly (no Express); `totalHits > limit` is a refusal
// First, correctness: for each limiter, 15 checks of a fresh key with limit 10 per 60 s, one after the other and
// 15 at once, must allow exactly 10 (the run stops otherwise). Then, in one run, rounds in which the limiters
// take turns (the order rotates by one each round), closed loops of async callers after a short warm-up:
//   A. 10,000 keys drawn uniformly, limit 1,000,000 per 60 s (every check allowed), 1, 64 and 256 callers:
//      checks/s, p50/p99 latency, process CPU per check (process.cpuUsage: every thread), JS-thread CPU per
//      check (process.threadCpuUsage() where Node has it, else the main thread's /proc schedstat; the
//      event-loop utilization × wall time is shown beside it), redis-server CPU per check (INFO cpu:
//      used_cpu_sys + used_cpu_user) and Redis commands per check (INFO stats: total_commands_processed, the
//      commands scripts run included).
//   B. a flooding key: one key with limit 10 per 60 s, consumed 20 times before each run (a fresh key per
//      round), 64 callers: refusals/s, CPU per check, and the commands Redis processed during the run.
// Reported: medians over the rounds, ratios ferrocache / each peer, and a verdict per target; for B also the
// harness alone (an already-resolved promise per check), the most checks/s any limiter could reach here.
// Run: node bench/ratelimit.js
// Env: RL_ROUNDS=3 RL_MEASURE_MS=2000 RL_WARMUP_MS=500 RL_KEYS=10000
//      RL_AUTOPIPELINING=1 turns on ioredis's enableAutoPipelining for the two peers (default off, as they ship)
'use strict'

const fs = require('node:fs')
const path = require('node:path')

const { runWithRedis } = require('./redis-server')
const { loadFerrocache } = require('./contenders')
const { Latencies, snapshot, window, runLoad, pool, median } = require('./lib')

const num = (name, def) => Number(process.env[name] ?? def)
const ROUNDS = Math.max(1, num('RL_ROUNDS', 3))
const MEASURE_MS = num('RL_MEASURE_MS', 2000)
const WARMUP_MS = num('RL_WARMUP_MS', 500)
const KEYS = num('RL_KEYS', 10_000)
const AUTOPIPELINING = process.env.RL_AUTOPIPELINING === '1'
const CONCURRENCIES = [1, 64, 256]
const FLOOD_CONCURRENCY = 64
const OPEN = { limit: 1_000_000, windowMs: 60_000 } // workload A: never reached
const TIGHT = { limit: 10, windowMs: 60_000 } // the correctness check and workload B
const FLOOD_PRECONSUME = 20

const ROOT = path.join(__dirname, '..')
const fInt = (x) => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : '–')
const f1 = (x) => (Number.isFinite(x) ? x.toFixed(1) : '–')
const f2 = (x) => (Number.isFinite(x) ? x.toFixed(2) : '–')
const fx = (x) => (Number.isFinite(x) ? `${x.toFixed(2)}×` : '–')
const fk = (x) => (Number.isFinite(x) ? `${(x / 1000).toFixed(x >= 1e6 ? 0 : 1)}k` : '–')

/** The installed version of a package (or of ferrocache itself for null). */
function version(pkg) {
  const dir = pkg === null ? ROOT : path.join(ROOT, 'node_modules', pkg)
  try {
    return JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')).version
  } catch {
    return '?'
  }
}

// ---------------------------------------------------------------- the JS thread's CPU clock

// process.threadCpuUsage() (Node >= 23.9) when there is one; else the main thread's on-CPU time from
// /proc (schedstat), which bench/lib.js's snapshot reads; else the event-loop utilization × wall time.
const SCHEDSTAT = fs.existsSync(`/proc/self/task/${process.pid}/schedstat`)
const JS_CPU_SOURCE =
  typeof process.threadCpuUsage === 'function'
    ? 'process.threadCpuUsage()'
    : SCHEDSTAT
      ? `the main thread's /proc schedstat (process.threadCpuUsage() is not in Node ${process.version})`
      : 'event-loop utilization × wall time (an approximation: no per-thread CPU clock here)'

function jsCpuNs() {
  if (typeof process.threadCpuUsage !== 'function') return NaN
  const u = process.threadCpuUsage()
  return (u.user + u.system) * 1e3
}

// ---------------------------------------------------------------- redis-server counters

/** INFO cpu + stats: CPU seconds (sys + user) and commands processed so far. */
async function redisCounters(admin) {
  const info = await admin.info()
  const field = (name) => {
    const m = new RegExp(`^${name}:([0-9.]+)`, 'm').exec(info)
    if (!m) throw new Error(`INFO has no ${name}`)
    return Number(m[1])
  }
  return { cpuS: field('used_cpu_sys') + field('used_cpu_user'), commands: field('total_commands_processed') }
}

// ---------------------------------------------------------------- the limiters

/**
 * Each limiter: `make(policy)` -> `{ check(key) -> Promise<result>, allowed(result) -> boolean }`,
 * built the way its users build one for a policy, and `close()`.
 */
async function limiters(redis) {
  const Redis = require('ioredis')
  const ioredis = async () => {
    const client = new Redis({
      host: '127.0.0.1',
      port: redis.port,
      lazyConnect: true,
      enableAutoPipelining: AUTOPIPELINING,
    })
    await client.connect()
    return client
  }

  const { createCacheManager } = loadFerrocache()
  const manager = createCacheManager({ url: redis.url, keyPrefix: 'fc:' })
  const ferrocache = {
    name: 'ferrocache',
    make: async ({ limit, windowMs }) => {
      const options = { limit, windowMs }
      return { check: (key) => manager.rateLimit(key, options), allowed: (r) => r.allowed }
    },
    close: () => manager.close(),
  }

  const { RateLimiterRedis } = require('rate-limiter-flexible')
  const rlfClient = await ioredis()
  let rlfLimiters = 0
  const refused = (res) => {
    if (res instanceof Error) throw res // a failed call, not a refusal
    return false
  }
  const flexible = {
    name: 'rate-limiter-flexible',
    make: async ({ limit, windowMs }) => {
      const rl = new RateLimiterRedis({
        storeClient: rlfClient,
        keyPrefix: `rlf${rlfLimiters++}`,
        points: limit,
        duration: windowMs / 1000,
        inMemoryBlockOnConsumed: limit,
      })
      return { check: (key) => rl.consume(key).then(() => true, refused), allowed: (r) => r }
    },
    close: () => rlfClient.quit(),
  }

  const { RedisStore } = require('rate-limit-redis')
  const erlClient = await ioredis()
  let erlStores = 0
  const express = {
    name: 'express-rate-limit',
    make: async ({ limit, windowMs }) => {
      const store = new RedisStore({ sendCommand: (...args) => erlClient.call(...args), prefix: `erl${erlStores++}:` })
      await store.init({ windowMs })
      return { check: (key) => store.increment(key), allowed: (r) => r.totalHits <= limit }
    },
    close: () => erlClient.quit(),
  }

  return [ferrocache, flexible, express]
}

// ---------------------------------------------------------------- correctness

async function verify(all) {
  for (const l of all) {
    const { check, allowed } = await l.make(TIGHT)
    let oneByOne = 0
    for (let i = 0; i < 15; i++) if (allowed(await check('verify-sequential'))) oneByOne++
    const atOnce = (await Promise.all(Array.from({ length: 15 }, () => check('verify-concurrent')))).filter(allowed)
    if (oneByOne !== TIGHT.limit || atOnce.length !== TIGHT.limit)
      throw new Error(
        `${l.name}: of 15 checks of a fresh key with limit ${TIGHT.limit} per ${TIGHT.windowMs} ms, ` +
          `${oneByOne} (one after the other) and ${atOnce.length} (15 at once) were allowed; expected ${TIGHT.limit}`,
      )
  }
}

// ---------------------------------------------------------------- one measured run

/**
 * Warm-up, then `MEASURE_MS` of `concurrency` callers checking `keyOf(rng)` in a closed loop.
 * Returns the run's numbers per check.
 */
async function measure({ admin, limiter, concurrency, keyOf, lat }) {
  const { check, allowed } = limiter
  let allowedN = 0
  let refusedN = 0
  const after = (r) => {
    if (allowed(r)) allowedN++
    else refusedN++
  }
  const prepare = (rng) => {
    const key = keyOf(rng)
    return { run: () => check(key), after }
  }
  await runLoad({ concurrency, durationMs: WARMUP_MS, prepare, lat: null, seed: 3 })
  allowedN = 0
  refusedN = 0
  if (lat) lat.reset()
  const r0 = await redisCounters(admin)
  const s0 = { ...snapshot(0), js: jsCpuNs() }
  const checks = await runLoad({ concurrency, durationMs: MEASURE_MS, prepare, lat, seed: 4 })
  const s1 = { ...snapshot(0), js: jsCpuNs() }
  const r1 = await redisCounters(admin)
  const w = window(s0, s1, checks)
  const eluUs = (w.elu * w.wallNs) / 1e3 / checks
  const jsUs = Number.isFinite(s0.js) ? (s1.js - s0.js) / 1e3 / checks : SCHEDSTAT ? w.mainCpuUsPerOp : eluUs
  const commands = r1.commands - r0.commands - 1 // the first INFO is counted in the difference
  const [p50, p99] = lat ? lat.percentiles([50, 99]) : [NaN, NaN]
  return {
    checks,
    perSec: w.opsPerSec,
    p50,
    p99,
    cpuUs: w.cpuUsPerOp,
    jsUs,
    eluUs,
    redisUs: ((r1.cpuS - r0.cpuS) * 1e6) / checks,
    commands,
    commandsPerCheck: commands / checks,
    allowed: allowedN,
    refused: refusedN,
    latencyFull: lat ? lat.full : false,
  }
}

/** The medians of each number over the rounds' runs (and the runs' checks/s). */
function summarize(runs) {
  const s = { runs: runs.map((r) => r.perSec) }
  for (const k of Object.keys(runs[0])) if (typeof runs[0][k] === 'number') s[k] = median(runs.map((r) => r[k]))
  return s
}

// ---------------------------------------------------------------- the bench

/**
 * Runs every measurement against `redis` ({ port }): progress goes to `progress`, the report (markdown,
 * `###` headings) to `out`, one line per call.
 */
async function run(redis, { out = (s) => console.log(s), progress = (s) => console.log(s) } = {}) {
  const Redis = require('ioredis')
  const admin = new Redis({ host: '127.0.0.1', port: redis.port, lazyConnect: true })
  await admin.connect()
  await admin.flushall()
  const all = await limiters(redis)
  try {
    out(
      `ferrocache ${version(null)}, rate-limiter-flexible ${version('rate-limiter-flexible')}, ` +
        `express-rate-limit ${version('express-rate-limit')} + rate-limit-redis ${version('rate-limit-redis')}, ` +
        `ioredis ${version('ioredis')} (enableAutoPipelining ${AUTOPIPELINING ? 'on' : 'off'} for the peers)`,
    )
    await verify(all)
    out(
      `Correctness: each limiter allowed exactly ${TIGHT.limit} of 15 checks of a fresh key ` +
        `(limit ${TIGHT.limit} per ${TIGHT.windowMs / 1000} s), one after the other and 15 at once.`,
    )

    const open = await Promise.all(all.map((l) => l.make(OPEN)))
    const tight = await Promise.all(all.map((l) => l.make(TIGHT)))
    const keys = Array.from({ length: KEYS }, (_, i) => `user-${i}`)
    for (const lim of open) await pool(KEYS, 64, (i) => lim.check(keys[i])) // every key exists before the runs
    const uniform = (rng) => keys[Math.floor(rng() * KEYS)]
    const lat = new Latencies(Math.ceil(MEASURE_MS * 3000)) // room for 3M checks/s

    const a = new Map(CONCURRENCIES.map((c) => [c, all.map(() => [])]))
    const b = all.map(() => [])
    const floor = [] // the harness alone: an already-resolved promise per check, no limiter
    const none = { check: () => Promise.resolve(false), allowed: (r) => r }
    const t0 = Date.now()
    for (let round = 0; round < ROUNDS; round++) {
      const order = all.map((_, i) => (i + round) % all.length)
      for (const c of CONCURRENCIES) {
        for (const i of order) {
          const r = await measure({ admin, limiter: open[i], concurrency: c, keyOf: uniform, lat })
          if (r.refused > 0) throw new Error(`${all[i].name}: ${r.refused} checks refused under a limit never reached`)
          if (r.latencyFull) progress(`note: ${all[i].name} at ${c} callers filled the latency buffer early`)
          a.get(c)[i].push(r)
        }
      }
      for (const i of order) {
        const key = `flood-${round}`
        for (let n = 0; n < FLOOD_PRECONSUME; n++) await tight[i].check(key)
        b[i].push(await measure({ admin, limiter: tight[i], concurrency: FLOOD_CONCURRENCY, keyOf: () => key }))
      }
      floor.push(await measure({ admin, limiter: none, concurrency: FLOOD_CONCURRENCY, keyOf: () => 'none' }))
      progress(
        `round ${round + 1}/${ROUNDS} done (order ${order.map((i) => all[i].name).join(', ')}), ${fInt((Date.now() - t0) / 1000)} s`,
      )
    }
    report(
      all.map((l) => l.name),
      new Map([...a].map(([c, per]) => [c, per.map(summarize)])),
      b.map(summarize),
      summarize(floor),
      out,
    )
  } finally {
    for (const l of all) await l.close()
    await admin.quit()
  }
}

// ---------------------------------------------------------------- the report

function table(header, rows) {
  const lines = [`| ${header.join(' | ')} |`, `|${header.map((h, i) => (i < 2 ? ' --- ' : ' ---: ')).join('|')}|`]
  for (const r of rows) lines.push(`| ${r.join(' | ')} |`)
  return lines.join('\n')
}

function report(names, a, b, floor, out) {
  const FC = 0
  const peers = names.map((_, i) => i).filter((i) => i !== FC)
  const log = (s = '') => out(s)

  log()
  log(
    `### A. ${fInt(KEYS)} keys drawn uniformly, limit ${fInt(OPEN.limit)} per ${OPEN.windowMs / 1000} s (all allowed)`,
  )
  log()
  log(`Medians of ${ROUNDS} rounds, ${fInt(MEASURE_MS)} ms each after ${fInt(WARMUP_MS)} ms of warm-up.`)
  log(`JS thread CPU: ${JS_CPU_SOURCE}; "ELU × wall" is the event-loop utilization × wall time, for comparison.`)
  log()
  const rowsA = []
  for (const [c, per] of a) {
    for (const i of names.keys()) {
      const s = per[i]
      rowsA.push([
        String(c),
        names[i],
        fInt(s.perSec),
        s.runs.map(fk).join(', '),
        f1(s.p50),
        f1(s.p99),
        f2(s.cpuUs),
        f2(s.jsUs),
        f2(s.eluUs),
        f2(s.redisUs),
        f2(s.commandsPerCheck),
      ])
    }
  }
  log(
    table(
      [
        'callers',
        'limiter',
        'checks/s',
        'runs',
        'p50 µs',
        'p99 µs',
        'process CPU µs/check',
        'JS thread CPU µs/check',
        'ELU × wall µs/check',
        'redis-server CPU µs/check',
        'Redis commands/check',
      ],
      rowsA,
    ),
  )
  log()
  log('Ratios ferrocache / peer (checks/s: higher is better; latency and CPU: lower is better):')
  log()
  const ratioRows = []
  for (const [c, per] of a) {
    for (const p of peers) {
      const q = (k) => fx(per[FC][k] / per[p][k])
      ratioRows.push([String(c), names[p], q('perSec'), q('p50'), q('p99'), q('cpuUs'), q('jsUs'), q('redisUs')])
    }
  }
  log(
    table(['callers', 'peer', 'checks/s', 'p50', 'p99', 'process CPU', 'JS thread CPU', 'redis-server CPU'], ratioRows),
  )

  log()
  log(
    `### B. A flooding key: limit ${TIGHT.limit} per ${TIGHT.windowMs / 1000} s, consumed ${FLOOD_PRECONSUME} times ` +
      `first, ${FLOOD_CONCURRENCY} callers`,
  )
  log()
  const rowsB = names.map((n, i) => {
    const s = b[i]
    return [
      n,
      String(FLOOD_CONCURRENCY),
      fInt(s.perSec),
      s.runs.map(fk).join(', '),
      fInt(s.allowed),
      f2(s.cpuUs),
      f2(s.jsUs),
      f2(s.eluUs),
      f2(s.redisUs),
      fInt(s.commands),
      f2(s.commandsPerCheck),
    ]
  })
  log(
    table(
      [
        'limiter',
        'callers',
        'refusals/s',
        'runs',
        'allowed',
        'process CPU µs/check',
        'JS thread CPU µs/check',
        'ELU × wall µs/check',
        'redis-server CPU µs/check',
        'Redis commands in the run',
        'commands/check',
      ],
      rowsB,
    ),
  )
  log()
  log(
    `The harness alone (an already-resolved promise per check, no limiter, ${FLOOD_CONCURRENCY} callers): ` +
      `${fInt(floor.perSec)} checks/s, JS thread CPU ${f2(floor.jsUs)} µs/check. ferrocache's manager stays open ` +
      "during every run: its process heartbeat (one script a second) is in the peers' Redis counts too.",
  )
  log()
  const ratioB = peers.map((p) => {
    const q = (k) => fx(b[FC][k] / b[p][k])
    return [names[p], q('perSec'), q('cpuUs'), q('jsUs'), q('redisUs'), q('commands')]
  })
  log('Ratios ferrocache / peer:')
  log()
  log(table(['peer', 'refusals/s', 'process CPU', 'JS thread CPU', 'redis-server CPU', 'Redis commands'], ratioB))

  // ---------------------------------------------------------------- verdicts
  log()
  log('### Targets')
  log()
  const verdict = (ok) => (ok ? 'met' : 'NOT met')
  const bestPeer = (per, k, better) =>
    peers.reduce((best, p) => (best === null || better(per[p][k], per[best][k]) ? p : best), null)
  const higher = (x, y) => x > y
  const lower = (x, y) => x < y
  for (const [c, factor] of [
    [64, 2],
    [256, 2],
    [1, 1],
  ]) {
    const per = a.get(c)
    if (!per) continue
    const p = bestPeer(per, 'perSec', higher)
    const ratio = per[FC].perSec / per[p].perSec
    log(
      `- checks/s ≥ ${factor}× the best peer at ${c} caller${c === 1 ? '' : 's'}: ${verdict(ratio >= factor)} — ` +
        `ferrocache ${fInt(per[FC].perSec)}/s, best peer ${names[p]} ${fInt(per[p].perSec)}/s (${fx(ratio)})`,
    )
  }
  if (a.get(64)) {
    const per = a.get(64)
    const p = bestPeer(per, 'jsUs', lower)
    const ratio = per[FC].jsUs / per[p].jsUs
    const pe = bestPeer(per, 'eluUs', lower)
    log(
      `- JS-thread CPU per check ≤ 0.5× the best peer's at 64 callers: ${verdict(ratio <= 0.5)} — ` +
        `ferrocache ${f2(per[FC].jsUs)} µs, best peer ${names[p]} ${f2(per[p].jsUs)} µs (${fx(ratio)}); ` +
        `by ELU × wall: ${f2(per[FC].eluUs)} µs vs ${names[pe]} ${f2(per[pe].eluUs)} µs (${fx(per[FC].eluUs / per[pe].eluUs)})`,
    )
  }
  log(
    `- flooding key ≥ 1,000,000 refusals/s: ${verdict(b[FC].perSec >= 1e6)} — ferrocache ${fInt(b[FC].perSec)}/s ` +
      `(${peers.map((p) => `${names[p]} ${fInt(b[p].perSec)}/s`).join(', ')}; the harness alone ${fInt(floor.perSec)}/s)`,
  )
  const cpuLine = (per) => names.map((n, i) => `${n} ${f2(per[i].redisUs)} µs`).join(', ')
  for (const [c, per] of a) log(`- redis-server CPU per check, A at ${c} caller${c === 1 ? '' : 's'}: ${cpuLine(per)}`)
  log(
    `- redis-server CPU per check, B (flooding key): ${cpuLine(b)}; ` +
      `commands in the run: ${names.map((n, i) => `${n} ${fInt(b[i].commands)}`).join(', ')}`,
  )
}

function main() {
  return runWithRedis((redis) => run(redis))
}

if (require.main === module) main()

module.exports = { measureRateLimits: run }
