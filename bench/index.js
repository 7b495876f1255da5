'use strict'
// ferrocache benchmark: one run, one machine, ratios against the libraries a
// user would pick instead. `npm run bench` (= node bench/index.js).
//
// Env:
//   BENCH_DURATION_MS  measured time per contender run (default 3000; everything scales with it)
//   BENCH_WARMUP_MS    unmeasured warm-up per contender run (default max(250, duration/5))
//   BENCH_ROUNDS       split each measurement into this many rounds, contender order reversed on odd rounds (default 3);
//                      ops/s and CPU per op are the median of the rounds (bench/workloads.js, combine)
//   BENCH_ONLY         comma list of workloads to run, e.g. "W1,W3" (default all: W1-W6, NC, RL and GM);
//                      NC = the near cache's staleness and Redis CPU (bench/staleness.js, its STALENESS_* env apply)
//   BENCH_CONTENDERS   comma list of contender names to keep in W1/W2/W4/W5/W6, e.g. "ferrocache,ioredis" (default all)
//   BENCH_RESULTS      where to write the markdown (default bench/RESULTS.md; "-" = don't write)
//   NAPI_RS_NATIVE_LIBRARY_PATH  load this .node instead of the one next to index.js

const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { execFileSync } = require('node:child_process')

const { startRedis, redisVersion } = require('./redis-server')
const C = require('./contenders')
const { kvGroup, w3, W3, sessionValue, queryValue, sessionIds, queryKeys, zipf } = require('./workloads')
const { CheckError, median } = require('./lib')
const { w5, W5_WORKERS, W5_SETTLE_MS } = require('./w5')
const { measureNearCache } = require('./staleness')
const { measureRateLimits } = require('./ratelimit')
const { measureGetMany } = require('./getmany')

const durationMs = Number(process.env.BENCH_DURATION_MS || 3000)
const env = {
  durationMs,
  warmupMs: Number(process.env.BENCH_WARMUP_MS || Math.max(250, durationMs / 5)),
  rounds: Math.max(1, Number(process.env.BENCH_ROUNDS || 3)),
  latencyCapacity: Math.min(16_000_000, Math.ceil((durationMs / 1000) * 1_500_000) + 1000),
  log: (s) => console.error(s),
}
const only = process.env.BENCH_ONLY
  ? new Set(process.env.BENCH_ONLY.split(',').map((s) => s.trim().toUpperCase()))
  : null
const want = (id) => !only || only.has(id)
const keepNames = process.env.BENCH_CONTENDERS
  ? new Set(process.env.BENCH_CONTENDERS.split(',').map((s) => s.trim()))
  : null
const resultsPath = process.env.BENCH_RESULTS || path.join(__dirname, 'RESULTS.md')

let redis = null
const closers = []

function machine() {
  let cpuModel = 'unknown'
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'))
    if (m) cpuModel = m[1].trim()
  } catch {
    // no /proc/cpuinfo: the model stays unknown
  }
  let nproc = String(os.availableParallelism ? os.availableParallelism() : os.cpus().length)
  try {
    nproc = execFileSync('nproc', { encoding: 'utf8' }).trim()
  } catch {
    // no nproc: Node's count stands
  }
  return {
    nproc,
    cpuModel,
    node: process.version,
    redis: redisVersion(),
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    memGiB: (os.totalmem() / 2 ** 30).toFixed(1),
    load: os
      .loadavg()
      .map((x) => x.toFixed(2))
      .join(' '),
    commit: gitState(),
  }
}

function gitState() {
  try {
    const opts = { cwd: path.join(__dirname, '..'), encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], opts).trim()
    const dirty = execFileSync(
      'git',
      ['status', '--porcelain', '--', 'src', 'index.js', 'Cargo.toml', 'Cargo.lock'],
      opts,
    ).trim()
    return dirty ? `${head} + uncommitted changes in src/` : head
  } catch {
    return 'unknown (not a git checkout)'
  }
}

