// Fault injection: real redis-server processes on free
// loopback ports, killed (SIGKILL = refused), hung (SIGSTOP), resumed (SIGCONT)
// and restarted on the same port, with concurrent traffic. Asserts that no error
// reaches callers while the fallback is on, that nothing is lost or resurrected
// across an outage (journal replay, newer write wins), and how fast the manager
// detects and recovers. Measured numbers are printed with console.log.
//
// Every server is stopped by pid (helpers/traffic.ts), every manager and client
// is closed, so Jest ends by itself.

import Redis from 'ioredis'
import {
  createCacheManager,
  CacheManager,
  CacheOptions,
  CacheHealth,
  codes,
  ErrorEvent,
  FallbackEvent,
  RecoveredEvent,
} from '..'
import { freePort, RawRedis, uniquePrefix } from './helpers/redis-server'
import { Run, runNode } from './helpers/child'
import {
  CallRecord,
  describeError,
  killAllRedis,
  percentile,
  RedisProc,
  restartOn,
  runWorkers,
  sleep,
  startRedisFree,
  startRedisOn,
  waitFor,
} from './helpers/traffic'

const TIMEOUT = 250 // commandTimeoutMs of every manager here
const MARGIN = 150 // allowed on top of it for a call served during a hang

// ---------------------------------------------------------------------------
// bookkeeping: every manager/client made here is closed after each test

const managers: CacheManager[] = []
const raws: RawRedis[] = []
const ioredisClients: Redis[] = []

afterEach(async () => {
  await Promise.all(managers.splice(0).map((m) => m.close()))
  await Promise.all(raws.splice(0).map((r) => r.close()))
  for (const c of ioredisClients.splice(0)) c.disconnect()
})
afterAll(async () => {
  await killAllRedis()
})

const now = () => performance.now()

interface Stamped<T> {
  t: number
  info: T
}

/** A manager with its events recorded (listeners registered before any call). */
interface Watched {
  m: CacheManager
  fallback: Stamped<FallbackEvent>[]
  recovered: Stamped<RecoveredEvent>[]
  errors: Stamped<ErrorEvent>[]
}

function watched(options: CacheOptions): Watched {
  const m = createCacheManager(options)
  managers.push(m)
  const w: Watched = { m, fallback: [], recovered: [], errors: [] }
  m.on('fallback', (info) => w.fallback.push({ t: now(), info }))
  m.on('recovered', (info) => w.recovered.push({ t: now(), info }))
  m.on('error', (info) => w.errors.push({ t: now(), info }))
  return w
}

function plain(options: CacheOptions): CacheManager {
  const m = createCacheManager(options)
  managers.push(m)
  return m
}

function rawClient(port: number): RawRedis {
  const r = new RawRedis(port)
  raws.push(r)
  return r
}

/** The calls that rejected, as 'op: error' lines. */
function rejections(records: CallRecord[]): string[] {
  return records.filter((r) => r.error !== undefined).map((r) => `${r.op}: ${describeError(r.error)}`)
}

function ms(x: number): string {
  return `${x.toFixed(1)} ms`
}

// ---------------------------------------------------------------------------
// Traffic model: every worker owns a few keys (sessions and query results) and
// writes them with increasing versions, so the last value written for each key
// is known exactly. Values embed key and version.

interface KeyState {
  id: string
  kind: 's' | 'q'
  /** last version whose write resolved (0 = never written) */
  written: number
  /** performance.now() when that write started */
  writeStart: number
  next: number
}

interface BadRead {
  key: string
  expected: number
  got: unknown
  at: number
}

class Model {
  readonly keys: KeyState[][]
  /** reads that returned a value that is not the last one written (wrong key or version) */
  readonly wrong: BadRead[] = []
  /** reads that returned null although the last write must still be visible */
  readonly lost: BadRead[] = []
  nullReads = 0
  reads = 0
  writes = 0

  constructor(
    private readonly m: CacheManager,
    workers: number,
    perWorker: number,
    /** may this read return null for a key that was written? */
    private readonly nullAllowed: (k: KeyState, readStart: number) => boolean,
  ) {
    this.keys = Array.from({ length: workers }, (_, w) =>
      Array.from({ length: perWorker }, (_, i) => ({
        id: `w${w}:k${i}`,
        kind: i % 2 === 0 ? 's' : 'q',
        written: 0,
        writeStart: 0,
        next: 0,
      })),
    )
  }

  static value(k: KeyState, version: number) {
    return { k: k.id, v: version, pad: 'x'.repeat(64) }
  }

  check(k: KeyState, got: unknown, readStart: number, bucket?: { wrong: BadRead[]; lost: BadRead[] }) {
    const out = bucket ?? this
    if (got === null) {
      if (k.written === 0) return
      if (this.nullAllowed(k, readStart)) {
        this.nullReads++
        return
      }
      out.lost.push({ key: k.id, expected: k.written, got, at: readStart })
      return
    }
    const v = got as { k?: unknown; v?: unknown }
    if (v.k !== k.id || v.v !== k.written) out.wrong.push({ key: k.id, expected: k.written, got, at: readStart })
  }

