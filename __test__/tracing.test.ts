// Tracing: the operations published on the diagnostics_channel tracing channel
// `ferrocache:operation`, turned into OpenTelemetry spans by ferrocache/otel and collected with the
// SDK's InMemorySpanExporter, against a private redis-server: gets (hits and misses), writes,
// invalidations, rate limits and getOrSet, who answered each (the near cache, Redis, the in-process
// store during an outage), errors, and nothing published once nobody subscribes.

import * as dc from 'node:diagnostics_channel'
import Redis from 'ioredis'
import { SpanStatusCode } from '@opentelemetry/api'
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base'
import { OPERATION_CHANNEL, operationChannel, OperationMessage } from '..'
import { instrument } from '../lib/otel'
import { uniquePrefix } from './helpers/redis-server'
import { waitFor } from './helpers/traffic'
import { fixtures } from './helpers/fixtures'

const { manager, server } = fixtures()

const exporter = new InMemorySpanExporter()
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] })
let stop: (() => void) | null = null

beforeEach(() => {
  exporter.reset()
  stop = instrument({ tracer: provider.getTracer('tracing-test') })
})
afterEach(() => {
  stop?.()
  stop = null
})

/** The spans finished since the last call: name and attributes, in the order they ended. */
function take() {
  const spans = exporter.getFinishedSpans()
  exporter.reset()
  return spans
}
const attrs = (spans: ReturnType<typeof take>) => spans.map((s) => ({ name: s.name, ...s.attributes }))
/** Each span's name, hit and who answered. */
const served = (spans: ReturnType<typeof take>) =>
  spans.map((s) => [s.name, s.attributes['ferrocache.hit'], s.attributes['ferrocache.served_by']])

/** A Redis-backed manager whose near cache serves: reads `key` until the near cache answers. */
async function warmManager(url: string, prefix: string) {
  const cm = manager({ url, keyPrefix: prefix })
  await cm.cacheQueryResult('warm', 1)
  await waitFor(
    'the near cache to serve',
    async () => {
      await cm.getCachedQuery('warm')
      return take().some((s) => s.attributes['ferrocache.served_by'] === 'l1')
    },
    5000,
  )
  take()
  return cm
}

