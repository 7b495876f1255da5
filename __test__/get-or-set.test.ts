// getOrSet: single flight per key in one process, errors never cached, TTL honoured,
// fresh copies, tenant isolation; in memory mode and against a private redis-server.
import { createCacheManager, CacheManager } from '..'
import { modes, useManagers } from './helpers/modes'

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

describe.each(modes().map((m) => [m.name, m] as const))('getOrSet (%s mode)', (_name, mode) => {
  const manager = useManagers(mode)

  it('1,000 concurrent calls for one key run the loader exactly once and all get the value', async () => {
    const cm = manager()
    let calls = 0
    const loader = async () => {
      calls++
      await sleep(20)
      return { rows: [1, 2, 3] }
    }
    const results = await Promise.all(Array.from({ length: 1000 }, () => cm.getOrSet('orders:list', loader, 60)))
    expect(calls).toBe(1)
    expect(results.every((r) => JSON.stringify(r) === '{"rows":[1,2,3]}')).toBe(true)
    expect(new Set(results).size).toBe(1000) // every waiter has its own copy
    expect(await cm.getCachedQuery('orders:list')).toEqual({ rows: [1, 2, 3] })
    expect(await cm.getOrSet('orders:list', loader)).toEqual({ rows: [1, 2, 3] })
    expect(calls).toBe(1) // cached: no second load
  })

  it('a loader that throws caches nothing and rejects every waiter with its error', async () => {
    const cm = manager()
    const boom = new Error('db down')
    let calls = 0
    const failing = async () => {
      calls++
      await sleep(10)
      throw boom
    }
    const settled = await Promise.allSettled(Array.from({ length: 50 }, () => cm.getOrSet('k', failing)))
    expect(calls).toBe(1)
    expect(settled.every((s) => s.status === 'rejected' && s.reason === boom)).toBe(true)
    expect(await cm.getCachedQuery('k')).toBeNull()
    expect(await cm.getOrSet('k', () => 'ok')).toBe('ok') // the error was not cached
  })

  it('honours the TTL: after it passes the loader runs again', async () => {
    const cm = manager()
    let version = 0
    const loader = () => ++version
    expect(await cm.getOrSet('v', loader, 0.2)).toBe(1)
    expect(await cm.getOrSet('v', loader, 0.2)).toBe(1)
    await sleep(400)
    expect(await cm.getOrSet('v', loader, 0.2)).toBe(2)
  })

  it('isolates tenants and the manager scope for the same key', async () => {
    const cm = manager()
    const a = await cm.tenant('a').getOrSet('k', () => 'A')
    const b = await cm.tenant('b').getOrSet('k', () => 'B')
    const g = await cm.getOrSet('k', () => 'G')
    expect([a, b, g]).toEqual(['A', 'B', 'G'])
    expect(await cm.tenant('a').getCachedQuery('k')).toBe('A')
  })

  it('returns fresh copies: mutating a result never changes the cache', async () => {
    const cm = manager()
    const first = await cm.getOrSet('obj', () => ({ n: 1 }))
    ;(first as { n: number }).n = 99
    expect(await cm.getOrSet('obj', () => ({ n: 2 }))).toEqual({ n: 1 })
  })

  it('rejects bad arguments with codes and never calls the loader', async () => {
    const cm = manager()
    let calls = 0
    const loader = () => {
      calls++
      return 1
    }
    await expect(cm.getOrSet('', loader)).rejects.toMatchObject({ code: 'ERR_INVALID_ARG' })
    await expect(cm.getOrSet('k', 'nope' as unknown as () => number)).rejects.toMatchObject({ code: 'ERR_INVALID_ARG' })
    await expect(cm.getOrSet('k', loader, -1)).rejects.toBeInstanceOf(RangeError)
    await expect(cm.getOrSet('k', () => undefined)).rejects.toMatchObject({ code: 'ERR_INVALID_ARG' })
    await expect(cm.getOrSet('k', () => 10n)).rejects.toMatchObject({ code: 'ERR_SERIALIZE' })
    expect(calls).toBe(0)
    expect(await cm.getCachedQuery('k')).toBeNull()
  })
})

describe('getOrSet on a closed manager', () => {
  it('rejects with ERR_CLOSED', async () => {
    const cm: CacheManager = createCacheManager({ url: 'memory://' })
    await cm.close()
    await expect(cm.getOrSet('k', () => 1)).rejects.toMatchObject({ code: 'ERR_CLOSED' })
  })
})
