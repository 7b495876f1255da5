// The example app's status page (GET /status, example/public/) in a real Chromium
// (playwright-core, the system browser): over a private redis-server, the page shows
// exactly what the two system endpoints answer, switches to "degraded" through a
// simulated outage (the app's test routes) and back, and fits a 375 px phone screen.
// Also the example's routes that feed it: the rate-limited CSV export and the test routes.
//
// Chromium missing is a failure, never a skip (.ci/run installs it).

import { once } from 'events'
import * as fs from 'fs'
import * as http from 'http'
import * as path from 'path'
import { isDeepStrictEqual } from 'util'
import request from 'supertest'
import { Browser, chromium, Page } from 'playwright-core'
import { createCacheManager, CacheHealth, CacheManager, CacheMetrics, TenantMetrics } from '..'
import { RedisServer, startRedis, uniquePrefix } from './helpers/redis-server'
import { chromiumPath } from './helpers/browser'

// Plain CommonJS JS without type declarations.
// eslint-disable-next-line @typescript-eslint/no-var-requires
const createApp: (manager: CacheManager, options?: Record<string, unknown>) => any = require('../example/app').createApp

const OUTPUT_DIR = path.join(__dirname, '..', 'test-output')
const HEALTH = '/api/system/cache-health'
const METRICS = '/api/system/cache-metrics'

const quietLogger = () => ({ error: jest.fn() })

