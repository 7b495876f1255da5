//! The outage journal: what was written, deleted or invalidated while Redis could
//! not be reached, so that recovery applies it to Redis before Redis serves again.
//!
//! ## Behavior
//! - One entry per key, the latest operation wins (`Set` replaces `Delete` and vice
//!   versa). A prefix invalidation drops the earlier entries it covers and is kept
//!   itself; a prefix covered by an already journaled one is not kept twice.
//! - Replay order is wipes, then prefix invalidations, then key operations. That is
//!   the recorded order, because recording an invalidation removes every earlier key
//!   entry under it: whatever key entry remains happened after it.
//! - A `Set` whose TTL passed before replay is replayed as a `Delete` (the older
//!   Redis value must not come back).
//! - Bounded: past `max_entries` operations, or past `max_bytes` of journaled keys
//!   and values (the fallback budget: the journal holds every outage write until
//!   replay), the namespace (scope + kind) with the most entries (or bytes) is
//!   collapsed into one *wipe*: its entries are dropped and, on recovery, every
//!   Redis key of that namespace is removed. Safe (nothing stale, nothing deleted
//!   comes back) at the cost of that namespace's data — the noisy tenant's, not
//!   its neighbours'.
//! - `depth()` is lock-free for health and for the "journal empty" fast path.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Default bound on journaled keys + prefixes.
pub const DEFAULT_MAX_ENTRIES: usize = 100_000;

/// A journaled key operation.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyOp {
  /// The key was written: value and expiry. `force`: replay overwrites whatever
  /// Redis holds (a write of this key with an unknown outcome may land late).
  Set {
    value: Arc<str>,
    expires_at: Instant,
    force: bool,
  },
  /// The key was deleted.
  Delete,
}

/// What the journal knows about one key, for reads made before replay finished.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
  /// Nothing journaled for it: Redis is authoritative.
  Unknown,
  /// Written during the outage: this value.
  Value(Arc<str>),
  /// Deleted, invalidated or expired during the outage.
  Gone,
}

/// Everything to replay, in replay order.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Batch {
  /// Namespaces to remove entirely (overflow rule).
  pub wipes: Vec<String>,
  /// Literal prefixes to invalidate.
  pub prefixes: Vec<String>,
  /// Key operations; expired sets already turned into deletes.
  pub keys: Vec<(String, KeyOp)>,
  /// Sequence number of each entry (wipes, then prefixes, then keys), so that
  /// [`Journal::commit`] removes only entries that were not replaced meanwhile.
  seqs: Vec<u64>,
}

impl Batch {
  /// Number of operations.
  pub fn len(&self) -> usize {
    self.wipes.len() + self.prefixes.len() + self.keys.len()
  }
  /// True when there is nothing to replay.
  pub fn is_empty(&self) -> bool {
    self.len() == 0
  }
}

#[derive(Default)]
struct Inner {
  /// key -> (latest op, its namespace, sequence number, uncertain: a Redis write of
  /// this key with an unknown outcome happened during the outage)
  keys: HashMap<String, (KeyOp, Arc<str>, u64, bool)>,
  prefixes: BTreeMap<String, u64>,
  wipes: BTreeMap<String, u64>,
  seq: u64,
  /// Bytes of the journaled keys and values ([`op_bytes`]).
  bytes: u64,
}

/// What a journaled key operation holds in memory: key, value, a fixed overhead.
fn op_bytes(key: &str, op: &KeyOp) -> u64 {
  let value = match op {
    KeyOp::Set { value, .. } => value.len(),
    KeyOp::Delete => 0,
  };
  (key.len() + value) as u64 + OP_OVERHEAD
}

/// Bytes charged per journaled key on top of key and value (map slot, namespace, flags).
pub const OP_OVERHEAD: u64 = 96;

impl Inner {
  fn insert_key(&mut self, key: &str, entry: (KeyOp, Arc<str>, u64, bool)) {
    self.bytes += op_bytes(key, &entry.0);
    if let Some((old, ..)) = self.keys.insert(key.to_string(), entry) {
      self.bytes -= op_bytes(key, &old);
    }
  }

  fn remove_key(&mut self, key: &str) {
    if let Some((old, ..)) = self.keys.remove(key) {
      self.bytes -= op_bytes(key, &old);
    }
  }

  /// Drops every key entry starting with `prefix`.
  fn remove_keys_under(&mut self, prefix: &str) {
    let mut freed = 0;
    self.keys.retain(|k, e| {
      let keep = !k.starts_with(prefix);
      if !keep {
        freed += op_bytes(k, &e.0);
      }
      keep
    });
    self.bytes -= freed;
  }

