#!/usr/bin/env node
// After a Redis outage: drop the near cache, or revalidate what it held? One private redis-server (free port,
// stopped by pid) holds N ~1 KB sessions written by a plain ioredis client; for each re-read fraction f:
//   drop        a fresh manager (empty near cache) reads f·N of them with getSession, 64 concurrent callers:
//               every read is a miss (GET + PTTL in one pipeline), then installed in the near cache
//   revalidate  ioredis MGET of all N keys in chunks of 500 (4 in flight), each reply compared with the held
//               JSON text, plus f·N getSession near-cache hits by a manager that already holds the sessions
// Reported: wall ms and MB sent by Redis (INFO stats total_net_output_bytes delta), medians of RECOVERY_ROUNDS
// runs per policy, the two policies alternating.
// Run: node bench/near-recovery.js      Env: RECOVERY_SESSIONS=10000 RECOVERY_ROUNDS=5 RECOVERY_CONCURRENCY=64
'use strict'

const { runWithRedis } = require('./redis-server')
const { pool, prng, median, hr } = require('./lib')
const { sessionIds, SESSION_BASE } = require('./workloads')

const num = (name, def) => Number(process.env[name] ?? def)
const N = num('RECOVERY_SESSIONS', 10_000)
const ROUNDS = Math.max(1, num('RECOVERY_ROUNDS', 5))
const CONCURRENCY = num('RECOVERY_CONCURRENCY', 64)
const FRACTIONS = [0.1, 0.5, 1]
const CHUNK = 500 // keys per MGET
const CHUNKS_IN_FLIGHT = 4
const KEY_PREFIX = 'rec:'
const TTL_S = 3600

const sessionValue = (id, ver) => ({ id, ver, ...SESSION_BASE })
const sessionKey = (id) => `${KEY_PREFIX}s:${id}` // the manager's key layout: <keyPrefix>s:<sessionId>

const fmt1 = (x) => (Number.isFinite(x) ? x.toFixed(1) : '–')
const fmt2 = (x) => (Number.isFinite(x) ? x.toFixed(2) : '–')
const fInt = (x) => Math.round(x).toLocaleString('en-US')
const MB = 1024 * 1024
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

let redis = null

function main() {
  return runWithRedis(async (server) => {
    redis = server
    const Redis = require('ioredis')
    const admin = new Redis({ host: '127.0.0.1', port: redis.port, lazyConnect: true })
    const reval = new Redis({ host: '127.0.0.1', port: redis.port, lazyConnect: true })
    await admin.connect()
    await reval.connect()
    try {
      await run(admin, reval)
    } finally {
      await reval.quit()
      await admin.quit()
    }
  })
}

// ---------------------------------------------------------------- helpers

/** A manager whose tracking connection is up (as after recovery), its near cache empty. */
async function readyManager() {
  const { createCacheManager } = require('./contenders').loadFerrocache()
  const cache = createCacheManager({ url: redis.url, keyPrefix: KEY_PREFIX })
  await cache.getSession('recovery-bench-absent') // opens the connections; a miss on a key nobody reads
  for (let i = 0; i < 200; i++) {
    const h = await cache.health()
    if (h.nearCache && h.nearCache.tracking === 'active') return cache
    await sleep(10)
  }
  await cache.close()
  throw new Error('the near cache did not become active within 2 s')
}

/** Bytes Redis has sent to its clients so far. */
async function outputBytes(admin) {
  const m = /^total_net_output_bytes:(\d+)/m.exec(await admin.info('stats'))
  if (!m) throw new Error('INFO stats has no total_net_output_bytes')
  return Number(m[1])
}

// ---------------------------------------------------------------- the bench

