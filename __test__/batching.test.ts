// The gets and sets of one event-loop tick go to the addon in a few native calls
// (batch.js: chunks of 32 or more, calls on one key kept in one chunk). Each caller must still
// get exactly its own result or error, and calls on one key run in the order made.

import { CacheManager } from '..'
import { modes, useManagers } from './helpers/modes'
import { RawRedis, uniquePrefix } from './helpers/redis-server'

const [, redis] = modes()

describe('batched calls (redis mode)', () => {
  const make = useManagers(redis)

  it('1,000 concurrent mixed calls over kinds and scopes: every caller gets its own value', async () => {
    const m = make()
    const scopes: Array<Pick<CacheManager, 'setSession' | 'getSession' | 'cacheQueryResult' | 'getCachedQuery'>> = [
      m,
      m.tenant('a'),
      m.tenant('b'),
    ]
    await Promise.all(
      Array.from({ length: 500 }, (_, i) => {
        const s = scopes[i % 3]
        return i % 2 ? s.setSession(`k${i}`, { s: i }) : s.cacheQueryResult(`k${i}`, { q: i })
      }),
    )
    const reads = await Promise.all(
      Array.from({ length: 1000 }, (_, j) => {
        const i = j % 500
        const s = scopes[i % 3]
        if (j >= 500) return s.getCachedQuery(`k${i}`) // the other kind: a miss unless a query was written
        return i % 2 ? s.getSession(`k${i}`) : s.getCachedQuery(`k${i}`)
      }),
    )
    for (let j = 0; j < 1000; j++) {
      const i = j % 500
      if (j < 500) expect([j, reads[j]]).toEqual([j, i % 2 ? { s: i } : { q: i }])
      else expect([j, reads[j]]).toEqual([j, i % 2 ? null : { q: i }])
    }
    // the other tenants never see these keys
    await expect(m.tenant('c').getSession('k1')).resolves.toBeNull()
  })

  it('calls on one key made in one tick run in the order they were made, across chunks of the tick', async () => {
    const m = make()
    for (let round = 0; round < 30; round++) {
      const t = m.tenant(`t${round % 3}`)
      const calls: Array<Promise<unknown>> = []
      calls.push(t.setSession('hot', { v: `${round}-a` }))
      // more calls than one chunk holds, on other keys, between the calls on 'hot'
      for (let i = 0; i < 80; i++) calls.push(i % 2 ? m.getSession(`other${i}`) : m.setSession(`other${i}`, i))
      const read1 = t.getSession('hot')
      calls.push(t.setSession('hot', { v: `${round}-b` }), t.cacheQueryResult('hot', { q: round }))
      for (let i = 0; i < 40; i++) calls.push(m.getSession(`other${i}`))
      const read2 = t.getSession('hot')
      const read3 = t.getCachedQuery('hot')
      await Promise.all(calls)
      expect([round, await read1]).toEqual([round, { v: `${round}-a` }])
      expect([round, await read2]).toEqual([round, { v: `${round}-b` }])
      expect([round, await read3]).toEqual([round, { q: round }])
    }
  })

  it('calls made while results are handed over go out at once (the event loop stays busy)', async () => {
    const m = make()
    await Promise.all(Array.from({ length: 64 }, (_, i) => m.setSession(`w${i}`, i)))
    // 128 callers in a loop: far more calls than one chunk; every read sees its caller's write
    let failures = 0
    await Promise.all(
      Array.from({ length: 128 }, async (_, w) => {
        for (let i = 0; i < 20; i++) {
          await m.setSession(`c${w}`, { w, i })
          const back = (await m.getSession(`c${w}`)) as { w: number; i: number }
          if (back.w !== w || back.i !== i) failures++
        }
      }),
    )
    expect(failures).toBe(0)
  })

  it('one failing call in a tick rejects alone; the others in the same batch succeed', async () => {
    const m = make({ limits: { maxValueBytes: 1024 } })
    const results = await Promise.allSettled([
      m.setSession('ok1', 1),
      m.setSession('big', 'x'.repeat(2000)),
      m.getSession('ok1'),
      m.cacheQueryResult('ok2', 2),
      m.tenant('t').setSession('big', 'y'.repeat(5000)),
    ])
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'fulfilled', 'rejected'])
    for (const i of [1, 4]) {
      const reason = (results[i] as PromiseRejectedResult).reason
      expect(reason).toBeInstanceOf(RangeError)
      expect(reason.code).toBe('ERR_TOO_LARGE')
    }
    await expect(m.getSession('ok1')).resolves.toBe(1)
    await expect(m.getSession('big')).resolves.toBeNull()
    await expect(m.getCachedQuery('ok2')).resolves.toBe(2)
  })

  it('an error reply to one command of the pipeline rejects that call alone (ERR_REDIS)', async () => {
    const keyPrefix = uniquePrefix('pipe')
    const m = make({ keyPrefix })
    const raw = new RawRedis(Number(new URL(redis.url()).port))
    try {
      await raw.client.rpush(`${keyPrefix}s:list`, 'x') // a foreign key of the wrong type
      await m.setSession('ok', 1)
      const results = await Promise.allSettled([
        m.getSession('ok'),
        m.getSession('list'),
        m.setSession('ok2', 2),
        m.getSession('nope'),
      ])
      expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'fulfilled'])
      expect((results[1] as PromiseRejectedResult).reason.code).toBe('ERR_REDIS')
      expect((results[0] as PromiseFulfilledResult<unknown>).value).toBe(1)
      expect((results[3] as PromiseFulfilledResult<unknown>).value).toBeNull()
      await expect(m.getSession('ok2')).resolves.toBe(2)
      expect(m.metrics().mode).toBe('redis') // a reply error is not an outage
    } finally {
      await raw.close()
    }
  })

  it('calls issued in one tick after close() all reject with ERR_CLOSED', async () => {
    const m = make()
    await m.setSession('s', 1)
    await m.close()
    const results = await Promise.allSettled([m.getSession('s'), m.setSession('s', 2), m.getCachedQuery('q')])
    for (const r of results) {
      expect(r.status).toBe('rejected')
      expect((r as PromiseRejectedResult).reason.code).toBe('ERR_CLOSED')
    }
  })

  it('works under jest.useFakeTimers(): the batch flush does not use the faked timers', async () => {
    const m = make()
    jest.useFakeTimers()
    try {
      await m.setSession('s', { fake: true })
      await expect(m.getSession('s')).resolves.toEqual({ fake: true })
    } finally {
      jest.useRealTimers()
    }
  })

  it('during an outage (breaker open) calls are answered without Redis yet keep yielding to the event loop', async () => {
    const m = make()
    await m.setSession('before', 1)
    m.simulateOutage({ mode: 'refuse' })
    for (let i = 0; i < 5 && m.metrics().mode !== 'memory'; i++) await m.setSession('trip', i)
    expect(m.metrics().mode).toBe('memory')
    let timerFired = false
    setTimeout(() => {
      timerFired = true
    }, 5)
    let calls = 0
    while (!timerFired) {
      await m.setSession(`k${calls % 10}`, calls)
      await m.getSession(`k${calls % 10}`)
      calls += 2
      if (calls > 1_000_000) throw new Error('the event loop never ran the timer')
    }
    expect(calls).toBeGreaterThan(0)
    await expect(m.getSession('k0')).resolves.not.toBeNull()
    m.endSimulatedOutage()
  })

  it('listSessionIds during an outage knows the outage sessions, and everything again after recovery', async () => {
    const m = make()
    await m.setSession('pre', 1)
    await m.setSession('gone', 1)
    m.simulateOutage({ mode: 'refuse' })
    await m.setSession('during', 2)
    await m.deleteSession('gone')
    await expect(m.listSessionIds()).resolves.toEqual(['during']) // documented: only what the outage wrote
    m.endSimulatedOutage()
    const deadline = Date.now() + 5000
    while ((m.metrics().mode !== 'redis' || m.metrics().journalDepth > 0) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 20))
    await expect(m.listSessionIds()).resolves.toEqual(['during', 'pre'])
  })
})
