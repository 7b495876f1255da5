// The modes the contract suite runs in: `memory://`; Redis against a private
// redis-server started by the test file; a Redis Cluster and a Sentinel set-up,
// shared by the whole run (started once by jest.global-setup.ts; every manager has
// its own keyPrefix). Use with describe.each(modes()).

import { createCacheManager, CacheManager, CacheOptions } from '../..'
import { RawRedis, RedisServer, startRedis, uniquePrefix } from './redis-server'
import { cli, clusterMasters, MASTER_NAME, RawCluster, RawView, startCluster, startSentinel } from './topology'

export interface Mode {
  name: 'memory' | 'redis' | 'cluster' | 'sentinel'
  /** Starts what the mode needs (beforeAll). */
  setup(): Promise<void>
  /** Stops it (afterAll). */
  teardown(): Promise<void>
  /** The url managers of this mode use (memory and redis modes only). */
  url(): string
  /** How managers of this mode reach their store (`url`, `cluster` or `sentinel`). */
  options(): CacheOptions
  /** A raw client in the Redis modes, null in memory mode. */
  raw(): RawView | null
}

function memoryMode(): Mode {
  return {
    name: 'memory',
    setup: async () => {},
    teardown: async () => {},
    url: () => 'memory://',
    options: () => ({ url: 'memory://' }),
    raw: () => null,
  }
}

function redisMode(): Mode {
  let server: RedisServer | null = null
  let raw: RawRedis | null = null
  return {
    name: 'redis',
    async setup() {
      server = await startRedis()
      raw = new RawRedis(server.port)
      await raw.client.ping()
    },
    async teardown() {
      if (raw) await raw.close()
      if (server) await server.stop()
    },
    url() {
      if (!server) throw new Error('redis mode not set up')
      return server.url
    },
    options() {
      return { url: this.url() }
    },
    raw: () => raw,
  }
}

const noUrl = (name: string) => () => {
  throw new Error(`${name} mode has no single url; use options()`)
}

/** The shared cluster (FC_CLUSTER_NODES from the global setup), or one of its own. */
function clusterMode(): Mode {
  let nodes: string[] = []
  let own: Awaited<ReturnType<typeof startCluster>> | null = null
  let raw: RawCluster | null = null
  return {
    name: 'cluster',
    async setup() {
      if (process.env.FC_CLUSTER_NODES) nodes = process.env.FC_CLUSTER_NODES.split(',')
      else {
        own = await startCluster()
        nodes = own.urls
      }
      raw = new RawCluster(nodes.map((u) => Number(u.split(':').pop())))
    },
    async teardown() {
      if (raw) await raw.close()
      if (own) await own.stop()
    },
    url: noUrl('cluster'),
    options: () => ({ cluster: { nodes } }),
    raw: () => raw,
  }
}

/** The shared Sentinel set-up (FC_SENTINEL_NODES from the global setup), or one of its own. */
function sentinelMode(): Mode {
  let nodes: string[] = []
  let own: Awaited<ReturnType<typeof startSentinel>> | null = null
  let raw: RawRedis | null = null
  return {
    name: 'sentinel',
    async setup() {
      if (process.env.FC_SENTINEL_NODES) nodes = process.env.FC_SENTINEL_NODES.split(',')
      else {
        own = await startSentinel()
        nodes = own.urls
      }
      const sentinelPort = Number(nodes[0].split(':').pop())
      const master = (await cli(sentinelPort, 'SENTINEL', 'GET-MASTER-ADDR-BY-NAME', MASTER_NAME)).split('\n')
      raw = new RawRedis(Number(master[1]))
    },
    async teardown() {
      if (raw) await raw.close()
      if (own) await own.stop()
    },
    url: noUrl('sentinel'),
    options: () => ({ sentinel: { nodes, masterName: MASTER_NAME } }),
    raw: () => raw,
  }
}

/** Fresh mode objects (one redis-server per test file that uses them; shared cluster and sentinel). */
export function modes(): Mode[] {
  return [memoryMode(), redisMode(), clusterMode(), sentinelMode()]
}

export { clusterMasters }

/**
 * Registers beforeAll/afterAll/afterEach for `mode` in the current describe and
 * returns a factory of fresh managers (fresh keyPrefix each), closed after each test.
 */
export function useManagers(mode: Mode): (extra?: CacheOptions) => CacheManager {
  const open: CacheManager[] = []
  beforeAll(() => mode.setup())
  afterEach(async () => {
    await Promise.all(open.splice(0).map((m) => m.close()))
  })
  afterAll(() => mode.teardown())
  return (extra: CacheOptions = {}) => {
    const m = createCacheManager({ ...mode.options(), keyPrefix: uniquePrefix(mode.name), ...extra })
    open.push(m)
    return m
  }
}

/**
 * Calls `fn`, which must return a Promise (never throw synchronously), and asserts
 * that the promise rejects with an instance of `cls` whose `code` is `code`.
 */
export async function expectReject(
  fn: () => unknown,
  cls: ErrorConstructor | TypeErrorConstructor | RangeErrorConstructor,
  code: string,
): Promise<void> {
  let ret: unknown
  try {
    ret = fn()
  } catch (e) {
    throw new Error(`threw synchronously instead of returning a rejected promise: ${String(e)}`)
  }
  expect(ret).toBeInstanceOf(Promise)
  const p = ret as Promise<unknown>
  await expect(p).rejects.toBeInstanceOf(cls)
  await expect(p).rejects.toHaveProperty('code', code)
}
