#!/usr/bin/env node
// Key layout on a Redis Cluster: with or without a per-tenant hash tag. Measures, on a local
// cluster of 3 masters + 3 replicas started here (stopped by pid):
//  1. where a hot tenant's load lands: 64 concurrent GET/SET on one tenant's keys for a few
//     seconds, through ioredis Cluster, keys `nt:t:<tenant>:q:<k>` (no tag: spread over the
//     slots) vs `ht:{t:<tenant>}:q:<k>` (tag: one slot); ops/s and each master's share of the
//     commands (INFO commandstats deltas);
//  2. tenant-wide invalidation among many tenants: ferrocache's invalidateAll (no tag: SCAN on
//     every master + per-node UNLINK pipelines) vs, with a tag, SCAN on the owning master only
//     + one multi-key UNLINK (same slot: atomic, one command), and the time that single
//     command occupies Redis (SLOWLOG).
// Run: node bench/cluster-hashtags.js   (BENCH_PHASE_MS, BENCH_TENANTS, BENCH_KEYS)
'use strict'

const { Cluster } = require('ioredis')
const { createCacheManager } = require('..')
const { startCluster } = require('./redis-server.js')

const PHASE_MS = Number(process.env.BENCH_PHASE_MS || 3000)
const TENANTS = Number(process.env.BENCH_TENANTS || 50)
const KEYS = Number(process.env.BENCH_KEYS || 2000)
const WORKERS = 64
const VALUE = JSON.stringify({ rows: 'x'.repeat(200) })
const nowMs = () => Number(process.hrtime.bigint()) / 1e6

const untagged = (tenant, k) => `nt:t:${tenant.length}:${tenant}:q:${k}`
const tagged = (tenant, k) => `ht:{t:${tenant.length}:${tenant}}:q:${k}`

// per master: GET+SET calls and CPU seconds (main thread user+sys) so far
async function commandCounts(cluster) {
  const out = {}
  for (const node of cluster.nodes('master')) {
    const info = (await node.info('commandstats')) + (await node.info('cpu'))
    let calls = 0
    for (const m of info.matchAll(/cmdstat_(get|set):calls=(\d+)/g)) calls += Number(m[2])
    const cpu = ['used_cpu_user_main_thread', 'used_cpu_sys_main_thread']
      .map((f) => Number((new RegExp(`${f}:([\\d.]+)`).exec(info) || [0, 0])[1]))
      .reduce((a, b) => a + b, 0)
    out[`${node.options.port}`] = { calls, cpu }
  }
  return out
}

async function populate(cluster, layout) {
  for (let t = 0; t < TENANTS; t++) {
    const tenant = `tenant${t}`
    for (let i = 0; i < KEYS; i += 500) {
      const pipe = cluster.pipeline()
      for (let k = i; k < Math.min(KEYS, i + 500); k++) pipe.set(layout(tenant, `k${k}`), VALUE, 'PX', 600000)
      // a cluster pipeline must stay within one slot per node group: ioredis splits it
      await pipe.exec().catch(async () => {
        for (let k = i; k < Math.min(KEYS, i + 500); k++)
          await cluster.set(layout(tenant, `k${k}`), VALUE, 'PX', 600000)
      })
    }
  }
}

async function hotTenant(cluster, layout) {
  const before = await commandCounts(cluster)
  let ops = 0
  const end = nowMs() + PHASE_MS
  await Promise.all(
    Array.from({ length: WORKERS }, async (_, w) => {
      for (let i = 0; nowMs() < end; i++) {
        const key = layout('tenant0', `k${(w * 31 + i) % KEYS}`)
        if (i % 2) await cluster.get(key)
        else await cluster.set(key, VALUE, 'PX', 600000)
        ops++
      }
    }),
  )
  const after = await commandCounts(cluster)
  const ports = Object.keys(after)
  const calls = (p) => after[p].calls - (before[p] ? before[p].calls : 0)
  const total = ports.reduce((s, p) => s + calls(p), 0)
  const rows = ports
    .map((p) => ({
      sharePct: Math.round((100 * calls(p)) / total),
      // CPU seconds per second of the phase: 1.0 = that master's single thread saturated
      cpu: +((after[p].cpu - (before[p] ? before[p].cpu : 0)) / (PHASE_MS / 1000)).toFixed(2),
    }))
    .sort((a, b) => b.sharePct - a.sharePct)
  return {
    opsPerSec: Math.round(ops / (PHASE_MS / 1000)),
    masterSharePct: rows.map((r) => r.sharePct),
    masterCpuPerSec: rows.map((r) => r.cpu),
  }
}

async function invalidateTagged(cluster, tenant) {
  const slotKey = tagged(tenant, 'x')
  const started = nowMs()
  const slot = await cluster.cluster('KEYSLOT', slotKey)
  const owner = cluster.slots[slot][0]
  const node = cluster.nodes('master').find((n) => `${n.options.host}:${n.options.port}` === owner)
  const keys = []
  let cursor = '0'
  do {
    const [next, page] = await node.scan(cursor, 'MATCH', `ht:{t:${tenant.length}:${tenant}}:q:*`, 'COUNT', 1000)
    cursor = next
    keys.push(...page)
  } while (cursor !== '0')
  await node.config('SET', 'slowlog-log-slower-than', '0')
  await node.slowlog('RESET')
  const removed = await node.unlink(...keys)
  const log = await node.slowlog('GET', 10)
  await node.config('SET', 'slowlog-log-slower-than', '10000')
  const unlinkUs = log.filter((e) => String(e[3][0]).toUpperCase() === 'UNLINK').map((e) => e[2])[0]
  return { removed, ms: +(nowMs() - started).toFixed(1), singleUnlinkBlocksUs: unlinkUs }
}

async function main() {
  const cluster = await startCluster()
  const io = new Cluster(
    cluster.nodes.map((n) => ({ host: '127.0.0.1', port: n.port })),
    { scaleReads: 'master' },
  )
  try {
    await io.ping()
    console.log(`populating ${TENANTS} tenants x ${KEYS} keys, both layouts ...`)
    await populate(io, untagged)
    await populate(io, tagged)
    const results = { tenants: TENANTS, keysPerTenant: KEYS, workers: WORKERS, phaseMs: PHASE_MS }
    results.hotTenantUntagged = await hotTenant(io, untagged)
    results.hotTenantTagged = await hotTenant(io, tagged)
    results.hotTenantUntagged2 = await hotTenant(io, untagged)
    results.hotTenantTagged2 = await hotTenant(io, tagged)

    // tenant-wide invalidation: ferrocache's own path (no tag) ...
    const cm = createCacheManager({ cluster: { nodes: cluster.urls }, keyPrefix: 'nt:', commandTimeoutMs: 60000 })
    const runs = []
    for (const t of [1, 2, 3]) {
      const started = nowMs()
      const removed = await cm.tenant(`tenant${t}`).invalidateAll()
      runs.push({ removed, ms: +(nowMs() - started).toFixed(1) })
    }
    results.invalidateUntagged = runs
    await cm.close()
    // ... and with a tag: one master, one atomic UNLINK
    results.invalidateTagged = []
    for (const t of [1, 2, 3]) results.invalidateTagged.push(await invalidateTagged(io, `tenant${t}`))
    console.log(JSON.stringify(results, null, 2))
  } finally {
    io.disconnect()
    await cluster.stop()
  }
}

main().catch((e) => {
  console.error(e)
  process.exitCode = 1
})