async function run(admin, reval) {
  // The reply to the INFO that opens a window is counted in that window: measured once, subtracted.
  const i0 = await outputBytes(admin)
  const i1 = await outputBytes(admin)
  const infoBytes = i1 - i0
  const windowBytes = async (before) => (await outputBytes(admin)) - before - infoBytes

  // Sessions: written once by ioredis, under the manager's key layout.
  await admin.flushall()
  const ids = sessionIds(N)
  const texts = ids.map((id) => JSON.stringify(sessionValue(id, 1)))
  for (let i = 0; i < N; i += 1000) {
    const p = admin.pipeline()
    for (let k = i; k < Math.min(N, i + 1000); k++) p.set(sessionKey(ids[k]), texts[k], 'EX', TTL_S)
    for (const [err] of await p.exec()) if (err) throw err
  }
  const dbsize = await admin.dbsize()
  if (dbsize !== N) throw new Error(`expected ${N} keys, found ${dbsize}`)
  const meanBytes = texts.reduce((s, t) => s + Buffer.byteLength(t), 0) / N

  // Every session read is checked: the right id and version, and the exact text written.
  const check = (value, i) => {
    if (!value || value.id !== ids[i] || value.ver !== 1)
      throw new Error(`getSession(${ids[i]}) returned ${JSON.stringify(value)?.slice(0, 120)}`)
  }
  {
    const cache = await readyManager()
    try {
      for (const i of [0, N >> 1, N - 1]) {
        const value = await cache.getSession(ids[i])
        check(value, i)
        if (JSON.stringify(value) !== texts[i]) throw new Error(`getSession(${ids[i]}) differs from the text written`)
      }
    } finally {
      await cache.close()
    }
  }

  // Which sessions come back: a seeded shuffle; fraction f reads the first f·N of it.
  const order = Array.from({ length: N }, (_, i) => i)
  const rng = prng(0x2ec0)
  for (let i = N - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1))
    ;[order[i], order[j]] = [order[j], order[i]]
  }
  const chunks = []
  for (let i = 0; i < N; i += CHUNK) chunks.push(ids.slice(i, i + CHUNK).map(sessionKey))

  const readAll = (cache, count) =>
    pool(count, CONCURRENCY, async (j) => {
      const i = order[j]
      check(await cache.getSession(ids[i]), i)
    })
  const nearDelta = (cache, m0) => {
    const m1 = cache.metrics().nearCache
    return { hits: m1.hits - m0.hits, misses: m1.misses - m0.misses }
  }

  /** DROP: a fresh manager, every read a miss. */
  async function drop(count) {
    const cache = await readyManager()
    try {
      const m0 = cache.metrics().nearCache
      const b0 = await outputBytes(admin)
      const t0 = hr()
      await readAll(cache, count)
      const ms = Number(hr() - t0) / 1e6
      const bytes = await windowBytes(b0)
      const d = nearDelta(cache, m0)
      if (d.misses !== count || d.hits !== 0)
        throw new Error(`drop: expected ${count} near-cache misses, got ${d.misses} misses and ${d.hits} hits`)
      return { ms, bytes }
    } finally {
      await cache.close()
    }
  }

  /** REVALIDATE: MGET every held key and compare, then read the returning sessions from the near cache. */
  async function revalidate(count) {
    const cache = await readyManager()
    try {
      await readAll(cache, count) // unmeasured: the near cache now holds the sessions that will be read

      const b0 = await outputBytes(admin)
      const t0 = hr()
      let confirmed = 0
      await pool(chunks.length, CHUNKS_IN_FLIGHT, async (c) => {
        const values = await reval.mget(chunks[c])
        for (let j = 0; j < values.length; j++) if (values[j] === texts[c * CHUNK + j]) confirmed++
      })
      const mgetMs = Number(hr() - t0) / 1e6
      const mgetBytes = await windowBytes(b0)
      if (confirmed !== N) throw new Error(`revalidate: ${confirmed} of ${N} held texts confirmed`)

      const m0 = cache.metrics().nearCache
      const b1 = await outputBytes(admin)
      const t1 = hr()
      await readAll(cache, count)
      const hitMs = Number(hr() - t1) / 1e6
      const hitBytes = await windowBytes(b1)
      const d = nearDelta(cache, m0)
      if (d.hits !== count || d.misses !== 0)
        throw new Error(`revalidate: expected ${count} near-cache hits, got ${d.hits} hits and ${d.misses} misses`)
      return { ms: mgetMs + hitMs, bytes: mgetBytes + hitBytes, mgetMs, hitMs, mgetBytes, hitBytes }
    } finally {
      await cache.close()
    }
  }

  console.log(
    `${fInt(N)} sessions of ${fInt(meanBytes)} B of JSON (${fmt1((N * meanBytes) / MB)} MB), written by ioredis and ` +
      `read back by getSession; reads at concurrency ${CONCURRENCY}; MGET chunks of ${CHUNK}, ${CHUNKS_IN_FLIGHT} in ` +
      `flight; after one warm-up run of each, ${ROUNDS} runs per policy and fraction, alternating ` +
      `(INFO stats reply of ${infoBytes} B subtracted)`,
  )

  const results = new Map(FRACTIONS.map((f) => [f, { drop: [], revalidate: [] }]))
  const policies = { drop, revalidate }
  // One unmeasured run of each policy first (JIT, connection pools, allocator).
  await drop(Math.round(FRACTIONS[0] * N))
  await revalidate(Math.round(FRACTIONS[0] * N))
  const t0 = hr()
  for (let r = 0; r < ROUNDS; r++) {
    for (const f of FRACTIONS) {
      const count = Math.round(f * N)
      const names = r % 2 === 0 ? ['drop', 'revalidate'] : ['revalidate', 'drop']
      for (const name of names) results.get(f)[name].push(await policies[name](count))
    }
  }
  console.log(`(measured in ${fmt1(Number(hr() - t0) / 1e9)} s)`)

  console.log('')
  console.log('| f | reads | drop ms | drop MB | revalidate ms | revalidate MB | costs less |')
  console.log('|---:|---:|---:|---:|---:|---:|---|')
  const details = []
  for (const f of FRACTIONS) {
    const { drop: d, revalidate: v } = results.get(f)
    const med = (rs, field) => median(rs.map((x) => x[field]))
    const dMs = med(d, 'ms')
    const dMB = med(d, 'bytes') / MB
    const vMs = med(v, 'ms')
    const vMB = med(v, 'bytes') / MB
    const time = dMs <= vMs ? 'drop' : 'revalidate'
    const bytes = dMB <= vMB ? 'drop' : 'revalidate'
    const less = time === bytes ? time : `${time} (time), ${bytes} (bytes)`
    const pctLabel = `${Math.round(f * 100)} %`
    console.log(
      `| ${pctLabel} | ${fInt(f * N)} | ${fmt1(dMs)} | ${fmt2(dMB)} | ${fmt1(vMs)} | ${fmt2(vMB)} | ${less} |`,
    )
    details.push(
      `  f ${pctLabel}: drop ms per run ${d.map((x) => fmt1(x.ms)).join(', ')}; revalidate = MGET ` +
        `${fmt1(med(v, 'mgetMs'))} ms / ${fmt2(med(v, 'mgetBytes') / MB)} MB + near-cache hits ` +
        `${fmt1(med(v, 'hitMs'))} ms / ${fInt(med(v, 'hitBytes'))} B (runs: ${v.map((x) => fmt1(x.ms)).join(', ')})`,
    )
  }
  console.log('')
  console.log('Medians of the parts, and every run:')
  for (const line of details) console.log(line)
}

main()
