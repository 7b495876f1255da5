//! Rate limiting: the generic cell rate algorithm (GCRA), counted in Redis by one atomic script
//! per check, with an in-process part ([`Limits`]) that refuses a flooding key without a Redis
//! call and limits locally, with this process's share, while Redis is down.
//!
//! ## The algorithm
//! A policy of `limit` per `window_ms` with `burst` spends one *interval*
//! (`window_ms / limit`) of a *tolerance* (`interval × burst`) per unit of cost; the tolerance
//! in use (the *debt*) drains at one microsecond per microsecond. A check is allowed when its
//! cost fits in what is left of the tolerance. Over any span of time `d` a key admits at most
//! `burst + d / interval` units: never more than `burst` at once, `limit` per window sustained.
//! Redis stores one number per limited key (the theoretical arrival time, µs of server time),
//! which expires once the debt has drained.
//!
//! ## Behavior
//! - A check that Redis answers records the key's debt in [`Limits`]; a later check whose cost
//!   that debt (a lower bound of the real one: other processes only add to it) already refuses
//!   is refused in-process, without a Redis call (flood protection).
//! - While Redis is down each process limits locally with a share of the policy: `1 / n` of the
//!   rate and of the burst for `n` live processes (counted in Redis by heartbeats before the
//!   outage), from the debt Redis last reported for the key. What it admits is counted into
//!   Redis on recovery, so the window that spans the outage is not exceeded.

mod limits;

pub use self::limits::{Limits, RateStats, HEARTBEAT_INTERVAL, LIVE_MS};

use crate::error::{Error, Result};

/// Largest `limit`, `burst` and `cost`.
pub const MAX_COUNT: u64 = 1_000_000_000;
/// Longest `windowMs`: one year.
pub const MAX_WINDOW_MS: u64 = 365 * 24 * 3600 * 1000;

/// A rate limit: `limit` per `window_ms`, at most `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Policy {
  /// Units admitted per window, sustained.
  pub limit: u64,
  /// The window in ms.
  pub window_ms: u64,
  /// Units admitted at once.
  pub burst: u64,
}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
  /// The check's cost was admitted (and counted).
  pub allowed: bool,
  /// The policy's limit per window.
  pub limit: u64,
  /// Units that could be admitted at once after this check.
  pub remaining: u64,
  /// ms until the full burst is available again.
  pub reset_ms: u64,
  /// ms until a check of the same cost would be allowed; 0 when allowed.
  pub retry_after_ms: u64,
}

fn whole(what: &str, value: f64, max: u64) -> Result<u64> {
  if !value.is_finite() || value < 1.0 || value.fract() != 0.0 || value > max as f64 {
    return Err(Error::invalid(format!(
      "{what} must be a whole number from 1 to {max}, got {value}"
    )));
  }
  Ok(value as u64)
}

impl Policy {
  /// A policy from the caller's numbers: whole, positive, finite, within bounds; `burst`
  /// defaults to `limit`.
  pub fn new(limit: f64, window_ms: f64, burst: Option<f64>) -> Result<Self> {
    let limit = whole("limit", limit, MAX_COUNT)?;
    let window_ms = whole("windowMs", window_ms, MAX_WINDOW_MS)?;
    let burst = match burst {
      Some(b) => whole("burst", b, MAX_COUNT)?,
      None => limit,
    };
    Ok(Policy {
      limit,
      window_ms,
      burst,
    })
  }

  /// The cost of a check: whole, positive, at most `burst` (a larger one could never pass).
  pub fn cost(&self, cost: f64) -> Result<u64> {
    let cost = whole("cost", cost, MAX_COUNT)?;
    if cost > self.burst {
      return Err(Error::invalid(format!(
        "cost {cost} is more than burst {}: such a check could never be allowed",
        self.burst
      )));
    }
    Ok(cost)
  }

  /// µs of tolerance one unit spends.
  pub fn interval_us(&self) -> f64 {
    self.window_ms as f64 * 1000.0 / self.limit as f64
  }

  /// µs of tolerance: `burst` units.
  pub fn tolerance_us(&self) -> f64 {
    self.interval_us() * self.burst as f64
  }

  /// The part of a limiter's Redis key that names the policy: checks of one key under two
  /// policies count separately.
  pub fn key_part(&self) -> String {
    format!("{}:{}:{}:", self.limit, self.window_ms, self.burst)
  }

  /// A check of `cost` against a debt of `debt_us`, for one of `share` processes (`1`: the
  /// whole policy): the decision and the debt after it.
  pub fn decide(&self, cost: u64, debt_us: f64, share: u64) -> (Decision, f64) {
    let interval = self.interval_us() * share.max(1) as f64;
    let after = debt_us + interval * cost as f64;
    let allowed = after <= self.tolerance_us() + 0.5;
    let debt = if allowed { after } else { debt_us };
    (self.describe(cost, allowed, debt, share), debt)
  }

  /// The decision for a check of `cost` that was `allowed` (or not) leaving `debt_us`, for
  /// one of `share` processes.
  pub fn describe(&self, cost: u64, allowed: bool, debt_us: f64, share: u64) -> Decision {
    let interval = self.interval_us() * share.max(1) as f64;
    let room = (self.tolerance_us() - debt_us).max(0.0);
    let remaining = ((room + 0.5) / interval).floor() as u64;
    let retry_after_us = if allowed {
      0.0
    } else {
      (debt_us + interval * cost as f64 - self.tolerance_us()).max(0.0)
    };
    Decision {
      allowed,
      limit: self.limit,
      remaining: remaining.min(self.burst),
      reset_ms: ms_up(debt_us),
      retry_after_ms: if allowed { 0 } else { ms_up(retry_after_us).max(1) },
    }
  }
}

