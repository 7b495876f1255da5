//! Counters and the Redis latency histogram; [`Metrics::snapshot`] is a plain copy.
//!
//! ## Behavior
//! - Hot-path counting is `Relaxed` atomic increments only: no lock, no allocation,
//!   exact under concurrency (every increment is counted once).
//! - Latency goes into a log-linear histogram (8 buckets per power of two, so a
//!   percentile is within ~9 % of the true value) from 1 µs to ~18 minutes, plus an
//!   exact maximum. Fixed memory: no sample list grows.
//! - Per-tenant counters (reads, hits, invalidated entries) for the first
//!   `tenant_limit` tenants seen; later tenants share one aggregate, so the
//!   cardinality stays bounded whatever the number of tenants. Counting takes a
//!   read lock of the tenant map (a write lock only the first time a tenant is seen).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::RwLock;
use std::time::Duration;

use crate::keys::EntryType;

const SUB_BITS: u32 = 3;
const SUB: usize = 1 << SUB_BITS;
const OCTAVES: usize = 40;
const BUCKETS: usize = OCTAVES * SUB;

/// A fixed-size, lock-free latency histogram in microseconds.
pub struct Histogram {
  buckets: Box<[AtomicU64]>,
  count: AtomicU64,
  sum_us: AtomicU64,
  max_us: AtomicU64,
}

impl Default for Histogram {
  fn default() -> Self {
    Histogram {
      buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
      count: AtomicU64::new(0),
      sum_us: AtomicU64::new(0),
      max_us: AtomicU64::new(0),
    }
  }
}

fn bucket_of(us: u64) -> usize {
  if us < SUB as u64 {
    return us as usize;
  }
  let octave = 63 - us.leading_zeros(); // >= SUB_BITS
  let sub = (us >> (octave - SUB_BITS)) as usize & (SUB - 1);
  (((octave - SUB_BITS + 1) as usize) * SUB + sub).min(BUCKETS - 1)
}

/// The upper bound (µs) of values landing in bucket `i`.
fn bucket_upper(i: usize) -> u64 {
  if i < SUB {
    return i as u64;
  }
  let octave = (i / SUB) as u32 + SUB_BITS - 1;
  let sub = (i % SUB) as u64;
  ((SUB as u64 + sub + 1) << (octave - SUB_BITS)) - 1
}

impl Histogram {
  /// Records one duration.
  pub fn record(&self, d: Duration) {
    let us = d.as_micros().min(u64::MAX as u128) as u64;
    self.buckets[bucket_of(us)].fetch_add(1, Relaxed);
    self.count.fetch_add(1, Relaxed);
    self.sum_us.fetch_add(us, Relaxed);
    self.max_us.fetch_max(us, Relaxed);
  }

  /// Sum of all values recorded (µs).
  pub fn sum_us(&self) -> u64 {
    self.sum_us.load(Relaxed)
  }

  /// Values recorded.
  pub fn count(&self) -> u64 {
    self.count.load(Relaxed)
  }

  /// The `q`-quantile (0..=1) in microseconds (bucket upper bound, capped at the max); 0 when empty.
  pub fn quantile_us(&self, q: f64) -> u64 {
    let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
    let total: u64 = counts.iter().sum();
    if total == 0 {
      return 0;
    }
    let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
    let mut seen = 0;
    for (i, c) in counts.iter().enumerate() {
      seen += c;
      if seen >= rank {
        return bucket_upper(i).min(self.max_us());
      }
    }
    self.max_us()
  }

  /// The largest value recorded (µs).
  pub fn max_us(&self) -> u64 {
    self.max_us.load(Relaxed)
  }

  /// Cumulative counts at the given upper bounds (µs), for Prometheus buckets
  /// (values in a histogram bucket are attributed to its upper bound), and the
  /// total count, both from one pass over the buckets so they agree.
  pub fn cumulative(&self, bounds_us: &[u64]) -> (Vec<u64>, u64) {
    let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
    let below = |bound: u64| -> u64 {
      counts
        .iter()
        .enumerate()
        .filter(|(i, _)| bucket_upper(*i) <= bound)
        .map(|(_, c)| c)
        .sum()
    };
    (bounds_us.iter().map(|&b| below(b)).collect(), counts.iter().sum())
  }
}

