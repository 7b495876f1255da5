'use strict'
// The workloads. Each contender run: FLUSHALL, fresh client, prefill every key
// through the contender's own API, warm up (unmeasured), then measure.

const { Latencies, Versions, snapshot, window, runLoad, pool, zipf, prng, hr, CheckError, median } = require('./lib')

// ---------------------------------------------------------------- values

/** ~1 KB session object; `id` and `ver` make every read checkable. */
const SESSION_BASE = Object.freeze({
  userId: 'u_7f3a9c2e4b1d',
  tenantId: 'acme-corp-eu-west',
  email: 'jane.doe@example.com',
  roles: ['admin', 'billing', 'editor', 'support'],
  createdAt: '2024-11-26T18:49:00.000Z',
  lastSeenAt: 1732646940000,
  csrfToken: '9b1de34f0c8e4e2a8d5f1b7c3a6e9d0f',
  ip: '203.0.113.42',
  userAgent: 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36',
  prefs: { theme: 'dark', lang: 'en-GB', tz: 'Europe/Berlin', notifications: { email: true, sms: false, push: true } },
  cart: [
    { sku: 'SKU-10021', qty: 2, price: 19.99, title: 'USB-C cable, braided, 2 m' },
    { sku: 'SKU-20417', qty: 1, price: 249.0, title: 'Mechanical keyboard, ISO layout' },
    { sku: 'SKU-30902', qty: 3, price: 4.5, title: 'Screen cleaning wipes, 50 pack' },
    { sku: 'SKU-41833', qty: 1, price: 89.9, title: 'Laptop stand, aluminium' },
  ],
  flash: [],
  returnTo: '/account/orders?page=2&sort=-createdAt',
  featureFlags: { newCheckout: true, betaSearch: false, darkLaunchReports: true },
})

/** ~4 KB query result (a page of rows). */
const QUERY_BASE = Object.freeze({
  page: 1,
  pageSize: 23,
  total: 1873,
  rows: Array.from({ length: 23 }, (_, i) => ({
    id: 100000 + i,
    customer: `Customer ${i} GmbH`,
    email: `orders+${i}@customer${i}.example`,
    status: ['paid', 'shipped', 'pending', 'refunded'][i % 4],
    total: Math.round((i + 1) * 1337.17) / 100,
    currency: 'EUR',
    createdAt: `2024-10-${String((i % 28) + 1).padStart(2, '0')}T12:00:00.000Z`,
  })),
})

const sessionValue = (id, ver) => ({ id, ver, ...SESSION_BASE })
const queryValue = (id, ver) => ({ id, ver, ...QUERY_BASE })

function sessionIds(n) {
  const rng = prng(0x5e55)
  return Array.from({ length: n }, () => {
    let s = ''
    for (let j = 0; j < 4; j++)
      s += Math.floor(rng() * 2 ** 32)
        .toString(16)
        .padStart(8, '0')
    return s // 32 hex chars, like a typical session id
  })
}

function queryKeys(n) {
  return Array.from({ length: n }, (_, i) => `tenant${i % 17}:orders:list:status=any:sort=-createdAt:page=${i}`)
}

// ---------------------------------------------------------------- key/value workloads

/**
 * One contender run of a get/set workload.
 * @returns the measured row (ops/s, latency percentiles, CPU, ELU, check counts)
 */
