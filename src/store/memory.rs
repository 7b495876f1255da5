//! The in-process store: quick_cache weighted by bytes, with a TTL per entry.
//!
//! ## Behavior
//! - Each entry weighs `key bytes + value bytes + ENTRY_OVERHEAD` (+ `LEDGER_OVERHEAD`
//!   for a tenant's entry), overheads measured by bench/memory-overhead.js; the total stays
//!   within the byte budget by evicting cold entries (CLOCK-Pro, via quick_cache).
//! - quick_cache has no TTL: an expiry instant is kept with each value, checked on
//!   every read, and expired entries are swept at most every [`SWEEP_INTERVAL`].
//! - An entry heavier than one shard's share of the budget cannot be held and is
//!   refused with `ERR_TOO_LARGE` (config validation sizes shards so the largest
//!   allowed value always fits).
//! - Values are `Arc<str>`: a read clones a pointer, never the text, under the lock.
//! - Tenant budget: the entries of each tenant are also tracked in a per-tenant
//!   ledger (a small quick_cache of keys and weights, one shard) bounded by
//!   `tenant_max_bytes`. A tenant writing past its budget evicts its *own* cold
//!   entries (the ledger's CLOCK-Pro choice), never another tenant's; the global
//!   budget still bounds the sum. One shard, because a sharded ledger splits the
//!   budget per shard: a tenant at half its budget lost entries to one full shard.
//!   Global-scope keys (no tenant) have no ledger.
//!   Evictions are collected during an insert and applied after it, outside any
//!   lock, so the two caches never lock each other.

use std::collections::HashMap;
use std::future::{ready, Future};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use quick_cache::sync::Cache;
use quick_cache::{DefaultHashBuilder, Lifecycle, OptionsBuilder, Weighter};

use crate::error::{Error, Result};
use crate::store::Store;

/// Bytes charged per entry on top of key and value: map slot, key and value
/// allocations (rounded up by malloc), expiry, CLOCK-Pro ghost entries. Measured:
/// ~300 bytes per 1 KB entry above key + value (bench/memory-overhead.js).
pub const ENTRY_OVERHEAD: u64 = 320;
/// Extra bytes charged for a tenant's entry: its ledger copy (key, weight, expiry).
/// Measured: ~150 bytes per entry.
pub const LEDGER_OVERHEAD: u64 = 160;
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
  /// `value` is ASCII (known from the write, so a read need not scan it again).
  ascii: bool,
  expires_at: Instant,
  /// What the owner tags an entry with (the near cache: the tracking epoch it was read in).
  tag: u64,
  /// The tenant whose ledger tracks this entry.
  tenant: Option<Arc<str>>,
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
    entry_weight(key.len(), val.value.len(), val.tenant.is_some())
  }
}

/// A tenant entry the main cache evicted (or replaced: quick_cache reports the
/// replaced value of a key like an eviction): tenant, key, value.
type Evicted = (Arc<str>, Box<str>, Arc<str>);

/// Collects the tenant entries the main cache evicts, to drop them from their ledgers.
#[derive(Clone, Copy, Default)]
struct MainEvictions;

impl Lifecycle<Box<str>, Entry> for MainEvictions {
  type RequestState = Vec<Evicted>;

  fn on_evict(&self, state: &mut Self::RequestState, key: Box<str>, val: Entry) {
    if let Some(tenant) = val.tenant {
      state.push((tenant, key, val.value));
    }
  }
}

/// A ledger entry: the weight the main cache charges, when it expires, and a
/// write id that tells a replaced entry from the one that replaced it.
#[derive(Clone, Copy)]
struct Tracked {
  weight: u64,
  expires_at: Instant,
  id: u64,
}

#[derive(Clone, Copy)]
struct TrackedWeighter;

impl Weighter<Box<str>, Tracked> for TrackedWeighter {
  fn weight(&self, _key: &Box<str>, val: &Tracked) -> u64 {
    val.weight
  }
}

/// Collects the keys a tenant ledger evicts, to drop them from the main cache.
#[derive(Clone, Copy, Default)]
struct LedgerEvictions;

impl Lifecycle<Box<str>, Tracked> for LedgerEvictions {
  type RequestState = Vec<(Box<str>, u64)>;