/// Counters of one entry type (session or query).
#[derive(Default)]
pub struct TypeCounters {
  hits: AtomicU64,
  misses: AtomicU64,
  sets: AtomicU64,
  deletes: AtomicU64,
}

/// A snapshot of [`TypeCounters`].
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct TypeStats {
  /// Reads that found a value.
  pub hits: u64,
  /// Reads that found nothing.
  pub misses: u64,
  /// Successful writes.
  pub sets: u64,
  /// Successful deletes (whether or not the key existed).
  pub deletes: u64,
}

impl TypeStats {
  /// hits / (hits + misses), 0 without reads.
  pub fn hit_rate(&self) -> f64 {
    rate(self.hits, self.misses)
  }
}

fn rate(hits: u64, misses: u64) -> f64 {
  let reads = hits + misses;
  if reads == 0 {
    0.0
  } else {
    hits as f64 / reads as f64
  }
}

/// Counters of one tenant.
#[derive(Default)]
struct TenantCounters {
  hits: AtomicU64,
  misses: AtomicU64,
  invalidated: AtomicU64,
  rate_allowed: AtomicU64,
  rate_limited: AtomicU64,
}

impl TenantCounters {
  fn counts(&self) -> TenantCounts {
    TenantCounts {
      hits: self.hits.load(Relaxed),
      misses: self.misses.load(Relaxed),
      invalidated: self.invalidated.load(Relaxed),
      rate_allowed: self.rate_allowed.load(Relaxed),
      rate_limited: self.rate_limited.load(Relaxed),
    }
  }
}

/// One tenant's counters (or the aggregate of untracked tenants).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TenantCounts {
  /// Reads that found a value.
  pub hits: u64,
  /// Reads that found nothing.
  pub misses: u64,
  /// Entries removed by the tenant's invalidateCache/invalidateAll.
  pub invalidated: u64,
  /// Rate-limit checks allowed.
  pub rate_allowed: u64,
  /// Rate-limit checks refused.
  pub rate_limited: u64,
}

impl TenantCounts {
  /// hits / reads, 0 without reads.
  pub fn hit_rate(&self) -> f64 {
    rate(self.hits, self.misses)
  }
}

/// Every tracked tenant's counters and the aggregate of the others.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TenantsSnapshot {
  /// Tracked tenants, sorted by id.
  pub tracked: Vec<(String, TenantCounts)>,
  /// Tenants past the limit, summed.
  pub other: TenantCounts,
  /// The most tenants tracked one by one.
  pub limit: usize,
}

/// All counters of one cache.
#[derive(Default)]
pub struct Metrics {
  /// `metrics: false`: every recording function returns at once.
  disabled: bool,
  session: TypeCounters,
  query: TypeCounters,
  invalidations: AtomicU64,
  invalidated_entries: AtomicU64,
  errors: AtomicU64,
  timeouts: AtomicU64,
  write_refusals: AtomicU64,
  rate_allowed: AtomicU64,
  rate_limited: AtomicU64,
  latency: Histogram,
  tenants: RwLock<HashMap<Box<str>, TenantCounters>>,
  tenant_limit: usize,
  other_tenants: TenantCounters,
}

/// A snapshot of [`Metrics`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MetricsSnapshot {
  /// Session counters.
  pub session: TypeStats,
  /// Query counters.
  pub query: TypeStats,
  /// invalidateCache/invalidateAll calls.
  pub invalidations: u64,
  /// Entries they removed.
  pub invalidated_entries: u64,
  /// Failed Redis calls (outages and error replies).
  pub errors: u64,
  /// Failed Redis calls that were timeouts.
  pub timeouts: u64,
  /// Writes Redis refused for capacity or role (kept in memory and journaled instead).
  pub write_refusals: u64,
  /// Rate-limit checks allowed.
  pub rate_allowed: u64,
  /// Rate-limit checks refused.
  pub rate_limited: u64,
  /// Successful Redis round trips measured.
  pub latency_count: u64,
  /// Redis round-trip percentiles and maximum, in ms.
  pub latency_ms: [f64; 4],
}

