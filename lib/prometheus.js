'use strict'
// Prometheus exposition of a ferrocache `metrics()` snapshot.
//
// - toPrometheusText(metrics, options?)  the text format 0.0.4, for a /metrics endpoint
// - registerPrometheus(manager, registry?, options?)  families in a prom-client
//   Registry, read from `manager.metrics()` at scrape time
//
// Both produce the same families from the same code (FAMILIES below).

/** The Content-Type of the text format this module writes. */
const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8'

const { invalid } = require('./errors.js')
const { checkManager, describe } = require('./validate.js')
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/
// Label names the families use themselves (and `le`, which histograms reserve).
const RESERVED_LABELS = new Set(['type', 'mode', 'tenant', 'le', 'quantile'])
const TYPES = ['session', 'query']
const MODES = ['redis', 'memory']

/** A finite number, or undefined (the sample is then left out). */
function num(value) {
  return typeof value === 'number' && Number.isFinite(value) ? value : undefined
}

function obj(value) {
  return typeof value === 'object' && value !== null ? value : undefined
}

/** ms -> s without binary noise (0.25 / 1000 is 0.00025, not 0.00025000000000000006). */
function msToSeconds(ms) {
  const v = num(ms)
  return v === undefined ? undefined : Number((v / 1000).toPrecision(15))
}

function perType(field) {
  return (m) => {
    const byType = obj(m.byType)
    return TYPES.map((type) => ({
      labels: [['type', type]],
      value: num(byType && obj(byType[type]) ? byType[type][field] : undefined),
    }))
  }
}

function scalar(read) {
  return (m) => [{ labels: [], value: read(m) }]
}

/** One sample per tracked tenant (bounded by tenantMetricsLimit). */
function perTenant(read) {
  return (m) => {
    const list = obj(m.tenants) && Array.isArray(m.tenants.list) ? m.tenants.list : []
    return list
      .filter((t) => obj(t) && typeof t.tenantId === 'string')
      .map((t) => ({ labels: [['tenant', t.tenantId]], value: num(read(t)) }))
  }
}

function nearCache(field) {
  return scalar((m) => num(obj(m.nearCache) && m.nearCache[field]))
}

function rateLimit(field) {
  return scalar((m) => num(obj(m.rateLimit) && m.rateLimit[field]))
}

function untracked(field) {
  return scalar((m) => num(obj(m.tenants) && obj(m.tenants.other) && m.tenants.other[field]))
}

