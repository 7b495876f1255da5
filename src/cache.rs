//! The cache core: validated operations over Redis with the in-process store behind it.
//!
//! ## Behavior
//! - Every operation validates its arguments first (key non-empty and within
//!   `maxKeyBytes`, TTL positive and finite, value within `maxValueBytes`) and
//!   changes nothing when they are bad.
//! - `memory://`: the in-process store alone; the `*_local` functions answer
//!   synchronously on the calling thread.
//! - Redis mode: each call tries Redis within the `commandTimeoutMs` budget
//!   (see [`crate::failover`]); on an outage it is served by the in-process
//!   store (or rejected with `ERR_REDIS_UNAVAILABLE` when fallback is off).
//! - The in-process store only holds what was written while Redis failed. A
//!   successful Redis write or delete removes the key's in-process copy and every
//!   invalidation is applied to both, so an older fallback copy is never served later.
//! - After [`Cache::close`] every operation fails with `ERR_CLOSED`.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::config::{ttl_ms, Backend, Config};
use crate::error::{Error, Result};
use crate::failover::{with_retry, Gate};
use crate::keys::{KeyLayout, Kind, Scope, MAX_TENANT_BYTES};
use crate::store::redis::RedisTimeouts;
use crate::store::{MemoryStats, MemoryStore, RedisStore, Store};

/// Which store answered a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
  /// Redis.
  Redis,
  /// The in-process store.
  Memory,
}

/// The cache: one per `CacheManager`.
pub struct Cache {
  config: Config,
  layout: KeyLayout,
  memory: MemoryStore,
  redis: Option<RedisStore>,
  gate: Gate,
  closed: AtomicBool,
}

impl Cache {
  /// A cache for `config`; does no I/O.
  pub fn new(config: Config) -> Result<Self> {
    let redis = match config.backend() {
      Backend::Redis { url } => Some(RedisStore::new(
        url,
        RedisTimeouts {
          command: config.command_timeout,
          connect: config.connect_timeout,
        },
      )?),
      Backend::Memory => None,
    };
    let memory = MemoryStore::new(config.fallback().max_bytes, config.largest_entry_bytes());
    Ok(Cache {
      layout: KeyLayout::new(config.key_prefix()),
      gate: Gate::new(config.retry.base_delay, config.retry.max_delay),
      config,
      memory,
      redis,
      closed: AtomicBool::new(false),
    })
  }

  /// The configuration in use.
  pub fn config(&self) -> &Config {
    &self.config
  }

  /// True for `memory://`: no Redis at all, every call answers synchronously.
  pub fn is_memory_only(&self) -> bool {
    self.redis.is_none()
  }

  /// Which store serves calls now.
  pub fn mode(&self) -> Mode {
    if self.redis.is_none() || self.gate.is_degraded() {
      Mode::Memory
    } else {
      Mode::Redis
    }
  }

  /// The in-process store's size.
  pub fn memory_stats(&self) -> MemoryStats {
    self.memory.stats()
  }

  /// The last Redis failure, password-free.
  pub fn last_error(&self) -> Option<String> {
    self.gate.last_error()
  }

  /// True once closed.
  pub fn is_closed(&self) -> bool {
    self.closed.load(Ordering::Acquire)
  }

  /// Closes: drops the connection and the in-process data. Idempotent.
  pub fn close(&self) {
    if !self.closed.swap(true, Ordering::AcqRel) {
      if let Some(r) = &self.redis {
        r.disconnect();
      }
      self.memory.clear();
    }
  }

  // ----- validation -------------------------------------------------------

  fn check_open(&self) -> Result<()> {
    if self.is_closed() {
      return Err(Error::Closed);
    }
    Ok(())
  }

  fn check_key(&self, what: &str, key: &str) -> Result<()> {
    if key.is_empty() {
      return Err(Error::invalid(format!("{what} must be a non-empty string")));
    }
    let max = self.config.limits().max_key_bytes;
    if key.len() > max {
      return Err(Error::TooLarge(format!(
        "{what} is {} bytes; the limit is {max} (limits.maxKeyBytes)",
        key.len()
      )));
    }
    Ok(())
  }

