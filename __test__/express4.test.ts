// The system handlers depend only on req/res: they work unchanged in Express 4.
import request from 'supertest'
import { createCacheManager, cacheHealthHandler, cacheMetricsHandler, CacheManager } from '..'
// eslint-disable-next-line @typescript-eslint/no-var-requires
const express4 = require('express4')

describe('system handlers in Express 4', () => {
  let cm: CacheManager
  beforeEach(() => {
    cm = createCacheManager({ url: 'memory://' })
  })
  afterEach(() => cm.close())

  function app() {
    const a = express4()
    a.get('/api/system/cache-health', cacheHealthHandler(cm))
    a.get('/api/system/cache-metrics', cacheMetricsHandler(cm))
    return a
  }

  it('serves health as JSON with 200, and 503 once closed', async () => {
    expect(require('express4/package.json').version).toMatch(/^4\./)
    const ok = await request(app()).get('/api/system/cache-health')
    expect(ok.status).toBe(200)
    expect(ok.body).toMatchObject({ status: 'healthy', mode: 'memory' })
    await cm.close()
    const closed = await request(app()).get('/api/system/cache-health')
    expect(closed.status).toBe(503)
    expect(closed.body.status).toBe('unhealthy')
  })

  it('serves metrics as JSON, and Prometheus text when asked for text/plain', async () => {
    await cm.setSession('s', 1)
    await cm.getSession('s')
    await cm.getSession('missing')
    const json = await request(app()).get('/api/system/cache-metrics').set('Accept', 'application/json')
    expect(json.status).toBe(200)
    expect(json.body.byType.session).toMatchObject({ hits: 1, misses: 1, sets: 1 })
    const text = await request(app()).get('/api/system/cache-metrics').set('Accept', 'text/plain')
    expect(text.status).toBe(200)
    expect(text.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/)
    expect(text.text).toMatch(/^ferrocache_cache_hits_total\{type="session"\} 1$/m)
    expect(text.text).toMatch(/^ferrocache_cache_misses_total\{type="session"\} 1$/m)
  })
})
