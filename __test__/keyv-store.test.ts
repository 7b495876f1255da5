// ferrocache/keyv beyond the compliance suite (keyv-suite.test.ts): namespaces, TTLs,
// scoped clear, the *Many methods, the key layout in Redis, Redis outages (simulated,
// and a real SIGKILL + restart on the same port), bad input, events, disconnect, and
// the README's cache-manager 7 / Express example and cacheable over it, against
// private redis-server processes (never the shared 6379) and memory://.
//
// Every server is stopped by pid, every manager and raw client is closed, so Jest
// ends by itself.

import express from 'express'
import request from 'supertest'
import Keyv from 'keyv'
import { Keyv as Keyv6 } from 'keyv6'
import { createCache } from 'cache-manager'
import { Cacheable } from 'cacheable'
import { createCacheManager, cacheManager, CacheManager } from '..'
import { KeyvFerrocache, createKeyvStore, KeyvFerrocacheError, NO_EXPIRY_SECONDS } from '../lib/keyv'
import { expectReject, modes, useManagers } from './helpers/modes'
import { RawRedis, startRedis, uniquePrefix, sleep } from './helpers/redis-server'
import { queryNames } from './helpers/layout'
import { killAllRedis, restartOn, waitFor, watch } from './helpers/traffic'

afterAll(async () => {
  await killAllRedis()
})

/** The query key ferrocache stores an adapter entry under (inside the manager's keyPrefix). */
function entryKey(key: string, namespace = '', prefix = 'keyv:'): string {
  const part = (s: string) => `${Buffer.byteLength(s)}:${s}`
  return `${prefix}${part(namespace)}:${part(key)}`
}

