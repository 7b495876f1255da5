//! The near cache: a per-process L1 of the entries this process read from or wrote to Redis,
//! kept coherent by Redis's client tracking, and servable through an outage (fail-safe).
//!
//! ## Behavior
//! - Entries are JSON text in a byte-bounded store with per-tenant budgets (the
//!   [`MemoryStore`] of the fallback), each tagged with the tracking epoch it was read in, and
//!   expiring with its Redis TTL (never later).
//! - Tracking: the store's connection subscribes to invalidations of every key under the
//!   cache's `keyPrefix` (`CLIENT TRACKING ON BCAST PREFIX`); each (re)connection is a new
//!   *epoch*. An entry is served only while tracking is established and the entry belongs to
//!   the current epoch: after a reconnect nothing older is served.
//! - Races: a value is installed only with a [`Ticket`] taken before its command was sent;
//!   an invalidation of the key (or a write of this process to it, or a flush) in between
//!   voids the ticket, so a reply that raced an invalidation never installs a stale value.
//! - Fail-safe: once Redis fails, the entries of the epoch that was current when the outage
//!   began are served for up to `failSafeMs`; when Redis is back they are dropped (not served
//!   again before a read from Redis confirms them).

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::store::memory::{MemoryStats, Stored, TenantUsage};
use crate::store::redis::TrackingSink;
use crate::store::MemoryStore;

/// Invalidation counters: keys hash into this many buckets (a collision only costs a miss).
const BUCKETS: usize = 4096;

/// What the near cache tells about tracking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tracking {
  /// Not connected yet (no epoch).
  Idle,
  /// A connection is being opened and subscribed.
  Connecting,
  /// Invalidations arrive: entries of the current epoch are served.
  Active,
  /// The tracked connection was lost: nothing is served until a new one subscribes.
  Lost,
}

impl Tracking {
  /// `idle`, `connecting`, `active` or `lost`.
  pub fn name(self) -> &'static str {
    match self {
      Tracking::Idle => "idle",
      Tracking::Connecting => "connecting",
      Tracking::Active => "active",
      Tracking::Lost => "lost",
    }
  }
}

/// Taken before a command whose reply may be installed; valid while nothing invalidated the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
  epoch: u64,
  bucket: usize,
  count: u32,
  flushes: u32,
}

/// Counters of the near cache.
#[derive(Debug, Default)]
struct Counters {
  hits: AtomicU64,
  misses: AtomicU64,
  invalidations: AtomicU64,
  fail_safe_hits: AtomicU64,
}

/// A snapshot for `metrics()` and `health()`.
#[derive(Debug, Clone, PartialEq)]
pub struct NearStats {
  /// Reads the L1 answered.
  pub hits: u64,
  /// Reads that went to Redis (L1 had nothing servable).
  pub misses: u64,
  /// Keys whose invalidation Redis pushed (and flushes, counted once each).
  pub invalidations: u64,
  /// Reads answered from the L1 during an outage.
  pub fail_safe_hits: u64,
  /// Entries and bytes held, and the budget.
  pub memory: MemoryStats,
  /// The tracking state.
  pub tracking: Tracking,
  /// Tracking (re)established so far.
  pub epochs: u64,
}

/// The outage the fail-safe serves through: when it began and the epoch it froze.
#[derive(Debug, Clone, Copy)]
struct Outage {
  began: Instant,
  epoch: u64,
}

/// The near cache of one [`crate::cache::Cache`].
pub struct NearCache {
  store: MemoryStore,
  fail_safe: Duration,
  /// Writes of this process may be installed (they are not broadcast back to it: `NOLOOP`).
  installs_writes: bool,
  epoch: AtomicU64,
  /// The last epoch whose tracking was established: the one whose entries an outage serves
  /// (a reconnect attempt may have started a newer one that never subscribed).
  served: AtomicU64,
  active: AtomicBool,
  connecting: AtomicBool,
  buckets: Box<[AtomicU32]>,
  flushes: AtomicU32,
  outage: Mutex<Option<Outage>>,
  counters: Counters,
}

fn bucket_of(key: &str) -> usize {
  // FNV-1a: cheap, and only used to spread keys over counters
  let mut h: u32 = 0x811c_9dc5;
  for b in key.as_bytes() {
    h = (h ^ u32::from(*b)).wrapping_mul(0x0100_0193);
  }
  h as usize % BUCKETS
}

