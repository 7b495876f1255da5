// Fault-injection helpers for failover.test.ts: redis-server processes we can
// SIGKILL / SIGSTOP / SIGCONT by pid and restart on the same port, concurrent
// workers, latency percentiles, polling.
//
// Every process started here is registered and stopped by pid (SIGKILL, which
// also ends a SIGSTOPped server) in killAllRedis(); never by name.

import { spawn, ChildProcess } from 'child_process'
import * as net from 'net'
import * as os from 'os'
import { freePort, sleep } from './redis-server'

export { sleep }

/** A redis-server we control by pid. */
export interface RedisProc {
  port: number
  pid: number
  url: string
  /** Output so far (diagnostics). */
  output(): string
  /** True once the process has exited. */
  exited(): boolean
  /** Resolves when the process has exited. */
  waitExit(): Promise<void>
  /** SIGKILL by pid, waits for the exit. Idempotent. */
  kill(): Promise<void>
  /** SIGSTOP by pid: the server hangs (the kernel still accepts connections). */
  pause(): void
  /** SIGCONT by pid. */
  resume(): void
}

const live = new Set<RedisProc>()

/**
 * One raw request over a fresh socket; resolves with the first reply line, or
 * null on error/timeout.
 */
export function rawRequest(port: number, line: string, timeoutMs = 500): Promise<string | null> {
  return new Promise((resolve) => {
    let done = false
    let buf = ''
    const sock = net.connect({ host: '127.0.0.1', port })
    const finish = (v: string | null) => {
      if (done) return
      done = true
      clearTimeout(timer)
      sock.destroy()
      resolve(v)
    }
    const timer = setTimeout(() => finish(null), timeoutMs)
    sock.on('connect', () => sock.write(`${line}\r\n`))
    sock.on('data', (d) => {
      buf += d.toString('latin1')
      const i = buf.indexOf('\r\n')
      if (i >= 0) finish(buf.slice(0, i))
    })
    sock.on('error', () => finish(null))
    sock.on('close', () => finish(null))
  })
}

/**
 * Starts `redis-server` on `port` (loopback, no persistence) with `extraArgs`,
 * and waits until it answers PING (a -NOAUTH answer counts: the server is up).
 * Resolves null if the process exited before answering (port taken).
 */
export async function startRedisOn(port: number, extraArgs: string[] = []): Promise<RedisProc | null> {
  const child: ChildProcess = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', ...extraArgs],
    { cwd: os.tmpdir(), stdio: ['ignore', 'pipe', 'pipe'] },
  )
  let out = ''
  child.stdout!.on('data', (d) => (out += d.toString()))
  child.stderr!.on('data', (d) => (out += d.toString()))
  const exitedP = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve()
    else child.once('exit', () => resolve())
  })
  const isExited = () => child.exitCode !== null || child.signalCode !== null
  const proc: RedisProc = {
    port,
    pid: child.pid!,
    url: `redis://127.0.0.1:${port}`,
    output: () => out,
    exited: isExited,
    waitExit: () => exitedP,
    async kill() {
      if (!isExited()) {
        try {
          process.kill(child.pid!, 'SIGKILL')
        } catch {
          /* already gone */
        }
      }
      await exitedP
      live.delete(proc)
    },
    pause() {
      process.kill(child.pid!, 'SIGSTOP')
    },
    resume() {
      process.kill(child.pid!, 'SIGCONT')
    },
  }
  live.add(proc)
  const deadline = Date.now() + 5000
  while (Date.now() < deadline) {
    if (isExited()) {
      live.delete(proc)
      return null
    }
    const reply = await rawRequest(port, 'PING', 300)
    if (reply !== null && (reply.startsWith('+PONG') || reply.startsWith('-NOAUTH'))) return proc
    await sleep(20)
  }
  await proc.kill()
  throw new Error(`redis-server on port ${port} did not answer within 5 s:\n${out}`)
}

/** Starts a redis-server on a free loopback port (retrying if the port gets taken). */
export async function startRedisFree(extraArgs: string[] = []): Promise<RedisProc> {
  for (let i = 0; i < 5; i++) {
    const p = await startRedisOn(await freePort(), extraArgs)
    if (p) return p
  }
  throw new Error('could not start redis-server on a free port')
}

/** Restarts a server on the port of a killed one (same args). */
export async function restartOn(port: number, extraArgs: string[] = []): Promise<RedisProc> {
  const deadline = Date.now() + 5000
  while (Date.now() < deadline) {
    const p = await startRedisOn(port, extraArgs)
    if (p) return p
    await sleep(50)
  }
  throw new Error(`could not restart redis-server on port ${port}`)
}

/** SIGKILLs every server started here that is still running (afterAll). */
export async function killAllRedis(): Promise<void> {
  await Promise.all([...live].map((p) => p.kill()))
}

/** Polls `cond` every `intervalMs` until true; resolves with the elapsed ms, throws after `timeoutMs`. */
export async function waitFor(
  what: string,
  cond: () => boolean | Promise<boolean>,
  timeoutMs: number,
  intervalMs = 10,
): Promise<number> {
  const started = performance.now()
  for (;;) {
    if (await cond()) return performance.now() - started
    if (performance.now() - started > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await sleep(intervalMs)
  }
}

/** The p-th percentile (0..100) of `values` (nearest rank); NaN when empty. */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN
  const sorted = Float64Array.from(values).sort()
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  return sorted[rank]
}

/** One timed call made by a worker. */
export interface CallRecord {
  /** performance.now() at the start / end. */
  start: number
  end: number
  op: string
  /** Set when the call rejected. */
  error?: unknown
}

/**
 * Runs `n` workers concurrently; each calls `step(worker, iteration)` in a loop
 * until `stop()` is true. Every call is timed; a rejection is recorded (never
 * thrown) and the worker goes on. `step` returns the op name.
 */
export async function runWorkers(
  n: number,
  stop: () => boolean,
  step: (worker: number, iteration: number) => Promise<string>,
  onRecord?: (r: CallRecord) => void,
): Promise<CallRecord[]> {
  const records: CallRecord[] = []
  const record = (r: CallRecord) => {
    records.push(r)
    if (onRecord) onRecord(r)
  }
  const worker = async (w: number) => {
    for (let i = 0; !stop(); i++) {
      const start = performance.now()
      let op = '?'
      try {
        op = await step(w, i)
        record({ start, end: performance.now(), op })
      } catch (error) {
        record({ start, end: performance.now(), op, error })
      }
    }
  }
  await Promise.all(Array.from({ length: n }, (_, w) => worker(w)))
  return records
}

/** A short description of a rejection for failure messages. */
export function describeError(e: unknown): string {
  if (e && typeof e === 'object') {
    const o = e as { name?: string; code?: string; message?: string }
    return `${o.name ?? 'Error'}[${o.code ?? '-'}]: ${o.message ?? String(e)}`
  }
  return String(e)
}
