// A Redis Cluster (3 masters + 3 replicas) and a Sentinel set-up (1 master, 1 replica,
// 3 sentinels), each a group of redis-server processes on free loopback ports, started
// with helpers/redis-server.ts (stopped by pid, never by name).
//
// jest.global-setup.ts starts one of each for the whole run (the cluster and sentinel
// modes of helpers/modes.ts use them, with a fresh keyPrefix per manager); tests that
// kill nodes start their own.

import { execFile } from 'child_process'
import * as fs from 'fs'
import * as net from 'net'
import * as os from 'os'
import * as path from 'path'
import { promisify } from 'util'
import Redis, { Cluster as IoCluster } from 'ioredis'
import { freePort, RawRedis, RedisServer, showKey, sleep, startRedis, startRedisOn } from './redis-server'

const run = promisify(execFile)

/** `redis-cli -p <port> args...`, trimmed stdout ('' when it failed). */
export async function cli(port: number, ...args: string[]): Promise<string> {
  try {
    const { stdout } = await run('redis-cli', ['-p', String(port), ...args], { timeout: 5000 })
    return stdout.trim()
  } catch {
    return ''
  }
}

async function waitUntil(what: string, ok: () => Promise<boolean>, timeoutMs = 30000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await ok()) return
    await sleep(50)
  }
  throw new Error(`timed out waiting for ${what}`)
}

/** A free port whose cluster bus port (+10000) is valid and free too. */
async function clusterPort(): Promise<number> {
  for (;;) {
    const port = await freePort()
    if (port >= 55000) continue
    const busFree = await new Promise<boolean>((resolve) => {
      const srv = net.createServer()
      srv.unref()
      srv.once('error', () => resolve(false))
      srv.listen(port + 10000, '127.0.0.1', () => srv.close(() => resolve(true)))
    })
    if (busFree) return port
  }
}

function scratchDir(tag: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `ferrocache-${tag}-`))
}

/** Ports of the masters serving slots, as the node on `port` sees them. */
export async function clusterMasters(port: number): Promise<number[]> {
  const nodes = await cli(port, 'CLUSTER', 'NODES')
  return nodes
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => f.length > 8 && f[2].includes('master') && !f[2].includes('fail'))
    .map((f) => Number(f[1].split('@')[0].split(':')[1]))
}

/**
 * True when the node on `port` lists each of `ports` as a master serving slots or as a
 * replica, with no fail or handshake flag: `redis-cli --cluster create` returns once the slots
 * agree, before every node has heard which nodes became replicas (they show as masters
 * without slots until then).
 */
async function seesSettled(port: number, ports: number[]): Promise<boolean> {
  const lines = (await cli(port, 'CLUSTER', 'NODES')).split('\n').map((l) => l.trim().split(/\s+/))
  return ports.every((p) =>
    lines.some((f) => {
      if (f.length < 8 || Number(f[1].split('@')[0].split(':')[1]) !== p) return false
      if (/fail|handshake|noaddr/.test(f[2])) return false
      return f[2].includes('slave') || (f[2].includes('master') && f.length > 8)
    }),
  )
}

export interface ClusterSetup {
  nodes: RedisServer[]
  /** Seed URLs (every node). */
  urls: string[]
  /** Waits until every live node says cluster_state:ok with 3 masters, knows every other live node's role, and replicas are in sync. */
  waitOk(): Promise<void>
  /** The port of the master serving `key` now. */
  masterOf(key: string): Promise<number>
  stop(): Promise<void>
}

/** Starts 3 masters + 3 replicas (`cluster-node-timeout` 1 s) and waits until the cluster is ok. */
export async function startCluster(): Promise<ClusterSetup> {
  const dir = scratchDir('cluster')
  const node = async (): Promise<RedisServer> => {
    for (let attempt = 0; attempt < 5; attempt++) {
      const port = await clusterPort()
      const args = ['--dir', dir, '--cluster-enabled', 'yes', '--cluster-node-timeout', '1000']
      const server = await startRedisOn(port, [...args, '--cluster-config-file', `nodes-${port}.conf`])
      if (server) return server
    }
    throw new Error('could not start a cluster node on a free port')
  }
  const nodes = await Promise.all(Array.from({ length: 6 }, node))
  const setup: ClusterSetup = {
    nodes,
    urls: nodes.map((n) => n.url),
    async waitOk() {
      const live = () => nodes.filter((n) => !n.exited())
      await waitUntil('cluster_state:ok', async () => {
        for (const n of live()) {
          if (!(await cli(n.port, 'CLUSTER', 'INFO')).includes('cluster_state:ok')) return false
          if ((await clusterMasters(n.port)).length !== 3) return false
          if (
            !(await seesSettled(
              n.port,
              live().map((l) => l.port),
            ))
          )
            return false
        }
        return true
      })
      await waitUntil('replicas in sync', async () => {
        for (const n of live()) {
          const info = await cli(n.port, 'INFO', 'replication')
          if (!info.includes('role:master') && !info.includes('master_link_status:up')) return false
        }
        return true
      })
    },
    async masterOf(key: string) {
      const any = nodes.find((n) => !n.exited())!
      const slot = Number(await cli(any.port, 'CLUSTER', 'KEYSLOT', key))
      for (const n of nodes.filter((n) => !n.exited())) {
        const mine = (await cli(n.port, 'CLUSTER', 'NODES')).split('\n').find((l) => l.includes('myself'))
        if (!mine || !mine.includes('master')) continue
        const ranges = mine.trim().split(/\s+/).slice(8)
        for (const r of ranges) {
          const [a, b] = r.split('-').map(Number)
          if (slot >= a && slot <= (b ?? a)) return n.port
        }
      }
      throw new Error(`no master owns slot ${slot}`)
    },
    async stop() {
      await Promise.all(nodes.map((n) => n.stop()))
      fs.rmSync(dir, { recursive: true, force: true })
    },
  }
  const addrs = nodes.map((n) => `127.0.0.1:${n.port}`)
  await run('redis-cli', ['--cluster', 'create', ...addrs, '--cluster-replicas', '1', '--cluster-yes'], {
    timeout: 30000,
  })
  await setup.waitOk()
  return setup
}

