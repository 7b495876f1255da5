'use strict'
// W5: sessions while Redis is down. Each contender gets its own redis-server (free port,
// stopped by pid), filled with the W1 values; under 64 workers (50/50 get/set) the server is
// SIGKILLed (connections refused) or SIGSTOPped (hung: connections open, no answers). After
// SETTLE_MS (ferrocache's breaker has opened by then) calls are measured for `durationMs`:
// completed calls per second, failed calls, p50/p99 of the completed ones, and how long the
// oldest call still in flight had been waiting when the window closed. Then the server comes back (restarted on its port, or
// SIGCONT) and every contender is closed. Each contender runs with its default options, as
// its users would start it.

const { startRedis, startRedisOn } = require('./redis-server')

const WORKERS = 64
const KEYS = 2000
const SETTLE_MS = 1000
const DRAIN_MS = 15_000
const nowMs = () => Number(process.hrtime.bigint()) / 1e6
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
/** The `p`th percentile of ascending `sorted` (NaN when empty). */
const percentile = (sorted, p) =>
  sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] : NaN

const OUTAGES = [
  {
    name: 'SIGKILL (refused)',
    begin: (server) => process.kill(server.pid, 'SIGKILL'),
    end: async (server) => {
      const fresh = await startRedisOn(server.port)
      await server.stop() // its directory; the process is gone
      return fresh
    },
  },
  {
    name: 'SIGSTOP (hung)',
    begin: (server) => process.kill(server.pid, 'SIGSTOP'),
    end: (server) => {
      process.kill(server.pid, 'SIGCONT')
      return server
    },
  },
]

/** One contender through one outage; returns its row. */
async function run(make, outage, value, durationMs) {
  let server = await startRedis()
  const contender = await make(server)
  try {
    for (let i = 0; i < KEYS; i++) await contender.set(`k${i}`, value, 3600)
    let window = null // { start, end } once measuring
    let stop = false
    const done = []
    let failed = 0
    const since = new Array(WORKERS).fill(NaN) // when each worker's call in flight started
    const worker = async (w) => {
      for (let i = w; !stop; i += WORKERS) {
        const t = nowMs()
        since[w] = t
        let ok = true
        try {
          if (i % 2) await contender.set(`k${i % KEYS}`, value, 3600)
          else await contender.get(`k${i % KEYS}`)
        } catch {
          ok = false
        }
        since[w] = NaN
        const end = nowMs()
        if (window && end >= window.start && end <= window.end) {
          if (ok) done.push(end - t)
          else failed++
        }
      }
    }
    const workers = Array.from({ length: WORKERS }, (_, w) => worker(w))
    await sleep(300)
    outage.begin(server)
    await sleep(SETTLE_MS)
    const start = nowMs()
    window = { start, end: start + durationMs }
    await sleep(durationMs)
    const closed = nowMs()
    const waiting = since.reduce((longest, t) => (Number.isNaN(t) ? longest : Math.max(longest, closed - t)), 0)
    stop = true
    server = await outage.end(server)
    const drained = await Promise.race([Promise.all(workers).then(() => true), sleep(DRAIN_MS).then(() => false)])
    const sorted = done.sort((a, b) => a - b)
    return {
      contender: contender.name,
      outage: outage.name,
      okPerSec: sorted.length / (durationMs / 1000),
      failed,
      p50: percentile(sorted, 50),
      p99: percentile(sorted, 99),
      waiting,
      drained,
    }
  } finally {
    await Promise.race([Promise.resolve(contender.close()).catch(() => {}), sleep(3000)])
    await server.stop()
  }
}

/** Every contender through every outage. `makers`: [name, (server) => contender]. */
async function w5(env, makers, value) {
  const rows = []
  for (const outage of OUTAGES) {
    for (const [name, make] of makers) {
      env.log(`W5 ${outage.name}: ${name}`)
      rows.push(await run(make, outage, value, env.durationMs / 2))
    }
  }
  return rows
}

module.exports = { w5, W5_WORKERS: WORKERS, W5_SETTLE_MS: SETTLE_MS }