// Each family: name, help, type, and `samples(snapshot)` -> [{suffix?, labels: [[name, value]], value}].
// A sample whose value is undefined (a field the snapshot lacks) is left out.
const FAMILIES = [
  {
    name: 'ferrocache_cache_hits_total',
    type: 'counter',
    help: 'Cache reads that found an entry, by entry type.',
    labelNames: ['type'],
    samples: perType('hits'),
  },
  {
    name: 'ferrocache_cache_misses_total',
    type: 'counter',
    help: 'Cache reads that found no entry, by entry type.',
    labelNames: ['type'],
    samples: perType('misses'),
  },
  {
    name: 'ferrocache_cache_sets_total',
    type: 'counter',
    help: 'Successful cache writes, by entry type.',
    labelNames: ['type'],
    samples: perType('sets'),
  },
  {
    name: 'ferrocache_cache_deletes_total',
    type: 'counter',
    help: 'Successful cache deletes (whether or not the entry existed), by entry type.',
    labelNames: ['type'],
    samples: perType('deletes'),
  },
  {
    name: 'ferrocache_invalidations_total',
    type: 'counter',
    help: 'invalidateCache/invalidateAll calls.',
    samples: scalar((m) => num(m.invalidations)),
  },
  {
    name: 'ferrocache_invalidated_entries_total',
    type: 'counter',
    help: 'Query entries removed by invalidateCache/invalidateAll.',
    samples: scalar((m) => num(m.invalidatedEntries)),
  },
  {
    name: 'ferrocache_redis_errors_total',
    type: 'counter',
    help: 'Failed Redis calls (outages and error replies), each counted once whatever its retries.',
    samples: scalar((m) => num(m.errors)),
  },
  {
    name: 'ferrocache_redis_timeouts_total',
    type: 'counter',
    help: 'Failed Redis calls that ran out of their time budget.',
    samples: scalar((m) => num(m.timeouts)),
  },
  {
    name: 'ferrocache_redis_write_refusals_total',
    type: 'counter',
    help: 'Writes Redis refused for capacity or role (OOM, READONLY, ...), kept in memory and journaled instead.',
    samples: scalar((m) => num(m.writeRefusals)),
  },
  {
    name: 'ferrocache_fallback_activations_total',
    type: 'counter',
    help: 'Times the cache switched to the in-process store (memory mode).',
    samples: scalar((m) => num(m.fallbackActivations)),
  },
  {
    name: 'ferrocache_memory_mode_seconds_total',
    type: 'counter',
    help: 'Time spent in memory mode, the current outage included.',
    samples: scalar((m) => msToSeconds(m.memoryModeMs)),
  },
  {
    name: 'ferrocache_mode',
    type: 'gauge',
    help: 'The store serving calls now: 1 for the current mode, 0 for the other.',
    labelNames: ['mode'],
    samples: (m) =>
      MODES.includes(m.mode) ? MODES.map((mode) => ({ labels: [['mode', mode]], value: m.mode === mode ? 1 : 0 })) : [],
  },
  {
    name: 'ferrocache_journal_depth',
    type: 'gauge',
    help: 'Operations made during an outage, waiting for replay to Redis.',
    samples: scalar((m) => num(m.journalDepth)),
  },
  {
    name: 'ferrocache_fallback_bytes',
    type: 'gauge',
    help: 'Bytes held by the in-process store.',
    samples: scalar((m) => num(obj(m.memory) && m.memory.fallbackBytes)),
  },
  {
    name: 'ferrocache_fallback_entries',
    type: 'gauge',
    help: 'Entries held by the in-process store.',
    samples: scalar((m) => num(obj(m.memory) && m.memory.fallbackEntries)),
  },
  {
    name: 'ferrocache_fallback_max_bytes',
    type: 'gauge',
    help: 'Capacity of the in-process store in bytes.',
    samples: scalar((m) => num(obj(m.memory) && m.memory.fallbackMaxBytes)),
  },
  {
    name: 'ferrocache_near_cache_hits_total',
    type: 'counter',
    help: 'Reads the near cache (the in-process L1 over Redis) answered.',
    samples: nearCache('hits'),
  },
  {
    name: 'ferrocache_near_cache_misses_total',
    type: 'counter',
    help: 'Reads the near cache could not answer (they went to Redis).',
    samples: nearCache('misses'),
  },
  {
    name: 'ferrocache_near_cache_invalidations_total',
    type: 'counter',
    help: 'Keys Redis told the near cache changed (a write, delete or expiry by any client; a flush counts once).',
    samples: nearCache('invalidations'),
  },
  {
    name: 'ferrocache_near_cache_fail_safe_hits_total',
    type: 'counter',
    help: 'Reads answered from the near cache during an outage (within nearCache.failSafeMs).',
    samples: nearCache('failSafeHits'),
  },
  {
    name: 'ferrocache_near_cache_tracking_epochs_total',
    type: 'counter',
    help: 'Times the near cache subscribed to Redis invalidations (once per connection, and per master on a Cluster).',
    samples: nearCache('trackingEpochs'),
  },
  {
    name: 'ferrocache_near_cache_tracking_active',
    type: 'gauge',
    help: 'Whether the near cache receives invalidations and serves its entries: 1 or 0.',
    samples: scalar((m) =>
      obj(m.nearCache) && typeof m.nearCache.tracking === 'string'
        ? Number(m.nearCache.tracking === 'active')
        : undefined,
    ),
  },
  {
    name: 'ferrocache_near_cache_bytes',
    type: 'gauge',
    help: 'Bytes held by the near cache.',
    samples: nearCache('bytes'),
  },
  {
    name: 'ferrocache_near_cache_entries',
    type: 'gauge',
    help: 'Entries held by the near cache.',
    samples: nearCache('entries'),
  },
  {
    name: 'ferrocache_near_cache_max_bytes',
    type: 'gauge',
    help: 'Capacity of the near cache in bytes (nearCache.maxBytes; 0 when it is off).',
    samples: nearCache('maxBytes'),
  },
  {
    name: 'ferrocache_rate_limit_allowed_total',
    type: 'counter',
    help: 'Rate-limit checks allowed.',
    samples: rateLimit('allowed'),
  },
  {
    name: 'ferrocache_rate_limit_limited_total',
    type: 'counter',
    help: 'Rate-limit checks refused (by Redis, in-process or by the local limiter).',
    samples: rateLimit('limited'),
  },
  {
    name: 'ferrocache_rate_limit_refused_locally_total',
    type: 'counter',
    help: 'Rate-limit checks refused in-process without a Redis call (a key known to be over its limit).',
    samples: rateLimit('refusedLocally'),
  },
  {
    name: 'ferrocache_rate_limit_local_decisions_total',
    type: 'counter',
    help: "Rate-limit checks decided by the local limiter with this process's share (Redis down, or memory://).",
    samples: rateLimit('localDecisions'),
  },
  {
    name: 'ferrocache_rate_limit_processes',
    type: 'gauge',
    help: 'Live processes sharing the rate limits, as Redis last counted them (0 before the first check).',
    samples: rateLimit('processes'),
  },
  {
    name: 'ferrocache_rate_limit_pending_sync',
    type: 'gauge',
    help: 'Rate-limited keys whose local consumption waits to be counted into Redis.',
    samples: rateLimit('pendingSync'),
  },
  {
    name: 'ferrocache_hit_ratio',
    type: 'gauge',
    help: 'hits / (hits + misses) since the cache was created, by entry type; 0 without reads.',
    aggregator: 'average', // prom-client cluster aggregation: a ratio is not summed over workers
    labelNames: ['type'],
    samples: perType('hitRate'),
  },
  {
    name: 'ferrocache_tenant_hits_total',
    type: 'counter',
    help: 'Cache reads of one tenant that found an entry (tenants within tenantMetricsLimit).',
    labelNames: ['tenant'],
    perTenant: true,
    samples: perTenant((t) => t.hits),
  },
  {
    name: 'ferrocache_tenant_misses_total',
    type: 'counter',
    help: 'Cache reads of one tenant that found no entry (tenants within tenantMetricsLimit).',
    labelNames: ['tenant'],
    perTenant: true,
    samples: perTenant((t) => t.misses),
  },
  {
    name: 'ferrocache_tenant_invalidated_entries_total',
    type: 'counter',
    help: "Entries removed by one tenant's invalidations (tenants within tenantMetricsLimit).",
    labelNames: ['tenant'],
    perTenant: true,
    samples: perTenant((t) => t.invalidated),
  },
  {
    name: 'ferrocache_tenant_fallback_bytes',
    type: 'gauge',
    help: 'Bytes one tenant holds in the in-process store (tenants within tenantMetricsLimit).',
    labelNames: ['tenant'],
    perTenant: true,
    samples: perTenant((t) => obj(t.memory) && t.memory.fallbackBytes),
  },
  {
    name: 'ferrocache_tenant_near_cache_bytes',
    type: 'gauge',
    help: 'Bytes one tenant holds in the near cache (tenants within tenantMetricsLimit).',
    labelNames: ['tenant'],
    perTenant: true,
    samples: perTenant((t) => obj(t.memory) && t.memory.nearCacheBytes),
  },
  {
    name: 'ferrocache_tenant_rate_limit_allowed_total',
    type: 'counter',
    help: 'Rate-limit checks of one tenant allowed (tenants within tenantMetricsLimit).',
    labelNames: ['tenant'],
    perTenant: true,
    samples: perTenant((t) => t.rateLimitAllowed),
  },
  {
    name: 'ferrocache_tenant_rate_limit_limited_total',
    type: 'counter',
    help: 'Rate-limit checks of one tenant refused (tenants within tenantMetricsLimit).',
    labelNames: ['tenant'],
    perTenant: true,
    samples: perTenant((t) => t.rateLimitLimited),
  },
  {
    name: 'ferrocache_tenants_tracked',
    type: 'gauge',
    help: 'Tenants with their own ferrocache_tenant_* series (at most tenantMetricsLimit).',
    samples: scalar((m) => num(obj(m.tenants) && m.tenants.tracked)),
  },
  {
    name: 'ferrocache_untracked_tenant_hits_total',
    type: 'counter',
    help: 'Cache reads that found an entry, of all tenants past tenantMetricsLimit together.',
    samples: untracked('hits'),
  },
  {
    name: 'ferrocache_untracked_tenant_misses_total',
    type: 'counter',
    help: 'Cache reads that found no entry, of all tenants past tenantMetricsLimit together.',
    samples: untracked('misses'),
  },
  {
    name: 'ferrocache_untracked_tenant_invalidated_entries_total',
    type: 'counter',
    help: 'Entries removed by invalidations of all tenants past tenantMetricsLimit together.',
    samples: untracked('invalidated'),
  },
  {
    name: 'ferrocache_redis_latency_seconds',
    type: 'histogram',
    help: 'Round-trip time of successful Redis calls.',
    samples: histogramSamples,
  },
]
for (const family of FAMILIES) family.labelNames = Object.freeze(family.labelNames ?? [])