impl NearCache {
  /// An empty near cache of `max_bytes` (one tenant at most `tenant_max_bytes`) whose entries
  /// are served through an outage for `fail_safe`; `installs_writes`: this process's own writes
  /// are not broadcast back to it, so they may be installed.
  pub fn new(
    max_bytes: u64,
    tenant_max_bytes: u64,
    largest_entry: u64,
    fail_safe: Duration,
    installs_writes: bool,
  ) -> Self {
    NearCache {
      store: MemoryStore::with_tenant_budget(max_bytes, tenant_max_bytes, largest_entry),
      fail_safe,
      installs_writes,
      epoch: AtomicU64::new(0),
      served: AtomicU64::new(0),
      active: AtomicBool::new(false),
      connecting: AtomicBool::new(false),
      buckets: (0..BUCKETS).map(|_| AtomicU32::new(0)).collect(),
      flushes: AtomicU32::new(0),
      outage: Mutex::new(None),
      counters: Counters::default(),
    }
  }

  /// The value of `key` when it may be served now: tracking established, the entry read in the
  /// current epoch, its TTL not passed. Counts a hit (a miss is counted by the caller that goes
  /// to Redis instead, [`NearCache::count_miss`]).
  pub fn get(&self, key: &str) -> Option<Stored> {
    if !self.active.load(Ordering::Acquire) {
      return None;
    }
    let (stored, tag) = self.store.get_tagged(key)?;
    if tag != self.epoch.load(Ordering::Acquire) {
      return None;
    }
    self.counters.hits.fetch_add(1, Ordering::Relaxed);
    Some(stored)
  }

  /// During an outage: the value of `key` if the L1 held it when the outage began and the
  /// outage is younger than `failSafeMs`.
  pub fn get_fail_safe(&self, key: &str) -> Option<Stored> {
    if self.fail_safe.is_zero() {
      return None;
    }
    let epoch = match *self.outage.lock().unwrap_or_else(|p| p.into_inner()) {
      Some(o) if o.began.elapsed() > self.fail_safe => return None,
      Some(o) => o.epoch,
      // a call failed before the breaker opened: the last established epoch's entries
      None => self.served.load(Ordering::Acquire),
    };
    let (stored, tag) = self.store.get_tagged(key)?;
    if tag != epoch {
      return None;
    }
    self.counters.fail_safe_hits.fetch_add(1, Ordering::Relaxed);
    Some(stored)
  }

  /// Counts a read the L1 could not answer.
  pub fn count_miss(&self) {
    self.counters.misses.fetch_add(1, Ordering::Relaxed);
  }

  /// A ticket for a command on `key` about to be sent; `None` when nothing could be installed.
  /// With tracking on the data connection (single server, Sentinel), a command made before the
  /// first connection or while one is opened goes out on that connection after its
  /// subscription: its ticket is for that connection's epoch, valid once it is established.
  pub fn ticket(&self, key: &str) -> Option<Ticket> {
    let epoch = self.epoch.load(Ordering::Acquire);
    let on_data_connection = self.installs_writes && self.connecting.load(Ordering::Acquire);
    let epoch = if self.active.load(Ordering::Acquire) || on_data_connection {
      epoch
    } else if self.installs_writes && epoch == 0 {
      // nothing opened yet: the first connection's
      1
    } else {
      return None;
    };
    let bucket = bucket_of(key);
    Some(Ticket {
      epoch,
      bucket,
      count: self.buckets[bucket].load(Ordering::Acquire),
      flushes: self.flushes.load(Ordering::Acquire),
    })
  }

  /// Whether the reply of a write may be installed (see [`NearCache::new`]).
  pub fn installs_writes(&self) -> bool {
    self.installs_writes
  }

  /// Installs what Redis answered for `key` (with `ticket`, taken before the command was sent)
  /// until `expires_at`, unless something invalidated the key meanwhile. Entries too heavy for
  /// the budget are not cached.
  pub fn install(&self, ticket: Ticket, tenant: Option<&str>, key: &str, value: Arc<str>, expires_at: Instant) {
    if !self.valid(&ticket) {
      return;
    }
    let _ = self.store.set_tagged(tenant, key, value, expires_at, ticket.epoch);
    // an invalidation that landed during the insert removes what was just inserted
    if !self.valid(&ticket) {
      self.store.delete_now(tenant, key);
    }
  }

