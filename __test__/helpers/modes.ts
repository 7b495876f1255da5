// The two modes the contract suite runs in: `memory://`, and Redis against a
// private redis-server started by the test file. Use with describe.each(MODES).

import { createCacheManager, CacheManager, CacheOptions } from '../..'
import { RawRedis, RedisServer, startRedis, uniquePrefix } from './redis-server'

export interface Mode {
  name: 'memory' | 'redis'
  /** Starts what the mode needs (beforeAll). */
  setup(): Promise<void>
  /** Stops it (afterAll). */
  teardown(): Promise<void>
  /** The url managers of this mode use. */
  url(): string
  /** A raw client in Redis mode, null in memory mode. */
  raw(): RawRedis | null
}

function memoryMode(): Mode {
  return {
    name: 'memory',
    setup: async () => {},
    teardown: async () => {},
    url: () => 'memory://',
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
    raw: () => raw,
  }
}

/** Fresh mode objects (one redis-server per test file that uses them). */
export function modes(): Mode[] {
  return [memoryMode(), redisMode()]
}

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
    const m = createCacheManager({ url: mode.url(), keyPrefix: uniquePrefix(mode.name), ...extra })
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