  fn check_scope(&self, scope: Scope<'_>) -> Result<()> {
    if let Scope::Tenant(t) = scope {
      if t.is_empty() || t.len() > MAX_TENANT_BYTES {
        return Err(Error::invalid(format!(
          "tenantId must be a non-empty string of at most {MAX_TENANT_BYTES} bytes"
        )));
      }
    }
    Ok(())
  }

  fn full_key(&self, scope: Scope<'_>, kind: Kind, key: &str) -> Result<String> {
    self.check_open()?;
    self.check_scope(scope)?;
    self.check_key(key_name(kind), key)?;
    Ok(self.layout.key(scope, kind, key))
  }

  fn prefix_key(
    &self,
    scope: Scope<'_>,
    kind: Kind,
    prefix: &str,
    allow_empty: bool,
  ) -> Result<String> {
    self.check_open()?;
    self.check_scope(scope)?;
    if !(allow_empty && prefix.is_empty()) {
      self.check_key("prefix", prefix)?;
    }
    Ok(self.layout.literal_prefix(scope, kind, prefix))
  }

  fn ttl(&self, kind: Kind, ttl_secs: Option<f64>) -> Result<u64> {
    match ttl_secs {
      Some(s) => ttl_ms(s),
      None => Ok(match kind {
        Kind::Session => self.config.session_ttl_ms,
        Kind::Query => self.config.query_ttl_ms,
      }),
    }
  }

  fn check_value(&self, json: &str) -> Result<()> {
    let max = self.config.limits().max_value_bytes;
    if json.len() > max {
      return Err(Error::TooLarge(format!(
        "value is {} bytes of JSON; the limit is {max} (limits.maxValueBytes)",
        json.len()
      )));
    }
    Ok(())
  }

  // ----- synchronous in-process path (memory:// only) ------------------------

  /// Reads from the in-process store on the calling thread.
  pub fn get_local(&self, scope: Scope<'_>, kind: Kind, key: &str) -> Result<Option<Arc<str>>> {
    let key = self.full_key(scope, kind, key)?;
    Ok(self.memory.get_now(&key))
  }

  /// Writes to the in-process store on the calling thread.
  pub fn set_local(
    &self,
    scope: Scope<'_>,
    kind: Kind,
    key: &str,
    json: &str,
    ttl_secs: Option<f64>,
  ) -> Result<()> {
    let key = self.full_key(scope, kind, key)?;
    let ttl = self.ttl(kind, ttl_secs)?;
    self.check_value(json)?;
    self.memory.set_now(&key, json.into(), ttl)
  }

  /// Deletes from the in-process store on the calling thread.
  pub fn delete_local(&self, scope: Scope<'_>, kind: Kind, key: &str) -> Result<bool> {
    let key = self.full_key(scope, kind, key)?;
    Ok(self.memory.delete_now(&key))
  }

  /// Prefix invalidation in the in-process store on the calling thread; an
  /// empty prefix is accepted only with `all`.
  pub fn invalidate_local(
    &self,
    scope: Scope<'_>,
    kind: Kind,
    prefix: &str,
    all: bool,
  ) -> Result<u64> {
    let literal = self.prefix_key(scope, kind, prefix, all)?;
    Ok(self.memory.invalidate_prefix_now(&literal))
  }

  // ----- asynchronous path ------------------------------------------------

  /// Reads `key`.
  pub async fn get(&self, scope: Scope<'_>, kind: Kind, key: &str) -> Result<Option<String>> {
    let key = self.full_key(scope, kind, key)?;
    self
      .run(
        |r| r.get(&key),
        |m| Ok(m.get_now(&key).map(|v| v.to_string())),
        |_| {},
      )
      .await
  }

  /// Writes `json` under `key` for `ttl_secs` (or the kind's default).
  pub async fn set(
    &self,
    scope: Scope<'_>,
    kind: Kind,
    key: &str,
    json: &str,
    ttl_secs: Option<f64>,
  ) -> Result<()> {
    let key = self.full_key(scope, kind, key)?;
    let ttl = self.ttl(kind, ttl_secs)?;
    self.check_value(json)?;
    self
      .run(
        |r| r.set(&key, json, ttl),
        |m| m.set_now(&key, json.into(), ttl),
        |m| {
          m.delete_now(&key);
        },
      )
      .await
  }