  fn on_evict(&self, state: &mut Self::RequestState, key: Box<str>, val: Tracked) {
    state.push((key, val.id));
  }
}

/// One tenant's entries and bytes, bounded by the tenant budget.
struct Ledger {
  tenant: Arc<str>,
  keys: Cache<Box<str>, Tracked, TrackedWeighter, DefaultHashBuilder, LedgerEvictions>,
}

/// Builds the quick_cache options for a budget of `max_bytes` in which an entry of
/// `largest_entry` bytes always fits one shard.
fn sized_options(max_bytes: u64, largest_entry: u64, min_items: u64) -> quick_cache::Options {
  let by_size = (admissible_weight(max_bytes) / largest_entry.max(1)).clamp(1, MAX_SHARDS);
  let shards = 1u64 << (63 - by_size.leading_zeros()); // largest power of two <= by_size
  options(max_bytes, shards as usize, min_items)
}

/// The options of a ledger: one shard holding the whole tenant budget, so that the tenant
/// evicts only once it holds `max_bytes`, whatever shard its keys hash to.
fn ledger_options(max_bytes: u64) -> quick_cache::Options {
  options(max_bytes, 1, 16)
}

fn options(max_bytes: u64, shards: usize, min_items: u64) -> quick_cache::Options {
  let estimated_items = (max_bytes / 1024).clamp(min_items, 1 << 20) as usize;
  OptionsBuilder::new()
    .shards(shards)
    .hot_allocation(HOT_ALLOCATION)
    .weight_capacity(max_bytes)
    .estimated_items_capacity(estimated_items)
    .build()
    .expect("weight capacity and shard count are valid")
}

fn entry_weight(key_len: usize, value_len: usize, tenant: bool) -> u64 {
  let ledger = if tenant { LEDGER_OVERHEAD } else { 0 };
  key_len as u64 + value_len as u64 + ENTRY_OVERHEAD + ledger
}

/// Entries and bytes one tenant holds.
/// A live value as read: the JSON text, and whether it is ASCII (then it is also Latin-1,
/// the cheapest form to copy into a JavaScript string).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
  /// The JSON text.
  pub text: Arc<str>,
  /// Every byte of `text` is ASCII.
  pub ascii: bool,
}

impl std::ops::Deref for Stored {
  type Target = str;

  fn deref(&self) -> &str {
    &self.text
  }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TenantUsage {
  /// Entries held (expired ones count until swept).
  pub entries: u64,
  /// Bytes charged to the tenant's budget.
  pub bytes: u64,
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
  cache: Cache<Box<str>, Entry, ByteWeighter, DefaultHashBuilder, MainEvictions>,
  max_bytes: u64,
  tenant_max_bytes: u64,
  ledgers: RwLock<HashMap<Arc<str>, Arc<Ledger>>>,
  write_ids: AtomicU64,
  epoch: Instant,
  last_sweep_ms: AtomicU64,
  /// False only while nothing was written since the last `clear` (or ever): deletes
  /// and invalidations then skip the shard locks. In Redis mode the store is empty
  /// almost always, yet every Redis write drops the key's in-process copy.
  maybe_nonempty: AtomicBool,
}

impl MemoryStore {
  /// A store bounded by `max_bytes`, with shards sized so that an entry of
  /// `largest_entry` bytes always fits in one shard; each tenant may hold at most
  /// `max_bytes` too (see [`MemoryStore::with_tenant_budget`]).
  pub fn new(max_bytes: u64, largest_entry: u64) -> Self {
    Self::with_tenant_budget(max_bytes, max_bytes, largest_entry)
  }

  /// A store bounded by `max_bytes` in which one tenant holds at most
  /// `tenant_max_bytes` (its own cold entries are evicted past that).
  pub fn with_tenant_budget(max_bytes: u64, tenant_max_bytes: u64, largest_entry: u64) -> Self {
    let options = sized_options(max_bytes, largest_entry, 64);
    MemoryStore {
      cache: Cache::with_options(options, ByteWeighter, Default::default(), MainEvictions),
      max_bytes,
      tenant_max_bytes: tenant_max_bytes.min(max_bytes),
      ledgers: RwLock::new(HashMap::new()),
      write_ids: AtomicU64::new(0),
      epoch: Instant::now(),
      last_sweep_ms: AtomicU64::new(0),
      maybe_nonempty: AtomicBool::new(false),
    }
  }

