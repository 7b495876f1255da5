// Authentication against real redis-server processes: an ACL user, requirepass,
// wrong credentials and an under-privileged ACL user. Wrong credentials and missing
// permissions are misconfiguration: an `error` event, calls served from memory,
// never a rejection. And the password never shows up anywhere: health(), metrics(),
// event payloads, error messages and stacks.
//
// Servers: helpers/redis-server.ts startRedis(extraArgs) (private loopback port,
// stopped by pid in afterAll).

import Redis from 'ioredis'
import { createCacheManager, CacheManager, CacheOptions, codes } from '..'
import { RedisServer, sleep, startRedis, uniquePrefix } from './helpers/redis-server'

const SECRET = 's3cret-pw'
const WRONG = 'wrong-pw'
const LIMITED_PW = 'pw2-limited-Zq9'
const SECRETS = [SECRET, WRONG, LIMITED_PW]

// ---------------------------------------------------------------- helpers

/** Fails naming `where` if `text` contains any of the passwords. */
function expectNoSecret(where: string, text: string | undefined | null): void {
  const s = String(text)
  for (const secret of SECRETS) {
    if (s.includes(secret)) {
      throw new Error(`password ${JSON.stringify(secret)} leaked in ${where}: ${s}`)
    }
  }
}

function errorText(e: unknown): string {
  if (e instanceof Error) {
    const own: Record<string, unknown> = {}
    for (const k of Object.getOwnPropertyNames(e)) own[k] = (e as unknown as Record<string, unknown>)[k]
    return `${e.message}\n${e.stack}\n${String(e)}\n${JSON.stringify(own)}`
  }
  return String(e)
}

interface Recorded {
  events: Array<{ event: string; payload: unknown }>
  waitFor(event: string, pred: (p: any) => boolean, ms: number): Promise<any>
}

function record(m: CacheManager): Recorded {
  const events: Recorded['events'] = []
  for (const ev of ['fallback', 'error', 'recovered'] as const) {
    m.on(ev as 'error', (payload: unknown) => {
      events.push({ event: ev, payload })
    })
  }
  return {
    events,
    async waitFor(event, pred, ms) {
      const deadline = Date.now() + ms
      for (;;) {
        const hit = events.find((e) => e.event === event && pred(e.payload))
        if (hit) return hit.payload
        if (Date.now() > deadline) {
          throw new Error(`no '${event}' event matching within ${ms} ms; got ${JSON.stringify(events)}`)
        }
        await sleep(10)
      }
    },
  }
}

const open: CacheManager[] = []
const recorders: Array<{ label: string; rec: Recorded }> = []

function make(label: string, url: string, extra: CacheOptions = {}): { m: CacheManager; rec: Recorded } {
  const m = createCacheManager({ url, keyPrefix: uniquePrefix('auth'), ...extra })
  open.push(m)
  const rec = record(m)
  recorders.push({ label, rec })
  return { m, rec }
}

/** health(), metrics() and every event so far: no password anywhere. */
async function expectNoLeak(label: string, m: CacheManager, rec: Recorded): Promise<void> {
  const h = await m.health()
  expectNoSecret(`${label}: health()`, JSON.stringify(h))
  expectNoSecret(`${label}: health().redis.url`, h.redis.url)
  expectNoSecret(`${label}: health().redis.lastError`, h.redis.lastError)
  expectNoSecret(`${label}: metrics()`, JSON.stringify(m.metrics()))
  for (const e of rec.events) expectNoSecret(`${label}: '${e.event}' event`, JSON.stringify(e.payload))
}

