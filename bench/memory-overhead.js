#!/usr/bin/env node
// Memory cost of the in-process store: fills a memory:// manager with three times
// its byte budget of ~1 KB JSON values (sessions; or tenant-scoped query results,
// which also have a per-tenant ledger) and reports the process RSS growth outside
// the JS heap against the budget, and the real bytes per entry against the bytes
// charged (key + value + ENTRY_OVERHEAD [+ LEDGER_OVERHEAD]).
// Run: node --expose-gc bench/memory-overhead.js [maxBytesMiB=64]
'use strict'

const { createCacheManager } = require('..')

const MIB = 1024 * 1024
const gc = () => (typeof global.gc === 'function' ? global.gc() : undefined)
const rss = () => process.memoryUsage().rss

const MODES = {
  sessions: ['sessions (manager scope)', (c, n, v) => c.setSession(`session-${n}`, v, 3600)],
  tenants: [
    'tenant query results (100 tenants)',
    (c, n, v) => c.tenant(`t${n % 100}`).cacheQueryResult(`orders:${n}`, v, 3600),
  ],
}

/** Fills a store of `budgetMiB` with 3x its budget of `mode` entries; RSS and per-entry figures. */
async function measure(budgetMiB, mode) {
  const [label, write] = MODES[mode]
  gc()
  const before = rss()
  const heapBefore = process.memoryUsage().heapTotal
  const cache = createCacheManager({ url: 'memory://', fallback: { maxBytes: budgetMiB * MIB } })
  const value = { user: 'u', roles: ['a', 'b'], pad: 'x'.repeat(950) } // ~1 KB of JSON
  const entryJson = JSON.stringify(value).length
  const total = Math.ceil((3 * budgetMiB * MIB) / entryJson) // the store must evict, not grow
  let peakRss = 0
  for (let n = 0; n < total; n++) {
    await write(cache, n, value)
    if (n % 20000 === 0) peakRss = Math.max(peakRss, rss())
  }
  gc()
  peakRss = Math.max(peakRss, rss())
  const m = cache.metrics().memory
  // the JS heap grows too (garbage of the writes, V8 keeps its pages): not the store's
  const heapGrown = process.memoryUsage().heapTotal - heapBefore
  const grown = peakRss - before - Math.max(0, heapGrown)
  await cache.close()
  return {
    label,
    written: total,
    held: m.fallbackEntries,
    chargedMiB: +(m.fallbackBytes / MIB).toFixed(1),
    budgetMiB,
    rssGrowthMiB: +(grown / MIB).toFixed(1),
    jsHeapGrowthMiB: +(heapGrown / MIB).toFixed(1),
    rssOverBudget: +(grown / (budgetMiB * MIB)).toFixed(2),
    realBytesPerEntry: Math.round(grown / m.fallbackEntries),
    chargedBytesPerEntry: Math.round(m.fallbackBytes / m.fallbackEntries),
  }
}

async function main() {
  const budgetMiB = Number(process.argv[2] || 64)
  const mode = process.argv[3]
  if (mode) {
    // one measurement per process: freed memory is not always returned to the OS
    process.stdout.write(JSON.stringify(await measure(budgetMiB, mode)))
    return
  }
  const { execFileSync } = require('node:child_process')
  const rows = Object.keys(MODES).map((m) =>
    JSON.parse(execFileSync(process.execPath, ['--expose-gc', __filename, String(budgetMiB), m], { encoding: 'utf8' })),
  )
  console.log(`node ${process.version}, fallback.maxBytes ${budgetMiB} MiB, ~1 KB JSON values, 3x the budget written`)
  console.log(
    '\n| store content | entries held | charged MiB | budget MiB | RSS growth outside the JS heap, MiB | that / budget | JS heap growth MiB | real B/entry | charged B/entry |',
  )
  console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|')
  for (const r of rows) {
    console.log(
      `| ${r.label} | ${r.held} | ${r.chargedMiB} | ${r.budgetMiB} | ${r.rssGrowthMiB} | ${r.rssOverBudget} | ${r.jsHeapGrowthMiB} | ${r.realBytesPerEntry} | ${r.chargedBytesPerEntry} |`,
    )
  }
}

if (require.main === module) main()
module.exports = { measure }
