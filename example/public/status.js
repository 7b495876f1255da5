'use strict'
// The status page's script: polls the two system endpoints every second and shows
// what they answer. Every figure element carries `data-testid` and the raw value it
// shows in `data-value`; `body[data-polls]` counts the polls completed.
;(function statusPage() {
  const HEALTH_URL = '/api/system/cache-health'
  const METRICS_URL = '/api/system/cache-metrics'
  const POLL_MS = 1000
  const REQUEST_TIMEOUT_MS = 5000
  const HISTORY_MS = 5 * 60 * 1000
  // the chart's time axis grows by whole minutes with the history, up to HISTORY_MS
  const MIN_SPAN_MS = 60 * 1000
  const TOP_TENANTS = 5

  // chart geometry (SVG user units; the SVG scales to the card's width)
  const CHART = { width: 320, height: 150, left: 40, right: 34, top: 8, bottom: 20 }
  const PERCENTILES = ['p50', 'p95', 'p99']
  const SVG_NS = 'http://www.w3.org/2000/svg'

  /** Latency samples {t, p50, p95, p99} of the last HISTORY_MS, oldest first. */
  const history = []
  let polls = 0
  let lastStatusKey = ''

  const $ = (testid) => document.querySelector(`[data-testid="${testid}"]`)
  const byId = (id) => document.getElementById(id)

  // --- formatting ---------------------------------------------------------

  const count = (n) => n.toLocaleString('en-US')
  const operations = (n) => `${count(n)} operation${n === 1 ? '' : 's'}`
  const percent = (ratio) => `${(ratio * 100).toFixed(1)} %`

  function ms(value) {
    if (value >= 100) return `${value.toFixed(0)} ms`
    if (value >= 10) return `${value.toFixed(1)} ms`
    return `${value.toFixed(2)} ms`
  }

  function bytes(n) {
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
    let value = n
    let unit = 0
    while (value >= 1024 && unit < units.length - 1) {
      value /= 1024
      unit++
    }
    return unit === 0 ? `${n} B` : `${value.toFixed(1)} ${units[unit]}`
  }

  function duration(totalMs) {
    const s = Math.max(0, Math.floor(totalMs / 1000))
    if (s < 60) return `${s} s`
    const m = Math.floor(s / 60)
    if (m < 60) return `${m} min ${s % 60} s`
    const h = Math.floor(m / 60)
    if (h < 48) return `${h} h ${m % 60} min`
    return `${Math.floor(h / 24)} days`
  }

  function clock(date) {
    const sameDay = date.toDateString() === new Date().toDateString()
    const time = date.toLocaleTimeString('en-GB', { hour12: false })
    return sameDay ? time : `${date.toLocaleDateString('en-CA')} ${time}`
  }

  /** Sets an element's shown text and the raw value behind it. */
  function show(testid, value, text) {
    const el = $(testid)
    el.dataset.value = value === null || value === undefined ? '' : String(value)
    el.textContent = text
    return el
  }

  function fill(name, ratio) {
    const el = document.querySelector(`[data-fill="${name}"]`)
    const clamped = Number.isFinite(ratio) ? Math.min(1, Math.max(0, ratio)) : 0
    el.style.width = `${(clamped * 100).toFixed(2)}%`
  }

  // --- the repeated parts of the page, built once ----------------------------

  /** An element: h('span', { class: 'x' }, 'text', child, ...). */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag)
    for (const [name, value] of Object.entries(attrs)) el.setAttribute(name, value)
    el.append(...children)
    return el
  }

  /** A figure the script fills in: its text, and its raw value in data-value. */
  const figure = (tag, testid) => h(tag, { 'data-testid': testid, 'data-value': '' }, '–')

  /** One number of a `dl.stats`, with the legend key of its line or bar. */
  const stat = (testid, label, key) =>
    h(
      'div',
      {},
      h('dt', {}, h('span', { class: `key key-${key}`, 'aria-hidden': 'true' }), label),
      figure('dd', testid),
    )

  /** A labelled bar (`data-fill` name) with a figure at the right of its label and a line under it. */
  function meterRow({ label, hint, head, fillName, detail, detailClass }) {
    const title = hint ? [label, ' ', h('span', { class: 'muted small' }, hint)] : [label]
    return h(
      'div',
      { class: 'meter-row' },
      h('div', { class: 'meter-head' }, h('span', {}, ...title), head),
      h('div', { class: 'bar', 'aria-hidden': 'true' }, h('span', { class: 'fill', 'data-fill': fillName })),
      h('p', { class: detailClass }, ...detail),
    )
  }

  function build() {
    byId('latency-stats').replaceChildren(...PERCENTILES.map((p) => stat(`latency-${p}`, p, p)))
    byId('ratelimit-stats').replaceChildren(
      stat('ratelimit-allowed', 'Allowed', 'allowed'),
      stat('ratelimit-limited', 'Limited', 'limited'),
    )
    const hitRates = [
      ['session', 'Sessions'],
      ['query', 'Query results'],
      ['near', 'Near cache', '(answered in-process)'],
    ]
    byId('hit-rates').replaceChildren(
      ...hitRates.map(([kind, label, hint]) =>
        meterRow({
          label,
          hint,
          head: figure('strong', `hit-rate-${kind}`),
          fillName: `hit-rate-${kind}`,
          detail: [figure('span', `hits-${kind}`), ' hits, ', figure('span', `misses-${kind}`), ' misses'],
          detailClass: 'muted small',
        }),
      ),
    )
    const budgets = [
      ['near', 'Near cache', '', h('span', { class: 'small muted', 'data-testid': 'near-tracking', 'data-value': '' })],
      ['fallback', 'In-process store', '(fallback)', ''],
    ]
    byId('budgets').replaceChildren(
      ...budgets.map(([store, label, hint, head]) =>
        meterRow({
          label,
          hint,
          head,
          fillName: store,
          detail: [
            figure('span', `${store}-bytes`),
            ' of ',
            figure('span', `${store}-max-bytes`),
            ' ',
            h(
              'span',
              { class: 'muted' },
              '(',
              h('span', { 'data-testid': `${store}-percent` }, '–'),
              ', ',
              figure('span', `${store}-entries`),
              ' entries)',
            ),
          ],
          detailClass: 'small',
        }),
      ),
    )
  }

  // --- fetching -----------------------------------------------------------

  async function getJson(url) {
    const controller = new AbortController()
    const timer = setTimeout(() => controller.abort(), REQUEST_TIMEOUT_MS)
    try {
      const res = await fetch(url, {
        headers: { Accept: 'application/json' },
        cache: 'no-store',
        signal: controller.signal,
      })
      // cache-health answers 503 with the same JSON when the cache is unhealthy
      const body = await res.json()
      if (!res.ok && res.status !== 503) throw new Error(`${url}: HTTP ${res.status}`)
      return body
    } finally {
      clearTimeout(timer)
    }
  }

  async function poll() {
    try {
      const [health, metrics] = await Promise.all([getJson(HEALTH_URL), getJson(METRICS_URL)])
      render(health, metrics)
    } catch (err) {
      renderUnreachable(err)
    } finally {
      polls++
      document.body.dataset.polls = String(polls)
      setTimeout(poll, POLL_MS)
    }
  }

  // --- rendering ----------------------------------------------------------

  const STATUS_TEXT = { healthy: 'Healthy', degraded: 'Degraded', unhealthy: 'Unhealthy', unreachable: 'Unknown' }
  const STATUS_ICON = { healthy: '✓', degraded: '!', unhealthy: '✕', unreachable: '?' }

  function setStatus(state, sentence, note) {
    const banner = $('banner')
    banner.dataset.state = state
    const badge = $('status')
    badge.dataset.value = state === 'unreachable' ? '' : state
    // only touch the live region when something changed, so screen readers hear transitions only
    const key = `${state}|${sentence}`
    if (key !== lastStatusKey) {
      lastStatusKey = key
      badge.querySelector('.badge-icon').textContent = STATUS_ICON[state]
      badge.querySelector('.badge-text').textContent = STATUS_TEXT[state]
      $('status-text').textContent = sentence
    }
    $('status-note').textContent = note
  }

  function render(health, metrics) {
    const now = Date.now()
    document.querySelector('main').dataset.stale = 'false'
    const updated = $('updated')
    updated.dateTime = new Date(now).toISOString()
    updated.textContent = clock(new Date(now))

    if (typeof health.mode === 'string') {
      renderStatus(health, metrics)
      renderServing(health, metrics, now)
    } else {
      // the handler's own failure (health() threw or timed out): {status: 'unhealthy', error}
      setStatus('unhealthy', `The health check failed: ${health.error ?? 'no reason given'}.`, '')
    }
    renderLatency(metrics, now)
    renderHits(metrics)
    renderMemory(metrics)
    renderRateLimit(metrics)
    renderTenants(metrics)
  }

  /** `url: 'memory://'`: no Redis at all, the in-process store by configuration. */
  const memoryOnly = (health) => health.redis.url === 'memory://'

  function renderStatus(health, metrics) {
    const since = clock(new Date(health.modeSince))
    const failover = health.failover ?? {}
    let sentence
    if (health.status === 'unhealthy') {
      sentence = 'The cache cannot serve calls (closed, or Redis down with the fallback off).'
    } else if (memoryOnly(health)) {
      sentence = `Serving from memory:// (the in-process store, as configured) since ${since}.`
    } else if (health.mode === 'memory') {
      sentence = `Serving from memory (the in-process store) since ${since}.`
    } else if (failover.writesRefused) {
      sentence = 'Serving reads from Redis; Redis refuses writes, kept in memory and journaled.'
    } else {
      sentence = `Serving from Redis since ${since}.`
    }
    let note = ''
    if (health.mode === 'memory' && health.status === 'degraded') {
      note =
        metrics.journalDepth > 0
          ? `${operations(metrics.journalDepth)} in the outage journal, replayed to Redis once it answers.`
          : 'Writes made now are journaled and replayed to Redis once it answers.'
    }
    setStatus(health.status, sentence, note)
  }

  function renderServing(health, metrics, now) {
    const failover = health.failover ?? {}
    const modeText = memoryOnly(health) ? 'memory:// (in-process store)' : 'Memory (in-process store)'
    show('mode', health.mode, health.mode === 'redis' ? 'Redis' : modeText)
    const since = show('mode-since', health.modeSince, clock(new Date(health.modeSince)))
    since.dateTime = health.modeSince
    $('mode-for').textContent = `(for ${duration(now - Date.parse(health.modeSince))})`
    const breakerText = {
      closed: 'Closed: calls go to Redis',
      open: 'Open: calls skip Redis',
      'half-open': 'Half-open: probing Redis',
    }
    const noRedis = memoryOnly(health) ? 'n/a (no Redis configured)' : null
    show('breaker', failover.breaker ?? null, noRedis ?? breakerText[failover.breaker] ?? 'n/a')
    const journal = show(
      'journal-depth',
      metrics.journalDepth,
      metrics.journalDepth === 0 ? 'empty' : `${operations(metrics.journalDepth)} waiting for replay`,
    )
    journal.dataset.attention = String(metrics.journalDepth > 0)
    show(
      'fallback-activations',
      metrics.fallbackActivations,
      `${count(metrics.fallbackActivations)} (${duration(metrics.memoryModeMs)} in memory mode)`,
    )
    const ping = health.redis.latencyMs
    show('ping-ms', ping, ping === null ? (noRedis ?? 'no answer') : ms(ping))
    show('last-error', health.redis.lastError, health.redis.lastError ?? 'none')
  }

  function renderLatency(metrics, now) {
    const l = metrics.latencyMs
    for (const p of [...PERCENTILES, 'max']) show(`latency-${p}`, l[p], ms(l[p]))
    history.push({ t: now, p50: l.p50, p95: l.p95, p99: l.p99 })
    while (history.length > 0 && history[0].t < now - HISTORY_MS) history.shift()
    drawChart(now)
  }

  /** A round upper bound for the chart: 1, 2 or 5 times a power of ten, at least `value`. */
  function niceCeil(value) {
    const power = 10 ** Math.floor(Math.log10(value))
    for (const step of [1, 2, 5, 10]) if (step * power >= value) return step * power
    return 10 * power
  }

  function svg(name, attrs, text) {
    const el = document.createElementNS(SVG_NS, name)
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v))
    if (text !== undefined) el.textContent = text
    return el
  }

  function drawChart(now) {
    const chart = $('latency-chart')
    const w = CHART.width - CHART.left - CHART.right
    const h = CHART.height - CHART.top - CHART.bottom
    const top = niceCeil(Math.max(0.05, ...history.map((s) => s.p99)) * 1.1)
    const span = Math.min(HISTORY_MS, Math.max(MIN_SPAN_MS, Math.ceil((now - history[0].t) / 60_000) * 60_000))
    const x = (t) => CHART.left + ((t - (now - span)) / span) * w
    const y = (v) => CHART.top + h - (Math.min(v, top) / top) * h

    const grid = chart.querySelector('.grid-lines')
    grid.replaceChildren()
    for (const fraction of [0, 0.5, 1]) {
      const gy = CHART.top + h - fraction * h
      grid.append(svg('line', { x1: CHART.left, x2: CHART.left + w, y1: gy, y2: gy }))
      grid.append(svg('text', { x: CHART.left - 4, y: gy + 3, 'text-anchor': 'end' }, ms(top * fraction)))
    }
    const axisY = CHART.height - 5
    const ago = (t) => (t < 60_000 ? `−${t / 1000} s` : `−${Number((t / 60_000).toFixed(1))} min`)
    grid.append(svg('text', { x: CHART.left, y: axisY }, ago(span)))
    grid.append(svg('text', { x: CHART.left + w / 2, y: axisY, 'text-anchor': 'middle' }, ago(span / 2)))
    grid.append(svg('text', { x: CHART.left + w, y: axisY, 'text-anchor': 'end' }, 'now'))

    const labels = chart.querySelector('.end-labels')
    labels.replaceChildren()
    const last = history[history.length - 1]
    // each line is labelled at its right end; p50 <= p95 <= p99, so placing them from the
    // lowest up, each at least 10 units above the previous one, keeps them apart
    let previousLabelY = Infinity
    for (const p of PERCENTILES) {
      const points = history.map((s) => `${x(s.t).toFixed(1)},${y(s[p]).toFixed(1)}`).join(' ')
      chart.querySelector(`.line-${p}`).setAttribute('points', points)
      const ly = Math.max(Math.min(y(last[p]) + 3, previousLabelY - 10), CHART.top + 3)
      previousLabelY = ly
      labels.append(svg('text', { x: CHART.left + w + 4, y: ly }, p))
    }
    chart.dataset.samples = String(history.length)
    chart.querySelector('desc').textContent =
      `${history.length} samples over the last ${duration(now - history[0].t)}. ` +
      `Latest: p50 ${ms(last.p50)}, p95 ${ms(last.p95)}, p99 ${ms(last.p99)}.`
  }

  function renderHits(metrics) {
    const byKind = { session: metrics.byType.session, query: metrics.byType.query, near: metrics.nearCache }
    for (const [type, stats] of Object.entries(byKind)) {
      const reads = stats.hits + stats.misses
      show(`hit-rate-${type}`, stats.hitRate, reads === 0 ? 'no reads' : percent(stats.hitRate))
      show(`hits-${type}`, stats.hits, count(stats.hits))
      show(`misses-${type}`, stats.misses, count(stats.misses))
      fill(`hit-rate-${type}`, stats.hitRate)
    }
  }

  function renderMemory(metrics) {
    const near = metrics.nearCache
    show('near-tracking', near.tracking, near.enabled ? `tracking ${near.tracking}` : 'off')
    show('near-bytes', near.bytes, bytes(near.bytes))
    show('near-max-bytes', near.maxBytes, bytes(near.maxBytes))
    show('near-entries', near.entries, count(near.entries))
    $('near-percent').textContent = near.maxBytes > 0 ? percent(near.bytes / near.maxBytes) : 'n/a'
    fill('near', near.maxBytes > 0 ? near.bytes / near.maxBytes : 0)

    const mem = metrics.memory
    show('fallback-bytes', mem.fallbackBytes, bytes(mem.fallbackBytes))
    show('fallback-max-bytes', mem.fallbackMaxBytes, bytes(mem.fallbackMaxBytes))
    show('fallback-entries', mem.fallbackEntries, count(mem.fallbackEntries))
    $('fallback-percent').textContent =
      mem.fallbackMaxBytes > 0 ? percent(mem.fallbackBytes / mem.fallbackMaxBytes) : 'n/a'
    fill('fallback', mem.fallbackMaxBytes > 0 ? mem.fallbackBytes / mem.fallbackMaxBytes : 0)
  }

  function renderRateLimit(metrics) {
    const r = metrics.rateLimit
    const checks = r.allowed + r.limited
    show('ratelimit-allowed', r.allowed, count(r.allowed))
    show('ratelimit-limited', r.limited, count(r.limited))
    $('ratelimit-limited-share').textContent = checks === 0 ? 'None' : percent(r.limited / checks)
    show('ratelimit-refused-locally', r.refusedLocally, count(r.refusedLocally))
    show('ratelimit-local-decisions', r.localDecisions, count(r.localDecisions))
    fill('allowed', checks === 0 ? 0 : r.allowed / checks)
    fill('limited', checks === 0 ? 0 : r.limited / checks)
  }

  /** The tenants with the most reads (hits + misses), ties by id; at most TOP_TENANTS. */
  function topTenants(list) {
    return list
      .filter((t) => t.hits + t.misses > 0)
      .sort((a, b) => b.hits + b.misses - (a.hits + a.misses) || (a.tenantId < b.tenantId ? -1 : 1))
      .slice(0, TOP_TENANTS)
  }

  function cell(field, value, text, numeric) {
    const td = document.createElement('td')
    td.dataset.field = field
    td.dataset.value = String(value)
    td.textContent = text
    if (numeric) td.className = 'num'
    return td
  }

  function renderTenants(metrics) {
    const tenants = metrics.tenants
    show('tenants-tracked', tenants.tracked, count(tenants.tracked))
    const rows = topTenants(tenants.list).map((t) => {
      const tr = document.createElement('tr')
      tr.dataset.testid = 'tenant-row'
      tr.dataset.tenant = t.tenantId
      const name = document.createElement('th')
      name.scope = 'row'
      name.textContent = t.tenantId
      tr.append(
        name,
        cell('reads', t.hits + t.misses, count(t.hits + t.misses), true),
        cell('hitRate', t.hitRate, percent(t.hitRate), true),
        cell('rateLimitLimited', t.rateLimitLimited, count(t.rateLimitLimited), true),
      )
      return tr
    })
    $('tenants').replaceChildren(...rows)
    $('tenants-empty').hidden = rows.length > 0
  }

  function renderUnreachable(err) {
    document.querySelector('main').dataset.stale = 'true'
    const reason = err && err.name === 'AbortError' ? 'no answer within 5 s' : String((err && err.message) || err)
    setStatus(
      'unreachable',
      'The status endpoints did not answer; the figures below are the last ones received.',
      `${reason}. Retrying every second.`,
    )
  }

  build()
  poll()
})()
