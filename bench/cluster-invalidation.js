#!/usr/bin/env node
// invalidateCache on a Redis Cluster (3 masters + 3 replicas started here, stopped by pid):
// with the query index (per-scope buckets sharing a hash tag with their entries) against
// `queryIndex: false` (SCAN MATCH + UNLINK on every master), 1,000 matching keys among
// BENCH_TOTALS keys (default 100,000 and 500,000; the rest written raw, other namespaces).
// Also the cost of the index on writes and reads: 64 concurrent 50/50 set/get of 1 KB for
// BENCH_PHASE_MS per mode, alternating.
// Run: node bench/cluster-invalidation.js
'use strict'

const { Cluster } = require('ioredis')
const { createCacheManager } = require('..')
const { startCluster } = require('./redis-server.js')
const { median } = require('./lib')

const TOTALS = (process.env.BENCH_TOTALS || '100000,500000').split(',').map(Number)
const PHASE_MS = Number(process.env.BENCH_PHASE_MS || 3000)
const WRITE_RATIO = Number(process.env.BENCH_WRITE_RATIO ?? 0.5)
const MATCHING = 1000
const REPS = 5
const VALUE = { rows: 'x'.repeat(1000) }
const nowMs = () => Number(process.hrtime.bigint()) / 1e6

async function fillRaw(raw, count) {
  const text = JSON.stringify(VALUE)
  const base = fillRaw.n || 0
  fillRaw.n = base + count
  for (let i = 0; i < count; i += 5000) {
    // auto-pipelined by node (a cluster pipeline must stay within one slot)
    const sets = []
    for (let k = i; k < Math.min(count, i + 5000); k++)
      sets.push(raw.set(`filler:q:orders_${base + k}`, text, 'PX', 600000))
    await Promise.all(sets)
  }
}

async function invalidation(managers, raw, filled, total) {
  await fillRaw(raw, total - filled.n)
  filled.n = total
  const out = {}
  for (const [name, m] of Object.entries(managers)) {
    const times = []
    for (let r = 0; r < REPS; r++) {
      await Promise.all(Array.from({ length: MATCHING }, (_, i) => m.cacheQueryResult(`orders_${i}`, VALUE, 600)))
      const t = nowMs()
      const removed = await m.invalidateCache('orders_')
      times.push(nowMs() - t)
      if (removed !== MATCHING) throw new Error(`${name}: removed ${removed}, expected ${MATCHING}`)
    }
    out[name] = median(times)
  }
  return out
}

async function throughput(m) {
  const deadline = nowMs() + PHASE_MS
  let ops = 0
  await Promise.all(
    Array.from({ length: 64 }, async (_, w) => {
      let i = w
      while (nowMs() < deadline) {
        const key = `load_${i % 5000}`
        if ((i * 0.618034) % 1 < WRITE_RATIO) await m.cacheQueryResult(key, VALUE, 600)
        else await m.getCachedQuery(key)
        i += 64
        ops++
      }
    }),
  )
  return ops / (PHASE_MS / 1000)
}

async function main() {
  const cluster = await startCluster()
  const raw = new Cluster(
    cluster.urls.map((u) => ({ host: '127.0.0.1', port: Number(new URL(u).port) })),
    { enableAutoPipelining: true },
  )
  const managers = {
    index: createCacheManager({ cluster: { nodes: cluster.urls }, keyPrefix: 'ix:', commandTimeoutMs: 60000 }),
    scan: createCacheManager({
      cluster: { nodes: cluster.urls },
      keyPrefix: 'sc:',
      commandTimeoutMs: 60000,
      queryIndex: false,
    }),
  }
  try {
    const filled = { n: 0 }
    for (const total of TOTALS) {
      const r = await invalidation(managers, raw, filled, total)
      console.log(
        `invalidateCache, ${MATCHING} of ~${total.toLocaleString('en-US')} keys: index ${r.index.toFixed(2)} ms, ` +
          `SCAN ${r.scan.toFixed(2)} ms (median of ${REPS}; index ${(r.scan / r.index).toFixed(1)}x faster)`,
      )
    }
    const rates = { index: [], scan: [] }
    for (let round = 0; round < 3; round++) {
      for (const name of round % 2 ? ['scan', 'index'] : ['index', 'scan'])
        rates[name].push(await throughput(managers[name]))
    }
    const fmt = (xs) => xs.map((x) => Math.round(x).toLocaleString('en-US')).join(' / ')
    console.log(
      `set/get ${Math.round(WRITE_RATIO * 100)}% sets, 1 KB, 64 concurrent, ${PHASE_MS} ms per run: index ${fmt(rates.index)} ops/s, ` +
        `queryIndex:false ${fmt(rates.scan)} (median ratio ${(median(rates.index) / median(rates.scan)).toFixed(2)})`,
    )
  } finally {
    await Promise.all(Object.values(managers).map((m) => m.close()))
    raw.disconnect()
    await cluster.stop()
  }
}

main().catch((err) => {
  console.error(err)
  process.exitCode = 1
})
