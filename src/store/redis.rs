//! The Redis store: one lazily opened multiplexed connection, a deadline on
//! every command.
//!
//! ## Behavior
//! - Constructing does no I/O; the connection opens on first use (bounded by the
//!   connect timeout) and is shared by all concurrent calls. Callers waiting for
//!   it share one attempt.
//! - A connection that fails with an I/O error or a timeout is dropped (only if
//!   it is still the current one, so a burst of failures reconnects once) and the
//!   next call opens a new one.
//! - Errors are returned classified ([`crate::error::RedisFailure`]); retries,
//!   budgets and fallback belong to the caller.
//! - Values are `SET key value PX ttl`; prefix removal is `SCAN MATCH <escaped>*`
//!   with `UNLINK` per page, so Redis never blocks and only live keys are counted.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures_util::future::{BoxFuture, FutureExt, Shared};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, ClientTlsConfig, Cmd, TlsCertificates};

use crate::config::TlsFiles;
use crate::error::{Error, RedisFailure, Result};
use crate::keys::match_pattern;
use crate::store::Store;

/// rustls needs one process-wide crypto provider; `ring` is the one compiled in.
fn install_crypto_provider() {
  static ONCE: std::sync::Once = std::sync::Once::new();
  ONCE.call_once(|| {
    // Err means another part of the process installed one already: that one is used.
    let _ = rustls::crypto::ring::default_provider().install_default();
  });
}

/// Keys asked for per `SCAN` page.
pub const SCAN_COUNT: usize = 1000;

/// Deadlines for the Redis store.
#[derive(Debug, Clone, Copy)]
pub struct RedisTimeouts {
  /// Per command.
  pub command: Duration,
  /// Per connection attempt.
  pub connect: Duration,
}

struct Current {
  generation: u64,
  conn: MultiplexedConnection,
}

type Connecting = Shared<BoxFuture<'static, Result<Arc<Current>>>>;

/// A Redis-backed [`Store`].
pub struct RedisStore {
  client: Client,
  timeouts: RedisTimeouts,
  current: Arc<RwLock<Option<Arc<Current>>>>,
  connecting: Mutex<Option<Connecting>>,
  generations: Arc<AtomicU64>,
}

impl RedisStore {
  /// A store for `url`; validates the URL but does not connect.
  pub fn new(url: &str, timeouts: RedisTimeouts) -> Result<Self> {
    Self::with_tls(url, timeouts, &TlsFiles::default())
  }

  /// A store for `url` with TLS files (read now; an unreadable file is an argument error).
  pub fn with_tls(url: &str, timeouts: RedisTimeouts, tls: &TlsFiles) -> Result<Self> {
    install_crypto_provider();
    let client = if tls.any() {
      let read = |what: &str, path: &str| {
        std::fs::read(path).map_err(|e| Error::invalid(format!("tls.{what} '{path}' cannot be read: {e}")))
      };
      let root_cert = tls.ca_file.as_deref().map(|p| read("caFile", p)).transpose()?;
      let client_tls = match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => Some(ClientTlsConfig {
          client_cert: read("certFile", cert)?,
          client_key: read("keyFile", key)?,
        }),
        _ => None,
      };
      Client::build_with_tls(url, TlsCertificates { client_tls, root_cert })
        .map_err(|e| Error::invalid(format!("tls options are not usable: {e}")))?
    } else {
      Client::open(url).map_err(|_| Error::invalid("url is not a valid Redis URL"))?
    };
    Ok(RedisStore {
      client,
      timeouts,
      current: Arc::new(RwLock::new(None)),
      connecting: Mutex::new(None),
      generations: Arc::new(AtomicU64::new(0)),
    })
  }

  /// Drops the connection (pending commands fail); the next call reconnects.
  pub fn disconnect(&self) {
    *self.current.write().unwrap_or_else(|p| p.into_inner()) = None;
  }

  fn current(&self) -> Option<Arc<Current>> {
    self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
  }

  /// The open connection, or the one being opened. Every caller waiting for a
  /// connection shares one attempt; a caller that gives up (its own deadline)
  /// does not cancel it for the others.
  async fn connection(&self) -> Result<Arc<Current>> {
    if let Some(c) = self.current() {
      return Ok(c);
    }
    let attempt = {
      let mut slot = self.connecting.lock().unwrap_or_else(|p| p.into_inner());
      match slot.as_ref() {
        Some(pending) if pending.peek().is_none() => pending.clone(),
        _ => {
          let fresh = self.open().boxed().shared();
          *slot = Some(fresh.clone());
          fresh
        }
      }
    };
    attempt.await
  }

  /// One connection attempt, bounded by the connect timeout; publishes its result.
  fn open(&self) -> impl Future<Output = Result<Arc<Current>>> + Send + 'static {
    let client = self.client.clone();
    let timeouts = self.timeouts;
    let slot = self.current.clone();
    let generations = self.generations.clone();
    async move {
      let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeouts.connect))
        .set_response_timeout(Some(timeouts.command));
      let ms = timeouts.connect.as_millis() as u64;
      let conn = tokio::time::timeout(
        timeouts.connect,
        client.get_multiplexed_async_connection_with_config(&config),
      )
      .await
      .map_err(|_| Error::timeout("connect", ms))??;
      let fresh = Arc::new(Current {
        generation: generations.fetch_add(1, Ordering::Relaxed),
        conn,
      });
      *slot.write().unwrap_or_else(|p| p.into_inner()) = Some(fresh.clone());
      Ok(fresh)
    }
  }

  fn forget(&self, generation: u64) {
    let mut slot = self.current.write().unwrap_or_else(|p| p.into_inner());
    if slot.as_ref().is_some_and(|c| c.generation == generation) {
      *slot = None;
    }
  }

  /// Runs one command under the command deadline; drops a broken connection.
  async fn query<T: redis::FromRedisValue>(&self, cmd: &Cmd) -> Result<T> {
    let current = self.connection().await?;
    let mut conn = current.conn.clone();
    let ms = self.timeouts.command.as_millis() as u64;
    let result = match tokio::time::timeout(self.timeouts.command, cmd.query_async::<T>(&mut conn)).await {
      Ok(r) => r.map_err(Error::from),
      Err(_) => Err(Error::timeout("command", ms)),
    };
    if let Err(e) = &result {
      if e.is_outage() {
        self.forget(current.generation);
      }
    }
    result
  }
}

