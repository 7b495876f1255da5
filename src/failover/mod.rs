//! Failover: whether calls may go to Redis, what a failed Redis call does, and recovery.
//!
//! ## Behavior
//! - A Redis call runs within a budget (`commandTimeoutMs`), retried with jittered
//!   exponential backoff only while the budget lasts ([`retry::with_retry`]); a success resets
//!   the breaker's failure count.
//! - Outage-class failures (timeout, refused/reset, protocol, misconfiguration) feed the
//!   [breaker](breaker::Breaker); three in a row (or one misconfiguration) open it, and calls
//!   are then served by the in-process store without touching Redis. Reply errors (e.g.
//!   `WRONGTYPE`) are the caller's: neither retried nor counted.
//! - A write Redis refuses for capacity or role (`OOM`, `READONLY`, `MISCONF`, `NOREPLICAS`)
//!   is a partial outage: reads stay on Redis, writes go to the in-process store and the
//!   [journal](journal::Journal) until a replay succeeds.
//! - A misconfiguration is reported once per episode (`error` event), whoever finds it: a data
//!   call, `health()` or the probe.
//! - One background task per cache ([`recovery`]) holds only a `Weak` reference: it probes
//!   Redis with backoff while the breaker is open, replays the journal when Redis answers,
//!   closes the breaker, and replays what single failed calls journaled while closed.
//! - [`Simulation`] makes every Redis call fail as if Redis refused or hung, through exactly
//!   the same path (for applications' own tests).

pub mod breaker;
pub mod journal;
mod recovery;
pub mod retry;

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime};

use self::breaker::{Breaker, FailureKind, State, Transition, DEFAULT_FAILURE_THRESHOLD, DEFAULT_PROBE_SUCCESSES};
use self::journal::{Journal, Lookup, DEFAULT_MAX_ENTRIES};
use crate::config::{Config, RetryConfig};
use crate::error::{Error, RedisFailure, Result};
use crate::events::{Event, Events};
use crate::keys::KeyLayout;
use crate::metrics::{Metrics, PingWindow};
use crate::near::NearCache;
use crate::ratelimit::Limits;
use crate::store::{MemoryStore, RedisStore, Store};

/// A simulated outage (`simulateOutage` in JS): the same failure path without Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Simulation {
  /// Real Redis.
  None = 0,
  /// Every call fails at once as if the connection were refused.
  Refuse = 1,
  /// Every call hangs until its budget runs out.
  Hang = 2,
}

/// A point-in-time view of the failover state.
#[derive(Debug, Clone, PartialEq)]
pub struct FailoverStatus {
  /// Calls go to Redis (breaker closed).
  pub redis_serves: bool,
  /// Breaker state.
  pub state: State,
  /// Operations waiting for replay.
  pub journal_depth: u64,
  /// Times the breaker opened.
  pub fallback_activations: u64,
  /// Total time in memory mode (ms), the current outage included.
  pub memory_mode_ms: u64,
  /// How long the current mode has held (ms).
  pub mode_age_ms: u64,
  /// When the current mode began (wall clock; the same value on every call while it holds).
  pub mode_since: SystemTime,
  /// Journal operations replayed to Redis so far.
  pub replayed: u64,
  /// The last Redis failure, password-free.
  pub last_error: Option<String>,
  /// Redis refuses writes (capacity or role): they are kept in memory and journaled.
  pub writes_refused: bool,
}

/// The failover state of one cache over one Redis deployment.
pub struct Failover {
  retry: RetryConfig,
  budget: Duration,
  fallback: bool,
  redis: Arc<RedisStore>,
  memory: Arc<MemoryStore>,
  near: Option<Arc<NearCache>>,
  /// What rate-limit checks admitted locally waits here to be counted into Redis.
  limits: Arc<Limits>,
  metrics: Arc<Metrics>,
  events: Arc<Events>,
  breaker: Breaker,
  journal: Journal,
  simulation: AtomicU8,
  recovering: AtomicBool,
  closed: AtomicBool,
  replayed: AtomicU64,
  replay_failures: AtomicU32,
  epoch: Instant,
  /// The wall clock at `epoch`.
  wall_epoch: SystemTime,
  mode_since_ms: AtomicU64,
  last_error: Mutex<Option<String>>,
  writes_refused: AtomicBool,
  misconfiguration_reported: AtomicBool,
  pings: PingWindow,
  me: Weak<Failover>,
}