/** Section names of an ELF64 little-endian file ([] if it is not one). */
function elfSections(file) {
  try {
    const b = fs.readFileSync(file)
    if (b.readUInt32BE(0) !== 0x7f454c46 || b[4] !== 2 || b[5] !== 1) return []
    const shoff = Number(b.readBigUInt64LE(0x28))
    const shentsize = b.readUInt16LE(0x3a)
    const shnum = b.readUInt16LE(0x3c)
    const strtab = Number(b.readBigUInt64LE(shoff + b.readUInt16LE(0x3e) * shentsize + 0x18))
    const names = []
    for (let i = 0; i < shnum; i++) {
      const at = strtab + b.readUInt32LE(shoff + i * shentsize)
      names.push(b.toString('latin1', at, b.indexOf(0, at)))
    }
    return names
  } catch {
    return []
  }
}

/** The ferrocache .node this process actually mapped. */
function loadedBinary() {
  try {
    const maps = fs.readFileSync('/proc/self/maps', 'utf8')
    const files = new Set()
    for (const line of maps.split('\n')) {
      const f = line.slice(line.indexOf('/'))
      if (line.includes('/') && /ferrocache[^/]*\.node$|libferrocache[^/]*\.so$/.test(f)) files.add(f)
    }
    return [...files].map((f) => {
      const st = fs.statSync(f)
      // A debug build (napi build without --release) carries DWARF sections; a release build is stripped.
      const debug = elfSections(f).includes('.debug_info')
        ? ', has DWARF debug info: LIKELY A DEBUG BUILD, numbers not representative'
        : ''
      return `${path.relative(path.join(__dirname, '..'), f)} (${(st.size / 1024).toFixed(0)} KiB, ${st.mtime.toISOString()}${debug})`
    })
  } catch {
    return []
  }
}

// ---------------------------------------------------------------- formatting

const f1 = (x) => (Number.isFinite(x) ? x.toFixed(1) : '–')
const f2 = (x) => (Number.isFinite(x) ? x.toFixed(2) : '–')
const f3 = (x) => (Number.isFinite(x) ? x.toFixed(3) : '–')
const fInt = (x) => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : '–')
const ratio = (a, b) => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? (a / b).toFixed(2) + '×' : '–')

function table(header, rows) {
  const lines = [`| ${header.join(' | ')} |`, `|${header.map((h, i) => (i < 2 ? '---' : '---:')).join('|')}|`]
  for (const r of rows) lines.push(`| ${r.join(' | ')} |`)
  return lines.join('\n')
}

function kvTables(groups) {
  const main = []
  const ratios = []
  for (const g of groups) {
    const ferro = g.rows.find((r) => r.contender === 'ferrocache' && !r.checkFailed)
    for (const r of g.rows) {
      if (r.checkFailed) {
        // not measured: see "Check failures"
        main.push([g.id, r.contender, String(r.concurrency), '**check failed**', ...Array(8).fill('–')])
        continue
      }
      main.push([
        g.id,
        r.contender,
        String(r.concurrency),
        fInt(r.opsPerSec),
        f1(r.p50),
        f1(r.p99),
        f2(r.cpuUsPerOp),
        f2(r.mainCpuUsPerOp),
        f2(r.redisCpuUsPerOp),
        f2(r.elu),
        `${fInt(r.gets)}/${fInt(r.sets)}`,
        `${r.misses}${r.unexpectedMisses ? ` (${r.unexpectedMisses} after a write!)` : ''}`,
      ])
      if (r !== ferro && ferro) {
        ratios.push([
          g.id,
          `ferrocache / ${r.contender}`,
          String(r.concurrency),
          ratio(ferro.opsPerSec, r.opsPerSec),
          ratio(ferro.p50, r.p50),
          ratio(ferro.p99, r.p99),
          ratio(ferro.cpuUsPerOp, r.cpuUsPerOp),
          ratio(ferro.mainCpuUsPerOp, r.mainCpuUsPerOp),
        ])
      }
    }
  }
  return [
    table(
      [
        'Workload',
        'Contender',
        'Conc.',
        'ops/s',
        'p50 µs',
        'p99 µs',
        'CPU µs/op (process)',
        'JS-thread CPU µs/op',
        'redis-server CPU µs/op',
        'ELU',
        'gets/sets',
        'misses',
      ],
      main,
    ),
    table(
      [
        'Workload',
        'Ratio',
        'Conc.',
        'ops/s (>1 = ferrocache faster)',
        'p50 (<1 = ferrocache lower)',
        'p99',
        'CPU/op (process)',
        'JS-thread CPU/op',
      ],
      ratios,
    ),
  ]
}

