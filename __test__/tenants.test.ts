// Tenant isolation: a TenantCache reads, writes
// and invalidates only its own keys, whatever the tenant id or key contains.

import { CacheScope } from '..'
import { modes, useManagers } from './helpers/modes'

/** A manager or a tenant's view of it. */
type Scope = CacheScope

const HOSTILE_IDS = [
  'a',
  'b',
  'ab',
  ':',
  '::',
  '*',
  '?',
  '[a]',
  '[',
  '{x}',
  '\\',
  '\\\\',
  'a:s',
  'a:q',
  's',
  'q',
  't',
  't:1:a',
  '1:a',
  '1',
  'a*',
  'é',
  'e\u0301',
  '日本',
  '😀',
  ' ',
  'a b',
  '\u0000',
  'fc:',
  '%',
  'x'.repeat(200),
]

describe.each(modes())('tenants ($name mode)', (mode) => {
  const make = useManagers(mode)

  it('identical keys in tenant a, tenant b and the manager are isolated (get/set/delete)', async () => {
    const m = make()
    const a = m.tenant('a')
    const b = m.tenant('b')
    await m.setSession('k', 'manager')
    await a.setSession('k', 'A')
    await b.setSession('k', 'B')
    await m.cacheQueryResult('k', 'qm')
    await a.cacheQueryResult('k', 'qa')
    await b.cacheQueryResult('k', 'qb')
    await expect(m.getSession('k')).resolves.toBe('manager')
    await expect(a.getSession('k')).resolves.toBe('A')
    await expect(b.getSession('k')).resolves.toBe('B')
    await expect(m.getCachedQuery('k')).resolves.toBe('qm')
    await expect(a.getCachedQuery('k')).resolves.toBe('qa')
    await expect(b.getCachedQuery('k')).resolves.toBe('qb')

    await expect(a.deleteSession('k')).resolves.toBe(true)
    await expect(a.getSession('k')).resolves.toBeNull()
    await expect(a.deleteSession('k')).resolves.toBe(false)
    await expect(b.getSession('k')).resolves.toBe('B')
    await expect(m.getSession('k')).resolves.toBe('manager')

    await expect(m.deleteSession('k')).resolves.toBe(true)
    await expect(b.getSession('k')).resolves.toBe('B')
  })

  it('a key set only in one tenant is a miss in the others and in the manager', async () => {
    const m = make()
    await m.tenant('a').setSession('only-a', 1)
    await m.tenant('a').cacheQueryResult('only-a', 1)
    await expect(m.tenant('b').getSession('only-a')).resolves.toBeNull()
    await expect(m.getSession('only-a')).resolves.toBeNull()
    await expect(m.getCachedQuery('only-a')).resolves.toBeNull()
    await expect(m.tenant('b').deleteSession('only-a')).resolves.toBe(false)
    await expect(m.deleteSession('only-a')).resolves.toBe(false)
    await expect(m.tenant('a').getSession('only-a')).resolves.toBe(1)
  })

  it('two TenantCache objects for the same id share data', async () => {
    const m = make()
    await m.tenant('acme').setSession('s', { x: 1 })
    await expect(m.tenant('acme').getSession('s')).resolves.toEqual({ x: 1 })
    expect(m.tenant('acme').tenantId).toBe('acme')
  })

  it('invalidateCache and invalidateAll stay inside the scope', async () => {
    const m = make()
    const a = m.tenant('a')
    const b = m.tenant('b')
    for (const s of [m, a, b] as Scope[]) {
      await s.cacheQueryResult('orders_1', 1)
      await s.cacheQueryResult('orders_2', 2)
      await s.cacheQueryResult('users_1', 3)
      await s.setSession('orders_1', 'session')
    }
    await expect(a.invalidateCache('orders_')).resolves.toBe(2)
    await expect(a.getCachedQuery('orders_1')).resolves.toBeNull()
    await expect(a.getCachedQuery('users_1')).resolves.toBe(3)
    await expect(b.getCachedQuery('orders_1')).resolves.toBe(1)
    await expect(m.getCachedQuery('orders_2')).resolves.toBe(2)

    await expect(b.invalidateAll()).resolves.toBe(3)
    await expect(b.getCachedQuery('users_1')).resolves.toBeNull()
    await expect(a.getCachedQuery('users_1')).resolves.toBe(3)
    await expect(m.getCachedQuery('orders_1')).resolves.toBe(1)

    await expect(m.invalidateAll()).resolves.toBe(3)
    await expect(a.getCachedQuery('users_1')).resolves.toBe(3)
    for (const s of [m, a, b] as Scope[]) await expect(s.getSession('orders_1')).resolves.toBe('session')

    await expect(m.invalidateCache('users_')).resolves.toBe(0)
    await expect(a.invalidateAll()).resolves.toBe(1)
  })

  it("hostile tenant ids never see, delete or invalidate each other's data", async () => {
    const m = make()
    const scopes: Array<[string, Scope]> = [
      ['<manager>', m],
      ...HOSTILE_IDS.map((id) => [id, m.tenant(id)] as [string, Scope]),
    ]
    // Keys that mimic the layout, so a layout collision would show.
    const keys = ['k', 's:k', 'q:k', 't:1:a:s:k', '*', 'a:s:k']
    for (const [label, s] of scopes) {
      for (const k of keys) {
        await s.setSession(k, `${label}|s|${k}`)
        await s.cacheQueryResult(k, `${label}|q|${k}`)
      }
    }
    const check = async (removedQueries: Set<string>, removedSessions: Set<string>) => {
      for (const [label, s] of scopes) {
        for (const k of keys) {
          await expect(s.getSession(k)).resolves.toBe(removedSessions.has(`${label}|${k}`) ? null : `${label}|s|${k}`)
          await expect(s.getCachedQuery(k)).resolves.toBe(
            removedQueries.has(`${label}|${k}`) ? null : `${label}|q|${k}`,
          )
        }
      }
    }
    await check(new Set(), new Set())

    const rq = new Set<string>()
    const rs = new Set<string>()
    // every glob-ish tenant invalidates with a glob-ish prefix: only its own keys go
    await expect(m.tenant('*').invalidateCache('*')).resolves.toBe(1)
    rq.add('*|*')
    await expect(m.tenant('[a]').invalidateCache('s:')).resolves.toBe(1)
    rq.add('[a]|s:k')
    await expect(m.tenant('a').invalidateAll()).resolves.toBe(keys.length)
    keys.forEach((k) => rq.add(`a|${k}`))
    await expect(m.tenant(':').invalidateAll()).resolves.toBe(keys.length)
    keys.forEach((k) => rq.add(`:|${k}`))
    await expect(m.tenant('\\').invalidateCache('t')).resolves.toBe(1)
    rq.add('\\|t:1:a:s:k')
    await expect(m.tenant('😀').deleteSession('k')).resolves.toBe(true)
    rs.add('😀|k')
    await expect(m.tenant('a:s').deleteSession('k')).resolves.toBe(true)
    rs.add('a:s|k')
    await expect(m.invalidateAll()).resolves.toBe(keys.length)
    keys.forEach((k) => rq.add(`<manager>|${k}`))
    await check(rq, rs)
  })

  it.each(HOSTILE_IDS.map((id) => [JSON.stringify(id), id]))(
    'tenant %s: invalidateAll counts only its own entries',
    async (_label, id) => {
      const m = make()
      const others = ['a', '*', ':', 'x', '\\']
      for (const o of others) if (o !== id) await m.tenant(o).cacheQueryResult('q', o)
      await m.cacheQueryResult('q', 'manager')
      await m.tenant(id).cacheQueryResult('q', 'mine')
      await m.tenant(id).cacheQueryResult('q2', 'mine2')
      await expect(m.tenant(id).invalidateAll()).resolves.toBe(2)
      await expect(m.tenant(id).getCachedQuery('q')).resolves.toBeNull()
      for (const o of others) if (o !== id) await expect(m.tenant(o).getCachedQuery('q')).resolves.toBe(o)
      await expect(m.getCachedQuery('q')).resolves.toBe('manager')
    },
  )

  it("tenant data expires by TTL like the manager's", async () => {
    const m = make()
    const t = m.tenant('ttl')
    await t.setSession('s', 1, 0.2)
    await t.cacheQueryResult('q', 1, 0.2)
    await m.setSession('s', 'm', 60)
    await new Promise((r) => setTimeout(r, 400))
    await expect(t.getSession('s')).resolves.toBeNull()
    await expect(t.getCachedQuery('q')).resolves.toBeNull()
    await expect(m.getSession('s')).resolves.toBe('m')
  })
})
