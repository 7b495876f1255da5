//! Failover: the Redis call budget, what a failure does, and recovery.
//!
//! DESIGN.md section 3, as built here:
//! - A call tries Redis, retrying with jittered exponential backoff only while its
//!   budget (`commandTimeoutMs`) lasts ([`with_retry`]); past it the call is served
//!   by the in-process store.
//! - Outage-class failures (timeout, refused/reset, protocol, misconfiguration)
//!   feed the [breaker](crate::breaker); reply errors (e.g. `WRONGTYPE`) are not
//!   outages and are neither retried nor counted. Misconfiguration is reported
//!   (`error` event, last error) and never retried within a call.
//! - One background recovery task per cache (a tokio task holding only a `Weak`
//!   reference, so it never keeps the cache or Node alive) probes Redis with
//!   backoff while the breaker is open, replays the journal when Redis answers,
//!   closes the breaker, and keeps replaying whatever single failed calls journal
//!   while it is closed.
//! - [`Simulation`] makes every Redis call of the cache fail as if Redis refused
//!   or hung, through exactly the same path (for applications' own tests).

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Weak;
use std::time::{Duration, Instant};

use futures_util::future::try_join_all;

use crate::breaker::{FailureKind, State, Transition};
use crate::cache::Cache;
use crate::config::RetryConfig;
use crate::error::{Error, RedisFailure, Result};
use crate::events::Event;
use crate::journal::{Batch, KeyOp};
use crate::store::{RedisStore, Store};

/// The delay before attempt `attempt + 1` (attempt >= 1): `base * 2^(attempt-1)`
/// capped at `max`, scaled by `jitter` in `[0.5, 1.0]` ("equal jitter").
pub fn backoff(attempt: u32, base: Duration, max: Duration, jitter: f64) -> Duration {
  let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
  exp.min(max).mul_f64(jitter.clamp(0.5, 1.0))
}

/// A cheap jitter source in `[0.5, 1.0)` (xorshift over a shared seed); not for cryptography.
pub fn jitter() -> f64 {
  static SEED: AtomicU64 = AtomicU64::new(0x9E37_79B9_7F4A_7C15);
  let mut x = SEED.load(Ordering::Relaxed) ^ (Instant::now().elapsed().as_nanos() as u64);
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  SEED.store(x, Ordering::Relaxed);
  0.5 + (x >> 11) as f64 / (1u64 << 54) as f64
}

/// Runs `op` until it succeeds, fails with a non-retryable error, runs out of
/// attempts, or the next backoff would end past `budget`.
pub async fn with_retry<T, F, Fut>(policy: &RetryConfig, budget: Duration, mut op: F) -> Result<T>
where
  F: FnMut() -> Fut,
  Fut: Future<Output = Result<T>>,
{
  let deadline = Instant::now() + budget;
  let mut attempt = 1;
  loop {
    let err = match op().await {
      Ok(v) => return Ok(v),
      Err(e) => e,
    };
    if !err.is_outage() || err.is_misconfiguration() || attempt >= policy.attempts {
      return Err(err);
    }
    let delay = backoff(attempt, policy.base_delay, policy.max_delay, jitter());
    if Instant::now() + delay >= deadline {
      return Err(err);
    }
    tokio::time::sleep(delay).await;
    attempt += 1;
  }
}

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

/// Fastest probe interval while the breaker is open.
pub const PROBE_MIN_DELAY: Duration = Duration::from_millis(50);
/// Slowest probe interval while the breaker is open (recovery is seen within about
/// twice this after Redis returns, two healthy probes being needed).
pub const PROBE_MAX_DELAY: Duration = Duration::from_millis(500);
/// Longest pause between replay attempts that Redis keeps refusing.
pub const REPLAY_MAX_DELAY: Duration = Duration::from_secs(30);
/// Journal operations applied to Redis concurrently during replay.
pub const REPLAY_CONCURRENCY: usize = 64;

enum Step {
  /// Nothing left to do: the task ends.
  Done,
  /// Go on at once.
  Continue,
  /// Wait for the next probe.
  Wait,
}

impl Cache {
  /// Runs one Redis operation within the call budget, with retries, honouring a
  /// simulated outage.
  pub(crate) async fn redis_call<T, F, Fut>(&self, op: F) -> Result<T>
  where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T>>,
  {
    let started = Instant::now();
    let attempt = with_retry(&self.config.retry, self.config.command_timeout, || {
      self.unless_simulated(op())
    });
    let result = self.within_budget("call", attempt).await;
    match &result {
      Ok(_) => self.metrics.redis_latency(started.elapsed()),
      Err(e) => self.metrics.redis_error(e.is_timeout()),
    }
    result
  }

