#!/usr/bin/env node
// Cost of metrics recording on the hot path: getSession throughput with
// `metrics: true` vs `metrics: false`, in-process (memory://, where nothing else
// hides the cost) and against a private redis-server. Rounds alternate on/off;
// the medians are compared. Run: node bench/metrics-overhead.js
'use strict'

const { createCacheManager } = require('..')
const { startRedis } = require('./redis-server.js')
const { median } = require('./lib')

const ROUND_MS = Number(process.env.BENCH_ROUND_MS || 1500)
const ROUNDS = Number(process.env.BENCH_ROUNDS || 6)
const CONCURRENCY = 64
const KEYS = 1000

async function measure(manager, ms) {
  const value = { user: 'u', roles: ['a', 'b'], pad: 'x'.repeat(900) }
  for (let i = 0; i < KEYS; i++) await manager.setSession(`s${i}`, value)
  let ops = 0
  const until = Date.now() + ms
  const worker = async (w) => {
    let i = w
    while (Date.now() < until) {
      const got = await manager.getSession(`s${i % KEYS}`)
      if (got === null || got.user !== 'u') throw new Error('wrong read')
      ops++
      i += CONCURRENCY
    }
  }
  const started = process.hrtime.bigint()
  await Promise.all(Array.from({ length: CONCURRENCY }, (_, w) => worker(w)))
  return ops / (Number(process.hrtime.bigint() - started) / 1e9)
}

async function compare(label, url) {
  const results = { on: [], off: [] }
  for (let r = 0; r < ROUNDS; r++) {
    for (const mode of r % 2 === 0 ? ['on', 'off'] : ['off', 'on']) {
      const m = createCacheManager({ url, keyPrefix: `mo${r}${mode}:`, metrics: mode === 'on' })
      await measure(m, 200) // warm-up
      results[mode].push(await measure(m, ROUND_MS))
      if (mode === 'on' && m.metrics().hits === 0) throw new Error('metrics did not count')
      if (mode === 'off' && m.metrics().hits !== 0) throw new Error('metrics: false still counted')
      await m.close()
    }
  }
  const on = median(results.on)
  const off = median(results.off)
  const overhead = ((off - on) / off) * 100
  console.log(
    `| ${label} | ${Math.round(off).toLocaleString('en-US')} | ${Math.round(on).toLocaleString('en-US')} | ${overhead.toFixed(2)} % |`,
  )
}

async function main() {
  console.log(
    `getSession, ~1 KB JSON, concurrency ${CONCURRENCY}, ${ROUNDS} alternating rounds of ${ROUND_MS} ms, medians`,
  )
  console.log('| store | ops/s, metrics off | ops/s, metrics on | overhead |')
  console.log('|---|---:|---:|---:|')
  await compare('memory://', 'memory://')
  const redis = await startRedis()
  try {
    await compare('redis (own redis-server)', redis.url)
  } finally {
    await redis.stop()
  }
}

main().catch((err) => {
  console.error(err)
  process.exitCode = 1
})