  /** One random call of worker `w` (sequential per worker, so per key). */
  step = async (w: number): Promise<string> => {
    const k = this.keys[w][Math.floor(Math.random() * this.keys[w].length)]
    const start = now()
    if (Math.random() < 0.5) {
      const version = ++k.next
      const value = Model.value(k, version)
      if (k.kind === 's') await this.m.setSession(k.id, value)
      else await this.m.cacheQueryResult(k.id, value)
      k.written = version
      k.writeStart = start
      this.writes++
      return k.kind === 's' ? 'setSession' : 'cacheQueryResult'
    }
    const got = k.kind === 's' ? await this.m.getSession(k.id) : await this.m.getCachedQuery(k.id)
    this.reads++
    this.check(k, got, start)
    return k.kind === 's' ? 'getSession' : 'getCachedQuery'
  }

  /** Reads every key through `reader`, checking each against the last write. */
  async verifyAll(reader: CacheManager): Promise<{ wrong: BadRead[]; lost: BadRead[]; present: number }> {
    const bucket = { wrong: [] as BadRead[], lost: [] as BadRead[] }
    let present = 0
    for (const row of this.keys) {
      await Promise.all(
        row.map(async (k) => {
          const start = now()
          const got = k.kind === 's' ? await reader.getSession(k.id) : await reader.getCachedQuery(k.id)
          if (got !== null) present++
          this.check(k, got, start, bucket)
        }),
      )
    }
    return { ...bucket, present }
  }
}

interface Sample {
  t: number
  mode: CacheHealth['mode']
  status: CacheHealth['status']
  ms: number
}

/** Polls health() sequentially until stop() (never concurrently with itself). */
async function pollHealth(m: CacheManager, stop: () => boolean, out: Sample[], everyMs = 25): Promise<void> {
  while (!stop()) {
    const t = now()
    const h = await m.health()
    out.push({ t, mode: h.mode, status: h.status, ms: now() - t })
    await sleep(everyMs)
  }
}

function latencyStats(records: CallRecord[]) {
  const lat = records.map((r) => r.end - r.start)
  return {
    calls: records.length,
    p50: percentile(lat, 50),
    p99: percentile(lat, 99),
    max: lat.length ? lat.reduce((a, b) => (a > b ? a : b), -Infinity) : NaN,
  }
}

function summarize(label: string, obj: Record<string, unknown>) {
  // eslint-disable-next-line no-console
  console.log(
    `[failover] ${label}\n` +
      Object.entries(obj)
        .map(([k, v]) => `  ${k}: ${typeof v === 'number' ? +v.toFixed(2) : JSON.stringify(v)}`)
        .join('\n'),
  )
}

// ---------------------------------------------------------------------------

describe('1. SIGKILL under 200 concurrent workers, restart on the same port', () => {
  it('no call rejects, one fallback + one recovered, memory during the outage, redis within 2 s of the restart, no wrong or lost values', async () => {
    const server = await startRedisFree()
    const port = server.port
    const prefix = uniquePrefix('kill')
    const w = watched({ url: server.url, keyPrefix: prefix, commandTimeoutMs: TIMEOUT })
    await w.m.setSession('warmup', 1) // the connection is open before the traffic starts

    let killAt = Infinity
    // A write that started before the kill (+100 ms for the signal to land) may
    // have reached the killed server only, which lost it (no persistence): its
    // key may read as null from then on. Any later write must stay visible.
    const model = new Model(w.m, 200, 4, (k) => k.writeStart < killAt + 100)

    let stop = false
    const samples: Sample[] = []
    const poller = pollHealth(w.m, () => stop, samples)
    const traffic = runWorkers(
      200,
      () => stop,
      (wk) => model.step(wk),
    )

    await sleep(2000)
    killAt = now()
    await server.kill()
    await sleep(2000)
    const restartSpawnAt = now()
    const server2 = await restartOn(port)
    const restartReadyAt = now()
    await sleep(2000)
    stop = true
    const records = await traffic
    await poller

    const fallbackAt = w.fallback.length ? w.fallback[0].t : NaN
    const recoveredAt = w.recovered.length ? w.recovered[0].t : NaN
    const during = samples.filter((s) => s.t > fallbackAt && s.t + s.ms < restartSpawnAt)
    const firstMemory = samples.find((s) => s.t > killAt && s.mode === 'memory')
    const firstRedis = samples.find((s) => s.t > restartReadyAt && s.mode === 'redis')
    const backAfter = firstRedis ? firstRedis.t + firstRedis.ms - restartReadyAt : NaN
    const h = await w.m.health()
    const viaA = await model.verifyAll(w.m)
    const fresh = plain({ url: server2.url, keyPrefix: prefix, commandTimeoutMs: TIMEOUT })
    const viaB = await model.verifyAll(fresh)
    const outage = records.filter((r) => r.start >= fallbackAt && r.end <= restartSpawnAt)
    const o = latencyStats(outage)
    const all = latencyStats(records)
    summarize('test 1 (SIGKILL, 200 workers)', {
      totalCalls: records.length,
      reads: model.reads,
      writes: model.writes,
      nullReadsAllowed: model.nullReads,
      detectMs_fallbackEvent: fallbackAt - killAt,
      detectMs_firstHealthMemory: firstMemory ? firstMemory.t + firstMemory.ms - killAt : NaN,
      restartSpawnToReadyMs: restartReadyAt - restartSpawnAt,
      recoverMs_eventAfterReady: recoveredAt - restartReadyAt,
      recoverMs_healthRedisAfterReady: backAfter,
      recoveredInfo: w.recovered.map((e) => e.info),
      outageCallsPerSec: outage.length / ((restartSpawnAt - fallbackAt) / 1000),
      outageP50Ms: o.p50,
      outageP99Ms: o.p99,
      outageMaxMs: o.max,
      allP50Ms: all.p50,
      allP99Ms: all.p99,
      allMaxMs: all.max,
      wrongReads: model.wrong.length,
      lostReads: model.lost.length,
      finalWrongViaB: viaB.wrong.length,
      finalLostViaB: viaB.lost.length,
      keysPresentAfter: viaB.present,
    })

    // no call rejected
    const rejected = rejections(records)
    expect(rejected.slice(0, 5)).toEqual([])
    expect(rejected.length).toBe(0)

    // events: exactly one switch to memory, one recovery
    expect(w.fallback.map((e) => e.info.kind)).toEqual(['connection'])
    expect(w.recovered.length).toBe(1)
    expect(fallbackAt).toBeGreaterThan(killAt)
    expect(recoveredAt).toBeGreaterThan(restartSpawnAt)
    expect(w.recovered[0].info.replayed).toBeGreaterThan(0)

    // health: memory during the outage, redis again within 2 s of the restart
    expect(during.length).toBeGreaterThan(10)
    expect(during.filter((s) => s.mode !== 'memory' || s.status !== 'degraded')).toEqual([])
    expect(firstMemory).toBeDefined()
    expect(firstRedis).toBeDefined()
    expect(backAfter).toBeLessThan(2000)
    // and it stays on Redis (no flapping)
    const after = samples.filter((s) => s.t > firstRedis!.t)
    expect(after.filter((s) => s.mode !== 'redis' || s.status !== 'healthy')).toEqual([])

    // values: never a wrong one; nothing written after the kill is lost
    expect(model.wrong.slice(0, 5)).toEqual([])
    expect(model.lost.slice(0, 5)).toEqual([])

    // after the traffic: the manager and a fresh one (reading Redis) agree with the model
    expect(h.mode).toBe('redis')
    expect(h.failover!.journalDepth).toBe(0)
    expect(viaA.wrong.slice(0, 5)).toEqual([])
    expect(viaA.lost.slice(0, 5)).toEqual([])
    expect(viaB.wrong.slice(0, 5)).toEqual([])
    expect(viaB.lost.slice(0, 5)).toEqual([])
  }, 40000)
})