impl Failover {
  /// The failover of `redis`, journaling into a journal bounded like `memory`; no I/O.
  pub fn new(
    config: &Config,
    redis: Arc<RedisStore>,
    memory: Arc<MemoryStore>,
    near: Option<Arc<NearCache>>,
    limits: Arc<Limits>,
    metrics: Arc<Metrics>,
    events: Arc<Events>,
  ) -> Arc<Self> {
    let fallback = config.fallback();
    Arc::new_cyclic(|me| Failover {
      retry: config.retry,
      budget: config.command_timeout,
      fallback: fallback.enabled,
      redis,
      memory,
      near,
      limits,
      metrics,
      events,
      breaker: Breaker::new(DEFAULT_FAILURE_THRESHOLD, DEFAULT_PROBE_SUCCESSES),
      journal: Journal::new(
        DEFAULT_MAX_ENTRIES,
        fallback.max_bytes,
        KeyLayout::new(config.key_prefix()).entry_prefixes(),
      ),
      simulation: AtomicU8::new(Simulation::None as u8),
      recovering: AtomicBool::new(false),
      closed: AtomicBool::new(false),
      replayed: AtomicU64::new(0),
      replay_failures: AtomicU32::new(0),
      epoch: Instant::now(),
      wall_epoch: SystemTime::now(),
      mode_since_ms: AtomicU64::new(0),
      last_error: Mutex::new(None),
      writes_refused: AtomicBool::new(false),
      misconfiguration_reported: AtomicBool::new(false),
      pings: PingWindow::default(),
      me: me.clone(),
    })
  }

  // ----- what may go to Redis ------------------------------------------------

  /// Calls may go to Redis: the breaker is closed.
  pub fn redis_serves(&self) -> bool {
    self.breaker.allows_calls()
  }

  /// Writes may go to Redis: the breaker is closed and Redis is not refusing writes.
  pub fn takes_writes(&self) -> bool {
    self.redis_serves() && !self.writes_refused.load(Ordering::Relaxed)
  }

  /// What the journal says about `key` (a pending outage operation decides a read).
  pub fn lookup(&self, key: &str) -> Lookup {
    self.journal.lookup(key, Instant::now())
  }

  /// Nothing waits for replay.
  pub fn journal_is_empty(&self) -> bool {
    self.journal.is_empty()
  }

  /// The keys under `prefix` written during the outage and still live.
  pub fn journaled_keys_under(&self, prefix: &str) -> Vec<String> {
    self.journal.live_keys_under(prefix, Instant::now())
  }

  /// `Ok` when the in-process store may serve a call Redis cannot; else
  /// `ERR_REDIS_UNAVAILABLE` naming the last failure.
  pub fn refuse_without_fallback(&self) -> Result<()> {
    if self.fallback {
      return Ok(());
    }
    let cause = self.last_error().unwrap_or_else(|| "circuit open".into());
    Err(Error::RedisUnavailable(format!(
      "Redis is unavailable and fallback is disabled: {cause}"
    )))
  }

  // ----- journaling ---------------------------------------------------------

  /// Journals a write served from memory (replayed to Redis on recovery).
  pub fn record_set(&self, key: &str, value: Arc<str>, expires_at: Instant, namespace: &str, uncertain: bool) {
    self.journal.record_set(key, value, expires_at, namespace, uncertain);
    self.ensure_recovery();
  }

  /// Journals a delete served from memory.
  pub fn record_delete(&self, key: &str, namespace: &str, uncertain: bool) {
    self.journal.record_delete(key, namespace, uncertain);
    self.ensure_recovery();
  }

  /// Journals a prefix invalidation served from memory.
  pub fn record_invalidate(&self, literal_prefix: &str) {
    self.journal.record_invalidate(literal_prefix);
    self.ensure_recovery();
  }

  // ----- Redis calls ----------------------------------------------------------

  /// Runs one Redis operation within the call budget, with retries, honouring a simulated
  /// outage; counts its latency or its failure. A success resets the breaker's count.
  pub async fn call<T, F, Fut>(&self, op: F) -> Result<T>
  where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T>>,
  {
    let started = Instant::now();
    let attempt = retry::with_retry(&self.retry, self.budget, || self.unless_simulated(op()));
    let result = self.within_budget("call", attempt).await;
    match &result {
      Ok(_) => {
        self.breaker.on_success();
        self.metrics.redis_latency(started.elapsed());
      }
      Err(e) => self.metrics.redis_error(e.is_timeout()),
    }
    result
  }

  /// One attempt of `fut` within the budget, honouring a simulated outage (no retries, no
  /// counting): probes, replay steps and the checks of `health()`.
  pub async fn once<T>(&self, what: &str, fut: impl Future<Output = Result<T>>) -> Result<T> {
    self.within_budget(what, self.unless_simulated(fut)).await
  }

  /// A PING within the budget; its round trip feeds [`Failover::ping_percentiles`].
  pub async fn ping(&self) -> Result<Duration> {
    let rtt = self.once("ping", self.redis.ping()).await?;
    self.pings.record(rtt);
    Ok(rtt)
  }