  fn valid(&self, t: &Ticket) -> bool {
    self.active.load(Ordering::Acquire)
      && self.epoch.load(Ordering::Acquire) == t.epoch
      && self.buckets[t.bucket].load(Ordering::Acquire) == t.count
      && self.flushes.load(Ordering::Acquire) == t.flushes
  }

  /// This process changes `key` (a write or delete is on its way): its entry goes, and replies
  /// racing the change are not installed.
  pub fn forget(&self, tenant: Option<&str>, key: &str) {
    self.buckets[bucket_of(key)].fetch_add(1, Ordering::AcqRel);
    self.store.delete_now(tenant, key);
  }

  /// This process invalidates `prefix`: its entries go, and no reply in flight is installed.
  pub fn forget_prefix(&self, tenant: Option<&str>, prefix: &str) {
    self.flushes.fetch_add(1, Ordering::AcqRel);
    self.store.invalidate_prefix_now(tenant, prefix);
  }

  // ----- tracking (called by the store's connections) -------------------------------

  /// A connection is being opened and subscribed: a new epoch whose entries are not served
  /// until [`NearCache::tracking_established`]. Returns the epoch.
  pub fn tracking_starting(&self) -> u64 {
    self.active.store(false, Ordering::Release);
    self.connecting.store(true, Ordering::Release);
    self.epoch.fetch_add(1, Ordering::AcqRel) + 1
  }

  /// Tracking of `epoch` is established (`CLIENT TRACKING` answered): its entries may be
  /// served. Outside an outage, what older epochs left is dropped.
  pub fn tracking_established(&self, epoch: u64) {
    if self.epoch.load(Ordering::Acquire) != epoch {
      return;
    }
    if self.outage.lock().unwrap_or_else(|p| p.into_inner()).is_none() {
      self.store.clear();
    }
    self.served.store(epoch, Ordering::Release);
    self.connecting.store(false, Ordering::Release);
    self.active.store(true, Ordering::Release);
  }

  /// The connection of `epoch` is gone: nothing is served until a new one subscribes (its
  /// entries stay for the fail-safe).
  pub fn tracking_lost(&self, epoch: u64) {
    if self.epoch.load(Ordering::Acquire) == epoch {
      self.active.store(false, Ordering::Release);
      self.connecting.store(false, Ordering::Release);
    }
  }

  /// Redis invalidated `keys` (another client changed them, or they expired).
  pub fn invalidated<'k>(&self, keys: impl IntoIterator<Item = &'k [u8]>) {
    for key in keys {
      let Ok(key) = std::str::from_utf8(key) else { continue };
      self.buckets[bucket_of(key)].fetch_add(1, Ordering::AcqRel);
      self.store.delete_any(key);
      self.counters.invalidations.fetch_add(1, Ordering::Relaxed);
    }
  }

  /// Redis dropped everything (`FLUSHDB`, `FLUSHALL`): so does the L1.
  pub fn flushed(&self) {
    self.flushes.fetch_add(1, Ordering::AcqRel);
    self.store.clear();
    self.counters.invalidations.fetch_add(1, Ordering::Relaxed);
  }

  // ----- outages (called by the failover) ----------------------------------------------

  /// Redis failed: the entries of the current epoch are servable for `failSafeMs` from now.
  pub fn outage_began(&self) {
    let mut outage = self.outage.lock().unwrap_or_else(|p| p.into_inner());
    if outage.is_none() {
      *outage = Some(Outage {
        began: Instant::now(),
        epoch: self.served.load(Ordering::Acquire),
      });
    }
  }

  /// Redis is back and the journal replayed: what the outage kept is dropped (it may be stale
  /// and its tracking was lost); entries come back as they are read again.
  pub fn recovered(&self) {
    let mut outage = self.outage.lock().unwrap_or_else(|p| p.into_inner());
    *outage = None;
    self.flushes.fetch_add(1, Ordering::AcqRel);
    self.store.clear();
  }

  /// Drops everything (close).
  pub fn clear(&self) {
    self.flushes.fetch_add(1, Ordering::AcqRel);
    self.store.clear();
  }

  /// Counters, size and tracking state.
  pub fn stats(&self) -> NearStats {
    let tracking = match (
      self.active.load(Ordering::Acquire),
      self.connecting.load(Ordering::Acquire),
      self.epoch.load(Ordering::Acquire),
    ) {
      (true, _, _) => Tracking::Active,
      (false, true, _) => Tracking::Connecting,
      (false, false, 0) => Tracking::Idle,
      _ => Tracking::Lost,
    };
    NearStats {
      hits: self.counters.hits.load(Ordering::Relaxed),
      misses: self.counters.misses.load(Ordering::Relaxed),
      invalidations: self.counters.invalidations.load(Ordering::Relaxed),
      fail_safe_hits: self.counters.fail_safe_hits.load(Ordering::Relaxed),
      memory: self.store.stats(),
      tracking,
      epochs: self.epoch.load(Ordering::Acquire),
    }
  }

  /// What `tenant` holds in the L1.
  pub fn tenant_usage(&self, tenant: &str) -> TenantUsage {
    self.store.tenant_usage(tenant)
  }
}