describe('example app: status page assets, export, test routes (memory://)', () => {
  const managers: CacheManager[] = []
  afterAll(async () => {
    for (const m of managers) await m.close()
  })
  const memoryApp = (options: Record<string, unknown> = {}) => {
    const m = createCacheManager({ url: 'memory://' })
    managers.push(m)
    return { manager: m, app: createApp(m, { logger: quietLogger(), ...options }) }
  }

  test('GET /status is the page (with a CSP), its script and stylesheet are served', async () => {
    const { app } = memoryApp()
    const page = await request(app).get('/status').expect(200)
    expect(page.headers['content-type']).toBe('text/html; charset=utf-8')
    expect(page.headers['content-security-policy']).toContain("script-src 'self'")
    expect(page.headers['content-security-policy']).toContain("connect-src 'self'")
    expect(page.text).toContain('<script src="/status.js" defer></script>')
    expect(page.text).toContain('<link rel="stylesheet" href="/status.css" />')
    // no inline script or style: the CSP allows none
    expect(page.text).not.toMatch(/<script>|<style|\sstyle="/)
    const js = await request(app).get('/status.js').expect(200)
    expect(js.headers['content-type']).toBe('text/javascript; charset=utf-8')
    expect(js.text).toContain("'/api/system/cache-health'")
    const css = await request(app).get('/status.css').expect(200)
    expect(css.headers['content-type']).toBe('text/css; charset=utf-8')
    // nothing else of the directory is served
    await request(app).get('/status.html').expect(404)
    expect((await request(app).get('/').expect(200)).body.endpoints).toContain('GET /status (live status page)')
  })

  test('the test routes exist only with testRoutes: true', async () => {
    const off = memoryApp().app
    await request(off).post('/__test/outage').expect(404)
    await request(off).post('/__test/recover').expect(404)
    const on = memoryApp({ testRoutes: true }).app
    expect((await request(on).post('/__test/outage').send({}).expect(200)).body).toEqual({ outage: 'refuse' })
    expect((await request(on).post('/__test/outage').send({ mode: 'hang' }).expect(200)).body).toEqual({
      outage: 'hang',
    })
    const bad = await request(on).post('/__test/outage').send({ mode: 'explode' }).expect(400)
    expect(bad.body.code).toBe('ERR_BAD_REQUEST')
    expect((await request(on).post('/__test/recover').expect(200)).body).toEqual({ outage: 'none' })
  })

  test('GET /api/orders/export: CSV, 3 a minute per user of a tenant, then 429', async () => {
    const { app, manager } = memoryApp()
    await request(app).get('/api/orders/export').expect(401)
    const wile = request.agent(app)
    await wile.post('/login').send({ user: 'wile', tenant: 'acme' }).expect(201)
    await wile.post('/api/orders').send({ item: '=HYPERLINK("http://x"), "quoted"' }).expect(201)

    const first = await wile.get('/api/orders/export').expect(200)
    expect(first.headers['content-type']).toBe('text/csv; charset=utf-8')
    expect(first.headers['content-disposition']).toBe('attachment; filename=orders-acme.csv')
    expect(first.headers['ratelimit-policy']).toBe('"orders-export";q=3;w=60')
    const lines = first.text.split('\r\n')
    expect(lines[0]).toBe('id,item,createdBy,createdAt')
    expect(lines.slice(1, 3).map((l) => l.split(',').slice(0, 3).join(','))).toEqual([
      '1,anvil,wile',
      '2,rocket skates,wile',
    ])
    // a formula is defused, and a field with quotes and commas is quoted
    expect(lines[3]).toMatch(/^3,"'=HYPERLINK\(""http:\/\/x""\), ""quoted""",wile,\d{4}-/)
    expect(lines[4]).toBe('')
    expect(lines).toHaveLength(5)

    await wile.get('/api/orders/export').expect(200)
    await wile.get('/api/orders/export').expect(200)
    const refused = await wile.get('/api/orders/export').expect(429)
    expect(refused.body).toEqual({
      error: 'at most 3 exports a minute',
      code: 'ERR_RATE_LIMITED',
      retryAfterMs: expect.any(Number),
    })
    expect(refused.body.retryAfterMs).toBeGreaterThan(0)
    expect(Number(refused.headers['retry-after'])).toBe(Math.ceil(refused.body.retryAfterMs / 1000))

    // another user of the same tenant has a limit of their own; so has the same name elsewhere
    const roadrunner = request.agent(app)
    await roadrunner.post('/login').send({ user: 'road', tenant: 'acme' }).expect(201)
    await roadrunner.get('/api/orders/export').expect(200)
    const elsewhere = request.agent(app)
    await elsewhere.post('/login').send({ user: 'wile', tenant: 'globex' }).expect(201)
    await elsewhere.get('/api/orders/export').expect(200)

    expect(manager.metrics().rateLimit).toMatchObject({ allowed: 5, limited: 1 })
    expect(manager.tenant('acme').metrics()).toMatchObject({ rateLimitAllowed: 4, rateLimitLimited: 1 })
    expect(manager.tenant('globex').metrics()).toMatchObject({ rateLimitAllowed: 1, rateLimitLimited: 0 })
  })
})

// --- the page in Chromium ----------------------------------------------------

interface Snapshot {
  health: CacheHealth
  metrics: CacheMetrics
}

interface Shown {
  /** data-value of every [data-testid][data-value] element */
  values: Record<string, string>
  /** its text */
  texts: Record<string, string>
  tenants: Array<Record<string, string>>
  polls: number
}

/** What the page must show for one pair of answers: testid -> data-value; `mode-since` apart. */
function expectedValues({ health, metrics }: Snapshot): Record<string, string> {
  const m = metrics
  const values: Record<string, unknown> = {
    status: health.status,
    mode: health.mode,
    breaker: health.failover!.breaker,
    'journal-depth': m.journalDepth,
    'fallback-activations': m.fallbackActivations,
    'last-error': health.redis.lastError ?? '',
    'latency-p50': m.latencyMs.p50,
    'latency-p95': m.latencyMs.p95,
    'latency-p99': m.latencyMs.p99,
    'latency-max': m.latencyMs.max,
    'near-tracking': m.nearCache.tracking,
    'near-bytes': m.nearCache.bytes,
    'near-max-bytes': m.nearCache.maxBytes,
    'near-entries': m.nearCache.entries,
    'fallback-bytes': m.memory.fallbackBytes,
    'fallback-max-bytes': m.memory.fallbackMaxBytes,
    'fallback-entries': m.memory.fallbackEntries,
    'ratelimit-allowed': m.rateLimit.allowed,
    'ratelimit-limited': m.rateLimit.limited,
    'ratelimit-refused-locally': m.rateLimit.refusedLocally,
    'ratelimit-local-decisions': m.rateLimit.localDecisions,
    'tenants-tracked': m.tenants.tracked,
  }
  for (const [type, stats] of [
    ['session', m.byType.session],
    ['query', m.byType.query],
    ['near', m.nearCache],
  ] as const) {
    values[`hit-rate-${type}`] = stats.hitRate
    values[`hits-${type}`] = stats.hits
    values[`misses-${type}`] = stats.misses
  }
  return Object.fromEntries(Object.entries(values).map(([k, v]) => [k, String(v)]))
}

/** The top 5 tenants by reads (hits + misses), ties by id, as the page's rows. */
function expectedTenantRows(list: TenantMetrics[]): Array<Record<string, string>> {
  return list
    .filter((t) => t.hits + t.misses > 0)
    .sort((a, b) => b.hits + b.misses - (a.hits + a.misses) || a.tenantId.localeCompare(b.tenantId))
    .slice(0, 5)
    .map((t) => ({
      tenant: t.tenantId,
      reads: String(t.hits + t.misses),
      hitRate: String(t.hitRate),
      rateLimitLimited: String(t.rateLimitLimited),
    }))
}

function readShown(page: Page): Promise<Shown> {
  return page.evaluate(() => {
    const values: Record<string, string> = {}
    const texts: Record<string, string> = {}
    for (const el of Array.from(document.querySelectorAll<HTMLElement>('[data-testid][data-value]'))) {
      values[el.dataset.testid!] = el.dataset.value!
      texts[el.dataset.testid!] = (el.textContent ?? '').trim()
    }
    const tenants = Array.from(document.querySelectorAll<HTMLElement>('[data-testid="tenant-row"]')).map((tr) => {
      const row: Record<string, string> = { tenant: tr.dataset.tenant! }
      for (const td of Array.from(tr.querySelectorAll<HTMLElement>('[data-field]')))
        row[td.dataset.field!] = td.dataset.value!
      return row
    })
    return { values, texts, tenants, polls: Number(document.body.dataset.polls) }
  })
}

async function pagePolls(page: Page): Promise<number> {
  return page.evaluate(() => Number(document.body.dataset.polls))
}

/** Waits until the page shows `status` (the badge's value). */
async function waitForStatus(page: Page, status: string, timeoutMs = 15_000): Promise<void> {
  await page.waitForFunction(
    (want) => document.querySelector('[data-testid="status"]')?.getAttribute('data-value') === want,
    status,
    { timeout: timeoutMs, polling: 50 },
  )
}

/** No element reaches past the viewport's right edge, and the page does not scroll sideways. */
async function expectNoHorizontalScroll(page: Page): Promise<void> {
  const layout = await page.evaluate(() => {
    const width = document.documentElement.clientWidth
    const offenders = Array.from(document.body.querySelectorAll<HTMLElement>('*'))
      .filter((el) => {
        const r = el.getBoundingClientRect()
        return r.width > 1 && r.right > width + 0.5
      })
      .map((el) => `${el.tagName.toLowerCase()}.${el.className} (${Math.round(el.getBoundingClientRect().right)} px)`)
    return { width, scrollWidth: document.documentElement.scrollWidth, offenders }
  })
  expect(layout.width).toBe(375)
  expect(layout.offenders).toEqual([])
  expect(layout.scrollWidth).toBeLessThanOrEqual(layout.width)
}

describe('status page in Chromium, over a private redis-server', () => {
  let redis: RedisServer
  let manager: CacheManager
  let server: http.Server
  let baseUrl: string
  let browser: Browser | null = null

  beforeAll(async () => {
    redis = await startRedis()
    manager = createCacheManager({ url: redis.url, keyPrefix: uniquePrefix('status'), commandTimeoutMs: 200 })
    server = createApp(manager, { testRoutes: true, logger: quietLogger() }).listen(0, '127.0.0.1')
    await once(server, 'listening')
    baseUrl = `http://127.0.0.1:${(server.address() as { port: number }).port}`
  })

  afterAll(async () => {
    await browser?.close()
    if (server) {
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
    }
    await manager?.close()
    await redis?.stop()
  })

  async function endpoints(): Promise<Snapshot> {
    const [health, metrics] = await Promise.all([
      fetch(baseUrl + HEALTH).then((r) => r.json() as Promise<CacheHealth>),
      fetch(baseUrl + METRICS, { headers: { Accept: 'application/json' } }).then(
        (r) => r.json() as Promise<CacheMetrics>,
      ),
    ])
    return { health, metrics }
  }

  /**
   * Reads the endpoints, lets the page complete two more polls (so its last answers were
   * fetched after that read), reads the page, reads the endpoints again. When both reads
   * agree on every field the page shows, the page must show exactly those values; if
   * something moved in between, try again.
   */
  async function expectPageShowsEndpoints(page: Page): Promise<{ shown: Shown; snapshot: Snapshot }> {
    const deadline = Date.now() + 15_000
    for (;;) {
      const before = await endpoints()
      const polls = await pagePolls(page)
      await page.waitForFunction((n) => Number(document.body.dataset.polls) >= n, polls + 2, {
        timeout: 10_000,
        polling: 50,
      })
      const shown = await readShown(page)
      const after = await endpoints()
      const expected = expectedValues(before)
      const tenants = expectedTenantRows(before.metrics.tenants.list)
      const moved =
        !isDeepStrictEqual(expected, expectedValues(after)) ||
        !isDeepStrictEqual(tenants, expectedTenantRows(after.metrics.tenants.list)) ||
        after.health.modeSince !== before.health.modeSince
      if (!moved) {
        const pageValues = Object.fromEntries(Object.keys(expected).map((k) => [k, shown.values[k]]))
        expect(pageValues).toEqual(expected)
        expect(shown.tenants).toEqual(tenants)
        expect(shown.values['mode-since']).toBe(before.health.modeSince)
        return { shown, snapshot: after }
      }
      if (Date.now() > deadline) {
        throw new Error(
          `the endpoints never held still across one page poll:\n${JSON.stringify(expected)}\n${JSON.stringify(expectedValues(after))}`,
        )
      }
    }
  }

  /** The visible text of the figures: formatted as the page says, from the same values. */
  function expectTexts(shown: Shown, { metrics }: Snapshot): void {
    const t = shown.texts
    const count = (n: number) => n.toLocaleString('en-US')
    for (const [type, stats] of [
      ['session', metrics.byType.session],
      ['query', metrics.byType.query],
      ['near', metrics.nearCache],
    ] as const) {
      expect(t[`hit-rate-${type}`]).toBe(`${(stats.hitRate * 100).toFixed(1)} %`)
      expect(t[`hits-${type}`]).toBe(count(stats.hits))
    }
    expect(t['ratelimit-allowed']).toBe(count(metrics.rateLimit.allowed))
    expect(t['ratelimit-limited']).toBe(count(metrics.rateLimit.limited))
    expect(t['latency-p99']).toMatch(/^\d+(\.\d+)? ms$/)
    expect(parseFloat(t['latency-p99'])).toBeCloseTo(metrics.latencyMs.p99, metrics.latencyMs.p99 >= 10 ? 0 : 1)
    expect(t['near-max-bytes']).toBe(`${(metrics.nearCache.maxBytes / 1024 / 1024).toFixed(1)} MiB`)
    expect(t['fallback-max-bytes']).toBe(`${(metrics.memory.fallbackMaxBytes / 1024 / 1024).toFixed(1)} MiB`)
  }

  test('shows the endpoints live: healthy, degraded through an outage, healthy again; fits 375 px', async () => {
    const executablePath = chromiumPath() // before anything else: no Chromium, no test
    // Traffic through the app's own routes: six tenants with 6..1 order reads each (the page
    // lists the top 5), sessions read by /me, and exports past their rate limit.
    const tenants: Array<[string, number]> = [
      ['acme', 6],
      ['globex', 5],
      ['initech', 4],
      ['a-tenant-with-a-rather-long-name-for-a-phone-screen', 3],
      ['umbrella', 2],
      ['hooli', 1],
    ]
    const agents = new Map<string, ReturnType<typeof request.agent>>()
    for (const [tenant, reads] of tenants) {
      const agent = request.agent(baseUrl)
      agents.set(tenant, agent)
      await agent
        .post('/login')
        .send({ user: `user-of-${tenant}`, tenant })
        .expect(201)
      await agent.get('/me').expect(200)
      for (let i = 0; i < reads; i++) await agent.get('/api/orders').expect(200)
    }
    const statuses: number[] = []
    for (let i = 0; i < 5; i++) statuses.push((await agents.get('acme')!.get('/api/orders/export')).status)
    expect(statuses).toEqual([200, 200, 200, 429, 429])
    await agents.get('globex')!.get('/api/orders/export').expect(200)

    const start = await endpoints()
    expect(start.health).toMatchObject({ status: 'healthy', mode: 'redis', failover: { breaker: 'closed' } })
    expect(start.metrics.rateLimit).toMatchObject({ allowed: 4, limited: 2 })
    expect(start.metrics.nearCache.bytes).toBeGreaterThan(0)
    expect(start.metrics.latencyMs.p99).toBeGreaterThan(0)
    const top = expectedTenantRows(start.metrics.tenants.list).map((r) => r.tenant)
    expect(top).toEqual(tenants.slice(0, 5).map(([t]) => t))

    fs.mkdirSync(OUTPUT_DIR, { recursive: true })
    const desktopShot = path.join(OUTPUT_DIR, 'status-page.png')
    const phoneShot = path.join(OUTPUT_DIR, 'status-page-375px-outage.png')
    const browserStarted = Date.now()
    browser = await chromium.launch({ executablePath, headless: true })
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } })
    const problems: string[] = []
    page.on('console', (msg) => {
      if (msg.type() === 'error' || msg.type() === 'warning') problems.push(`console ${msg.type()}: ${msg.text()}`)
    })
    page.on('pageerror', (err) => problems.push(`page error: ${err.message}`))
    page.on('requestfailed', (req) => problems.push(`request failed: ${req.url()} ${req.failure()?.errorText}`))

    await page.goto(`${baseUrl}/status`)
    await waitForStatus(page, 'healthy')

    // healthy, on Redis: every figure equals the endpoints' answers
    let { shown, snapshot } = await expectPageShowsEndpoints(page)
    expectTexts(shown, snapshot)
    expect(shown.values).toMatchObject({ status: 'healthy', mode: 'redis', breaker: 'closed', 'journal-depth': '0' })
    expect(shown.tenants.map((r) => r.tenant)).toEqual(top)
    expect(shown.tenants).not.toContainEqual(expect.objectContaining({ tenant: 'hooli' }))
    // the status in words, in a live region, under headings
    await expect(page.getByRole('status').textContent()).resolves.toMatch(/Healthy\s*Serving from Redis since/)
    expect(await page.getByRole('heading', { level: 1 }).textContent()).toBe('Cache status')
    expect(await page.getByRole('heading', { level: 2 }).allTextContents()).toEqual([
      'Overall status',
      'Serving',
      'Redis latency',
      'Hit rate',
      'Memory',
      'Rate limiting',
      'Top tenants',
    ])
    // the latency chart keeps one sample per poll, one point per sample on each line
    const chart = await page.evaluate(() => {
      const svg = document.querySelector('[data-testid="latency-chart"]')!
      const points = (p: string) => svg.querySelector(`.line-${p}`)!.getAttribute('points')!.trim().split(/\s+/)
      return { samples: Number(svg.getAttribute('data-samples')), p50: points('p50'), p99: points('p99') }
    })
    expect(chart.samples).toBeGreaterThanOrEqual(3)
    expect(chart.p50).toHaveLength(chart.samples)
    expect(chart.p99).toHaveLength(chart.samples)

    // an outage: the page turns degraded, on memory, with the breaker open
    await request(baseUrl).post('/__test/outage').send({ mode: 'refuse' }).expect(200)
    await waitForStatus(page, 'degraded')
    // writes during the outage: a login, a new order (its invalidation), a re-read cached anew
    const during = request.agent(baseUrl)
    await during.post('/login').send({ user: 'coyote', tenant: 'acme' }).expect(201)
    await during.post('/api/orders').send({ item: 'giant magnet' }).expect(201)
    expect((await during.get('/api/orders').expect(200)).body.source).toBe('db')
    ;({ shown, snapshot } = await expectPageShowsEndpoints(page))
    expectTexts(shown, snapshot)
    expect(snapshot.metrics.journalDepth).toBeGreaterThan(0)
    expect(snapshot.metrics.memory.fallbackBytes).toBeGreaterThan(0)
    expect(shown.values).toMatchObject({ status: 'degraded', mode: 'memory', breaker: 'open' })
    expect(shown.texts.mode).toBe('Memory (in-process store)')
    const depth = snapshot.metrics.journalDepth
    expect(shown.texts['journal-depth']).toBe(`${depth} operation${depth === 1 ? '' : 's'} waiting for replay`)
    await expect(page.getByRole('status').textContent()).resolves.toMatch(/Degraded\s*Serving from memory/)

    // a phone: nothing wider than 375 px, in the state with the most text on the page
    await page.setViewportSize({ width: 375, height: 812 })
    await page.waitForFunction((n) => Number(document.body.dataset.polls) >= n, shown.polls + 1, { polling: 50 })
    await expectNoHorizontalScroll(page)
    await page.screenshot({ path: phoneShot, fullPage: true })

    // recovery: the journal is replayed, the page turns healthy again
    await request(baseUrl).post('/__test/recover').expect(200)
    await waitForStatus(page, 'healthy')
    ;({ shown, snapshot } = await expectPageShowsEndpoints(page))
    expectTexts(shown, snapshot)
    expect(shown.values).toMatchObject({
      status: 'healthy',
      mode: 'redis',
      breaker: 'closed',
      'journal-depth': '0',
      'fallback-activations': '1',
    })
    await expect(page.getByRole('status').textContent()).resolves.toMatch(/Healthy\s*Serving from Redis since/)
    await expectNoHorizontalScroll(page)

    await page.setViewportSize({ width: 1280, height: 900 })
    await page.screenshot({ path: desktopShot, fullPage: true })
    await browser.close()
    browser = null
    const browserSeconds = (Date.now() - browserStarted) / 1000

    expect(problems).toEqual([])
    expect(fs.statSync(desktopShot).size).toBeGreaterThan(10_000)
    console.log(
      `status page screenshots: ${desktopShot} and ${phoneShot}; the browser part took ${browserSeconds.toFixed(1)} s`,
    )
  }, 60_000)
})