  /// p50, p95, p99 (ms) of recent PINGs (health checks and probes); `None` before the first.
  pub fn ping_percentiles(&self) -> Option<[f64; 3]> {
    self.pings.percentiles()
  }

  async fn within_budget<T>(&self, what: &str, fut: impl Future<Output = Result<T>>) -> Result<T> {
    match tokio::time::timeout(self.budget, fut).await {
      Ok(r) => r,
      Err(_) => Err(Error::timeout(what, self.budget.as_millis() as u64)),
    }
  }

  async fn unless_simulated<T>(&self, fut: impl Future<Output = Result<T>>) -> Result<T> {
    match self.simulation() {
      Simulation::None => fut.await,
      Simulation::Refuse => Err(Error::Redis {
        kind: RedisFailure::Refused,
        message: "simulated outage: connection refused".into(),
      }),
      Simulation::Hang => std::future::pending().await,
    }
  }

  // ----- failures -------------------------------------------------------------

  /// What a failed Redis call means: `Ok(())` = serve it from memory (and journal it), `Err`
  /// = what the caller gets (a reply error, or an outage without fallback).
  pub fn on_failure(&self, err: Error) -> Result<()> {
    if err.is_write_refused() {
      return self.on_write_refused(err);
    }
    if !err.is_outage() {
      return Err(err);
    }
    self.set_last_error(&err);
    let kind = if err.is_misconfiguration() {
      FailureKind::Misconfiguration
    } else {
      FailureKind::Transient
    };
    if self.breaker.on_failure(kind, self.now_ms()) == Some(Transition::Opened) {
      self.on_opened(&err, failure_kind_name(&err));
    }
    if err.is_misconfiguration() {
      self.report_misconfiguration(&err);
    }
    if !self.fallback {
      return Err(Error::RedisUnavailable(format!(
        "Redis is unavailable and fallback is disabled: {err}"
      )));
    }
    self.ensure_recovery();
    Ok(())
  }

  /// A failure `health()` found: a misconfiguration is treated as a data call would treat it
  /// (circuit open, `error` event); other failures only show in the health report.
  pub fn on_health_failure(&self, err: &Error) {
    if err.is_misconfiguration() {
      let _ = self.on_failure(err.clone());
    }
  }

  /// An `error` event for a misconfiguration, once per episode (until the breaker closes).
  fn report_misconfiguration(&self, err: &Error) {
    if !self.misconfiguration_reported.swap(true, Ordering::AcqRel) {
      self.events.emit(Event::Error {
        message: err.to_string(),
        kind: "misconfiguration",
      });
    }
  }

  /// Redis refused a write for capacity or role: one `error` event per episode; without
  /// fallback the caller gets `ERR_REDIS_UNAVAILABLE`.
  fn on_write_refused(&self, err: Error) -> Result<()> {
    self.set_last_error(&err);
    self.metrics.write_refused();
    if !self.fallback {
      return Err(Error::RedisUnavailable(format!(
        "Redis refused the write and fallback is disabled: {err}"
      )));
    }
    if !self.writes_refused.swap(true, Ordering::AcqRel) {
      self.events.emit(Event::Error {
        message: format!("Redis refuses writes; they are kept in memory and replayed when it accepts them: {err}"),
        kind: "write-refused",
      });
    }
    self.ensure_recovery();
    Ok(())
  }

  fn on_opened(&self, cause: &Error, kind: &'static str) {
    self.mode_since_ms.store(self.now_ms(), Ordering::Relaxed);
    if let Some(near) = &self.near {
      near.outage_began();
    }
    self.events.emit(Event::Fallback {
      cause: cause.to_string(),
      kind,
    });
    self.ensure_recovery();
  }

  fn set_last_error(&self, err: &Error) {
    *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(err.to_string());
  }

  // ----- simulation, status, close ------------------------------------------------

  /// The cache was closed.
  pub fn is_closed(&self) -> bool {
    self.closed.load(Ordering::Acquire)
  }

  /// The simulated outage in force.
  pub fn simulation(&self) -> Simulation {
    match self.simulation.load(Ordering::Relaxed) {
      1 => Simulation::Refuse,
      2 => Simulation::Hang,
      _ => Simulation::None,
    }
  }

  /// Starts (or, with `Simulation::None`, ends) a simulated outage. Starting one opens the
  /// breaker at once, as repeated failures would.
  pub fn simulate(&self, mode: Simulation) {
    self.simulation.store(mode as u8, Ordering::Relaxed);
    if mode != Simulation::None {
      let cause = Error::Redis {
        kind: RedisFailure::Connection,
        message: format!("simulated outage ({mode:?})"),
      };
      self.set_last_error(&cause);
      if self.breaker.force_open(self.now_ms()) {
        self.on_opened(&cause, "simulated");
      }
    }
  }