describe('2. SIGSTOP under 50 workers', () => {
  it(`every call completes within commandTimeoutMs + ${MARGIN} ms, none rejects; back to redis after SIGCONT; nothing lost`, async () => {
    const server = await startRedisFree()
    const prefix = uniquePrefix('hang')
    const w = watched({ url: server.url, keyPrefix: prefix, commandTimeoutMs: TIMEOUT })
    await w.m.setSession('warmup', 1)

    let stopAt = Infinity
    let recoveredAt = Infinity
    // Redis keeps its data across SIGSTOP: a null read is allowed only while
    // the outage lasts, for a key whose last write went to Redis before it.
    const model = new Model(w.m, 50, 4, (k, readStart) => k.writeStart < stopAt + 100 && readStart < recoveredAt)

    let stop = false
    // Even workers stop calling at SIGCONT: their keys' final values come from
    // the outage writes and the replay alone (odd workers keep writing through
    // the recovery, which would overwrite a bad replay).
    let frozen = false
    const samples: Sample[] = []
    const poller = pollHealth(w.m, () => stop, samples, 50)
    const traffic = runWorkers(
      50,
      () => stop,
      async (wk) => {
        if (frozen && wk % 2 === 0) {
          await sleep(10)
          return 'idle'
        }
        return model.step(wk)
      },
    )

    await sleep(1500)
    stopAt = now()
    server.pause()
    await sleep(2000)
    frozen = true
    const contAt = now()
    server.resume()
    const back = await waitFor('recovered after SIGCONT', () => w.recovered.length > 0, 5000)
    recoveredAt = w.recovered[0].t
    await sleep(1000)
    stop = true
    const records = (await traffic).filter((r) => r.op !== 'idle')
    await poller

    const fallbackAt = w.fallback.length ? w.fallback[0].t : NaN
    const firstMemory = samples.find((s) => s.t > stopAt && s.mode === 'memory')
    const firstRedis = samples.find((s) => s.t > contAt && s.mode === 'redis')
    const fresh = plain({ url: server.url, keyPrefix: prefix, commandTimeoutMs: TIMEOUT })
    const final = await model.verifyAll(fresh)
    const frozenKey = (b: BadRead) => Number(b.key.slice(1, b.key.indexOf(':'))) % 2 === 0
    const outage = records.filter((r) => r.start >= fallbackAt && r.end <= contAt)
    const o = latencyStats(outage)
    const all = latencyStats(records)
    summarize('test 2 (SIGSTOP, 50 workers)', {
      totalCalls: records.length,
      detectMs_fallbackEvent: fallbackAt - stopAt,
      detectMs_firstHealthMemory: firstMemory ? firstMemory.t + firstMemory.ms - stopAt : NaN,
      recoverMs_eventAfterSIGCONT: recoveredAt - contAt,
      recoverMs_waited: back,
      recoverMs_healthRedisAfterSIGCONT: firstRedis ? firstRedis.t + firstRedis.ms - contAt : NaN,
      recoveredInfo: w.recovered[0].info,
      outageCallsPerSec: outage.length / ((contAt - fallbackAt) / 1000),
      outageP50Ms: o.p50,
      outageP99Ms: o.p99,
      allMaxMs: all.max,
      wrongReadsDuringTraffic: model.wrong.length,
      lostReadsDuringTraffic: model.lost.length,
      finalWrong_frozenWorkers: final.wrong.filter(frozenKey).length,
      finalWrong_activeWorkers: final.wrong.filter((b) => !frozenKey(b)).length,
      finalLost: final.lost.length,
      finalWrongSample: final.wrong.slice(0, 2),
    })

    const rejected = rejections(records)
    expect(rejected.slice(0, 5)).toEqual([])
    const slow = records
      .filter((r) => r.end - r.start > TIMEOUT + MARGIN)
      .map((r) => `${r.op} ${ms(r.end - r.start)} at +${ms(r.start - stopAt)}`)
    expect(slow.slice(0, 10)).toEqual([])

    expect(w.fallback.map((e) => e.info.kind)).toEqual(['timeout'])
    expect(w.recovered.length).toBe(1)
    expect(firstMemory).toBeDefined()
    expect(firstRedis).toBeDefined()
    expect(firstRedis!.t + firstRedis!.ms - contAt).toBeLessThan(2000)
    const h = await w.m.health()
    expect(h.mode).toBe('redis')
    expect(h.status).toBe('healthy')

    // Redis kept its data and the journal was replayed: every key holds its last write
    expect(final.wrong.slice(0, 5)).toEqual([])
    expect(final.lost.slice(0, 5)).toEqual([])
    expect(model.wrong.slice(0, 5)).toEqual([])
    expect(model.lost.slice(0, 5)).toEqual([])
  }, 30000)
})