/** The rows of contenders whose reads failed the harness's check (kvGroup with recordCheckFailures). */
const checkFailures = (groups) =>
  groups.flatMap((g) => g.rows.filter((r) => r.checkFailed).map((r) => ({ id: g.id, ...r })))

/** W5 rows, and per outage ferrocache's completed calls/s over each peer's. */
function w5Table(rows) {
  const body = rows.map((r) => {
    const ferro = rows.find((x) => x.outage === r.outage && x.contender === 'ferrocache')
    const vs = r === ferro || !ferro ? '' : r.okPerSec > 0 ? ratio(ferro.okPerSec, r.okPerSec) : 'no call completed'
    return [r.outage, r.contender, fInt(r.okPerSec), fInt(r.failed), f3(r.p50), f3(r.p99), f1(r.waiting), vs]
  })
  return table(
    [
      'Outage',
      'Contender',
      'completed calls/s',
      'failed calls',
      'p50 ms',
      'p99 ms',
      'longest wait at the end, ms',
      'ferrocache / peer (completed calls/s)',
    ],
    body,
  )
}

/** Per group holding both: the floor's JS-thread CPU per op over ioredis's. */
function floorRatios(groups) {
  return groups.flatMap((g) => {
    const floor = g.rows.find((r) => r.contender === C.FLOOR)
    const io = g.rows.find((r) => r.contender === 'ioredis')
    return floor && io ? [`${g.id} c=${floor.concurrency} ${ratio(floor.mainCpuUsPerOp, io.mainCpuUsPerOp)}`] : []
  })
}

/** W3 rows of every database size, and per size the median ratio ferrocache / ioredis. */
function w3Table(runs) {
  const row = (total, name, xs) => [
    'W3',
    fInt(total),
    name,
    f2(median(xs.map((x) => x.ms))),
    f2(Math.min(...xs.map((x) => x.ms))),
    f2(Math.max(...xs.map((x) => x.ms))),
    f2(median(xs.map((x) => x.cpuMs))),
    f2(median(xs.map((x) => x.mainCpuMs))),
    f2(median(xs.map((x) => x.redisCpuMs))),
    String(xs[0].removed),
  ]
  const rows = runs.flatMap(({ total, res }) => [
    row(total, 'ferrocache invalidateCache', res.ferrocache),
    row(total, 'ioredis SCAN MATCH + UNLINK', res.ioredis),
  ])
  const ratios = runs.map(({ total, res }) => {
    const fm = median(res.ferrocache.map((x) => x.ms))
    const im = median(res.ioredis.map((x) => x.ms))
    return `among ${fInt(total)} keys: ${(fm / im).toPrecision(2)}× (ferrocache ${ratio(im, fm)} faster)`
  })
  return {
    text: table(
      [
        'Workload',
        'Keys',
        'Contender',
        'median ms',
        'min ms',
        'max ms',
        'process CPU ms',
        'JS-thread CPU ms',
        'redis-server CPU ms',
        'removed',
      ],
      rows,
    ),
    ratios,
  }
}

