// createCacheManager(options): invalid options throw synchronously with a code;
// valid ones never connect.

import { createCacheManager, CacheManager, codes } from '..'
import { freePort } from './helpers/redis-server'

const A = (v: unknown) => v as any // eslint-disable-line @typescript-eslint/no-explicit-any

describe('createCacheManager options', () => {
  const badOptions: Array<[string, unknown]> = [
    ['url 5', { url: 5 }],
    ["url 'http://x'", { url: 'http://x' }],
    ["url ''", { url: '' }],
    ["url 'redis' (no scheme)", { url: 'redis' }],
    ["keyPrefix ''", { keyPrefix: '' }],
    ['keyPrefix 5', { keyPrefix: 5 }],
    ['keyPrefix with a lone surrogate', { keyPrefix: 'p\ud800' }],
    ['ttl {session: -1}', { ttl: { session: -1 } }],
    ['ttl {query: 0}', { ttl: { query: 0 } }],
    ['ttl {session: NaN}', { ttl: { session: NaN } }],
    ["ttl {session: '10'}", { ttl: { session: '10' } }],
    ['commandTimeoutMs NaN', { commandTimeoutMs: NaN }],
    ['fallback {maxBytes: 10}', { fallback: { maxBytes: 10 } }],
    ["fallback {enabled: 'yes'}", { fallback: { enabled: 'yes' } }],
    ["queryIndex 'false' (a string)", { queryIndex: 'false' }],
    ["options 'memory://' (a string)", 'memory://'],
    ['options 5', 5],
  ]

  it.each(badOptions)('%s throws a TypeError with code ERR_INVALID_ARG, synchronously', (_what, opts) => {
    let err: unknown
    let made: CacheManager | undefined
    try {
      made = createCacheManager(A(opts))
    } catch (e) {
      err = e
    }
    if (made) void made.close()
    expect(err).toBeInstanceOf(TypeError)
    expect(err).toHaveProperty('code', codes.INVALID_ARG)
  })

  it('new CacheManager(bad options) throws the same way', () => {
    let err: unknown
    try {
      new CacheManager(A({ keyPrefix: '' }))
    } catch (e) {
      err = e
    }
    expect(err).toBeInstanceOf(TypeError)
    expect(err).toHaveProperty('code', codes.INVALID_ARG)
  })

  it('valid options are accepted and construction does no I/O (a dead port does not throw)', async () => {
    const port = await freePort()
    const m = createCacheManager({
      url: `redis://user:secret@127.0.0.1:${port}/0`,
      keyPrefix: 'opts:',
      ttl: { session: 1.5, query: 0.5 },
      commandTimeoutMs: 100,
      connectTimeoutMs: 100,
      retry: { attempts: 2, baseDelayMs: 5, maxDelayMs: 50 },
      fallback: { enabled: true, maxBytes: 1024 * 1024 * 16 },
      queryIndex: false,
    })
    expect(m).toBeInstanceOf(CacheManager)
    await m.close()
  })

  it("url 'memory://' gives a working manager", async () => {
    const m = createCacheManager({ url: 'memory://' })
    await m.setSession('s', { ok: 1 })
    await expect(m.getSession('s')).resolves.toEqual({ ok: 1 })
    await m.close()
  })

  it('codes lists every error code', () => {
    expect(codes).toEqual({
      INVALID_ARG: 'ERR_INVALID_ARG',
      SERIALIZE: 'ERR_SERIALIZE',
      TOO_LARGE: 'ERR_TOO_LARGE',
      CLOSED: 'ERR_CLOSED',
      REDIS_UNAVAILABLE: 'ERR_REDIS_UNAVAILABLE',
      REDIS: 'ERR_REDIS',
    })
    expect(Object.isFrozen(codes)).toBe(true)
  })
})
