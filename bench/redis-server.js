'use strict'
// The benchmark's own redis-server: a free loopback port, no persistence,
// stopped by pid. Never the machine's shared server on 6379, never by name.

const { spawn, execFileSync } = require('node:child_process')
const fs = require('node:fs')
const net = require('node:net')
const os = require('node:os')
const path = require('node:path')

/** A port the OS considers free on 127.0.0.1 right now. */
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.unref()
    srv.on('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address()
      srv.close(() => resolve(port))
    })
  })
}

/** Sends PING over a raw socket; resolves true on +PONG. */
function ping(port, timeoutMs = 500) {
  return new Promise((resolve) => {
    const sock = net.connect({ host: '127.0.0.1', port })
    let buf = ''
    const done = (ok) => {
      sock.destroy()
      resolve(ok)
    }
    sock.setTimeout(timeoutMs, () => done(false))
    sock.on('error', () => done(false))
    sock.on('connect', () => sock.write('PING\r\n'))
    sock.on('data', (d) => {
      buf += d.toString('latin1')
      if (buf.includes('\r\n')) done(buf.startsWith('+PONG'))
    })
  })
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

function redisVersion() {
  try {
    const out = execFileSync('redis-server', ['--version'], { encoding: 'utf8' })
    const m = /v=(\S+)/.exec(out)
    return m ? m[1] : out.trim()
  } catch {
    return 'unknown'
  }
}

/**
 * Starts redis-server on a free port and waits for PING.
 * @returns {Promise<{port:number, pid:number, url:string, stop:()=>Promise<void>, stopSync:()=>void}>}
 */
async function startRedis(extraArgs = () => [], pickPort = freePort) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferrocache-bench-redis-'))
  let lastErr
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await pickPort()
    const child = spawn(
      'redis-server',
      [
        ...[
          '--port',
          String(port),
          '--bind',
          '127.0.0.1',
          '--save',
          '',
          '--appendonly',
          'no',
          '--dir',
          dir,
          '--logfile',
          '',
        ],
        ...extraArgs(port),
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    )
    let exited = false
    let stderr = ''
    child.stderr.on('data', (d) => (stderr += d))
    child.on('exit', () => (exited = true))
    const deadline = Date.now() + 5000
    while (!exited && Date.now() < deadline) {
      if (await ping(port)) {
        child.stderr.destroy()
        const exitedP = new Promise((r) => (exited ? r() : child.once('exit', r)))
        const stopSync = () => {
          if (!exited) {
            try {
              process.kill(child.pid, 'SIGKILL')
            } catch {
              // already gone
            }
          }
          try {
            fs.rmSync(dir, { recursive: true, force: true })
          } catch {
            // already gone
          }
        }
        const stop = async () => {
          if (!exited) {
            try {
              process.kill(child.pid, 'SIGTERM')
            } catch {
              // already gone
            }
            await Promise.race([exitedP, sleep(3000)])
          }
          stopSync()
        }
        return { port, pid: child.pid, url: `redis://127.0.0.1:${port}`, stop, stopSync }
      }
      await sleep(25)
    }
    if (!exited) {
      try {
        process.kill(child.pid, 'SIGKILL')
      } catch {
        // already gone
      }
    }
    lastErr = new Error(`redis-server on port ${port} did not answer PING: ${stderr.trim()}`)
  }
  fs.rmSync(dir, { recursive: true, force: true })
  throw lastErr
}

/** [`startRedis`] on `port` (a restart on the port a stopped server had). */
const startRedisOn = (port) =>
  startRedis(
    () => [],
    async () => port,
  )

/** A free port whose cluster bus port (+10000) is valid. */
async function clusterPort() {
  for (;;) {
    const port = await freePort()
    if (port < 55000) return port
  }
}

/**
 * Starts a Redis Cluster of 3 masters + 3 replicas on free ports and waits for cluster_state:ok.
 * @returns {Promise<{nodes: Array<{port:number}>, urls: string[], stop: () => Promise<void>}>}
 */
async function startCluster() {
  const args = () => ['--cluster-enabled', 'yes', '--cluster-node-timeout', '1000', '--repl-diskless-sync-delay', '0']
  const nodes = await Promise.all(Array.from({ length: 6 }, () => startRedis(args, clusterPort)))
  const addrs = nodes.map((n) => `127.0.0.1:${n.port}`)
  execFileSync('redis-cli', ['--cluster', 'create', ...addrs, '--cluster-replicas', '1', '--cluster-yes'], {
    stdio: 'ignore',
  })
  const cli = (port, ...a) => execFileSync('redis-cli', ['-p', String(port), ...a], { encoding: 'utf8' })
  for (let i = 0; i < 600; i++) {
    if (nodes.every((n) => cli(n.port, 'CLUSTER', 'INFO').includes('cluster_state:ok'))) break
    await sleep(50)
  }
  return {
    nodes,
    urls: nodes.map((n) => n.url),
    stop: () => Promise.all(nodes.map((n) => n.stop())),
  }
}

/**
 * The main of a standalone script: starts a redis-server, prints its version and port, runs
 * `fn(redis)`, and stops the server by pid whatever happens (an error, SIGINT, SIGTERM, exit).
 * Sets process.exitCode to 1 if `fn` throws.
 */
async function runWithRedis(fn) {
  let redis = null
  const stopNow = () => {
    if (redis) redis.stopSync()
    redis = null
  }
  const onSignal = (sig) => {
    console.error(`\n${sig}: stopping redis-server and exiting`)
    stopNow()
    process.exit(130)
  }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  process.on('exit', stopNow)
  try {
    redis = await startRedis()
    console.log(`redis-server ${redisVersion()} pid ${redis.pid} on 127.0.0.1:${redis.port}; Node ${process.version}`)
    await fn(redis)
  } catch (err) {
    console.error(err)
    process.exitCode = 1
  } finally {
    if (redis) {
      const r = redis
      redis = null
      await r.stop()
    }
    process.removeListener('SIGINT', onSignal)
    process.removeListener('SIGTERM', onSignal)
  }
}

module.exports = { startRedis, startRedisOn, startCluster, redisVersion, freePort, ping, runWithRedis }