/** Hangs `server` and makes calls (reads only: nothing left in Redis' socket buffers) until the manager is in memory mode. */
async function hangUntilMemory(w: Watched, server: RedisProc): Promise<number> {
  const t = now()
  server.pause()
  await waitFor(
    'memory mode after SIGSTOP',
    async () => {
      await Promise.all([w.m.getSession('__probe_a'), w.m.getSession('__probe_b'), w.m.getSession('__probe_c')])
      return w.fallback.length > 0
    },
    5000,
    0,
  )
  expect((await w.m.health()).mode).toBe('memory')
  return now() - t
}

describe('3. replay after a hang (SIGSTOP/SIGCONT)', () => {
  it('a session written during the outage reaches Redis with its remaining TTL; an invalidated query and a deleted session stay gone', async () => {
    const server = await startRedisFree()
    const raw = rawClient(server.port)
    const prefix = uniquePrefix('replay')
    const a = watched({ url: server.url, keyPrefix: prefix, commandTimeoutMs: TIMEOUT })

    await a.m.setSession('doomed', { d: 1 })
    await a.m.cacheQueryResult('orders_1', 'o1')
    await a.m.cacheQueryResult('orders_2', 'o2')
    await a.m.cacheQueryResult('ordersX', 'ox')
    expect(await raw.exists(`${prefix}s:doomed`)).toBe(1)
    expect(await raw.exists(`${prefix}q:orders_1`)).toBe(1)

    const detectMs = await hangUntilMemory(a, server)

    const writtenAt = Date.now()
    await a.m.setSession('fresh', { f: 2 }, 60)
    await a.m.invalidateCache('orders_')
    await a.m.deleteSession('doomed')
    // the outage view is consistent already
    expect(await a.m.getSession('fresh')).toEqual({ f: 2 })
    expect(await a.m.getCachedQuery('orders_1')).toBeNull()
    expect(await a.m.getSession('doomed')).toBeNull()
    const h = await a.m.health()
    expect(h.status).toBe('degraded')
    expect(h.failover!.journalDepth).toBe(3)

    await sleep(300)
    const contAt = now()
    server.resume()
    const recoverMs = await waitFor('recovered', () => a.recovered.length > 0, 5000)
    expect(a.recovered[0].info.replayed).toBe(3)
    expect((await a.m.health()).mode).toBe('redis')

    const b = plain({ url: server.url, keyPrefix: prefix, commandTimeoutMs: TIMEOUT })
    for (const m of [a.m, b]) {
      expect(await m.getSession('fresh')).toEqual({ f: 2 })
      expect(await m.getCachedQuery('orders_1')).toBeNull()
      expect(await m.getCachedQuery('orders_2')).toBeNull()
      expect(await m.getCachedQuery('ordersX')).toBe('ox') // literal prefix: not under 'orders_'
      expect(await m.getSession('doomed')).toBeNull()
    }
    expect(await raw.getUtf8(`${prefix}s:fresh`)).toBe('{"f":2}')
    const pttl = await raw.pttl(`${prefix}s:fresh`)
    const remaining = 60000 - (Date.now() - writtenAt)
    expect(pttl).toBeLessThanOrEqual(remaining + 100)
    expect(pttl).toBeGreaterThan(remaining - 1000)
    expect(await raw.exists(`${prefix}q:orders_1`)).toBe(0)
    expect(await raw.exists(`${prefix}q:orders_2`)).toBe(0)
    expect(await raw.exists(`${prefix}s:doomed`)).toBe(0)
    expect(await raw.getUtf8(`${prefix}q:ordersX`)).toBe('"ox"')

    summarize('test 3 (replay after SIGSTOP)', {
      detectMs,
      recoverMs_afterSIGCONT: now() - contAt,
      recoverWaitMs: recoverMs,
      recoveredInfo: a.recovered[0].info,
      pttl,
      expectedRemaining: remaining,
    })
  }, 20000)

  it('a write that timed out on the hung server does not overwrite a newer write made during the outage', async () => {
    const server = await startRedisFree()
    const raw = rawClient(server.port)
    const prefix = uniquePrefix('zombie')
    const a = watched({ url: server.url, keyPrefix: prefix, commandTimeoutMs: TIMEOUT })
    await a.m.setSession('z', 'v0')

    server.pause()
    // these writes go out to the hung server, time out, and are served from memory
    const t0 = now()
    await Promise.all([a.m.setSession('z', 'v1'), a.m.setSession('y', 'y1'), a.m.setSession('x', 'x1')])
    const firstWrites = now() - t0
    expect(firstWrites).toBeLessThan(TIMEOUT + MARGIN)
    // the event comes through its own threadsafe function: it may arrive after the calls settle
    await waitFor('fallback event', () => a.fallback.length > 0, 1000)
    expect(a.fallback.length).toBe(1)
    await a.m.setSession('z', 'v2') // newer, in memory mode
    expect(await a.m.getSession('z')).toBe('v2')
    await sleep(500)

    server.resume()
    await waitFor('recovered', () => a.recovered.length > 0, 5000)
    const b = plain({ url: server.url, keyPrefix: prefix, commandTimeoutMs: TIMEOUT })
    expect(await raw.getUtf8(`${prefix}s:z`)).toBe('"v2"')
    expect(await a.m.getSession('z')).toBe('v2')
    expect(await b.getSession('z')).toBe('v2')
    expect(await b.getSession('y')).toBe('y1')
  }, 20000)
})

