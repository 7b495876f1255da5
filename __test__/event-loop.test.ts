// A loop awaiting answers given on the spot (memory://, near-cache hits, refusals of a key over
// its limit) still lets timers run: past 1,024 such answers in one turn, an answer waits for the
// next check phase. The answers stay what they were.
import { fixtures } from './helpers/fixtures'
import { waitFor } from './helpers/traffic'
import { CacheManager } from '..'

const { manager, server } = fixtures()

/** Awaits `call` in a loop until a timer set before it fires; returns how many calls that took. */
async function callsUntilATimerFires(call: () => Promise<unknown>, cap = 200_000): Promise<number> {
  let fired = false
  setTimeout(() => (fired = true), 0)
  let n = 0
  while (!fired && n < cap) {
    await call()
    n++
  }
  return n
}

async function expectLoopYields(m: CacheManager) {
  await m.setSession('hot', { user: 1 })
  const n = await callsUntilATimerFires(() => m.getSession('hot'))
  expect(n).toBeLessThanOrEqual(5_000)
  expect(await m.getSession('hot')).toEqual({ user: 1 })
  // a getOrSetMany of hot keys too
  const pages = await callsUntilATimerFires(() => m.getOrSetMany(['hot-q'], async () => ({ 'hot-q': 1 })))
  expect(pages).toBeLessThanOrEqual(5_000)
}

describe('a loop of answers given on the spot yields to timers', () => {
  it('memory://', async () => {
    await expectLoopYields(manager({ url: 'memory://' }))
  })

  it('near-cache hits', async () => {
    const s = await server()
    const m = manager({ url: s.url })
    await m.getSession('connect')
    await waitFor('tracking active', () => m.metrics().nearCache.tracking === 'active', 5000)
    await expectLoopYields(m)
    expect(m.metrics().nearCache.hits).toBeGreaterThan(1024)
  })

  it('answers past the budget are the same answers: values, booleans, counts', async () => {
    const m = manager({ url: 'memory://' })
    await Promise.all(Array.from({ length: 3000 }, (_, i) => m.setSession(`s${i}`, { i })))
    const read = await Promise.all(Array.from({ length: 3000 }, (_, i) => m.getSession(`s${i}`)))
    expect(read).toEqual(Array.from({ length: 3000 }, (_, i) => ({ i })))
    const deleted = await Promise.all(Array.from({ length: 3000 }, (_, i) => m.deleteSession(`s${i}`)))
    expect(deleted.every((d) => d === true)).toBe(true)
    const again = await Promise.all(Array.from({ length: 3000 }, (_, i) => m.deleteSession(`s${i}`)))
    expect(again.every((d) => d === false)).toBe(true)
  })

  it('refusals of a key over its limit keep their decision past the budget', async () => {
    const m = manager({ url: 'memory://' })
    const policy = { limit: 2, windowMs: 60_000 }
    await m.rateLimit('flood', policy)
    await m.rateLimit('flood', policy)
    const decisions = await Promise.all(Array.from({ length: 3000 }, () => m.rateLimit('flood', policy)))
    for (const d of decisions) {
      expect(d).toMatchObject({ allowed: false, limit: 2, remaining: 0 })
      expect(d.retryAfterMs).toBeGreaterThan(0)
    }
    const n = await callsUntilATimerFires(() => m.rateLimit('flood', policy))
    expect(n).toBeLessThanOrEqual(5_000)
  })
})