describe.each(modes())('ferrocache/keyv ($name)', (mode) => {
  const manager = useManagers(mode)
  /** The Redis names of an adapter entry and of the query index sets listing it. */
  const names = (prefix: string, key: string) => queryNames(prefix, key, { cluster: mode.name === 'cluster' })

  it('stores under the documented query key, JSON readable by any client', async () => {
    const prefix = uniquePrefix('layout')
    const m = manager({ keyPrefix: prefix })
    const store = new KeyvFerrocache({ manager: m })
    store.namespace = 'users'
    await store.set('ada:1', { name: 'Ada' })
    expect(entryKey('ada:1', 'users')).toBe('keyv:5:users:5:ada:1')
    expect(await m.getCachedQuery('keyv:5:users:5:ada:1')).toEqual({ name: 'Ada' })
    const raw = mode.raw()
    if (raw) {
      const { entry, lex, expiry } = names(prefix, 'keyv:5:users:5:ada:1')
      expect(await raw.keysStartingWith(prefix)).toEqual([lex, entry, expiry].sort())
      expect(JSON.parse((await raw.getUtf8(entry))!)).toEqual({ name: 'Ada' })
    }
  })

  it('namespaces are isolated: same key, two namespaces, delete and clear touch only their own', async () => {
    const m = manager()
    const a = new Keyv({ store: new KeyvFerrocache({ manager: m }), namespace: 'a' })
    const ab = new Keyv({ store: new KeyvFerrocache({ manager: m }), namespace: 'a:' }) // "a" + ":" must not overlap "a"
    const none = new Keyv({ store: new KeyvFerrocache({ manager: m }), namespace: undefined })
    await a.set('k', 'in a')
    await ab.set('k', 'in a:')
    await none.set('a:k', 'no namespace') // the raw key Keyv 5 would make for namespace a
    expect(await a.get('k')).toBe('in a')
    expect(await ab.get('k')).toBe('in a:')
    expect(await none.get('a:k')).toBe('no namespace')

    expect(await a.delete('k')).toBe(true)
    expect(await a.get('k')).toBeUndefined()
    expect(await ab.get('k')).toBe('in a:')

    await a.set('k', 'again')
    await a.set('k2', 'two')
    await a.clear()
    expect(await a.get(['k', 'k2'])).toEqual([undefined, undefined])
    expect(await ab.get('k')).toBe('in a:')
    expect(await none.get('a:k')).toBe('no namespace')
  })

  it('Keyv 6 (bridged): namespaces and clear are scoped by the adapter, keys are not double-prefixed', async () => {
    const m = manager()
    const a = new Keyv6({ store: new KeyvFerrocache({ manager: m }), namespace: 'a' })
    const b = new Keyv6({ store: new KeyvFerrocache({ manager: m }), namespace: 'b' })
    await a.set('k', 1)
    await b.set('k', 2)
    expect(await m.getCachedQuery(entryKey('k', 'a'))).toEqual(expect.any(String))
    await a.clear()
    expect(await a.get('k')).toBeUndefined()
    expect(await b.get('k')).toBe(2)
    // Keyv 6 expands the adapter's single deleteMany boolean to every key (documented)
    await b.set('k2', 3)
    expect(await b.delete(['k2', 'missing'])).toEqual([true, true])
    expect(await b.delete(['missing'])).toEqual([false])
  })

  it('clear() without a namespace removes every entry under the prefix, nothing else', async () => {
    const m = manager()
    const none = new KeyvFerrocache({ manager: m })
    const ns = new KeyvFerrocache({ manager: m, namespace: 'ns' })
    const other = new KeyvFerrocache({ manager: m, prefix: 'other:' })
    const tenant = new KeyvFerrocache({ manager: m, tenant: 'acme' })
    await none.set('x', 1)
    await ns.set('y', 2)
    await other.set('x', 3)
    await tenant.set('x', 4)
    await m.cacheQueryResult('keyvx', 'app query result') // not under 'keyv:'
    await none.clear()
    expect(await none.get('x')).toBeUndefined()
    expect(await ns.get('y')).toBeUndefined()
    expect(await other.get('x')).toBe(3)
    expect(await tenant.get('x')).toBe(4)
    expect(await m.getCachedQuery('keyvx')).toBe('app query result')
  })

  it('delete removes exactly one entry (keys that are prefixes of each other)', async () => {
    const store = new KeyvFerrocache({ manager: manager(), namespace: 'n' })
    for (const k of ['fo', 'foo', 'foo1', 'foo:', '1:foo']) await store.set(k, k)
    expect(await store.delete('foo')).toBe(true)
    expect(await store.delete('foo')).toBe(false)
    expect(await store.getMany(['fo', 'foo', 'foo1', 'foo:', '1:foo'])).toEqual([
      'fo',
      undefined,
      'foo1',
      'foo:',
      '1:foo',
    ])
  })

  it('getMany / setMany / deleteMany / hasMany', async () => {
    const store = new KeyvFerrocache({ manager: manager(), namespace: 'many' })
    expect(await store.setMany([])).toEqual([])
    expect(await store.getMany([])).toEqual([])
    expect(await store.deleteMany([])).toBe(false)
    expect(
      await store.setMany([
        { key: 'a', value: 'A' },
        { key: 'b', value: { n: 2 }, ttl: 60_000 },
        { key: 'c', value: null },
      ]),
    ).toEqual([true, true, true])
    expect(await store.getMany(['a', 'b', 'c', 'd'])).toEqual(['A', { n: 2 }, undefined, undefined]) // null reads as a miss
    expect(await store.hasMany(['a', 'b', 'c', 'd'])).toEqual([true, true, false, false])
    expect(await store.deleteMany(['a', 'd'])).toBe(true) // at least one existed
    expect(await store.deleteMany(['a', 'd'])).toBe(false)
    expect(await store.getMany(['a', 'b'])).toEqual([undefined, { n: 2 }])

    const keyv = new Keyv({ store: new KeyvFerrocache({ manager: manager() }) })
    expect(
      await keyv.setMany([
        { key: 'x', value: 1 },
        { key: 'y', value: 2, ttl: 1000 },
      ]),
    ).toEqual([true, true])
    expect(await keyv.getMany(['x', 'y', 'z'])).toEqual([1, 2, undefined])
    expect(await keyv.deleteMany(['x', 'y'])).toBe(true)
    expect(await keyv.getMany(['x', 'y'])).toEqual([undefined, undefined])
  })

  it('ttl (ms) expires entries in the store itself, not only in Keyv', async () => {
    const prefix = uniquePrefix('ttl')
    const m = manager({ keyPrefix: prefix })
    const store = new KeyvFerrocache({ manager: m })
    await store.set('short', 'v', 150)
    await store.set('fraction', 'v', 150.5)
    await store.set('long', 'v', 60_000)
    expect(await store.get('short')).toBe('v')
    await sleep(300)
    expect(await store.get('short')).toBeUndefined()
    expect(await store.has('fraction')).toBe(false)
    expect(await store.get('long')).toBe('v')
    const raw = mode.raw()
    if (raw) {
      const pttl = await raw.pttl(names(prefix, entryKey('long')).entry)
      expect(pttl).toBeGreaterThan(59_000)
      expect(pttl).toBeLessThanOrEqual(60_000)
    }
  })

  it('a set without ttl (undefined, null, 0) gets the longest TTL ferrocache accepts', async () => {
    const prefix = uniquePrefix('forever')
    const m = manager({ keyPrefix: prefix })
    const store = new KeyvFerrocache({ manager: m })
    await store.set('forever', 'v')
    await store.set('null', 'v', null as unknown as number)
    await store.set('zero', 'v', 0)
    await new Keyv({ store: new KeyvFerrocache({ manager: m }) }).set('viaKeyv', 'v')
    expect(await store.getMany(['forever', 'null', 'zero'])).toEqual(['v', 'v', 'v'])
    expect(NO_EXPIRY_SECONDS).toBe(2147483647)
    const raw = mode.raw()
    if (raw) {
      const keys = await raw.keysStartingWith(prefix)
      const entries = keys.filter((k) => !/^[ix]:q(\{|$)/.test(k.slice(prefix.length)))
      expect(entries).toHaveLength(4)
      // and the two index sets of each bucket in use (one bucket unless on a Cluster)
      const buckets = new Set(entries.map((k) => /\{[^}]*\}/.exec(k)?.[0] ?? ''))
      expect(keys).toHaveLength(4 + 2 * buckets.size)
      for (const k of keys) {
        expect(await raw.pttl(k)).toBeGreaterThan((NO_EXPIRY_SECONDS - 60) * 1000)
      }
    }
  })

  it('tenant option: entries isolated to the tenant', async () => {
    const m = manager()
    const acme = new KeyvFerrocache({ manager: m, tenant: 'acme' })
    const globex = new KeyvFerrocache({ manager: m, tenant: 'globex' })
    expect(acme.tenant).toBe('acme')
    expect(acme.opts).toEqual({ dialect: 'ferrocache', prefix: 'keyv:', tenant: 'acme' })
    await acme.set('k', 'acme')
    await globex.set('k', 'globex')
    await acme.clear()
    expect(await acme.get('k')).toBeUndefined()
    expect(await globex.get('k')).toBe('globex')
    expect(await m.tenant('globex').getCachedQuery(entryKey('k'))).toBe('globex')
  })

  it('bad input rejects with coded errors, never throws synchronously, writes nothing', async () => {
    const m = manager({ limits: { maxValueBytes: 1024 } })
    const store = new KeyvFerrocache({ manager: m })
    const s = store as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>
    const circular: Record<string, unknown> = {}
    circular.self = circular

    await expectReject(() => s.get(42), TypeError, 'ERR_INVALID_ARG')
    await expectReject(() => s.get(''), TypeError, 'ERR_INVALID_ARG')
    await expectReject(() => s.get(undefined), TypeError, 'ERR_INVALID_ARG')
    await expectReject(() => s.get('\uD800'), TypeError, 'ERR_INVALID_ARG') // lone surrogate
    await expectReject(() => s.has({}), TypeError, 'ERR_INVALID_ARG')
    await expectReject(() => s.delete(null), TypeError, 'ERR_INVALID_ARG')
    await expectReject(() => s.getMany('a'), TypeError, 'ERR_INVALID_ARG')
    await expectReject(() => s.getMany(['a', 1]), TypeError, 'ERR_INVALID_ARG')
    await expectReject(() => s.deleteMany(undefined), TypeError, 'ERR_INVALID_ARG')
    await expectReject(() => s.hasMany([Symbol('x')]), TypeError, 'ERR_INVALID_ARG')

    await expectReject(() => s.set('k', undefined), TypeError, 'ERR_INVALID_ARG')
    await expectReject(() => s.set('k', circular), TypeError, 'ERR_SERIALIZE')
    await expectReject(() => s.set('k', 10n), TypeError, 'ERR_SERIALIZE')
    await expectReject(() => s.set('k', 'x'.repeat(2000)), RangeError, 'ERR_TOO_LARGE')
    await expectReject(() => s.set('k'.repeat(5000), 'v'), RangeError, 'ERR_TOO_LARGE')
    await expectReject(() => s.set('k', 'v', '1000'), TypeError, 'ERR_INVALID_ARG')
    for (const ttl of [-1, NaN, Infinity, -Infinity, NO_EXPIRY_SECONDS * 1000 + 1]) {
      await expectReject(() => s.set('k', 'v', ttl), RangeError, 'ERR_INVALID_ARG')
    }
    await expectReject(() => s.setMany('k'), TypeError, 'ERR_INVALID_ARG')
    await expectReject(() => s.setMany([{ key: 'ok', value: 1 }, 'k']), TypeError, 'ERR_INVALID_ARG')
    await expectReject(
      () =>
        s.setMany([
          { key: 'ok', value: 1 },
          { key: 'bad', value: 1, ttl: -5 },
        ]),
      RangeError,
      'ERR_INVALID_ARG',
    )
    await expectReject(
      () =>
        s.setMany([
          { key: 'ok', value: 1 },
          { key: '', value: 1 },
        ]),
      TypeError,
      'ERR_INVALID_ARG',
    )
    await expectReject(
      () =>
        s.setMany([
          { key: 'ok', value: 1 },
          { key: 'u', value: undefined },
        ]),
      TypeError,
      'ERR_INVALID_ARG',
    )
    expect(await store.get('ok')).toBeUndefined() // a refused setMany wrote nothing
    expect(await store.get('k')).toBeUndefined()

    store.namespace = 42 as unknown as string
    await expectReject(() => store.get('k'), TypeError, 'ERR_INVALID_ARG')
    await expectReject(() => store.clear(), TypeError, 'ERR_INVALID_ARG')
    store.namespace = undefined

    // Keyv itself: a refused write resolves false and emits 'error' with the coded error
    const keyv = new Keyv({ store: new KeyvFerrocache({ manager: m }) })
    const errors: Array<{ code?: string }> = []
    keyv.on('error', (e: { code?: string }) => errors.push(e))
    expect(await keyv.set('big', 'x'.repeat(2000))).toBe(false)
    expect(errors.map((e) => e.code)).toEqual(['ERR_TOO_LARGE'])
    expect(await keyv.get('big')).toBeUndefined()
  })

  it('constructor options are validated synchronously (TypeError with code), never connect', () => {
    // no options: the package's default instance, not created (nor connected) by the constructor
    const byDefault = new KeyvFerrocache()
    expect(byDefault.manager).toBe(cacheManager)
    expect(byDefault.namespace).toBeUndefined()
    const bad: unknown[] = [
      42,
      [],
      { manager: {} },
      { manager: manager(), cache: { url: 'memory://' } },
      { cache: 'memory://' },
      { tenant: '' },
      { tenant: 5 },
      { prefix: '' },
      { namespace: 3 },
      { cache: { url: 'ftp://nope' } },
    ]
    for (const options of bad) {
      let caught: unknown
      try {
        new KeyvFerrocache(options as never)
      } catch (err) {
        caught = err
      }
      expect(caught).toBeInstanceOf(TypeError)
      expect(caught).toHaveProperty('code', 'ERR_INVALID_ARG')
    }
  })

  it('disconnect() closes a manager the adapter created, and leaves a given one open', async () => {
    const own = createKeyvStore(
      mode.name === 'memory' ? 'memory://' : { cache: { ...mode.options(), keyPrefix: uniquePrefix('own') } },
    )
    await own.set('k', 'v')
    expect(await own.get('k')).toBe('v')
    await own.disconnect()
    await expectReject(() => own.get('k'), Error, 'ERR_CLOSED')

    const m = manager()
    const shared = new KeyvFerrocache({ manager: m })
    const keyv = new Keyv({ store: shared })
    await keyv.set('k', 'v')
    await keyv.disconnect()
    expect(await m.getCachedQuery(entryKey('keyv:k', 'keyv'))).toEqual(expect.any(String)) // Keyv 5 prefixes keys itself
    expect(shared.manager).toBe(m)
  })

  it('a closed manager: Keyv reports ERR_CLOSED as an error event, never crashes', async () => {
    const m = createCacheManager({ ...mode.options(), keyPrefix: uniquePrefix('closed') })
    const keyv = new Keyv({ store: new KeyvFerrocache({ manager: m }) })
    const errors: Array<{ code?: string }> = []
    keyv.on('error', (e: { code?: string }) => errors.push(e))
    await m.close()
    expect(await keyv.set('k', 'v')).toBe(false)
    expect(await keyv.get('k')).toBeUndefined() // Keyv 5 swallows read errors
    expect(await keyv.delete('k')).toBe(false)
    await keyv.clear()
    expect(errors.map((e) => e.code)).toEqual(['ERR_CLOSED', 'ERR_CLOSED', 'ERR_CLOSED'])
  })
})

