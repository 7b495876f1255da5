#!/usr/bin/env node
// A page of 100 query results read through a loader, over one private redis-server (free port, stopped by
// pid), three ways:
//   getOrSetMany            `manager.getOrSetMany(keys, loader)`: one pipeline of reads, one loader call with
//                           the missing keys, one pipeline of writes (with the near cache on, as shipped, and off)
//   100 × getOrSet          `Promise.all(keys.map((k) => manager.getOrSet(k, () => load(k))))` (same tick: one
//                           turn's pipeline for the reads; one loader call per missing key)
//   cache-manager mget      cache-manager 7 over Keyv + @keyv/redis: `mget(keys)`, then the loader for the
//                           missing keys and `mset` of what it returned (the glue an application writes)
// Two pages: warm (every key cached) and 60 % missing (each page asks 40 cached keys and 60 never seen, so
// the loader always has 60 to load). The loader answers after a setImmediate (a database would be slower).
// Rounds in which the contenders take turns; reported: medians of pages/s and p50 ms, Redis commands per page
// (INFO stats: total_commands_processed), and the ratios.
// Run: node bench/getmany.js   Env: GM_ROUNDS=3 GM_MEASURE_MS=1500 GM_CONCURRENCY=1,16
'use strict'

const { runWithRedis } = require('./redis-server')
const { loadFerrocache, cacheManager } = require('./contenders')
const { Latencies, runLoad, median } = require('./lib')

const num = (name, def) => Number(process.env[name] ?? def)
const ROUNDS = Math.max(1, num('GM_ROUNDS', 3))
const MEASURE_MS = num('GM_MEASURE_MS', 1500)
const CONCURRENCIES = (process.env.GM_CONCURRENCY ?? '1,16').split(',').map(Number)
const PAGE = 100
const MISSING = 60
const CATALOGUE = 2000 // the cached items pages draw from
const TTL_S = 600

const f1 = (x) => (Number.isFinite(x) ? x.toFixed(1) : '–')
const f2 = (x) => (Number.isFinite(x) ? x.toFixed(2) : '–')
const fx = (x) => (Number.isFinite(x) ? `${x.toFixed(2)}×` : '–')
const fInt = (x) => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : '–')

const row = (key) => ({ id: key, name: `item ${key}`, price: key.length * 3, tags: ['a', 'b'] })
const loadRows = (keys) =>
  new Promise((resolve) => setImmediate(() => resolve(Object.fromEntries(keys.map((k) => [k, row(k)])))))

/** The contenders, each `{ name, page(keys) -> Promise<values[]>, close() }` over its own namespace. */
async function contenders(url) {
  const { createCacheManager } = loadFerrocache()
  const fc = (name, ns, options, page) => {
    const m = createCacheManager({ url, keyPrefix: ns, ...options })
    return {
      name,
      warm: (keys) => m.getOrSetMany(keys, loadRows, TTL_S),
      page: (keys) => page(m, keys),
      close: () => m.close(),
    }
  }
  const many = (m, keys) => m.getOrSetMany(keys, loadRows, TTL_S).then((r) => keys.map((k) => r[k]))
  const single = (m, keys) => Promise.all(keys.map((k) => m.getOrSet(k, () => loadRows([k]).then((r) => r[k]), TTL_S)))
  const cm = await cacheManager(url, 'gmcm')
  return [
    fc('getOrSetMany', 'gm1:', {}, many),
    fc('getOrSetMany (near cache off)', 'gm2:', { nearCache: { enabled: false } }, many),
    fc('100 × getOrSet', 'gm3:', {}, single),
    {
      name: 'cache-manager mget',
      warm: (keys) =>
        loadRows(keys).then((rows) => cm.cache.mset(keys.map((key) => ({ key, value: rows[key], ttl: TTL_S * 1000 })))),
      async page(keys) {
        const values = await cm.cache.mget(keys)
        const missing = keys.filter((_, i) => values[i] === undefined)
        if (missing.length > 0) {
          const rows = await loadRows(missing)
          await cm.cache.mset(missing.map((key) => ({ key, value: rows[key], ttl: TTL_S * 1000 })))
          keys.forEach((k, i) => {
            if (values[i] === undefined) values[i] = rows[k]
          })
        }
        return values
      },
      close: () => cm.close(),
    },
  ]
}

