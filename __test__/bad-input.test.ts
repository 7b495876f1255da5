// Bad input: every data method rejects with the right
// class and code, and changes nothing; tenant ids are validated. Run in both
// modes, on the manager's own scope and on a tenant scope.

import { CacheManager, CacheScope, codes } from '..'
import { modes, useManagers, expectReject } from './helpers/modes'

/** A manager or a tenant's view of it. */
type Scope = CacheScope
type Cls = TypeErrorConstructor | RangeErrorConstructor
const A = (v: unknown) => v as any // eslint-disable-line @typescript-eslint/no-explicit-any

// Keys the wrapper could produce by coercing a non-string key: seeded, so a
// coercion bug that writes, deletes or invalidates them is seen.
const SEEDED_KEYS = ['k', '5', 'undefined', 'null', '[object Object]', 'k2']

const circular: Record<string, unknown> = { a: 1 }
circular.self = circular
const circularArray: unknown[] = [1]
circularArray.push(circularArray)
const deepCircular: Record<string, unknown> = { a: { b: { c: {} } } }
;((deepCircular.a as Record<string, unknown>).b as Record<string, Record<string, unknown>>).c.back = deepCircular

const badKeys: Array<[string, unknown, Cls, string]> = [
  ['a number', 5, TypeError, codes.INVALID_ARG],
  ['undefined', undefined, TypeError, codes.INVALID_ARG],
  ['null', null, TypeError, codes.INVALID_ARG],
  ['an object', { toString: () => 'k' }, TypeError, codes.INVALID_ARG],
  ['a String object', new String('k'), TypeError, codes.INVALID_ARG],
  ['an array', ['k'], TypeError, codes.INVALID_ARG],
  ['a symbol', Symbol('k'), TypeError, codes.INVALID_ARG],
  ['an empty string', '', TypeError, codes.INVALID_ARG],
  ['a lone high surrogate', '\ud800', TypeError, codes.INVALID_ARG],
  ['a lone low surrogate', '\udc00', TypeError, codes.INVALID_ARG],
  ['a lone surrogate after a valid prefix', 'k\ud83d', TypeError, codes.INVALID_ARG],
  ['a reversed surrogate pair', '\ude00\ud83d', TypeError, codes.INVALID_ARG],
  ['5000 ASCII bytes', 'k'.repeat(5000), RangeError, codes.TOO_LARGE],
  ['4097 ASCII bytes', 'k'.repeat(4097), RangeError, codes.TOO_LARGE],
  ['4098 UTF-8 bytes in 2049 UTF-16 units', 'é'.repeat(2049), RangeError, codes.TOO_LARGE],
  ['4100 UTF-8 bytes of emoji (2050 UTF-16 units)', '😀'.repeat(1025), RangeError, codes.TOO_LARGE],
]

const keyMethods: Array<[string, (s: Scope, key: unknown) => unknown]> = [
  ['setSession', (s, k) => s.setSession(A(k), { v: 'new' })],
  ['getSession', (s, k) => s.getSession(A(k))],
  ['deleteSession', (s, k) => s.deleteSession(A(k))],
  ['cacheQueryResult', (s, k) => s.cacheQueryResult(A(k), { v: 'new' })],
  ['getCachedQuery', (s, k) => s.getCachedQuery(A(k))],
  ['invalidateCache', (s, k) => s.invalidateCache(A(k))],
]

const badTtls: Array<[string, unknown, Cls]> = [
  ['NaN', NaN, RangeError],
  ['-1', -1, RangeError],
  ['0', 0, RangeError],
  ['-0', -0, RangeError],
  ['-0.5', -0.5, RangeError],
  ['Infinity', Infinity, RangeError],
  ['-Infinity', -Infinity, RangeError],
  ["the string '10'", '10', TypeError],
  ['a BigInt 10n', BigInt(10), TypeError],
  ['true', true, TypeError],
  ['an object', { valueOf: () => 10 }, TypeError],
]

const setMethods: Array<[string, (s: Scope, key: string, data: unknown, ttl?: unknown) => unknown]> = [
  ['setSession', (s, k, d, t) => s.setSession(k, d, A(t))],
  ['cacheQueryResult', (s, k, d, t) => s.cacheQueryResult(k, d, A(t))],
]

const FOUR_MIB = 4 * 1024 * 1024
const badValues: Array<[string, () => unknown, Cls, string]> = [
  ['undefined', () => undefined, TypeError, codes.INVALID_ARG],
  ['a circular object', () => circular, TypeError, codes.SERIALIZE],
  ['a circular array', () => circularArray, TypeError, codes.SERIALIZE],
  ['a deep circular reference', () => deepCircular, TypeError, codes.SERIALIZE],
  ['a BigInt', () => BigInt(1), TypeError, codes.SERIALIZE],
  ['an object holding a BigInt', () => ({ ok: 1, n: BigInt(2) }), TypeError, codes.SERIALIZE],
  ['an array holding a BigInt', () => [BigInt(3)], TypeError, codes.SERIALIZE],
  ['a function', () => () => 1, TypeError, codes.SERIALIZE],
  ['a symbol', () => Symbol('v'), TypeError, codes.SERIALIZE],
  [
    'an object whose toJSON throws',
    () => ({
      toJSON() {
        throw new Error('boom')
      },
    }),
    TypeError,
    codes.SERIALIZE,
  ],
  ['a string of 4 MiB (JSON 4 MiB + 2 bytes)', () => 'x'.repeat(FOUR_MIB), RangeError, codes.TOO_LARGE],
  [
    '2 Mi two-byte chars (4 MiB + 2 bytes of UTF-8 JSON, 2 Mi UTF-16 units)',
    () => 'é'.repeat(FOUR_MIB / 2),
    RangeError,
    codes.TOO_LARGE,
  ],
  [
    'an array of five 1 MiB strings',
    () => Array.from({ length: 5 }, () => 'y'.repeat(1024 * 1024)),
    RangeError,
    codes.TOO_LARGE,
  ],
]

