'use strict'
// W4 alone (ferrocache `memory://` vs lru-cache holding JSON text), for profiling and
// quick A/B runs: the same values, keys, mix and closed loop as `npm run bench`'s W4
// (bench/workloads.js, bench/lib.js), without its per-read version checks.
//
//   node bench/w4-ab.js [contender ...]        contenders: ferrocache, lru-cache, @cacheable/memory
//                                              (default ferrocache and lru-cache)
//   node --cpu-prof bench/w4-ab.js ferrocache  a CPU profile of ferrocache's side alone
//
// Env: W4_MS (measured ms per run, default 3000), W4_ROUNDS (default 3, order alternates),
// NAPI_RS_NATIVE_LIBRARY_PATH (which addon build to load). Prints one JSON line per run
// and a summary line with the median ops/s per contender and their ratio.

const C = require('./contenders')
const { runLoad, pool, median } = require('./lib')
const { sessionValue, sessionIds } = require('./workloads')

const ms = Number(process.env.W4_MS || 3000)
const rounds = Number(process.env.W4_ROUNDS || 3)
const names = process.argv.slice(2).length ? process.argv.slice(2) : ['ferrocache', 'lru-cache']
const make = {
  ferrocache: () => C.ferrocache('memory://', 'session'),
  'lru-cache': () => C.lruCache(),
  '@cacheable/memory': () => C.cacheableMemory(),
}

const ids = sessionIds(10_000)
const TTL = 3600

async function run(name) {
  const c = make[name]()
  await pool(ids.length, 64, async (i) => c.set(ids[i], sessionValue(ids[i], 1), TTL))
  let ver = 1
  const prepare = (rng) => {
    const key = ids[Math.floor(rng() * ids.length)]
    if (rng() < 0.5) {
      const value = sessionValue(key, ++ver)
      return { run: () => c.set(key, value, TTL) }
    }
    return { run: () => c.get(key) }
  }
  await runLoad({ concurrency: 64, durationMs: Math.max(250, ms / 5), prepare, lat: null, seed: 11 })
  const t0 = process.hrtime.bigint()
  const ops = await runLoad({ concurrency: 64, durationMs: ms, prepare, lat: null, seed: 12 })
  const s = Number(process.hrtime.bigint() - t0) / 1e9
  await c.close()
  return ops / s
}

async function main() {
  const results = Object.fromEntries(names.map((n) => [n, []]))
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 === 0 ? names : [...names].reverse()
    for (const name of order) {
      const opsPerSec = await run(name)
      results[name].push(opsPerSec)
      console.log(JSON.stringify({ round: r, contender: name, opsPerSec: Math.round(opsPerSec) }))
    }
  }
  const med = Object.fromEntries(names.map((n) => [n, Math.round(median(results[n]))]))
  const summary = { lib: process.env.NAPI_RS_NATIVE_LIBRARY_PATH || 'default', median: med }
  if (med.ferrocache && med['lru-cache']) summary.ratio = +(med.ferrocache / med['lru-cache']).toFixed(3)
  console.log(JSON.stringify(summary))
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
