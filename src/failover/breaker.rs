//! The circuit breaker: whether calls may go to Redis at all.
//!
//! ## Behavior
//! - `Closed`: calls go to Redis. Consecutive outage-class failures are counted;
//!   a success resets the count. Reaching `failure_threshold` (or one
//!   misconfiguration failure, which retrying cannot fix) opens the breaker, so one
//!   slow call never flaps it.
//! - `Open`: calls never touch Redis (no per-call timeout is paid); the in-process
//!   store serves them. Only the background probe talks to Redis.
//! - `HalfOpen`: the probe has seen `probe_successes` healthy answers in a row and
//!   the outage journal is being replayed; calls are still served from memory so
//!   nothing deleted or invalidated during the outage can be read back from Redis.
//!   Replay done: `Closed`. A failure during replay: `Open` again.
//! - Transitions are compare-and-swap, so concurrent callers produce each
//!   transition once (exactly one caller sees `Opened`).

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};

/// Breaker state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
  /// Redis serves calls.
  Closed = 0,
  /// Redis is out; memory serves calls; the probe watches Redis.
  Open = 1,
  /// Redis answers again; the journal is being replayed.
  HalfOpen = 2,
}

impl State {
  fn from_u8(v: u8) -> State {
    match v {
      0 => State::Closed,
      1 => State::Open,
      _ => State::HalfOpen,
    }
  }
}

/// Default consecutive failures that open the breaker.
pub const DEFAULT_FAILURE_THRESHOLD: u32 = 3;
/// Default consecutive healthy probes before replay starts.
pub const DEFAULT_PROBE_SUCCESSES: u32 = 2;

/// A transition caused by a call, for events and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
  /// Closed -> Open.
  Opened,
}

/// How a failure counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
  /// Timeout, refused, reset: counts toward the threshold.
  Transient,
  /// Credentials, TLS, DNS: opens at once.
  Misconfiguration,
}

/// Lock-free circuit breaker; time is passed in by the caller (milliseconds on any
/// monotonic clock), so tests drive it deterministically.
pub struct Breaker {
  state: AtomicU8,
  failures: AtomicU32,
  probe_successes: AtomicU32,
  failure_threshold: u32,
  probes_needed: u32,
  opened_at_ms: AtomicU64,
  opened_total: AtomicU64,
  open_ms_total: AtomicU64,
}

impl Breaker {
  /// A closed breaker.
  pub fn new(failure_threshold: u32, probes_needed: u32) -> Self {
    Breaker {
      state: AtomicU8::new(State::Closed as u8),
      failures: AtomicU32::new(0),
      probe_successes: AtomicU32::new(0),
      failure_threshold: failure_threshold.max(1),
      probes_needed: probes_needed.max(1),
      opened_at_ms: AtomicU64::new(0),
      opened_total: AtomicU64::new(0),
      open_ms_total: AtomicU64::new(0),
    }
  }

  /// The current state.
  pub fn state(&self) -> State {
    State::from_u8(self.state.load(Ordering::Acquire))
  }

  /// True when calls may try Redis.
  pub fn allows_calls(&self) -> bool {
    self.state() == State::Closed
  }

  /// Records a successful call (Closed state).
  pub fn on_success(&self) {
    if self.failures.load(Ordering::Relaxed) != 0 {
      self.failures.store(0, Ordering::Relaxed);
    }
  }

  /// Records a failed call; returns `Opened` to exactly one caller when this opens the breaker.
  pub fn on_failure(&self, kind: FailureKind, now_ms: u64) -> Option<Transition> {
    let n = self.failures.fetch_add(1, Ordering::AcqRel) + 1;
    if kind == FailureKind::Misconfiguration || n >= self.failure_threshold {
      return self.open_from(State::Closed, now_ms).then_some(Transition::Opened);
    }
    None
  }

  /// Records a probe answer while open; true when enough healthy probes in a row
  /// moved the breaker to `HalfOpen` (the caller then replays).
  pub fn on_probe(&self, healthy: bool) -> bool {
    if self.state() != State::Open {
      return false;
    }
    if !healthy {
      self.probe_successes.store(0, Ordering::Relaxed);
      return false;
    }
    let n = self.probe_successes.fetch_add(1, Ordering::AcqRel) + 1;
    n >= self.probes_needed && self.swap(State::Open, State::HalfOpen)
  }

  /// Replay finished: `HalfOpen` -> `Closed`. Returns the outage duration in ms.
  pub fn close(&self, now_ms: u64) -> Option<u64> {
    if !self.swap(State::HalfOpen, State::Closed) {
      return None;
    }
    self.failures.store(0, Ordering::Relaxed);
    let outage = now_ms.saturating_sub(self.opened_at_ms.load(Ordering::Relaxed));
    self.open_ms_total.fetch_add(outage, Ordering::Relaxed);
    Some(outage)
  }

