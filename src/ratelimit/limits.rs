//! The in-process part of rate limiting: per limited key, the debt Redis last reported (flood
//! protection, and where the local limiter starts), the local decisions made while Redis is
//! down and what they admitted (counted into Redis on recovery), and the number of live
//! processes sharing the limits.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{Decision, Policy};

/// How often a process tells Redis it is alive, once it has checked a limit.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// A process counts as live for this long (ms) after its last heartbeat.
pub const LIVE_MS: u64 = 5000;
/// Locks the keys are spread over.
const SHARDS: usize = 16;
/// Keys remembered per shard; past it, keys whose debt has drained are forgotten first.
const MAX_KEYS_PER_SHARD: usize = 8192;

/// What one process knows of a limited key.
struct KeyState {
  policy: Policy,
  /// The debt (µs) at `at`.
  debt_us: f64,
  at: Instant,
  /// Units admitted locally (an outage) and not yet counted in Redis.
  unsynced: u64,
  /// The share the local decisions were made with.
  share: u64,
}

impl KeyState {
  fn debt_now(&self, now: Instant) -> f64 {
    (self.debt_us - now.saturating_duration_since(self.at).as_micros() as f64).max(0.0)
  }
}

/// Counters of the in-process part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RateStats {
  /// Checks refused in-process, without a Redis call (a key known to be over its limit).
  pub refused_locally: u64,
  /// Checks decided by the local limiter (Redis down, or `memory://`).
  pub local_decisions: u64,
  /// Live processes sharing the limits, as Redis last counted them (0: never counted).
  pub processes: u64,
  /// Keys whose local consumption waits to be counted into Redis.
  pub unsynced_keys: u64,
}

/// One lock's share of the keys.
type Shard = Mutex<HashMap<Box<str>, KeyState>>;

/// The in-process part of one cache's rate limits.
pub struct Limits {
  shards: Box<[Shard]>,
  hasher: std::collections::hash_map::RandomState,
  processes: AtomicU64,
  unsynced_keys: AtomicU64,
  refused_locally: AtomicU64,
  local_decisions: AtomicU64,
  heartbeat: AtomicBool,
  instance: String,
}

impl Default for Limits {
  fn default() -> Self {
    Self::new()
  }
}

impl Limits {
  /// Empty, with a process id unique to this cache.
  pub fn new() -> Self {
    static CACHES: AtomicU64 = AtomicU64::new(0);
    let started = std::time::SystemTime::now()
      .duration_since(std::time::UNIX_EPOCH)
      .map_or(0, |d| d.as_nanos());
    Limits {
      shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
      hasher: Default::default(),
      processes: AtomicU64::new(0),
      unsynced_keys: AtomicU64::new(0),
      refused_locally: AtomicU64::new(0),
      local_decisions: AtomicU64::new(0),
      heartbeat: AtomicBool::new(false),
      instance: format!(
        "{}:{:x}:{}",
        std::process::id(),
        started,
        CACHES.fetch_add(1, Ordering::Relaxed)
      ),
    }
  }

