//! The cache core: validated operations over Redis with the in-process store behind it.
//!
//! ## Behavior
//! - Every operation validates its arguments first (key non-empty and within
//!   `maxKeyBytes`, TTL positive and finite, value within `maxValueBytes`) and
//!   changes nothing when they are bad.
//! - `memory://`: the in-process store alone; the `*_local` functions answer
//!   synchronously on the calling thread.
//! - Redis mode: a call goes to Redis while the [breaker](crate::breaker) is closed,
//!   within the `commandTimeoutMs` budget (see [`crate::failover`]). When Redis
//!   fails, or the breaker is open, the call is served by the in-process store and,
//!   if it changes anything, recorded in the [journal](crate::journal), which is
//!   replayed to Redis by the background recovery task before Redis is trusted again.
//! - A key with a pending journal entry (or under a pending invalidation) is read
//!   from the journal and written through it, never from/to Redis directly, until
//!   replay applied it: nothing deleted or invalidated during an outage is read back.
//! - Without fallback, an outage rejects with `ERR_REDIS_UNAVAILABLE` instead.
//! - The in-process store only holds outage data; it is emptied on recovery and a
//!   successful Redis write drops the key's copy, so nothing stale is served later.
//! - After [`Cache::close`] every operation fails with `ERR_CLOSED`.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use crate::breaker::{Breaker, State, DEFAULT_FAILURE_THRESHOLD, DEFAULT_PROBE_SUCCESSES};
use crate::config::{ttl_ms, Backend, Config};
use crate::error::{Error, Result};
use crate::events::{EventSink, Events};
use crate::failover::Simulation;
use crate::journal::{Journal, Lookup, DEFAULT_MAX_ENTRIES};
use crate::keys::{KeyLayout, Kind, Scope, MAX_TENANT_BYTES};
use crate::metrics::{Metrics, MetricsSnapshot, TenantCounts};
use crate::store::memory::{Stored, TenantUsage};
use crate::store::redis::RedisTimeouts;
use crate::store::{MemoryStats, MemoryStore, RedisStore, Store};

/// Which store serves calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
  /// Redis.
  Redis,
  /// The in-process store.
  Memory,
}

/// A point-in-time view of the failover state.
#[derive(Debug, Clone, PartialEq)]
pub struct FailoverStatus {
  /// Which store serves calls.
  pub mode: Mode,
  /// Breaker state.
  pub state: State,
  /// Operations waiting for replay.
  pub journal_depth: u64,
  /// Times the breaker opened.
  pub fallback_activations: u64,
  /// Total time in memory mode (ms), the current outage included.
  pub memory_mode_ms: u64,
  /// Since when the current mode holds (ms since the cache was created).
  pub mode_since_ms: u64,
  /// Journal operations replayed to Redis so far.
  pub replayed: u64,
  /// The last Redis failure, password-free.
  pub last_error: Option<String>,
  /// Redis refuses writes (capacity or role) and they are kept in memory and journaled.
  pub writes_refused: bool,
}

/// How many recent PING round trips `health()` summarises.
pub const PING_WINDOW: usize = 128;

/// Result of [`Cache::health_check`].
#[derive(Debug)]
pub struct HealthCheck {
  /// The PING's round trip, or why it failed.
  pub ping: Result<Duration>,
  /// Redis `used_memory` in bytes, when the PING answered.
  pub used_memory: Option<u64>,
}

/// A fixed window of recent PING round trips.
#[derive(Default)]
pub(crate) struct PingWindow {
  samples: Mutex<std::collections::VecDeque<Duration>>,
}

impl PingWindow {
  pub(crate) fn record(&self, rtt: Duration) {
    let mut s = self.samples.lock().unwrap_or_else(|p| p.into_inner());
    if s.len() == PING_WINDOW {
      s.pop_front();
    }
    s.push_back(rtt);
  }

