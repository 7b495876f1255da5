//! `health()`, `metrics()` and `tenant(id).metrics()` as the JavaScript API returns them:
//! built here in one snapshot (the health status decided here too) and serialized once to
//! JSON for the boundary.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::cache::{Cache, Mode};
use crate::failover::breaker::State;
use crate::metrics::{TenantCounts, TypeStats};
use crate::store::memory::TenantUsage;
use crate::store::redis::Topology;

/// Upper bounds (µs) of the Prometheus latency buckets: 0.1 ms .. 2.5 s.
pub const LATENCY_BOUNDS_US: [u64; 14] = [
  100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
];

/// `health()`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Health {
  /// `healthy` (the configured store serves), `degraded` (the in-process store serves, or
  /// Redis refuses writes), `unhealthy` (closed, or Redis down without fallback).
  pub status: &'static str,
  /// Which store serves calls.
  pub mode: &'static str,
  /// Since when the current mode holds (ISO 8601).
  pub mode_since: String,
  /// The Redis side.
  pub redis: RedisHealth,
  /// The in-process store.
  pub fallback: FallbackSize,
  /// The near cache and its tracking connection.
  pub near_cache: NearHealth,
  /// Failover state (`memory://`: breaker closed, nothing journaled).
  pub failover: FailoverHealth,
}

/// `health().redis`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RedisHealth {
  /// The PING of this check answered.
  pub connected: bool,
  /// Its round trip (ms), null when it failed.
  pub latency_ms: Option<f64>,
  /// The configured URL, password redacted.
  pub url: String,
  /// The last Redis failure (password-free).
  pub last_error: Option<String>,
  /// Redis `used_memory` in bytes, when connected.
  pub used_memory_bytes: Option<u64>,
  /// Percentiles (ms) of recent PINGs.
  pub ping_ms: Option<Percentiles>,
  /// The nodes and whether each answered.
  pub topology: Option<TopologyReport>,
}

/// p50, p95, p99 (ms).
#[derive(Debug, Serialize)]
pub struct Percentiles {
  /// Median.
  pub p50: f64,
  /// 95th percentile.
  pub p95: f64,
  /// 99th percentile.
  pub p99: f64,
}

/// Entries, bytes and budget of the in-process store.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FallbackSize {
  /// Entries held.
  pub entries: u64,
  /// Bytes charged to the budget.
  pub bytes: u64,
  /// The budget.
  pub max_bytes: u64,
}

/// `health().nearCache`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NearHealth {
  /// The near cache is on.
  pub enabled: bool,
  /// `active` (invalidations arrive, entries are served), `connecting`, `lost` (nothing is
  /// served until tracking is back), `idle` (no connection yet) or `off`.
  pub tracking: &'static str,
  /// Entries held.
  pub entries: u64,
  /// Bytes charged to its budget.
  pub bytes: u64,
  /// Its budget.
  pub max_bytes: u64,
}

fn near_health(cache: &Cache) -> NearHealth {
  match cache.near_stats() {
    Some(n) => NearHealth {
      enabled: true,
      tracking: n.tracking.name(),
      entries: n.memory.entries,
      bytes: n.memory.bytes,
      max_bytes: n.memory.max_bytes,
    },
    None => NearHealth {
      enabled: false,
      tracking: "off",
      entries: 0,
      bytes: 0,
      max_bytes: 0,
    },
  }
}

/// `health().failover`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FailoverHealth {
  /// `closed`, `open` or `half-open`.
  pub breaker: &'static str,
  /// Operations waiting for replay.
  pub journal_depth: u64,
  /// Times the manager switched to memory mode.
  pub fallback_activations: u64,
  /// Total time in memory mode (ms).
  pub memory_mode_ms: u64,
  /// Redis refuses writes; they are kept in memory and journaled.
  pub writes_refused: bool,
}

/// `health().redis.topology`, `metrics().topology`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TopologyReport {
  /// `single`, `cluster` or `sentinel`.
  pub kind: &'static str,
  /// Every known node.
  pub nodes: Vec<NodeReport>,
  /// Nodes that answered (only in `metrics()`).
  #[serde(skip_serializing_if = "Option::is_none")]
  pub reachable_nodes: Option<usize>,
}

/// One node.
#[derive(Debug, Serialize)]
pub struct NodeReport {
  /// `host:port`.
  pub address: String,
  /// `master`, `replica` or `sentinel`.
  pub role: &'static str,
  /// It answered a PING within the command timeout.
  pub reachable: bool,
}