impl TrackingSink for NearCache {
  fn starting(&self) -> u64 {
    self.tracking_starting()
  }
  fn established(&self, epoch: u64) {
    self.tracking_established(epoch)
  }
  fn lost(&self, epoch: u64) {
    self.tracking_lost(epoch)
  }
  fn invalidated(&self, keys: &mut dyn Iterator<Item = &[u8]>) {
    NearCache::invalidated(self, keys)
  }
  fn flushed(&self) {
    NearCache::flushed(self)
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  fn near() -> NearCache {
    NearCache::new(1 << 20, 1 << 20, 1 << 16, Duration::from_millis(200), true)
  }

  fn later() -> Instant {
    Instant::now() + Duration::from_secs(60)
  }

  fn text(s: &str) -> Arc<str> {
    s.into()
  }

  #[test]
  fn nothing_is_served_before_tracking_is_established() {
    let n = near();
    let e = n.tracking_starting();
    assert_eq!(n.stats().tracking, Tracking::Connecting);
    n.install(n.ticket("k").unwrap(), None, "k", text("0"), later());
    assert!(
      n.get("k").is_none(),
      "not installed before the subscription is answered"
    );
    n.tracking_established(e);
    let t = n.ticket("k").unwrap();
    n.install(t, None, "k", text("1"), later());
    assert_eq!(n.get("k").map(|s| s.text), Some(text("1")));
    assert_eq!(n.stats().hits, 1);
  }

  #[test]
  fn a_command_made_while_the_first_connection_opens_may_be_installed_once_it_subscribed() {
    let n = near();
    let before = n
      .ticket("a")
      .expect("tracking on the data connection: a ticket for the first epoch");
    let e = n.tracking_starting();
    let during = n.ticket("b").unwrap();
    n.tracking_established(e);
    n.install(before, None, "a", text("1"), later());
    n.install(during, None, "b", text("2"), later());
    assert_eq!(n.get("a").map(|s| s.text), Some(text("1")));
    assert_eq!(n.get("b").map(|s| s.text), Some(text("2")));
    // a connection lost: nothing is ticketed until the next one opens
    n.tracking_lost(e);
    assert!(n.ticket("c").is_none());
    // an attempt that fails voids the tickets taken during it
    let e2 = n.tracking_starting();
    let t = n.ticket("d").unwrap();
    n.tracking_lost(e2);
    n.tracking_established(n.tracking_starting());
    n.install(t, None, "d", text("3"), later());
    assert!(n.get("d").is_none());
  }

  #[test]
  fn without_tracking_on_the_data_connection_only_an_established_epoch_tickets() {
    let n = NearCache::new(1 << 20, 1 << 20, 1 << 16, Duration::from_millis(200), false);
    assert!(n.ticket("a").is_none());
    let e = n.tracking_starting();
    assert!(
      n.ticket("a").is_none(),
      "a Cluster's subscription is not ordered with its reads"
    );
    n.tracking_established(e);
    assert!(n.ticket("a").is_some());
  }

  #[test]
  fn an_invalidation_racing_a_reply_voids_its_ticket() {
    let n = near();
    n.tracking_established(n.tracking_starting());
    let t = n.ticket("k").unwrap();
    n.invalidated([&b"k"[..]]);
    n.install(t, None, "k", text("stale"), later());
    assert!(n.get("k").is_none(), "the reply raced an invalidation: not installed");
    // and an own write voids tickets taken before it
    let t = n.ticket("k").unwrap();
    n.forget(None, "k");
    n.install(t, None, "k", text("old"), later());
    assert!(n.get("k").is_none());
  }

  #[test]
  fn an_invalidation_removes_and_a_flush_clears() {
    let n = near();
    n.tracking_established(n.tracking_starting());
    for k in ["a", "b"] {
      let t = n.ticket(k).unwrap();
      n.install(t, None, k, text("v"), later());
    }
    n.invalidated([&b"a"[..]]);
    assert!(n.get("a").is_none() && n.get("b").is_some());
    n.flushed();
    assert!(n.get("b").is_none());
    assert_eq!(n.stats().invalidations, 2);
  }

  #[test]
  fn a_new_epoch_serves_nothing_older_and_drops_it_outside_an_outage() {
    let n = near();
    let e1 = n.tracking_starting();
    n.tracking_established(e1);
    n.install(n.ticket("k").unwrap(), None, "k", text("v"), later());
    n.tracking_lost(e1);
    assert!(n.get("k").is_none(), "lost tracking: not served");
    assert_eq!(n.stats().tracking, Tracking::Lost);
    let e2 = n.tracking_starting();
    n.tracking_established(e2);
    assert!(n.get("k").is_none());
    assert_eq!(n.stats().memory.entries, 0, "dropped");
  }

  #[test]
  fn the_fail_safe_serves_the_outage_epoch_for_its_window_then_recovery_drops_it() {
    let n = near();
    let e1 = n.tracking_starting();
    n.tracking_established(e1);
    n.install(n.ticket("k").unwrap(), None, "k", text("v"), later());
    n.tracking_lost(e1);
    n.outage_began();
    // a reconnect during the outage (the probe) keeps the outage's entries
    n.tracking_established(n.tracking_starting());
    assert_eq!(n.get_fail_safe("k").map(|s| s.text), Some(text("v")));
    assert!(n.get("k").is_none(), "not served normally: another epoch");
    std::thread::sleep(Duration::from_millis(250));
    assert!(n.get_fail_safe("k").is_none(), "past failSafeMs");
    n.recovered();
    assert_eq!(n.stats().memory.entries, 0);
    assert_eq!(n.stats().fail_safe_hits, 1);
  }

  #[test]
  fn a_reconnect_attempt_before_the_outage_opens_does_not_hide_the_entries() {
    let n = near();
    let e1 = n.tracking_starting();
    n.tracking_established(e1);
    n.install(n.ticket("k").unwrap(), None, "k", text("v"), later());
    n.tracking_lost(e1);
    // the connection retries (a new epoch that never subscribes), then the breaker opens
    let _attempt = n.tracking_starting();
    assert_eq!(
      n.get_fail_safe("k").map(|s| s.text),
      Some(text("v")),
      "before the breaker opened"
    );
    n.outage_began();
    assert_eq!(n.get_fail_safe("k").map(|s| s.text), Some(text("v")));
  }

  #[test]
  fn the_budget_holds_under_a_million_distinct_keys() {
    const MAX: u64 = 4 << 20;
    const TENANT_MAX: u64 = MAX / 8;
    let n = NearCache::new(MAX, TENANT_MAX, 1 << 16, Duration::from_secs(60), true);
    n.tracking_established(n.tracking_starting());
    let value = text(&"v".repeat(200));
    for i in 0..1_000_000u32 {
      let key = format!("k:{i}");
      // every fourth key belongs to a tenant, which has its own, smaller budget
      let tenant = (i % 4 == 0).then_some("t1");
      n.install(n.ticket(&key).unwrap(), tenant, &key, value.clone(), later());
      if i % 50_000 == 0 {
        let stats = n.stats();
        assert!(stats.memory.bytes <= MAX, "over the budget after {i} keys: {stats:?}");
        assert!(
          n.tenant_usage("t1").bytes <= TENANT_MAX,
          "tenant over its share after {i} keys"
        );
      }
    }
    let stats = n.stats();
    assert!(stats.memory.bytes <= MAX, "{stats:?}");
    assert!(stats.memory.bytes > MAX / 2, "the budget is used: {stats:?}");
    assert!(n.get("k:999999").is_some(), "recent keys are held");
  }

  #[test]
  fn an_entry_never_outlives_its_ttl() {
    let n = near();
    n.tracking_established(n.tracking_starting());
    let t = n.ticket("k").unwrap();
    n.install(t, None, "k", text("v"), Instant::now() + Duration::from_millis(20));
    assert!(n.get("k").is_some());
    std::thread::sleep(Duration::from_millis(30));
    assert!(n.get("k").is_none());
  }
}