/** The NC section: bench/staleness.js's numbers (measureNearCache) as markdown lines. */
function ncSection({ staleness: st, redisCpu: cpu }) {
  const lines = ['## Near cache: staleness and Redis CPU', '']
  lines.push(
    `Staleness: a plain ioredis client (worker thread) writes a new version of one ~1 KB session every ~${st.intervalMs} ms while one ferrocache reader ` +
      '(near cache on, defaults) calls `getSession` on it in a tight loop; lag = from the moment the `set` resolved to the end of the first read ' +
      'returning that version or a newer one (0 when read first). ' +
      `Redis CPU: a W1-like load (${100 - cpu.writeRatio * 100}% getSession / ${cpu.writeRatio * 100}% setSession, ~1 KB, ${fInt(cpu.keys)} keys, ` +
      `${cpu.concurrency} concurrent callers) with \`nearCache: { enabled: false }\` and with the near cache on (default); redis-server CPU per op ` +
      `from INFO cpu (used_cpu_sys + used_cpu_user) over ${fInt(cpu.loadMs)} ms per run, median of the runs in the order ${cpu.order.join(', ')}.`,
  )
  lines.push('')
  lines.push(
    table(
      ['Measure', 'Value'],
      [
        ['writes observed', fInt(st.writes)],
        [
          'reads of the replaced version inside the window',
          `${fInt(st.staleReads)} (after ${st.staleBehindWrites} of the ${st.writes} writes)`,
        ],
        ['lag p50 µs', f1(st.p50Us)],
        ['lag p99 µs', f1(st.p99Us)],
        ['lag max µs', f1(st.maxUs)],
        ['redis-server CPU µs/op, nearCache off', f2(cpu.off.usPerOp)],
        ['redis-server CPU µs/op, nearCache on (default)', f2(cpu.on.usPerOp)],
        ['ratio on / off', ratio(cpu.on.usPerOp, cpu.off.usPerOp)],
      ],
    ),
  )
  lines.push('')
  lines.push(
    `Reader: ${fInt(st.reads)} reads in ${f2(st.elapsedS)} s, near cache ${fInt(st.hits)} hits / ${fInt(st.nearMisses)} misses, ` +
      `${fInt(st.invalidations)} invalidations, ${fInt(st.emptyReads)} reads that found nothing; ${st.seenBeforeAck} of ${st.writes} versions ` +
      `were read before their \`set\` resolved (lag 0). Load: ${fInt(cpu.off.opsPerSec)} ops/s with the near cache off, ` +
      `${fInt(cpu.on.opsPerSec)} ops/s on (near-cache hit rate of the reads ${f3(cpu.on.nearHitRate)}).`,
  )
  lines.push(
    '',
    'A read inside the window (it started after the `set` resolved and returned the version before) is what the lag ' +
      'bounds: Redis acknowledges the write to its client before its invalidation reaches the reader. Within one process, ' +
      'once its own write resolves, the value it replaced is never read (`__test__/near-cache.test.ts`).',
  )
  return lines
}

// ---------------------------------------------------------------- W6 helpers

const W6 = { sessions: 20_000, hot: 1_000, writeRatio: 0.05 }

/** Logs, on close, how many reads ferrocache's near cache answered over the contender's whole run. */
function withNearCacheLog(c) {
  const close = c.close
  c.close = () => {
    const n = c.cache.metrics().nearCache
    env.log(
      `    ferrocache near cache, whole run (prefill, warm-up, measurement, read-back): ${fInt(n.hits)} hits, ${fInt(n.misses)} misses (hit rate ${f3(n.hitRate)}), ${fInt(n.invalidations)} invalidations, tracking ${n.tracking}`,
    )
    return close()
  }
  return c
}

/** Logs, on close, what node-redis's client-side cache answered over the contender's whole run. */
function withCscLog(c) {
  const close = c.close
  c.close = () => {
    const st = c.client.clientSideCache?.stats()
    if (st)
      env.log(
        `    node-redis CSC cache, whole run (prefill, warm-up, measurement, read-back): ${fInt(st.hitCount)} hits, ${fInt(st.missCount)} misses (hit rate ${f3(st.hitRate())}), ${fInt(st.evictionCount)} evictions`,
      )
    return close()
  }
  return c
}

