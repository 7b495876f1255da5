//! The in-process store: quick_cache weighted by bytes, with a TTL per entry.
//!
//! ## Behavior
//! - Each entry weighs `key bytes + value bytes + ENTRY_OVERHEAD`; the total stays
//!   within the byte budget by evicting cold entries (CLOCK-Pro, via quick_cache).
//! - quick_cache has no TTL: an expiry instant is kept with each value, checked on
//!   every read, and expired entries are swept at most every [`SWEEP_INTERVAL`].
//! - An entry heavier than one shard's share of the budget cannot be held and is
//!   refused with `ERR_TOO_LARGE` (config validation sizes shards so the largest
//!   allowed value always fits).
//! - Values are `Arc<str>`: a read clones a pointer, never the text, under the lock.

use std::future::{ready, Future};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quick_cache::sync::Cache;
use quick_cache::{OptionsBuilder, Weighter};

use crate::error::{Error, Result};
use crate::store::Store;

/// Bytes charged per entry on top of key and value (map slot, Arc header, expiry).
pub const ENTRY_OVERHEAD: u64 = 64;
/// Minimum pause between two sweeps of expired entries.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(5);
const MAX_SHARDS: u64 = 16;
/// Share of a shard's budget one entry may use (quick_cache's hot allocation:
/// it refuses an entry heavier than that).
pub const HOT_ALLOCATION: f64 = 0.97;

/// The heaviest entry a store of `max_bytes` held in one shard can admit.
pub fn admissible_weight(max_bytes: u64) -> u64 {
  (max_bytes as f64 * HOT_ALLOCATION) as u64
}

#[derive(Clone)]
struct Entry {
  value: Arc<str>,
  expires_at: Instant,
}

impl Entry {
  fn live(&self, now: Instant) -> bool {
    self.expires_at > now
  }
}

#[derive(Clone, Copy)]
struct ByteWeighter;

impl Weighter<Box<str>, Entry> for ByteWeighter {
  fn weight(&self, key: &Box<str>, val: &Entry) -> u64 {
    entry_weight(key.len(), val.value.len())
  }
}

fn entry_weight(key_len: usize, value_len: usize) -> u64 {
  key_len as u64 + value_len as u64 + ENTRY_OVERHEAD
}

/// A point-in-time view of the store's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryStats {
  /// Entries held (expired ones count until swept).
  pub entries: u64,
  /// Bytes charged to the budget.
  pub bytes: u64,
  /// The byte budget.
  pub max_bytes: u64,
}

/// Byte-bounded in-process store with per-entry TTL.
pub struct MemoryStore {
  cache: Cache<Box<str>, Entry, ByteWeighter>,
  max_bytes: u64,
  epoch: Instant,
  last_sweep_ms: AtomicU64,
  /// False only while nothing was written since the last `clear` (or ever): deletes
  /// and invalidations then skip the shard locks. In Redis mode the store is empty
  /// almost always, yet every Redis write drops the key's in-process copy.
  maybe_nonempty: AtomicBool,
}

impl MemoryStore {
  /// A store bounded by `max_bytes`, with shards sized so that an entry of
  /// `largest_entry` bytes always fits in one shard.
  pub fn new(max_bytes: u64, largest_entry: u64) -> Self {
    let by_size = (admissible_weight(max_bytes) / largest_entry.max(1)).clamp(1, MAX_SHARDS);
    let shards = 1u64 << (63 - by_size.leading_zeros()); // largest power of two <= by_size
    let estimated_items = (max_bytes / 1024).clamp(64, 1 << 20) as usize;
    let options = OptionsBuilder::new()
      .shards(shards as usize)
      .hot_allocation(HOT_ALLOCATION)
      .weight_capacity(max_bytes)
      .estimated_items_capacity(estimated_items)
      .build()
      .expect("weight capacity and shard count are valid");
    MemoryStore {
      cache: Cache::with_options(options, ByteWeighter, Default::default(), Default::default()),
      max_bytes,
      epoch: Instant::now(),
      last_sweep_ms: AtomicU64::new(0),
      maybe_nonempty: AtomicBool::new(false),
    }
  }

  /// The value of `key` if live; an expired entry is removed on the way.
  pub fn get_now(&self, key: &str) -> Option<Arc<str>> {
    let entry = self.cache.get(key)?;
    let now = Instant::now();
    if entry.live(now) {
      return Some(entry.value);
    }
    self.cache.remove_if(key, |e| !e.live(now));
    None
  }