describe('4. newer write wins on replay (equal TTLs)', () => {
  let server: RedisProc
  beforeAll(async () => {
    server = await startRedisFree()
  })

  async function race(first: 'A' | 'B') {
    const prefix = uniquePrefix(`race${first}`)
    const raw = rawClient(server.port)
    const a = watched({ url: server.url, keyPrefix: prefix, commandTimeoutMs: TIMEOUT })
    const b = plain({ url: server.url, keyPrefix: prefix, commandTimeoutMs: TIMEOUT })
    await a.m.setSession('other', 1) // A connected and healthy
    a.m.simulateOutage({ mode: 'refuse' })
    expect((await a.m.health()).mode).toBe('memory')
    const writeA = () => a.m.setSession('S', { by: 'A' }, 120)
    const writeB = () => b.setSession('S', { by: 'B' }, 120)
    if (first === 'A') {
      await writeA()
      await sleep(250)
      await writeB()
    } else {
      await writeB()
      await sleep(250)
      await writeA()
    }
    expect(await raw.getUtf8(`${prefix}s:S`)).toBe('{"by":"B"}') // A's write is still journaled
    a.m.endSimulatedOutage()
    await waitFor('recovered', () => a.recovered.length > 0, 5000)
    expect(a.recovered[0].info.replayed).toBeGreaterThanOrEqual(1)
    return { raw, a, b, key: `${prefix}s:S` }
  }

  it('A (outage) writes S, then B writes S to Redis: B wins', async () => {
    const { raw, a, b, key } = await race('A')
    expect(await raw.getUtf8(key)).toBe('{"by":"B"}')
    expect(await a.m.getSession('S')).toEqual({ by: 'B' })
    expect(await b.getSession('S')).toEqual({ by: 'B' })
  })

  it('B writes S to Redis, then A (outage) writes S: A wins', async () => {
    const { raw, a, b, key } = await race('B')
    expect(await raw.getUtf8(key)).toBe('{"by":"A"}')
    expect(await a.m.getSession('S')).toEqual({ by: 'A' })
    expect(await b.getSession('S')).toEqual({ by: 'A' })
    const pttl = await raw.pttl(key)
    expect(pttl).toBeGreaterThan(115000)
    expect(pttl).toBeLessThanOrEqual(120000)
  })
})

describe('5. Redis down at start', () => {
  it('serves from memory (degraded), then switches to redis when a server starts on the port, with the writes in Redis', async () => {
    const port = await freePort()
    const prefix = uniquePrefix('late')
    const w = watched({ url: `redis://127.0.0.1:${port}`, keyPrefix: prefix, commandTimeoutMs: TIMEOUT })

    await expect(w.m.setSession('early', { e: 1 })).resolves.toBeUndefined()
    await expect(w.m.cacheQueryResult('q1', [1, 2])).resolves.toBeUndefined()
    await expect(w.m.getSession('early')).resolves.toEqual({ e: 1 })
    await expect(w.m.getSession('missing')).resolves.toBeNull()
    // a few more calls so the breaker opens
    for (let i = 0; i < 3 && w.fallback.length === 0; i++) await w.m.getSession('missing')
    const h = await w.m.health()
    expect(h.status).toBe('degraded')
    expect(h.mode).toBe('memory')
    expect(h.redis.connected).toBe(false)
    expect(h.failover!.journalDepth).toBe(2)
    expect(w.fallback.map((e) => e.info.kind)).toEqual(['connection'])

    await sleep(500)
    const startAt = now()
    const server = await startRedisOn(port)
    expect(server).not.toBeNull()
    const readyAt = now()
    const raw = rawClient(port)
    const back = await waitFor('redis mode', async () => (await w.m.health()).mode === 'redis', 5000, 20)
    expect(w.recovered.length).toBe(1)
    expect(w.recovered[0].info.replayed).toBe(2)
    expect(await raw.getUtf8(`${prefix}s:early`)).toBe('{"e":1}')
    expect(await raw.getUtf8(`${prefix}q:q1`)).toBe('[1,2]')
    const h2 = await w.m.health()
    expect(h2.status).toBe('healthy')
    expect(h2.failover!.journalDepth).toBe(0)
    await w.m.setSession('late', 'L')
    expect(await raw.getUtf8(`${prefix}s:late`)).toBe('"L"')
    summarize('test 5 (down at start)', {
      spawnToReadyMs: readyAt - startAt,
      redisModeAfterReadyMs: back,
      recoveredEventAfterReadyMs: w.recovered[0].t - readyAt,
    })
  }, 20000)
})