/** A closed manager rejects with ERR_CLOSED, password-free; health() stays password-free too. */
async function closeAndCheck(label: string, m: CacheManager, rec: Recorded): Promise<void> {
  await m.close()
  let err: unknown
  try {
    await m.getSession('after-close')
  } catch (e) {
    err = e
  }
  expect(err).toBeInstanceOf(Error)
  expect((err as { code?: string }).code).toBe(codes.CLOSED)
  expectNoSecret(`${label}: call after close()`, errorText(err))
  let err2: unknown
  try {
    await m.cacheQueryResult('after-close', 1)
  } catch (e) {
    err2 = e
  }
  expect((err2 as { code?: string }).code).toBe(codes.CLOSED)
  expectNoSecret(`${label}: cacheQueryResult after close()`, errorText(err2))
  await expectNoLeak(`${label} (closed)`, m, rec)
}

/** Wrong credentials / missing permissions: misconfiguration error event, memory, no rejection. */
async function expectMisconfiguredButServing(
  label: string,
  m: CacheManager,
  rec: Recorded,
  messageMatch?: RegExp,
): Promise<void> {
  await expect(m.setSession('s1', { user: 1 })).resolves.toBeUndefined()
  await expect(m.cacheQueryResult('q1', [1, 2, 3])).resolves.toBeUndefined()
  const err = await rec.waitFor('error', (p) => p && p.kind === 'misconfiguration', 3000)
  expect(typeof err.message).toBe('string')
  if (messageMatch) expect(err.message).toMatch(messageMatch)
  // served from memory
  await expect(m.getSession('s1')).resolves.toEqual({ user: 1 })
  await expect(m.getCachedQuery('q1')).resolves.toEqual([1, 2, 3])
  await expect(m.getSession('never-set')).resolves.toBeNull()
  await expect(m.getOrSet('g1', () => 'loaded')).resolves.toBe('loaded')
  await expect(m.invalidateCache('q')).resolves.toBe(1)
  await expect(m.deleteSession('s1')).resolves.toBe(true)
  const h = await m.health()
  expect(h.status).toBe('degraded')
  expect(h.mode).toBe('memory')
  expect(m.metrics().mode).toBe('memory')
  await expectNoLeak(label, m, rec)
}

afterAll(async () => {
  await Promise.all(open.splice(0).map((m) => m.close()))
  // a final sweep over every event any manager emitted during the file
  for (const { label, rec } of recorders) {
    for (const e of rec.events) expectNoSecret(`${label}: '${e.event}' event`, JSON.stringify(e.payload))
  }
})

// ---------------------------------------------------------------- ACL users