/**
 * The latency histogram in seconds. A snapshot taken while calls complete can
 * read the bucket counters a little after the total: the output is kept a valid
 * histogram anyway (buckets non-decreasing, +Inf == _count >= every bucket).
 */
function histogramSamples(m) {
  const h = obj(m.latencyHistogram)
  if (!h || !Array.isArray(h.buckets)) return []
  const count = num(h.count)
  const sum = msToSeconds(h.sumMs)
  if (count === undefined || sum === undefined) return []
  const bounds = []
  for (const b of h.buckets) {
    const le = msToSeconds(obj(b) ? b.le : undefined)
    const c = num(obj(b) ? b.count : undefined)
    if (le === undefined || c === undefined) continue
    bounds.push({ le, count: c })
  }
  bounds.sort((a, b) => a.le - b.le)
  const out = []
  let running = 0
  let lastLe = -Infinity
  for (const { le, count: c } of bounds) {
    if (le === lastLe) continue // duplicate bound: keep the first
    lastLe = le
    running = Math.max(running, c)
    out.push({ suffix: '_bucket', labels: [['le', formatValue(le)]], value: running })
  }
  const total = Math.max(count, running)
  out.push({ suffix: '_bucket', labels: [['le', '+Inf']], value: total })
  out.push({ suffix: '_sum', labels: [], value: sum })
  out.push({ suffix: '_count', labels: [], value: total })
  return out
}