describe('6. wrong password', () => {
  let server: RedisProc
  beforeAll(async () => {
    server = await startRedisFree(['--requirepass', 's3cret'])
  })

  it('error event kind misconfiguration without the password; calls served from memory; health degraded with a password-free lastError', async () => {
    const w = watched({
      url: `redis://:wrong@127.0.0.1:${server.port}`,
      keyPrefix: uniquePrefix('badpw'),
      commandTimeoutMs: TIMEOUT,
    })
    await expect(w.m.setSession('s', { a: 1 })).resolves.toBeUndefined()
    await expect(w.m.getSession('s')).resolves.toEqual({ a: 1 })
    await expect(w.m.cacheQueryResult('q', 1)).resolves.toBeUndefined()
    await waitFor('error event', () => w.errors.length > 0, 2000)
    expect(w.errors[0].info.kind).toBe('misconfiguration')
    for (const e of w.errors) expect(e.info.message).not.toContain('wrong')
    expect(w.fallback.length).toBe(1)
    expect(w.fallback[0].info.kind).toBe('misconfiguration')
    expect(w.fallback[0].info.cause).not.toContain('wrong')
    const h = await w.m.health()
    expect(h.status).toBe('degraded')
    expect(h.mode).toBe('memory')
    expect(h.redis.connected).toBe(false)
    expect(typeof h.redis.lastError).toBe('string')
    expect(h.redis.lastError!.length).toBeGreaterThan(0)
    expect(h.redis.lastError).not.toContain('wrong')
    expect(h.redis.url).not.toContain('wrong')
    summarize('test 6 (wrong password)', { error: w.errors[0].info, lastError: h.redis.lastError, url: h.redis.url })
  })

  it('with the right password everything works in redis mode', async () => {
    const prefix = uniquePrefix('goodpw')
    const w = watched({ url: `redis://:s3cret@127.0.0.1:${server.port}`, keyPrefix: prefix, commandTimeoutMs: TIMEOUT })
    await w.m.setSession('s', { a: 1 })
    expect(await w.m.getSession('s')).toEqual({ a: 1 })
    const h = await w.m.health()
    expect(h.status).toBe('healthy')
    expect(h.mode).toBe('redis')
    expect(h.redis.lastError).toBeNull()
    expect(h.redis.url).not.toContain('s3cret')
    expect(w.errors).toEqual([])
    expect(w.fallback).toEqual([])
    const client = new Redis({ host: '127.0.0.1', port: server.port, password: 's3cret', maxRetriesPerRequest: 1 })
    ioredisClients.push(client)
    expect(await client.get(`${prefix}s:s`)).toBe('{"a":1}')
  })
})

describe('7. fallback disabled', () => {
  it('with Redis killed calls reject with ERR_REDIS_UNAVAILABLE (fast once the breaker is open); after a restart they work again', async () => {
    const server = await startRedisFree()
    const port = server.port
    const w = watched({
      url: server.url,
      keyPrefix: uniquePrefix('nofb'),
      commandTimeoutMs: TIMEOUT,
      fallback: { enabled: false },
    })
    await w.m.setSession('s', 1)
    expect(await w.m.getSession('s')).toBe(1)

    await server.kill()
    // until the connection's loss is seen, the near cache still answers 's' as a plain hit
    await waitFor('tracking lost', () => w.m.metrics().nearCache.tracking !== 'active', 5000)
    const first: number[] = []
    for (let i = 0; i < 3; i++) {
      const t = now()
      await expect(w.m.getSession('s')).rejects.toMatchObject({ code: codes.REDIS_UNAVAILABLE })
      first.push(now() - t)
    }
    expect(w.fallback.length).toBe(1)
    const h = await w.m.health()
    expect(h.status).toBe('unhealthy')
    expect(h.failover!.breaker).toBe('open')
    const open: number[] = []
    const calls: Array<() => Promise<unknown>> = [
      () => w.m.getSession('s'),
      () => w.m.setSession('s', 2),
      () => w.m.deleteSession('s'),
      () => w.m.cacheQueryResult('q', 1),
      () => w.m.getCachedQuery('q'),
      () => w.m.invalidateCache('q'),
    ]
    for (const call of calls) {
      const t = now()
      let err: unknown
      await call().then(
        () => {},
        (e) => (err = e),
      )
      open.push(now() - t)
      expect(err).toBeInstanceOf(Error)
      expect((err as { code?: string }).code).toBe(codes.REDIS_UNAVAILABLE)
    }
    expect(Math.max(...open)).toBeLessThan(50)

    const server2 = await restartOn(port)
    const readyAt = now()
    await waitFor('redis mode', async () => (await w.m.health()).mode === 'redis', 5000, 20)
    const backMs = now() - readyAt
    await expect(w.m.setSession('s', 3)).resolves.toBeUndefined()
    await expect(w.m.getSession('s')).resolves.toBe(3)
    expect((await w.m.health()).status).toBe('healthy')
    expect(server2.pid).toBeGreaterThan(0)
    summarize('test 7 (fallback off)', {
      firstCallsMs: first,
      openCallsMaxMs: Math.max(...open),
      backAfterRestartMs: backMs,
    })
  }, 20000)
})

