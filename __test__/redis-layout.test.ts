// Redis mode only: what lands in Redis (key layout, TTLs, plain UTF-8 JSON any
// client can read), checked with a raw client against a private redis-server.

import { createCacheManager, CacheManager, CacheOptions, codes } from '..'
import { RawRedis, RedisServer, startRedis, uniquePrefix } from './helpers/redis-server'

describe('Redis layout and interop', () => {
  let server: RedisServer
  let raw: RawRedis
  const open: CacheManager[] = []

  beforeAll(async () => {
    server = await startRedis()
    raw = new RawRedis(server.port)
    await raw.client.ping()
  })
  afterEach(async () => {
    await Promise.all(open.splice(0).map((m) => m.close()))
  })
  afterAll(async () => {
    if (raw) await raw.close()
    if (server) await server.stop()
  })

  function make(extra: CacheOptions = {}): { m: CacheManager; prefix: string } {
    const prefix = extra.keyPrefix ?? uniquePrefix('layout')
    const m = createCacheManager({ url: server.url, ...extra, keyPrefix: prefix })
    open.push(m)
    return { m, prefix }
  }

  it('a session is stored under <keyPrefix>s:<id> as UTF-8 JSON text', async () => {
    const { m, prefix } = make()
    const data = {
      user: 'zoë',
      emoji: '😀',
      nested: { list: [1, 2.5, null, true] },
      at: new Date('2024-01-02T03:04:05.006Z'),
    }
    await m.setSession('sess-1', data)
    const buf = await raw.getBuffer(`${prefix}s:sess-1`)
    expect(buf).not.toBeNull()
    const text = buf!.toString('utf8')
    expect(Buffer.from(text, 'utf8').equals(buf!)).toBe(true) // valid UTF-8, no replacement characters
    expect(text).toBe(JSON.stringify(data))
    expect(JSON.parse(text)).toEqual(JSON.parse(JSON.stringify(data)))
  })

  it('a query result is stored under <keyPrefix>q:<key> as JSON text', async () => {
    const { m, prefix } = make()
    await m.cacheQueryResult('production_orders', [{ id: 1 }], 300)
    expect(JSON.parse((await raw.getUtf8(`${prefix}q:production_orders`))!)).toEqual([{ id: 1 }])
    // plus the scope's query index: two sorted sets listing the key (docs/decisions.md, "Query index")
    expect(await raw.keysStartingWith(prefix)).toEqual([`${prefix}i:q`, `${prefix}q:production_orders`, `${prefix}x:q`])
    expect(await raw.client.zrange(`${prefix}i:q`, 0, -1, 'WITHSCORES')).toEqual(['production_orders', '0'])
    const expiresAt = Number(await raw.client.zscore(`${prefix}x:q`, 'production_orders'))
    expect(Math.abs(expiresAt - (Date.now() + 300_000))).toBeLessThan(5_000)
  })

  it('queryIndex: false writes no index and invalidates by SCAN', async () => {
    const { m, prefix } = make({ queryIndex: false })
    await m.cacheQueryResult('orders_1', 1)
    await m.cacheQueryResult('ordersX', 2)
    expect(await raw.keysStartingWith(prefix)).toEqual([`${prefix}q:ordersX`, `${prefix}q:orders_1`])
    await expect(m.invalidateCache('orders_')).resolves.toBe(1)
    expect(await raw.keysStartingWith(prefix)).toEqual([`${prefix}q:ordersX`])
  })

  it('null is stored as the JSON text null; lone surrogates as JSON escapes', async () => {
    const { m, prefix } = make()
    await m.setSession('n', null)
    await m.setSession('ls', 'a\ud800b')
    expect(await raw.getUtf8(`${prefix}s:n`)).toBe('null')
    const text = (await raw.getUtf8(`${prefix}s:ls`))!
    expect(JSON.parse(text)).toBe('a\ud800b')
  })

  it('keys with glob characters and unicode are stored literally', async () => {
    const { m, prefix } = make()
    await m.setSession('a*[b]?\\é😀', 1)
    expect(await raw.exists(`${prefix}s:a*[b]?\\é😀`)).toBe(1)
  })

  it('deleteSession and invalidateCache remove the raw keys', async () => {
    const { m, prefix } = make()
    await m.setSession('s', 1)
    await m.cacheQueryResult('orders_1', 1)
    await m.cacheQueryResult('orders_2', 2)
    await m.cacheQueryResult('ordersX', 3)
    await m.deleteSession('s')
    expect(await raw.exists(`${prefix}s:s`)).toBe(0)
    await expect(m.invalidateCache('orders_')).resolves.toBe(2)
    expect(await raw.keysStartingWith(prefix)).toEqual([`${prefix}i:q`, `${prefix}q:ordersX`, `${prefix}x:q`])
    expect(await raw.client.zrange(`${prefix}i:q`, 0, -1)).toEqual(['ordersX'])
    await expect(m.invalidateAll()).resolves.toBe(1)
    expect(await raw.keysStartingWith(prefix)).toEqual([])
  })

  it('default TTLs: PTTL of a session is ~3600000 ms, of a query result ~300000 ms', async () => {
    const { m, prefix } = make()
    await m.setSession('s', 1)
    await m.cacheQueryResult('q', 1)
    const s = await raw.pttl(`${prefix}s:s`)
    const q = await raw.pttl(`${prefix}q:q`)
    expect(s).toBeGreaterThan(3_590_000)
    expect(s).toBeLessThanOrEqual(3_600_000)
    expect(q).toBeGreaterThan(290_000)
    expect(q).toBeLessThanOrEqual(300_000)
  })

  it('the ttl option changes the defaults: {session: 10, query: 20}', async () => {
    const { m, prefix } = make({ ttl: { session: 10, query: 20 } })
    await m.setSession('s', 1)
    await m.cacheQueryResult('q', 1)
    const s = await raw.pttl(`${prefix}s:s`)
    const q = await raw.pttl(`${prefix}q:q`)
    expect(s).toBeGreaterThan(9_000)
    expect(s).toBeLessThanOrEqual(10_000)
    expect(q).toBeGreaterThan(19_000)
    expect(q).toBeLessThanOrEqual(20_000)
  })

  it('ttl option {session: 10} alone leaves the query default at 300 s', async () => {
    const { m, prefix } = make({ ttl: { session: 10 } })
    await m.setSession('s', 1)
    await m.cacheQueryResult('q', 1)
    expect(await raw.pttl(`${prefix}s:s`)).toBeLessThanOrEqual(10_000)
    expect(await raw.pttl(`${prefix}q:q`)).toBeGreaterThan(290_000)
  })

  it('an explicit ttl is used as given, fractions in milliseconds (1.5 s -> ~1500 ms)', async () => {
    const { m, prefix } = make()
    await m.setSession('s', 1, 1.5)
    await m.cacheQueryResult('q', 1, 42)
    const s = await raw.pttl(`${prefix}s:s`)
    expect(s).toBeGreaterThan(1_300)
    expect(s).toBeLessThanOrEqual(1_500)
    const q = await raw.pttl(`${prefix}q:q`)
    expect(q).toBeGreaterThan(41_000)
    expect(q).toBeLessThanOrEqual(42_000)
  })

  it('the default keyPrefix is fc:', async () => {
    const id = `default-prefix-${process.pid}-${Date.now()}`
    const m = createCacheManager({ url: server.url })
    open.push(m)
    await m.setSession(id, { ok: true })
    expect(JSON.parse((await raw.getUtf8(`fc:s:${id}`))!)).toEqual({ ok: true })
    await m.deleteSession(id)
    expect(await raw.exists(`fc:s:${id}`)).toBe(0)
  })

  it('invalidateAll leaves foreign keys that merely share the keyPrefix text alone', async () => {
    const { m, prefix } = make()
    await raw.client.set(`${prefix}qx`, 'foreign-1')
    await raw.client.set(`${prefix}s:q:x`, 'foreign-2')
    await raw.client.set(`${prefix.slice(0, -1)}q:x`, 'foreign-3')
    await m.cacheQueryResult('x', 1)
    await expect(m.invalidateAll()).resolves.toBe(1)
    expect(await raw.client.get(`${prefix}qx`)).toBe('foreign-1')
    expect(await raw.client.get(`${prefix}s:q:x`)).toBe('foreign-2')
    expect(await raw.client.get(`${prefix.slice(0, -1)}q:x`)).toBe('foreign-3')
    await raw.client.del(`${prefix}qx`, `${prefix}s:q:x`, `${prefix.slice(0, -1)}q:x`)
  })

  it('JSON written by another client under the layout is readable', async () => {
    const { m, prefix } = make()
    await raw.client.set(`${prefix}s:from-other`, JSON.stringify({ by: 'ioredis', n: [1, 2] }))
    await expect(m.getSession('from-other')).resolves.toEqual({ by: 'ioredis', n: [1, 2] })
  })

  it('a foreign non-string key under the layout makes getSession reject with ERR_REDIS, not crash', async () => {
    const { m, prefix } = make()
    await raw.client.rpush(`${prefix}s:list`, 'a')
    const p = m.getSession('list')
    await expect(p).rejects.toHaveProperty('code', codes.REDIS)
    await expect(p).rejects.toBeInstanceOf(Error)
    await m.setSession('fine', 1)
    await expect(m.getSession('fine')).resolves.toBe(1)
  })
})