  fn percentiles(&self) -> Option<[f64; 3]> {
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

/// The cache: one per `CacheManager`.
pub struct Cache {
  pub(crate) config: Config,
  pub(crate) layout: KeyLayout,
  pub(crate) memory: MemoryStore,
  pub(crate) redis: Option<RedisStore>,
  pub(crate) breaker: Breaker,
  pub(crate) journal: Journal,
  pub(crate) events: Events,
  pub(crate) epoch: Instant,
  pub(crate) me: Weak<Cache>,
  pub(crate) recovering: AtomicBool,
  pub(crate) simulation: AtomicU8,
  pub(crate) replayed: AtomicU64,
  pub(crate) replay_failures: AtomicU32,
  pub(crate) mode_since_ms: AtomicU64,
  pub(crate) last_error: Mutex<Option<String>>,
  /// Redis refuses writes (capacity or role): writes go to memory and the journal
  /// until a replay succeeds (see [`crate::failover`]).
  pub(crate) writes_refused: AtomicBool,
  /// A misconfiguration was reported (`error` event) in the current episode.
  pub(crate) misconfiguration_reported: AtomicBool,
  pub(crate) metrics: Metrics,
  pub(crate) pings: PingWindow,
  closed: AtomicBool,
}

impl Cache {
  /// A cache for `config`; does no I/O.
  pub fn new(config: Config) -> Result<Arc<Self>> {
    let redis = match config.backend() {
      Backend::Memory => None,
      backend => {
        let timeouts = RedisTimeouts {
          command: config.command_timeout,
          connect: config.connect_timeout,
        };
        let store = RedisStore::for_backend(backend, timeouts, &config.tls)?;
        Some(match config.query_index {
          true => store.with_query_index(KeyLayout::new(config.key_prefix())),
          false => store,
        })
      }
    };
    let fallback = config.fallback();
    let memory = MemoryStore::with_tenant_budget(
      fallback.max_bytes,
      fallback.max_bytes_per_tenant,
      config.largest_entry_bytes(),
    );
    Ok(Arc::new_cyclic(|me| Cache {
      layout: KeyLayout::new(config.key_prefix()),
      breaker: Breaker::new(DEFAULT_FAILURE_THRESHOLD, DEFAULT_PROBE_SUCCESSES),
      journal: Journal::new(DEFAULT_MAX_ENTRIES, fallback.max_bytes, config.key_prefix()),
      events: Events::default(),
      epoch: Instant::now(),
      me: me.clone(),
      recovering: AtomicBool::new(false),
      simulation: AtomicU8::new(Simulation::None as u8),
      replayed: AtomicU64::new(0),
      replay_failures: AtomicU32::new(0),
      mode_since_ms: AtomicU64::new(0),
      last_error: Mutex::new(None),
      writes_refused: AtomicBool::new(false),
      misconfiguration_reported: AtomicBool::new(false),
      metrics: Metrics::new(config.metrics_enabled, config.tenant_metrics_limit),
      pings: PingWindow::default(),
      config,
      memory,
      redis,
      closed: AtomicBool::new(false),
    }))
  }

  /// The configuration in use.
  pub fn config(&self) -> &Config {
    &self.config
  }

  /// True for `memory://`: no Redis at all, every call answers synchronously.
  pub fn is_memory_only(&self) -> bool {
    self.redis.is_none()
  }

  /// Which store serves calls now.
  pub fn mode(&self) -> Mode {
    if self.redis.is_none() || !self.breaker.allows_calls() {
      Mode::Memory
    } else {
      Mode::Redis
    }
  }

  /// The failover state, for health and metrics.
  pub fn failover_status(&self) -> FailoverStatus {
    let now = self.now_ms();
    FailoverStatus {
      mode: self.mode(),
      state: self.breaker.state(),
      journal_depth: self.journal.depth() as u64,
      fallback_activations: self.breaker.times_opened(),
      memory_mode_ms: self.breaker.open_ms_total(now),
      mode_since_ms: self.mode_since_ms.load(Ordering::Relaxed),
      replayed: self.replayed.load(Ordering::Relaxed),
      last_error: self.last_error(),
      writes_refused: self.writes_refused.load(Ordering::Relaxed),
    }
  }

  /// Counters and Redis latency percentiles (no I/O).
  pub fn metrics(&self) -> MetricsSnapshot {
    self.metrics.snapshot()
  }

  /// The metrics themselves (histogram buckets for Prometheus).
  pub fn metrics_ref(&self) -> &Metrics {
    &self.metrics
  }

  /// The in-process store's size.
  pub fn memory_stats(&self) -> MemoryStats {
    self.memory.stats()
  }

  /// One tenant's counters (`None` when not tracked one by one) and what it
  /// holds in the in-process store; no I/O.
  pub fn tenant_stats(&self, tenant: &str) -> (Option<TenantCounts>, TenantUsage) {
    (self.metrics.tenant_counts(tenant), self.memory.tenant_usage(tenant))
  }

  /// The most one tenant may hold in the in-process store.
  pub fn tenant_max_bytes(&self) -> u64 {
    self.memory.tenant_max_bytes()
  }

  /// The last Redis failure, password-free.
  pub fn last_error(&self) -> Option<String> {
    self.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone()
  }

  /// A live round trip to Redis within the command timeout (no retries,
  /// regardless of the breaker, honouring a simulated outage); zero for `memory://`.
  /// Successful round trips feed [`Cache::ping_percentiles`].
  pub async fn ping(&self) -> Result<Duration> {
    self.check_open()?;
    match &self.redis {
      None => Ok(Duration::ZERO),
      Some(redis) => {
        let rtt = self.simulated_failure_or_timeout(redis.ping()).await?;
        self.pings.record(rtt);
        Ok(rtt)
      }
    }
  }

  /// The live check of `health()`: a PING and Redis's `used_memory`, within one command timeout.
  pub async fn health_check(&self) -> HealthCheck {
    // concurrently, so the whole check takes at most one command timeout
    let memory = async {
      match &self.redis {
        Some(redis) => self.simulated_failure_or_timeout(redis.used_memory()).await.ok(),
        None => None,
      }
    };
    let (ping, used_memory) = tokio::join!(self.ping(), memory);
    let used_memory = if ping.is_ok() { used_memory } else { None };
    if let Err(e) = &ping {
      // found here first, a misconfiguration is treated as a data call would treat it
      if e.is_misconfiguration() {
        let _ = self.on_redis_failure(e.clone());
      }
    }
    HealthCheck { ping, used_memory }
  }

  /// The Redis nodes (single server, Cluster nodes, or sentinels + master + replicas) and
  /// whether each answers a PING now; `None` for `memory://`. At most one command timeout.
  pub async fn topology(&self) -> Option<crate::store::redis::Topology> {
    Some(self.redis.as_ref()?.topology().await)
  }

  /// The topology as of the last [`Cache::topology`] check (no I/O).
  pub fn last_topology(&self) -> Option<crate::store::redis::Topology> {
    self.redis.as_ref()?.last_topology()
  }

  /// p50, p95, p99 (ms) of the last [`PING_WINDOW`] PINGs (health checks and
  /// recovery probes); `None` before the first.
  pub fn ping_percentiles(&self) -> Option<[f64; 3]> {
    self.pings.percentiles()
  }

  /// Milliseconds since the current mode began.
  pub fn mode_age_ms(&self) -> u64 {
    self.now_ms().saturating_sub(self.mode_since_ms.load(Ordering::Relaxed))
  }

  /// Installs the receiver of [`crate::events::Event`]s.
  pub fn set_event_sink(&self, sink: Arc<dyn EventSink>) {
    self.events.set_sink(sink);
  }

  /// True once closed.
  pub fn is_closed(&self) -> bool {
    self.closed.load(Ordering::Acquire)
  }

  /// Closes after one last attempt, within one command timeout, to replay what the outage
  /// journal holds; returns how many journaled operations could not be replayed (lost).
  /// Calls already running finish first: the caller stops making new ones and waits for
  /// them before calling this. Idempotent (a second call returns 0).
  pub async fn close_gracefully(&self) -> u64 {
    if self.is_closed() {
      return 0;
    }
    let dropped = match &self.redis {
      Some(_) if !self.journal.is_empty() => {
        let _ = tokio::time::timeout(self.config.command_timeout, self.replay_quietly()).await;
        self.journal.depth() as u64
      }
      _ => 0,
    };
    self.close();
    dropped
  }

  /// Closes: drops the connection, the in-process data and the event sink. Idempotent.
  pub fn close(&self) {
    if !self.closed.swap(true, Ordering::AcqRel) {
      if let Some(r) = &self.redis {
        r.disconnect();
      }
      self.memory.clear();
      self.events.clear();
    }
  }

  /// Milliseconds since this cache was created (the breaker's clock).
  pub(crate) fn now_ms(&self) -> u64 {
    self.epoch.elapsed().as_millis() as u64
  }

  // ----- validation -------------------------------------------------------

  fn check_open(&self) -> Result<()> {
    if self.is_closed() {
      return Err(Error::Closed);
    }
    Ok(())
  }

  fn check_key(&self, what: &str, key: &str) -> Result<()> {
    if key.is_empty() {
      return Err(Error::invalid(format!("{what} must be a non-empty string")));
    }
    let max = self.config.limits().max_key_bytes;
    if key.len() > max {
      return Err(Error::TooLarge(format!(
        "{what} is {} bytes; the limit is {max} (limits.maxKeyBytes)",
        key.len()
      )));
    }
    Ok(())
  }

  fn check_scope(&self, scope: Scope<'_>) -> Result<()> {
    if let Scope::Tenant(t) = scope {
      if t.is_empty() || t.len() > MAX_TENANT_BYTES {
        return Err(Error::invalid(format!(
          "tenantId must be a non-empty string of at most {MAX_TENANT_BYTES} bytes"
        )));
      }
    }
    Ok(())
  }

  fn full_key(&self, scope: Scope<'_>, kind: Kind, key: &str) -> Result<String> {
    self.check_open()?;
    self.check_scope(scope)?;
    self.check_key(key_name(kind), key)?;
    Ok(self.layout.key(scope, kind, key))
  }

  fn prefix_key(&self, scope: Scope<'_>, kind: Kind, prefix: &str, allow_empty: bool) -> Result<String> {
    self.check_open()?;
    self.check_scope(scope)?;
    if !(allow_empty && prefix.is_empty()) {
      self.check_key("prefix", prefix)?;
    }
    Ok(self.layout.literal_prefix(scope, kind, prefix))
  }

  fn ttl(&self, kind: Kind, ttl_secs: Option<f64>) -> Result<u64> {
    match ttl_secs {
      Some(s) => ttl_ms(s),
      None => Ok(match kind {
        Kind::Session => self.config.session_ttl_ms,
        Kind::Query => self.config.query_ttl_ms,
      }),
    }
  }

  fn check_value(&self, json: &str) -> Result<()> {
    let max = self.config.limits().max_value_bytes;
    if json.len() > max {
      return Err(Error::TooLarge(format!(
        "value is {} bytes of JSON; the limit is {max} (limits.maxValueBytes)",
        json.len()
      )));
    }
    Ok(())
  }

  // ----- synchronous in-process path ----------------------------------------

  /// True while reads and writes are answered by the in-process store without
  /// asking Redis: `memory://`, or Redis mode with the breaker open and fallback
  /// on. Then [`Cache::get_local`] and [`Cache::set_local`] serve them on the
  /// calling thread, exactly as the asynchronous path would.
  pub fn serves_locally(&self) -> bool {
    self.redis.is_none() || (self.config.fallback().enabled && !self.breaker.allows_calls())
  }

  /// Reads from the in-process store on the calling thread (`memory://`).
  pub fn get_local(&self, scope: Scope<'_>, kind: Kind, key: &str) -> Result<Option<Stored>> {
    let key = self.full_key(scope, kind, key)?;
    let value = self.memory.get_stored(&key);
    self.count_read(scope, kind, value.is_some());
    Ok(value)
  }

  /// [`Cache::get_local`] for while [`Cache::serves_locally`]: in Redis mode the
  /// journal, then the in-process store. `Ok(None)`: the breaker closed meanwhile
  /// and nothing was found locally (recovery empties the in-process store once
  /// Redis has everything), so Redis must be asked instead.
  pub fn get_outage_local(&self, scope: Scope<'_>, kind: Kind, key: &str) -> Result<Option<Option<Arc<str>>>> {
    if self.redis.is_none() {
      return self.get_local(scope, kind, key).map(|v| Some(v.map(|s| s.text)));
    }
    let key = self.full_key(scope, kind, key)?;
    let value = self.read_outage(&key);
    if value.is_none() && self.breaker.allows_calls() {
      return Ok(None);
    }
    self.count_read(scope, kind, value.is_some());
    Ok(Some(value))
  }

  /// Writes on the calling thread: the in-process store (`memory://`), or while
  /// [`Cache::serves_locally`] in Redis mode the in-process store and the journal
  /// (replayed on recovery; one that lands after the breaker closed is replayed too).
  pub fn set_local(&self, scope: Scope<'_>, kind: Kind, key: &str, json: &str, ttl_secs: Option<f64>) -> Result<()> {
    let key = self.full_key(scope, kind, key)?;
    let ttl = self.ttl(kind, ttl_secs)?;
    self.check_value(json)?;
    self.write_local(scope, kind, &key, json, ttl, false)?;
    self.metrics.set(kind);
    Ok(())
  }

  /// Stores `json` in the in-process store and, in Redis mode, journals it for replay.
  fn write_local(&self, scope: Scope<'_>, kind: Kind, full: &str, json: &str, ttl: u64, uncertain: bool) -> Result<()> {
    let expires_at = Instant::now() + Duration::from_millis(ttl);
    let value: Arc<str> = json.into();
    self.memory.set_until(scope.tenant(), full, value.clone(), expires_at)?;
    if self.redis.is_some() {
      let namespace = self.layout.namespace(scope, kind);
      self.journal.record_set(full, value, expires_at, &namespace, uncertain);
      self.ensure_recovery();
    }
    Ok(())
  }

  /// Deletes from the in-process store on the calling thread.
  pub fn delete_local(&self, scope: Scope<'_>, kind: Kind, key: &str) -> Result<bool> {
    let key = self.full_key(scope, kind, key)?;
    let existed = self.memory.delete_now(scope.tenant(), &key);
    self.metrics.delete(kind);
    Ok(existed)
  }

  /// Prefix invalidation in the in-process store on the calling thread; an
  /// empty prefix is accepted only with `all`.
  pub fn invalidate_local(&self, scope: Scope<'_>, kind: Kind, prefix: &str, all: bool) -> Result<u64> {
    let literal = self.prefix_key(scope, kind, prefix, all)?;
    let removed = self.memory.invalidate_prefix_now(scope.tenant(), &literal);
    self.count_invalidation(scope, removed);
    Ok(removed)
  }

  fn count_read(&self, scope: Scope<'_>, kind: Kind, hit: bool) {
    self.metrics.read(kind, hit);
    if let Some(t) = scope.tenant() {
      self.metrics.tenant_read(t, hit);
    }
  }

  fn count_invalidation(&self, scope: Scope<'_>, removed: u64) {
    self.metrics.invalidation(removed);
    if let Some(t) = scope.tenant() {
      self.metrics.tenant_invalidated(t, removed);
    }
  }

  // ----- asynchronous path ------------------------------------------------

  /// Reads `key`.
  pub async fn get(&self, scope: Scope<'_>, kind: Kind, key: &str) -> Result<Option<String>> {
    let value = self.get_uncounted(scope, kind, key).await?;
    self.count_read(scope, kind, value.is_some());
    Ok(value)
  }

  /// Writes `json` under `key` for `ttl_secs` (or the kind's default).
  pub async fn set(&self, scope: Scope<'_>, kind: Kind, key: &str, json: &str, ttl_secs: Option<f64>) -> Result<()> {
    self.set_uncounted(scope, kind, key, json, ttl_secs).await?;
    self.metrics.set(kind);
    Ok(())
  }

  /// Deletes `key`; true if it existed.
  pub async fn delete(&self, scope: Scope<'_>, kind: Kind, key: &str) -> Result<bool> {
    let existed = self.delete_uncounted(scope, kind, key).await?;
    self.metrics.delete(kind);
    Ok(existed)
  }

  /// Removes every entry of (`scope`, `kind`) whose key starts with `prefix`
  /// (every entry when `all`); returns how many.
  pub async fn invalidate(&self, scope: Scope<'_>, kind: Kind, prefix: &str, all: bool) -> Result<u64> {
    let removed = self.invalidate_uncounted(scope, kind, prefix, all).await?;
    self.count_invalidation(scope, removed);
    Ok(removed)
  }

  /// Runs gets and sets with the results separate calls of [`Cache::get`] and
  /// [`Cache::set`] would give, in order. Against one Redis server, the calls that go to
  /// Redis share one pipeline: one round trip and one retry budget; if it fails, each of
  /// them is served like a failed call. On a Cluster, the calls of each master share a
  /// pipeline to that master; a call its master redirects (or whose pipeline failed) is
  /// then made on its own, as a separate call would be.
  pub async fn run_batch(&self, items: &[BatchItem<'_>]) -> Vec<Result<Option<String>>> {
    let redis = match &self.redis {
      Some(r) if items.len() > 1 && self.breaker.allows_calls() => r,
      _ => {
        let calls = items.iter().map(|item| async move {
          match *item {
            BatchItem::Get(scope, kind, key) => self.get(scope, kind, key).await,
            BatchItem::Set(scope, kind, key, json, ttl) => self.set(scope, kind, key, json, ttl).await.map(|()| None),
          }
        });
        return futures_util::future::join_all(calls).await;
      }
    };
    let mut results: Vec<Option<Result<Option<String>>>> = items.iter().map(|_| None).collect();
    // (index, full key, write: json and TTL in ms) of the calls for Redis
    let mut piped: Vec<Piped> = Vec::new();
    for (i, item) in items.iter().enumerate() {
      match *item {
        BatchItem::Get(scope, kind, key) => match self.full_key(scope, kind, key) {
          Err(e) => results[i] = Some(Err(e)),
          Ok(full) => match self.journal.lookup(&full, Instant::now()) {
            Lookup::Value(v) => results[i] = Some(Ok(Some(v.to_string()))),
            Lookup::Gone => results[i] = Some(Ok(None)),
            Lookup::Unknown => piped.push((i, full, None)),
          },
        },
        BatchItem::Set(scope, kind, key, json, ttl_secs) => {
          let checked = self.full_key(scope, kind, key).and_then(|full| {
            let ttl = self.ttl(kind, ttl_secs)?;
            self.check_value(json)?;
            Ok((full, ttl))
          });
          match checked {
            Err(e) => results[i] = Some(Err(e)),
            Ok((full, ttl)) if self.routes_to_redis(&full) => piped.push((i, full, Some((json, ttl)))),
            Ok((full, ttl)) => {
              let local = self
                .refuse_without_fallback()
                .and_then(|()| self.write_local(scope, kind, &full, json, ttl, false));
              results[i] = Some(local.map(|()| None));
            }
          }
        }
      }
    }
    if !piped.is_empty() && !redis.pipelines() {
      self.run_by_master(redis, items, &piped, &mut results).await;
    } else if !piped.is_empty() {
      let ops: Vec<(&str, Option<(&str, u64)>)> = piped.iter().map(|(_, full, w)| (full.as_str(), *w)).collect();
      match self.redis_call(|| redis.get_set_many(&ops)).await {
        Ok(replies) => {
          for ((i, full, write), reply) in piped.iter().zip(replies) {
            results[*i] = Some(self.settle_reply(&items[*i], full, *write, reply));
          }
        }
        Err(e) => {
          let uncertain = e.may_have_been_applied();
          // every call of the pipeline failed: counted as that many failed calls, as
          // separate calls would be (the breaker opens after 3 of them)
          for _ in 1..piped.len() {
            self.metrics.redis_error(e.is_timeout());
            let _ = self.on_redis_failure(e.clone());
          }
          let outcome = self.on_redis_failure(e);
          for (i, full, write) in &piped {
            let (scope, kind) = (items[*i].scope(), items[*i].kind());
            results[*i] = Some(match (&outcome, write) {
              (Err(e), _) => Err(e.clone()),
              (Ok(()), None) => Ok(self.read_outage(full).map(|v| v.to_string())),
              (Ok(()), Some((json, ttl))) => self
                .write_local(scope, kind, full, json, *ttl, uncertain)
                .map(|()| None),
            });
          }
        }
      }
    }
    let results: Vec<Result<Option<String>>> = results
      .into_iter()
      .map(|r| r.unwrap_or_else(|| Err(Error::invalid("batch: call not run"))))
      .collect();
    for (item, result) in items.iter().zip(&results) {
      match (item, result) {
        (BatchItem::Get(scope, kind, _), Ok(v)) => self.count_read(*scope, *kind, v.is_some()),
        (BatchItem::Set(_, kind, ..), Ok(_)) => self.metrics.set(*kind),
        _ => {}
      }
    }
    results
  }

  /// [`Cache::run_batch`]'s calls for Redis on a Cluster: one pipeline per master
  /// ([`RedisStore::get_set_by_master`]), and the calls it could not answer made on their own.
  async fn run_by_master(
    &self,
    redis: &RedisStore,
    items: &[BatchItem<'_>],
    piped: &[Piped<'_>],
    results: &mut [Option<Result<Option<String>>>],
  ) {
    let ops: Vec<(&str, Option<(&str, u64)>)> = piped.iter().map(|(_, full, w)| (full.as_str(), *w)).collect();
    // a failure here (no slot table, a simulated outage) leaves every call to be made on its own
    let answers = self
      .redis_call(|| redis.get_set_by_master(&ops))
      .await
      .unwrap_or_else(|_| ops.iter().map(|_| None).collect());
    // the calls left to make on their own, chained by key: the calls on one key one after the
    // other, in the order made (a write, then its read); different keys at once
    let mut chains: Vec<Vec<usize>> = Vec::new();
    let mut chain_of: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for ((i, full, write), answer) in piped.iter().zip(answers) {
      match answer {
        Some(reply) => results[*i] = Some(self.settle_reply(&items[*i], full, *write, reply)),
        None => {
          let chain = *chain_of.entry(full.as_str()).or_insert_with(|| {
            chains.push(Vec::new());
            chains.len() - 1
          });
          chains[chain].push(*i);
        }
      }
    }
    let runs = chains.iter().map(|chain| async move {
      let mut out = Vec::with_capacity(chain.len());
      for &i in chain {
        let result = match items[i] {
          BatchItem::Get(scope, kind, key) => self.get_uncounted(scope, kind, key).await,
          BatchItem::Set(scope, kind, key, json, ttl) => {
            self.set_uncounted(scope, kind, key, json, ttl).await.map(|()| None)
          }
        };
        out.push((i, result));
      }
      out
    });
    for (i, result) in futures_util::future::join_all(runs).await.into_iter().flatten() {
      results[i] = Some(result);
    }
  }

  /// The outcome of one piped call from its own reply: a successful write drops the key's
  /// in-process copy; a write Redis refused for capacity or role is kept in memory and
  /// journaled like an outage write; another error reply is the caller's.
  fn settle_reply(
    &self,
    item: &BatchItem<'_>,
    full: &str,
    write: Option<(&str, u64)>,
    reply: Result<Option<String>>,
  ) -> Result<Option<String>> {
    match (reply, write) {
      (Ok(v), None) => Ok(v),
      (Ok(_), Some(_)) => {
        self.memory.delete_now(item.scope().tenant(), full);
        Ok(None)
      }
      (Err(e), Some((json, ttl))) if e.is_write_refused() => {
        self.metrics.redis_error(false);
        self.on_redis_failure(e)?;
        self
          .write_local(item.scope(), item.kind(), full, json, ttl, false)
          .map(|()| None)
      }
      (Err(e), _) => {
        self.metrics.redis_error(false);
        Err(e)
      }
    }
  }

  async fn get_uncounted(&self, scope: Scope<'_>, kind: Kind, key: &str) -> Result<Option<String>> {
    let key = self.full_key(scope, kind, key)?;
    let Some(redis) = &self.redis else {
      return Ok(self.memory.get_now(&key).map(|v| v.to_string()));
    };
    if self.breaker.allows_calls() {
      match self.journal.lookup(&key, Instant::now()) {
        Lookup::Value(v) => return Ok(Some(v.to_string())),
        Lookup::Gone => return Ok(None),
        Lookup::Unknown => {}
      }
      match self.redis_call(|| redis.get(&key)).await {
        Ok(v) => return Ok(v),
        Err(e) => self.on_redis_failure(e)?,
      }
    } else {
      self.refuse_without_fallback()?;
    }
    Ok(self.read_outage(&key).map(|v| v.to_string()))
  }

  async fn set_uncounted(
    &self,
    scope: Scope<'_>,
    kind: Kind,
    key: &str,
    json: &str,
    ttl_secs: Option<f64>,
  ) -> Result<()> {
    let full = self.full_key(scope, kind, key)?;
    let ttl = self.ttl(kind, ttl_secs)?;
    self.check_value(json)?;
    let mut uncertain = false;
    if let Some(redis) = &self.redis {
      if self.routes_to_redis(&full) {
        match self.redis_call(|| redis.set(&full, json, ttl)).await {
          Ok(()) => {
            self.memory.delete_now(scope.tenant(), &full);
            return Ok(());
          }
          Err(e) => {
            uncertain = e.may_have_been_applied();
            self.on_redis_failure(e)?
          }
        }
      } else {
        self.refuse_without_fallback()?;
      }
    }
    self.write_local(scope, kind, &full, json, ttl, uncertain)
  }

  async fn delete_uncounted(&self, scope: Scope<'_>, kind: Kind, key: &str) -> Result<bool> {
    let full = self.full_key(scope, kind, key)?;
    let mut uncertain = false;
    if let Some(redis) = &self.redis {
      if self.routes_to_redis(&full) {
        match self.redis_call(|| redis.delete(&full)).await {
          Ok(existed) => {
            self.memory.delete_now(scope.tenant(), &full);
            return Ok(existed);
          }
          Err(e) => {
            uncertain = e.may_have_been_applied();
            self.on_redis_failure(e)?
          }
        }
      } else {
        self.refuse_without_fallback()?;
      }
    }
    let existed = self.read_outage(&full).is_some();
    self.memory.delete_now(scope.tenant(), &full);
    if self.redis.is_some() {
      self
        .journal
        .record_delete(&full, &self.layout.namespace(scope, kind), uncertain);
      self.ensure_recovery();
    }
    Ok(existed)
  }

  async fn invalidate_uncounted(&self, scope: Scope<'_>, kind: Kind, prefix: &str, all: bool) -> Result<u64> {
    let literal = self.prefix_key(scope, kind, prefix, all)?;
    if let Some(redis) = &self.redis {
      if self.breaker.allows_calls() && !self.writes_refused.load(Ordering::Relaxed) && self.journal.is_empty() {
        match self.redis_call(|| redis.invalidate_prefix(&literal)).await {
          Ok(n) => {
            self.memory.invalidate_prefix_now(scope.tenant(), &literal);
            return Ok(n);
          }
          Err(e) => self.on_redis_failure(e)?,
        }
      } else {
        self.refuse_without_fallback()?;
      }
    }
    let removed = self.memory.invalidate_prefix_now(scope.tenant(), &literal);
    if self.redis.is_some() {
      self.journal.record_invalidate(&literal);
      self.ensure_recovery();
    }
    Ok(removed)
  }

  /// The keys (as the caller wrote them) of every live entry of (`scope`, `kind`): from
  /// Redis by `SCAN` (never blocking it), plus what the outage journal and the
  /// in-process store hold, minus what was deleted or invalidated during an outage.
  /// During an outage only what was written since it began is known. Sorted.
  pub async fn keys(&self, scope: Scope<'_>, kind: Kind) -> Result<Vec<String>> {
    self.check_open()?;
    self.check_scope(scope)?;
    let prefix = self.layout.literal_prefix(scope, kind, "");
    let mut full: std::collections::BTreeSet<String> = self.memory.keys_with_prefix(&prefix).into_iter().collect();
    if let Some(redis) = &self.redis {
      if self.breaker.allows_calls() {
        match self.redis_call(|| redis.keys_with_prefix(&prefix)).await {
          Ok(keys) => full.extend(keys),
          Err(e) => self.on_redis_failure(e)?,
        }
      } else {
        self.refuse_without_fallback()?;
      }
      let now = Instant::now();
      full.extend(self.journal.live_keys_under(&prefix, now));
      full.retain(|k| self.journal.lookup(k, now) != Lookup::Gone);
    }
    Ok(full.into_iter().map(|k| k[prefix.len()..].to_string()).collect())
  }

  /// A write or delete of `key` may go to Redis: breaker closed, Redis not refusing
  /// writes, and no pending journal entry that must reach Redis first.
  fn routes_to_redis(&self, key: &str) -> bool {
    self.breaker.allows_calls()
      && !self.writes_refused.load(Ordering::Relaxed)
      && self.journal.lookup(key, Instant::now()) == Lookup::Unknown
  }

  /// A read served during an outage: the journal, then the in-process store.
  fn read_outage(&self, key: &str) -> Option<Arc<str>> {
    match self.journal.lookup(key, Instant::now()) {
      Lookup::Value(v) => Some(v),
      Lookup::Gone => None,
      Lookup::Unknown => self.memory.get_now(key),
    }
  }

  fn refuse_without_fallback(&self) -> Result<()> {
    self.check_open()?;
    if self.config.fallback().enabled {
      return Ok(());
    }
    let cause = self.last_error().unwrap_or_else(|| "circuit open".into());
    Err(Error::RedisUnavailable(format!(
      "Redis is unavailable and fallback is disabled: {cause}"
    )))
  }
}

/// A call of [`Cache::run_batch`] for Redis: its index, full key, and for a set
/// the JSON and TTL in ms.
type Piped<'a> = (usize, String, Option<(&'a str, u64)>);

/// One call of [`Cache::run_batch`].
#[derive(Debug, Clone, Copy)]
pub enum BatchItem<'a> {
  /// `get(scope, kind, key)`.
  Get(Scope<'a>, Kind, &'a str),
  /// `set(scope, kind, key, json, ttl_secs)`.
  Set(Scope<'a>, Kind, &'a str, &'a str, Option<f64>),
}

impl<'a> BatchItem<'a> {
  fn scope(&self) -> Scope<'a> {
    match *self {
      BatchItem::Get(scope, ..) | BatchItem::Set(scope, ..) => scope,
    }
  }
  fn kind(&self) -> Kind {
    match *self {
      BatchItem::Get(_, kind, _) | BatchItem::Set(_, kind, ..) => kind,
    }
  }
}

fn key_name(kind: Kind) -> &'static str {
  match kind {
    Kind::Session => "sessionId",
    Kind::Query => "key",
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::config::ConfigBuilder;

  fn memory_cache() -> Arc<Cache> {
    Cache::new(
      ConfigBuilder {
        url: Some("memory://".into()),
        ..Default::default()
      }
      .build()
      .unwrap(),
    )
    .unwrap()
  }

  /// A Redis URL where nothing listens (a port just released by the OS).
  pub(crate) fn dead_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    format!("redis://127.0.0.1:{port}")
  }

  #[tokio::test]
  async fn memory_mode_round_trip() {
    let c = memory_cache();
    assert!(c.is_memory_only());
    c.set(Scope::Global, Kind::Session, "s1", "{\"a\":1}", None)
      .await
      .unwrap();
    assert_eq!(
      c.get(Scope::Global, Kind::Session, "s1").await.unwrap().as_deref(),
      Some("{\"a\":1}")
    );
    assert_eq!(
      c.get(Scope::Global, Kind::Query, "s1").await.unwrap(),
      None,
      "kinds are separate"
    );
    assert_eq!(
      c.get_local(Scope::Global, Kind::Session, "s1")
        .unwrap()
        .map(|s| s.text)
        .as_deref(),
      Some("{\"a\":1}")
    );
    assert!(c.delete(Scope::Global, Kind::Session, "s1").await.unwrap());
    assert_eq!(c.journal.depth(), 0, "memory:// keeps no journal");
  }

  #[tokio::test]
  async fn bad_input_changes_nothing() {
    let c = memory_cache();
    c.set(Scope::Global, Kind::Query, "k", "1", None).await.unwrap();
    let long = "k".repeat(5000);
    let big = "1".repeat(5 * 1024 * 1024);
    assert_eq!(
      c.set(Scope::Global, Kind::Query, "", "2", None)
        .await
        .unwrap_err()
        .code(),
      "ERR_INVALID_ARG"
    );
    assert_eq!(
      c.set(Scope::Global, Kind::Query, &long, "2", None)
        .await
        .unwrap_err()
        .code(),
      "ERR_TOO_LARGE"
    );
    assert_eq!(
      c.set(Scope::Global, Kind::Query, "k", &big, None)
        .await
        .unwrap_err()
        .code(),
      "ERR_TOO_LARGE"
    );
    for ttl in [0.0, -1.0, f64::NAN, f64::INFINITY] {
      assert_eq!(
        c.set(Scope::Global, Kind::Query, "k", "2", Some(ttl))
          .await
          .unwrap_err()
          .code(),
        "ERR_INVALID_ARG"
      );
    }
    assert_eq!(
      c.invalidate(Scope::Global, Kind::Query, "", false)
        .await
        .unwrap_err()
        .code(),
      "ERR_INVALID_ARG"
    );
    assert_eq!(
      c.get(Scope::Tenant(""), Kind::Query, "k").await.unwrap_err().code(),
      "ERR_INVALID_ARG"
    );
    assert_eq!(
      c.get(Scope::Global, Kind::Query, "k").await.unwrap().as_deref(),
      Some("1")
    );
  }

  #[tokio::test]
  async fn tenants_are_isolated() {
    let c = memory_cache();
    c.set(Scope::Tenant("a"), Kind::Query, "orders_1", "\"a\"", None)
      .await
      .unwrap();
    c.set(Scope::Tenant("b"), Kind::Query, "orders_1", "\"b\"", None)
      .await
      .unwrap();
    c.set(Scope::Global, Kind::Query, "orders_1", "\"g\"", None)
      .await
      .unwrap();
    assert_eq!(
      c.invalidate(Scope::Tenant("a"), Kind::Query, "orders_", false)
        .await
        .unwrap(),
      1
    );
    assert_eq!(
      c.get(Scope::Tenant("b"), Kind::Query, "orders_1")
        .await
        .unwrap()
        .as_deref(),
      Some("\"b\"")
    );
    assert_eq!(
      c.invalidate(Scope::Global, Kind::Query, "", true).await.unwrap(),
      1,
      "invalidateAll stays in scope"
    );
    assert!(c
      .get(Scope::Tenant("b"), Kind::Query, "orders_1")
      .await
      .unwrap()
      .is_some());
  }

  #[tokio::test]
  async fn closed_cache_refuses_everything() {
    let c = memory_cache();
    c.close();
    c.close();
    assert_eq!(c.get(Scope::Global, Kind::Query, "k").await.unwrap_err(), Error::Closed);
    assert_eq!(
      c.set_local(Scope::Global, Kind::Query, "k", "1", None).unwrap_err(),
      Error::Closed
    );
  }

  #[tokio::test]
  async fn falls_back_and_journals_when_redis_is_unreachable() {
    let config = ConfigBuilder {
      url: Some(dead_url()),
      ..Default::default()
    }
    .build()
    .unwrap();
    let c = Cache::new(config).unwrap();
    c.set(Scope::Global, Kind::Session, "s", "1", None).await.unwrap();
    assert!(c.last_error().is_some());
    assert_eq!(
      c.get(Scope::Global, Kind::Session, "s").await.unwrap().as_deref(),
      Some("1")
    );
    assert_eq!(c.journal.depth(), 1, "the write waits for replay");
    assert!(c.delete(Scope::Global, Kind::Session, "s").await.unwrap());
    assert_eq!(c.get(Scope::Global, Kind::Session, "s").await.unwrap(), None);
    assert_eq!(c.journal.depth(), 1, "latest operation per key");
  }

  #[tokio::test]
  async fn without_fallback_an_outage_is_an_error() {
    let config = ConfigBuilder {
      url: Some(dead_url()),
      fallback_enabled: Some(false),
      ..Default::default()
    }
    .build()
    .unwrap();
    let c = Cache::new(config).unwrap();
    for _ in 0..5 {
      let err = c.set(Scope::Global, Kind::Session, "s", "1", None).await.unwrap_err();
      assert_eq!(err.code(), "ERR_REDIS_UNAVAILABLE");
    }
    assert_eq!(c.mode(), Mode::Memory, "the breaker opened");
    let err = c.get(Scope::Global, Kind::Session, "s").await.unwrap_err();
    assert_eq!(err.code(), "ERR_REDIS_UNAVAILABLE", "also while the breaker is open");
    assert_eq!(c.journal.depth(), 0);
  }
}