describe('ACL user (default off, user app with +@all, user limited with +ping only)', () => {
  let server: RedisServer
  let raw: Redis

  beforeAll(async () => {
    server = await startRedis([
      '--user',
      'default',
      'off',
      '--user',
      'app',
      'on',
      `>${SECRET}`,
      '~*',
      '&*',
      '+@all',
      '--user',
      'limited',
      'on',
      `>${LIMITED_PW}`,
      '~*',
      '+ping',
    ])
    raw = new Redis({
      host: '127.0.0.1',
      port: server.port,
      username: 'app',
      password: SECRET,
      maxRetriesPerRequest: 1,
    })
    await raw.ping()
  })

  afterAll(async () => {
    if (raw) {
      try {
        await raw.quit()
      } catch {
        raw.disconnect()
      }
    }
    if (server) await server.stop()
  })

  it('the right user and password: redis mode, round trip, the raw key is in Redis', async () => {
    const url = `redis://app:${SECRET}@127.0.0.1:${server.port}`
    const prefix = uniquePrefix('acl-ok')
    const { m, rec } = make('acl right credentials', url, { keyPrefix: prefix })
    await m.setSession('sess', { userId: 42 })
    await expect(m.getSession('sess')).resolves.toEqual({ userId: 42 })
    await m.cacheQueryResult('rows', [{ a: 1 }])
    await expect(m.getCachedQuery('rows')).resolves.toEqual([{ a: 1 }])

    expect(await raw.exists(`${prefix}s:sess`)).toBe(1)
    expect(JSON.parse((await raw.get(`${prefix}s:sess`))!)).toEqual({ userId: 42 })
    expect(JSON.parse((await raw.get(`${prefix}q:rows`))!)).toEqual([{ a: 1 }])

    const h = await m.health()
    expect(h.status).toBe('healthy')
    expect(h.mode).toBe('redis')
    expect(h.redis.connected).toBe(true)
    expect(h.redis.url).toContain(`app:***@127.0.0.1:${server.port}`)
    expect(m.metrics().mode).toBe('redis')
    expect(rec.events.filter((e) => e.event === 'error' || e.event === 'fallback')).toEqual([])
    await expectNoLeak('acl right credentials', m, rec)
    await closeAndCheck('acl right credentials', m, rec)
  })

  it('the right user with a wrong password: misconfiguration, served from memory, degraded, nothing leaks', async () => {
    const url = `redis://app:${WRONG}@127.0.0.1:${server.port}`
    const { m, rec } = make('acl wrong password', url)
    await expectMisconfiguredButServing('acl wrong password', m, rec)
    const h = await m.health()
    expect(h.redis.url).toContain(`app:***@127.0.0.1:${server.port}`)
    expect(h.redis.lastError).not.toBeNull()
    await closeAndCheck('acl wrong password', m, rec)
  })

  it('an unknown user: misconfiguration, served from memory, degraded, nothing leaks', async () => {
    const url = `redis://nobody:${SECRET}@127.0.0.1:${server.port}`
    const { m, rec } = make('acl unknown user', url)
    await expectMisconfiguredButServing('acl unknown user', m, rec)
    const h = await m.health()
    expect(h.redis.url).toContain(`nobody:***@127.0.0.1:${server.port}`)
    await closeAndCheck('acl unknown user', m, rec)
  })

  it('a wrong password with the fallback off: rejects with ERR_REDIS_UNAVAILABLE, password-free', async () => {
    const url = `redis://app:${WRONG}@127.0.0.1:${server.port}`
    const { m, rec } = make('acl wrong password, fallback off', url, { fallback: { enabled: false } })
    for (const call of [() => m.setSession('s', 1), () => m.getSession('s'), () => m.invalidateAll()]) {
      let err: unknown
      try {
        await call()
      } catch (e) {
        err = e
      }
      expect(err).toBeInstanceOf(Error)
      expect((err as { code?: string }).code).toBe(codes.REDIS_UNAVAILABLE)
      expectNoSecret('acl wrong password, fallback off: rejection', errorText(err))
    }
    await rec.waitFor('error', (p) => p && p.kind === 'misconfiguration', 3000)
    const h = await m.health()
    expect(h.status).toBe('unhealthy')
    await expectNoLeak('acl wrong password, fallback off', m, rec)
    await closeAndCheck('acl wrong password, fallback off', m, rec)
  })

  it('a user allowed only PING: NOPERM reported as misconfiguration, served from memory, no rejection', async () => {
    const url = `redis://limited:${LIMITED_PW}@127.0.0.1:${server.port}`
    const prefix = uniquePrefix('acl-limited')
    const { m, rec } = make('acl limited user', url, { keyPrefix: prefix })
    await expectMisconfiguredButServing('acl limited user', m, rec, /NOPERM/i)
    // a few more calls a while later (probes may run meanwhile): still served, never rejected
    await sleep(700)
    await expect(m.setSession('later', 'v')).resolves.toBeUndefined()
    await expect(m.getSession('later')).resolves.toBe('v')
    await expect(m.cacheQueryResult('later', 'q')).resolves.toBeUndefined()
    await expect(m.getCachedQuery('later')).resolves.toBe('q')
    // nothing reached Redis
    expect(await raw.exists(`${prefix}s:later`, `${prefix}q:later`, `${prefix}s:s1`)).toBe(0)
    const h = await m.health()
    expect(h.redis.url).toContain(`limited:***@127.0.0.1:${server.port}`)
    await expectNoLeak('acl limited user', m, rec)
    await closeAndCheck('acl limited user', m, rec)
  })
})