describe('tracing channel', () => {
  it('gets, writes, invalidations and rate limits as spans, with hit or miss and who answered', async () => {
    const s = await server()
    const prefix = uniquePrefix('trace')
    const cm = await warmManager(s.url, prefix)
    const io = new Redis({ host: '127.0.0.1', port: s.port })
    try {
      await cm.setSession('sid-1', { userId: 1 })
      expect(await cm.getSession('sid-missing')).toBeNull()
      await io.set(`${prefix}q:external`, JSON.stringify({ from: 'ioredis' }))
      expect(await cm.getCachedQuery('external')).toEqual({ from: 'ioredis' }) // a Redis hit
      expect(await cm.getCachedQuery('external')).toEqual({ from: 'ioredis' }) // now in the near cache
      await cm.tenant('acme').cacheQueryResult('orders_1', [1])
      expect(await cm.tenant('acme').invalidateCache('orders_')).toBe(1)
      const first = await cm.rateLimit('ip:1', { limit: 1, windowMs: 60_000 })
      const second = await cm.rateLimit('ip:1', { limit: 1, windowMs: 60_000 })
      expect([first.allowed, second.allowed]).toEqual([true, false])

      const seen = attrs(take())
      expect(seen).toEqual([
        // a session id is a secret: no key attribute
        {
          name: 'ferrocache.setSession',
          'ferrocache.operation': 'setSession',
          'ferrocache.kind': 'session',
          'ferrocache.served_by': 'redis',
        },
        {
          name: 'ferrocache.getSession',
          'ferrocache.operation': 'getSession',
          'ferrocache.kind': 'session',
          'ferrocache.hit': false,
          'ferrocache.served_by': 'redis',
        },
        {
          name: 'ferrocache.getCachedQuery',
          'ferrocache.operation': 'getCachedQuery',
          'ferrocache.kind': 'query',
          'ferrocache.key': 'external',
          'ferrocache.hit': true,
          'ferrocache.served_by': 'redis',
        },
        {
          name: 'ferrocache.getCachedQuery',
          'ferrocache.operation': 'getCachedQuery',
          'ferrocache.kind': 'query',
          'ferrocache.key': 'external',
          'ferrocache.hit': true,
          'ferrocache.served_by': 'l1',
        },
        {
          name: 'ferrocache.cacheQueryResult',
          'ferrocache.operation': 'cacheQueryResult',
          'ferrocache.kind': 'query',
          'ferrocache.tenant': 'acme',
          'ferrocache.key': 'orders_1',
          'ferrocache.served_by': 'redis',
        },
        {
          name: 'ferrocache.invalidateCache',
          'ferrocache.operation': 'invalidateCache',
          'ferrocache.kind': 'query',
          'ferrocache.tenant': 'acme',
          'ferrocache.key': 'orders_',
          'ferrocache.served_by': 'redis',
        },
        {
          name: 'ferrocache.rateLimit',
          'ferrocache.operation': 'rateLimit',
          'ferrocache.kind': 'ratelimit',
          'ferrocache.key': 'ip:1',
          'ferrocache.served_by': 'redis',
          'ferrocache.allowed': true,
        },
        // refused in-process from the debt Redis reported: no Redis call
        {
          name: 'ferrocache.rateLimit',
          'ferrocache.operation': 'rateLimit',
          'ferrocache.kind': 'ratelimit',
          'ferrocache.key': 'ip:1',
          'ferrocache.served_by': 'l1',
          'ferrocache.allowed': false,
        },
      ])
    } finally {
      io.disconnect()
    }
  })

  it('getOrSet: one span with hit and who answered, its read and write as children; a shared load', async () => {
    const s = await server()
    const cm = await warmManager(s.url, uniquePrefix('trace-gos'))
    let loads = 0
    const loader = async () => {
      loads++
      await new Promise((resolve) => setTimeout(resolve, 20))
      return { report: 2024 }
    }
    const [a, b] = await Promise.all([cm.getOrSet('report', loader, 60), cm.getOrSet('report', loader, 60)])
    expect([a, b, loads]).toEqual([{ report: 2024 }, { report: 2024 }, 1])
    const missed = take()
    const byName = (name: string) => missed.filter((span) => span.name === name)
    expect(missed.map((span) => span.name).sort()).toEqual([
      'ferrocache.cacheQueryResult',
      'ferrocache.getCachedQuery',
      'ferrocache.getOrSet',
      'ferrocache.getOrSet',
    ])
    const [leader] = byName('ferrocache.getOrSet').filter((span) => !span.attributes['ferrocache.shared'])
    const [joiner] = byName('ferrocache.getOrSet').filter((span) => span.attributes['ferrocache.shared'])
    for (const span of [leader, joiner]) {
      expect(span.attributes).toMatchObject({
        'ferrocache.key': 'report',
        'ferrocache.hit': false,
        'ferrocache.served_by': 'redis',
      })
    }
    // the read and the write are children of the getOrSet that made them, inside its time
    const leaderId = leader.spanContext().spanId
    for (const child of [...byName('ferrocache.getCachedQuery'), ...byName('ferrocache.cacheQueryResult')]) {
      expect(child.parentSpanContext?.spanId).toBe(leaderId)
      expect(child.spanContext().traceId).toBe(leader.spanContext().traceId)
    }
    expect(byName('ferrocache.getCachedQuery')[0].attributes['ferrocache.hit']).toBe(false)
    // the loader's 20 ms are in the getOrSet span
    const ms = (span: (typeof missed)[number]) => span.duration[0] * 1e3 + span.duration[1] / 1e6
    expect(ms(leader)).toBeGreaterThanOrEqual(19)

    // cached now, and the write put it in the near cache
    expect(await cm.getOrSet('report', loader, 60)).toEqual({ report: 2024 })
    expect(loads).toBe(1)
    expect(served(take())).toEqual([
      ['ferrocache.getCachedQuery', true, 'l1'],
      ['ferrocache.getOrSet', true, 'l1'],
    ])
  })

  it('getOrSetMany: one span with the number of keys and hit, the writes of what it loaded as children', async () => {
    const s = await server()
    const cm = await warmManager(s.url, uniquePrefix('trace-gsm'))
    await cm.cacheQueryResult('a', 1)
    take()
    const page = await cm.getOrSetMany(['a', 'b', 'c'], async (missing) =>
      Object.fromEntries(missing.map((k) => [k, k])),
    )
    expect(page).toEqual({ a: 1, b: 'b', c: 'c' })
    const spans = take()
    const [parent] = spans.filter((span) => span.name === 'ferrocache.getOrSetMany')
    expect(parent.attributes).toMatchObject({ 'ferrocache.keys': 3, 'ferrocache.hit': false })
    const writes = spans.filter((span) => span.name === 'ferrocache.cacheQueryResult')
    expect(writes.map((span) => span.attributes['ferrocache.key']).sort()).toEqual(['b', 'c'])
    for (const w of writes) expect(w.parentSpanContext?.spanId).toBe(parent.spanContext().spanId)
    expect(spans).toHaveLength(3)

    expect(await cm.getOrSetMany(['a', 'b'], async () => ({}))).toEqual({ a: 1, b: 'b' })
    expect(attrs(take())).toEqual([
      {
        name: 'ferrocache.getOrSetMany',
        'ferrocache.operation': 'getOrSetMany',
        'ferrocache.kind': 'query',
        'ferrocache.keys': 2,
        'ferrocache.hit': true,
      },
    ])
  })

  it('an outage: answers from the in-process store are served by memory, the near cache fail-safe by l1', async () => {
    const s = await server()
    const cm = await warmManager(s.url, uniquePrefix('trace-outage'))
    cm.simulateOutage({ mode: 'refuse' })
    await cm.setSession('during', { n: 1 }) // sent to Redis, failed, then stored in-process
    for (let i = 0; i < 3; i++) await cm.setSession(`during-${i}`, { n: i })
    expect(await cm.getSession('during')).toEqual({ n: 1 })
    expect(await cm.getSession('never-written')).toBeNull()
    expect(await cm.getCachedQuery('warm')).toBe(1) // the near cache's copy, through the outage
    expect(await cm.deleteSession('during')).toBe(true)
    expect(served(take())).toEqual([
      ['ferrocache.setSession', undefined, 'memory'],
      ['ferrocache.setSession', undefined, 'memory'],
      ['ferrocache.setSession', undefined, 'memory'],
      ['ferrocache.setSession', undefined, 'memory'],
      ['ferrocache.getSession', true, 'memory'],
      ['ferrocache.getSession', false, 'memory'],
      ['ferrocache.getCachedQuery', true, 'l1'],
      ['ferrocache.deleteSession', undefined, 'memory'],
    ])
    cm.endSimulatedOutage()
  })

  it('memory://: every answer is the in-process store', async () => {
    const cm = manager({ url: 'memory://' })
    await cm.cacheQueryResult('k', 1)
    expect(await cm.getOrSet('k', () => 2)).toBe(1)
    expect(await cm.tenant('t').getSession('s')).toBeNull()
    expect((await cm.rateLimit('r', { limit: 5, windowMs: 1000 })).allowed).toBe(true)
    expect(served(take())).toEqual([
      ['ferrocache.cacheQueryResult', undefined, 'memory'],
      ['ferrocache.getCachedQuery', true, 'memory'],
      ['ferrocache.getOrSet', true, 'memory'],
      ['ferrocache.getSession', false, 'memory'],
      ['ferrocache.rateLimit', undefined, 'memory'],
    ])
  })

  it('a rejected operation is an error span: input the cache refuses, a getOrSet after close()', async () => {
    const s = await server()
    const cm = manager({ url: s.url, keyPrefix: uniquePrefix('trace-err') })
    await expect(cm.getCachedQuery('k'.repeat(5000))).rejects.toMatchObject({ code: 'ERR_TOO_LARGE' })
    await cm.close()
    await expect(cm.getOrSet('k', () => 1)).rejects.toMatchObject({ code: 'ERR_CLOSED' })
    const spans = take()
    expect(spans.map((span) => [span.name, span.status.code])).toEqual([
      ['ferrocache.getCachedQuery', SpanStatusCode.ERROR],
      ['ferrocache.getOrSet', SpanStatusCode.ERROR],
    ])
    for (const span of spans) {
      expect(span.attributes['ferrocache.served_by']).toBeUndefined()
      expect(span.events.map((e) => e.name)).toEqual(['exception'])
    }
    expect(spans[0].status.message).toMatch(/4096|key/)
    expect(spans[1].events[0].attributes?.['exception.message']).toBe('the cache manager is closed')
  })

  it('the events and their order are those of tracePromise; nothing is published once nobody subscribes', async () => {
    stop?.()
    stop = null
    expect(OPERATION_CHANNEL).toBe('ferrocache:operation')
    expect(operationChannel).not.toBeNull()
    const channel = operationChannel!
    expect(channel.hasSubscribers).toBe(false)

    const cm = manager({ url: 'memory://' })
    const events: string[] = []
    const record = (event: string) => (m: OperationMessage) =>
      events.push(`${event} ${m.operation}${m.hit === undefined ? '' : ` hit=${m.hit}`}`)
    const handlers = {
      start: record('start'),
      end: record('end'),
      asyncStart: record('asyncStart'),
      asyncEnd: record('asyncEnd'),
      error: record('error'),
    }
    channel.subscribe(handlers)
    expect(channel.hasSubscribers).toBe(true)
    await cm.getSession('s')
    await expect(cm.setSession('s', 1, -1)).rejects.toMatchObject({ code: 'ERR_INVALID_ARG' })
    await expect(cm.deleteSession('k'.repeat(5000))).rejects.toMatchObject({ code: 'ERR_TOO_LARGE' })
    expect(events).toEqual([
      'start getSession',
      'end getSession hit=false', // memory:// answers on the spot
      'asyncStart getSession hit=false',
      'asyncEnd getSession hit=false',
      // refused by the argument checks before it reached the cache: no operation
      'start deleteSession',
      'end deleteSession',
      'error deleteSession',
      'asyncStart deleteSession',
      'asyncEnd deleteSession',
    ])

    // a subscriber of one of the channels alone is a subscriber
    const asyncEnds: OperationMessage[] = []
    const onAsyncEnd = (m: unknown) => asyncEnds.push(m as OperationMessage)
    dc.subscribe(`tracing:${OPERATION_CHANNEL}:asyncEnd`, onAsyncEnd)
    channel.unsubscribe(handlers)
    expect(channel.hasSubscribers).toBe(true)
    await cm.setSession('s', 1)
    expect(asyncEnds.map((m) => [m.operation, m.servedBy, typeof m.durationMs])).toEqual([
      ['setSession', 'memory', 'number'],
    ])

    // nobody: nothing is published, whatever the calls
    dc.unsubscribe(`tracing:${OPERATION_CHANNEL}:asyncEnd`, onAsyncEnd)
    expect(channel.hasSubscribers).toBe(false)
    events.length = 0
    asyncEnds.length = 0
    await cm.getSession('s')
    await cm.getOrSet('g', () => 1)
    await cm.rateLimit('r', { limit: 1, windowMs: 1000 })
    await expect(cm.getSession('k'.repeat(5000))).rejects.toMatchObject({ code: 'ERR_TOO_LARGE' })
    expect(events).toEqual([])
    expect(asyncEnds).toEqual([])
    expect(take()).toEqual([])
  })
})