  fn shard(&self, key: &str) -> std::sync::MutexGuard<'_, HashMap<Box<str>, KeyState>> {
    let shard = &self.shards[self.hasher.hash_one(key) as usize % SHARDS];
    shard.lock().unwrap_or_else(|p| p.into_inner())
  }

  /// A check that what this process knows of `full` already refuses: the debt Redis last
  /// reported, drained since, is a lower bound of the real one (other processes only add to
  /// it), so Redis would refuse it too. `None`: ask Redis.
  pub fn refuse_locally(&self, full: &str, policy: &Policy, cost: u64) -> Option<Decision> {
    let shard = self.shard(full);
    let state = shard.get(full)?;
    let debt = state.debt_now(Instant::now());
    let (decision, _) = policy.decide(cost, debt, 1);
    if decision.allowed {
      return None;
    }
    self.refused_locally.fetch_add(1, Ordering::Relaxed);
    Some(decision)
  }

  /// What Redis answered a check of `full` sent at `sent`: remembered (as of `sent`, so that
  /// what drains from it locally never outruns Redis's clock), and made a decision.
  pub fn observe(
    &self,
    full: &str,
    policy: &Policy,
    cost: u64,
    allowed: bool,
    debt_us: f64,
    sent: Instant,
  ) -> Decision {
    let now = sent;
    let mut shard = self.shard(full);
    match shard.get_mut(full) {
      Some(state) => {
        state.policy = *policy;
        state.debt_us = debt_us;
        state.at = now;
      }
      None => {
        self.forget_unsynced(make_room(&mut shard, now));
        shard.insert(
          full.into(),
          KeyState {
            policy: *policy,
            debt_us,
            at: now,
            unsynced: 0,
            share: 1,
          },
        );
      }
    }
    policy.describe(cost, allowed, debt_us, 1)
  }

  /// A check decided in-process with `share` processes (Redis down: this process's share, from
  /// the debt Redis last reported; `memory://`: 1). With `journal`, what it admits waits to be
  /// counted into Redis ([`Limits::take_unsynced`]).
  pub fn decide_locally(&self, full: &str, policy: &Policy, cost: u64, share: u64, journal: bool) -> Decision {
    let now = Instant::now();
    self.local_decisions.fetch_add(1, Ordering::Relaxed);
    let mut shard = self.shard(full);
    if !shard.contains_key(full) {
      self.forget_unsynced(make_room(&mut shard, now));
    }
    let state = shard.entry(full.into()).or_insert(KeyState {
      policy: *policy,
      debt_us: 0.0,
      at: now,
      unsynced: 0,
      share,
    });
    state.policy = *policy;
    state.share = share;
    let (decision, debt) = policy.decide(cost, state.debt_now(now), share);
    state.debt_us = debt;
    state.at = now;
    if decision.allowed && journal {
      if state.unsynced == 0 {
        self.unsynced_keys.fetch_add(1, Ordering::AcqRel);
      }
      state.unsynced += cost;
    }
    decision
  }

  fn forget_unsynced(&self, keys: u64) {
    if keys > 0 {
      self.unsynced_keys.fetch_sub(keys, Ordering::AcqRel);
    }
  }

  /// Some local consumption waits to be counted into Redis.
  pub fn has_unsynced(&self) -> bool {
    self.unsynced_keys.load(Ordering::Acquire) > 0
  }

  /// Takes what was admitted locally and still counts, per key: (full key, policy, units).
  /// Units whose debt has drained since are left out (counting them at once would refuse
  /// far more than the window that spans the outage allows): a key counts at most what its
  /// local debt still holds, in units of the whole policy (`debt / (interval × share)`,
  /// rounded up).
  pub fn take_unsynced(&self) -> Vec<(String, Policy, u64)> {
    let now = Instant::now();
    let (mut out, mut taken) = (Vec::new(), 0);
    for shard in self.shards.iter() {
      let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
      for (key, state) in shard.iter_mut().filter(|(_, s)| s.unsynced > 0) {
        taken += 1;
        let unsynced = std::mem::take(&mut state.unsynced);
        let in_window = (state.debt_now(now) / (state.policy.interval_us() * state.share as f64)).ceil() as u64;
        if unsynced.min(in_window) > 0 {
          out.push((key.to_string(), state.policy, unsynced.min(in_window)));
        }
      }
    }
    self.unsynced_keys.fetch_sub(taken, Ordering::AcqRel);
    out
  }

  /// Puts back what [`Limits::take_unsynced`] took and could not be counted into Redis.
  pub fn restore_unsynced(&self, items: Vec<(String, Policy, u64)>) {
    let now = Instant::now();
    for (key, policy, units) in items {
      let mut shard = self.shard(&key);
      let state = shard.entry(key.into_boxed_str()).or_insert(KeyState {
        policy,
        debt_us: units as f64 * policy.interval_us(),
        at: now,
        unsynced: 0,
        share: 1,
      });
      if state.unsynced == 0 {
        self.unsynced_keys.fetch_add(1, Ordering::AcqRel);
      }
      state.unsynced += units;
    }
  }

  /// Live processes sharing the limits, as last counted (at least 1).
  pub fn share(&self) -> u64 {
    self.processes.load(Ordering::Relaxed).max(1)
  }

  /// Records how many live processes Redis counted.
  pub fn set_processes(&self, n: u64) {
    self.processes.store(n, Ordering::Relaxed);
  }

  /// This cache's id among the live processes.
  pub fn instance(&self) -> &str {
    &self.instance
  }

  /// True the first time: the caller starts the heartbeat.
  pub fn start_heartbeat(&self) -> bool {
    !self.heartbeat.swap(true, Ordering::AcqRel)
  }

  /// The heartbeat was started.
  pub fn heartbeat_started(&self) -> bool {
    self.heartbeat.load(Ordering::Acquire)
  }

  /// The counters.
  pub fn stats(&self) -> RateStats {
    RateStats {
      refused_locally: self.refused_locally.load(Ordering::Relaxed),
      local_decisions: self.local_decisions.load(Ordering::Relaxed),
      processes: self.processes.load(Ordering::Relaxed),
      unsynced_keys: self.unsynced_keys.load(Ordering::Relaxed),
    }
  }
}