describe('8. simulateOutage', () => {
  let server: RedisProc
  beforeAll(async () => {
    server = await startRedisFree()
  })

  it("mode 'refuse': fallback kind simulated, calls from memory, journal grows; endSimulatedOutage replays to Redis", async () => {
    const prefix = uniquePrefix('simr')
    const raw = rawClient(server.port)
    const w = watched({ url: server.url, keyPrefix: prefix, commandTimeoutMs: TIMEOUT })
    await w.m.setSession('before', 0)
    w.m.simulateOutage({ mode: 'refuse' })
    await waitFor('fallback event', () => w.fallback.length > 0, 1000)
    expect(w.fallback.map((e) => e.info.kind)).toEqual(['simulated'])
    await expect(w.m.setSession('s1', { a: 1 })).resolves.toBeUndefined()
    await expect(w.m.cacheQueryResult('q1', 'Q')).resolves.toBeUndefined()
    await expect(w.m.getSession('s1')).resolves.toEqual({ a: 1 })
    await expect(w.m.getCachedQuery('q1')).resolves.toBe('Q')
    expect(await raw.exists(`${prefix}s:s1`)).toBe(0) // not in Redis yet
    const h = await w.m.health()
    expect(h.status).toBe('degraded')
    expect(h.mode).toBe('memory')
    expect(h.failover!.journalDepth).toBeGreaterThan(0)
    expect(h.failover!.breaker).toBe('open')

    w.m.endSimulatedOutage()
    const recoverMs = await waitFor('recovered', () => w.recovered.length > 0, 5000)
    expect(w.recovered[0].info.replayed).toBeGreaterThan(0)
    expect(await raw.getUtf8(`${prefix}s:s1`)).toBe('{"a":1}')
    expect(await raw.getUtf8(`${prefix}q:q1`)).toBe('"Q"')
    const h2 = await w.m.health()
    expect(h2.status).toBe('healthy')
    expect(h2.mode).toBe('redis')
    expect(h2.failover!.journalDepth).toBe(0)
    summarize('test 8 refuse', { recoverMs, recovered: w.recovered[0].info })
  })

  it("mode 'hang': calls complete within commandTimeoutMs + margin; recovers after endSimulatedOutage", async () => {
    const prefix = uniquePrefix('simh')
    const raw = rawClient(server.port)
    const w = watched({ url: server.url, keyPrefix: prefix, commandTimeoutMs: TIMEOUT })
    await w.m.setSession('before', 0)
    w.m.simulateOutage({ mode: 'hang' })
    const lat: number[] = []
    const timed = async (f: () => Promise<unknown>) => {
      const t = now()
      const r = await f()
      lat.push(now() - t)
      return r
    }
    await Promise.all([
      timed(() => w.m.setSession('s1', 1)),
      timed(() => w.m.getSession('before')),
      timed(() => w.m.cacheQueryResult('q', 2)),
      timed(() => w.m.getCachedQuery('q')),
      timed(() => w.m.deleteSession('before')),
    ])
    for (let i = 0; i < 20; i++) await timed(() => w.m.getSession('s1'))
    expect(Math.max(...lat)).toBeLessThan(TIMEOUT + MARGIN)
    expect(await w.m.getSession('s1')).toBe(1)
    const ht = now()
    const h = await w.m.health()
    const healthMs = now() - ht
    expect(healthMs).toBeLessThan(TIMEOUT + MARGIN)
    expect(h.status).toBe('degraded')
    expect(w.fallback.map((e) => e.info.kind)).toEqual(['simulated'])

    w.m.endSimulatedOutage()
    await waitFor('recovered', () => w.recovered.length > 0, 5000)
    expect(await raw.getUtf8(`${prefix}s:s1`)).toBe('1')
    expect(await raw.exists(`${prefix}s:before`)).toBe(0)
    expect(await raw.getUtf8(`${prefix}q:q`)).toBe('2')
    summarize('test 8 hang', { maxCallMs: Math.max(...lat), healthMs })
  })

  it('an invalid mode throws TypeError ERR_INVALID_ARG and changes nothing', async () => {
    const w = watched({ url: server.url, keyPrefix: uniquePrefix('simx'), commandTimeoutMs: TIMEOUT })
    for (const bad of [{ mode: 'explode' }, { mode: 'none' }, {}, null, undefined, 'hang']) {
      let err: unknown
      try {
        ;(w.m.simulateOutage as (o: unknown) => void)(bad)
      } catch (e) {
        err = e
      }
      expect(err).toBeInstanceOf(TypeError)
      expect((err as { code?: string }).code).toBe(codes.INVALID_ARG)
    }
    await w.m.setSession('s', 1)
    expect((await w.m.health()).mode).toBe('redis')
    expect(w.fallback).toEqual([])
  })
})