  /// Replay failed: `HalfOpen` -> `Open` (the outage goes on).
  pub fn reopen(&self) -> bool {
    self.probe_successes.store(0, Ordering::Relaxed);
    self.swap(State::HalfOpen, State::Open)
  }

  /// Forces `Open` from `Closed` (e.g. a simulated outage); true if it opened now.
  pub fn force_open(&self, now_ms: u64) -> bool {
    self.open_from(State::Closed, now_ms)
  }

  /// When the current outage began (ms on the caller's clock), if open or half-open.
  pub fn opened_at_ms(&self) -> Option<u64> {
    (self.state() != State::Closed).then(|| self.opened_at_ms.load(Ordering::Relaxed))
  }

  /// How many times the breaker has opened.
  pub fn times_opened(&self) -> u64 {
    self.opened_total.load(Ordering::Relaxed)
  }

  /// Total ms spent open or half-open, including the current outage up to `now_ms`.
  pub fn open_ms_total(&self, now_ms: u64) -> u64 {
    let current = self.opened_at_ms().map_or(0, |at| now_ms.saturating_sub(at));
    self.open_ms_total.load(Ordering::Relaxed) + current
  }

  fn open_from(&self, from: State, now_ms: u64) -> bool {
    if !self.swap(from, State::Open) {
      return false;
    }
    self.opened_at_ms.store(now_ms, Ordering::Relaxed);
    self.probe_successes.store(0, Ordering::Relaxed);
    self.opened_total.fetch_add(1, Ordering::Relaxed);
    true
  }

  fn swap(&self, from: State, to: State) -> bool {
    self
      .state
      .compare_exchange(from as u8, to as u8, Ordering::AcqRel, Ordering::Acquire)
      .is_ok()
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use std::sync::{Arc, Barrier};

  #[test]
  fn one_failure_does_not_open() {
    let b = Breaker::new(3, 2);
    assert_eq!(b.on_failure(FailureKind::Transient, 0), None);
    b.on_success();
    assert_eq!(b.on_failure(FailureKind::Transient, 0), None);
    assert_eq!(b.on_failure(FailureKind::Transient, 0), None);
    assert!(b.allows_calls(), "a success in between resets the count");
  }

  #[test]
  fn threshold_of_consecutive_failures_opens() {
    let b = Breaker::new(3, 2);
    b.on_failure(FailureKind::Transient, 10);
    b.on_failure(FailureKind::Transient, 20);
    assert_eq!(b.on_failure(FailureKind::Transient, 30), Some(Transition::Opened));
    assert_eq!(b.state(), State::Open);
    assert!(!b.allows_calls());
    assert_eq!(b.opened_at_ms(), Some(30));
    assert_eq!(b.on_failure(FailureKind::Transient, 40), None, "already open");
  }

  #[test]
  fn misconfiguration_opens_at_once() {
    let b = Breaker::new(3, 2);
    assert_eq!(b.on_failure(FailureKind::Misconfiguration, 5), Some(Transition::Opened));
  }

  #[test]
  fn probes_then_replay_then_close() {
    let b = Breaker::new(1, 2);
    b.on_failure(FailureKind::Transient, 1000);
    assert!(!b.on_probe(true), "one healthy probe is not enough");
    assert!(!b.on_probe(false));
    assert!(!b.on_probe(true), "the unhealthy probe reset the run");
    assert!(b.on_probe(true));
    assert_eq!(b.state(), State::HalfOpen);
    assert!(!b.allows_calls(), "still memory while replaying");
    assert_eq!(b.close(1500), Some(500));
    assert_eq!(b.state(), State::Closed);
    assert_eq!(b.open_ms_total(9999), 500);
    assert_eq!(b.times_opened(), 1);
  }

  #[test]
  fn failed_replay_reopens() {
    let b = Breaker::new(1, 1);
    b.on_failure(FailureKind::Transient, 0);
    assert!(b.on_probe(true));
    assert!(b.reopen());
    assert_eq!(b.state(), State::Open);
    assert_eq!(b.close(10), None, "cannot close from open");
    assert!(b.on_probe(true));
    assert_eq!(b.close(10), Some(10));
  }

  #[test]
  fn open_time_counts_the_current_outage() {
    let b = Breaker::new(1, 1);
    b.on_failure(FailureKind::Transient, 100);
    assert_eq!(b.open_ms_total(350), 250);
  }

  #[test]
  fn concurrent_failures_open_exactly_once() {
    let b = Arc::new(Breaker::new(3, 1));
    let barrier = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8)
      .map(|_| {
        let (b, barrier) = (b.clone(), barrier.clone());
        std::thread::spawn(move || {
          barrier.wait();
          (0..100)
            .filter(|_| b.on_failure(FailureKind::Transient, 1).is_some())
            .count()
        })
      })
      .collect();
    let opened: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(opened, 1);
    assert_eq!(b.times_opened(), 1);
  }
}
