//! Deciding, per call, whether Redis is tried, and how a failing call is retried.
//!
//! This is the first, simple version of the failure model (DESIGN.md section 3):
//! a call tries Redis, retrying with jittered exponential backoff only while its
//! budget (`commandTimeoutMs`) lasts; an outage-class failure closes the [`Gate`]
//! for a backoff pause during which calls go straight to the in-process store, so
//! only one call per pause waits for a dead Redis.
//!
//! ## Behavior
//! - Consecutive failures lengthen the pause (`baseDelayMs * 2^n`, capped at
//!   `maxDelayMs`, with jitter); the first success resets it.
//! - Reply errors (e.g. `WRONGTYPE`) are not outages and are neither retried nor
//!   counted; misconfiguration is an outage but is never retried within a call.

use std::future::Future;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::RetryConfig;
use crate::error::{Error, Result};

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

/// Whether Redis may be tried now, and what went wrong last.
pub struct Gate {
  epoch: Instant,
  closed_until_ms: AtomicU64,
  consecutive_failures: AtomicU32,
  base: Duration,
  max: Duration,
  last_error: Mutex<Option<String>>,
}

impl Gate {
  /// An open gate; pauses grow from `base` to `max`.
  pub fn new(base: Duration, max: Duration) -> Self {
    Gate {
      epoch: Instant::now(),
      closed_until_ms: AtomicU64::new(0),
      consecutive_failures: AtomicU32::new(0),
      base: base.max(Duration::from_millis(1)),
      max: max.max(Duration::from_millis(1)),
      last_error: Mutex::new(None),
    }
  }

  fn now_ms(&self) -> u64 {
    self.epoch.elapsed().as_millis() as u64
  }

  /// True when a call should try Redis.
  pub fn allows_redis(&self) -> bool {
    self.now_ms() >= self.closed_until_ms.load(Ordering::Relaxed)
  }

  /// True after a failure that no success has followed yet.
  pub fn is_degraded(&self) -> bool {
    self.consecutive_failures.load(Ordering::Relaxed) > 0
  }

  /// Records a successful Redis call.
  pub fn on_success(&self) {
    if self.consecutive_failures.swap(0, Ordering::Relaxed) > 0 {
      self.closed_until_ms.store(0, Ordering::Relaxed);
    }
  }

  /// Records an outage-class failure and closes the gate for a backoff pause.
  pub fn on_failure(&self, err: &Error) {
    let n = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
    let pause = backoff(n, self.base, self.max, jitter());
    self
      .closed_until_ms
      .store(self.now_ms() + pause.as_millis() as u64, Ordering::Relaxed);
    *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(err.to_string());
  }

  /// The message of the last failure, if any.
  pub fn last_error(&self) -> Option<String> {
    self
      .last_error
      .lock()
      .unwrap_or_else(|p| p.into_inner())
      .clone()
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
    assert_eq!(
      calls.get(),
      1,
      "a 50 ms backoff does not fit a 10 ms budget"
    );
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

  #[test]
  fn gate_closes_on_failure_and_reopens_on_success() {
    let gate = Gate::new(Duration::from_secs(60), Duration::from_secs(60));
    assert!(gate.allows_redis());
    gate.on_failure(&refused());
    assert!(!gate.allows_redis());
    assert!(gate.is_degraded());
    assert_eq!(gate.last_error().as_deref(), Some("redis: refused"));
    gate.on_success();
    assert!(gate.allows_redis());
    assert!(!gate.is_degraded());
  }

  #[test]
  fn gate_pause_ends() {
    let gate = Gate::new(MS, 2 * MS);
    gate.on_failure(&refused());
    std::thread::sleep(5 * MS);
    assert!(gate.allows_redis());
  }
}
