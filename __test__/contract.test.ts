// The API contract, run identically in memory://
// mode and in Redis mode against a private redis-server.

import { CacheManager, codes } from '..'
import { modes, useManagers, expectReject } from './helpers/modes'
import { sleep } from './helpers/redis-server'

describe.each(modes())('contract ($name mode)', (mode) => {
  const make = useManagers(mode)

  describe('every method', () => {
    it('setSession then getSession returns the data; a miss is null', async () => {
      const m = make()
      await expect(m.setSession('s1', { user: 'u1', roles: ['admin'] })).resolves.toBeUndefined()
      await expect(m.getSession('s1')).resolves.toEqual({ user: 'u1', roles: ['admin'] })
      await expect(m.getSession('nope')).resolves.toBeNull()
    })

    it('setSession overwrites the previous value', async () => {
      const m = make()
      await m.setSession('s1', { n: 1 })
      await m.setSession('s1', { n: 2 })
      await expect(m.getSession('s1')).resolves.toEqual({ n: 2 })
    })

    it('deleteSession returns true, then false, and the session is gone', async () => {
      const m = make()
      await m.setSession('s1', { a: 1 })
      await m.setSession('s2', { b: 2 })
      await expect(m.deleteSession('s1')).resolves.toBe(true)
      await expect(m.getSession('s1')).resolves.toBeNull()
      await expect(m.deleteSession('s1')).resolves.toBe(false)
      await expect(m.deleteSession('never-set')).resolves.toBe(false)
      await expect(m.getSession('s2')).resolves.toEqual({ b: 2 })
    })

    it('a session whose value is null exists: getSession gives null, deleteSession gives true', async () => {
      const m = make()
      await m.setSession('nullsess', null)
      await expect(m.getSession('nullsess')).resolves.toBeNull()
      await expect(m.deleteSession('nullsess')).resolves.toBe(true)
      await expect(m.deleteSession('nullsess')).resolves.toBe(false)
    })

    it('cacheQueryResult then getCachedQuery returns the data; a miss is null', async () => {
      const m = make()
      await expect(m.cacheQueryResult('q1', [{ id: 1 }, { id: 2 }])).resolves.toBeUndefined()
      await expect(m.getCachedQuery('q1')).resolves.toEqual([{ id: 1 }, { id: 2 }])
      await expect(m.getCachedQuery('q2')).resolves.toBeNull()
    })

    it('deleteAllSessions removes every session of the scope and nothing else', async () => {
      const m = make()
      await m.setSession('a', 1)
      await m.setSession('b', 2)
      await m.cacheQueryResult('a', 'q')
      await m.tenant('t').setSession('a', 't')
      await expect(m.deleteAllSessions()).resolves.toBe(2)
      await expect(m.getSession('a')).resolves.toBeNull()
      await expect(m.getSession('b')).resolves.toBeNull()
      await expect(m.getCachedQuery('a')).resolves.toBe('q')
      await expect(m.tenant('t').getSession('a')).resolves.toBe('t')
      await expect(m.tenant('t').deleteAllSessions()).resolves.toBe(1)
      await expect(m.tenant('t').getSession('a')).resolves.toBeNull()
      await expect(m.deleteAllSessions()).resolves.toBe(0)
    })

    it('listSessionIds lists the live sessions of the scope, sorted; not query keys, other scopes or expired ones', async () => {
      const m = make()
      await m.setSession('b', 1)
      await m.setSession('a*[x]', 2) // glob characters are literal
      await m.setSession('short', 3, 0.2)
      await m.cacheQueryResult('q', 'query')
      await m.tenant('t').setSession('t1', 't')
      await expect(m.listSessionIds()).resolves.toEqual(['a*[x]', 'b', 'short'])
      await expect(m.tenant('t').listSessionIds()).resolves.toEqual(['t1'])
      await expect(m.tenant('other').listSessionIds()).resolves.toEqual([])
      await m.deleteSession('b')
      await new Promise((r) => setTimeout(r, 400))
      await expect(m.listSessionIds()).resolves.toEqual(['a*[x]'])
    })

    it('deleteCachedQuery removes exactly that key (not a prefix), true then false; sessions untouched', async () => {
      const m = make()
      await m.cacheQueryResult('orders', 1)
      await m.cacheQueryResult('orders:1', 2)
      await m.setSession('orders', 'session')
      await expect(m.deleteCachedQuery('orders')).resolves.toBe(true)
      await expect(m.getCachedQuery('orders')).resolves.toBeNull()
      await expect(m.deleteCachedQuery('orders')).resolves.toBe(false)
      await expect(m.deleteCachedQuery('ord*')).resolves.toBe(false)
      await expect(m.getCachedQuery('orders:1')).resolves.toBe(2)
      await expect(m.getSession('orders')).resolves.toBe('session')
      await expect(m.tenant('a').deleteCachedQuery('orders:1')).resolves.toBe(false)
      await expect(m.getCachedQuery('orders:1')).resolves.toBe(2)
      expect(m.metrics().byType.query.deletes).toBe(4)
    })

    it('sessions and query results with the same key are separate', async () => {
      const m = make()
      await m.setSession('same', 'session')
      await m.cacheQueryResult('same', 'query')
      await expect(m.getSession('same')).resolves.toBe('session')
      await expect(m.getCachedQuery('same')).resolves.toBe('query')
      await expect(m.invalidateCache('same')).resolves.toBe(1)
      await expect(m.getSession('same')).resolves.toBe('session')
      await m.cacheQueryResult('same', 'query')
      await expect(m.deleteSession('same')).resolves.toBe(true)
      await expect(m.getCachedQuery('same')).resolves.toBe('query')
    })

    it('invalidateCache returns the exact count removed (0 when nothing matches)', async () => {
      const m = make()
      for (let i = 0; i < 7; i++) await m.cacheQueryResult(`users_${i}`, { i })
      await m.cacheQueryResult('products_1', { p: 1 })
      await expect(m.invalidateCache('nomatch')).resolves.toBe(0)
      await expect(m.invalidateCache('users_')).resolves.toBe(7)
      await expect(m.invalidateCache('users_')).resolves.toBe(0)
      for (let i = 0; i < 7; i++) await expect(m.getCachedQuery(`users_${i}`)).resolves.toBeNull()
      await expect(m.getCachedQuery('products_1')).resolves.toEqual({ p: 1 })
    })

    it('invalidateCache counts exactly over many keys (more than one SCAN page)', async () => {
      const m = make()
      const n = 2500
      await Promise.all(Array.from({ length: n }, (_, i) => m.cacheQueryResult(`bulk:${i}`, i)))
      await Promise.all(Array.from({ length: 50 }, (_, i) => m.cacheQueryResult(`bulk_other:${i}`, i)))
      await expect(m.invalidateCache('bulk:')).resolves.toBe(n)
      await expect(m.getCachedQuery('bulk:0')).resolves.toBeNull()
      await expect(m.getCachedQuery(`bulk:${n - 1}`)).resolves.toBeNull()
      await expect(m.invalidateAll()).resolves.toBe(50)
    })

    it('invalidateCache removes the key equal to the prefix itself', async () => {
      const m = make()
      await m.cacheQueryResult('orders_', 1)
      await m.cacheQueryResult('orders', 2)
      await expect(m.invalidateCache('orders_')).resolves.toBe(1)
      await expect(m.getCachedQuery('orders_')).resolves.toBeNull()
      await expect(m.getCachedQuery('orders')).resolves.toBe(2)
    })

    it('invalidateAll removes every query entry of the manager and no session', async () => {
      const m = make()
      await m.cacheQueryResult('a', 1)
      await m.cacheQueryResult('b', 2)
      await m.cacheQueryResult('c:d', null)
      await m.setSession('a', 'sa')
      await m.setSession('z', 'sz')
      await expect(m.invalidateAll()).resolves.toBe(3)
      await expect(m.getCachedQuery('a')).resolves.toBeNull()
      await expect(m.getCachedQuery('b')).resolves.toBeNull()
      await expect(m.getSession('a')).resolves.toBe('sa')
      await expect(m.getSession('z')).resolves.toBe('sz')
      await expect(m.invalidateAll()).resolves.toBe(0)
    })

    it('two managers with different keyPrefixes do not see or invalidate each other', async () => {
      const a = make()
      const b = make()
      await a.setSession('k', 'A')
      await b.setSession('k', 'B')
      await a.cacheQueryResult('k', 'A')
      await b.cacheQueryResult('k', 'B')
      await expect(a.getSession('k')).resolves.toBe('A')
      await expect(b.getSession('k')).resolves.toBe('B')
      await expect(a.invalidateAll()).resolves.toBe(1)
      await expect(b.getCachedQuery('k')).resolves.toBe('B')
      await expect(a.deleteSession('k')).resolves.toBe(true)
      await expect(b.getSession('k')).resolves.toBe('B')
    })

    it('a keyPrefix with glob characters is literal: invalidateAll does not reach a sibling prefix', async () => {
      const base = `glob${Date.now()}${Math.random().toString(36).slice(2)}`
      const star = make({ keyPrefix: `${base}*:` })
      const sibling = make({ keyPrefix: `${base}x:` })
      const bracket = make({ keyPrefix: `${base}[xy]:` })
      const y = make({ keyPrefix: `${base}y:` })
      await sibling.cacheQueryResult('k', 'sibling')
      await y.cacheQueryResult('k', 'y')
      await star.cacheQueryResult('k', 'star')
      await bracket.cacheQueryResult('k', 'bracket')
      await expect(star.invalidateAll()).resolves.toBe(1)
      await expect(bracket.invalidateCache('k')).resolves.toBe(1)
      await expect(sibling.getCachedQuery('k')).resolves.toBe('sibling')
      await expect(y.getCachedQuery('k')).resolves.toBe('y')
    })
  })

  describe("the seed's own calls", () => {
    it('setSession(sessionId, sessionData, 3600) and getSession', async () => {
      const m = make()
      const sessionId = 'sess_9f8e7d6c'
      const sessionData = {
        userId: 42,
        tenantId: 'acme',
        roles: ['viewer', 'editor'],
        lastSeen: '2024-05-01T10:00:00.000Z',
      }
      await m.setSession(sessionId, sessionData, 3600)
      await expect(m.getSession(sessionId)).resolves.toEqual(sessionData)
    })

    it("cacheQueryResult('production_orders', data, 300) and invalidateCache('orders_') literal prefix", async () => {
      const m = make()
      const data = { rows: [{ id: 1, total: 9.5 }], count: 1 }
      await m.cacheQueryResult('production_orders', data, 300)
      await m.cacheQueryResult('orders_2024', { y: 2024 })
      await m.cacheQueryResult('orders_2025_q1', { y: 2025 })
      await m.cacheQueryResult('orders_', { bare: true })
      await m.cacheQueryResult('ordersX', { x: 1 })
      await m.cacheQueryResult('order', { o: 1 })
      await m.cacheQueryResult('Orders_2024', { upper: true })
      await expect(m.getCachedQuery('production_orders')).resolves.toEqual(data)

      await expect(m.invalidateCache('orders_')).resolves.toBe(3)

      await expect(m.getCachedQuery('orders_2024')).resolves.toBeNull()
      await expect(m.getCachedQuery('orders_2025_q1')).resolves.toBeNull()
      await expect(m.getCachedQuery('orders_')).resolves.toBeNull()
      await expect(m.getCachedQuery('ordersX')).resolves.toEqual({ x: 1 })
      await expect(m.getCachedQuery('order')).resolves.toEqual({ o: 1 })
      await expect(m.getCachedQuery('production_orders')).resolves.toEqual(data)
      await expect(m.getCachedQuery('Orders_2024')).resolves.toEqual({ upper: true })
    })
  })

  describe('literal prefixes (glob characters and unicode)', () => {
    const keys = [
      'a',
      'a*',
      'a*b',
      'a**',
      'ab',
      'aXb',
      'b*',
      '[ab]',
      '[ab]x',
      'a]',
      'b',
      '[',
      ']x',
      '\\',
      '\\\\',
      '\\x',
      'x\\',
      '?',
      '?x',
      'x',
      'xy',
      'é',
      'é*',
      'éa',
      'e',
      '日本',
      '日本語',
      '日',
      '😀',
      '😀x',
      'nul\u0000a',
      'nul\u0000b',
      'nul',
      'nula',
      'crlf\r\nSET x y\r\n',
      'sp ace',
    ]

    async function seeded(): Promise<CacheManager> {
      const m = make()
      for (const k of keys) await m.cacheQueryResult(k, k)
      return m
    }

    // prefix -> the keys it must remove
    const cases: Array<[string, string[]]> = [
      ['a*', ['a*', 'a*b', 'a**']],
      ['*', []],
      ['[ab]', ['[ab]', '[ab]x']],
      ['[', ['[', '[ab]', '[ab]x']],
      [']', [']x']],
      ['\\', ['\\', '\\\\', '\\x']],
      ['\\\\', ['\\\\']],
      ['?', ['?', '?x']],
      ['a?', []],
      ['é', ['é', 'é*', 'éa']],
      ['日本', ['日本', '日本語']],
      ['😀', ['😀', '😀x']],
      ['nul\u0000', ['nul\u0000a', 'nul\u0000b']],
      ['crlf\r\n', ['crlf\r\nSET x y\r\n']],
    ]

    it('every such key round-trips', async () => {
      const m = await seeded()
      for (const k of keys) await expect(m.getCachedQuery(k)).resolves.toBe(k)
    })

    it.each(cases)('invalidateCache(%j) removes exactly the keys starting with it', async (prefix, removed) => {
      const m = await seeded()
      expect(keys.filter((k) => k.startsWith(prefix)).sort()).toEqual([...removed].sort()) // the table itself is right
      await expect(m.invalidateCache(prefix)).resolves.toBe(removed.length)
      for (const k of keys) {
        await expect(m.getCachedQuery(k)).resolves.toBe(removed.includes(k) ? null : k)
      }
    })

    it('session ids with glob characters are literal too', async () => {
      const m = make()
      await m.setSession('*', 'star')
      await m.setSession('?', 'q')
      await m.setSession('[a]', 'br')
      await m.setSession('a', 'a')
      await expect(m.getSession('*')).resolves.toBe('star')
      await expect(m.deleteSession('*')).resolves.toBe(true)
      await expect(m.getSession('a')).resolves.toBe('a')
      await expect(m.getSession('?')).resolves.toBe('q')
      await expect(m.getSession('[a]')).resolves.toBe('br')
      await expect(m.deleteSession('?')).resolves.toBe(true)
      await expect(m.getSession('a')).resolves.toBe('a')
    })

    it('a key of exactly 4096 UTF-8 bytes is accepted (ASCII and multibyte)', async () => {
      const m = make()
      const ascii = 'k'.repeat(4096)
      const multi = 'é'.repeat(2048) // 4096 bytes
      const astral = '😀'.repeat(1024) // 4096 bytes
      await m.setSession(ascii, 1)
      await m.cacheQueryResult(multi, 2)
      await m.cacheQueryResult(astral, 3)
      await expect(m.getSession(ascii)).resolves.toBe(1)
      await expect(m.getCachedQuery(multi)).resolves.toBe(2)
      await expect(m.getCachedQuery(astral)).resolves.toBe(3)
      await expect(m.invalidateCache(multi)).resolves.toBe(1)
    })
  })

  describe('TTL', () => {
    it('a session with ttl 0.2 s expires (read after 400 ms is null)', async () => {
      const m = make()
      await m.setSession('short', { v: 1 }, 0.2)
      await m.setSession('long', { v: 2 }, 60)
      await expect(m.getSession('short')).resolves.toEqual({ v: 1 })
      await sleep(400)
      await expect(m.getSession('short')).resolves.toBeNull()
      await expect(m.getSession('long')).resolves.toEqual({ v: 2 })
      await expect(m.deleteSession('short')).resolves.toBe(false)
    })

    it('a query result with ttl 0.2 s expires and is not counted by invalidateCache', async () => {
      const m = make()
      await m.cacheQueryResult('exp_1', 1, 0.2)
      await m.cacheQueryResult('exp_2', 2)
      await m.cacheQueryResult('exp_3', 3)
      await expect(m.getCachedQuery('exp_1')).resolves.toBe(1)
      await sleep(400)
      await expect(m.getCachedQuery('exp_1')).resolves.toBeNull()
      await expect(m.invalidateCache('exp_')).resolves.toBe(2)
    })

    it('expired query results are not counted by invalidateAll', async () => {
      const m = make()
      await m.cacheQueryResult('e1', 1, 0.15)
      await m.cacheQueryResult('e2', 2, 0.15)
      await m.cacheQueryResult('live', 3)
      await sleep(400)
      await expect(m.invalidateAll()).resolves.toBe(1)
    })

    it('fractional TTL (0.35 s): present at ~100 ms, gone at ~600 ms', async () => {
      const m = make()
      await m.cacheQueryResult('frac', 'x', 0.35)
      await sleep(100)
      await expect(m.getCachedQuery('frac')).resolves.toBe('x')
      await sleep(500)
      await expect(m.getCachedQuery('frac')).resolves.toBeNull()
    })

    it('a sub-millisecond TTL (0.0004 s) is accepted and expires', async () => {
      const m = make()
      await expect(m.setSession('tiny', 1, 0.0004)).resolves.toBeUndefined()
      await sleep(50)
      await expect(m.getSession('tiny')).resolves.toBeNull()
    })

    it('overwriting an entry replaces its TTL', async () => {
      const m = make()
      await m.setSession('re', 'short', 0.2)
      await m.setSession('re', 'long') // default 3600 s
      await sleep(400)
      await expect(m.getSession('re')).resolves.toBe('long')
    })

    it('ttl option sets the defaults used when ttl is omitted', async () => {
      const m = make({ ttl: { session: 0.2, query: 0.2 } })
      await m.setSession('s', 1)
      await m.cacheQueryResult('q', 2)
      await m.setSession('s-explicit', 3, 60)
      await expect(m.getSession('s')).resolves.toBe(1)
      await expect(m.getCachedQuery('q')).resolves.toBe(2)
      await sleep(400)
      await expect(m.getSession('s')).resolves.toBeNull()
      await expect(m.getCachedQuery('q')).resolves.toBeNull()
      await expect(m.getSession('s-explicit')).resolves.toBe(3)
    })

    it('without options, an entry without ttl outlives a short wait', async () => {
      const m = make()
      await m.setSession('d', 1)
      await m.cacheQueryResult('d', 2)
      await sleep(300)
      await expect(m.getSession('d')).resolves.toBe(1)
      await expect(m.getCachedQuery('d')).resolves.toBe(2)
    })
  })

  describe('round-trip semantics', () => {
    const date = new Date('2024-02-29T12:34:56.789Z')
    const withProto = JSON.parse('{"__proto__": {"polluted": true}, "a": 1}')
    const sparse: unknown[] = [1, , 3] // eslint-disable-line no-sparse-arrays
    class Point {
      constructor(
        public x: number,
        public y: number,
      ) {}
      norm() {
        return Math.hypot(this.x, this.y)
      }
    }
    const values: Array<[string, unknown]> = [
      ['a Date (becomes its ISO string)', date],
      ['an object holding a Date', { at: date, n: 1 }],
      ['nested objects, key order kept', { z: 1, a: { y: [1, 2, { q: 'r', b: null }], c: 'd' }, m: true }],
      ['integer-like and string keys', { b: 1, '2': 'two', a: 2, '1': 'one', '-1': 'neg', '01': 'lead' }],
      ['an array of mixed values', [1, 'two', null, true, false, { three: 3 }, [4, [5]]]],
      ['a sparse array / undefined in array (become null)', sparse],
      ['an object with undefined and function properties (dropped)', { a: undefined, b: 1, f: () => 1 }],
      ['unicode strings', 'héllo wörld — 日本語 😀 \u2028\u2029 \ufeff \u0000 \u001f "quotes" \\ back'],
      ['a lone high surrogate inside a value', '\ud800'],
      ['a lone low surrogate inside a value', 'x\udc00y'],
      ['lone surrogates in object keys and nested values', { '\udbff': ['\udfff', 'ok\ud83d'], k: '😀' }],
      ['null', null],
      ['zero', 0],
      ['negative zero (JSON gives 0)', -0],
      ['numbers', [1.5, -1e-7, Number.MAX_SAFE_INTEGER, 1e308, 5e-324, -123456789.125]],
      ['NaN / Infinity (JSON gives null)', [NaN, Infinity, -Infinity]],
      ['true', true],
      ['false', false],
      ['an empty string', ''],
      ['an empty object', {}],
      ['an empty array', []],
      ['a class instance (own enumerable props only)', new Point(3, 4)],
      ['a Map (JSON gives {})', new Map([['a', 1]])],
      ['an own __proto__ key', withProto],
      ['an object with toJSON', { toJSON: () => ({ replaced: true }) }],
      ['a 1 MiB string', 'x'.repeat(1024 * 1024)],
      [
        '500 levels of nesting',
        (() => {
          let v: unknown = 'leaf'
          for (let i = 0; i < 500; i++) v = i % 2 ? { n: v } : [v]
          return v
        })(),
      ],
      [
        '2000 levels of nesting',
        (() => {
          let v: unknown = 0
          for (let i = 0; i < 2000; i++) v = { d: v }
          return v
        })(),
      ],
    ]

    it.each(values)(
      '%s round-trips as JSON.parse(JSON.stringify(v)) through sessions and queries',
      async (_name, v) => {
        const m = make()
        const expected = JSON.parse(JSON.stringify(v))
        await m.setSession('rt', v)
        await m.cacheQueryResult('rt', v)
        const s = await m.getSession('rt')
        const q = await m.getCachedQuery('rt')
        expect(s).toEqual(expected)
        expect(q).toEqual(expected)
        expect(JSON.stringify(s)).toBe(JSON.stringify(v))
        expect(JSON.stringify(q)).toBe(JSON.stringify(v))
        if (expected !== null && typeof expected === 'object') {
          expect(Object.keys(s as object)).toEqual(Object.keys(expected))
        }
      },
    )

    it('a Date comes back as its ISO string, not a Date', async () => {
      const m = make()
      await m.setSession('d', { at: date })
      const s = await m.getSession<{ at: unknown }>('d')
      expect(typeof s!.at).toBe('string')
      expect(s!.at).toBe('2024-02-29T12:34:56.789Z')
    })

    it('negative zero reads as +0', async () => {
      const m = make()
      await m.cacheQueryResult('nz', -0)
      expect(Object.is(await m.getCachedQuery('nz'), 0)).toBe(true)
    })

    it('an own __proto__ key stays an own property and pollutes nothing', async () => {
      const m = make()
      await m.setSession('p', withProto)
      const s = (await m.getSession('p')) as Record<string, unknown>
      expect(Object.prototype.hasOwnProperty.call(s, '__proto__')).toBe(true)
      expect(Object.getPrototypeOf(s)).toBe(Object.prototype)
      expect(({} as Record<string, unknown>).polluted).toBeUndefined()
    })

    it('lone surrogates in values come back as the same UTF-16 code units', async () => {
      const m = make()
      const v = 'a\ud800b\udc00c\ud83d'
      await m.setSession('ls', v)
      const s = (await m.getSession('ls')) as string
      expect(s).toBe(v)
      expect(s.length).toBe(v.length)
      expect(s.charCodeAt(1)).toBe(0xd800)
    })
  })

  describe('fresh copies', () => {
    it('mutating an object returned by get does not change the cache', async () => {
      const m = make()
      await m.setSession('c', { list: [1, 2], nested: { x: 1 } })
      await m.cacheQueryResult('c', { list: [1, 2] })
      const s1 = (await m.getSession('c')) as { list: number[]; nested: { x: number }; extra?: number }
      s1.list.push(3)
      s1.nested.x = 99
      s1.extra = 1
      const q1 = (await m.getCachedQuery('c')) as { list: number[] }
      q1.list.length = 0
      const s2 = await m.getSession('c')
      expect(s2).toEqual({ list: [1, 2], nested: { x: 1 } })
      expect(s2).not.toBe(s1)
      await expect(m.getCachedQuery('c')).resolves.toEqual({ list: [1, 2] })
    })

    it('two reads return distinct objects', async () => {
      const m = make()
      await m.cacheQueryResult('c', { a: [1] })
      const r1 = (await m.getCachedQuery('c')) as { a: number[] }
      const r2 = (await m.getCachedQuery('c')) as { a: number[] }
      expect(r1).toEqual(r2)
      expect(r1).not.toBe(r2)
      expect(r1.a).not.toBe(r2.a)
    })

    it('mutating the object after set does not change the cached value', async () => {
      const m = make()
      const obj: { list: number[]; n: number; nested: { s: string } } = { list: [1], n: 1, nested: { s: 'a' } }
      await m.setSession('c', obj)
      await m.cacheQueryResult('c', obj)
      obj.list.push(2)
      obj.n = 2
      obj.nested.s = 'changed'
      await expect(m.getSession('c')).resolves.toEqual({ list: [1], n: 1, nested: { s: 'a' } })
      await expect(m.getCachedQuery('c')).resolves.toEqual({ list: [1], n: 1, nested: { s: 'a' } })
    })

    it('mutating the object before the set promise settles does not change the stored value', async () => {
      const m = make()
      const obj = { n: 1 }
      const p = m.setSession('race', obj)
      obj.n = 2
      await p
      await expect(m.getSession('race')).resolves.toEqual({ n: 1 })
    })
  })

  describe('close()', () => {
    it('is idempotent and later data calls reject with ERR_CLOSED', async () => {
      const m = make()
      await m.setSession('s', 1)
      await m.cacheQueryResult('q', 1)
      await expect(m.close()).resolves.toBeUndefined()
      await expect(m.close()).resolves.toBeUndefined()
      const t = m.tenant('t1')
      for (const scope of [m, t]) {
        await expectReject(() => scope.setSession('s', 2), Error, codes.CLOSED)
        await expectReject(() => scope.getSession('s'), Error, codes.CLOSED)
        await expectReject(() => scope.deleteSession('s'), Error, codes.CLOSED)
        await expectReject(() => scope.cacheQueryResult('q', 2), Error, codes.CLOSED)
        await expectReject(() => scope.getCachedQuery('q'), Error, codes.CLOSED)
        await expectReject(() => scope.invalidateCache('q'), Error, codes.CLOSED)
        await expectReject(() => scope.invalidateAll(), Error, codes.CLOSED)
      }
      await expect(m.close()).resolves.toBeUndefined()
    })

    it('closing a manager that never made a call works, and calls then reject with ERR_CLOSED', async () => {
      const m = make()
      await m.close()
      await m.close()
      await expectReject(() => m.getSession('s'), Error, codes.CLOSED)
      await expectReject(() => m.setSession('s', 1), Error, codes.CLOSED)
    })

    it('closing one manager does not affect another', async () => {
      const a = make()
      const b = make()
      await a.setSession('s', 'a')
      await b.setSession('s', 'b')
      await a.close()
      await expect(b.getSession('s')).resolves.toBe('b')
      await b.cacheQueryResult('q', 1)
      await expect(b.invalidateAll()).resolves.toBe(1)
    })
  })
})