export const MASTER_NAME = 'mymaster'

export interface SentinelSetup {
  master: RedisServer
  replica: RedisServer
  sentinels: RedisServer[]
  /** Sentinel URLs. */
  urls: string[]
  /** The master port the sentinels name now (0 if none answers). */
  masterPort(): Promise<number>
  stop(): Promise<void>
}

/** Starts 1 master, 1 replica and 3 sentinels (down after 1 s, quorum 2), ready for a failover. */
export async function startSentinel(): Promise<SentinelSetup> {
  const dir = scratchDir('sentinel')
  const master = await startRedis()
  const replica = await startRedis(['--replicaof', '127.0.0.1', String(master.port)])
  await waitUntil('replica in sync', async () =>
    (await cli(replica.port, 'INFO', 'replication')).includes('master_link_status:up'),
  )
  const conf = (port: number) => {
    const file = path.join(dir, `sentinel-${port}.conf`)
    fs.writeFileSync(
      file,
      [
        `dir ${dir}`,
        `sentinel monitor ${MASTER_NAME} 127.0.0.1 ${master.port} 2`,
        `sentinel down-after-milliseconds ${MASTER_NAME} 1000`,
        `sentinel failover-timeout ${MASTER_NAME} 4000`,
        `sentinel parallel-syncs ${MASTER_NAME} 1`,
        '',
      ].join('\n'),
    )
    return file
  }
  const sentinels = await Promise.all(Array.from({ length: 3 }, () => startRedis(['--sentinel'], freePort, conf)))
  for (const s of sentinels) {
    await waitUntil('sentinel ready', async () => {
      const replicas = await cli(s.port, 'SENTINEL', 'REPLICAS', MASTER_NAME)
      const others = await cli(s.port, 'SENTINEL', 'SENTINELS', MASTER_NAME)
      return replicas.includes(String(replica.port)) && (others.match(/127\.0\.0\.1/g) ?? []).length >= 2
    })
  }
  return {
    master,
    replica,
    sentinels,
    urls: sentinels.map((s) => s.url),
    async masterPort() {
      for (const s of sentinels.filter((s) => !s.exited())) {
        const out = (await cli(s.port, 'SENTINEL', 'GET-MASTER-ADDR-BY-NAME', MASTER_NAME)).split('\n')
        if (out.length === 2) return Number(out[1])
      }
      return 0
    },
    async stop() {
      await Promise.all([...sentinels, master, replica].map((n) => n.stop()))
      fs.rmSync(dir, { recursive: true, force: true })
    },
  }
}

/** What a raw client can show of what ferrocache wrote (single node, cluster or sentinel). */
export interface RawView {
  keysStartingWith(literalPrefix: string): Promise<string[]>
  getUtf8(key: string): Promise<string | null>
  show(key: string): Promise<string | null>
  pttl(key: string): Promise<number>
  exists(key: string): Promise<number>
  close(): Promise<void>
}

/** A raw view over a Redis Cluster (ioredis Cluster; SCAN on every master). */
export class RawCluster implements RawView {
  readonly client: IoCluster

  constructor(ports: number[]) {
    this.client = new IoCluster(
      ports.map((port) => ({ host: '127.0.0.1', port })),
      { redisOptions: { maxRetriesPerRequest: 1 } },
    )
  }

  /** The masters, once ioredis has read the slot map (before that it lists every node). */
  async masters(): Promise<Redis[]> {
    if (this.client.status !== 'ready') await new Promise((resolve) => this.client.once('ready', resolve))
    return this.client.nodes('master') as Redis[]
  }

  async keysStartingWith(literalPrefix: string): Promise<string[]> {
    const out: string[] = []
    for (const node of await this.masters()) {
      let cursor = '0'
      do {
        const [next, keys] = await node.scan(cursor, 'COUNT', 1000)
        cursor = next
        for (const k of keys) if (k.startsWith(literalPrefix)) out.push(k)
      } while (cursor !== '0')
    }
    return out.sort()
  }

  async getUtf8(key: string): Promise<string | null> {
    const buf = await this.client.getBuffer(key)
    return buf === null ? null : buf.toString('utf8')
  }

  /** Any key as text (see showKey). */
  show(key: string): Promise<string | null> {
    return showKey(this, key)
  }

  /** The hash slot of `key`, as the cluster computes it. */
  async slotOf(key: string): Promise<number> {
    const [node] = await this.masters()
    return Number(await node.call('CLUSTER', 'KEYSLOT', key))
  }

  pttl(key: string): Promise<number> {
    return this.client.pttl(key)
  }

  exists(key: string): Promise<number> {
    return this.client.exists(key)
  }

  async close(): Promise<void> {
    try {
      await this.client.quit()
    } catch {
      this.client.disconnect()
    }
  }
}

export { RawRedis }