describe('9. health() while Redis hangs', () => {
  it(`resolves within commandTimeoutMs + ${MARGIN} ms: degraded with fallback, unhealthy without; unhealthy after close()`, async () => {
    const server = await startRedisFree()
    const on = plain({ url: server.url, keyPrefix: uniquePrefix('h9on'), commandTimeoutMs: TIMEOUT })
    const off = plain({
      url: server.url,
      keyPrefix: uniquePrefix('h9off'),
      commandTimeoutMs: TIMEOUT,
      fallback: { enabled: false },
    })
    await on.setSession('s', 1)
    await off.setSession('s', 1)
    expect((await on.health()).status).toBe('healthy')
    expect((await off.health()).status).toBe('healthy')

    server.pause()
    const times: number[] = []
    const timedHealth = async (m: CacheManager) => {
      const t = now()
      const h = await m.health()
      times.push(now() - t)
      return h
    }
    // before any data call noticed the hang (breaker still closed), and after it opened
    const [h1, h2] = await Promise.all([timedHealth(on), timedHealth(off)])
    expect(h1.status).toBe('degraded')
    expect(h2.status).toBe('unhealthy')
    expect(h1.redis.connected).toBe(false)
    await Promise.all([on.getSession('a'), on.getSession('b'), on.getSession('c')])
    await Promise.all([off.getSession('a'), off.getSession('b'), off.getSession('c')].map((p) => p.catch(() => null)))
    const [h3, h4] = await Promise.all([timedHealth(on), timedHealth(off)])
    expect(h3.status).toBe('degraded')
    expect(h3.mode).toBe('memory')
    expect(h4.status).toBe('unhealthy')
    expect(Math.max(...times)).toBeLessThan(TIMEOUT + MARGIN)

    await on.close()
    const t = now()
    const hc = await on.health()
    expect(now() - t).toBeLessThan(TIMEOUT + MARGIN)
    expect(hc.status).toBe('unhealthy')
    server.resume()
    summarize('test 9 (health while hung)', { healthMs: times })
  }, 15000)
})

describe('10. process exit with the probe task running', () => {
  /** Runs `node -e script` (cwd = package root); onLine sees stdout lines; SIGKILLs it after deadlineMs. */
  function runChild(
    script: string,
    env: Record<string, string>,
    onLine: (line: string) => void,
    deadlineMs: number,
  ): Promise<Run> {
    return runNode(script, { env, onLine, deadlineMs })
  }

  const PRELUDE = `
    const { createCacheManager } = require('./index.js');
    const fail = (e) => { console.error(e && e.stack || e); process.exit(3) };
    const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  `

  function expectExitedByItself(r: Run) {
    const diag = `code=${r.code} signal=${r.signal} timedOut=${r.timedOut} exitAfterDone=${r.exitAfterDoneMs}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`
    expect({ timedOut: r.timedOut, code: r.code, diag: r.timedOut || r.code !== 0 ? diag : '' }).toEqual({
      timedOut: false,
      code: 0,
      diag: '',
    })
    expect(r.exitAfterDoneMs).not.toBeNull()
    expect(r.exitAfterDoneMs!).toBeLessThan(5000)
  }

  it('simulated hang, journal pending, no close(): exits with 0 by itself within 5 s', async () => {
    const server = await startRedisFree()
    const r = await runChild(
      `${PRELUDE}
      (async () => {
        const m = createCacheManager({ url: process.env.FC_URL, keyPrefix: process.env.FC_PREFIX, commandTimeoutMs: 250 });
        m.on('fallback', () => {}); m.on('recovered', () => {}); m.on('error', () => {});
        await m.setSession('s', 1);
        m.simulateOutage({ mode: 'hang' });
        await m.setSession('s', 2);
        const h = await m.health();
        if (h.mode !== 'memory' || h.failover.journalDepth < 1) throw new Error('not in outage: ' + JSON.stringify(h));
        console.log('done');
      })().catch(fail);`,
      { FC_URL: server.url, FC_PREFIX: uniquePrefix('exit1') },
      () => {},
      10000,
    )
    expectExitedByItself(r)
    summarize('test 10 simulated', { exitAfterDoneMs: r.exitAfterDoneMs })
  }, 15000)

  it('server killed by the parent while the child runs, no close(): exits with 0 by itself within 5 s', async () => {
    const server = await startRedisFree()
    const r = await runChild(
      `${PRELUDE}
      (async () => {
        const m = createCacheManager({ url: process.env.FC_URL, keyPrefix: process.env.FC_PREFIX, commandTimeoutMs: 250 });
        m.on('fallback', () => {});
        await m.setSession('s', 1);
        console.log('ready');
        for (let i = 0; i < 200; i++) {
          await m.setSession('s', 10 + i);
          if ((await m.health()).mode === 'memory') break;
          await sleep(25);
        }
        const h = await m.health();
        if (h.mode !== 'memory' || h.failover.journalDepth < 1) throw new Error('not in outage: ' + JSON.stringify(h));
        console.log('done');
      })().catch(fail);`,
      { FC_URL: server.url, FC_PREFIX: uniquePrefix('exit2') },
      (line) => {
        if (line === 'ready') void server.kill()
      },
      15000,
    )
    expectExitedByItself(r)
    summarize('test 10 killed', { exitAfterDoneMs: r.exitAfterDoneMs })
  }, 20000)
})