// ---------------------------------------------------------------- main

async function main() {
  const started = new Date()
  const m = machine()
  // Load the addon first, so a broken build fails before Redis starts.
  C.loadFerrocache()
  const binary = loadedBinary()
  env.log(`ferrocache binary: ${binary.join(', ') || 'unknown'}`)
  if (binary.some((b) => b.includes('DEBUG BUILD')))
    env.log(
      'WARNING: the loaded addon is a debug build; build with `cargo build --release` and set NAPI_RS_NATIVE_LIBRARY_PATH, or run `npm run build`',
    )

  redis = await startRedis()
  env.redisPid = redis.pid
  env.redisPort = redis.port
  env.log(`redis-server ${m.redis} pid ${redis.pid} on 127.0.0.1:${redis.port}`)

  const Redis = require('ioredis')
  const admin = new Redis({ host: '127.0.0.1', port: redis.port, lazyConnect: true })
  await admin.connect()
  closers.push(() => admin.quit())
  env.flush = () => admin.flushall()

  const url = redis.url
  const keep = (list) => list.filter(([name]) => !keepNames || keepNames.has(name)).map(([, make]) => make)
  const redisContenders = (kind) =>
    keep([
      ['ferrocache', async () => C.ferrocache(url, kind)],
      ['ioredis', () => C.ioredis(redis.port, `ior:${kind[0]}:`)],
      ['node-redis', () => C.nodeRedis(url, `nr:${kind[0]}:`)],
      ['cache-manager', () => C.cacheManager(url, `cm${kind[0]}`)],
      [C.FLOOR, async () => C.jsonFloor()],
    ])

  const groups = []
  const ids = sessionIds(10_000)
  const uniform = (rng) => Math.floor(rng() * ids.length)
  const t0 = Date.now()

  if (want('W1')) {
    for (const concurrency of [1, 64, 256]) {
      env.log(`W1 sessions, 1 KB, 50/50, concurrency ${concurrency}`)
      const rows = await kvGroup(env, {
        id: 'W1',
        concurrency,
        keys: ids,
        pick: uniform,
        writeRatio: 0.5,
        ttl: 3600,
        makeValue: sessionValue,
        contenders: redisContenders('session'),
        redis: true,
      })
      groups.push({ id: 'W1', rows })
    }
  }

  if (want('W2')) {
    env.log('W2 query cache, 4 KB, Zipf 0.99, 90/10, concurrency 128')
    const keys = queryKeys(10_000)
    const z = zipf(keys.length, 0.99)
    const rows = await kvGroup(env, {
      id: 'W2',
      concurrency: 128,
      keys,
      pick: (rng) => z(rng()),
      writeRatio: 0.1,
      ttl: 300,
      makeValue: queryValue,
      contenders: [
        ...redisContenders('query'),
        // the cost of the query index on gets and sets (W3's "within 10 %")
        ...keep([
          [
            'ferrocache queryIndex:false',
            async () => ({ ...C.ferrocache(url, 'query', { queryIndex: false }), name: 'ferrocache queryIndex:false' }),
          ],
          // the same without the near cache: every get goes to Redis
          [
            'ferrocache nearCache:false',
            async () => ({
              ...C.ferrocache(url, 'query', { nearCache: { enabled: false } }),
              name: 'ferrocache nearCache:false',
            }),
          ],
        ]),
      ],
      redis: true,
      prefillConcurrency: 128,
    })
    groups.push({ id: 'W2', rows })
  }

  if (want('W6')) {
    // hot sessions: a small working set read far more often than it is written, where an
    // in-process L1 (ferrocache's near cache, node-redis's client-side cache, bentocache's L1) pays off
    const keys = sessionIds(W6.sessions)
    const stride = W6.sessions / W6.hot
    const pick = (rng) => Math.floor(rng() * W6.hot) * stride
    const contenders = keep([
      ['ferrocache', async () => withNearCacheLog(C.ferrocache(url, 'session'))],
      ['ioredis', () => C.ioredis(redis.port, 'ior:w6:')],
      ['node-redis', () => C.nodeRedis(url, 'nr:w6:')],
      ['node-redis CSC', async () => withCscLog(await C.nodeRedisCsc(url, 'nrc:w6:'))],
      ['bentocache', () => C.bentocache(redis.port, 'bcw6')],
    ])
    for (const concurrency of [1, 64]) {
      env.log(
        `W6 hot sessions, 1 KB, ${fInt(W6.hot)} hot of ${fInt(W6.sessions)}, ${100 - W6.writeRatio * 100}/${W6.writeRatio * 100}, concurrency ${concurrency}`,
      )
      const rows = await kvGroup(env, {
        id: 'W6',
        concurrency,
        keys,
        pick,
        writeRatio: W6.writeRatio,
        ttl: 3600,
        makeValue: sessionValue,
        contenders,
        redis: true,
        recordCheckFailures: true,
      })
      groups.push({ id: 'W6', rows })
    }
  }

  let w3res = null
  if (want('W3')) {
    const reps = Math.max(3, Math.min(7, Math.round(durationMs / 600)))
    w3res = []
    for (const total of W3.totals) {
      env.log(`W3 invalidateCache: ${W3.matching} of ${total} keys`)
      const res = await w3(env, admin, () => C.loadFerrocache().createCacheManager({ url }), reps, total)
      w3res.push({ total, res })
    }
  }

  if (want('W4')) {
    env.log('W4 memory mode, 1 KB, 50/50, concurrency 64')
    const rows = await kvGroup(env, {
      id: 'W4',
      concurrency: 64,
      keys: ids,
      pick: uniform,
      writeRatio: 0.5,
      ttl: 3600,
      makeValue: sessionValue,
      contenders: keep([
        ['ferrocache', async () => C.ferrocache('memory://', 'session')],
        ['lru-cache', async () => C.lruCache()],
        ['@cacheable/memory', async () => C.cacheableMemory()],
      ]),
      redis: false,
    })
    groups.push({ id: 'W4', rows })
  }
  let w5rows = null
  if (want('W5')) {
    const quiet = () => {} // node-redis reports every reconnect attempt; the table counts the failures
    const makers = [
      ['ferrocache', async (server) => C.ferrocache(server.url, 'session')],
      ['ioredis', (server) => C.ioredis(server.port, 'ior:')],
      ['node-redis', (server) => C.nodeRedis(server.url, 'nr:', quiet)],
      ['cache-manager', (server) => C.cacheManager(server.url, 'cm')],
    ].filter(([name]) => !keepNames || keepNames.has(name))
    w5rows = await w5(env, makers, sessionValue('w5', 1))
  }
  let nc = null
  if (want('NC')) {
    env.log('NC near cache: staleness after an external write, redis-server CPU per op with the near cache off and on')
    await env.flush()
    nc = await measureNearCache({ url, port: redis.port, log: (s) => env.log(s && `  ${s}`) })
  }
  let rl = null
  if (want('RL')) {
    env.log('RL rate limiting: ferrocache vs rate-limiter-flexible and express-rate-limit + rate-limit-redis')
    await env.flush()
    rl = []
    await measureRateLimits(redis, { out: (s) => rl.push(s), progress: (s) => env.log(`  ${s}`) })
  }
  let gm = null
  if (want('GM')) {
    env.log('GM a page of 100 query results: getOrSetMany vs 100 getOrSet vs cache-manager mget')
    await env.flush()
    gm = []
    await measureGetMany(redis, { out: (s) => gm.push(s), progress: (s) => env.log(`  ${s}`) })
  }
  const elapsedS = (Date.now() - t0) / 1000

  // ---- report
  const out = []
  out.push(`# ferrocache benchmark results`)
  out.push('')
  out.push(`Run ${started.toISOString()} — \`npm run bench\` (bench/index.js), ${elapsedS.toFixed(0)} s of workloads.`)
  out.push('')
  out.push('## Machine')
  out.push('')
  out.push(`- nproc: ${m.nproc}; CPU: ${m.cpuModel}; RAM ${m.memGiB} GiB; ${m.os}`)
  out.push(`- Node ${m.node}; redis-server ${m.redis} (own process on a free loopback port, no persistence)`)
  out.push(
    `- load average (1/5/15 min) at start: ${m.load}; at end: ${os
      .loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')} (other work on the machine shares these ${m.nproc} cores)`,
  )
  out.push(`- ferrocache: ${m.commit}; binary ${binary.join(', ') || 'unknown'}`)
  out.push(
    `- settings: ${fInt(env.durationMs)} ms measured per contender and workload, in ${env.rounds} round(s) (order reversed on odd rounds; ops/s, CPU and ELU are the median of the rounds, latencies cover all of them), each after ${fInt(env.warmupMs)} ms of warm-up, FLUSHALL and a prefill of every key`,
  )
  out.push('')
  if (groups.length) {
    const [main, ratios] = kvTables(groups)
    out.push('## Throughput, latency, CPU')
    out.push('')
    out.push(
      'W1: sessions, ~1 KB JSON, 50% set (TTL 3600 s) / 50% get over 10,000 ids, uniform. ' +
        'W2: query results, ~4 KB JSON, 10,000 keys, Zipf(0.99) key choice, 90% get / 10% set, concurrency 128. ' +
        'W4: in-process only (ferrocache `memory://` vs lru-cache and @cacheable/memory holding JSON text), 1 KB, 50/50, concurrency 64. ' +
        `W6: hot sessions, ~1 KB JSON, ${fInt(W6.sessions)} ids prefilled, every op on one of ${fInt(W6.hot)} hot ids (uniform), ` +
        `${100 - W6.writeRatio * 100}% get / ${W6.writeRatio * 100}% set (TTL 3600 s); ferrocache with its near cache (default), ` +
        'node-redis CSC = node-redis v5 with `clientSideCache` (RESP3, maxEntries 100,000), bentocache = memory L1 (its default 1,000-entry LRU) + redis L2 + redis bus. ' +
        'Concurrency = async workers in a closed loop. Latency = per op, from call to resumption after `await`. ' +
        "CPU = process.cpuUsage (all threads, incl. ferrocache's tokio workers) per op; JS-thread CPU = the main thread alone; " +
        'redis-server CPU = the server process. ELU = event-loop utilization over the window.',
    )
    out.push('')
    out.push(main)
    out.push('')
    out.push('### Ratios (same run)')
    out.push('')
    out.push(ratios)
    out.push('')
    const floors = floorRatios(groups)
    if (floors.length) {
      out.push(
        `The lowest JS-thread CPU per op any client could reach here, \`${C.FLOOR}\` / ioredis (JSON.stringify/parse, one promise per call and the harness, no store, no I/O): ${floors.join('; ')}.`,
      )
      out.push('')
    }
  }
  if (w3res) {
    const t = w3Table(w3res)
    out.push('## W3: prefix invalidation')
    out.push('')
    out.push(
      `${W3.matching} keys matching the prefix among ${W3.totals.map(fInt).join(' and ')} keys in the database ` +
        `(${W3.nearMiss} near-miss keys that share the prefix text but not the prefix, the rest other namespaces), ` +
        `${w3res[0].res.ferrocache.length} repetitions each, the matching keys written again every time. ` +
        'ferrocache reads its query index (ZRANGEBYLEX, UNLINK, ZREM in 1,000-member script steps); the peer runs SCAN MATCH with COUNT 1000 and UNLINK per page.',
    )
    out.push('')
    out.push(t.text)
    out.push('')
    out.push(`Ratio ferrocache / ioredis (median ms): ${t.ratios.join('; ')}`)
    out.push('')
  }
  if (w5rows) {
    out.push('## W5: during a Redis outage')
    out.push('')
    out.push(
      `Sessions, ~1 KB, 50/50 get/set, ${W5_WORKERS} workers, each contender on its own redis-server with its default options. ` +
        `The server is SIGKILLed (connections refused) or SIGSTOPped (hung); measured from ${fInt(W5_SETTLE_MS)} ms after that ` +
        `(ferrocache's breaker is open by then) for ${fInt(env.durationMs / 2)} ms: calls that completed, calls that failed, ` +
        'latency of the completed ones, and how long the oldest call in flight had been waiting when the window closed (such calls end once the server is back).',
    )
    out.push('')
    out.push(w5Table(w5rows))
    out.push('')
  }
  if (nc) {
    out.push(...ncSection(nc))
    out.push('')
  }
  if (rl) {
    out.push('## Rate limiting (bench/ratelimit.js)', '', ...rl, '')
  }
  if (gm) {
    out.push('## Batch reads (bench/getmany.js)', '', ...gm, '')
  }
  const failures = checkFailures(groups)
  out.push(
    failures.length
      ? '## Checks (all passed except the check failures listed below; any other failure would have aborted the run)'
      : '## Checks (all passed, or the run would have aborted)',
  )
  out.push('')
  if (failures.length) {
    out.push(
      'Check failures (W6 records them instead of aborting; the contender is left out of the tables from then on, its numbers are not reported):',
    )
    out.push('')
    for (const f of failures) out.push(`- ${f.checkFailed}`) // the message starts with "<workload> <contender> c=<n>:"
    out.push('')
  }
  out.push(
    `- Every read${failures.length ? ' (by the contenders not listed above)' : ''} returned the key it asked for with a version no older than the last acknowledged write before the read started ` +
      'and no newer than the last write issued, or a miss; after every run each key was read back and had to be exactly its last acknowledged version.',
  )
  out.push(
    `- W3: ferrocache invalidateCache returned ${W3.matching}; the SCAN peer deleted ${W3.matching}; DBSIZE dropped by exactly ${W3.matching}; all near-miss keys survived.`,
  )
  if (nc)
    out.push(
      `- NC: the staleness probe counts the reads inside the window instead of aborting (${fInt(nc.staleness.staleReads)} in this run, see its section); ` +
        "the Redis CPU load's reads were checked as above.",
    )
  out.push(
    '- "misses" counts reads that found nothing; a miss after an acknowledged write is flagged in the table (none expected: TTLs are far away and every store has room).',
  )
  // the record of what was tried lives in HISTORY.md (hand-written); only point to it
  out.push('', 'The history of optimizations, with measured numbers: [HISTORY.md](HISTORY.md).')
  const text = out.join('\n') + '\n'
  console.log(text)
  if (resultsPath !== '-') fs.writeFileSync(resultsPath, text)
}

async function cleanup() {
  for (const close of closers.splice(0).reverse()) {
    try {
      await close()
    } catch {
      // a contender that fails to close does not stop the others
    }
  }
  if (redis) {
    const r = redis
    redis = null
    await r.stop()
  }
}

function onSignal(sig) {
  console.error(`\n${sig}: stopping redis-server and exiting`)
  if (redis) redis.stopSync()
  redis = null
  process.exit(130)
}
process.once('SIGINT', onSignal)
process.once('SIGTERM', onSignal)
process.on('exit', () => {
  if (redis) redis.stopSync()
})

main()
  .then(cleanup)
  .then(() => {
    process.removeListener('SIGINT', onSignal)
    process.removeListener('SIGTERM', onSignal)
  })
  .catch(async (err) => {
    console.error(err instanceof CheckError ? `CHECK FAILED: ${err.message}` : err)
    await cleanup().catch(() => {})
    process.exit(1)
  })