fn topology_report(t: Topology, with_count: bool) -> TopologyReport {
  let reachable = t.nodes.iter().filter(|n| n.reachable).count();
  TopologyReport {
    kind: t.kind,
    nodes: t
      .nodes
      .into_iter()
      .map(|n| NodeReport {
        address: n.address,
        role: n.role.name(),
        reachable: n.reachable,
      })
      .collect(),
    reachable_nodes: with_count.then_some(reachable),
  }
}

fn mode_name(mode: Mode) -> &'static str {
  match mode {
    Mode::Redis => "redis",
    Mode::Memory => "memory",
  }
}

fn breaker_name(state: State) -> &'static str {
  match state {
    State::Closed => "closed",
    State::Open => "open",
    State::HalfOpen => "half-open",
  }
}

fn round3(ms: f64) -> f64 {
  (ms * 1000.0).round() / 1000.0
}

/// The live `health()` of `cache`: a check within one command timeout. Never fails.
pub async fn health(cache: &Cache) -> Health {
  let memory = cache.memory_stats();
  let fallback = FallbackSize {
    entries: memory.entries,
    bytes: memory.bytes,
    max_bytes: memory.max_bytes,
  };
  let url = cache.config().backend().redacted_url();
  let status = cache.failover_status();
  let check = cache.health_check().await;
  // read after the check: a misconfiguration it found has opened the breaker
  let status = cache.failover_status().or(status);
  let closed = cache.is_closed();
  let mode = cache.mode();
  let connected = check.as_ref().is_some_and(|c| c.ping.is_ok());
  let verdict = match (&status, closed) {
    (_, true) => "unhealthy",
    (None, false) => "healthy",
    (Some(s), false) if s.redis_serves && connected && !s.writes_refused => "healthy",
    (Some(_), false) if cache.config().fallback().enabled => "degraded",
    _ => "unhealthy",
  };
  let last_error = match (closed, &check) {
    (true, _) => Some("closed".to_string()),
    (false, Some(c)) => c.ping.as_ref().err().map(|e| e.to_string()),
    _ => None,
  }
  .or_else(|| status.as_ref().and_then(|s| s.last_error.clone()));
  Health {
    status: verdict,
    mode: mode_name(mode),
    mode_since: iso8601(cache.mode_since()),
    redis: RedisHealth {
      connected,
      latency_ms: check
        .as_ref()
        .and_then(|c| c.ping.as_ref().ok())
        .map(|d| round3(d.as_secs_f64() * 1000.0)),
      url,
      last_error: if cache.is_memory_only() && !closed {
        None
      } else {
        last_error
      },
      used_memory_bytes: check.as_ref().and_then(|c| c.used_memory),
      ping_ms: cache
        .ping_percentiles()
        .filter(|_| check.is_some())
        .map(|p| Percentiles {
          p50: round3(p[0]),
          p95: round3(p[1]),
          p99: round3(p[2]),
        }),
      topology: check.map(|c| topology_report(c.topology, false)),
    },
    fallback,
    near_cache: near_health(cache),
    failover: match status {
      Some(s) => FailoverHealth {
        breaker: breaker_name(s.state),
        journal_depth: s.journal_depth,
        fallback_activations: s.fallback_activations,
        memory_mode_ms: s.memory_mode_ms,
        writes_refused: s.writes_refused,
      },
      None => FailoverHealth {
        breaker: "closed",
        journal_depth: 0,
        fallback_activations: 0,
        memory_mode_ms: 0,
        writes_refused: false,
      },
    },
  }
}

/// `metrics()`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricsReport {
  mode: &'static str,
  hits: u64,
  misses: u64,
  hit_rate: f64,
  by_type: ByType,
  errors: u64,
  timeouts: u64,
  write_refusals: u64,
  fallback_activations: u64,
  latency_ms: LatencyMs,
  memory: MemoryReport,
  near_cache: NearReport,
  rate_limit: RateLimitReport,
  invalidations: u64,
  invalidated_entries: u64,
  memory_mode_ms: u64,
  journal_depth: u64,
  latency_histogram: LatencyHistogram,
  tenants: TenantsReport,
  topology: Option<TopologyReport>,
}