  fn depth(&self) -> usize {
    self.keys.len() + self.prefixes.len() + self.wipes.len()
  }

  fn next_seq(&mut self) -> u64 {
    self.seq += 1;
    self.seq
  }

  /// The namespace with the most journaled keys (`by_bytes`: the most bytes),
  /// and how many keys it has.
  fn largest_namespace(&self, by_bytes: bool) -> Option<(Arc<str>, usize)> {
    let mut sizes: HashMap<&Arc<str>, (u64, usize)> = HashMap::new();
    for (k, (op, ns, _, _)) in &self.keys {
      let s = sizes.entry(ns).or_default();
      s.0 += if by_bytes { op_bytes(k, op) } else { 1 };
      s.1 += 1;
    }
    sizes
      .into_iter()
      .max_by_key(|(_, (size, _))| *size)
      .map(|(ns, (_, n))| (ns.clone(), n))
  }

  fn covered(&self, key: &str) -> bool {
    self
      .wipes
      .keys()
      .chain(self.prefixes.keys())
      .any(|p| key.starts_with(p.as_str()))
  }

  fn add_prefix(&mut self, prefix: &str) {
    if self.covered(prefix) {
      return;
    }
    self.prefixes.retain(|p, _| !p.starts_with(prefix));
    let seq = self.next_seq();
    self.prefixes.insert(prefix.to_string(), seq);
  }

  fn add_wipe(&mut self, namespace: &str) {
    self.remove_keys_under(namespace);
    self.prefixes.retain(|p, _| !p.starts_with(namespace));
    self.wipes.retain(|w, _| !w.starts_with(namespace));
    let seq = self.next_seq();
    self.wipes.insert(namespace.to_string(), seq);
  }
}

/// The journal of one cache.
pub struct Journal {
  inner: Mutex<Inner>,
  depth: AtomicUsize,
  max_entries: usize,
  max_bytes: u64,
  roots: Vec<String>,
  wiped_namespaces: AtomicU64,
}

impl Journal {
  /// An empty journal holding at most `max_entries` operations and `max_bytes`
  /// of keys and values; `roots` (the cache's prefixes under `keyPrefix`, rate
  /// limiters excluded) are what the last-resort overflow rule wipes.
  pub fn new(max_entries: usize, max_bytes: u64, roots: Vec<String>) -> Self {
    Journal {
      inner: Mutex::new(Inner::default()),
      depth: AtomicUsize::new(0),
      max_entries: max_entries.max(4),
      max_bytes,
      roots,
      wiped_namespaces: AtomicU64::new(0),
    }
  }

  /// Overflow rule, before recording an operation that adds `new_entries` entries
  /// and `incoming` bytes: wipe the namespace with the most entries (or bytes, when
  /// over the byte bound); when wipes themselves pile up (many small namespaces),
  /// or one namespace holds a single huge entry, wipe everything under `roots`.
  fn make_room(&self, inner: &mut Inner, new_entries: usize, incoming: u64) {
    loop {
      let over_count = inner.depth() + new_entries > self.max_entries;
      let over_bytes = inner.bytes + incoming > self.max_bytes;
      if !over_count && !over_bytes {
        return;
      }
      self.wiped_namespaces.fetch_add(1, Ordering::Relaxed);
      match inner.largest_namespace(!over_count) {
        Some((ns, n)) if (n > 1 || !over_count) && inner.wipes.len() < self.max_entries / 4 => inner.add_wipe(&ns),
        _ => {
          let seq = inner.next_seq();
          inner.keys.clear();
          inner.bytes = 0;
          inner.prefixes.clear();
          inner.wipes.clear();
          for root in &self.roots {
            inner.wipes.insert(root.clone(), seq);
          }
          return;
        }
      }
    }
  }

  /// Operations waiting for replay.
  pub fn depth(&self) -> usize {
    self.depth.load(Ordering::Acquire)
  }

  /// True when nothing waits for replay.
  pub fn is_empty(&self) -> bool {
    self.depth() == 0
  }

  /// How many times the overflow rule wiped a namespace.
  #[cfg(test)]
  pub fn overflow_wipes(&self) -> u64 {
    self.wiped_namespaces.load(Ordering::Relaxed)
  }

  fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
    let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
    let r = f(&mut inner);
    self.depth.store(inner.depth(), Ordering::Release);
    r
  }

  fn record_key(&self, key: &str, op: KeyOp, namespace: &str, uncertain: bool) {
    self.with(|inner| {
      // uncertainty sticks to the key until replay: the late write may land any time
      let uncertain = uncertain || inner.keys.get(key).is_some_and(|e| e.3);
      let replaced = inner.keys.get(key).map_or(0, |e| op_bytes(key, &e.0));
      let new_entries = usize::from(replaced == 0);
      self.make_room(inner, new_entries, op_bytes(key, &op).saturating_sub(replaced));
      if matches!(op, KeyOp::Delete) && inner.wipes.keys().any(|w| key.starts_with(w.as_str())) {
        inner.remove_key(key); // the wipe already removes it
        return;
      }
      let seq = inner.next_seq();
      inner.insert_key(key, (op, namespace.into(), seq, uncertain));
    })
  }

  /// Records a write of `key` (in `namespace`) served from memory. `uncertain`:
  /// a Redis write of it just failed with an unknown outcome.
  pub fn record_set(&self, key: &str, value: Arc<str>, expires_at: Instant, namespace: &str, uncertain: bool) {
    let op = KeyOp::Set {
      value,
      expires_at,
      force: false,
    };
    self.record_key(key, op, namespace, uncertain);
  }

  /// Records a delete of `key` (in `namespace`) served from memory.
  pub fn record_delete(&self, key: &str, namespace: &str, uncertain: bool) {
    self.record_key(key, KeyOp::Delete, namespace, uncertain);
  }

  /// Records an invalidation of every key starting with `prefix`.
  pub fn record_invalidate(&self, prefix: &str) {
    self.with(|inner| {
      inner.remove_keys_under(prefix);
      if !inner.covered(prefix) {
        self.make_room(inner, 1, 0);
      }
      inner.add_prefix(prefix);
    })
  }

  /// The keys under `prefix` written during the outage and still live (for listings).
  pub fn live_keys_under(&self, prefix: &str, now: Instant) -> Vec<String> {
    if self.is_empty() {
      return Vec::new();
    }
    self.with(|inner| {
      inner
        .keys
        .iter()
        .filter(|(k, e)| k.starts_with(prefix) && matches!(&e.0, KeyOp::Set { expires_at, .. } if *expires_at > now))
        .map(|(k, _)| k.clone())
        .collect()
    })
  }

  /// What the journal says about `key` (for reads before replay finished).
  pub fn lookup(&self, key: &str, now: Instant) -> Lookup {
    if self.is_empty() {
      return Lookup::Unknown;
    }
    self.with(|inner| match inner.keys.get(key).map(|e| &e.0) {
      Some(KeyOp::Set { value, expires_at, .. }) if *expires_at > now => Lookup::Value(value.clone()),
      Some(_) => Lookup::Gone,
      None if inner.covered(key) => Lookup::Gone,
      None => Lookup::Unknown,
    })
  }

  /// A copy of everything to replay. Entries stay in the journal (reads keep
  /// seeing them) until [`Journal::commit`] after a successful replay.
  pub fn snapshot(&self, now: Instant) -> Batch {
    self.with(|inner| {
      let mut seqs = Vec::with_capacity(inner.depth());
      seqs.extend(inner.wipes.values().copied());
      seqs.extend(inner.prefixes.values().copied());
      let mut keys = Vec::with_capacity(inner.keys.len());
      for (k, (op, _, seq, uncertain)) in &inner.keys {
        let op = match op {
          KeyOp::Set { expires_at, .. } if *expires_at <= now => KeyOp::Delete,
          KeyOp::Set { value, expires_at, .. } => KeyOp::Set {
            value: value.clone(),
            expires_at: *expires_at,
            force: *uncertain,
          },
          KeyOp::Delete => KeyOp::Delete,
        };
        keys.push((k.clone(), op));
        seqs.push(*seq);
      }
      Batch {
        wipes: inner.wipes.keys().cloned().collect(),
        prefixes: inner.prefixes.keys().cloned().collect(),
        keys,
        seqs,
      }
    })
  }

  /// Removes what `batch` replayed, except entries recorded again since the
  /// snapshot: those are newer, wait for the next replay, and will overwrite
  /// unconditionally (what Redis holds for them is the older value just replayed).
  #[cfg(test)]
  pub fn commit(&self, batch: &Batch) {
    self.commit_prefixes(batch);
    self.commit_keys(batch, 0..batch.keys.len());
  }

  /// The wipes and prefix invalidations of [`Journal::commit`] (replayed before any key).
  pub fn commit_prefixes(&self, batch: &Batch) {
    self.with(|inner| {
      let mut seqs = batch.seqs.iter();
      for w in &batch.wipes {
        let seq = seqs.next().copied();
        if inner.wipes.get(w).copied() == seq {
          inner.wipes.remove(w);
        }
      }
      for p in &batch.prefixes {
        let seq = seqs.next().copied();
        if inner.prefixes.get(p).copied() == seq {
          inner.prefixes.remove(p);
        }
      }
    })
  }

  /// The key operations `range` of `batch` of [`Journal::commit`]: a replay commits each
  /// chunk of keys once it is applied, so that a key leaves the journal unless it was
  /// written again while its own chunk was on its way (not while the whole replay ran:
  /// under steady writes to the same keys that would never end).
  pub fn commit_keys(&self, batch: &Batch, range: std::ops::Range<usize>) {
    let first = batch.wipes.len() + batch.prefixes.len();
    self.with(|inner| {
      for i in range {
        let (k, _) = &batch.keys[i];
        let seq = batch.seqs.get(first + i).copied();
        match inner.keys.get_mut(k) {
          Some(entry) if Some(entry.2) == seq => {
            inner.remove_key(k);
          }
          // re-recorded while the replay ran: Redis now holds *our* older value,
          // so the newer entry must overwrite it whatever its expiry
          Some(entry) => entry.3 = true,
          None => {}
        }
      }
    })
  }

  /// Snapshot and commit at once (tests).
  #[cfg(test)]
  pub fn take(&self, now: Instant) -> Batch {
    let batch = self.snapshot(now);
    self.commit(&batch);
    batch
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use std::time::Duration;

  fn later() -> Instant {
    Instant::now() + Duration::from_secs(60)
  }

  fn set(j: &Journal, k: &str, v: &str) {
    j.record_set(k, v.into(), later(), "ns:", false);
  }

  #[test]
  fn keeps_only_the_latest_operation_per_key() {
    let j = Journal::new(100, u64::MAX, vec!["ns:".to_string()]);
    set(&j, "ns:a", "1");
    set(&j, "ns:a", "2");
    assert_eq!(j.depth(), 1);
    assert_eq!(j.lookup("ns:a", Instant::now()), Lookup::Value("2".into()));
    j.record_delete("ns:a", "ns:", false);
    assert_eq!(j.depth(), 1);
    assert_eq!(j.lookup("ns:a", Instant::now()), Lookup::Gone);
    assert_eq!(j.lookup("ns:b", Instant::now()), Lookup::Unknown);
  }

  #[test]
  fn an_invalidation_supersedes_earlier_writes_under_it_only() {
    let j = Journal::new(100, u64::MAX, vec!["ns:".to_string()]);
    set(&j, "ns:orders_1", "old");
    set(&j, "ns:ordersX", "keep");
    j.record_invalidate("ns:orders_");
    set(&j, "ns:orders_2", "new");
    let b = j.take(Instant::now());
    assert_eq!(b.prefixes, vec!["ns:orders_".to_string()]);
    let mut keys: Vec<_> = b.keys.iter().map(|(k, _)| k.as_str()).collect();
    keys.sort();
    assert_eq!(
      keys,
      vec!["ns:ordersX", "ns:orders_2"],
      "the write after the invalidation is replayed after it"
    );
    assert!(j.is_empty());
  }

  #[test]
  fn invalidated_keys_read_as_gone_until_replayed() {
    let j = Journal::new(100, u64::MAX, vec!["ns:".to_string()]);
    j.record_invalidate("ns:orders_");
    assert_eq!(j.lookup("ns:orders_1", Instant::now()), Lookup::Gone);
    assert_eq!(j.lookup("ns:ordersX", Instant::now()), Lookup::Unknown);
  }

  #[test]
  fn nested_prefixes_are_kept_once() {
    let j = Journal::new(100, u64::MAX, vec!["ns:".to_string()]);
    j.record_invalidate("ns:a:b");
    j.record_invalidate("ns:a");
    j.record_invalidate("ns:a:c");
    assert_eq!(j.take(Instant::now()).prefixes, vec!["ns:a".to_string()]);
  }

  #[test]
  fn expired_writes_replay_as_deletes() {
    let j = Journal::new(100, u64::MAX, vec!["ns:".to_string()]);
    j.record_set("ns:s", "1".into(), Instant::now(), "ns:", false);
    std::thread::sleep(Duration::from_millis(2));
    assert_eq!(j.lookup("ns:s", Instant::now()), Lookup::Gone);
    assert_eq!(j.take(Instant::now()).keys, vec![("ns:s".to_string(), KeyOp::Delete)]);
  }

  #[test]
  fn overflow_wipes_the_largest_namespace_and_stays_bounded() {
    let j = Journal::new(10, u64::MAX, vec!["fc:".to_string()]);
    for i in 0..9 {
      j.record_set(&format!("fc:q:{i}"), "1".into(), later(), "fc:q:", false);
    }
    j.record_set("fc:s:keep", "1".into(), later(), "fc:s:", false);
    j.record_set("fc:s:keep2", "1".into(), later(), "fc:s:", false);
    assert!(j.depth() <= 10, "depth {}", j.depth());
    let b = j.take(Instant::now());
    assert_eq!(
      b.wipes,
      vec!["fc:q:".to_string()],
      "the namespace with most entries is wiped"
    );
    let mut keys: Vec<_> = b.keys.iter().map(|(k, _)| k.clone()).collect();
    keys.sort();
    assert_eq!(
      keys,
      vec!["fc:s:keep", "fc:s:keep2"],
      "other namespaces keep their operations"
    );
    assert_eq!(j.overflow_wipes(), 1);
  }

  #[test]
  fn many_small_namespaces_collapse_into_one_root_wipe() {
    let j = Journal::new(8, u64::MAX, vec!["fc:".to_string()]);
    for t in 0..50 {
      let ns = format!("fc:t:{t}:s:");
      j.record_delete(&format!("{ns}x"), &ns, false);
      assert!(j.depth() <= 8, "depth {}", j.depth());
    }
    let b = j.take(Instant::now());
    assert!(b.wipes.contains(&"fc:".to_string()), "{b:?}");
    assert!(b.keys.len() < 8);
  }

  #[test]
  fn the_last_resort_wipe_spares_the_rate_limiters() {
    let roots = crate::keys::KeyLayout::new("fc:").entry_prefixes();
    let j = Journal::new(8, u64::MAX, roots.clone());
    for t in 0..50 {
      let ns = format!("fc:t:{t}:s:");
      j.record_delete(&format!("{ns}x"), &ns, false);
    }
    let b = j.take(Instant::now());
    for root in &roots {
      assert!(b.wipes.contains(root), "{b:?}");
    }
    assert!(b.wipes.iter().all(|w| !"fc:r:g:10:1000:10:ip".starts_with(w.as_str())));
  }

  #[test]
  fn commit_keeps_operations_recorded_during_replay() {
    let j = Journal::new(100, u64::MAX, vec!["ns:".to_string()]);
    set(&j, "ns:a", "old");
    set(&j, "ns:b", "b");
    j.record_invalidate("ns:p");
    let batch = j.snapshot(Instant::now());
    assert_eq!(j.depth(), 3, "a snapshot leaves entries visible to reads");
    assert_eq!(j.lookup("ns:a", Instant::now()), Lookup::Value("old".into()));
    set(&j, "ns:a", "newer");
    j.commit(&batch);
    assert_eq!(j.lookup("ns:a", Instant::now()), Lookup::Value("newer".into()));
    assert_eq!(j.lookup("ns:b", Instant::now()), Lookup::Unknown);
    assert_eq!(j.depth(), 1);
  }

  #[test]
  fn a_replay_commits_chunk_by_chunk() {
    let j = Journal::new(100, u64::MAX, vec!["ns:".to_string()]);
    j.record_invalidate("ns:p");
    for k in ["ns:a", "ns:b", "ns:c"] {
      set(&j, k, "v");
    }
    let batch = j.snapshot(Instant::now());
    let order: Vec<&str> = batch.keys.iter().map(|(k, _)| k.as_str()).collect();
    j.commit_prefixes(&batch);
    assert_eq!(j.depth(), 3, "the invalidation is applied and gone, the keys wait");
    j.commit_keys(&batch, 0..2);
    assert_eq!(j.lookup(order[0], Instant::now()), Lookup::Unknown);
    assert_eq!(j.lookup(order[1], Instant::now()), Lookup::Unknown);
    // written again after its own chunk was committed: a new entry, replayed next time
    set(&j, order[0], "later");
    // written again before its chunk is committed: kept, and forced
    set(&j, order[2], "later");
    j.commit_keys(&batch, 2..3);
    assert_eq!(j.depth(), 2);
    let next = j.snapshot(Instant::now());
    let force_of = |key: &str| {
      next.keys.iter().find_map(|(k, op)| match op {
        KeyOp::Set { force, .. } if k == key => Some(*force),
        _ => None,
      })
    };
    assert_eq!(force_of(order[2]), Some(true));
    assert_eq!(force_of(order[0]), Some(false));
  }

  #[test]
  fn an_uncertain_write_forces_the_replay_of_its_key() {
    let j = Journal::new(100, u64::MAX, vec!["ns:".to_string()]);
    j.record_set("ns:a", "v1".into(), later(), "ns:", true);
    j.record_delete("ns:a", "ns:", false);
    j.record_set("ns:a", "v2".into(), later(), "ns:", false);
    j.record_set("ns:b", "b".into(), later(), "ns:", false);
    let b = j.take(Instant::now());
    let force = |key: &str| match b.keys.iter().find(|(k, _)| k == key).map(|(_, op)| op) {
      Some(KeyOp::Set { force, .. }) => *force,
      other => panic!("{other:?}"),
    };
    assert!(force("ns:a"), "uncertainty sticks to the key across later operations");
    assert!(!force("ns:b"));
  }

  #[test]
  fn an_entry_rewritten_during_replay_overwrites_what_replay_wrote() {
    let j = Journal::new(100, u64::MAX, vec!["ns:".to_string()]);
    set(&j, "ns:a", "v1");
    let batch = j.snapshot(Instant::now());
    set(&j, "ns:a", "v2");
    j.commit(&batch);
    match &j.take(Instant::now()).keys[..] {
      [(k, KeyOp::Set { value, force, .. })] => {
        assert_eq!((k.as_str(), &**value, *force), ("ns:a", "v2", true));
      }
      other => panic!("{other:?}"),
    }
  }

  #[test]
  fn past_the_byte_bound_the_namespace_with_the_most_bytes_is_wiped() {
    let value = |n: usize| -> Arc<str> { "v".repeat(n).into() };
    let later = Instant::now() + Duration::from_secs(60);
    let j = Journal::new(1000, 20_000, vec!["fc:".to_string()]);
    for i in 0..5 {
      j.record_set(
        &format!("fc:t:5:quiet:s:{i}"),
        value(100),
        later,
        "fc:t:5:quiet:s:",
        false,
      );
    }
    for i in 0..40 {
      j.record_set(
        &format!("fc:t:5:noisy:s:{i}"),
        value(1000),
        later,
        "fc:t:5:noisy:s:",
        false,
      );
    }
    let now = Instant::now();
    for i in 0..5 {
      assert!(
        matches!(j.lookup(&format!("fc:t:5:quiet:s:{i}"), now), Lookup::Value(_)),
        "quiet:{i} kept"
      );
    }
    assert!(j.overflow_wipes() >= 1);
    let batch = j.snapshot(now);
    assert_eq!(batch.wipes, ["fc:t:5:noisy:s:"]);
    assert!(batch
      .keys
      .iter()
      .all(|(k, _)| k.contains("quiet") || k.contains("noisy")));
    assert!(
      j.with(|i| i.bytes) <= 20_000,
      "journal within its byte bound: {}",
      j.with(|i| i.bytes)
    );
    let exact: u64 = j.with(|i| i.keys.iter().map(|(k, e)| op_bytes(k, &e.0)).sum());
    assert_eq!(j.with(|i| i.bytes), exact, "byte accounting is exact");
    j.take(now);
    assert_eq!(j.with(|i| i.bytes), 0);
  }

  #[test]
  fn lists_live_outage_writes_under_a_prefix() {
    let j = Journal::new(100, u64::MAX, vec!["ns:".to_string()]);
    let now = Instant::now();
    assert!(j.live_keys_under("ns:s:", now).is_empty());
    let later = now + Duration::from_secs(60);
    j.record_set("ns:s:a", "1".into(), later, "ns:s:", false);
    j.record_set("ns:s:old", "1".into(), now, "ns:s:", false);
    j.record_set("ns:q:a", "1".into(), later, "ns:q:", false);
    j.record_set("ns:s:b", "1".into(), later, "ns:s:", false);
    j.record_delete("ns:s:b", "ns:s:", false);
    let mut keys = j.live_keys_under("ns:s:", now + Duration::from_millis(1));
    keys.sort();
    assert_eq!(keys, ["ns:s:a"], "expired, deleted and other kinds are left out");
  }
}