  /// Deletes `key`; true if it existed.
  pub async fn delete(&self, scope: Scope<'_>, kind: Kind, key: &str) -> Result<bool> {
    let key = self.full_key(scope, kind, key)?;
    self
      .run(
        |r| r.delete(&key),
        |m| Ok(m.delete_now(&key)),
        |m| {
          m.delete_now(&key);
        },
      )
      .await
  }

  /// Removes every entry of (`scope`, `kind`) whose key starts with `prefix`
  /// (every entry when `all`); returns how many.
  pub async fn invalidate(
    &self,
    scope: Scope<'_>,
    kind: Kind,
    prefix: &str,
    all: bool,
  ) -> Result<u64> {
    let literal = self.prefix_key(scope, kind, prefix, all)?;
    self
      .run(
        |r| r.invalidate_prefix(&literal),
        |m| Ok(m.invalidate_prefix_now(&literal)),
        |m| {
          m.invalidate_prefix_now(&literal);
        },
      )
      .await
  }

  /// Runs `on_redis` within the call budget, or `on_memory` when Redis is out;
  /// `after_redis` keeps the in-process store consistent after a Redis success.
  async fn run<'a, T, R, RF, M, A>(&'a self, on_redis: R, on_memory: M, after_redis: A) -> Result<T>
  where
    R: Fn(&'a RedisStore) -> RF,
    RF: Future<Output = Result<T>>,
    M: FnOnce(&MemoryStore) -> Result<T>,
    A: FnOnce(&MemoryStore),
  {
    let Some(redis) = &self.redis else {
      return on_memory(&self.memory);
    };
    if self.gate.allows_redis() {
      let budget = self.config.command_timeout;
      let attempt = with_retry(&self.config.retry, budget, || on_redis(redis));
      let result = match tokio::time::timeout(budget, attempt).await {
        Ok(r) => r,
        Err(_) => Err(Error::timeout("call", budget.as_millis() as u64)),
      };
      match result {
        Ok(v) => {
          self.gate.on_success();
          after_redis(&self.memory);
          return Ok(v);
        }
        Err(e) if e.is_outage() => {
          self.gate.on_failure(&e);
          if !self.config.fallback().enabled {
            return Err(Error::RedisUnavailable(format!(
              "Redis is unavailable and fallback is disabled: {e}"
            )));
          }
        }
        Err(e) => return Err(e),
      }
    } else if !self.config.fallback().enabled {
      let cause = self.gate.last_error().unwrap_or_default();
      return Err(Error::RedisUnavailable(format!(
        "Redis is unavailable and fallback is disabled: {cause}"
      )));
    }
    self.check_open()?;
    on_memory(&self.memory)
  }
}