  /// The value of `key` if live; an expired entry is removed on the way.
  pub fn get_now(&self, key: &str) -> Option<Arc<str>> {
    self.get_stored(key).map(|s| s.text)
  }

  /// [`MemoryStore::get_now`], with whether the value is ASCII.
  pub fn get_stored(&self, key: &str) -> Option<Stored> {
    self.get_tagged(key).map(|(stored, _)| stored)
  }

  /// [`MemoryStore::get_stored`], with the entry's tag ([`MemoryStore::set_tagged`]).
  pub fn get_tagged(&self, key: &str) -> Option<(Stored, u64)> {
    if !self.maybe_nonempty.load(Ordering::Acquire) {
      return None;
    }
    let entry = self.cache.get(key)?;
    let now = Instant::now();
    if entry.live(now) {
      let stored = Stored {
        text: entry.value,
        ascii: entry.ascii,
      };
      return Some((stored, entry.tag));
    }
    self.cache.remove_if(key, |e| !e.live(now));
    None
  }

  /// Stores `value` for `ttl_ms` under no tenant; refuses an entry too heavy for a shard.
  pub fn set_now(&self, key: &str, value: Arc<str>, ttl_ms: u64) -> Result<()> {
    self.set_until(None, key, value, Instant::now() + Duration::from_millis(ttl_ms))
  }

  /// Stores `value` until `expires_at`, charged to `tenant`'s budget if any;
  /// refuses an entry too heavy for a shard (of the store or of the tenant's budget).
  pub fn set_until(&self, tenant: Option<&str>, key: &str, value: Arc<str>, expires_at: Instant) -> Result<()> {
    self.set_tagged(tenant, key, value, expires_at, 0)
  }

  /// [`MemoryStore::set_until`] with a tag the owner reads back with the value.
  pub fn set_tagged(
    &self,
    tenant: Option<&str>,
    key: &str,
    value: Arc<str>,
    expires_at: Instant,
    tag: u64,
  ) -> Result<()> {
    let weight = entry_weight(key.len(), value.len(), tenant.is_some());
    if weight > admissible_weight(self.cache.shard_capacity()) {
      return Err(Error::TooLarge(format!(
        "entry of {weight} bytes does not fit the in-process store (fallback.maxBytes {})",
        self.max_bytes
      )));
    }
    let ledger = tenant.map(|t| self.ledger(t));
    if let Some(l) = &ledger {
      if weight > admissible_weight(l.keys.shard_capacity()) {
        return Err(Error::TooLarge(format!(
          "entry of {weight} bytes does not fit one tenant's share of the in-process store (fallback.maxBytesPerTenant {})",
          self.tenant_max_bytes
        )));
      }
    }
    let entry = Entry {
      ascii: value.is_ascii(), // just copied in, so still in cache: cheaper here than on every read
      value: value.clone(),
      expires_at,
      tag,
      tenant: ledger.as_ref().map(|l| l.tenant.clone()),
    };
    let mut evicted = Vec::new();
    self.cache.insert_with_lifecycle(key.into(), entry, &mut evicted);
    // after the insert: a concurrent `clear` then at worst leaves the flag set on an empty store
    self.maybe_nonempty.store(true, Ordering::Release);
    // the replaced value of this key is reported as evicted: it is not
    evicted.retain(|(_, k, v)| &**k != key || Arc::ptr_eq(v, &value));
    if let Some(l) = &ledger {
      let id = self.write_ids.fetch_add(1, Ordering::Relaxed);
      let mut over_budget = Vec::new();
      let tracked = Tracked { weight, expires_at, id };
      l.keys.insert_with_lifecycle(key.into(), tracked, &mut over_budget);
      for (own, own_id) in over_budget {
        if &*own != key || own_id == id {
          self.cache.remove(&own);
        }
      }
    }
    self.forget_evicted(evicted);
    self.maybe_sweep();
    Ok(())
  }

