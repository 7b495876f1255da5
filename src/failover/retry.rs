//! The retry policy of one Redis call: jittered exponential backoff within a time budget.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::config::RetryConfig;
use crate::error::Result;

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

/// Runs `op` until it succeeds, fails with an error retrying cannot fix (not an outage, or a
/// misconfiguration), runs out of attempts, or the next backoff would end past `budget`.
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

#[cfg(test)]
mod tests {
  use super::*;
  use crate::error::{Error, RedisFailure};
  use std::cell::Cell;

  const MS: Duration = Duration::from_millis(1);

  fn refused() -> Error {
    Error::Redis {
      kind: RedisFailure::Connection,
      message: "refused".into(),
    }
  }

  fn policy(attempts: u32, base: Duration, max: Duration) -> RetryConfig {
    RetryConfig {
      attempts,
      base_delay: base,
      max_delay: max,
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
    let calls = Cell::new(0);
    let r: Result<()> = with_retry(&policy(3, MS, 2 * MS), Duration::from_secs(5), || {
      calls.set(calls.get() + 1);
      async { Err(refused()) }
    })
    .await;
    assert!(r.is_err());
    assert_eq!(calls.get(), 3);
  }

  #[tokio::test]
  async fn succeeds_after_a_transient_failure() {
    let calls = Cell::new(0);
    let r = with_retry(&policy(3, MS, 2 * MS), Duration::from_secs(5), || {
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
    let slow = policy(10, 50 * MS, 50 * MS);
    let calls = Cell::new(0);
    let _ = with_retry::<(), _, _>(&slow, 10 * MS, || {
      calls.set(calls.get() + 1);
      async { Err(refused()) }
    })
    .await;
    assert_eq!(calls.get(), 1, "a 50 ms backoff does not fit a 10 ms budget");
    calls.set(0);
    let _ = with_retry::<(), _, _>(&slow, Duration::from_secs(5), || {
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
