// Redis unreachable (nothing listens on the port): with the fallback on (the
// default) calls are served from memory and never reject; with it off they
// reject with ERR_REDIS_UNAVAILABLE.

import { createCacheManager, CacheManager, CacheOptions, codes } from '..'
import { freePort, uniquePrefix } from './helpers/redis-server'
import { expectReject } from './helpers/modes'

describe('Redis unreachable', () => {
  let deadUrl: string
  const open: CacheManager[] = []

  beforeAll(async () => {
    deadUrl = `redis://127.0.0.1:${await freePort()}`
  })
  afterEach(async () => {
    await Promise.all(open.splice(0).map((m) => m.close()))
  })

  function make(extra: CacheOptions = {}): CacheManager {
    const m = createCacheManager({ url: deadUrl, keyPrefix: uniquePrefix('dead'), ...extra })
    open.push(m)
    return m
  }

  it('with default options, set/get/delete/invalidate are served from memory without rejecting', async () => {
    const m = make()
    await expect(m.setSession('s', { a: 1 })).resolves.toBeUndefined()
    await expect(m.getSession('s')).resolves.toEqual({ a: 1 })
    await expect(m.getSession('missing')).resolves.toBeNull()
    await m.cacheQueryResult('orders_1', 1)
    await m.cacheQueryResult('orders_2', 2)
    await m.cacheQueryResult('ordersX', 3)
    await expect(m.getCachedQuery('orders_1')).resolves.toBe(1)
    await expect(m.invalidateCache('orders_')).resolves.toBe(2)
    await expect(m.getCachedQuery('ordersX')).resolves.toBe(3)
    await expect(m.deleteSession('s')).resolves.toBe(true)
    await expect(m.getSession('s')).resolves.toBeNull()
    await expect(m.invalidateAll()).resolves.toBe(1)
  })

  it('the fallback keeps the round-trip rules and tenant isolation', async () => {
    const m = make()
    const v = { at: new Date('2024-01-01T00:00:00.000Z'), z: 1, a: [1, { b: 2 }] }
    await m.setSession('rt', v)
    const r = await m.getSession('rt')
    expect(JSON.stringify(r)).toBe(JSON.stringify(v))
    await m.tenant('a').setSession('k', 'A')
    await m.tenant('b').setSession('k', 'B')
    await expect(m.tenant('a').getSession('k')).resolves.toBe('A')
    await expect(m.tenant('b').getSession('k')).resolves.toBe('B')
    await expect(m.getSession('k')).resolves.toBeNull()
  })

  it('the fallback honours short TTLs', async () => {
    const m = make()
    await m.setSession('short', 1, 0.2)
    await expect(m.getSession('short')).resolves.toBe(1)
    await new Promise((r) => setTimeout(r, 400))
    await expect(m.getSession('short')).resolves.toBeNull()
  })

  it('many concurrent calls all resolve', async () => {
    const m = make({ commandTimeoutMs: 100 })
    await Promise.all(Array.from({ length: 200 }, (_, i) => m.setSession(`c${i}`, i)))
    const got = await Promise.all(Array.from({ length: 200 }, (_, i) => m.getSession(`c${i}`)))
    expect(got).toEqual(Array.from({ length: 200 }, (_, i) => i))
  })

  it('with fallback {enabled: false}, every data call rejects with ERR_REDIS_UNAVAILABLE', async () => {
    const m = make({ fallback: { enabled: false } })
    await expectReject(() => m.setSession('s', 1), Error, codes.REDIS_UNAVAILABLE)
    await expectReject(() => m.getSession('s'), Error, codes.REDIS_UNAVAILABLE)
    await expectReject(() => m.deleteSession('s'), Error, codes.REDIS_UNAVAILABLE)
    await expectReject(() => m.cacheQueryResult('q', 1), Error, codes.REDIS_UNAVAILABLE)
    await expectReject(() => m.getCachedQuery('q'), Error, codes.REDIS_UNAVAILABLE)
    await expectReject(() => m.invalidateCache('q'), Error, codes.REDIS_UNAVAILABLE)
    await expectReject(() => m.invalidateAll(), Error, codes.REDIS_UNAVAILABLE)
    await expectReject(() => m.tenant('t').getSession('s'), Error, codes.REDIS_UNAVAILABLE)
  })

  it('with fallback off, bad input is still reported as bad input, not as unavailability', async () => {
    const m = make({ fallback: { enabled: false } })
    await expectReject(() => m.setSession('', 1), TypeError, codes.INVALID_ARG)
    await expectReject(() => m.setSession('s', BigInt(1)), TypeError, codes.SERIALIZE)
  })
})
