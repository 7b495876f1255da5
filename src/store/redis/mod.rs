//! The Redis store: one lazily opened connection (single node, Sentinel-discovered master,
//! or Redis Cluster), a deadline on every command.
//!
//! ## Behavior
//! - Constructing does no I/O; the [connection](connection) opens on first use and is shared
//!   by all concurrent calls; a failed one is dropped and opened again by the next call.
//! - Errors are returned classified ([`crate::error::RedisFailure`]); retries, budgets and
//!   fallback belong to the caller ([`crate::failover`]).
//! - Key commands travel in [pipelines](pipeline) (one per master on a Cluster). Values are
//!   `SET key value PX ttl`; with the [query index](query_index) a query result is written
//!   in a transaction that lists it, and [invalidated](invalidate) by a script that reads the
//!   list, so an invalidation costs the keys it removes, not the keyspace. On a Cluster each
//!   scope's index is split into buckets, each sharing a hash tag (so a slot) with the
//!   entries it lists ([`KeyLayout::cluster_query_index`]). Other prefixes are removed by
//!   `SCAN MATCH <escaped>*` + `UNLINK` in pages, on every master of a Cluster.
//! - [`topology`] reports the nodes and whether each answers.

mod connection;
mod invalidate;
mod pipeline;
pub mod query_index;
pub mod slots;
mod topology;
pub mod tracking;

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use redis::cluster::ClusterClient;
use redis::sentinel::{SentinelClientBuilder, SentinelServerType};
use redis::{
  Client, ClientTlsConfig, Cmd, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, TlsCertificates, TlsMode,
};

use self::connection::{Connection, Target};
use self::query_index::{is_noscript, Scripts};
use self::slots::SlotTable;
use self::tracking::ClusterTracking;
use crate::config::{Backend, TlsFiles};
use crate::error::{Error, RedisFailure, Result};
use crate::keys::KeyLayout;
use crate::store::Store;

pub use self::pipeline::{KeyCommand, KeyReply};
pub use self::topology::{NodeRole, Topology};
pub use self::tracking::{Tracker, TrackingSink};

/// rustls needs one process-wide crypto provider; `ring` is the one compiled in.
fn install_crypto_provider() {
  static ONCE: std::sync::Once = std::sync::Once::new();
  ONCE.call_once(|| {
    // Err means another part of the process installed one already: that one is used.
    let _ = rustls::crypto::ring::default_provider().install_default();
  });
}

/// Redirections/reconnects redis-rs's cluster connection may try within one command (the
/// command deadline bounds them anyway).
const CLUSTER_RETRIES: u32 = 3;

/// Deadlines for the Redis store.
#[derive(Debug, Clone, Copy)]
pub struct RedisTimeouts {
  /// Per command.
  pub command: Duration,
  /// Per connection attempt.
  pub connect: Duration,
}

/// A Redis-backed [`Store`].
pub struct RedisStore {
  conn: Connection,
  /// The nodes as of the last [`RedisStore::topology`] check.
  topology: Mutex<Option<Topology>>,
  epoch: Instant,
  /// The key layout when query results are indexed (see [`RedisStore::with_query_index`]).
  index: Option<KeyLayout>,
  /// Indexed on a Cluster: query entries carry their bucket's hash tag in Redis.
  tagged: bool,
  scripts: Scripts,
  /// Indexed writes sent (one in [`query_index::SWEEP_EVERY`] carries a sweep).
  writes: AtomicU64,
  /// Per index (its lex key): until when (ms since `epoch`) a write of this process made it live.
  index_lifetimes: Mutex<HashMap<String, u64>>,
  /// Cluster: which master serves each slot (`None` until read, or after a redirect).
  slot_table: RwLock<Option<Arc<SlotTable>>>,
  /// Cluster with a near cache: the subscribed connections to every master.
  cluster_tracking: Option<Arc<ClusterTracking>>,
}

fn read_tls(tls: &TlsFiles) -> Result<Option<TlsCertificates>> {
  if !tls.any() {
    return Ok(None);
  }
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
  Ok(Some(TlsCertificates { client_tls, root_cert }))
}

fn tls_error(e: redis::RedisError) -> Error {
  Error::invalid(format!("tls options are not usable: {e}"))
}

fn connection_info(url: &str) -> Result<ConnectionInfo> {
  url
    .into_connection_info()
    .map_err(|_| Error::invalid("a node URL is not a valid Redis URL"))
}

impl RedisStore {
  /// A store for `url`; validates the URL but does not connect.
  pub fn new(url: &str, timeouts: RedisTimeouts) -> Result<Self> {
    Self::with_tls(url, timeouts, &TlsFiles::default())
  }