#[derive(Debug, Serialize)]
struct ByType {
  session: TypeReport,
  query: TypeReport,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct TypeReport {
  hits: u64,
  misses: u64,
  hit_rate: f64,
  sets: u64,
  deletes: u64,
}

impl From<TypeStats> for TypeReport {
  fn from(k: TypeStats) -> Self {
    TypeReport {
      hits: k.hits,
      misses: k.misses,
      hit_rate: k.hit_rate(),
      sets: k.sets,
      deletes: k.deletes,
    }
  }
}

#[derive(Debug, Serialize)]
struct LatencyMs {
  p50: f64,
  p95: f64,
  p99: f64,
  max: f64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct MemoryReport {
  fallback_bytes: u64,
  fallback_entries: u64,
  fallback_max_bytes: u64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct NearReport {
  enabled: bool,
  /// Reads it answered.
  hits: u64,
  /// Reads that went to Redis.
  misses: u64,
  hit_rate: f64,
  /// Keys Redis invalidated (another client changed them, or they expired), flushes included.
  invalidations: u64,
  /// Reads answered during an outage from what it held when the outage began.
  fail_safe_hits: u64,
  entries: u64,
  bytes: u64,
  max_bytes: u64,
  tracking: &'static str,
  /// Subscriptions made (one per connection).
  tracking_epochs: u64,
}

/// `metrics().rateLimit`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct RateLimitReport {
  /// Checks allowed.
  allowed: u64,
  /// Checks refused (by Redis, in-process or locally).
  limited: u64,
  /// Checks refused in-process without a Redis call (a key known to be over its limit).
  refused_locally: u64,
  /// Checks decided by the local limiter (Redis down, or `memory://`).
  local_decisions: u64,
  /// Live processes sharing the limits, as Redis last counted them (0: not counted yet).
  processes: u64,
  /// Keys whose local consumption waits to be counted into Redis.
  pending_sync: u64,
}

fn near_report(cache: &Cache) -> NearReport {
  let off = NearReport {
    enabled: false,
    hits: 0,
    misses: 0,
    hit_rate: 0.0,
    invalidations: 0,
    fail_safe_hits: 0,
    entries: 0,
    bytes: 0,
    max_bytes: 0,
    tracking: "off",
    tracking_epochs: 0,
  };
  let Some(n) = cache.near_stats() else { return off };
  let reads = n.hits + n.misses;
  NearReport {
    enabled: true,
    hits: n.hits,
    misses: n.misses,
    hit_rate: if reads == 0 { 0.0 } else { n.hits as f64 / reads as f64 },
    invalidations: n.invalidations,
    fail_safe_hits: n.fail_safe_hits,
    entries: n.memory.entries,
    bytes: n.memory.bytes,
    max_bytes: n.memory.max_bytes,
    tracking: n.tracking.name(),
    tracking_epochs: n.epochs,
  }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct LatencyHistogram {
  count: u64,
  sum_ms: f64,
  buckets: Vec<Bucket>,
}

#[derive(Debug, Serialize)]
struct Bucket {
  le: f64,
  count: u64,
}

#[derive(Debug, Serialize)]
struct TenantsReport {
  tracked: usize,
  limit: usize,
  other: CountsReport,
  list: Vec<TenantReport>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct CountsReport {
  hits: u64,
  misses: u64,
  hit_rate: f64,
  invalidated: u64,
  rate_limit_allowed: u64,
  rate_limit_limited: u64,
}

impl From<TenantCounts> for CountsReport {
  fn from(c: TenantCounts) -> Self {
    CountsReport {
      hits: c.hits,
      misses: c.misses,
      hit_rate: c.hit_rate(),
      invalidated: c.invalidated,
      rate_limit_allowed: c.rate_allowed,
      rate_limit_limited: c.rate_limited,
    }
  }
}

/// `tenant(id).metrics()`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantReport {
  tenant_id: String,
  tracked: bool,
  #[serde(flatten)]
  counts: CountsReport,
  memory: TenantMemory,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct TenantMemory {
  fallback_bytes: u64,
  fallback_entries: u64,
  fallback_max_bytes: u64,
  near_cache_bytes: u64,
  near_cache_entries: u64,
}

fn tenant_report(cache: &Cache, tenant: String, counts: Option<TenantCounts>, usage: TenantUsage) -> TenantReport {
  let near = cache.near_tenant_usage(&tenant);
  TenantReport {
    tenant_id: tenant,
    tracked: counts.is_some(),
    counts: counts.unwrap_or_default().into(),
    memory: TenantMemory {
      fallback_bytes: usage.bytes,
      fallback_entries: usage.entries,
      fallback_max_bytes: cache.tenant_max_bytes(),
      near_cache_bytes: near.bytes,
      near_cache_entries: near.entries,
    },
  }
}

/// One tenant's counters and in-process usage; no I/O.
pub fn tenant(cache: &Cache, tenant: &str) -> TenantReport {
  let (counts, usage) = cache.tenant_stats(tenant);
  tenant_report(cache, tenant.to_string(), counts, usage)
}

/// A snapshot of every counter; no I/O.
pub fn metrics(cache: &Cache) -> MetricsReport {
  let m = cache.metrics().snapshot();
  let status = cache.failover_status();
  let memory = cache.memory_stats();
  let histogram = cache.metrics().latency();
  // buckets and count from one pass, so +Inf always equals the count
  let (buckets, count) = histogram.cumulative(&LATENCY_BOUNDS_US);
  let tenants = cache.metrics().tenants();
  MetricsReport {
    mode: mode_name(cache.mode()),
    hits: m.hits(),
    misses: m.misses(),
    hit_rate: m.hit_rate(),
    by_type: ByType {
      session: m.session.into(),
      query: m.query.into(),
    },
    errors: m.errors,
    timeouts: m.timeouts,
    write_refusals: m.write_refusals,
    fallback_activations: status.as_ref().map_or(0, |s| s.fallback_activations),
    latency_ms: LatencyMs {
      p50: m.latency_ms[0],
      p95: m.latency_ms[1],
      p99: m.latency_ms[2],
      max: m.latency_ms[3],
    },
    memory: MemoryReport {
      fallback_bytes: memory.bytes,
      fallback_entries: memory.entries,
      fallback_max_bytes: memory.max_bytes,
    },
    near_cache: near_report(cache),
    rate_limit: {
      let r = cache.rate_stats();
      RateLimitReport {
        allowed: m.rate_allowed,
        limited: m.rate_limited,
        refused_locally: r.refused_locally,
        local_decisions: r.local_decisions,
        processes: r.processes,
        pending_sync: r.unsynced_keys,
      }
    },
    invalidations: m.invalidations,
    invalidated_entries: m.invalidated_entries,
    memory_mode_ms: status.as_ref().map_or(0, |s| s.memory_mode_ms),
    journal_depth: status.as_ref().map_or(0, |s| s.journal_depth),
    latency_histogram: LatencyHistogram {
      count,
      sum_ms: histogram.sum_us() as f64 / 1000.0,
      buckets: LATENCY_BOUNDS_US
        .iter()
        .zip(buckets)
        .map(|(&le, count)| Bucket {
          le: le as f64 / 1000.0,
          count,
        })
        .collect(),
    },
    tenants: TenantsReport {
      tracked: tenants.tracked.len(),
      limit: tenants.limit,
      other: tenants.other.into(),
      list: tenants
        .tracked
        .into_iter()
        .map(|(t, c)| {
          let usage = cache.tenant_stats(&t).1;
          tenant_report(cache, t, Some(c), usage)
        })
        .collect(),
    },
    topology: cache.last_topology().map(|t| topology_report(t, true)),
  }
}

/// `time` as ISO 8601 in UTC with milliseconds (`2026-12-06T04:05:31.123Z`), as
/// JavaScript's `Date#toISOString`.
pub fn iso8601(time: SystemTime) -> String {
  let ms = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
  let (days, ms_of_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
  // civil date from days since 1970-01-01 (H. Hinnant's algorithm)
  let z = days + 719_468;
  let era = z.div_euclid(146_097);
  let doe = z.rem_euclid(146_097);
  let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
  let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  let mp = (5 * doy + 2) / 153;
  let day = doy - (153 * mp + 2) / 5 + 1;
  let month = if mp < 10 { mp + 3 } else { mp - 9 };
  let year = yoe + era * 400 + i64::from(month <= 2);
  format!(
    "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
    ms_of_day / 3_600_000,
    ms_of_day / 60_000 % 60,
    ms_of_day / 1000 % 60,
    ms_of_day % 1000
  )
}

#[cfg(test)]
mod tests {
  use super::*;

  use std::time::Duration;

  #[test]
  fn iso8601_matches_javascript() {
    assert_eq!(iso8601(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
    // new Date(1765000000123).toISOString()
    let t = UNIX_EPOCH + Duration::from_millis(1_765_000_000_123);
    assert_eq!(iso8601(t), "2025-12-06T05:46:40.123Z");
    // a leap day
    let t = UNIX_EPOCH + Duration::from_millis(951_782_400_000);
    assert_eq!(iso8601(t), "2000-02-29T00:00:00.000Z");
  }

  #[tokio::test]
  async fn memory_health_is_healthy_and_closed_is_unhealthy() {
    let cache = Cache::new(
      crate::config::ConfigBuilder {
        url: Some("memory://".into()),
        ..Default::default()
      }
      .build()
      .unwrap(),
    )
    .unwrap();
    let h = health(&cache).await;
    assert_eq!((h.status, h.mode), ("healthy", "memory"));
    assert!(h.failover.breaker == "closed" && h.redis.last_error.is_none());
    cache.close().await;
    let h = health(&cache).await;
    assert_eq!(h.status, "unhealthy");
    assert_eq!(h.redis.last_error.as_deref(), Some("closed"));
    let json = serde_json::to_string(&metrics(&cache)).unwrap();
    assert!(json.contains("\"byType\":{\"session\":{\"hits\":0"), "{json}");
  }
}