fn key_name(kind: Kind) -> &'static str {
  match kind {
    Kind::Session => "sessionId",
    Kind::Query => "key",
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::config::ConfigBuilder;

  fn memory_cache() -> Cache {
    Cache::new(
      ConfigBuilder {
        url: Some("memory://".into()),
        ..Default::default()
      }
      .build()
      .unwrap(),
    )
    .unwrap()
  }

  /// A Redis URL where nothing listens (a port just released by the OS).
  fn dead_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    format!("redis://127.0.0.1:{port}")
  }

  #[tokio::test]
  async fn memory_mode_round_trip() {
    let c = memory_cache();
    assert!(c.is_memory_only());
    c.set(Scope::Global, Kind::Session, "s1", "{\"a\":1}", None)
      .await
      .unwrap();
    assert_eq!(
      c.get(Scope::Global, Kind::Session, "s1")
        .await
        .unwrap()
        .as_deref(),
      Some("{\"a\":1}")
    );
    assert_eq!(
      c.get(Scope::Global, Kind::Query, "s1").await.unwrap(),
      None,
      "kinds are separate"
    );
    assert_eq!(
      c.get_local(Scope::Global, Kind::Session, "s1")
        .unwrap()
        .as_deref(),
      Some("{\"a\":1}")
    );
    assert!(c.delete(Scope::Global, Kind::Session, "s1").await.unwrap());
  }

  #[tokio::test]
  async fn bad_input_changes_nothing() {
    let c = memory_cache();
    c.set(Scope::Global, Kind::Query, "k", "1", None)
      .await
      .unwrap();
    let long = "k".repeat(5000);
    let big = "1".repeat(5 * 1024 * 1024);
    assert_eq!(
      c.set(Scope::Global, Kind::Query, "", "2", None)
        .await
        .unwrap_err()
        .code(),
      "ERR_INVALID_ARG"
    );
    assert_eq!(
      c.set(Scope::Global, Kind::Query, &long, "2", None)
        .await
        .unwrap_err()
        .code(),
      "ERR_TOO_LARGE"
    );
    assert_eq!(
      c.set(Scope::Global, Kind::Query, "k", &big, None)
        .await
        .unwrap_err()
        .code(),
      "ERR_TOO_LARGE"
    );
    for ttl in [0.0, -1.0, f64::NAN, f64::INFINITY] {
      assert_eq!(
        c.set(Scope::Global, Kind::Query, "k", "2", Some(ttl))
          .await
          .unwrap_err()
          .code(),
        "ERR_INVALID_ARG"
      );
    }
    assert_eq!(
      c.invalidate(Scope::Global, Kind::Query, "", false)
        .await
        .unwrap_err()
        .code(),
      "ERR_INVALID_ARG"
    );
    assert_eq!(
      c.get(Scope::Tenant(""), Kind::Query, "k")
        .await
        .unwrap_err()
        .code(),
      "ERR_INVALID_ARG"
    );
    assert_eq!(
      c.get(Scope::Global, Kind::Query, "k")
        .await
        .unwrap()
        .as_deref(),
      Some("1")
    );
  }

  #[tokio::test]
  async fn tenants_are_isolated() {
    let c = memory_cache();
    c.set(Scope::Tenant("a"), Kind::Query, "orders_1", "\"a\"", None)
      .await
      .unwrap();
    c.set(Scope::Tenant("b"), Kind::Query, "orders_1", "\"b\"", None)
      .await
      .unwrap();
    c.set(Scope::Global, Kind::Query, "orders_1", "\"g\"", None)
      .await
      .unwrap();
    assert_eq!(
      c.invalidate(Scope::Tenant("a"), Kind::Query, "orders_", false)
        .await
        .unwrap(),
      1
    );
    assert_eq!(
      c.get(Scope::Tenant("b"), Kind::Query, "orders_1")
        .await
        .unwrap()
        .as_deref(),
      Some("\"b\"")
    );
    assert_eq!(
      c.invalidate(Scope::Global, Kind::Query, "", true)
        .await
        .unwrap(),
      1,
      "invalidateAll stays in scope"
    );
    assert!(c
      .get(Scope::Tenant("b"), Kind::Query, "orders_1")
      .await
      .unwrap()
      .is_some());
  }

  #[tokio::test]
  async fn closed_cache_refuses_everything() {
    let c = memory_cache();
    c.close();
    c.close();
    assert_eq!(
      c.get(Scope::Global, Kind::Query, "k").await.unwrap_err(),
      Error::Closed
    );
    assert_eq!(
      c.set_local(Scope::Global, Kind::Query, "k", "1", None)
        .unwrap_err(),
      Error::Closed
    );
  }

  #[tokio::test]
  async fn falls_back_when_redis_is_unreachable() {
    let config = ConfigBuilder {
      url: Some(dead_url()),
      ..Default::default()
    }
    .build()
    .unwrap();
    let c = Cache::new(config).unwrap();
    c.set(Scope::Global, Kind::Session, "s", "1", None)
      .await
      .unwrap();
    assert_eq!(c.mode(), Mode::Memory);
    assert!(c.last_error().is_some());
    assert_eq!(
      c.get(Scope::Global, Kind::Session, "s")
        .await
        .unwrap()
        .as_deref(),
      Some("1")
    );
  }

  #[tokio::test]
  async fn without_fallback_an_outage_is_an_error() {
    let config = ConfigBuilder {
      url: Some(dead_url()),
      fallback_enabled: Some(false),
      ..Default::default()
    }
    .build()
    .unwrap();
    let c = Cache::new(config).unwrap();
    let err = c
      .set(Scope::Global, Kind::Session, "s", "1", None)
      .await
      .unwrap_err();
    assert_eq!(err.code(), "ERR_REDIS_UNAVAILABLE");
    let err = c.get(Scope::Global, Kind::Session, "s").await.unwrap_err();
    assert_eq!(
      err.code(),
      "ERR_REDIS_UNAVAILABLE",
      "also while the gate is closed"
    );
  }
}
