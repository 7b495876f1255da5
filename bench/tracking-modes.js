#!/usr/bin/env node
// Redis server-assisted client-side caching, for choosing the near cache's invalidation mode.
// One private redis-server (free port, stopped by pid) runs the same workload three times:
//   baseline  no tracking: Redis CPU per op without any invalidation bookkeeping
//   default   CLIENT TRACKING ON NOLOOP: the server remembers which client read which key
//             (tracking table) and tells only those readers when the key changes
//   bcast     CLIENT TRACKING ON BCAST PREFIX fc: NOLOOP: no per-key table, every write under
//             the prefix is sent to every other subscribed client
// Each of BENCH_PROCS connections (one per simulated process, RESP3 so invalidations arrive as
// `>` push frames on the same connection) does BENCH_READS GETs and BENCH_WRITES SETs of ~1 KB
// values, writes spread evenly among the reads, keys drawn Zipf(BENCH_ZIPF_S) over BENCH_KEYS
// keys `fc:s:<i>` (s = 0 is uniform), pipelined BENCH_BATCH commands at a time. Every read goes
// to Redis (no local cache), so the CPU per op isolates the server's tracking work.
// Reported per mode: Redis CPU µs/op (INFO cpu delta / commands), used_memory delta,
// tracking_* fields of INFO, invalidation pushes / keys / bytes received, wall time.
// Run: node bench/tracking-modes.js
// Env: BENCH_PROCS=16 BENCH_KEYS=20000 BENCH_READS=20000 BENCH_WRITES=2000 BENCH_VALUE_BYTES=1000
//      BENCH_BATCH=32 BENCH_ZIPF_S=0.99
'use strict'

const net = require('node:net')
const { startRedis, redisVersion } = require('./redis-server')
const { prng, zipf } = require('./lib')

const env = (name, def) => Number(process.env[name] ?? def)
const P = env('BENCH_PROCS', 16)
const K = env('BENCH_KEYS', 20000)
const R = env('BENCH_READS', 20000)
const W = env('BENCH_WRITES', 2000)
const VALUE_BYTES = env('BENCH_VALUE_BYTES', 1000)
const BATCH = env('BENCH_BATCH', 32)
const ZIPF_S = env('BENCH_ZIPF_S', 0.99)
const PREFIX = 'fc:'
const MODES = {
  baseline: null,
  default: ['CLIENT', 'TRACKING', 'ON', 'NOLOOP'],
  bcast: ['CLIENT', 'TRACKING', 'ON', 'BCAST', 'PREFIX', PREFIX, 'NOLOOP'],
}

// ---------------------------------------------------------------- a tiny RESP3 client

const CRLF = '\r\n'

/** Parses one RESP2/RESP3 value at b[i]: { v, end }, or null when b holds only part of it. */
function parse(b, i) {
  const eol = b.indexOf(CRLF, i)
  if (eol < 0) return null
  const t = String.fromCharCode(b[i])
  const line = b.toString('latin1', i + 1, eol)
  let end = eol + 2
  switch (t) {
    case '+':
      return { v: line, end }
    case '-':
      return { v: new Error(line), end }
    case ':':
    case ',':
    case '(':
      return { v: Number(line), end }
    case '#':
      return { v: line === 't', end }
    case '_':
      return { v: null, end }
    case '$':
    case '=':
    case '!': {
      const n = Number(line)
      if (n < 0) return { v: null, end }
      if (b.length < end + n + 2) return null
      // a verbatim string (=) starts with its 3-letter format and ':'
      const s = b.toString('latin1', t === '=' ? end + 4 : end, end + n)
      return { v: t === '!' ? new Error(s) : s, end: end + n + 2 }
    }
    case '*':
    case '~':
    case '>':
    case '%':
    case '|': {
      const n = Number(line) * (t === '%' || t === '|' ? 2 : 1) // maps and attributes: key, value, ...
      if (n < 0) return { v: null, end }
      const v = []
      for (let k = 0; k < n; k++) {
        const r = parse(b, end)
        if (!r) return null
        v.push(r.v)
        end = r.end
      }
      // an attribute annotates the value that follows it
      return t === '|' ? parse(b, end) : { v, end }
    }
  }
  throw new Error(`RESP: unexpected type byte ${JSON.stringify(t)} at ${i}`)
}

