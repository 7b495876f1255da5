// memory:// calls are answered on the calling thread by the addon's submit function
// (src/napi/calls.rs), with the same values, errors and counters as every other path.

import { createCacheManager, CacheManager } from '..'

describe('memory:// fast path', () => {
  const managers: CacheManager[] = []
  const make = (options: object = {}) => {
    const m = createCacheManager({ url: 'memory://', ...options })
    managers.push(m)
    return m
  }
  afterAll(async () => {
    await Promise.all(managers.map((m) => m.close()))
  })

  it('answers without waiting for the event loop (before a setImmediate queued first)', async () => {
    const m = make()
    let immediate = false
    const timer = setImmediate(() => {
      immediate = true
    })
    await m.setSession('s', { a: 1 })
    await m.cacheQueryResult('q', [1, 2])
    const s = await m.getSession('s')
    const q = await m.getCachedQuery('q')
    const t = await m.tenant('t').getSession('s')
    expect(immediate).toBe(false)
    clearImmediate(timer)
    expect([s, q, t]).toEqual([{ a: 1 }, [1, 2], null])
  })

  it('round-trips values of any characters exactly, in every scope', async () => {
    const m = make()
    const values: unknown[] = [
      'plain ascii',
      '\u0000\u0001\u001f\u007f', // control characters (escaped by JSON)
      '\u0080\u00e9\u00ff', // Latin-1 beyond ASCII: must not be taken for ASCII
      '\u0100\u20ac\uffff', // the rest of the BMP
      '\u65e5\u672c\u8a9e', // CJK
      '\ud83d\ude00 \ud834\udd1e', // surrogate pairs
      '\ud800 lone \udfff', // lone surrogates in a value (JSON escapes them)
      { k: '\u00e9', n: [1.5, -0, 1e21], nested: { '\u00fc': null, '': true } },
      'x'.repeat(200_000) + '\u00e9', // larger than the conversion buffers kept for reuse
      '',
      0,
      false,
    ]
    const scopes = [m, m.tenant('t\u00e9'), m.tenant('\u65e5\ud83d\ude00')]
    for (const [i, v] of values.entries()) {
      for (const scope of scopes) {
        await scope.setSession(`s\u00e9${i}`, v)
        await scope.cacheQueryResult(`q\ud83d\ude00${i}`, v)
      }
    }
    for (const [i, v] of values.entries()) {
      const expected = JSON.parse(JSON.stringify(v))
      for (const scope of scopes) {
        expect([i, await scope.getSession(`s\u00e9${i}`)]).toEqual([i, expected])
        expect([i, await scope.getCachedQuery(`q\ud83d\ude00${i}`)]).toEqual([i, expected])
      }
    }
    // a short value read after a long one: nothing of the long one is left in it
    await m.setSession('long', 'y'.repeat(10_000))
    await m.setSession('short', 'z')
    expect(await m.getSession('long')).toBe('y'.repeat(10_000))
    expect(await m.getSession('short')).toBe('z')
    // keys differing only beyond ASCII stay apart
    await m.setSession('\u00e9', 1)
    await m.setSession('\u00c3\u00a9', 2) // the UTF-8 bytes of 'é' read as Latin-1
    expect([await m.getSession('\u00e9'), await m.getSession('\u00c3\u00a9')]).toEqual([1, 2])
  })

  it('every read is a fresh copy', async () => {
    const m = make()
    await m.setSession('s', { list: [1], deep: { x: 1 } })
    const a = (await m.getSession('s')) as { list: number[]; deep: { x: number } }
    a.list.push(2)
    a.deep.x = 9
    const b = await m.getSession('s')
    expect(b).toEqual({ list: [1], deep: { x: 1 } })
    expect(b).not.toBe(a)
  })

  it('rejects with the same coded errors, and changes nothing', async () => {
    const m = make({ limits: { maxValueBytes: 1024, maxKeyBytes: 16 } })
    await expect(m.setSession('big', 'x'.repeat(2000))).rejects.toMatchObject({
      name: 'RangeError',
      code: 'ERR_TOO_LARGE',
    })
    await expect(m.setSession('k'.repeat(17), 1)).rejects.toMatchObject({ code: 'ERR_TOO_LARGE' })
    await expect(m.getSession('k'.repeat(17))).rejects.toMatchObject({ code: 'ERR_TOO_LARGE' })
    await expect(m.setSession('s', 1, -1)).rejects.toMatchObject({ name: 'RangeError', code: 'ERR_INVALID_ARG' })
    await expect(m.getSession('\ud800')).rejects.toMatchObject({ name: 'TypeError', code: 'ERR_INVALID_ARG' })
    expect(await m.getSession('big')).toBeNull()
    expect(m.metrics().memory.fallbackEntries).toBe(0)
    await m.close()
    await expect(m.getSession('s')).rejects.toMatchObject({ code: 'ERR_CLOSED' })
    await expect(m.setSession('s', 1)).rejects.toMatchObject({ code: 'ERR_CLOSED' })
  })

  it('counts reads and writes in metrics, per kind and per tenant', async () => {
    const m = make()
    await m.setSession('a', 1)
    await m.getSession('a')
    await m.getSession('nope')
    await m.tenant('t').cacheQueryResult('q', 2)
    await m.tenant('t').getCachedQuery('q')
    const s = m.metrics()
    expect(s.byType.session).toMatchObject({ hits: 1, misses: 1, sets: 1 })
    expect(s.byType.query).toMatchObject({ hits: 1, misses: 0, sets: 1 })
    expect(m.tenant('t').metrics()).toMatchObject({ hits: 1, misses: 0 })
    expect(s.memory.fallbackEntries).toBe(2)
  })
})