impl MetricsSnapshot {
  /// Hits over both entry types.
  pub fn hits(&self) -> u64 {
    self.session.hits + self.query.hits
  }
  /// Misses over both entry types.
  pub fn misses(&self) -> u64 {
    self.session.misses + self.query.misses
  }
  /// Overall hit rate, 0 without reads.
  pub fn hit_rate(&self) -> f64 {
    rate(self.hits(), self.misses())
  }
}

impl Metrics {
  /// Counters that record (`enabled`) or ignore every event, with per-tenant
  /// counters for at most `tenant_limit` tenants.
  pub fn new(enabled: bool, tenant_limit: usize) -> Self {
    Metrics {
      disabled: !enabled,
      tenant_limit,
      ..Default::default()
    }
  }

  /// Runs `f` on `tenant`'s counters, or on the aggregate past the limit.
  fn with_tenant(&self, tenant: &str, f: impl Fn(&TenantCounters)) {
    {
      let map = self.tenants.read().unwrap_or_else(|p| p.into_inner());
      if let Some(c) = map.get(tenant) {
        return f(c);
      }
      if map.len() >= self.tenant_limit {
        return f(&self.other_tenants);
      }
    }
    let mut map = self.tenants.write().unwrap_or_else(|p| p.into_inner());
    if map.len() < self.tenant_limit || map.contains_key(tenant) {
      f(map.entry(tenant.into()).or_default())
    } else {
      f(&self.other_tenants)
    }
  }

  /// Counts a read of `tenant`.
  pub fn tenant_read(&self, tenant: &str, hit: bool) {
    if self.disabled {
      return;
    }
    self.with_tenant(tenant, |c| {
      if hit { &c.hits } else { &c.misses }.fetch_add(1, Relaxed);
    });
  }

  /// Counts entries removed by an invalidation of `tenant`.
  pub fn tenant_invalidated(&self, tenant: &str, removed: u64) {
    if self.disabled {
      return;
    }
    self.with_tenant(tenant, |c| {
      c.invalidated.fetch_add(removed, Relaxed);
    });
  }

  /// `tenant`'s counters; `None` when it is not tracked one by one (past the
  /// limit: counted in the aggregate) or never counted.
  pub fn tenant_counts(&self, tenant: &str) -> Option<TenantCounts> {
    let map = self.tenants.read().unwrap_or_else(|p| p.into_inner());
    map.get(tenant).map(TenantCounters::counts)
  }

  /// Every tracked tenant and the aggregate of the rest.
  pub fn tenants(&self) -> TenantsSnapshot {
    let map = self.tenants.read().unwrap_or_else(|p| p.into_inner());
    let mut tracked: Vec<(String, TenantCounts)> = map.iter().map(|(t, c)| (t.to_string(), c.counts())).collect();
    drop(map);
    tracked.sort_by(|a, b| a.0.cmp(&b.0));
    TenantsSnapshot {
      tracked,
      other: self.other_tenants.counts(),
      limit: self.tenant_limit,
    }
  }

  fn of_type(&self, entry: EntryType) -> &TypeCounters {
    match entry {
      EntryType::Session => &self.session,
      EntryType::Query => &self.query,
    }
  }

  /// Counts a read.
  pub fn read(&self, entry: EntryType, hit: bool) {
    if self.disabled {
      return;
    }
    let k = self.of_type(entry);
    if hit { &k.hits } else { &k.misses }.fetch_add(1, Relaxed);
  }

  /// Counts a write.
  pub fn set(&self, entry: EntryType) {
    if self.disabled {
      return;
    }
    self.of_type(entry).sets.fetch_add(1, Relaxed);
  }

  /// Counts a delete.
  pub fn delete(&self, entry: EntryType) {
    if self.disabled {
      return;
    }
    self.of_type(entry).deletes.fetch_add(1, Relaxed);
  }

  /// Counts an invalidation and what it removed.
  pub fn invalidation(&self, removed: u64) {
    if self.disabled {
      return;
    }
    self.invalidations.fetch_add(1, Relaxed);
    self.invalidated_entries.fetch_add(removed, Relaxed);
  }

  /// Counts a failed Redis call.
  pub fn redis_error(&self, timeout: bool) {
    if self.disabled {
      return;
    }
    self.errors.fetch_add(1, Relaxed);
    if timeout {
      self.timeouts.fetch_add(1, Relaxed);
    }
  }

