// Fault-injection helpers for failover.test.ts: restarting a redis-server on the
// same port, concurrent workers, latency percentiles, polling. Servers come from
// helpers/redis-server.ts (stopped by pid, never by name).

import type { CacheManager, FallbackEvent, RecoveredEvent } from '../..'
import { killAllRedis, rawRequest, RedisServer, sleep, startRedis, startRedisOn } from './redis-server'

export { sleep, killAllRedis, rawRequest, startRedisOn }

/** A redis-server we control by pid (see helpers/redis-server.ts). */
export type RedisProc = RedisServer

/** Starts a redis-server on a free loopback port (retrying if the port gets taken). */
export const startRedisFree = (extraArgs: string[] = []): Promise<RedisProc> => startRedis(extraArgs)

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

/** Collects a manager's `fallback` and `recovered` events. */
export function watch(m: CacheManager) {
  const w = { fallback: [] as FallbackEvent[], recovered: [] as RecoveredEvent[] }
  m.on('fallback', (e) => w.fallback.push(e))
  m.on('recovered', (e) => w.recovered.push(e))
  return w
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