  /// A store for `url` with TLS files (read now; an unreadable file is an argument error).
  pub fn with_tls(url: &str, timeouts: RedisTimeouts, tls: &TlsFiles) -> Result<Self> {
    Self::for_backend(&Backend::Redis { url: url.to_string() }, timeouts, tls)
  }

  /// A store for a Redis, Cluster or Sentinel backend (not `memory://`); no I/O.
  pub fn for_backend(backend: &Backend, timeouts: RedisTimeouts, tls: &TlsFiles) -> Result<Self> {
    install_crypto_provider();
    let certs = read_tls(tls)?;
    let target = match backend {
      Backend::Redis { url } => Target::Single(match &certs {
        Some(c) => Client::build_with_tls(url.as_str(), c.clone()).map_err(tls_error)?,
        None => Client::open(url.as_str()).map_err(|_| Error::invalid("url is not a valid Redis URL"))?,
      }),
      Backend::Cluster { nodes } => {
        let mut builder = ClusterClient::builder(nodes.iter().map(String::as_str))
          .connection_timeout(timeouts.connect)
          .response_timeout(timeouts.command)
          .retries(CLUSTER_RETRIES)
          .min_retry_wait(5)
          .max_retry_wait(50);
        if let Some(c) = &certs {
          builder = builder.certs(c.clone());
        }
        let client = builder
          .build()
          .map_err(|e| Error::invalid(format!("cluster options are not usable: {e}")))?;
        Target::Cluster {
          client: Box::new(client),
          seed: Box::new(connection_info(&nodes[0])?),
        }
      }
      Backend::Sentinel(config) => {
        let sentinels = config
          .nodes
          .iter()
          .map(|n| connection_info(n))
          .collect::<Result<Vec<_>>>()?;
        let first = sentinels[0].redis_settings();
        let mut b = SentinelClientBuilder::new(
          sentinels.iter().map(|s| s.addr().clone()),
          &config.master_name,
          SentinelServerType::Master,
        )
        .map_err(|e| Error::invalid(format!("sentinel options are not usable: {e}")))?
        .set_client_to_redis_db(config.db);
        if let Some(u) = first.username() {
          b = b.set_client_to_sentinel_username(u);
        }
        if let Some(p) = first.password() {
          b = b.set_client_to_sentinel_password(p);
        }
        if let Some(u) = &config.username {
          b = b.set_client_to_redis_username(u);
        }
        if let Some(p) = &config.password {
          b = b.set_client_to_redis_password(p);
        }
        if config.tls {
          b = b.set_client_to_redis_tls_mode(TlsMode::Secure);
        }
        if let Some(c) = &certs {
          if config.tls {
            b = b.set_client_to_redis_certificates(c.clone());
          }
          if sentinels
            .iter()
            .any(|s| matches!(s.addr(), ConnectionAddr::TcpTls { .. }))
          {
            b = b.set_client_to_sentinel_certificates(c.clone());
          }
        }
        let client = b
          .build()
          .map_err(|e| Error::invalid(format!("sentinel options are not usable: {e}")))?;
        Target::Sentinel {
          client: Box::new(tokio::sync::Mutex::new(client)),
          sentinels,
          config: config.clone(),
        }
      }
      Backend::Memory => return Err(Error::invalid("memory:// has no Redis store")),
    };
    Ok(RedisStore {
      conn: Connection::new(target, certs, timeouts),
      topology: Mutex::new(None),
      epoch: Instant::now(),
      index: None,
      tagged: false,
      scripts: Scripts::default(),
      writes: AtomicU64::new(0),
      index_lifetimes: Mutex::new(HashMap::new()),
      slot_table: RwLock::new(None),
      cluster_tracking: None,
    })
  }

  /// Indexes the query results of `layout` (writes and invalidations by script, see
  /// [`crate::store::query_index`]); on a Cluster in buckets whose names carry a hash tag
  /// ([`KeyLayout::cluster_query_index`]).
  pub fn with_query_index(mut self, layout: KeyLayout) -> Self {
    self.tagged = self.is_cluster();
    self.index = Some(layout);
    self
  }

  /// Subscribes this store's connections to invalidations of every key under the tracker's
  /// prefix (see [`tracking`]).
  pub fn with_tracking(mut self, tracker: Tracker) -> Self {
    match self.target() {
      Target::Cluster { seed, .. } => {
        let seed = (**seed).clone();
        let tls = self.conn.tls.clone();
        self.cluster_tracking = Some(ClusterTracking::new(tracker, seed, tls, self.conn.timeouts.command));
      }
      _ => self.conn.track(tracker),
    }
    self
  }

  /// Cluster: keeps the subscriptions to every master current (see [`tracking`]).
  fn track_cluster(&self) {
    if let Some(t) = &self.cluster_tracking {
      t.check_soon();
    }
  }