  /// Stores `value` for `ttl_ms`; refuses an entry too heavy for a shard.
  pub fn set_now(&self, key: &str, value: Arc<str>, ttl_ms: u64) -> Result<()> {
    self.set_until(key, value, Instant::now() + Duration::from_millis(ttl_ms))
  }

  /// Stores `value` until `expires_at`; refuses an entry too heavy for a shard.
  pub fn set_until(&self, key: &str, value: Arc<str>, expires_at: Instant) -> Result<()> {
    let weight = entry_weight(key.len(), value.len());
    if weight > admissible_weight(self.cache.shard_capacity()) {
      return Err(Error::TooLarge(format!(
        "entry of {weight} bytes does not fit the in-process store (fallback.maxBytes {})",
        self.max_bytes
      )));
    }
    self.cache.insert(key.into(), Entry { value, expires_at });
    // after the insert: a concurrent `clear` then at worst leaves the flag set on an empty store
    self.maybe_nonempty.store(true, Ordering::Release);
    self.maybe_sweep();
    Ok(())
  }

  /// Removes `key`; true if it was live.
  pub fn delete_now(&self, key: &str) -> bool {
    if !self.maybe_nonempty.load(Ordering::Acquire) {
      return false;
    }
    let now = Instant::now();
    matches!(self.cache.remove(key), Some((_, e)) if e.live(now))
  }

  /// Removes every key starting with `literal_prefix` (and any expired entry met);
  /// returns how many live entries matched.
  pub fn invalidate_prefix_now(&self, literal_prefix: &str) -> u64 {
    if !self.maybe_nonempty.load(Ordering::Acquire) {
      return 0;
    }
    let now = Instant::now();
    let removed = AtomicU64::new(0);
    self.cache.retain(|k, e| {
      let live = e.live(now);
      if live && k.starts_with(literal_prefix) {
        removed.fetch_add(1, Ordering::Relaxed);
        return false;
      }
      live
    });
    removed.into_inner()
  }

  /// Drops every expired entry now.
  pub fn sweep_expired(&self) {
    let now = Instant::now();
    self.cache.retain(|_, e| e.live(now));
  }

  /// Removes everything.
  pub fn clear(&self) {
    // before clearing: an insert racing with it sets the flag again afterwards
    self.maybe_nonempty.store(false, Ordering::Release);
    self.cache.clear();
  }

  /// Entries, bytes and budget.
  pub fn stats(&self) -> MemoryStats {
    MemoryStats {
      entries: self.cache.len() as u64,
      bytes: self.cache.weight(),
      max_bytes: self.max_bytes,
    }
  }

  fn maybe_sweep(&self) {
    let now_ms = self.epoch.elapsed().as_millis() as u64;
    let last = self.last_sweep_ms.load(Ordering::Relaxed);
    if now_ms.saturating_sub(last) < SWEEP_INTERVAL.as_millis() as u64 {
      return;
    }
    if self
      .last_sweep_ms
      .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
      .is_ok()
    {
      self.sweep_expired();
    }
  }
}

