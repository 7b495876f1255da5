#!/usr/bin/env node
// Calls during a Redis outage: calls/s and p50/p99 latency before, during and
// after a SIGKILL (refused) and a SIGSTOP (hung) of a private redis-server under
// 64 concurrent workers, plus the time to detect each outage (the `fallback`
// event) and to recover (the `recovered` event after the server answers again).
// Every call must succeed. Run: node bench/outage.js
'use strict'

const { spawn } = require('node:child_process')
const { createCacheManager } = require('..')
const { freePort, ping } = require('./redis-server.js')

const PHASE_MS = Number(process.env.BENCH_PHASE_MS || 2000)
const WORKERS = 64
const KEYS = 2000
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const nowMs = () => Number(process.hrtime.bigint()) / 1e6

async function startOn(port) {
  const child = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    {
      stdio: 'ignore',
    },
  )
  for (let i = 0; i < 200 && !(await ping(port)); i++) await sleep(10)
  return child
}

// a restart returns the new child process; a signal returns nothing useful
const replaced = (result, server) => (result && typeof result.pid === 'number' ? result : server)

function stats(lat) {
  const s = [...lat].sort((a, b) => a - b)
  const at = (q) => (s.length ? s[Math.min(s.length - 1, Math.floor(q * s.length))] : NaN)
  return { n: s.length, p50: at(0.5), p99: at(0.99), max: s.length ? s[s.length - 1] : NaN }
}

async function scenario(name, outage, resume) {
  const port = await freePort()
  let server = await startOn(port)
  const cm = createCacheManager({ url: `redis://127.0.0.1:${port}`, keyPrefix: 'outage:', commandTimeoutMs: 250 })
  const events = []
  cm.on('fallback', () => events.push(['fallback', nowMs()])).on('recovered', (i) =>
    events.push(['recovered', nowMs(), i]),
  )
  const value = { pad: 'x'.repeat(900) }
  for (let i = 0; i < KEYS; i++) await cm.setSession(`k${i}`, value)
  let phase = 'before'
  const lat = { before: [], during: [], after: [] }
  const spans = {}
  let failures = 0
  let stop = false
  const worker = async (w) => {
    for (let i = w; !stop; i += WORKERS) {
      const t = nowMs()
      try {
        if (i % 2) await cm.setSession(`k${i % KEYS}`, value)
        else await cm.getSession(`k${i % KEYS}`)
      } catch {
        failures++
      }
      lat[phase].push(nowMs() - t)
    }
  }
  const run = Promise.all(Array.from({ length: WORKERS }, (_, w) => worker(w)))
  const mark = (p) => {
    phase = p
    spans[p] = nowMs()
  }
  mark('before')
  await sleep(PHASE_MS)
  mark('during')
  const outageAt = nowMs()
  server = replaced(await outage(server, port), server)
  await sleep(PHASE_MS)
  const resumeAt = nowMs()
  server = replaced(await resume(server, port), server)
  const readyAt = nowMs()
  mark('after')
  await sleep(PHASE_MS)
  stop = true
  await run
  spans.end = nowMs()
  const fallback = events.find((e) => e[0] === 'fallback')
  const recovered = events.find((e) => e[0] === 'recovered')
  await cm.close()
  server.kill('SIGKILL')
  const rows = ['before', 'during', 'after'].map((p) => {
    const s = stats(lat[p])
    const end = p === 'before' ? spans.during : p === 'during' ? spans.after : spans.end
    return `| ${name} | ${p} | ${Math.round(s.n / ((end - spans[p]) / 1000)).toLocaleString('en-US')} | ${s.p50.toFixed(3)} | ${s.p99.toFixed(3)} | ${s.max.toFixed(1)} |`
  })
  console.log(rows.join('\n'))
  return {
    name,
    failures,
    detectMs: fallback ? fallback[1] - outageAt : NaN,
    recoverMs: recovered ? recovered[1] - readyAt : NaN,
    resumeToReadyMs: readyAt - resumeAt,
    replayed: recovered ? recovered[2].replayed : 0,
  }
}

async function main() {
  console.log(`${WORKERS} workers, 50/50 getSession/setSession (~1 KB), ${PHASE_MS} ms per phase, commandTimeoutMs 250`)
  console.log('| outage | phase | calls/s | p50 ms | p99 ms | max ms |')
  console.log('|---|---|---:|---:|---:|---:|')
  const results = []
  results.push(
    await scenario(
      'SIGKILL (refused)',
      async (s) => s.kill('SIGKILL'),
      async (_s, port) => startOn(port),
    ),
  )
  results.push(
    await scenario(
      'SIGSTOP (hung)',
      async (s) => process.kill(s.pid, 'SIGSTOP'),
      async (s) => process.kill(s.pid, 'SIGCONT'),
    ),
  )
  console.log(
    '\n| outage | failed calls | detect (fallback event) ms | recover (recovered event after server ready) ms | replayed |',
  )
  console.log('|---|---:|---:|---:|---:|')
  for (const r of results) {
    console.log(`| ${r.name} | ${r.failures} | ${r.detectMs.toFixed(0)} | ${r.recoverMs.toFixed(0)} | ${r.replayed} |`)
  }
  if (results.some((r) => r.failures > 0)) process.exitCode = 1
}

main().catch((err) => {
  console.error(err)
  process.exitCode = 1
})