async function kvRun({
  contender,
  label,
  keys,
  pick,
  writeRatio,
  ttl,
  makeValue,
  concurrency,
  durationMs,
  warmupMs,
  lat,
  redisPid,
  prefillConcurrency,
}) {
  const n = keys.length
  const versions = new Versions(n)
  let sets = 0
  let gets = 0

  // Prefill: every key once, through the contender's API.
  await pool(n, prefillConcurrency, async (i) => {
    const v = versions.beginWrite(i)
    await contender.set(keys[i], makeValue(keys[i], v), ttl)
    versions.endWrite(i, v)
  })

  const prepare = (rng) => {
    let k = pick(rng)
    if (rng() < writeRatio) {
      for (let tries = 0; versions.busy[k] && tries < 8; tries++) k = pick(rng)
      if (!versions.busy[k]) {
        const key = keys[k]
        const v = versions.beginWrite(k)
        const value = makeValue(key, v)
        sets++
        return { run: () => contender.set(key, value, ttl), after: () => versions.endWrite(k, v) }
      }
    }
    const key = keys[k]
    const lo = versions.acked[k]
    gets++
    return { run: () => contender.get(key), after: (value) => versions.check(label, k, key, lo, value) }
  }

  await runLoad({ concurrency, durationMs: warmupMs, prepare, lat: null, seed: 11 })
  sets = 0
  gets = 0
  const misses0 = versions.misses
  const unexpected0 = versions.unexpectedMisses

  lat.reset()
  const a = snapshot(redisPid)
  const ops = await runLoad({ concurrency, durationMs, prepare, lat, seed: 12 })
  const b = snapshot(redisPid)
  const [p50, p99] = lat.percentiles([50, 99])
  // Every key's final state must be readable and be the last acknowledged version.
  await pool(n, prefillConcurrency, async (k) => {
    if (versions.busy[k]) throw new CheckError(`${label}: key ${keys[k]} still has a write in flight after the run`)
    const value = await contender.get(keys[k])
    if (value === null || value === undefined)
      throw new CheckError(`${label}: final read of ${keys[k]} missed; last acknowledged version ${versions.acked[k]}`)
    if (value.ver !== versions.acked[k])
      throw new CheckError(
        `${label}: final read of ${keys[k]} returned ver=${value.ver}; last acknowledged ${versions.acked[k]}`,
      )
    versions.check(`${label} (final read)`, k, keys[k], versions.acked[k], value)
  })
  return {
    contender: contender.name,
    concurrency,
    ops,
    sets,
    gets,
    misses: versions.misses - misses0,
    unexpectedMisses: versions.unexpectedMisses - unexpected0,
    p50,
    p99,
    ...window(a, b, ops),
  }
}

/**
 * Runs every contender through one workload (`rounds` times, order reversed on
 * odd rounds, results merged) and returns one row per contender.
 *
 * A failed check (CheckError) aborts the whole benchmark, unless `spec.recordCheckFailures`:
 * then that contender's row is `{ contender, concurrency, checkFailed: message }` (no numbers:
 * a contender that served a wrong value is not measured), it sits out the remaining rounds,
 * and the others carry on.
 */
async function kvGroup(env, spec) {
  const rows = new Map()
  const lats = new Map()
  const failures = new Map() // make -> { contender, concurrency, checkFailed }
  for (let round = 0; round < env.rounds; round++) {
    const order = round % 2 === 0 ? spec.contenders : [...spec.contenders].reverse()
    for (const make of order) {
      if (failures.has(make)) continue
      await env.flush()
      const contender = await make()
      const label = `${spec.id} ${contender.name} c=${spec.concurrency}`
      if (!lats.has(contender.name)) lats.set(contender.name, new Latencies(env.latencyCapacity))
      const lat = lats.get(contender.name)
      const keep = lat.n // rounds accumulate latencies
      const inner = new Latencies(0)
      inner.buf = lat.buf.subarray(keep)
      let row
      try {
        row = await kvRun({
          contender,
          label,
          keys: spec.keys,
          pick: spec.pick,
          writeRatio: spec.writeRatio,
          ttl: spec.ttl,
          makeValue: spec.makeValue,
          concurrency: spec.concurrency,
          durationMs: env.durationMs / env.rounds,
          warmupMs: env.warmupMs,
          lat: inner,
          redisPid: spec.redis ? env.redisPid : 0,
          prefillConcurrency: spec.prefillConcurrency ?? 64,
        })
      } catch (err) {
        if (!(spec.recordCheckFailures && err instanceof CheckError)) throw err
        failures.set(make, { contender: contender.name, concurrency: spec.concurrency, checkFailed: err.message })
        env.log(`  ${label}: CHECK FAILED: ${err.message}`)
        continue
      } finally {
        await contender.close()
      }
      lat.n = keep + inner.n
      env.log(`  ${label}: ${fmtInt(row.opsPerSec)} ops/s, p50 ${row.p50.toFixed(1)} µs, p99 ${row.p99.toFixed(1)} µs`)
      if (!rows.has(contender.name)) rows.set(contender.name, [])
      rows.get(contender.name).push(row)
    }
  }
  const failed = new Map([...failures.values()].map((f) => [f.contender, f]))
  const names = [...new Set([...rows.keys(), ...failed.keys()])]
  return names.map((name) => {
    if (failed.has(name)) return failed.get(name)
    const row = combine(rows.get(name))
    // percentiles over every round's latencies
    ;[row.p50, row.p99] = lats.get(name).percentiles([50, 99])
    return row
  })
}