/** A sample value as the text format writes it (Go's float syntax). */
function formatValue(v) {
  if (Number.isNaN(v)) return 'NaN'
  if (v === Infinity) return '+Inf'
  if (v === -Infinity) return '-Inf'
  if (Object.is(v, -0)) return '0'
  return String(v)
}

function escapeLabelValue(s) {
  return s.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"')
}

function escapeHelp(s) {
  return s.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')
}

/**
 * Validates `labels` (constant labels for every sample) and returns them as
 * [name, value] pairs. Throws a TypeError with code ERR_INVALID_ARG.
 */
function normalizeLabels(labels, where = 'options.labels') {
  if (labels === undefined || labels === null) return []
  if (typeof labels !== 'object' || Array.isArray(labels)) {
    throw invalid(`${where} must be an object of label names to values, got ${describe(labels)}`)
  }
  const pairs = []
  for (const name of Object.keys(labels)) {
    if (!LABEL_NAME.test(name)) {
      throw invalid(`${where}: ${JSON.stringify(name)} is not a valid Prometheus label name (${LABEL_NAME})`)
    }
    if (name.startsWith('__'))
      throw invalid(`${where}: label names starting with "__" are reserved, got ${JSON.stringify(name)}`)
    if (RESERVED_LABELS.has(name)) {
      throw invalid(`${where}: label name ${JSON.stringify(name)} is used by ferrocache's own metrics`)
    }
    let value = labels[name]
    if (typeof value === 'number' || typeof value === 'boolean') value = String(value)
    if (typeof value !== 'string') {
      throw invalid(`${where}.${name} must be a string (or number/boolean), got ${describe(value)}`)
    }
    if (!value.isWellFormed()) throw invalid(`${where}.${name} contains a lone surrogate (not well-formed UTF-16)`)
    pairs.push([name, value])
  }
  return pairs
}