  /// Counts a rate-limit check.
  pub fn rate_check(&self, allowed: bool) {
    if self.disabled {
      return;
    }
    if allowed {
      &self.rate_allowed
    } else {
      &self.rate_limited
    }
    .fetch_add(1, Relaxed);
  }

  /// Counts a rate-limit check of `tenant`.
  pub fn tenant_rate_check(&self, tenant: &str, allowed: bool) {
    if self.disabled {
      return;
    }
    self.with_tenant(tenant, |c| {
      if allowed { &c.rate_allowed } else { &c.rate_limited }.fetch_add(1, Relaxed);
    });
  }

  /// Counts a write Redis refused for capacity or role.
  pub fn write_refused(&self) {
    if self.disabled {
      return;
    }
    self.write_refusals.fetch_add(1, Relaxed);
  }

  /// Records a successful Redis round trip.
  pub fn redis_latency(&self, d: Duration) {
    if self.disabled {
      return;
    }
    self.latency.record(d);
  }

  /// The latency histogram (for Prometheus buckets).
  pub fn latency(&self) -> &Histogram {
    &self.latency
  }

  /// A plain copy of every counter.
  pub fn snapshot(&self) -> MetricsSnapshot {
    let stats = |k: &TypeCounters| TypeStats {
      hits: k.hits.load(Relaxed),
      misses: k.misses.load(Relaxed),
      sets: k.sets.load(Relaxed),
      deletes: k.deletes.load(Relaxed),
    };
    let ms = |us: u64| us as f64 / 1000.0;
    MetricsSnapshot {
      session: stats(&self.session),
      query: stats(&self.query),
      invalidations: self.invalidations.load(Relaxed),
      invalidated_entries: self.invalidated_entries.load(Relaxed),
      errors: self.errors.load(Relaxed),
      timeouts: self.timeouts.load(Relaxed),
      write_refusals: self.write_refusals.load(Relaxed),
      rate_allowed: self.rate_allowed.load(Relaxed),
      rate_limited: self.rate_limited.load(Relaxed),
      latency_count: self.latency.count(),
      latency_ms: [
        ms(self.latency.quantile_us(0.50)),
        ms(self.latency.quantile_us(0.95)),
        ms(self.latency.quantile_us(0.99)),
        ms(self.latency.max_us()),
      ],
    }
  }
}

/// How many recent PING round trips `health()` summarises.
pub const PING_WINDOW: usize = 128;

/// A fixed window of recent PING round trips (health checks and recovery probes).
#[derive(Default)]
pub struct PingWindow {
  samples: std::sync::Mutex<std::collections::VecDeque<Duration>>,
}

impl PingWindow {
  /// Adds one round trip, dropping the oldest past [`PING_WINDOW`].
  pub fn record(&self, rtt: Duration) {
    let mut s = self.samples.lock().unwrap_or_else(|p| p.into_inner());
    if s.len() == PING_WINDOW {
      s.pop_front();
    }
    s.push_back(rtt);
  }

  /// p50, p95, p99 in ms; `None` before the first sample.
  pub fn percentiles(&self) -> Option<[f64; 3]> {
    let mut v: Vec<Duration> = self
      .samples
      .lock()
      .unwrap_or_else(|p| p.into_inner())
      .iter()
      .copied()
      .collect();
    if v.is_empty() {
      return None;
    }
    v.sort();
    let at = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1].as_secs_f64() * 1000.0;
    Some([at(0.50), at(0.95), at(0.99)])
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use std::sync::{Arc, Barrier};

  #[test]
  fn buckets_are_monotonic_and_tight() {
    let mut last = 0;
    for us in [0u64, 1, 7, 8, 9, 15, 16, 100, 1_000, 12_345, 1_000_000, 60_000_000] {
      let b = bucket_of(us);
      assert!(b >= last, "bucket order at {us}");
      last = b;
      let upper = bucket_upper(b);
      assert!(upper >= us, "{us} above its bucket bound {upper}");
      assert!(upper as f64 <= us as f64 * 1.13 + 1.0, "{us} -> {upper}: too coarse");
    }
  }