  /// The last Redis failure, password-free.
  pub fn last_error(&self) -> Option<String> {
    self.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone()
  }

  /// The failover state, for health and metrics.
  pub fn status(&self) -> FailoverStatus {
    let now = self.now_ms();
    let since = self.mode_since_ms.load(Ordering::Relaxed);
    FailoverStatus {
      redis_serves: self.redis_serves(),
      state: self.breaker.state(),
      journal_depth: self.journal.depth() as u64,
      fallback_activations: self.breaker.times_opened(),
      memory_mode_ms: self.breaker.open_ms_total(now),
      mode_age_ms: now.saturating_sub(since),
      mode_since: self.wall_epoch + Duration::from_millis(since),
      replayed: self.replayed.load(Ordering::Relaxed),
      last_error: self.last_error(),
      writes_refused: self.writes_refused.load(Ordering::Relaxed),
    }
  }

  /// Stops the recovery task after one last attempt, within the budget, to replay what the
  /// journal holds; returns how many journaled operations could not be replayed.
  pub async fn close(&self) -> u64 {
    self.closed.store(true, Ordering::Release);
    if self.journal.is_empty() {
      return 0;
    }
    let _ = tokio::time::timeout(self.budget, self.replay_quietly()).await;
    self.journal.depth() as u64
  }

  /// Milliseconds since this failover was created (the breaker's clock).
  fn now_ms(&self) -> u64 {
    self.epoch.elapsed().as_millis() as u64
  }
}

fn failure_kind_name(err: &Error) -> &'static str {
  if err.is_timeout() {
    "timeout"
  } else if err.is_misconfiguration() {
    "misconfiguration"
  } else {
    "connection"
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::config::ConfigBuilder;
  use crate::store::redis::RedisTimeouts;

  fn failover(fallback: bool) -> Arc<Failover> {
    let config = ConfigBuilder {
      url: Some("redis://127.0.0.1:1".into()),
      fallback_enabled: Some(fallback),
      ..Default::default()
    }
    .build()
    .unwrap();
    let timeouts = RedisTimeouts {
      command: config.command_timeout,
      connect: config.connect_timeout,
    };
    let redis = Arc::new(RedisStore::new("redis://127.0.0.1:1", timeouts).unwrap());
    let memory = Arc::new(MemoryStore::new(1 << 20, 1 << 16));
    let metrics = Arc::new(Metrics::new(true, 10));
    let limits = Arc::new(crate::ratelimit::Limits::new());
    Failover::new(
      &config,
      redis,
      memory,
      None,
      limits,
      metrics,
      Arc::new(Events::default()),
    )
  }

  fn refused() -> Error {
    Error::Redis {
      kind: RedisFailure::Refused,
      message: "refused".into(),
    }
  }

  #[tokio::test]
  async fn three_outages_in_a_row_open_the_breaker_but_a_success_in_between_resets() {
    let f = failover(true);
    assert!(f.on_failure(refused()).is_ok());
    assert!(f.on_failure(refused()).is_ok());
    f.call(|| async { Ok(()) }).await.unwrap();
    assert!(f.on_failure(refused()).is_ok());
    assert!(f.redis_serves(), "the success reset the count");
    f.on_failure(refused()).unwrap();
    f.on_failure(refused()).unwrap();
    assert!(!f.redis_serves());
    assert_eq!(f.status().fallback_activations, 1);
  }

  #[tokio::test]
  async fn reply_errors_are_the_callers_and_refused_writes_keep_reads_on_redis() {
    let f = failover(true);
    let reply = Error::Redis {
      kind: RedisFailure::Reply,
      message: "WRONGTYPE".into(),
    };
    assert_eq!(f.on_failure(reply.clone()), Err(reply));
    let oom = Error::Redis {
      kind: RedisFailure::WriteRefused,
      message: "OOM".into(),
    };
    assert!(f.on_failure(oom).is_ok());
    assert!(f.redis_serves() && !f.takes_writes());
    assert!(f.status().writes_refused);
  }

  #[tokio::test]
  async fn without_fallback_an_outage_is_the_callers() {
    let f = failover(false);
    assert_eq!(f.on_failure(refused()).unwrap_err().code(), "ERR_REDIS_UNAVAILABLE");
    assert_eq!(f.refuse_without_fallback().unwrap_err().code(), "ERR_REDIS_UNAVAILABLE");
  }

  #[tokio::test]
  async fn a_simulated_outage_opens_at_once_and_fails_calls() {
    let f = failover(true);
    f.simulate(Simulation::Refuse);
    assert!(!f.redis_serves());
    let err = f.call(|| async { Ok(()) }).await.unwrap_err();
    assert!(err.is_outage());
  }
}