  /// True when query results are indexed.
  pub fn indexes_queries(&self) -> bool {
    self.index.is_some()
  }
}

impl RedisStore {
  /// True for a Redis Cluster (keys spread over masters).
  pub fn is_cluster(&self) -> bool {
    matches!(self.target(), Target::Cluster { .. })
  }

  /// Drops the connection (pending commands fail); the next call reconnects.
  pub fn disconnect(&self) {
    self.conn.disconnect();
    if let Some(t) = &self.cluster_tracking {
      t.stop();
    }
  }

  /// `host:port` of the server the current connection reached (the master a Sentinel named
  /// at the last connect); `None` for a Cluster or while disconnected.
  pub fn connected_address(&self) -> Option<String> {
    self.conn.current().and_then(|c| c.address.clone())
  }

  /// `single`, `cluster` or `sentinel`.
  pub fn kind(&self) -> &'static str {
    match self.target() {
      Target::Single(_) => "single",
      Target::Cluster { .. } => "cluster",
      Target::Sentinel { .. } => "sentinel",
    }
  }

  fn target(&self) -> &Target {
    &self.conn.target
  }

  async fn query<T: redis::FromRedisValue>(&self, cmd: &Cmd) -> Result<T> {
    self.conn.query(cmd).await
  }

  async fn query_node<T: redis::FromRedisValue>(&self, cmd: &Cmd, host: &str, port: u16) -> Result<T> {
    self.conn.query_node(cmd, host, port).await
  }

  async fn pipeline_on(
    &self,
    cmds: Vec<Cmd>,
    node: Option<(&str, u16)>,
  ) -> Result<Vec<redis::RedisResult<redis::Value>>> {
    self.conn.pipeline(cmds, node).await
  }

  /// This process's heartbeat in the set `key` of processes checking rate limits: the number
  /// of live processes.
  pub async fn heartbeat(&self, key: &str, instance: &str, live_ms: u64) -> Result<u64> {
    let n: i64 = self
      .query_script(&self.scripts.heartbeat(key, instance, live_ms))
      .await?;
    Ok(n.max(0) as u64)
  }

  /// Takes this process out of the set `key` (it stops checking rate limits).
  pub async fn leave(&self, key: &str, instance: &str) -> Result<()> {
    let mut cmd = redis::cmd("ZREM");
    cmd.arg(key).arg(instance);
    self.conn.query::<i64>(&cmd).await.map(|_| ())
  }

  /// One `EVALSHA`: a server that lost the scripts (restarted, `SCRIPT FLUSH`) is given them
  /// again and the command re-sent once.
  async fn query_script<T: redis::FromRedisValue>(&self, cmd: &Cmd) -> Result<T> {
    let scripts = &self.scripts;
    self
      .conn
      .with_conn(|mut conn| async move {
        match conn.run(cmd).await {
          Err(e) if is_noscript(&e) => {
            for load in &scripts.load_cmds() {
              conn.run::<redis::Value>(load).await?;
            }
            conn.run(cmd).await
          }
          other => other,
        }
      })
      .await
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
    if let Some(index) = self.index_of(key) {
      let cmd = self
        .scripts
        .write_if_later(&self.name_in(key, &index), &index, value, ttl_ms);
      return Ok(self.query_script::<i64>(&cmd).await? == 1);
    }
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(SET_IF_LATER).arg(1).arg(key).arg(value).arg(ttl_ms);
    Ok(self.conn.query::<i64>(&cmd).await? == 1)
  }
}

fn not_utf8() -> Error {
  Error::Redis {
    kind: RedisFailure::Reply,
    message: "the value stored at this key is not UTF-8 text (written by another client?)".into(),
  }
}

impl Store for RedisStore {
  async fn get(&self, key: &str) -> Result<Option<String>> {
    let mut cmd = redis::cmd("GET");
    cmd.arg(&*self.name(key));
    let bytes: Option<Vec<u8>> = self.query(&cmd).await?;
    bytes.map(String::from_utf8).transpose().map_err(|_| not_utf8())
  }

  async fn set(&self, key: &str, value: &str, ttl_ms: u64) -> Result<()> {
    self.write_one(key, value, ttl_ms).await
  }

  async fn delete(&self, key: &str) -> Result<bool> {
    let mut cmd = redis::cmd("UNLINK");
    cmd.arg(&*self.name(key));
    Ok(self.query::<u64>(&cmd).await? > 0)
  }

  async fn invalidate_prefix(&self, literal_prefix: &str) -> Result<u64> {
    self.invalidate(literal_prefix).await
  }

  async fn ping(&self) -> Result<Duration> {
    let started = Instant::now();
    // a Cluster routes PING to every master and succeeds only if all answer
    self.query::<redis::Value>(&redis::cmd("PING")).await?;
    Ok(started.elapsed())
  }
}