async function commandsProcessed(admin) {
  const info = await admin.info('stats')
  return Number(/total_commands_processed:(\d+)/.exec(info)[1])
}

/**
 * Runs the page benchmark against `redis` ({ url, port }); `out(line)` receives the Markdown report,
 * `progress(line)` what is happening.
 */
async function measureGetMany(redis, { out = console.log, progress = () => {} } = {}) {
  const Redis = require('ioredis')
  const admin = new Redis({ port: redis.port, lazyConnect: false })
  const all = await contenders(redis.url)
  const catalogue = Array.from({ length: CATALOGUE }, (_, i) => `item:${i}`)
  for (const c of all) for (let i = 0; i < CATALOGUE; i += PAGE) await c.warm(catalogue.slice(i, i + PAGE))
  let fresh = 0 // never-seen keys for the missing part of a page
  const pageOf = (rng, missing) => {
    const keys = []
    const start = Math.floor(rng() * (CATALOGUE - PAGE))
    for (let i = 0; i < PAGE - missing; i++) keys.push(catalogue[start + i])
    for (let i = 0; i < missing; i++) keys.push(`new:${fresh++}`)
    return keys
  }
  const results = new Map() // `${scenario}|${c}|${name}` -> [{ pages, p50, commands }]
  for (let round = 0; round < ROUNDS; round++) {
    for (const [scenario, missing] of [
      ['warm', 0],
      ['60 % missing', MISSING],
    ]) {
      for (const concurrency of CONCURRENCIES) {
        const order = all.map((_, i) => all[(i + round) % all.length])
        for (const c of order) {
          const lat = new Latencies(200_000)
          const before = await commandsProcessed(admin)
          const t0 = process.hrtime.bigint()
          const pages = await runLoad({
            concurrency,
            durationMs: MEASURE_MS,
            lat,
            prepare: (rng) => {
              const keys = pageOf(rng, missing)
              return {
                run: () => c.page(keys),
                after: (values) => {
                  if (
                    values.length !== PAGE ||
                    values.some((v, i) => v === null || v === undefined || v.id !== keys[i])
                  )
                    throw new Error(`${c.name}: a page came back wrong`)
                },
              }
            },
          })
          const seconds = Number(process.hrtime.bigint() - t0) / 1e9
          const commands = ((await commandsProcessed(admin)) - before - 1) / pages
          const [p50] = lat.percentiles([50])
          const id = `${scenario}|${concurrency}|${c.name}`
          if (!results.has(id)) results.set(id, [])
          results.get(id).push({ pages: pages / seconds, p50: p50 / 1000, commands })
          progress(`round ${round + 1} ${scenario} c=${concurrency} ${c.name}: ${fInt(pages / seconds)} pages/s`)
        }
      }
    }
  }
  for (const c of all) await c.close()
  await admin.quit()

  out(`### A page of ${PAGE} query results through a loader (bench/getmany.js)`)
  out('')
  out(
    `Medians of ${ROUNDS} rounds of ${MEASURE_MS} ms; the loader answers after a setImmediate. Warm: every key cached; ` +
      `60 % missing: ${PAGE - MISSING} cached keys and ${MISSING} never seen per page. Commands: Redis commands per page.`,
  )
  out('')
  out('| page | callers | contender | pages/s | p50 ms | commands/page | getOrSetMany (near cache on) vs it |')
  out('| --- | ---: | --- | ---: | ---: | ---: | ---: |')
  for (const [scenario] of [['warm'], ['60 % missing']]) {
    for (const concurrency of CONCURRENCIES) {
      const base = median(results.get(`${scenario}|${concurrency}|getOrSetMany`).map((r) => r.pages))
      for (const c of all) {
        const rs = results.get(`${scenario}|${concurrency}|${c.name}`)
        const pages = median(rs.map((r) => r.pages))
        out(
          `| ${scenario} | ${concurrency} | ${c.name} | ${fInt(pages)} | ${f2(median(rs.map((r) => r.p50)))} | ` +
            `${f1(median(rs.map((r) => r.commands)))} | ${c.name === 'getOrSetMany' ? '' : fx(base / pages)} |`,
        )
      }
    }
  }
  out('')
}

module.exports = { measureGetMany }

if (require.main === module) runWithRedis((redis) => measureGetMany(redis, { progress: (s) => console.error(s) }))