describe.each(modes())('bad input ($name mode)', (mode) => {
  const make = useManagers(mode)

  describe.each([
    ['the manager', false],
    ['a tenant', true],
  ] as Array<[string, boolean]>)('on %s', (_label, useTenant) => {
    interface Fixture {
      m: CacheManager
      s: Scope
      prefix: string
    }

    async function fixture(): Promise<Fixture> {
      const prefix = `bad:${Math.random().toString(36).slice(2)}:`
      const m = make({ keyPrefix: prefix })
      const s: Scope = useTenant ? m.tenant('tenant-1') : m
      for (const k of SEEDED_KEYS) {
        await s.setSession(k, { session: k })
        await s.cacheQueryResult(k, { query: k })
      }
      return { m, s, prefix }
    }

    async function rawSnapshot(prefix: string): Promise<Array<[string, string | null]> | null> {
      const raw = mode.raw()
      if (!raw) return null
      const keys = await raw.keysStartingWith(prefix)
      return Promise.all(keys.map(async (k) => [k, await raw.show(k)] as [string, string | null]))
    }

    async function expectUnchanged(f: Fixture, before: Array<[string, string | null]> | null) {
      for (const k of SEEDED_KEYS) {
        await expect(f.s.getSession(k)).resolves.toEqual({ session: k })
        await expect(f.s.getCachedQuery(k)).resolves.toEqual({ query: k })
      }
      if (before !== null) expect(await rawSnapshot(f.prefix)).toEqual(before)
    }

    describe.each(keyMethods)('%s', (_method, call) => {
      it.each(badKeys)('with a key that is %s rejects and changes nothing', async (_what, key, cls, code) => {
        const f = await fixture()
        const before = await rawSnapshot(f.prefix)
        await expectReject(() => call(f.s, key), cls, code)
        await expectUnchanged(f, before)
      })
    })

    describe.each(setMethods)('%s', (_method, call) => {
      it.each(badTtls)('with ttl %s rejects with ERR_INVALID_ARG and changes nothing', async (_what, ttl, cls) => {
        const f = await fixture()
        const before = await rawSnapshot(f.prefix)
        await expectReject(() => call(f.s, 'k', { v: 'new' }, ttl), cls, codes.INVALID_ARG)
        await expectUnchanged(f, before)
      })

      it.each(badValues)('with a value that is %s rejects and changes nothing', async (_what, value, cls, code) => {
        const f = await fixture()
        const before = await rawSnapshot(f.prefix)
        await expectReject(() => call(f.s, 'k', value()), cls, code)
        await expectUnchanged(f, before)
      })

      it('accepts a value of exactly 4 MiB of JSON', async () => {
        const f = await fixture()
        const v = 'x'.repeat(FOUR_MIB - 2)
        expect(Buffer.byteLength(JSON.stringify(v))).toBe(FOUR_MIB)
        await expect(Promise.resolve(call(f.s, 'big', v))).resolves.toBeUndefined()
        const read = _method === 'setSession' ? await f.s.getSession('big') : await f.s.getCachedQuery('big')
        expect(read).toBe(v)
      })
    })

    it('a rejected call does not poison the manager: a valid call right after works', async () => {
      const f = await fixture()
      await expectReject(() => f.s.setSession('k', circular), TypeError, codes.SERIALIZE)
      await expectReject(() => f.s.setSession('k'.repeat(5000), 1), RangeError, codes.TOO_LARGE)
      await f.s.setSession('k', { session: 'after' })
      await expect(f.s.getSession('k')).resolves.toEqual({ session: 'after' })
    })
  })

  describe('tenant ids', () => {
    const badTenants: Array<[string, unknown]> = [
      ['an empty string', ''],
      ['a number', 5],
      ['undefined', undefined],
      ['null', null],
      ['an object', { toString: () => 'a' }],
      ['a symbol', Symbol('t')],
      ['a lone high surrogate', '\ud800'],
      ['a lone low surrogate inside', 'a\udc00b'],
    ]

    it.each(badTenants)('tenant(%s) throws TypeError ERR_INVALID_ARG synchronously', async (_what, id) => {
      const m = make()
      await m.tenant('a').setSession('k', 'kept')
      let err: unknown
      try {
        m.tenant(A(id))
      } catch (e) {
        err = e
      }
      expect(err).toBeInstanceOf(TypeError)
      expect(err).toHaveProperty('code', codes.INVALID_ARG)
      await expect(m.tenant('a').getSession('k')).resolves.toBe('kept')
    })
  })
})