function checkOptions(options, fn) {
  if (options === undefined || options === null) return {}
  if (typeof options !== 'object' || Array.isArray(options)) {
    throw invalid(`${fn}: options must be an object, got ${describe(options)}`)
  }
  return options
}

function checkSnapshot(metrics) {
  if (typeof metrics !== 'object' || metrics === null || Array.isArray(metrics)) {
    throw invalid(`toPrometheusText: metrics must be a metrics() snapshot object, got ${describe(metrics)}`)
  }
}

/** The samples of one family for one snapshot, with the constant labels after the family's own (`le` last). */
function familySamples(family, snapshot, constLabels) {
  const out = []
  for (const s of family.samples(snapshot)) {
    if (s.value === undefined) continue
    const le = s.labels.length > 0 && s.labels[s.labels.length - 1][0] === 'le' ? s.labels[s.labels.length - 1] : null
    const own = le ? s.labels.slice(0, -1) : s.labels
    const labels = le ? [...own, ...constLabels, le] : [...own, ...constLabels]
    out.push({ name: family.name + (s.suffix ?? ''), suffix: s.suffix ?? '', labels, value: s.value })
  }
  return out
}

/** Text format 0.0.4 of the given sources ({snapshot, labels: [[name, value]]}). */
function renderText(sources) {
  let text = ''
  for (const family of FAMILIES) {
    let lines = ''
    for (const { snapshot, labels } of sources) {
      for (const s of familySamples(family, snapshot, labels)) {
        const labelText = s.labels.length
          ? `{${s.labels.map(([k, v]) => `${k}="${escapeLabelValue(v)}"`).join(',')}}`
          : ''
        lines += `${s.name}${labelText} ${formatValue(s.value)}\n`
      }
    }
    // the per-tenant families have no sample until a tenant is counted: listed
    // anyway when the snapshot has `tenants`, as prom-client lists them
    if (lines === '' && !(family.perTenant && sources.some((s) => obj(s.snapshot.tenants)))) continue
    text += `# HELP ${family.name} ${escapeHelp(family.help)}\n# TYPE ${family.name} ${family.type}\n${lines}`
  }
  return text
}

/**
 * The Prometheus text exposition (format 0.0.4) of a `metrics()` snapshot.
 * `options.labels` adds constant labels (e.g. `{ manager: 'main' }`) to every sample.
 * Samples (and families) of fields the snapshot lacks are left out; the per-tenant
 * families are listed without samples while no tenant is tracked. Serve it with
 * `PROMETHEUS_CONTENT_TYPE`.
 */
function toPrometheusText(metrics, options) {
  checkSnapshot(metrics)
  const opts = checkOptions(options, 'toPrometheusText')
  return renderText([{ snapshot: metrics, labels: normalizeLabels(opts.labels) }])
}

// ---------------------------------------------------------------------------
// prom-client

function loadPromClient() {
  try {
    return require('prom-client')
  } catch (cause) {
    const err = invalid(
      cause && cause.code === 'MODULE_NOT_FOUND'
        ? "registerPrometheus needs the 'prom-client' package (npm install prom-client)"
        : `registerPrometheus: 'prom-client' could not be loaded: ${cause && cause.message}`,
    )
    err.cause = cause
    throw err
  }
}

function isRegistry(registry) {
  return (
    typeof registry === 'object' &&
    registry !== null &&
    typeof registry.registerMetric === 'function' &&
    typeof registry.getSingleMetric === 'function' &&
    typeof registry.removeSingleMetric === 'function'
  )
}

function labelKey(labels) {
  return JSON.stringify([...labels].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)))
}

/** All ferrocache sources registered in one registry, and the family objects they share. */
class Collector {
  constructor(registry) {
    this.registry = registry
    /** @type {Set<{manager: any, labels: Array<[string, string]>, key: string, snap?: object}>} */
    this.sources = new Set()
    /** @type {Array<[string, FamilyMetric]>} family name -> its metric object */
    this.metrics = FAMILIES.map((family) => [family.name, new FamilyMetric(family, this)])
  }

