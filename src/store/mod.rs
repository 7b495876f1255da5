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
