//! Writers racing prefix invalidations through a cache (the query index's hardest case).

use std::sync::Arc;

use ferrocache::Cache;
use ferrocache::{EntryType, Scope};

/// `writers` tasks each write `per_writer` manager-scope query keys `p_<i % 7>_<w>_<i>` while
/// one task invalidates the prefixes `p_0` … `p_6` in turn, 40 times; returns how many entries
/// those invalidations removed (every write is then either removed once or still live).
pub async fn writes_racing_invalidations(cache: &Arc<Cache>, writers: usize, per_writer: usize) -> u64 {
  let tasks: Vec<_> = (0..writers)
    .map(|w| {
      let cache = cache.clone();
      tokio::spawn(async move {
        for i in 0..per_writer {
          let key = format!("p_{}_{w}_{i}", i % 7);
          cache
            .set(Scope::Global, EntryType::Query, &key, "1", None)
            .await
            .unwrap();
        }
      })
    })
    .collect();
  let invalidator = {
    let cache = cache.clone();
    tokio::spawn(async move {
      let mut removed = 0;
      for round in 0..40 {
        let prefix = format!("p_{}", round % 7);
        removed += cache
          .invalidate(Scope::Global, EntryType::Query, &prefix, false)
          .await
          .unwrap();
        tokio::task::yield_now().await;
      }
      removed
    })
  };
  for task in tasks {
    task.await.unwrap();
  }
  invalidator.await.unwrap()
}

/// After [`writes_racing_invalidations`] with `writes` writes in all: every `live` entry is
/// `listed` in the index, every write was removed once or is still live, and one more
/// invalidation of `p_` removes exactly the live ones.
pub async fn assert_settled(
  cache: &Cache,
  removed_during: u64,
  writes: u64,
  live: &[String],
  listed: &std::collections::BTreeSet<String>,
) {
  let unlisted: Vec<&String> = live.iter().filter(|k| !listed.contains(*k)).collect();
  assert!(unlisted.is_empty(), "live but not listed: {unlisted:?}");
  assert_eq!(
    removed_during + live.len() as u64,
    writes,
    "every write removed once or still live"
  );
  assert_eq!(
    cache
      .invalidate(Scope::Global, EntryType::Query, "p_", false)
      .await
      .unwrap(),
    live.len() as u64
  );
}