  /// Removes `key` (held for `tenant`, if any); true if it was live.
  pub fn delete_now(&self, tenant: Option<&str>, key: &str) -> bool {
    if !self.maybe_nonempty.load(Ordering::Acquire) {
      return false;
    }
    let now = Instant::now();
    let removed = self.cache.remove(key);
    if let (Some(_), Some(t)) = (&removed, tenant) {
      if let Some(l) = self.existing_ledger(t) {
        l.keys.remove(key);
      }
    }
    matches!(removed, Some((_, e)) if e.live(now))
  }

  /// Removes `key`, whichever tenant holds it (the key alone is known: an invalidation).
  pub fn delete_any(&self, key: &str) {
    if !self.maybe_nonempty.load(Ordering::Acquire) {
      return;
    }
    if let Some((_, entry)) = self.cache.remove(key) {
      if let Some(l) = entry.tenant.and_then(|t| self.existing_ledger(&t)) {
        l.keys.remove(key);
      }
    }
  }

  /// Removes every key starting with `literal_prefix` (and any expired entry met),
  /// all of them `tenant`'s when it is given; returns how many live entries matched.
  pub fn invalidate_prefix_now(&self, tenant: Option<&str>, literal_prefix: &str) -> u64 {
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
    if let Some(l) = tenant.and_then(|t| self.existing_ledger(t)) {
      l.keys.retain(|k, _| !k.starts_with(literal_prefix));
    }
    removed.into_inner()
  }

  /// The live keys starting with `literal_prefix`.
  pub fn keys_with_prefix(&self, literal_prefix: &str) -> Vec<String> {
    if !self.maybe_nonempty.load(Ordering::Acquire) {
      return Vec::new();
    }
    let now = Instant::now();
    self
      .cache
      .iter()
      .filter(|(k, e)| e.live(now) && k.starts_with(literal_prefix))
      .map(|(k, _)| k.to_string())
      .collect()
  }

  /// Drops every expired entry now, and the ledgers of tenants that hold nothing.
  pub fn sweep_expired(&self) {
    let now = Instant::now();
    self.cache.retain(|_, e| e.live(now));
    let ledgers: Vec<Arc<Ledger>> = self.read_ledgers().values().cloned().collect();
    for l in &ledgers {
      l.keys.retain(|_, t| t.expires_at > now);
    }
    drop(ledgers);
    let mut map = self.ledgers.write().unwrap_or_else(|p| p.into_inner());
    // a ledger some writer still holds (strong count > 1) may be about to gain an entry
    map.retain(|_, l| !l.keys.is_empty() || Arc::strong_count(l) > 1);
  }

  /// Removes everything.
  pub fn clear(&self) {
    // before clearing: an insert racing with it sets the flag again afterwards
    self.maybe_nonempty.store(false, Ordering::Release);
    self.cache.clear();
    self.ledgers.write().unwrap_or_else(|p| p.into_inner()).clear();
  }

  /// Entries, bytes and budget.
  pub fn stats(&self) -> MemoryStats {
    MemoryStats {
      entries: self.cache.len() as u64,
      bytes: self.cache.weight(),
      max_bytes: self.max_bytes,
    }
  }

  /// What `tenant` holds (zero when nothing).
  pub fn tenant_usage(&self, tenant: &str) -> TenantUsage {
    self
      .existing_ledger(tenant)
      .map(|l| TenantUsage {
        entries: l.keys.len() as u64,
        bytes: l.keys.weight(),
      })
      .unwrap_or_default()
  }

  /// The most one tenant may hold.
  pub fn tenant_max_bytes(&self) -> u64 {
    self.tenant_max_bytes
  }

