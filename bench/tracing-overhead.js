#!/usr/bin/env node
// Cost of the tracing channel (lib/tracing.js): getSession and setSession throughput with
// nobody subscribed to `ferrocache:operation` vs a subscriber of its five events, in-process
// (memory://) and against a private redis-server (default options: gets are near-cache hits,
// sets are Redis round trips), at concurrency 1 and 64. With FC_BASELINE=<dir of another build
// of ferrocache> (e.g. a checkout of the main branch, built), that build with nobody subscribed
// is measured too. Each measurement runs in a process of its own (the JIT of one variant does
// not shape the next); variants alternate, their order reversed every round; medians and
// spread (min–max) are reported. Run: node bench/tracing-overhead.js
'use strict'

const path = require('node:path')
const { execFileSync } = require('node:child_process')
const { startRedis } = require('./redis-server.js')
const { median } = require('./lib')

const ROUND_MS = Number(process.env.BENCH_ROUND_MS || 1000)
const ROUNDS = Number(process.env.BENCH_ROUNDS || 5)
const KEYS = 1000

// ---- one measurement (child process): `--child <package dir> <subscribe 0|1> <url> <op> <concurrency>`

async function child([dir, subscribe, url, op, concurrency]) {
  const { createCacheManager } = require(path.resolve(dir))
  const n = Number(concurrency)
  let events = 0
  if (subscribe === '1') {
    const count = () => events++
    require('node:diagnostics_channel')
      .tracingChannel('ferrocache:operation')
      .subscribe({ start: count, end: count, asyncStart: count, asyncEnd: count, error: count })
  }
  const m = createCacheManager({ url, keyPrefix: `tro:${process.pid}:` })
  const value = { user: 'u', roles: ['a', 'b'], pad: 'x'.repeat(200) }
  for (let i = 0; i < KEYS; i++) await m.setSession(`s${i}`, value)
  const run = async (ms) => {
    let ops = 0
    const until = Date.now() + ms
    const worker = async (w) => {
      for (let i = w; Date.now() < until; i += n) {
        if (op === 'get') {
          const got = await m.getSession(`s${i % KEYS}`)
          if (got === null || got.user !== 'u') throw new Error('wrong read')
        } else await m.setSession(`s${i % KEYS}`, value)
        ops++
      }
    }
    const started = process.hrtime.bigint()
    await Promise.all(Array.from({ length: n }, (_, w) => worker(w)))
    return ops / (Number(process.hrtime.bigint() - started) / 1e9)
  }
  await run(300) // warm-up
  events = 0
  const opsPerSec = await run(ROUND_MS)
  await m.close()
  if ((subscribe === '1') !== events > 0) throw new Error(`subscribe=${subscribe} but ${events} events`)
  process.stdout.write(JSON.stringify({ opsPerSec }))
}

// ---- the comparison

function measure(dir, subscribe, url, op, concurrency) {
  const out = execFileSync(process.execPath, [__filename, '--child', dir, subscribe, url, op, String(concurrency)], {
    encoding: 'utf8',
    env: { ...process.env, BENCH_ROUND_MS: String(ROUND_MS) },
  })
  return JSON.parse(out).opsPerSec
}

const fmt = (x) => Math.round(x).toLocaleString('en-US')
const spread = (xs) => `${fmt(Math.min(...xs))}–${fmt(Math.max(...xs))}`
const pct = (a, b) => `${(((a - b) / b) * 100).toFixed(1)} %`

async function main() {
  const here = path.resolve(__dirname, '..')
  const variants = [
    ['none', here, '0'],
    ['subscribed', here, '1'],
  ]
  if (process.env.FC_BASELINE) variants.push(['baseline', path.resolve(process.env.FC_BASELINE), '0'])
  const redis = await startRedis()
  try {
    console.log(
      `${ROUNDS} alternating rounds of ${ROUND_MS} ms per variant, one process each; ops/s median (min–max); ` +
        `Node ${process.version}, redis-server on 127.0.0.1:${redis.port}`,
    )
    const head = variants.map(([name]) => `${name} ops/s`).join(' | ')
    const deltas = ['subscribed vs none', ...(process.env.FC_BASELINE ? ['none vs baseline'] : [])]
    console.log(`| store | call | concurrency | ${head} | ${deltas.join(' | ')} |`)
    console.log(`|---|---|---:|${variants.map(() => '---:|').join('')}${deltas.map(() => '---:|').join('')}`)
    for (const [store, url] of [
      ['memory://', 'memory://'],
      ['redis', redis.url],
    ]) {
      for (const op of ['get', 'set']) {
        for (const concurrency of [1, 64]) {
          const results = Object.fromEntries(variants.map(([name]) => [name, []]))
          for (let r = 0; r < ROUNDS; r++) {
            const order = r % 2 === 0 ? variants : [...variants].reverse()
            for (const [name, dir, subscribe] of order) {
              results[name].push(measure(dir, subscribe, url, op, concurrency))
            }
          }
          const med = Object.fromEntries(Object.entries(results).map(([k, v]) => [k, median(v)]))
          const cells = variants.map(([name]) => `${fmt(med[name])} (${spread(results[name])})`)
          const d = [pct(med.subscribed, med.none)]
          if (process.env.FC_BASELINE) d.push(pct(med.none, med.baseline))
          const call = op === 'get' ? 'getSession' : 'setSession'
          console.log(`| ${store} | ${call} | ${concurrency} | ${cells.join(' | ')} | ${d.join(' | ')} |`)
        }
      }
    }
  } finally {
    await redis.stop()
  }
}

if (process.argv[2] === '--child') {
  child(process.argv.slice(3)).catch((err) => {
    console.error(err)
    process.exitCode = 1
  })
} else {
  main().catch((err) => {
    console.error(err)
    process.exitCode = 1
  })
}
