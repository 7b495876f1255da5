// Test helpers: a private redis-server per test file (never the shared 6379),
// a raw Redis client to look at what ferrocache wrote, and small utilities.
//
// Every process started here is stopped by pid, every client is quit, so Jest
// ends by itself without open handles.

import { spawn, ChildProcess } from 'child_process'
import * as net from 'net'
import * as os from 'os'
import Redis from 'ioredis'

export interface RedisServer {
  port: number
  url: string
  pid: number
  /** Everything the server printed (for diagnostics). */
  output(): string
  /** True once the process has exited. */
  exited(): boolean
  /** Resolves when the process has exited. */
  waitExit(): Promise<void>
  /** Stops the server by pid (SIGTERM, SIGKILL after 3 s) and waits until it has exited. Idempotent. */
  stop(): Promise<void>
  /** SIGKILL by pid (Redis "crashes": connections are refused), waits for the exit. Idempotent. */
  kill(): Promise<void>
  /** SIGSTOP by pid: the server hangs (the kernel still accepts connections). */
  pause(): void
  /** SIGCONT by pid. */
  resume(): void
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** A loopback TCP port nothing listens on right now (bind to 0, read it, close). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.unref()
    srv.on('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address()
      if (addr === null || typeof addr === 'string') {
        srv.close()
        reject(new Error('no port'))
        return
      }
      const port = addr.port
      srv.close((err) => (err ? reject(err) : resolve(port)))
    })
  })
}

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

const live = new Set<RedisServer>()

/**
 * Starts `redis-server` on `port` (loopback, no persistence) with `extraArgs`, and
 * waits until it answers PING (a -NOAUTH answer counts: the server is up). Resolves
 * null if the process exited before answering (the port was taken meanwhile).
 */
export async function startRedisOn(
  port: number,
  extraArgs: string[] = [],
  configFile?: string,
): Promise<RedisServer | null> {
  const child: ChildProcess = spawn(
    'redis-server',
    [
      ...(configFile ? [configFile] : []), // a sentinel needs a (writable) config file, first
      ...['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
      ...['--repl-diskless-sync-delay', '0'], // replicas sync at once (a failover needs synced replicas)
      ...extraArgs,
    ],
    { cwd: os.tmpdir(), stdio: ['ignore', 'pipe', 'pipe'] },
  )
  let out = ''
  child.stdout!.on('data', (d) => (out += d.toString()))
  child.stderr!.on('data', (d) => (out += d.toString()))
  const isExited = () => child.exitCode !== null || child.signalCode !== null
  const exitedP = new Promise<void>((resolve) => (isExited() ? resolve() : child.once('exit', () => resolve())))
  const signal = (sig: NodeJS.Signals) => {
    if (!isExited()) process.kill(child.pid!, sig)
  }
  let stopping: Promise<void> | null = null
  const server: RedisServer = {
    port,
    url: `redis://127.0.0.1:${port}`,
    pid: child.pid!,
    output: () => out,
    exited: isExited,
    waitExit: () => exitedP,
    stop() {
      stopping ??= (async () => {
        signal('SIGCONT') // a paused server cannot act on SIGTERM
        signal('SIGTERM')
        const killer = setTimeout(() => signal('SIGKILL'), 3000)
        await exitedP
        clearTimeout(killer)
        live.delete(server)
      })()
      return stopping
    },
    async kill() {
      signal('SIGKILL')
      await exitedP
      live.delete(server)
    },
    pause: () => signal('SIGSTOP'),
    resume: () => signal('SIGCONT'),
  }
  live.add(server)
  const deadline = Date.now() + 5000
  while (Date.now() < deadline) {
    if (isExited()) {
      live.delete(server)
      return null
    }
    const reply = await rawRequest(port, 'PING', 300)
    if (reply !== null && (reply.startsWith('+PONG') || reply.startsWith('-NOAUTH'))) return server
    await sleep(20)
  }
  await server.kill()
  throw new Error(`redis-server on port ${port} did not answer PING within 5 s:\n${out}`)
}

/** Starts a private redis-server on a free loopback port (with `extraArgs`) and waits until it answers. */
export async function startRedis(
  extraArgs: string[] = [],
  port: () => Promise<number> = freePort,
  configFile?: (port: number) => string,
): Promise<RedisServer> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const p = await port()
    const server = await startRedisOn(p, extraArgs, configFile && configFile(p))
    if (server) return server
  }
  throw new Error('could not start redis-server on a free port after 5 attempts')
}

/** SIGKILLs every server started here that is still running (afterAll). */
export async function killAllRedis(): Promise<void> {
  await Promise.all([...live].map((s) => s.kill()))
}

/** A raw Redis client (ioredis) for looking at what ferrocache wrote. Call close(). */
/** Any key as text: a string's UTF-8, a sorted set (the query index) as `zset` + its members and scores. */
export async function showKey(
  raw: { client: Pick<Redis, 'type' | 'zrange'>; getUtf8(key: string): Promise<string | null> },
  key: string,
): Promise<string | null> {
  const type = await raw.client.type(key)
  if (type === 'zset') return `zset ${JSON.stringify(await raw.client.zrange(key, 0, -1, 'WITHSCORES'))}`
  if (type === 'none' || type === 'string') return raw.getUtf8(key)
  return type
}

export class RawRedis {
  readonly client: Redis

  constructor(port: number) {
    this.client = new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: 1, lazyConnect: false })
  }

  /** The raw value of a key, decoded as UTF-8 (null when missing). */
  async getUtf8(key: string): Promise<string | null> {
    const buf = await this.client.getBuffer(key)
    return buf === null ? null : buf.toString('utf8')
  }

  /** The raw bytes of a key (null when missing). */
  getBuffer(key: string): Promise<Buffer | null> {
    return this.client.getBuffer(key)
  }

  /** Any key as text (see showKey). */
  show(key: string): Promise<string | null> {
    return showKey(this, key)
  }

  pttl(key: string): Promise<number> {
    return this.client.pttl(key)
  }

  exists(key: string): Promise<number> {
    return this.client.exists(key)
  }

  /** Every key starting with `literalPrefix` (compared in JS, so no glob surprises). */
  async keysStartingWith(literalPrefix: string): Promise<string[]> {
    const out: string[] = []
    let cursor = '0'
    do {
      const [next, keys] = await this.client.scan(cursor, 'COUNT', 1000)
      cursor = next
      for (const k of keys) if (k.startsWith(literalPrefix)) out.push(k)
    } while (cursor !== '0')
    return out.sort()
  }

  async close(): Promise<void> {
    if (this.client.status === 'end') return
    try {
      await this.client.quit()
    } catch {
      this.client.disconnect()
    }
  }
}

let seq = 0
/** A keyPrefix no other test uses. */
export function uniquePrefix(tag = 't'): string {
  seq += 1
  return `fct:${process.pid}:${Date.now().toString(36)}:${seq}:${tag}:`
}