/// Replay of a write made during an outage: the entry that expires later wins
/// (with equal TTLs, the newer write). `PTTL` is -2 for a missing key and -1 for
/// one without expiry; both are overwritten.
const SET_IF_LATER: &str = r"
local p = redis.call('PTTL', KEYS[1])
if p > tonumber(ARGV[2]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
";

impl RedisStore {
  /// Writes `value` with `ttl_ms` unless Redis holds a value for `key` that
  /// expires later; true if written.
  pub async fn set_if_later(&self, key: &str, value: &str, ttl_ms: u64) -> Result<bool> {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(SET_IF_LATER).arg(1).arg(key).arg(value).arg(ttl_ms);
    Ok(self.query::<i64>(&cmd).await? == 1)
  }
}

impl Store for RedisStore {
  fn get(&self, key: &str) -> impl Future<Output = Result<Option<String>>> + Send {
    let mut cmd = redis::cmd("GET");
    cmd.arg(key);
    async move {
      let bytes: Option<Vec<u8>> = self.query(&cmd).await?;
      bytes.map(String::from_utf8).transpose().map_err(|_| Error::Redis {
        kind: RedisFailure::Reply,
        message: "the value stored at this key is not UTF-8 text (written by another client?)".into(),
      })
    }
  }

  fn set(&self, key: &str, value: &str, ttl_ms: u64) -> impl Future<Output = Result<()>> + Send {
    // built in place: `.to_owned()` on the builder would copy the value once more per call
    let mut cmd = redis::cmd("SET");
    cmd.arg(key).arg(value).arg("PX").arg(ttl_ms);
    async move { self.query::<()>(&cmd).await }
  }

  fn delete(&self, key: &str) -> impl Future<Output = Result<bool>> + Send {
    let mut cmd = redis::cmd("UNLINK");
    cmd.arg(key);
    async move { Ok(self.query::<u64>(&cmd).await? > 0) }
  }

  fn invalidate_prefix(&self, literal_prefix: &str) -> impl Future<Output = Result<u64>> + Send {
    let pattern = match_pattern(literal_prefix);
    async move {
      let mut cursor: u64 = 0;
      let mut removed = 0;
      loop {
        let mut scan = redis::cmd("SCAN");
        scan.arg(cursor).arg("MATCH").arg(&pattern).arg("COUNT").arg(SCAN_COUNT);
        let (next, keys): (u64, Vec<Vec<u8>>) = self.query(&scan).await?;
        if !keys.is_empty() {
          let mut unlink = redis::cmd("UNLINK");
          unlink.arg(&keys);
          removed += self.query::<u64>(&unlink).await?;
        }
        if next == 0 {
          return Ok(removed);
        }
        cursor = next;
      }
    }
  }

  async fn ping(&self) -> Result<Duration> {
    let started = Instant::now();
    self.query::<String>(&redis::cmd("PING")).await?;
    Ok(started.elapsed())
  }
}

impl RedisStore {
  /// `used_memory` from `INFO memory`, in bytes.
  pub async fn used_memory(&self) -> Result<u64> {
    let mut cmd = redis::cmd("INFO");
    cmd.arg("memory");
    let info: String = self.query(&cmd).await?;
    info
      .lines()
      .find_map(|l| l.strip_prefix("used_memory:"))
      .and_then(|v| v.trim().parse().ok())
      .ok_or_else(|| Error::Redis {
        kind: RedisFailure::Reply,
        message: "INFO memory lacks used_memory".into(),
      })
  }
}