impl Store for MemoryStore {
  fn get(&self, key: &str) -> impl Future<Output = Result<Option<String>>> + Send {
    ready(Ok(self.get_now(key).map(|v| v.to_string())))
  }
  fn set(&self, key: &str, value: &str, ttl_ms: u64) -> impl Future<Output = Result<()>> + Send {
    ready(self.set_now(key, value.into(), ttl_ms))
  }
  fn delete(&self, key: &str) -> impl Future<Output = Result<bool>> + Send {
    ready(Ok(self.delete_now(key)))
  }
  fn invalidate_prefix(&self, literal_prefix: &str) -> impl Future<Output = Result<u64>> + Send {
    ready(Ok(self.invalidate_prefix_now(literal_prefix)))
  }
  fn ping(&self) -> impl Future<Output = Result<Duration>> + Send {
    ready(Ok(Duration::ZERO))
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  const MIB: u64 = 1024 * 1024;

  #[test]
  fn counts_bytes_of_key_value_and_overhead() {
    let s = MemoryStore::new(MIB, 1024);
    s.set_now("key", "12345".into(), 60_000).unwrap();
    assert_eq!(
      s.stats(),
      MemoryStats {
        entries: 1,
        bytes: 3 + 5 + ENTRY_OVERHEAD,
        max_bytes: MIB
      }
    );
    s.set_now("key", "1".into(), 60_000).unwrap();
    assert_eq!(s.stats().bytes, 3 + 1 + ENTRY_OVERHEAD, "replacing re-weighs");
    assert!(s.delete_now("key"));
    assert_eq!(s.stats().bytes, 0);
  }

  #[test]
  fn stays_within_budget_by_evicting() {
    let budget = 256 * 1024;
    let s = MemoryStore::new(budget, 2048);
    let value: Arc<str> = "x".repeat(1000).into();
    for i in 0..2000 {
      s.set_now(&format!("k{i}"), value.clone(), 60_000).unwrap();
      assert!(s.stats().bytes <= budget, "over budget after {i} inserts");
    }
    let held = s.stats().entries;
    assert!(held > 100 && held < 2000, "held {held}");
  }

  #[test]
  fn refuses_an_entry_larger_than_a_shard() {
    let s = MemoryStore::new(MIB, 1024);
    let big: Arc<str> = "x".repeat(2 * MIB as usize).into();
    s.set_now("k", "old".into(), 60_000).unwrap();
    assert!(matches!(s.set_now("k", big, 60_000), Err(Error::TooLarge(_))));
    assert_eq!(
      s.get_now("k").as_deref(),
      Some("old"),
      "a refused write changes nothing"
    );
  }

  #[test]
  fn largest_allowed_entry_always_fits() {
    for (budget, largest) in [
      (64 * MIB, 4 * MIB + 4200),
      (MIB, admissible_weight(MIB)),
      (MIB, 65536 + 4200),
      (3 * MIB, MIB),
    ] {
      let s = MemoryStore::new(budget, largest);
      let value: Arc<str> = "v".repeat((largest - ENTRY_OVERHEAD - 10) as usize).into();
      s.set_now("0123456789", value, 60_000).unwrap();
      assert_eq!(s.stats().entries, 1, "budget {budget} largest {largest}");
    }
  }

  #[test]
  fn sweep_drops_only_expired_entries() {
    let s = MemoryStore::new(MIB, 1024);
    s.set_now("gone", "1".into(), 1).unwrap();
    s.set_now("kept", "1".into(), 60_000).unwrap();
    std::thread::sleep(Duration::from_millis(5));
    s.sweep_expired();
    assert_eq!(s.stats().entries, 1);
    assert!(s.get_now("kept").is_some());
  }

  #[test]
  fn prefix_invalidation_counts_only_live_matches() {
    let s = MemoryStore::new(MIB, 1024);
    s.set_now("p:live", "1".into(), 60_000).unwrap();
    s.set_now("p:dead", "1".into(), 1).unwrap();
    s.set_now("q:other", "1".into(), 60_000).unwrap();
    std::thread::sleep(Duration::from_millis(5));
    assert_eq!(s.invalidate_prefix_now("p:"), 1);
    assert_eq!(s.stats().entries, 1);
  }

  #[test]
  fn concurrent_writers_keep_accounting_exact() {
    let s = Arc::new(MemoryStore::new(16 * MIB, 1024));
    let barrier = Arc::new(std::sync::Barrier::new(4));
    let threads: Vec<_> = (0..4)
      .map(|t| {
        let (s, barrier) = (s.clone(), barrier.clone());
        std::thread::spawn(move || {
          barrier.wait();
          for i in 0..1000 {
            s.set_now(&format!("{t}:{i:04}"), "abcd".into(), 60_000).unwrap();
          }
        })
      })
      .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    assert_eq!(s.stats().entries, 4000);
    assert_eq!(s.stats().bytes, 4000 * (6 + 4 + ENTRY_OVERHEAD));
  }

  #[test]
  fn deletes_and_invalidations_see_writes_made_after_a_clear() {
    let s = MemoryStore::new(MIB, 1024);
    assert!(!s.delete_now("k"), "an empty store answers without locking");
    assert_eq!(s.invalidate_prefix_now("k"), 0);
    s.set_now("k", "1".into(), 60_000).unwrap();
    s.clear();
    assert!(!s.delete_now("k"));
    s.set_now("k", "2".into(), 60_000).unwrap();
    s.set_now("k2", "2".into(), 60_000).unwrap();
    assert!(s.delete_now("k"));
    assert_eq!(s.invalidate_prefix_now("k"), 1);
    assert_eq!(s.stats().entries, 0);
  }
}