/// Keeps a shard within [`MAX_KEYS_PER_SHARD`], making room for a quarter of it at once (so
/// the scan runs once per many inserts): keys whose debt has drained go first (they carry
/// nothing a later check needs), then keys without local consumption to count, then (a long
/// outage over very many keys) any key, its local consumption uncounted. Returns how many
/// keys with local consumption were dropped.
fn make_room(shard: &mut HashMap<Box<str>, KeyState>, now: Instant) -> u64 {
  const ROOM: usize = MAX_KEYS_PER_SHARD / 4 * 3;
  if shard.len() < MAX_KEYS_PER_SHARD {
    return 0;
  }
  shard.retain(|_, s| s.unsynced > 0 || s.debt_now(now) > 0.0);
  if shard.len() > ROOM {
    shard.retain(|_, s| s.unsynced > 0);
  }
  let excess = shard.len().saturating_sub(ROOM);
  if excess == 0 {
    return 0;
  }
  let victims: Vec<Box<str>> = shard.keys().take(excess).cloned().collect();
  for key in &victims {
    shard.remove(key);
  }
  victims.len() as u64
}

#[cfg(test)]
mod tests {
  use super::*;

  // 50 s per unit: nothing drains while a test runs
  const P: Policy = Policy {
    limit: 20,
    window_ms: 1_000_000,
    burst: 20,
  };

  #[test]
  fn a_key_redis_refused_is_refused_in_process_until_its_debt_allows() {
    let l = Limits::new();
    assert!(l.refuse_locally("k", &P, 1).is_none(), "unknown: ask Redis");
    let full = P.tolerance_us();
    let d = l.observe("k", &P, 1, false, full, Instant::now());
    assert!(!d.allowed);
    let local = l.refuse_locally("k", &P, 1).expect("refused without Redis");
    assert!(!local.allowed && local.retry_after_ms > 0);
    assert_eq!(l.stats().refused_locally, 1);
    // a debt that leaves room for one more: Redis is asked
    l.observe("k", &P, 1, true, full - P.interval_us(), Instant::now());
    assert!(l.refuse_locally("k", &P, 1).is_none());
    assert!(l.refuse_locally("k", &P, 2).is_some(), "a check of 2 cannot fit");
  }

  #[test]
  fn the_local_limiter_starts_from_what_redis_reported_and_counts_what_it_admits() {
    let l = Limits::new();
    // 5 of 20 consumed before the outage
    l.observe("k", &P, 1, true, 5.0 * P.interval_us(), Instant::now());
    let admitted = (0..40)
      .filter(|_| l.decide_locally("k", &P, 1, 1, true).allowed)
      .count();
    assert_eq!(admitted, 15);
    assert!(l.has_unsynced());
    let taken = l.take_unsynced();
    assert_eq!(taken, vec![("k".to_string(), P, 15)]);
    assert!(!l.has_unsynced());
    l.restore_unsynced(taken);
    assert_eq!(l.take_unsynced()[0].2, 15);
  }

  #[test]
  fn what_has_drained_since_is_not_counted_into_redis() {
    let l = Limits::new();
    let fast = Policy {
      limit: 1000,
      window_ms: 100,
      burst: 10,
    }; // 100 µs per unit
       // one of two processes: half the burst
    let admitted = (0..10)
      .filter(|_| l.decide_locally("k", &fast, 1, 2, true).allowed)
      .count();
    assert_eq!(admitted, 5);
    std::thread::sleep(Duration::from_millis(5));
    assert!(l.take_unsynced().is_empty(), "drained: nothing left to count");
    assert!(!l.has_unsynced());
  }

  #[test]
  fn with_four_processes_each_admits_its_share() {
    let l = Limits::new();
    l.set_processes(4);
    let admitted = (0..40)
      .filter(|_| l.decide_locally("k", &P, 1, l.share(), true).allowed)
      .count();
    assert_eq!(admitted, 5);
  }

  #[test]
  fn memory_is_bounded_and_local_consumption_is_kept() {
    let l = Limits::new();
    l.decide_locally("kept", &P, 1, 1, true);
    for i in 0..(SHARDS * MAX_KEYS_PER_SHARD * 2) {
      l.observe(&format!("k{i}"), &P, 1, true, 0.0, Instant::now());
    }
    let held: usize = l.shards.iter().map(|s| s.lock().unwrap().len()).sum();
    assert!(held <= SHARDS * MAX_KEYS_PER_SHARD, "{held}");
    assert_eq!(l.take_unsynced().len(), 1, "what waits to be counted goes last");
    // an outage over more keys than fit: still bounded, and the count of waiting keys right
    for i in 0..(SHARDS * MAX_KEYS_PER_SHARD * 2) {
      l.decide_locally(&format!("o{i}"), &P, 1, 1, true);
    }
    let held: usize = l.shards.iter().map(|s| s.lock().unwrap().len()).sum();
    assert!(held <= SHARDS * MAX_KEYS_PER_SHARD, "{held}");
    assert_eq!(l.stats().unsynced_keys as usize, held);
    assert_eq!(l.take_unsynced().len(), held);
  }
}