/** One connection: replies resolve requests in order; top-level `>` frames are counted, not replies. */
class Conn {
  constructor(sock) {
    this.sock = sock
    this.buf = Buffer.alloc(0)
    this.waiting = []
    this.push = { messages: 0, keys: 0, bytes: 0 }
    sock.setNoDelay(true)
    sock.on('data', (d) => this.onData(d))
    sock.on('error', (err) => this.waiting.splice(0).forEach((w) => w.reject(err)))
  }

  static open(port) {
    return new Promise((resolve, reject) => {
      const sock = net.connect({ host: '127.0.0.1', port }, () => resolve(new Conn(sock)))
      sock.once('error', reject)
    })
  }

  onData(d) {
    const b = this.buf.length ? Buffer.concat([this.buf, d]) : d
    let pos = 0
    for (;;) {
      const r = parse(b, pos)
      if (!r) break
      if (b[pos] === 0x3e) {
        // `>` push: ['invalidate', [keys...]], or null keys when the whole keyspace was flushed
        this.push.messages++
        this.push.keys += Array.isArray(r.v[1]) ? r.v[1].length : 0
        this.push.bytes += r.end - pos
      } else {
        const w = this.waiting.shift()
        if (r.v instanceof Error) w.reject(r.v)
        else w.resolve(r.v)
      }
      pos = r.end
    }
    this.buf = b.subarray(pos)
  }

  /** Sends the commands in one write; resolves to their replies in order. */
  pipeline(cmds) {
    let out = ''
    for (const args of cmds) {
      out += `*${args.length}\r\n`
      for (const a of args) out += `$${Buffer.byteLength(String(a))}\r\n${a}\r\n`
    }
    this.sock.write(out)
    return Promise.all(cmds.map(() => new Promise((resolve, reject) => this.waiting.push({ resolve, reject }))))
  }

  call(...args) {
    return this.pipeline([args]).then((r) => r[0])
  }

  async close() {
    await this.call('QUIT').catch(() => {})
    this.sock.destroy()
  }
}

// ---------------------------------------------------------------- measurement helpers

/** INFO [section] as { field: string }. */
async function info(conn, section = 'everything') {
  const out = {}
  for (const line of (await conn.call('INFO', section)).split(CRLF)) {
    const at = line.indexOf(':')
    if (at > 0 && !line.startsWith('#')) out[line.slice(0, at)] = line.slice(at + 1)
  }
  return out
}

const cpuSec = (i) => Number(i.used_cpu_user) + Number(i.used_cpu_sys)
const fmt = (n) => Math.round(n).toLocaleString('en-US')
const fmtBytes = (n) => `${n < 0 ? '-' : ''}${fmt(Math.abs(n) / 1024)} KB`
const nowMs = () => Number(process.hrtime.bigint()) / 1e6

/** FLUSHALL, then K keys of ~VALUE_BYTES by the untracked admin connection. */
async function prefill(admin) {
  await admin.call('FLUSHALL')
  const value = 'x'.repeat(VALUE_BYTES)
  for (let i = 0; i < K; i += 1000) {
    const cmds = []
    for (let k = i; k < Math.min(K, i + 1000); k++) cmds.push(['SET', `fc:s:${k}`, value])
    await admin.pipeline(cmds)
  }
}

/** One simulated process: R reads and W writes interleaved (Bresenham spread), BATCH per round trip. */
async function runProcess(conn, p, sample) {
  const rand = prng(1000 + p) // the same seed in every mode: identical key sequences
  const value = `p${p}:`.padEnd(VALUE_BYTES, 'y')
  const total = R + W
  let batch = []
  for (let j = 0; j < total; j++) {
    const key = `fc:s:${sample(rand())}`
    const write = Math.floor(((j + 1) * W) / total) > Math.floor((j * W) / total)
    batch.push(write ? ['SET', key, value] : ['GET', key])
    if (batch.length === BATCH || j === total - 1) {
      await conn.pipeline(batch)
      batch = []
    }
  }
}