  /// `fut` bounded by the command timeout.
  async fn within_budget<T>(&self, what: &str, fut: impl Future<Output = Result<T>>) -> Result<T> {
    let budget = self.config.command_timeout;
    match tokio::time::timeout(budget, fut).await {
      Ok(r) => r,
      Err(_) => Err(Error::timeout(what, budget.as_millis() as u64)),
    }
  }

  /// `fut`, unless a simulated outage makes the call fail (or hang) first.
  async fn unless_simulated<T>(&self, fut: impl Future<Output = Result<T>>) -> Result<T> {
    self.simulated_failure().await?;
    fut.await
  }

  async fn simulated_failure(&self) -> Result<()> {
    match self.simulation() {
      Simulation::None => Ok(()),
      Simulation::Refuse => Err(Error::Redis {
        kind: RedisFailure::Refused,
        message: "simulated outage: connection refused".into(),
      }),
      Simulation::Hang => std::future::pending().await,
    }
  }

  /// The simulated outage in force.
  pub fn simulation(&self) -> Simulation {
    match self.simulation.load(Ordering::Relaxed) {
      1 => Simulation::Refuse,
      2 => Simulation::Hang,
      _ => Simulation::None,
    }
  }

  /// Starts (or, with `Simulation::None`, ends) a simulated outage. Starting one
  /// opens the breaker at once, as repeated failures would.
  pub fn simulate_outage(&self, mode: Simulation) {
    self.simulation.store(mode as u8, Ordering::Relaxed);
    if mode != Simulation::None && self.redis.is_some() {
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

  /// Classifies a failed Redis call: `Ok(())` means "serve it from memory",
  /// `Err` is what the caller gets (a reply error, or an outage without fallback).
  pub(crate) fn on_redis_failure(&self, err: Error) -> Result<()> {
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
    if !self.config.fallback().enabled {
      return Err(Error::RedisUnavailable(format!(
        "Redis is unavailable and fallback is disabled: {err}"
      )));
    }
    self.ensure_recovery();
    Ok(())
  }

  /// An `error` event for a misconfiguration, once per episode (until the breaker closes),
  /// whichever found it first: a data call, `health()` or the recovery probe.
  fn report_misconfiguration(&self, err: &Error) {
    if !self.misconfiguration_reported.swap(true, Ordering::AcqRel) {
      self.events.emit(Event::Error {
        message: err.to_string(),
        kind: "misconfiguration",
      });
    }
  }

  /// Redis refused a write for capacity or role: a partial outage. Reads stay on Redis;
  /// writes go to the in-process store and the journal (the caller's write succeeds) until
  /// the recovery task replays the journal, retrying with backoff. One `error` event per
  /// episode. Without fallback the caller gets `ERR_REDIS_UNAVAILABLE`.
  fn on_write_refused(&self, err: Error) -> Result<()> {
    self.set_last_error(&err);
    self.metrics.write_refused();
    if !self.config.fallback().enabled {
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
    self.events.emit(Event::Fallback {
      cause: cause.to_string(),
      kind,
    });
    self.ensure_recovery();
  }

  pub(crate) fn set_last_error(&self, err: &Error) {
    *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(err.to_string());
  }

  /// Starts the recovery task unless it runs already (needs a tokio runtime).
  pub(crate) fn ensure_recovery(&self) {
    if self.redis.is_none() || self.recovering.swap(true, Ordering::AcqRel) {
      return;
    }
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
      self.recovering.store(false, Ordering::Release);
      return;
    };
    handle.spawn(recovery_loop(self.me.clone()));
  }

  fn needs_recovery(&self) -> bool {
    !self.is_closed() && (!self.journal.is_empty() || self.breaker.state() != State::Closed)
  }

  async fn recovery_step(&self) -> Step {
    match self.breaker.state() {
      State::Open => {
        let healthy = match self.probe().await {
          Ok(()) => true,
          Err(e) => {
            self.set_last_error(&e);
            if e.is_misconfiguration() {
              self.report_misconfiguration(&e);
            }
            false
          }
        };
        if self.breaker.on_probe(healthy) {
          Step::Continue
        } else {
          Step::Wait
        }
      }
      State::HalfOpen => match self.replay().await {
        Ok(()) => {
          if let Some(outage_ms) = self.breaker.close(self.now_ms()) {
            self.misconfiguration_reported.store(false, Ordering::Release);
            self.mode_since_ms.store(self.now_ms(), Ordering::Relaxed);
            self.memory.clear();
            let replayed = self.replayed.swap(0, Ordering::Relaxed);
            self.events.emit(Event::Recovered { outage_ms, replayed });
          }
          Step::Continue
        }
        Err(e) => {
          self.set_last_error(&e);
          self.breaker.reopen();
          Step::Wait
        }
      },
      State::Closed if self.journal.is_empty() => {
        // everything written while Redis refused writes is in Redis now
        self.writes_refused.store(false, Ordering::Release);
        Step::Done
      }
      State::Closed => match self.replay().await {
        Ok(()) => Step::Continue,
        Err(e) if e.is_write_refused() => {
          // still refused: the episode goes on, probed again after a backoff
          self.set_last_error(&e);
          Step::Wait
        }
        Err(e) => {
          let _ = self.on_redis_failure(e);
          Step::Wait
        }
      },
    }
  }

  async fn probe(&self) -> Result<()> {
    let redis = self.redis.as_ref().ok_or(Error::Closed)?;
    let rtt = self.simulated_failure_or_timeout(redis.ping()).await?;
    self.pings.record(rtt);
    Ok(())
  }

  /// Like [`Cache::redis_call`] without retries: one attempt within the budget.
  pub(crate) async fn simulated_failure_or_timeout<T>(&self, fut: impl Future<Output = Result<T>>) -> Result<T> {
    self.within_budget("probe", self.unless_simulated(fut)).await
  }

  /// Applies the journal to Redis; entries leave the journal only once applied.
  async fn replay(&self) -> Result<()> {
    match self.replay_quietly().await {
      Ok(()) => {
        self.replay_failures.store(0, Ordering::Relaxed);
        Ok(())
      }
      // reported once per episode (`on_write_refused`); probed with the short backoff
      Err(e) if e.is_write_refused() => Err(e),
      Err(e) => {
        // a refusal retrying cannot fix (ACL without EVAL, say) backs the loop off and is
        // reported once per run of failures; a transient one is reported each time
        let persistent = !e.is_outage() || e.is_misconfiguration();
        let report = !persistent || self.replay_failures.fetch_add(1, Ordering::Relaxed) == 0;
        if report {
          self.events.emit(Event::Error {
            message: format!("replay failed, will retry: {e}"),
            kind: "replay",
          });
        }
        Err(e)
      }
    }
  }

  /// [`Cache::replay`] without events or failure bookkeeping (also the last attempt of
  /// [`Cache::close_gracefully`]).
  pub(crate) async fn replay_quietly(&self) -> Result<()> {
    let batch = self.journal.snapshot(Instant::now());
    if batch.is_empty() {
      return Ok(());
    }
    self.apply(&batch).await?;
    self.replayed.fetch_add(batch.len() as u64, Ordering::Relaxed);
    Ok(())
  }

  /// Replays `batch` in order, committing what is applied as it goes (the prefixes, then
  /// each chunk of keys): what a failure interrupts stays journaled for the next replay.
  async fn apply(&self, batch: &Batch) -> Result<()> {
    let redis = self.redis.as_ref().ok_or(Error::Closed)?;
    for prefix in batch.wipes.iter().chain(batch.prefixes.iter()) {
      self.simulated_failure_or_timeout(async { Ok(()) }).await?;
      redis.invalidate_prefix(prefix).await?;
    }
    self.journal.commit_prefixes(batch);
    for (n, chunk) in batch.keys.chunks(REPLAY_CONCURRENCY).enumerate() {
      // the remaining TTL is computed per chunk, right before it is sent
      let now = Instant::now();
      let pending: Vec<_> = chunk
        .iter()
        .map(|(key, op)| self.apply_one(redis, key, op, now))
        .collect();
      try_join_all(pending).await?;
      let start = n * REPLAY_CONCURRENCY;
      self.journal.commit_keys(batch, start..start + chunk.len());
    }
    Ok(())
  }

  async fn apply_one(&self, redis: &RedisStore, key: &str, op: &KeyOp, now: Instant) -> Result<()> {
    let write = async {
      match op {
        KeyOp::Set {
          value,
          expires_at,
          force,
        } if *expires_at > now => {
          let ms = (*expires_at - now).as_millis().max(1) as u64;
          if *force {
            redis.set(key, value, ms).await
          } else {
            redis.set_if_later(key, value, ms).await.map(|_| ())
          }
        }
        _ => redis.delete(key).await.map(|_| ()),
      }
    };
    self.simulated_failure_or_timeout(write).await
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

/// The recovery task: holds only a `Weak` reference between steps, so a dropped
/// cache ends it, and it never keeps the process alive.
async fn recovery_loop(weak: Weak<Cache>) {
  let mut waits = 0u32;
  loop {
    let delay = {
      let Some(cache) = weak.upgrade() else { return };
      if cache.is_closed() {
        cache.recovering.store(false, Ordering::Release);
        return;
      }
      match cache.recovery_step().await {
        Step::Done => {
          cache.recovering.store(false, Ordering::Release);
          // something may have been journaled between the check and the store
          if cache.needs_recovery() && !cache.recovering.swap(true, Ordering::AcqRel) {
            continue;
          }
          return;
        }
        Step::Continue => {
          waits = 0;
          Duration::ZERO
        }
        Step::Wait => {
          waits += 1;
          match cache.replay_failures.load(Ordering::Relaxed) {
            // Redis answers PING but refuses the replay (e.g. an ACL without EVAL): back off far
            0 => backoff(waits, PROBE_MIN_DELAY, PROBE_MAX_DELAY, jitter()),
            n => backoff(n, PROBE_MAX_DELAY, REPLAY_MAX_DELAY, jitter()),
          }
        }
      }
    };
    if delay.is_zero() {
      tokio::task::yield_now().await;
    } else {
      tokio::time::sleep(delay).await;
    }
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::error::RedisFailure;
  use std::cell::Cell;

  const MS: Duration = Duration::from_millis(1);

  fn refused() -> Error {
    Error::Redis {
      kind: RedisFailure::Connection,
      message: "refused".into(),
    }
  }

  #[test]
  fn backoff_doubles_and_caps() {
    assert_eq!(backoff(1, 10 * MS, 1000 * MS, 1.0), 10 * MS);
    assert_eq!(backoff(2, 10 * MS, 1000 * MS, 1.0), 20 * MS);
    assert_eq!(backoff(4, 10 * MS, 1000 * MS, 1.0), 80 * MS);
    assert_eq!(backoff(30, 10 * MS, 1000 * MS, 1.0), 1000 * MS);
    assert_eq!(backoff(2, 10 * MS, 1000 * MS, 0.5), 10 * MS);
  }

  #[test]
  fn jitter_stays_in_range() {
    for _ in 0..10_000 {
      let j = jitter();
      assert!((0.5..1.0).contains(&j), "{j}");
    }
  }

  #[tokio::test]
  async fn retries_outages_up_to_the_attempt_count() {
    let policy = RetryConfig {
      attempts: 3,
      base_delay: MS,
      max_delay: 2 * MS,
    };
    let calls = Cell::new(0);
    let r: Result<()> = with_retry(&policy, Duration::from_secs(5), || {
      calls.set(calls.get() + 1);
      async { Err(refused()) }
    })
    .await;
    assert!(r.is_err());
    assert_eq!(calls.get(), 3);
  }

  #[tokio::test]
  async fn succeeds_after_a_transient_failure() {
    let policy = RetryConfig {
      attempts: 3,
      base_delay: MS,
      max_delay: 2 * MS,
    };
    let calls = Cell::new(0);
    let r = with_retry(&policy, Duration::from_secs(5), || {
      calls.set(calls.get() + 1);
      let n = calls.get();
      async move {
        if n == 1 {
          Err(refused())
        } else {
          Ok(n)
        }
      }
    })
    .await;
    assert_eq!(r.unwrap(), 2);
  }

  #[tokio::test]
  async fn never_retries_past_the_budget_or_on_reply_errors() {
    let policy = RetryConfig {
      attempts: 10,
      base_delay: 50 * MS,
      max_delay: 50 * MS,
    };
    let calls = Cell::new(0);
    let _ = with_retry::<(), _, _>(&policy, 10 * MS, || {
      calls.set(calls.get() + 1);
      async { Err(refused()) }
    })
    .await;
    assert_eq!(calls.get(), 1, "a 50 ms backoff does not fit a 10 ms budget");
    calls.set(0);
    let _ = with_retry::<(), _, _>(&policy, Duration::from_secs(5), || {
      calls.set(calls.get() + 1);
      async {
        Err(Error::Redis {
          kind: RedisFailure::Reply,
          message: "WRONGTYPE".into(),
        })
      }
    })
    .await;
    assert_eq!(calls.get(), 1);
  }
}