// ---------------------------------------------------------------- requirepass

describe('requirepass', () => {
  let server: RedisServer
  let raw: Redis

  beforeAll(async () => {
    server = await startRedis(['--requirepass', SECRET])
    raw = new Redis({ host: '127.0.0.1', port: server.port, password: SECRET, maxRetriesPerRequest: 1 })
    await raw.ping()
  })

  afterAll(async () => {
    if (raw) {
      try {
        await raw.quit()
      } catch {
        raw.disconnect()
      }
    }
    if (server) await server.stop()
  })

  it('the right password: redis mode, round trip, the raw key is in Redis', async () => {
    const url = `redis://:${SECRET}@127.0.0.1:${server.port}`
    const prefix = uniquePrefix('rp-ok')
    const { m, rec } = make('requirepass right password', url, { keyPrefix: prefix })
    await m.setSession('sess', { userId: 7 })
    await expect(m.getSession('sess')).resolves.toEqual({ userId: 7 })
    expect(await raw.exists(`${prefix}s:sess`)).toBe(1)
    expect(JSON.parse((await raw.get(`${prefix}s:sess`))!)).toEqual({ userId: 7 })
    const h = await m.health()
    expect(h.status).toBe('healthy')
    expect(h.mode).toBe('redis')
    expect(h.redis.url).toContain(`:***@127.0.0.1:${server.port}`)
    expect(rec.events.filter((e) => e.event === 'error' || e.event === 'fallback')).toEqual([])
    await expectNoLeak('requirepass right password', m, rec)
    await closeAndCheck('requirepass right password', m, rec)
  })

  it('a wrong password: misconfiguration, served from memory, degraded, nothing leaks', async () => {
    const url = `redis://:${WRONG}@127.0.0.1:${server.port}`
    const { m, rec } = make('requirepass wrong password', url)
    await expectMisconfiguredButServing('requirepass wrong password', m, rec)
    const h = await m.health()
    expect(h.redis.url).toContain(`:***@127.0.0.1:${server.port}`)
    await closeAndCheck('requirepass wrong password', m, rec)
  })

  it('no password at all against requirepass: misconfiguration, served from memory', async () => {
    const { m, rec } = make('requirepass no password', `redis://127.0.0.1:${server.port}`)
    await expectMisconfiguredButServing('requirepass no password', m, rec)
    await closeAndCheck('requirepass no password', m, rec)
  })
})

// ---------------------------------------------------------------- thrown errors

describe('errors thrown by createCacheManager never carry the password', () => {
  const bad: Array<[string, CacheOptions]> = [
    ['commandTimeoutMs -1', { url: `redis://u:${SECRET}@127.0.0.1:1`, commandTimeoutMs: -1 }],
    ['connectTimeoutMs NaN', { url: `redis://u:${SECRET}@127.0.0.1:1`, connectTimeoutMs: NaN }],
    ['keyPrefix too long', { url: `redis://:${SECRET}@127.0.0.1:1`, keyPrefix: 'x'.repeat(300) }],
    ['non-numeric port', { url: `redis://u:${SECRET}@127.0.0.1:notaport` }],
    ['unknown scheme', { url: `foo://u:${SECRET}@127.0.0.1:1` }],
    ['bad db', { url: `redis://u:${SECRET}@127.0.0.1:1/notadb` }],
  ]

  it.each(bad)('%s: a TypeError with ERR_INVALID_ARG, password-free', (_label, opts) => {
    let err: unknown
    let made: CacheManager | undefined
    try {
      made = createCacheManager(opts)
    } catch (e) {
      err = e
    }
    if (made) {
      open.push(made)
    }
    expect(made).toBeUndefined()
    expect(err).toBeInstanceOf(TypeError)
    expect((err as { code?: string }).code).toBe(codes.INVALID_ARG)
    expectNoSecret(`createCacheManager(${_label})`, errorText(err))
  })
})
