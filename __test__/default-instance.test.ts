// The default `cacheManager`: configured from REDIS_URL on first use, never
// connecting at import time. A file of its own, so the module state is fresh.

import { RawRedis, RedisServer, sleep, startRedis } from './helpers/redis-server'

type Module = typeof import('..')

describe('default cacheManager', () => {
  let server: RedisServer
  let raw: RawRedis
  let mod: Module
  const savedUrl = process.env.REDIS_URL

  async function otherClients(): Promise<number> {
    const list = (await raw.client.client('LIST')) as string
    return (
      list
        .trim()
        .split('\n')
        .filter((l) => l.length > 0).length - 1
    ) // minus our raw client
  }

  beforeAll(async () => {
    server = await startRedis()
    raw = new RawRedis(server.port)
    await raw.client.ping()
    process.env.REDIS_URL = server.url
    // the first import of the package in this file's fresh module registry
    mod = require('..') as Module // eslint-disable-line @typescript-eslint/no-require-imports
  })

  afterAll(async () => {
    if (mod) await mod.cacheManager.close()
    if (savedUrl === undefined) delete process.env.REDIS_URL
    else process.env.REDIS_URL = savedUrl
    if (raw) await raw.close()
    if (server) await server.stop()
  })

  it('importing does not connect (REDIS_URL already points at our server)', async () => {
    expect(mod.cacheManager).toBeInstanceOf(mod.CacheManager)
    mod.cacheManager.tenant('t') // a scope is not a call
    await sleep(300)
    expect(await otherClients()).toBe(0)
  })

  it('the first call writes into the REDIS_URL server under fc:s:<id>', async () => {
    const id = `default-${process.pid}-${Date.now()}`
    await mod.cacheManager.setSession(id, { via: 'default' })
    expect(JSON.parse((await raw.getUtf8(`fc:s:${id}`))!)).toEqual({ via: 'default' })
    expect(await raw.pttl(`fc:s:${id}`)).toBeGreaterThan(3_590_000)
    await expect(mod.cacheManager.getSession(id)).resolves.toEqual({ via: 'default' })
    expect(await otherClients()).toBeGreaterThanOrEqual(1)
    await expect(mod.cacheManager.deleteSession(id)).resolves.toBe(true)
    expect(await raw.exists(`fc:s:${id}`)).toBe(0)
  })

  it('changing REDIS_URL after the first call does not move the default instance', async () => {
    process.env.REDIS_URL = 'redis://127.0.0.1:1'
    try {
      const id = `default-stays-${Date.now()}`
      await mod.cacheManager.cacheQueryResult(id, 1)
      expect(await raw.exists(`fc:q:${id}`)).toBe(1)
      await expect(mod.cacheManager.invalidateCache(id)).resolves.toBe(1)
    } finally {
      process.env.REDIS_URL = server.url
    }
  })

  it('close() on the default instance is idempotent and later calls reject with ERR_CLOSED', async () => {
    await mod.cacheManager.close()
    await mod.cacheManager.close()
    const p = mod.cacheManager.getSession('x')
    await expect(p).rejects.toHaveProperty('code', mod.codes.CLOSED)
    await expect(p).rejects.toBeInstanceOf(Error)
  })
})