  // One metrics() call per source per scrape: prom-client calls every family's
  // get() in the same synchronous pass, so the snapshot is kept until the next microtask.
  snapshot(source) {
    if (source.snap === undefined) {
      const snap = source.manager.metrics()
      source.snap = snap
      queueMicrotask(() => {
        source.snap = undefined
      })
    }
    return source.snap
  }
}

/**
 * One family as a prom-client metric: `get()` returns what prom-client's own
 * Counter/Gauge/Histogram return ({name, help, type, values, aggregator}), read
 * from `manager.metrics()` at scrape time. `reset()` does nothing: the counters
 * belong to the cache, not to the registry.
 */
class FamilyMetric {
  #family
  #collector

  constructor(family, collector) {
    this.#family = family
    this.#collector = collector
    this.name = family.name
    this.help = family.help
    this.type = family.type
    this.labelNames = [...family.labelNames]
    this.aggregator = family.aggregator ?? 'sum'
  }

  async get() {
    const values = []
    for (const source of this.#collector.sources) {
      const snapshot = this.#collector.snapshot(source)
      for (const s of familySamples(this.#family, snapshot, source.labels)) {
        const value = { labels: Object.fromEntries(s.labels), value: s.value }
        // counters and gauges: no metricName, so an OpenMetrics registry can rename counters
        if (this.type === 'histogram') value.metricName = this.name + s.suffix
        values.push(value)
      }
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator }
  }

  reset() {}
}

/** registry -> Collector (several managers can share a registry, with distinct labels). */
const collectors = new WeakMap()

/**
 * Registers ferrocache's families in a prom-client registry (default: prom-client's
 * global `register`); they read `manager.metrics()` at scrape time. Several managers
 * may share a registry if each has its own `options.labels`. Returns a handle whose
 * `unregister()` removes this manager (and the families, once no manager is left).
 */
function registerPrometheus(manager, registry, options) {
  const promClient = loadPromClient()
  manager = checkManager('registerPrometheus', manager, ['metrics']) ?? require('./manager.js').cacheManager
  if (registry === undefined) registry = promClient.register
  if (!isRegistry(registry)) {
    throw invalid(
      `registerPrometheus: registry must be a prom-client Registry (registerMetric, getSingleMetric, removeSingleMetric), got ${describe(registry)}`,
    )
  }
  const opts = checkOptions(options, 'registerPrometheus')
  const labels = normalizeLabels(opts.labels)

  let collector = collectors.get(registry)
  if (!collector) collector = new Collector(registry)
  const key = labelKey(labels)
  for (const source of collector.sources) {
    if (source.key === key) {
      throw invalid(
        `registerPrometheus: a ferrocache manager with labels ${key} is already registered in this registry; give each manager distinct options.labels`,
      )
    }
  }
  // Check every name before registering any, so a conflict changes nothing.
  // (Lookups use the family's name: an OpenMetrics scrape renames prom-client counters in place.)
  for (const [name, metric] of collector.metrics) {
    const current = registry.getSingleMetric(name)
    if (current !== undefined && current !== null && current !== metric) {
      throw invalid(`registerPrometheus: this registry already has a metric named ${name} that is not ferrocache's`)
    }
  }
  for (const [name, metric] of collector.metrics) {
    if (registry.getSingleMetric(name) !== metric) registry.registerMetric(metric)
  }
  collectors.set(registry, collector)
  const source = { manager, labels, key, snap: undefined }
  collector.sources.add(source)

  let registered = true
  return {
    registry,
    metricNames: FAMILIES.map((f) => f.name),
    unregister() {
      if (!registered) return
      registered = false
      collector.sources.delete(source)
      if (collector.sources.size > 0) return
      for (const [name, metric] of collector.metrics) {
        if (registry.getSingleMetric(name) === metric) registry.removeSingleMetric(name)
      }
      if (collectors.get(registry) === collector) collectors.delete(registry)
    },
  }
}

module.exports = {
  PROMETHEUS_CONTENT_TYPE,
  toPrometheusText,
  registerPrometheus,
  /** @internal for express.js */
  _normalizeLabels: normalizeLabels,
}
