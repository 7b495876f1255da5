// Managers and redis-server processes made by a test file, closed and stopped after each test.

import { createCacheManager, CacheManager, CacheOptions } from '../..'
import { RedisServer, startRedis, killAllRedis } from './redis-server'

export interface Fixtures {
  /** Managers made by `manager`, closed after each test (a test may close them earlier). */
  managers: CacheManager[]
  /** Servers made by `server` (a test may add the ones it starts), stopped after each test. */
  servers: RedisServer[]
  /** A manager with `commandTimeoutMs: 250` unless `options` says otherwise. */
  manager(options: CacheOptions): CacheManager
  /** A redis-server on a free loopback port, with extra command-line `args`. */
  server(args?: string[]): Promise<RedisServer>
}

/** Registers the after-each cleanup of the file's managers and servers; call at the top level. */
export function fixtures(): Fixtures {
  const managers: CacheManager[] = []
  const servers: RedisServer[] = []
  afterEach(async () => {
    await Promise.all(managers.splice(0).map((m) => m.close()))
    await Promise.all(servers.splice(0).map((s) => s.stop()))
  })
  afterAll(killAllRedis)
  return {
    managers,
    servers,
    manager(options) {
      const m = createCacheManager({ commandTimeoutMs: 250, ...options })
      managers.push(m)
      return m
    },
    async server(args = []) {
      const s = await startRedis(args)
      servers.push(s)
      return s
    },
  }
}