const RATES = ['opsPerSec', 'cpuUsPerOp', 'mainCpuUsPerOp', 'redisCpuUsPerOp', 'elu']
const COUNTS = ['ops', 'sets', 'gets', 'misses', 'unexpectedMisses', 'wallNs']

/**
 * One row for a contender's rounds: counts summed, rates (ops/s, CPU per op, ELU) the median
 * of the rounds. This machine is shared: a round now and then runs 30–45 % slower for every
 * contender alike (W2 55k -> 30k ops/s once, the neighbouring rounds 52–55k), and a median of
 * three rounds leaves such a round out where an average would carry half of it.
 */
function combine(rounds) {
  const row = { ...rounds[0] }
  for (const f of COUNTS) row[f] = rounds.reduce((sum, r) => sum + r[f], 0)
  for (const f of RATES) row[f] = median(rounds.map((r) => r[f]))
  return row
}

const fmtInt = (x) => Math.round(x).toLocaleString('en-US')

// ---------------------------------------------------------------- W3: prefix invalidation

const W3 = {
  totals: [100_000, 1_000_000],
  matching: 1_000,
  nearMiss: 1_000, // share the prefix's text but not the prefix: must survive
  prefix: 'tenant42:orders:',
  nearMissPrefix: 'tenant42:orders-archive:',
  peerNs: 'qc:',
}

/** Keys ferrocache's query index adds to a scope: two sorted sets (docs/decisions.md). */
const INDEX_KEYS = 2

/** Fills the database with the filler keys of other namespaces: `total` keys once the run's own are written. */
async function w3Fill(admin, total) {
  await admin.flushall()
  const filler = total - W3.matching - W3.nearMiss
  const value = JSON.stringify({ filler: true, pad: 'x'.repeat(64) })
  for (let i = 0; i < filler; i += 1000) {
    const p = admin.pipeline()
    for (let j = i; j < Math.min(filler, i + 1000); j++) p.set(`app:other:${j}`, value, 'EX', 3600)
    await p.exec()
  }
  return filler
}

/**
 * Writes the run's own keys through `writeOwn` and checks the key count: `total`, plus
 * `extra` keys of the contender's own (ferrocache's query index: two sorted sets).
 */
async function w3Populate(admin, total, extra, writeOwn) {
  await writeOwn()
  const size = await admin.dbsize()
  if (size !== total + extra)
    throw new CheckError(`W3: expected ${total + extra} keys before invalidation, found ${size}`)
}

/** Removes what is left of a run's own keys (the near-miss keys), so the next run finds only the filler. */
async function w3Clean(admin, filler) {
  for (const pattern of ['fc:*', 'qc:*']) {
    let cursor = '0'
    do {
      const [next, keys] = await admin.scan(cursor, 'MATCH', pattern, 'COUNT', 10_000)
      if (keys.length > 0) await admin.unlink(...keys)
      cursor = next
    } while (cursor !== '0')
  }
  const size = await admin.dbsize()
  if (size !== filler) throw new CheckError(`W3: expected ${filler} filler keys between runs, found ${size}`)
}

