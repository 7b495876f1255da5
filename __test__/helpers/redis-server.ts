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
  /** Stops the server by pid and waits until it has exited. Idempotent. */
  stop(): Promise<void>
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

/** Sends one inline PING over a fresh socket; true if the reply is +PONG. */
function ping(port: number, timeoutMs = 500): Promise<boolean> {
  return new Promise((resolve) => {
    let done = false
    let buf = ''
    const sock = net.connect({ host: '127.0.0.1', port })
    const finish = (ok: boolean) => {
      if (done) return
      done = true
      clearTimeout(timer)
      sock.destroy()
      resolve(ok)
    }
    const timer = setTimeout(() => finish(false), timeoutMs)
    sock.on('connect', () => sock.write('PING\r\n'))
    sock.on('data', (d) => {
      buf += d.toString('latin1')
      if (buf.includes('\r\n')) finish(buf.startsWith('+PONG'))
    })
    sock.on('error', () => finish(false))
    sock.on('close', () => finish(false))
  })
}

function waitExit(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve()
  return new Promise((resolve) => child.once('exit', () => resolve()))
}

async function startOnce(port: number): Promise<RedisServer | null> {
  const child = spawn(
    'redis-server',
    ['--save', '', '--appendonly', 'no', '--bind', '127.0.0.1', '--port', String(port)],
    { cwd: os.tmpdir(), stdio: ['ignore', 'pipe', 'pipe'] },
  )
  let out = ''
  child.stdout!.on('data', (d) => (out += d.toString()))
  child.stderr!.on('data', (d) => (out += d.toString()))
  const exited = waitExit(child)
  let stopped = false
  const server: RedisServer = {
    port,
    url: `redis://127.0.0.1:${port}`,
    pid: child.pid!,
    output: () => out,
    async stop() {
      if (!stopped) {
        stopped = true
        if (child.exitCode === null && child.signalCode === null) {
          child.kill('SIGTERM')
          const killer = setTimeout(() => child.kill('SIGKILL'), 3000)
          await exited
          clearTimeout(killer)
        }
      }
      await exited
    },
  }
  const deadline = Date.now() + 5000
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) return null // e.g. the port was taken meanwhile
    if (await ping(port)) return server
    await sleep(25)
  }
  await server.stop()
  throw new Error(`redis-server on port ${port} did not answer PING within 5 s:\n${out}`)
}

/** Starts a private redis-server on a free loopback port and waits until it answers PING. */
export async function startRedis(): Promise<RedisServer> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const server = await startOnce(await freePort())
    if (server) return server
  }
  throw new Error('could not start redis-server on a free port after 5 attempts')
}

/** A raw Redis client (ioredis) for looking at what ferrocache wrote. Call close(). */
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