fn ms_up(us: f64) -> u64 {
  (us.max(0.0) / 1000.0).ceil() as u64
}

/// The check in Redis, atomic: `KEYS[1]` the limiter, `ARGV` interval µs, tolerance µs, cost,
/// `1` to count the cost whatever the debt (what a process admitted during an outage).
/// Replies `{allowed, debt µs}` (the debt after an allowed check, else the current one). The
/// time is Redis's (`TIME`: scripts are replicated by their effects, Redis 5 and later); the
/// arrival time is stored as an integer (a Lua number of 16 digits, written without exponent).
pub const CHECK_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local debt = tat - now
local after = debt + ARGV[1] * ARGV[3]
if ARGV[4] ~= '1' and after > ARGV[2] + 0.5 then
  return {0, math.floor(debt)}
end
redis.call('SET', KEYS[1], math.floor(now + after), 'PX', math.ceil(after / 1000) + 1)
return {1, math.floor(after)}
";

/// The heartbeat of one process: `KEYS[1]` the set of live processes, `ARGV` this process's
/// id and how long (ms) a process counts without a heartbeat. Replies the live processes.
pub const HEARTBEAT_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local live = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - live)
redis.call('PEXPIRE', KEYS[1], live * 2)
return redis.call('ZCARD', KEYS[1])
";

#[cfg(test)]
mod tests {
  use super::*;

  fn policy(limit: u64, window_ms: u64, burst: u64) -> Policy {
    Policy {
      limit,
      window_ms,
      burst,
    }
  }

  #[test]
  fn bad_numbers_are_refused() {
    for bad in [0.0, -1.0, 1.5, f64::NAN, f64::INFINITY, 1e12] {
      assert!(Policy::new(bad, 1000.0, None).is_err(), "limit {bad}");
      assert!(Policy::new(10.0, bad, None).is_err(), "windowMs {bad}");
      assert!(Policy::new(10.0, 1000.0, Some(bad)).is_err(), "burst {bad}");
      assert!(policy(10, 1000, 10).cost(bad).is_err(), "cost {bad}");
    }
    let err = policy(10, 1000, 5).cost(6.0).unwrap_err();
    assert_eq!(err.code(), "ERR_INVALID_ARG");
    assert!(err.to_string().contains("more than burst"), "{err}");
    assert_eq!(Policy::new(10.0, 1000.0, None).unwrap().burst, 10);
  }

  #[test]
  fn a_burst_at_once_then_one_per_interval() {
    let p = policy(10, 1000, 5);
    let mut debt = 0.0;
    for i in 0..5 {
      let (d, after) = p.decide(1, debt, 1);
      assert!(d.allowed, "check {i}");
      assert_eq!(d.remaining, 4 - i);
      debt = after;
    }
    let (d, after) = p.decide(1, debt, 1);
    assert!(!d.allowed);
    assert_eq!(d.remaining, 0);
    assert_eq!(d.retry_after_ms, 100, "one interval of 100 ms");
    assert_eq!(d.reset_ms, 500, "the whole burst back in 5 intervals");
    assert_eq!(after, debt, "a refused check costs nothing");
    // 100 ms later one more fits
    let (d, _) = p.decide(1, debt - 100_000.0, 1);
    assert!(d.allowed);
  }

  #[test]
  fn the_sustained_rate_is_the_limit_per_window() {
    // over 10 s of checks every ms, a policy of 100 per second admits burst + 10 s × 100
    let p = policy(100, 1000, 20);
    let (mut debt, mut admitted) = (0.0, 0u64);
    for _ in 0..10_000 {
      let (d, after) = p.decide(1, debt, 1);
      admitted += d.allowed as u64;
      debt = (after - 1000.0).max(0.0);
    }
    assert!((1019..=1020).contains(&admitted), "{admitted}");
  }

  #[test]
  fn a_share_divides_the_rate_and_the_burst() {
    let p = policy(20, 1000, 20);
    // 4 processes, 5 units consumed before: each admits a quarter of the 15 left (3.75 -> 3)
    let consumed = 5.0 * p.interval_us();
    let mut debt = consumed;
    let mut admitted = 0;
    loop {
      let (d, after) = p.decide(1, debt, 4);
      if !d.allowed {
        break;
      }
      admitted += 1;
      debt = after;
    }
    assert_eq!(admitted, 3);
    // alone: the 15 left
    let (d, _) = p.decide(1, consumed, 1);
    assert_eq!(d.remaining, 14);
  }

  #[test]
  fn a_fractional_interval_keeps_its_bound() {
    let p = policy(3, 1000, 3); // 333,333.3 µs per unit
    let (mut debt, mut admitted) = (0.0, 0);
    for _ in 0..3 {
      let (d, after) = p.decide(1, debt, 1);
      admitted += d.allowed as u32;
      debt = after;
    }
    assert_eq!(admitted, 3);
    assert!(!p.decide(1, debt, 1).0.allowed);
  }
}