/** W3 among `total` keys: `reps` invalidations by each side, alternating who goes first. */
async function w3(env, admin, makeFerro, reps, total) {
  const results = { ferrocache: [], ioredis: [] }
  const entry = (key, i) => ({ id: key, ver: 1, rows: [i, i + 1, i + 2] })
  const Redis = require('ioredis')
  const filler = await w3Fill(admin, total)

  for (let rep = 0; rep < reps; rep++) {
    const order = rep % 2 === 0 ? ['ferrocache', 'ioredis'] : ['ioredis', 'ferrocache']
    for (const who of order) {
      if (who === 'ferrocache') {
        const c = makeFerro()
        try {
          await w3Populate(admin, total, INDEX_KEYS, () =>
            pool(W3.matching + W3.nearMiss, 64, (i) => {
              const key = i < W3.matching ? `${W3.prefix}${i}` : `${W3.nearMissPrefix}${i}`
              return c.cacheQueryResult(key, entry(key, i), 3600)
            }),
          )
          const a = snapshot(env.redisPid)
          const removed = await c.invalidateCache(W3.prefix)
          const b = snapshot(env.redisPid)
          if (removed !== W3.matching)
            throw new CheckError(`W3 ferrocache: invalidateCache returned ${removed}, expected ${W3.matching}`)
          const size = await admin.dbsize()
          const expected = total - W3.matching + INDEX_KEYS
          if (size !== expected) throw new CheckError(`W3 ferrocache: ${size} keys left, expected ${expected}`)
          let alive = 0
          let gone = 0
          await pool(W3.matching + W3.nearMiss, 64, async (i) => {
            const key = i < W3.matching ? `${W3.prefix}${i}` : `${W3.nearMissPrefix}${i}`
            const v = await c.getCachedQuery(key)
            if (i < W3.matching) gone += v === null ? 1 : 0
            else if (v !== null && v.id === key) alive++
          })
          if (gone !== W3.matching || alive !== W3.nearMiss)
            throw new CheckError(
              `W3 ferrocache: after invalidation ${gone}/${W3.matching} matching keys gone, ${alive}/${W3.nearMiss} near-miss keys kept`,
            )
          results.ferrocache.push(stat3(a, b, removed))
        } finally {
          await c.close()
        }
        await w3Clean(admin, filler)
      } else {
        const r = new Redis({ host: '127.0.0.1', port: env.redisPort, lazyConnect: true })
        await r.connect()
        try {
          const ns = W3.peerNs
          await w3Populate(admin, total, 0, async () => {
            const p = r.pipeline()
            for (let i = 0; i < W3.matching + W3.nearMiss; i++) {
              const key = i < W3.matching ? `${W3.prefix}${i}` : `${W3.nearMissPrefix}${i}`
              p.set(ns + key, JSON.stringify(entry(key, i)), 'EX', 3600)
            }
            await p.exec()
          })
          const a = snapshot(env.redisPid)
          const removed = await scanUnlink(r, globEscape(ns + W3.prefix) + '*', 1000)
          const b = snapshot(env.redisPid)
          if (removed !== W3.matching)
            throw new CheckError(`W3 ioredis: SCAN+UNLINK deleted ${removed}, expected ${W3.matching}`)
          const size = await admin.dbsize()
          if (size !== total - W3.matching)
            throw new CheckError(`W3 ioredis: ${size} keys left, expected ${total - W3.matching}`)
          const left = await r.exists(...Array.from({ length: W3.matching }, (_, i) => `${ns}${W3.prefix}${i}`))
          const kept = await r.exists(
            ...Array.from({ length: W3.nearMiss }, (_, i) => `${ns}${W3.nearMissPrefix}${i + W3.matching}`),
          )
          if (left !== 0 || kept !== W3.nearMiss)
            throw new CheckError(
              `W3 ioredis: after invalidation ${left} matching keys left, ${kept}/${W3.nearMiss} near-miss keys kept`,
            )
          results.ioredis.push(stat3(a, b, removed))
        } finally {
          await r.quit()
        }
        await w3Clean(admin, filler)
      }
      env.log(`  W3 ${fmtInt(total)} keys, ${who} rep ${rep + 1}: ${results[who].at(-1).ms.toFixed(2)} ms`)
    }
  }
  return results
}

function stat3(a, b, removed) {
  const w = window(a, b, 1)
  return {
    ms: w.wallNs / 1e6,
    cpuMs: w.cpuUsPerOp / 1e3,
    mainCpuMs: w.mainCpuUsPerOp / 1e3,
    redisCpuMs: w.redisCpuUsPerOp / 1e3,
    removed,
  }
}

/** How an ioredis user removes a prefix: SCAN MATCH <escaped prefix>* COUNT n, UNLINK each page. */
async function scanUnlink(r, pattern, count) {
  let cursor = '0'
  let removed = 0
  do {
    const [next, keys] = await r.scan(cursor, 'MATCH', pattern, 'COUNT', count)
    if (keys.length > 0) removed += await r.unlink(...keys)
    cursor = next
  } while (cursor !== '0')
  return removed
}

function globEscape(s) {
  return s.replace(/[*?[\]\\]/g, '\\$&')
}

module.exports = {
  kvGroup,
  w3,
  W3,
  sessionValue,
  queryValue,
  sessionIds,
  queryKeys,
  zipf,
  hr,
  SESSION_BASE,
  QUERY_BASE,
}
