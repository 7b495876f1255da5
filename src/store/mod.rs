//! Storage back ends behind one interface.
//!
//! Keys here are full keys (see [`crate::keys`]); values are JSON text. Both
//! stores honour a per-entry TTL in milliseconds and remove by literal prefix.

use std::future::Future;
use std::time::Duration;

use crate::error::Result;

pub mod memory;
pub mod redis;

pub use self::memory::{MemoryStats, MemoryStore};
pub use self::redis::RedisStore;

/// The operations the cache needs from a store.
pub trait Store: Send + Sync {
  /// The value of `key`, if present and not expired.
  fn get(&self, key: &str) -> impl Future<Output = Result<Option<String>>> + Send;
  /// Stores `value` under `key` for `ttl_ms` milliseconds, replacing any previous value.
  fn set(&self, key: &str, value: &str, ttl_ms: u64) -> impl Future<Output = Result<()>> + Send;
  /// Removes `key`; true if a live entry existed.
  fn delete(&self, key: &str) -> impl Future<Output = Result<bool>> + Send;
  /// Removes every live key starting with `literal_prefix`; returns how many.
  fn invalidate_prefix(&self, literal_prefix: &str) -> impl Future<Output = Result<u64>> + Send;
  /// Round-trip check.
  fn ping(&self) -> impl Future<Output = Result<Duration>> + Send;
}

#[cfg(test)]
pub(crate) mod contract {
  //! One behaviour suite, run against every store.
  use super::Store;

  /// Runs the shared contract against `store` (keys are namespaced by `ns`).
  pub async fn run<S: Store>(store: &S, ns: &str) {
    let k = |s: &str| format!("{ns}{s}");
    assert_eq!(store.get(&k("missing")).await.unwrap(), None);
    store.set(&k("a"), "{\"x\":1}", 60_000).await.unwrap();
    assert_eq!(store.get(&k("a")).await.unwrap().as_deref(), Some("{\"x\":1}"));
    store.set(&k("a"), "2", 60_000).await.unwrap();
    assert_eq!(store.get(&k("a")).await.unwrap().as_deref(), Some("2"), "set replaces");
    assert!(store.delete(&k("a")).await.unwrap());
    assert!(!store.delete(&k("a")).await.unwrap(), "second delete finds nothing");

    for key in ["orders_1", "orders_2", "orders_", "ordersX", "order", "o*rders_", "[o]rders_1"] {
      store.set(&k(key), "1", 60_000).await.unwrap();
    }
    assert_eq!(store.invalidate_prefix(&k("orders_")).await.unwrap(), 3);
    assert_eq!(store.get(&k("orders_1")).await.unwrap(), None);
    assert!(store.get(&k("ordersX")).await.unwrap().is_some(), "ordersX survives");
    assert_eq!(store.invalidate_prefix(&k("o*")).await.unwrap(), 1, "glob is literal");
    assert!(store.get(&k("order")).await.unwrap().is_some());
    assert_eq!(store.invalidate_prefix(&k("[o]")).await.unwrap(), 1);
    assert_eq!(store.invalidate_prefix(&k("nothing")).await.unwrap(), 0);

    store.set(&k("short"), "1", 30).await.unwrap();
    assert!(store.get(&k("short")).await.unwrap().is_some());
    tokio::time::sleep(std::time::Duration::from_millis(80)).await;
    assert_eq!(store.get(&k("short")).await.unwrap(), None, "TTL honoured");
    assert!(!store.delete(&k("short")).await.unwrap(), "an expired entry does not count as deleted");

    store.set(&k("uni:ключ🔑"), "\"é\"", 60_000).await.unwrap();
    assert_eq!(store.get(&k("uni:ключ🔑")).await.unwrap().as_deref(), Some("\"é\""));
    assert_eq!(store.invalidate_prefix(&k("uni:ключ")).await.unwrap(), 1);
    store.ping().await.unwrap();
  }
}