async function measure(port, admin, mode, sample) {
  await prefill(admin)
  const conns = await Promise.all(Array.from({ length: P }, () => Conn.open(port)))
  for (const c of conns) {
    await c.call('HELLO', '3')
    if (MODES[mode]) await c.call(...MODES[mode])
  }
  await admin.call('CONFIG', 'RESETSTAT')
  const before = await info(admin)
  const t0 = nowMs()
  await Promise.all(conns.map((c, p) => runProcess(c, p, sample)))
  // a PING per connection after every write is done: broadcast pushes (sent from the server's
  // beforeSleep) and default-mode pushes for the last writes have arrived before its reply
  await Promise.all(conns.map((c) => c.call('PING')))
  const wallMs = nowMs() - t0
  const after = await info(admin)
  const push = { messages: 0, keys: 0, bytes: 0 }
  for (const c of conns) for (const f of Object.keys(push)) push[f] += c.push[f]
  for (const c of conns) {
    if (MODES[mode]) await c.call('CLIENT', 'TRACKING', 'OFF')
    await c.close()
  }
  const tracking = Object.keys(after).filter((f) => f.startsWith('tracking_'))
  return {
    mode,
    cpuUsPerOp: ((cpuSec(after) - cpuSec(before)) * 1e6) / (P * (R + W)),
    mem: [Number(before.used_memory), Number(after.used_memory)],
    tracking: Object.fromEntries(tracking.map((f) => [f, Number(after[f])])),
    push,
    wallMs,
  }
}

// ---------------------------------------------------------------- main

async function main() {
  const redis = await startRedis()
  process.on('exit', () => redis.stopSync())
  const admin = await Conn.open(redis.port)
  try {
    console.log(`redis-server ${redisVersion()} on 127.0.0.1:${redis.port}`)
    console.log(
      `${P} processes × (${fmt(R)} GET + ${fmt(W)} SET), ${fmt(K)} keys of ${VALUE_BYTES} B, ` +
        `${ZIPF_S > 0 ? `Zipf s=${ZIPF_S}` : 'uniform'} keys, pipeline ${BATCH}, RESP3, NOLOOP\n`,
    )
    const sample = zipf(K, ZIPF_S)
    const results = []
    for (const mode of Object.keys(MODES)) results.push(await measure(redis.port, admin, mode, sample))

    const perProc = (n, f = fmt) => `${f(n)} (${f(n / P)}/proc)`
    console.log(
      '| mode | Redis CPU µs/op | used_memory delta | tracking keys/items/prefixes | push messages | ' +
        'keys invalidated | push bytes | wall ms |',
    )
    console.log('|---|---:|---:|---:|---:|---:|---:|---:|')
    for (const r of results) {
      const t = r.tracking
      const tk = ['tracking_total_keys', 'tracking_total_items', 'tracking_total_prefixes']
        .map((f) => (f in t ? fmt(t[f]) : '-'))
        .join(' / ')
      const mem = `${fmtBytes(r.mem[1] - r.mem[0])} (${fmtBytes(r.mem[0])} → ${fmtBytes(r.mem[1])})`
      const { messages, keys, bytes } = r.push
      const row = [r.mode, r.cpuUsPerOp.toFixed(2), mem, tk, perProc(messages), perProc(keys), perProc(bytes, fmtBytes)]
      console.log(`| ${row.join(' | ')} | ${fmt(r.wallMs)} |`)
    }
    // any other tracking_* gauges this Redis version reports (7.0: tracking_clients), after each workload
    for (const f of Object.keys(results[0].tracking).filter((n) => !/^tracking_total_/.test(n)))
      console.log(`\n${f} after the workload: ${results.map((r) => `${r.mode} ${fmt(r.tracking[f])}`).join(', ')}`)

    const def = results.find((r) => r.mode === 'default')
    const bcast = results.find((r) => r.mode === 'bcast')
    const items = def.tracking.tracking_total_items
    const perItem = items ? fmt((def.mem[1] - def.mem[0]) / items) : '?'
    const writes = P * W
    const ratio = (n) => (n / writes).toFixed(1)
    console.log(
      `\nFor N processes: bcast delivers every write to all N-1 others (here ${fmt(writes)} writes → ` +
        `${fmt(bcast.push.keys)} key invalidations = writes × ${ratio(bcast.push.keys)}, not × ${P - 1} only ` +
        'because repeats of a key within one server event-loop turn are merged), whatever each process reads, ' +
        'so its traffic grows with writes × N; default mode notifies only the readers of a key ' +
        `(${ratio(def.push.keys)} per write here) but its server memory grows with keys read × readers ` +
        `(${fmt(items)} tracked items ≈ ${perItem} B of used_memory each).`,
    )
    const [, maxKeys] = await admin.call('CONFIG', 'GET', 'tracking-table-max-keys')
    console.log(
      `tracking-table-max-keys = ${maxKeys} (0 = unbounded): past it, default mode evicts tracked keys ` +
        'by sending invalidations for them, trading memory for extra misses.',
    )
  } finally {
    await admin.close()
    await redis.stop()
  }
}

main().catch((err) => {
  console.error(err)
  process.exitCode = 1
})