// ---------------------------------------------------------------------------
// Redis only: outages, events, cache-manager and cacheable

describe('ferrocache/keyv over Redis', () => {
  const redisMode = modes().find((m) => m.name === 'redis')!
  const manager = useManagers(redisMode) // a private redis-server for this describe
  const rawRedis = () => redisMode.raw()!

  it('simulated outage: Keyv keeps working from memory, no error; writes and deletes reach Redis on recovery', async () => {
    const prefix = uniquePrefix('kv-sim')
    const m = manager({ keyPrefix: prefix, commandTimeoutMs: 250 })
    const w = watch(m)
    const rr = rawRedis()
    const keyv = new Keyv({ store: new KeyvFerrocache({ manager: m }), namespace: 'app' })
    const errors: unknown[] = []
    keyv.on('error', (e: unknown) => errors.push(e))
    const redisKey = (k: string) => `${prefix}q:${entryKey(`app:${k}`, 'app')}`

    await keyv.set('before', 'B', 60_000)
    await keyv.set('doomed', 'D', 60_000)
    expect(await rr.exists(redisKey('before'))).toBe(1)

    m.simulateOutage({ mode: 'refuse' })
    expect(await keyv.set('during', { n: 1 }, 60_000)).toBe(true)
    expect(await keyv.get('during')).toEqual({ n: 1 })
    expect(await keyv.delete('doomed')).toBe(false) // journaled as an invalidation; not in memory: false
    expect(await keyv.get('doomed')).toBeUndefined()
    expect(await rr.exists(redisKey('during'))).toBe(0) // not in Redis yet
    expect(w.fallback.map((f) => f.kind)).toContain('simulated')

    m.endSimulatedOutage()
    await waitFor('recovered', () => w.recovered.length > 0, 10_000)
    expect(await rr.exists(redisKey('during'))).toBe(1)
    expect(await rr.exists(redisKey('doomed'))).toBe(0) // the delete was replayed, not resurrected
    expect(await keyv.get('doomed')).toBeUndefined()
    expect(await keyv.get('before')).toBe('B')
    expect(await keyv.get('during')).toEqual({ n: 1 })
    expect(errors).toEqual([])
  })

  it('redis-server SIGKILLed and restarted on the same port: cache-manager keeps answering, no error', async () => {
    const proc = await startRedis()
    const prefix = uniquePrefix('kv-kill')
    const m = manager({ url: proc.url, keyPrefix: prefix, commandTimeoutMs: 250 })
    const w = watch(m)
    const keyv = new Keyv({ store: new KeyvFerrocache({ manager: m }) })
    const errors: unknown[] = []
    keyv.on('error', (e: unknown) => errors.push(e))
    const cache = createCache({ stores: [keyv] })
    let loads = 0
    const load = async () => ({ loaded: ++loads })

    expect(await cache.wrap('report', load, 60_000)).toEqual({ loaded: 1 })
    await proc.kill()
    // until the connection's loss is seen, the near cache serves as usual; then the fail-safe does
    await waitFor('tracking lost', () => m.metrics().nearCache.tracking !== 'active', 5000)
    // the pre-outage entry this process wrote is served by the near cache (fail-safe): no reload
    expect(await cache.wrap('report', load, 60_000)).toEqual({ loaded: 1 })
    expect(await cache.wrap('report', load, 60_000)).toEqual({ loaded: 1 })
    expect(m.metrics().nearCache.failSafeHits).toBeGreaterThanOrEqual(2)
    await cache.set('during', 'x', 60_000)
    expect(await cache.get('during')).toBe('x')
    expect(w.fallback.length).toBeGreaterThanOrEqual(1)

    const restarted = await restartOn(proc.port) // empty: no persistence
    await waitFor('recovered', () => w.recovered.length > 0, 10_000)
    const rr = new RawRedis(restarted.port)
    expect(JSON.parse((await rr.getUtf8(`${prefix}q:${entryKey('keyv:during', 'keyv')}`))!)).toEqual(
      expect.stringContaining('"x"'),
    )
    expect(await cache.get('during')).toBe('x')
    // no call failed; the manager may report a replay attempt refused while the server restarts
    // (an `error` event of kind 'replay', retried), which the adapter forwards as it is
    const events = errors as Array<{ kind?: string; code?: string }>
    expect(events.filter((e) => e.kind !== 'replay')).toEqual([])
    await rr.close()
    await restarted.stop()
  })

  it("the manager's error events (misconfiguration) reach Keyv's 'error' listeners, as Errors with kind", async () => {
    const locked = await startRedis(['--requirepass', 'sesame'])
    const m = manager({ url: locked.url, keyPrefix: uniquePrefix('kv-auth'), commandTimeoutMs: 250 })
    const keyv = new Keyv({ store: new KeyvFerrocache({ manager: m }) })
    const errors: KeyvFerrocacheError[] = []
    keyv.on('error', (e: KeyvFerrocacheError) => errors.push(e))
    expect(await keyv.set('k', 'v')).toBe(true) // served from memory
    await waitFor('error event', () => errors.length > 0, 5000)
    expect(errors[0]).toBeInstanceOf(Error)
    expect(errors[0].kind).toBe('misconfiguration')
    await locked.stop()
  })

  it('cache-manager 7 wrap() in an Express route (the README example)', async () => {
    const prefix = uniquePrefix('kv-express')
    const ferro = manager({ keyPrefix: prefix })
    const rr = rawRedis()

    // ---- as in README.md ("Keyv, cache-manager, cacheable")
    const db = {
      calls: 0,
      products: new Map([['1', { id: '1', name: 'Teapot', price: 18 }]]),
      async findProduct(id: string) {
        this.calls += 1
        return this.products.get(id) ?? null
      },
    }
    const cache = createCache({
      stores: [new Keyv({ store: new KeyvFerrocache({ manager: ferro }), namespace: 'products' })],
      ttl: 60_000, // ms, for set() and wrap() without their own
    })
    const app = express()
    app.use(express.json())
    app.get('/products/:id', async (req, res) => {
      const product = await cache.wrap(`product:${req.params.id}`, () => db.findProduct(req.params.id), 30_000)
      if (product === null) res.status(404).json({ error: 'not found' })
      else res.json(product)
    })
    app.put('/products/:id', async (req, res) => {
      db.products.set(req.params.id, { ...req.body, id: req.params.id })
      await cache.del(`product:${req.params.id}`)
      res.status(204).end()
    })
    // ----

    expect((await request(app).get('/products/1').expect(200)).body).toEqual({ id: '1', name: 'Teapot', price: 18 })
    expect((await request(app).get('/products/1').expect(200)).body.name).toBe('Teapot')
    expect(db.calls).toBe(1)
    const redisKey = `${prefix}q:${entryKey('products:product:1', 'products')}`
    expect(JSON.parse(JSON.parse((await rr.getUtf8(redisKey))!)).value.name).toBe('Teapot')
    const pttl = await rr.pttl(redisKey)
    expect(pttl).toBeGreaterThan(29_000)
    expect(pttl).toBeLessThanOrEqual(30_000)

    await request(app).put('/products/1').send({ name: 'Teapot XL', price: 25 }).expect(204)
    expect(await rr.exists(redisKey)).toBe(0)
    expect((await request(app).get('/products/1').expect(200)).body).toEqual({ id: '1', name: 'Teapot XL', price: 25 })
    expect(db.calls).toBe(2)
    await request(app).get('/products/2').expect(404)
  })

  it('cacheable: ferrocache as the secondary store behind its in-process primary', async () => {
    const prefix = uniquePrefix('kv-cacheable')
    const ferro = manager({ keyPrefix: prefix })
    const secondary = new Keyv({ store: new KeyvFerrocache({ manager: ferro }), namespace: 'cacheable' })
    const cache = new Cacheable({ secondary, ttl: '1m' })
    await cache.set('user:1', { name: 'Ada' })
    expect(await cache.get('user:1')).toEqual({ name: 'Ada' })
    expect(await secondary.get('user:1')).toEqual({ name: 'Ada' })

    const other = new Cacheable({
      secondary: new Keyv({ store: new KeyvFerrocache({ manager: ferro }), namespace: 'cacheable' }),
    })
    expect(await other.get('user:1')).toEqual({ name: 'Ada' }) // a second process would read it from Redis
    let calls = 0
    const load = async () => ({ calls: ++calls })
    expect(await cache.getOrSet('lazy', load)).toEqual({ calls: 1 })
    expect(await other.getOrSet('lazy', load)).toEqual({ calls: 1 })
    await cache.delete('user:1')
    expect(await secondary.get('user:1')).toBeUndefined()
  })
})

describe('Keyv 6 and @keyv/test-suite', () => {
  it('Keyv 6 resolves delete([keys]) to one boolean per key with any store (why one suite test must fail under it)', async () => {
    const own = new Keyv6() // Keyv 6's own in-memory store
    expect(await own.delete(['a', 'b'])).toEqual([false, false])
    const ours = new Keyv6({ store: new KeyvFerrocache('memory://') })
    expect(await ours.delete(['a', 'b'])).toEqual([false, false])
    await ours.disconnect()
  })
})