  #[test]
  fn quantiles_of_a_known_distribution() {
    let h = Histogram::default();
    for ms in 1..=100 {
      h.record(Duration::from_millis(ms));
    }
    let p50 = h.quantile_us(0.5) as f64 / 1000.0;
    let p99 = h.quantile_us(0.99) as f64 / 1000.0;
    assert!((50.0..=55.0).contains(&p50), "p50 {p50}");
    assert!((99.0..=100.0).contains(&p99), "p99 {p99}");
    assert_eq!(h.max_us(), 100_000);
    assert_eq!(h.count(), 100);
    assert_eq!(Histogram::default().quantile_us(0.5), 0);
  }

  #[test]
  fn cumulative_counts_for_prometheus() {
    let h = Histogram::default();
    for us in [100, 900, 5_000, 2_000_000] {
      h.record(Duration::from_micros(us));
    }
    assert_eq!(h.cumulative(&[1_000, 10_000, 10_000_000]), (vec![2, 3, 4], 4));
    assert_eq!(h.cumulative(&[1_000]), (vec![2], 4), "the total counts every bucket");
  }

  /// Runs `f(metrics, thread, i)` for i in 0..10,000 on 4 threads started together.
  fn on_four_threads(m: Metrics, f: fn(&Metrics, usize, usize)) -> Metrics {
    let m = Arc::new(m);
    let barrier = Arc::new(Barrier::new(4));
    let threads: Vec<_> = (0..4)
      .map(|t| {
        let (m, barrier) = (m.clone(), barrier.clone());
        std::thread::spawn(move || {
          barrier.wait();
          for i in 0..10_000 {
            f(&m, t, i);
          }
        })
      })
      .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    Arc::into_inner(m).unwrap()
  }

  #[test]
  fn counters_are_exact_under_concurrency() {
    let m = on_four_threads(Metrics::default(), |m, t, i| {
      m.read(
        if t % 2 == 0 {
          EntryType::Session
        } else {
          EntryType::Query
        },
        i % 4 != 0,
      );
      m.set(EntryType::Session);
      m.redis_latency(Duration::from_micros(i as u64));
    });
    let s = m.snapshot();
    assert_eq!(s.hits() + s.misses(), 40_000);
    assert_eq!(s.hits(), 30_000);
    assert_eq!(s.session.sets, 40_000);
    assert_eq!(s.latency_count, 40_000);
    assert!((s.hit_rate() - 0.75).abs() < 1e-12);
  }

  #[test]
  fn tenant_counters_are_bounded_and_the_rest_aggregated() {
    let m = Metrics::new(true, 2);
    m.tenant_read("a", true);
    m.tenant_read("a", false);
    m.tenant_read("b", true);
    m.tenant_read("c", true);
    m.tenant_read("d", false);
    m.tenant_invalidated("a", 5);
    m.tenant_invalidated("d", 3);
    m.tenant_rate_check("a", true);
    m.tenant_rate_check("d", false);
    assert_eq!(
      m.tenant_counts("a"),
      Some(TenantCounts {
        hits: 1,
        misses: 1,
        invalidated: 5,
        rate_allowed: 1,
        rate_limited: 0,
      })
    );
    assert_eq!(m.tenant_counts("a").unwrap().hit_rate(), 0.5);
    assert_eq!(m.tenant_counts("c"), None, "past the limit");
    let all = m.tenants();
    assert_eq!(
      all.tracked.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>(),
      ["a", "b"]
    );
    assert_eq!(
      all.other,
      TenantCounts {
        hits: 1,
        misses: 1,
        invalidated: 3,
        rate_allowed: 0,
        rate_limited: 1,
      }
    );
    assert_eq!(all.limit, 2);
  }

  #[test]
  fn tenant_counting_is_exact_under_concurrency_and_off_when_disabled() {
    let m = on_four_threads(Metrics::new(true, 10), |m, t, i| {
      m.tenant_read(&format!("t{}", (i + t) % 20), i % 2 == 0)
    });
    let all = m.tenants();
    let reads: u64 =
      all.tracked.iter().map(|(_, c)| c.hits + c.misses).sum::<u64>() + all.other.hits + all.other.misses;
    assert_eq!(reads, 40_000);
    assert_eq!(all.tracked.len(), 10);
    let off = Metrics::new(false, 10);
    off.tenant_read("a", true);
    assert_eq!(off.tenant_counts("a"), None);
  }
}