  fn read_ledgers(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Arc<str>, Arc<Ledger>>> {
    self.ledgers.read().unwrap_or_else(|p| p.into_inner())
  }

  fn existing_ledger(&self, tenant: &str) -> Option<Arc<Ledger>> {
    self.read_ledgers().get(tenant).cloned()
  }

  fn ledger(&self, tenant: &str) -> Arc<Ledger> {
    if let Some(l) = self.existing_ledger(tenant) {
      return l;
    }
    let mut map = self.ledgers.write().unwrap_or_else(|p| p.into_inner());
    map
      .entry(tenant.into())
      .or_insert_with_key(|t| {
        let options = ledger_options(self.tenant_max_bytes);
        Arc::new(Ledger {
          tenant: t.clone(),
          keys: Cache::with_options(options, TrackedWeighter, Default::default(), LedgerEvictions),
        })
      })
      .clone()
  }

  /// Drops from their ledgers the tenant entries the main cache evicted.
  fn forget_evicted(&self, evicted: Vec<Evicted>) {
    if evicted.is_empty() {
      return;
    }
    let map = self.read_ledgers();
    for (tenant, key, _) in evicted {
      if let Some(l) = map.get(&tenant) {
        l.keys.remove(&key);
      }
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
    ready(Ok(self.delete_now(None, key)))
  }
  fn invalidate_prefix(&self, literal_prefix: &str) -> impl Future<Output = Result<u64>> + Send {
    ready(Ok(self.invalidate_prefix_now(None, literal_prefix)))
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
  fn a_read_knows_whether_the_value_is_ascii() {
    let s = MemoryStore::new(MIB, 1024);
    for (value, ascii) in [
      ("{\"a\":1}", true),
      ("\u{7f}", true),
      ("\"\u{80}\"", false),
      ("\"é\"", false),
      ("😀", false),
      ("", true),
    ] {
      s.set_now("k", value.into(), 60_000).unwrap();
      let read = s.get_stored("k").unwrap();
      assert_eq!((&*read, read.ascii), (value, ascii));
    }
  }

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
    assert!(s.delete_now(None, "key"));
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
    assert_eq!(s.invalidate_prefix_now(None, "p:"), 1);
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
    assert!(!s.delete_now(None, "k"), "an empty store answers without locking");
    assert_eq!(s.invalidate_prefix_now(None, "k"), 0);
    s.set_now("k", "1".into(), 60_000).unwrap();
    s.clear();
    assert!(!s.delete_now(None, "k"));
    s.set_now("k", "2".into(), 60_000).unwrap();
    s.set_now("k2", "2".into(), 60_000).unwrap();
    assert!(s.delete_now(None, "k"));
    assert_eq!(s.invalidate_prefix_now(None, "k"), 1);
    assert_eq!(s.stats().entries, 0);
  }

  fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(600)
  }

  #[test]
  fn a_noisy_tenant_evicts_only_its_own_entries() {
    let (budget, share) = (4 * MIB, MIB / 2);
    let s = MemoryStore::with_tenant_budget(budget, share, 4096);
    let value: Arc<str> = "q".repeat(1000).into();
    for i in 0..100 {
      s.set_until(Some("quiet"), &format!("quiet:{i}"), value.clone(), far_future())
        .unwrap();
    }
    for i in 0..20_000 {
      s.set_until(Some("noisy"), &format!("noisy:{i}"), value.clone(), far_future())
        .unwrap();
      assert!(s.tenant_usage("noisy").bytes <= share, "noisy over its share after {i}");
    }
    for i in 0..100 {
      assert!(s.get_now(&format!("quiet:{i}")).is_some(), "quiet:{i} was evicted");
    }
    let noisy = s.tenant_usage("noisy");
    assert!(noisy.entries > 100 && noisy.entries < 20_000, "{noisy:?}");
    let held = (0..20_000)
      .filter(|i| s.get_now(&format!("noisy:{i}")).is_some())
      .count() as u64;
    assert_eq!(held, noisy.entries, "the ledger and the store agree");
    assert!(s.stats().bytes <= budget);
  }

  #[test]
  fn a_tenant_under_its_budget_keeps_every_entry() {
    // 170 entries of ~1.4 KB fill 90 % of a 256 KiB share. A ledger split into 8 shards of
    // 32 KiB lost some of them in nearly every store (a shard holding 23 of them is full).
    let share = 256 * 1024;
    let value: Arc<str> = "v".repeat(1000).into();
    for store in 0..50 {
      let s = MemoryStore::with_tenant_budget(4 * MIB, share, 21 * 1024);
      for i in 0..170 {
        s.set_until(Some("t"), &format!("t:{i}"), value.clone(), far_future())
          .unwrap();
      }
      let usage = s.tenant_usage("t");
      assert!(
        usage.bytes <= share && usage.bytes > share * 85 / 100,
        "store {store}: {usage:?}"
      );
      let held = (0..170).filter(|i| s.get_now(&format!("t:{i}")).is_some()).count();
      assert_eq!(
        (held, usage.entries),
        (170, 170),
        "store {store}: evicted below the tenant's budget"
      );
    }
  }

  #[test]
  fn tenant_usage_follows_writes_deletes_and_invalidations() {
    let s = MemoryStore::with_tenant_budget(MIB, MIB / 4, 1024);
    s.set_until(Some("a"), "a:x1", "12345".into(), far_future()).unwrap();
    s.set_until(Some("a"), "a:x2", "1".into(), far_future()).unwrap();
    s.set_until(Some("a"), "a:y", "1".into(), far_future()).unwrap();
    s.set_until(None, "g", "1".into(), far_future()).unwrap();
    let w = |k: &str, v: &str| entry_weight(k.len(), v.len(), true);
    assert_eq!(
      s.tenant_usage("a"),
      TenantUsage {
        entries: 3,
        bytes: w("a:x1", "12345") + w("a:x2", "1") + w("a:y", "1")
      }
    );
    s.set_until(Some("a"), "a:x1", "1".into(), far_future()).unwrap();
    assert_eq!(
      s.tenant_usage("a").bytes,
      2 * w("a:x1", "1") + w("a:y", "1"),
      "replacing re-weighs"
    );
    assert!(s.delete_now(Some("a"), "a:y"));
    assert_eq!(s.invalidate_prefix_now(Some("a"), "a:x"), 2);
    assert_eq!(s.tenant_usage("a"), TenantUsage::default());
    assert_eq!(s.stats().entries, 1, "the global key stays");
    assert_eq!(s.tenant_usage("nobody"), TenantUsage::default());
  }

  #[test]
  fn global_evictions_leave_the_ledgers_exact() {
    let s = MemoryStore::with_tenant_budget(256 * 1024, 256 * 1024, 2048);
    let value: Arc<str> = "x".repeat(1000).into();
    for i in 0..2000 {
      let t = format!("t{}", i % 3);
      s.set_until(Some(&t), &format!("{t}:{i}"), value.clone(), far_future())
        .unwrap();
    }
    let tracked: u64 = (0..3).map(|t| s.tenant_usage(&format!("t{t}")).bytes).sum();
    assert_eq!(tracked, s.stats().bytes);
  }

  #[test]
  fn sweeping_drops_expired_entries_from_ledgers_and_empty_ledgers() {
    let s = MemoryStore::with_tenant_budget(MIB, MIB / 4, 1024);
    s.set_until(Some("a"), "a:1", "1".into(), Instant::now() + Duration::from_millis(1))
      .unwrap();
    s.set_until(Some("b"), "b:1", "1".into(), far_future()).unwrap();
    std::thread::sleep(Duration::from_millis(5));
    s.sweep_expired();
    assert_eq!(s.tenant_usage("a"), TenantUsage::default());
    assert_eq!(s.tenant_usage("b").entries, 1);
    assert_eq!(s.read_ledgers().len(), 1, "the empty ledger is gone");
  }

  #[test]
  fn refuses_an_entry_larger_than_the_tenant_share() {
    let s = MemoryStore::with_tenant_budget(4 * MIB, 64 * 1024, 1024);
    let big: Arc<str> = "x".repeat(100 * 1024).into();
    let err = s.set_until(Some("a"), "a:k", big.clone(), far_future()).unwrap_err();
    assert!(
      matches!(err, Error::TooLarge(ref m) if m.contains("maxBytesPerTenant")),
      "{err:?}"
    );
    assert_eq!(s.stats().entries, 0, "a refused write changes nothing");
    s.set_until(None, "g", big, far_future()).unwrap();
  }

  #[test]
  fn lists_live_keys_under_a_prefix() {
    let s = MemoryStore::new(MIB, 1024);
    assert!(
      s.keys_with_prefix("p:").is_empty(),
      "an empty store answers without locking"
    );
    s.set_now("p:a", "1".into(), 60_000).unwrap();
    s.set_now("p:b", "1".into(), 1).unwrap();
    s.set_now("q:a", "1".into(), 60_000).unwrap();
    std::thread::sleep(Duration::from_millis(5));
    assert_eq!(s.keys_with_prefix("p:"), ["p:a"]);
  }
}
