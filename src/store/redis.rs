//! The Redis store: one lazily opened connection (single node, Sentinel-discovered
//! master, or Redis Cluster), a deadline on every command.
//!
//! ## Behavior
//! - Constructing does no I/O; the connection opens on first use (bounded by the
//!   connect timeout) and is shared by all concurrent calls. Callers waiting for
//!   it share one attempt.
//! - A connection that fails with an I/O error or a timeout is dropped (only if
//!   it is still the current one, so a burst of failures reconnects once) and the
//!   next call opens a new one. With Sentinel, opening one asks the sentinels for
//!   the current master first, so a switch-over is followed on the next connect.
//!   With a Cluster, opening one reads the slot map from the nodes again; redis-rs's
//!   cluster connection routes every key to its slot's master (MOVED/ASK included).
//! - Errors are returned classified ([`crate::error::RedisFailure`]); retries,
//!   budgets and fallback belong to the caller.
//! - Values are `SET key value PX ttl`; prefix removal is `SCAN MATCH <escaped>*`
//!   with `UNLINK` per page, so Redis never blocks and only live keys are counted.
//!   With the query index ([`RedisStore::with_query_index`]), a query result is written in
//!   a transaction that lists it and invalidated by a script that reads the list
//!   ([`crate::store::query_index`]): an invalidation then costs the keys it removes, not
//!   the keyspace. On a Cluster each scope's index is split into buckets, each sharing a
//!   hash tag (so a slot) with the entries it lists ([`KeyLayout::cluster_query_index`]):
//!   the Redis name of such an entry carries the tag, and an invalidation runs the script
//!   on every bucket of the scope.
//!   Other prefixes, on a Cluster, are removed by a SCAN on every master that serves
//!   slots (routed to the node by address), each page's keys unlinked on that node in one pipeline of
//!   single-key `UNLINK`s, and the whole pass is repeated while the slot map changed
//!   under it (see [`MAX_INVALIDATION_PASSES`]).

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures_util::future::{join_all, try_join_all, BoxFuture, FutureExt, Shared};
use redis::aio::MultiplexedConnection;
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
  AsyncConnectionConfig, Client, ClientTlsConfig, Cmd, ConnectionAddr, ConnectionInfo, IntoConnectionInfo,
  TlsCertificates, TlsMode,
};

use crate::config::{Backend, SentinelConfig, TlsFiles};
use crate::error::{Error, RedisFailure, Result};
use crate::keys::{match_pattern, untag, KeyLayout, QueryIndex};
use crate::store::query_index::{self, is_noscript, Scripts, INVALIDATE_CHUNK};
use crate::store::slots::SlotTable;
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
/// Cluster prefix invalidation: full passes over the masters at most, while the slot map
/// read before a pass differs from the one read after it.
pub const MAX_INVALIDATION_PASSES: usize = 3;
/// Redirections/reconnects redis-rs's cluster connection may try within one command (the
/// command deadline bounds them anyway).
const CLUSTER_RETRIES: u32 = 3;
/// Sentinel: how often (at most, while calls are made) the sentinels are asked in the
/// background whether the connected server is still the master. A switch-over keeps the old
/// master up and accepting writes until the sentinels demote it (seconds later); this bounds
/// how long calls keep going to it.
pub const MASTER_CHECK_INTERVAL: Duration = Duration::from_millis(1000);

/// Deadlines for the Redis store.
#[derive(Debug, Clone, Copy)]
pub struct RedisTimeouts {
  /// Per command.
  pub command: Duration,
  /// Per connection attempt.
  pub connect: Duration,
}

/// What a node is in the topology.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeRole {
  /// Serves writes (a single server, a Sentinel master, a Cluster master with slots).
  Master,
  /// A replica.
  Replica,
  /// A sentinel.
  Sentinel,
}

impl NodeRole {
  /// `master`, `replica` or `sentinel`.
  pub fn name(self) -> &'static str {
    match self {
      NodeRole::Master => "master",
      NodeRole::Replica => "replica",
      NodeRole::Sentinel => "sentinel",
    }
  }
}

/// One node and whether it answered a PING just now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
  /// `host:port`.
  pub address: String,
  /// Its role.
  pub role: NodeRole,
  /// It answered PING within the command timeout.
  pub reachable: bool,
}

/// The nodes behind the store, as last checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
  /// `single`, `cluster` or `sentinel`.
  pub kind: &'static str,
  /// Every known node.
  pub nodes: Vec<NodeStatus>,
}

enum Target {
  Single(Client),
  Cluster {
    client: Box<ClusterClient>,
    /// first seed: credentials and TLS mode for direct node checks
    seed: Box<ConnectionInfo>,
  },
  Sentinel {
    client: Box<tokio::sync::Mutex<SentinelClient>>,
    sentinels: Vec<ConnectionInfo>,
    config: SentinelConfig,
  },
}

#[derive(Clone)]
enum Conn {
  Plain(MultiplexedConnection),
  Cluster(ClusterConnection),
}

impl Conn {
  async fn run<T: redis::FromRedisValue>(&mut self, cmd: &Cmd) -> redis::RedisResult<T> {
    match self {
      Conn::Plain(c) => cmd.query_async(c).await,
      Conn::Cluster(c) => cmd.query_async(c).await,
    }
  }
}

struct Current {
  generation: u64,
  conn: Conn,
  /// `host:port` of the server a plain connection reached (the Sentinel master).
  address: Option<String>,
}

type Connecting = Shared<BoxFuture<'static, Result<Arc<Current>>>>;

/// A Redis-backed [`Store`].
pub struct RedisStore {
  target: Arc<Target>,
  tls: Option<TlsCertificates>,
  timeouts: RedisTimeouts,
  current: Arc<RwLock<Option<Arc<Current>>>>,
  connecting: Mutex<Option<Connecting>>,
  generations: Arc<AtomicU64>,
  topology: Mutex<Option<Topology>>,
  /// Sentinel: when the master was last checked (ms since `epoch`), see [`MASTER_CHECK_INTERVAL`].
  master_checked_ms: Arc<AtomicU64>,
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
}

/// The commands of one write, and what to remember once it succeeded.
struct WriteCmds {
  cmds: Vec<Cmd>,
  /// The index's lex key and until when it now lives, when the write extends it.
  extends: Option<(String, u64)>,
  sweep: Option<Cmd>,
}

/// The commands of a batch of gets and writes (see [`RedisStore::get_set_many`]).
struct Plan {
  cmds: Vec<Cmd>,
  /// Per op, where its replies are among the replies of `cmds`.
  spans: Vec<std::ops::Range<usize>>,
  /// Per op, what it extends once it succeeded (see [`WriteCmds::extends`]).
  lifetimes: Vec<Option<(String, u64)>>,
  sweeps: Vec<Cmd>,
}

/// A reply value as a result: an error reply becomes `Err`.
fn into_result(value: redis::Value) -> redis::RedisResult<redis::Value> {
  match value {
    redis::Value::ServerError(e) => Err(e.into()),
    other => Ok(other),
  }
}

/// True for a reply saying the key is served elsewhere or not right now (a Cluster
/// redirect), directly or inside a transaction's `EXEC`.
fn is_redirect(reply: &redis::RedisResult<redis::Value>) -> bool {
  use redis::ServerErrorKind::{Ask, ClusterDown, ExecAbort, Moved, TryAgain};
  let redirect = |kind: redis::ErrorKind| {
    matches!(
      kind,
      redis::ErrorKind::Server(Moved | Ask | TryAgain | ClusterDown | ExecAbort)
    )
  };
  match reply {
    Err(e) => redirect(e.kind()),
    Ok(redis::Value::Array(items)) => items
      .iter()
      .any(|item| matches!(item, redis::Value::ServerError(e) if redirect(redis::RedisError::from(e.clone()).kind()))),
    Ok(_) => false,
  }
}

/// Indexes whose lifetime one store remembers (past it the memory starts over: writes
/// then extend their index once more).
const MAX_KNOWN_INDEXES: usize = 10_000;

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
      target: Arc::new(target),
      tls: certs,
      timeouts,
      current: Arc::new(RwLock::new(None)),
      connecting: Mutex::new(None),
      generations: Arc::new(AtomicU64::new(0)),
      topology: Mutex::new(None),
      master_checked_ms: Arc::new(AtomicU64::new(0)),
      epoch: Instant::now(),
      index: None,
      tagged: false,
      scripts: Scripts::default(),
      writes: AtomicU64::new(0),
      index_lifetimes: Mutex::new(HashMap::new()),
      slot_table: RwLock::new(None),
    })
  }

  /// Indexes the query results of `layout` (writes and invalidations by script, see
  /// [`crate::store::query_index`]); on a Cluster in buckets whose names carry a hash tag
  /// ([`KeyLayout::cluster_query_index`]).
  pub fn with_query_index(mut self, layout: KeyLayout) -> Self {
    self.tagged = matches!(&*self.target, Target::Cluster { .. });
    self.index = Some(layout);
    self
  }

  /// True when query results are indexed.
  pub fn indexes_queries(&self) -> bool {
    self.index.is_some()
  }

  /// The index `full` (a query key or a literal query prefix) is listed in, when indexing.
  fn index_of<'k>(&self, full: &'k str) -> Option<QueryIndex<'k>> {
    let layout = self.index.as_ref()?;
    if self.tagged {
      layout.cluster_query_index(full)
    } else {
      layout.query_index(full)
    }
  }

  /// The Redis name of the entry `full`: itself, but on a Cluster with the index a query
  /// entry's name carries its bucket's hash tag.
  fn name<'k>(&self, full: &'k str) -> std::borrow::Cow<'k, str> {
    match self
      .index
      .as_ref()
      .filter(|_| self.tagged)
      .and_then(|l| l.cluster_query_key(full))
    {
      Some(name) => name.into(),
      None => full.into(),
    }
  }

  /// [`RedisStore::name`] of `full`, listed in `index`.
  fn name_in<'k>(&self, full: &'k str, index: &QueryIndex<'_>) -> std::borrow::Cow<'k, str> {
    if self.tagged {
      index.key().into()
    } else {
      full.into()
    }
  }

  /// The write of `value` under `key`: a plain `SET`, or for a query result the index's
  /// transaction (see [`query_index::write`]), with a sweep of its index every
  /// [`query_index::SWEEP_EVERY`]th time.
  fn write_cmds(&self, key: &str, value: &str, ttl_ms: u64) -> WriteCmds {
    let Some(index) = self.index_of(key) else {
      let mut set = redis::cmd("SET");
      set.arg(key).arg(value).arg("PX").arg(ttl_ms);
      return WriteCmds {
        cmds: vec![set],
        extends: None,
        sweep: None,
      };
    };
    let now_ms = std::time::SystemTime::now()
      .duration_since(std::time::UNIX_EPOCH)
      .map_or(0, |d| d.as_millis() as u64);
    let mono_ms = self.epoch.elapsed().as_millis() as u64;
    let known = self
      .index_lifetimes
      .lock()
      .unwrap_or_else(|p| p.into_inner())
      .get(&index.lex)
      .copied();
    // the sets must outlive this entry: extend them unless a write of this process did
    // lately with enough to spare (a set emptied and made again meanwhile has no TTL
    // at all, which never unlists an entry; the next extension gives it one)
    let extend = known.is_none_or(|until| mono_ms + ttl_ms + 1000 > until);
    let sweep = self
      .writes
      .fetch_add(1, Ordering::Relaxed)
      .is_multiple_of(query_index::SWEEP_EVERY)
      .then(|| self.scripts.sweep(&index));
    WriteCmds {
      cmds: query_index::write(&self.name_in(key, &index), &index, value, ttl_ms, now_ms, extend),
      extends: extend.then(|| (index.lex.clone(), mono_ms + query_index::index_lifetime(ttl_ms))),
      sweep,
    }
  }

  /// Remembers, after the transaction succeeded, until when (ms since `epoch`) an index lives.
  fn note_lifetime(&self, (lex, until): (String, u64)) {
    let mut known = self.index_lifetimes.lock().unwrap_or_else(|p| p.into_inner());
    if known.len() >= MAX_KNOWN_INDEXES {
      known.clear();
    }
    known.insert(lex, until);
  }

  /// A sweep answered `NOSCRIPT`: the server lost the scripts (restarted, `SCRIPT FLUSH`);
  /// they are loaded again for the next sweep or invalidation. Other sweep errors are
  /// ignored: a sweep only reclaims memory, and the next one retries.
  async fn after_sweeps(&self, replies: &[redis::RedisResult<redis::Value>]) {
    if replies.iter().any(|r| matches!(r, Err(e) if is_noscript(e))) {
      // one command at a time: a Cluster sends a keyless command to every master, a
      // keyless pipeline to one node
      for load in self.scripts.load_cmds() {
        let _ = self.query::<redis::Value>(&load).await;
      }
    }
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
      self.check_master_soon(&c);
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
    let target = self.target.clone();
    let timeouts = self.timeouts;
    let slot = self.current.clone();
    let generations = self.generations.clone();
    async move {
      let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeouts.connect))
        .set_response_timeout(Some(timeouts.command));
      let ms = timeouts.connect.as_millis() as u64;
      let connect = async {
        Ok::<_, Error>(match &*target {
          Target::Single(client) => (
            Conn::Plain(client.get_multiplexed_async_connection_with_config(&config).await?),
            Some(client.get_connection_info().addr().to_string()),
          ),
          Target::Cluster { client, .. } => (Conn::Cluster(client.get_async_connection().await?), None),
          Target::Sentinel { client, .. } => {
            // asks the sentinels for the current master (and checks its ROLE) on every connect
            let master = client.lock().await.async_get_client().await?;
            let address = master.get_connection_info().addr().to_string();
            let conn = master.get_multiplexed_async_connection_with_config(&config).await?;
            (Conn::Plain(conn), Some(address))
          }
        })
      };
      let (conn, address) = tokio::time::timeout(timeouts.connect, connect)
        .await
        .map_err(|_| Error::timeout("connect", ms))??;
      let fresh = Arc::new(Current {
        generation: generations.fetch_add(1, Ordering::Relaxed),
        conn,
        address,
      });
      *slot.write().unwrap_or_else(|p| p.into_inner()) = Some(fresh.clone());
      Ok(fresh)
    }
  }

  fn forget(&self, generation: u64) {
    forget(&self.current, generation);
  }

  /// Sentinel: at most every [`MASTER_CHECK_INTERVAL`], asks the sentinels in a background task
  /// whether `current` is still connected to the master; drops the connection if not, so the
  /// next call reconnects to the new master. Never delays the call.
  fn check_master_soon(&self, current: &Arc<Current>) {
    let Target::Sentinel { .. } = &*self.target else { return };
    let Some(address) = current.address.clone() else { return };
    let now = self.epoch.elapsed().as_millis() as u64;
    let last = self.master_checked_ms.load(Ordering::Relaxed);
    let due = now.saturating_sub(last) >= MASTER_CHECK_INTERVAL.as_millis() as u64;
    if !due
      || self
        .master_checked_ms
        .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
        .is_err()
    {
      return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
      return;
    };
    let (target, slot, generation, timeout, certs) = (
      self.target.clone(),
      self.current.clone(),
      current.generation,
      self.timeouts.command,
      self.tls.clone(),
    );
    runtime.spawn(async move {
      let Target::Sentinel { sentinels, config, .. } = &*target else {
        return;
      };
      for sentinel in sentinels {
        let mut ask = redis::cmd("SENTINEL");
        ask.arg("GET-MASTER-ADDR-BY-NAME").arg(&config.master_name);
        let answer = async {
          let client = match (&certs, matches!(sentinel.addr(), ConnectionAddr::TcpTls { .. })) {
            (Some(certs), true) => Client::build_with_tls(sentinel.clone(), certs.clone())?,
            _ => Client::open(sentinel.clone())?,
          };
          let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
          let mut conn = client.get_multiplexed_async_connection_with_config(&config).await?;
          ask.query_async::<Option<(String, String)>>(&mut conn).await
        };
        if let Ok(Ok(Some((host, port)))) = tokio::time::timeout(timeout, answer).await {
          if format!("{host}:{port}") != address {
            forget(&slot, generation);
          }
          return;
        }
      }
    });
  }

  /// Runs `run` on the connection under the command deadline; drops a broken connection.
  async fn with_conn<T, F, Fut>(&self, run: F) -> Result<T>
  where
    F: FnOnce(Conn) -> Fut,
    Fut: Future<Output = redis::RedisResult<T>>,
  {
    let current = self.connection().await?;
    let ms = self.timeouts.command.as_millis() as u64;
    let result = match tokio::time::timeout(self.timeouts.command, run(current.conn.clone())).await {
      Ok(r) => r.map_err(Error::from),
      Err(_) => Err(Error::timeout("command", ms)),
    };
    if let Err(e) = &result {
      if e.needs_new_connection() {
        self.forget(current.generation);
      }
    }
    result
  }

  /// Runs one command under the command deadline; drops a broken connection.
  async fn query<T: redis::FromRedisValue>(&self, cmd: &Cmd) -> Result<T> {
    self.with_conn(|mut conn| async move { conn.run(cmd).await }).await
  }

  /// [`RedisStore::query`] for an `EVALSHA`: a server that lost the scripts (restarted,
  /// `SCRIPT FLUSH`) is given them again and the command re-sent once.
  async fn query_script<T: redis::FromRedisValue>(&self, cmd: &Cmd) -> Result<T> {
    let scripts = &self.scripts;
    self
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

  /// `cmds` in one pipeline (one round trip): a reply per command, error replies included;
  /// `Err` when the pipeline as a whole failed (outage).
  async fn pipeline(&self, cmds: Vec<Cmd>) -> Result<Vec<redis::RedisResult<redis::Value>>> {
    self.pipeline_on(cmds, None).await
  }

  /// [`RedisStore::pipeline`], sent to the Cluster node `host:port` when given (the crate's
  /// routing by address; commands of any slot that node serves), else routed as usual.
  async fn pipeline_on(
    &self,
    cmds: Vec<Cmd>,
    node: Option<(&str, u16)>,
  ) -> Result<Vec<redis::RedisResult<redis::Value>>> {
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    let sent = cmds.len();
    for cmd in cmds {
      pipe.add_command(cmd);
    }
    let route = node.map(|(host, port)| SingleNodeRoutingInfo::ByAddress {
      host: host.to_string(),
      port,
    });
    let replies: Vec<redis::RedisResult<redis::Value>> = self
      .with_conn(|conn| async move {
        match (conn, route) {
          (Conn::Cluster(mut c), Some(route)) => {
            let values = c.route_pipeline(pipe, 0, sent, route).await?;
            Ok(values.into_iter().map(into_result).collect())
          }
          (Conn::Cluster(mut c), None) => pipe.query_async(&mut c).await,
          (Conn::Plain(mut c), _) => pipe.query_async(&mut c).await,
        }
      })
      .await?;
    if replies.len() != sent {
      return Err(Error::Redis {
        kind: RedisFailure::Connection,
        message: format!("pipeline of {sent} commands got {} replies", replies.len()),
      });
    }
    Ok(replies)
  }

  /// True when [`RedisStore::get_set_many`] may be used: one server per connection
  /// (a single server or the Sentinel master; a Cluster spreads keys over nodes).
  pub fn pipelines(&self) -> bool {
    !matches!(&*self.target, Target::Cluster { .. })
  }

  /// GETs (`None`) and SETs (`Some((value, ttl_ms))`) of `ops` in one pipeline: one
  /// round trip. Per op, in order: the GET's text (or None), None for a SET, or the
  /// error reply of that one command; `Err` when the pipeline as a whole failed
  /// (outage). Not for a Cluster ([`RedisStore::pipelines`]; see [`RedisStore::get_set_by_master`]).
  pub async fn get_set_many(&self, ops: &[(&str, Option<(&str, u64)>)]) -> Result<Vec<Result<Option<String>>>> {
    self
      .run_plan(ops, None, |replies, write, extends| {
        self.outcome(replies, write, extends)
      })
      .await
  }

  /// [`RedisStore::get_set_many`] on a Cluster: the ops of each master (by the slot table,
  /// see [`crate::store::slots`]) in one pipeline sent to that master, all masters at once.
  /// Per op: its outcome, or `None` when it must be sent on its own (its master answered
  /// `MOVED`/`ASK`/`TRYAGAIN`/`CLUSTERDOWN` for it, its master's pipeline failed, it is alone
  /// on its master, or the slot table is unknown); the table is read again after any of these.
  pub async fn get_set_by_master(
    &self,
    ops: &[(&str, Option<(&str, u64)>)],
  ) -> Result<Vec<Option<Result<Option<String>>>>> {
    let table = self.slot_table().await?;
    let mut by_master: Vec<Vec<usize>> = vec![Vec::new(); table.masters.len()];
    for (i, (key, _)) in ops.iter().enumerate() {
      if let Some(master) = table.master_of(self.name(key).as_bytes()) {
        by_master[master].push(i);
      }
    }
    let mut out: Vec<Option<Result<Option<String>>>> = ops.iter().map(|_| None).collect();
    let sent = by_master
      .iter()
      .enumerate()
      .filter(|(_, group)| group.len() > 1)
      .map(|(master, group)| {
        let (host, port) = &table.masters[master];
        let group_ops: Vec<(&str, Option<(&str, u64)>)> = group.iter().map(|&i| ops[i]).collect();
        async move { (group, self.get_set_on(&group_ops, host, *port).await) }
      });
    let mut stale = false;
    for (group, answers) in join_all(sent).await {
      match answers {
        Ok(answers) => {
          for (&i, answer) in group.iter().zip(answers) {
            stale |= answer.is_none();
            out[i] = answer;
          }
        }
        Err(_) => stale = true,
      }
    }
    if stale {
      *self.slot_table.write().unwrap_or_else(|p| p.into_inner()) = None;
    }
    Ok(out)
  }

  /// `ops` in one pipeline sent to the Cluster master at `host:port`; per op its outcome, or
  /// `None` when the master redirected it.
  async fn get_set_on(
    &self,
    ops: &[(&str, Option<(&str, u64)>)],
    host: &str,
    port: u16,
  ) -> Result<Vec<Option<Result<Option<String>>>>> {
    self
      .run_plan(ops, Some((host, port)), |replies, write, extends| {
        if replies.iter().any(is_redirect) {
          return None;
        }
        Some(self.outcome(replies, write, extends))
      })
      .await
  }

  /// `ops` planned ([`RedisStore::plan`]) and sent as one pipeline (to `node` when given), the
  /// sweeps' replies handled, and `each` applied to every op's replies, whether it writes, and
  /// what it extends.
  async fn run_plan<T>(
    &self,
    ops: &[(&str, Option<(&str, u64)>)],
    node: Option<(&str, u16)>,
    mut each: impl FnMut(&mut [redis::RedisResult<redis::Value>], bool, Option<(String, u64)>) -> T,
  ) -> Result<Vec<T>> {
    let plan = self.plan(ops);
    let swept = plan.cmds.len();
    let mut cmds = plan.cmds;
    cmds.extend(plan.sweeps);
    let mut replies = self.pipeline_on(cmds, node).await?;
    self.after_sweeps(&replies[swept..]).await;
    Ok(
      plan
        .spans
        .iter()
        .zip(plan.lifetimes)
        .zip(ops)
        .map(|((span, extends), (_, set))| each(&mut replies[span.clone()], set.is_some(), extends))
        .collect(),
    )
  }

  /// The commands of `ops` (a GET, or a write's commands, per op), the span of each op's
  /// replies, what each successful write extends, and the sweeps to send after them.
  fn plan(&self, ops: &[(&str, Option<(&str, u64)>)]) -> Plan {
    let mut plan = Plan {
      cmds: Vec::with_capacity(ops.len()),
      spans: Vec::with_capacity(ops.len()),
      lifetimes: Vec::with_capacity(ops.len()),
      sweeps: Vec::new(),
    };
    for (key, set) in ops {
      let start = plan.cmds.len();
      let mut extends = None;
      match set {
        None => {
          let mut get = redis::cmd("GET");
          get.arg(&*self.name(key));
          plan.cmds.push(get);
        }
        Some((value, ttl_ms)) => {
          let write = self.write_cmds(key, value, *ttl_ms);
          plan.cmds.extend(write.cmds);
          extends = write.extends;
          plan.sweeps.extend(write.sweep);
        }
      }
      plan.spans.push(start..plan.cmds.len());
      plan.lifetimes.push(extends);
    }
    plan
  }

  /// The outcome of one op of a [`Plan`] from its replies: the GET's text, or None for a
  /// write, which once it succeeded records what it `extends`.
  fn outcome(
    &self,
    replies: &mut [redis::RedisResult<redis::Value>],
    write: bool,
    extends: Option<(String, u64)>,
  ) -> Result<Option<String>> {
    if write {
      query_index::write_outcome(replies).map_err(Error::from)?;
      if let Some(extends) = extends {
        self.note_lifetime(extends);
      }
      return Ok(None);
    }
    let value = std::mem::replace(&mut replies[0], Ok(redis::Value::Nil)).map_err(Error::from)?;
    let bytes: Option<Vec<u8>> = redis::from_redis_value(value).map_err(|e| Error::Redis {
      kind: RedisFailure::Reply,
      message: e.to_string(),
    })?;
    bytes.map(String::from_utf8).transpose().map_err(|_| not_utf8())
  }

  /// The slot table of the Cluster, read from `CLUSTER NODES` when there is none.
  async fn slot_table(&self) -> Result<Arc<SlotTable>> {
    if let Some(table) = self.slot_table.read().unwrap_or_else(|p| p.into_inner()).clone() {
      return Ok(table);
    }
    let mut cmd = redis::cmd("CLUSTER");
    cmd.arg("NODES");
    let text: String = self.query(&cmd).await?;
    let masters = cluster_nodes(&text)
      .into_iter()
      .filter(|n| n.role == NodeRole::Master && !n.failed && !n.slots.is_empty())
      .filter_map(|n| split_address(&n.address).map(|a| (a, n.slots)))
      .collect();
    let table = Arc::new(SlotTable::new(masters));
    *self.slot_table.write().unwrap_or_else(|p| p.into_inner()) = Some(table.clone());
    Ok(table)
  }

  /// Runs one command on the Cluster node at `host:port` (the crate's routing by address).
  async fn query_node<T: redis::FromRedisValue>(&self, cmd: &Cmd, host: &str, port: u16) -> Result<T> {
    let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
      host: host.to_string(),
      port,
    });
    let value = self
      .with_conn(|conn| async move {
        match conn {
          Conn::Cluster(mut c) => c.route_command(cmd.clone(), routing).await,
          Conn::Plain(mut c) => cmd.query_async(&mut c).await,
        }
      })
      .await?;
    redis::from_redis_value(value).map_err(|e| Error::Redis {
      kind: RedisFailure::Reply,
      message: e.to_string(),
    })
  }

  /// `host:port` of the server the current connection reached (the master a Sentinel
  /// named at the last connect); `None` for a Cluster or while disconnected.
  pub fn connected_address(&self) -> Option<String> {
    self.current().and_then(|c| c.address.clone())
  }

  /// `single`, `cluster` or `sentinel`.
  pub fn kind(&self) -> &'static str {
    match &*self.target {
      Target::Single(_) => "single",
      Target::Cluster { .. } => "cluster",
      Target::Sentinel { .. } => "sentinel",
    }
  }
}

/// Drops the connection of `generation` if it is still the current one.
fn forget(slot: &RwLock<Option<Arc<Current>>>, generation: u64) {
  let mut slot = slot.write().unwrap_or_else(|p| p.into_inner());
  if slot.as_ref().is_some_and(|c| c.generation == generation) {
    *slot = None;
  }
}

/// Masters serving slots, from `CLUSTER NODES`: (`host`, `port`), sorted, and the slot
/// map as text (what changes when slots move or a replica is promoted).
fn cluster_masters(nodes: &str) -> (Vec<(String, u16)>, String) {
  let mut masters: Vec<(String, u16, String)> = cluster_nodes(nodes)
    .into_iter()
    .filter(|n| n.role == NodeRole::Master && !n.slots.is_empty())
    .filter_map(|n| split_address(&n.address).map(|(h, p)| (h, p, n.slots.join(" "))))
    .collect();
  masters.sort();
  let signature = masters
    .iter()
    .map(|(h, p, s)| format!("{h}:{p} {s}"))
    .collect::<Vec<_>>()
    .join("\n");
  (masters.into_iter().map(|(h, p, _)| (h, p)).collect(), signature)
}

struct ClusterNode {
  address: String,
  role: NodeRole,
  failed: bool,
  slots: Vec<String>,
}

/// Parses `CLUSTER NODES`: `<id> <ip:port@cport[,host]> <flags> <master> <ping> <pong> <epoch> <link> <slot>...`
fn cluster_nodes(text: &str) -> Vec<ClusterNode> {
  text
    .lines()
    .filter_map(|line| {
      let f: Vec<&str> = line.split_whitespace().collect();
      if f.len() < 8 {
        return None;
      }
      let address = f[1].split(['@', ',']).next()?.to_string();
      let flags: Vec<&str> = f[2].split(',').collect();
      if flags.contains(&"noaddr") || flags.contains(&"handshake") {
        return None;
      }
      let role = if flags.contains(&"master") {
        NodeRole::Master
      } else {
        NodeRole::Replica
      };
      Some(ClusterNode {
        address,
        role,
        failed: flags.contains(&"fail"),
        slots: f[8..].iter().map(|s| s.to_string()).collect(),
      })
    })
    .collect()
}

fn split_address(address: &str) -> Option<(String, u16)> {
  let (host, port) = address.rsplit_once(':')?;
  Some((host.to_string(), port.parse().ok()?))
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
    Ok(self.query::<i64>(&cmd).await? == 1)
  }
}

fn not_utf8() -> Error {
  Error::Redis {
    kind: RedisFailure::Reply,
    message: "the value stored at this key is not UTF-8 text (written by another client?)".into(),
  }
}

impl Store for RedisStore {
  fn get(&self, key: &str) -> impl Future<Output = Result<Option<String>>> + Send {
    let mut cmd = redis::cmd("GET");
    cmd.arg(&*self.name(key));
    async move {
      let bytes: Option<Vec<u8>> = self.query(&cmd).await?;
      bytes.map(String::from_utf8).transpose().map_err(|_| not_utf8())
    }
  }

  fn set(&self, key: &str, value: &str, ttl_ms: u64) -> impl Future<Output = Result<()>> + Send {
    let write = self.write_cmds(key, value, ttl_ms);
    async move {
      let WriteCmds {
        mut cmds,
        extends,
        sweep,
      } = write;
      if extends.is_none() && sweep.is_none() && cmds.len() == 1 {
        return self.query::<()>(&cmds[0]).await;
      }
      let sent = cmds.len();
      cmds.extend(sweep);
      let replies = self.pipeline(cmds).await?;
      self.after_sweeps(&replies[sent..]).await;
      query_index::write_outcome(&replies[..sent])?;
      if let Some(extends) = extends {
        self.note_lifetime(extends);
      }
      Ok(())
    }
  }

  fn delete(&self, key: &str) -> impl Future<Output = Result<bool>> + Send {
    let mut cmd = redis::cmd("UNLINK");
    cmd.arg(&*self.name(key));
    async move { Ok(self.query::<u64>(&cmd).await? > 0) }
  }

  fn invalidate_prefix(&self, literal_prefix: &str) -> impl Future<Output = Result<u64>> + Send {
    let pattern = match_pattern(literal_prefix);
    async move {
      if self.tagged {
        if let Some(buckets) = self
          .index
          .as_ref()
          .and_then(|l| l.cluster_query_indexes(literal_prefix))
        {
          let counts = try_join_all(buckets.iter().map(|index| self.invalidate_indexed(index))).await?;
          return Ok(counts.iter().sum());
        }
      } else if let Some(index) = self.index_of(literal_prefix) {
        return self.invalidate_indexed(&index).await;
      }
      match &*self.target {
        Target::Cluster { .. } => self.invalidate_cluster(&pattern).await,
        _ => self.scan_unlink(&pattern, None).await,
      }
    }
  }

  async fn ping(&self) -> Result<Duration> {
    let started = Instant::now();
    // a Cluster routes PING to every master and succeeds only if all answer
    self.query::<redis::Value>(&redis::cmd("PING")).await?;
    Ok(started.elapsed())
  }
}

impl RedisStore {
  /// Every key starting with `literal_prefix`: `SCAN MATCH` in pages (never blocking Redis), on
  /// every master of a Cluster; sorted, without duplicates. Keys that are not UTF-8 are skipped.
  pub async fn keys_with_prefix(&self, literal_prefix: &str) -> Result<Vec<String>> {
    let pattern = match_pattern(literal_prefix);
    let nodes: Vec<Option<(String, u16)>> = match &*self.target {
      Target::Cluster { .. } => self.cluster_slot_map().await?.0.into_iter().map(Some).collect(),
      _ => vec![None],
    };
    let mut out = Vec::new();
    for node in &nodes {
      let mut cursor: u64 = 0;
      loop {
        let mut scan = redis::cmd("SCAN");
        scan.arg(cursor).arg("MATCH").arg(&pattern).arg("COUNT").arg(SCAN_COUNT);
        let (next, keys): (u64, Vec<Vec<u8>>) = match node {
          Some((host, port)) => self.query_node(&scan, host, *port).await?,
          None => self.query(&scan).await?,
        };
        out.extend(keys.into_iter().filter_map(|k| String::from_utf8(k).ok()).map(|k| {
          if self.tagged {
            untag(&k).into_owned()
          } else {
            k
          }
        }));
        if next == 0 {
          break;
        }
        cursor = next;
      }
    }
    out.sort();
    out.dedup();
    Ok(out)
  }

  /// Removes the listed query results starting with `index.member`, one atomic chunk of
  /// [`INVALIDATE_CHUNK`] members at a time; returns how many were live.
  async fn invalidate_indexed(&self, index: &QueryIndex<'_>) -> Result<u64> {
    let cmd = self.scripts.invalidate(index);
    let mut removed = 0;
    loop {
      let (live, handled): (u64, u64) = self.query_script(&cmd).await?;
      removed += live;
      if handled < INVALIDATE_CHUNK as u64 {
        return Ok(removed);
      }
    }
  }

  /// `SCAN MATCH pattern` + `UNLINK` per page, on the connection or (Cluster) on one node.
  async fn scan_unlink(&self, pattern: &str, node: Option<(&str, u16)>) -> Result<u64> {
    let mut cursor: u64 = 0;
    let mut removed = 0;
    loop {
      let mut scan = redis::cmd("SCAN");
      scan.arg(cursor).arg("MATCH").arg(pattern).arg("COUNT").arg(SCAN_COUNT);
      let (next, keys): (u64, Vec<Vec<u8>>) = match node {
        Some((host, port)) => self.query_node(&scan, host, port).await?,
        None => self.query(&scan).await?,
      };
      if !keys.is_empty() {
        removed += match node {
          Some((host, port)) => self.unlink_on_node(&keys, host, port).await?,
          None => {
            let mut unlink = redis::cmd("UNLINK");
            unlink.arg(&keys);
            self.query::<u64>(&unlink).await?
          }
        };
      }
      if next == 0 {
        return Ok(removed);
      }
      cursor = next;
    }
  }

  /// Removes `keys` (one SCAN page of the Cluster node `host:port`): one pipeline of single-key
  /// `UNLINK`s sent to that node by the crate's routing by address. A multi-key `UNLINK` would be
  /// CROSSSLOT across slots, and one command per slot costs a round trip each. A key whose slot
  /// moved meanwhile answers MOVED: the call fails (an outage to the caller, so the invalidation
  /// is journaled and replayed) rather than count it wrongly.
  async fn unlink_on_node(&self, keys: &[Vec<u8>], host: &str, port: u16) -> Result<u64> {
    let cmds = keys
      .iter()
      .map(|key| {
        let mut unlink = redis::cmd("UNLINK");
        unlink.arg(key);
        unlink
      })
      .collect();
    let replies = self.pipeline_on(cmds, Some((host, port))).await?;
    replies.into_iter().try_fold(0, |sum, reply| {
      let n: u64 = reply
        .and_then(|v| redis::from_redis_value(v).map_err(redis::RedisError::from))
        .map_err(|e| Error::Redis {
          kind: RedisFailure::Connection,
          message: format!("UNLINK on {host}:{port}: {e}"),
        })?;
      Ok(sum + n)
    })
  }

  /// Prefix removal on every master of the Cluster, repeated while the slot map changed
  /// during a pass (a key moved to a master already scanned would be missed otherwise).
  async fn invalidate_cluster(&self, pattern: &str) -> Result<u64> {
    let mut removed = 0;
    let (mut masters, mut before) = self.cluster_slot_map().await?;
    for _ in 0..MAX_INVALIDATION_PASSES {
      let counts = try_join_all(
        masters
          .iter()
          .map(|(host, port)| self.scan_unlink(pattern, Some((host.as_str(), *port)))),
      )
      .await?;
      removed += counts.iter().sum::<u64>();
      let (now, after) = self.cluster_slot_map().await?;
      if after == before {
        return Ok(removed);
      }
      (masters, before) = (now, after);
    }
    Ok(removed)
  }

  async fn cluster_slot_map(&self) -> Result<(Vec<(String, u16)>, String)> {
    let mut cmd = redis::cmd("CLUSTER");
    cmd.arg("NODES");
    let text: String = self.query(&cmd).await?;
    let (masters, signature) = cluster_masters(&text);
    if masters.is_empty() {
      return Err(Error::Redis {
        kind: RedisFailure::Connection,
        message: "the cluster reports no master serving slots".into(),
      });
    }
    Ok((masters, signature))
  }

  /// `used_memory` from `INFO memory`, in bytes (summed over the masters of a Cluster).
  pub async fn used_memory(&self) -> Result<u64> {
    let mut cmd = redis::cmd("INFO");
    cmd.arg("memory");
    let infos: Vec<String> = match &*self.target {
      Target::Cluster { .. } => {
        let (masters, _) = self.cluster_slot_map().await?;
        try_join_all(masters.iter().map(|(h, p)| self.query_node::<String>(&cmd, h, *p))).await?
      }
      _ => vec![self.query(&cmd).await?],
    };
    infos.iter().try_fold(0, |sum, info| {
      info
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|v| sum + v)
        .ok_or_else(|| Error::Redis {
          kind: RedisFailure::Reply,
          message: "INFO memory lacks used_memory".into(),
        })
    })
  }

  /// Checks every node of the topology (a PING each, on its own short-lived connection,
  /// concurrently; the whole check within the command timeout) and remembers the result for
  /// [`RedisStore::last_topology`]. Never fails: what cannot be reached is reported so.
  pub async fn topology(&self) -> Topology {
    let topology = match tokio::time::timeout(self.timeouts.command, self.check_topology()).await {
      Ok(t) => t,
      Err(_) => self.unanswered_topology(),
    };
    *self.topology.lock().unwrap_or_else(|p| p.into_inner()) = Some(topology.clone());
    topology
  }

  /// When the check ran out of time: the nodes known from the last check (else the configured
  /// ones), none reachable.
  fn unanswered_topology(&self) -> Topology {
    let known = self.last_topology().unwrap_or_else(|| {
      let (kind, nodes): (&'static str, Vec<(String, NodeRole)>) = match &*self.target {
        Target::Single(c) => (
          "single",
          vec![(c.get_connection_info().addr().to_string(), NodeRole::Master)],
        ),
        Target::Cluster { seed, .. } => ("cluster", vec![(seed.addr().to_string(), NodeRole::Master)]),
        Target::Sentinel { sentinels, .. } => (
          "sentinel",
          sentinels
            .iter()
            .map(|s| (s.addr().to_string(), NodeRole::Sentinel))
            .collect(),
        ),
      };
      let nodes = nodes
        .into_iter()
        .map(|(address, role)| NodeStatus {
          address,
          role,
          reachable: false,
        })
        .collect();
      Topology { kind, nodes }
    });
    Topology {
      kind: known.kind,
      nodes: known
        .nodes
        .into_iter()
        .map(|n| NodeStatus { reachable: false, ..n })
        .collect(),
    }
  }

  async fn check_topology(&self) -> Topology {
    match &*self.target {
      Target::Single(client) => {
        let reachable = self.ping().await.is_ok();
        Topology {
          kind: "single",
          nodes: vec![NodeStatus {
            address: client.get_connection_info().addr().to_string(),
            role: NodeRole::Master,
            reachable,
          }],
        }
      }
      Target::Cluster { seed, .. } => {
        let mut cmd = redis::cmd("CLUSTER");
        cmd.arg("NODES");
        let listed: Vec<(String, NodeRole, bool)> = match self.query::<String>(&cmd).await {
          Ok(text) => cluster_nodes(&text)
            .into_iter()
            .map(|n| (n.address, n.role, n.failed))
            .collect(),
          // no slot map: report the first seed as it answers
          Err(_) => vec![(seed.addr().to_string(), NodeRole::Master, false)],
        };
        let checks = listed.iter().map(|(address, _, _)| self.ping_node(seed, address));
        let reachable = join_all(checks).await;
        Topology {
          kind: "cluster",
          nodes: listed
            .into_iter()
            .zip(reachable)
            .map(|((address, role, _), reachable)| NodeStatus {
              address,
              role,
              reachable,
            })
            .collect(),
        }
      }
      Target::Sentinel { sentinels, config, .. } => self.sentinel_topology(sentinels, config).await,
    }
  }

  /// The topology as of the last [`RedisStore::topology`] check (no I/O).
  pub fn last_topology(&self) -> Option<Topology> {
    self.topology.lock().unwrap_or_else(|p| p.into_inner()).clone()
  }

  async fn sentinel_topology(&self, sentinels: &[ConnectionInfo], config: &SentinelConfig) -> Topology {
    let ping_all = sentinels.iter().map(|s| self.ping_info(s.clone()));
    let sentinel_up = join_all(ping_all).await;
    let mut nodes: Vec<NodeStatus> = sentinels
      .iter()
      .zip(&sentinel_up)
      .map(|(s, up)| NodeStatus {
        address: s.addr().to_string(),
        role: NodeRole::Sentinel,
        reachable: *up,
      })
      .collect();
    // the data nodes as the first answering sentinel sees them
    let mut data: Vec<(String, NodeRole)> = Vec::new();
    for (s, up) in sentinels.iter().zip(&sentinel_up) {
      if !*up {
        continue;
      }
      let mut master = redis::cmd("SENTINEL");
      master.arg("GET-MASTER-ADDR-BY-NAME").arg(&config.master_name);
      let mut replicas = redis::cmd("SENTINEL");
      replicas.arg("REPLICAS").arg(&config.master_name);
      let asked = async {
        let client = self.client_for(s.clone())?;
        let mut conn = client
          .get_multiplexed_async_connection_with_config(&self.short_config())
          .await?;
        let m: Option<(String, String)> = master.query_async(&mut conn).await?;
        let r: Vec<std::collections::HashMap<String, String>> = replicas.query_async(&mut conn).await?;
        Ok::<_, redis::RedisError>((m, r))
      };
      if let Ok(Ok((m, r))) = tokio::time::timeout(self.timeouts.command, asked).await {
        if let Some((host, port)) = m {
          data.push((format!("{host}:{port}"), NodeRole::Master));
        }
        for replica in r {
          if let (Some(ip), Some(port)) = (replica.get("ip"), replica.get("port")) {
            data.push((format!("{ip}:{port}"), NodeRole::Replica));
          }
        }
        break;
      }
    }
    let data_info = RedisConnectionSettings::of(config);
    let checks = data.iter().map(|(address, _)| {
      let info = data_info.for_address(address);
      async move {
        match info {
          Some(info) => self.ping_info(info).await,
          None => false,
        }
      }
    });
    let up = join_all(checks).await;
    nodes.extend(data.into_iter().zip(up).map(|((address, role), reachable)| NodeStatus {
      address,
      role,
      reachable,
    }));
    nodes.sort_by_key(|n| {
      (
        n.role != NodeRole::Master,
        n.role == NodeRole::Sentinel,
        n.address.clone(),
      )
    });
    Topology {
      kind: "sentinel",
      nodes,
    }
  }

  fn short_config(&self) -> AsyncConnectionConfig {
    AsyncConnectionConfig::new()
      .set_connection_timeout(Some(self.timeouts.command))
      .set_response_timeout(Some(self.timeouts.command))
  }

  /// A Cluster node at `address`, with the seed's credentials and TLS.
  async fn ping_node(&self, seed: &ConnectionInfo, address: &str) -> bool {
    let Some((host, port)) = split_address(address) else {
      return false;
    };
    let addr = match seed.addr() {
      ConnectionAddr::TcpTls { insecure, .. } => ConnectionAddr::TcpTls {
        host,
        port,
        insecure: *insecure,
        tls_params: None,
      },
      _ => ConnectionAddr::Tcp(host, port),
    };
    self.ping_info(seed.clone().set_addr(addr)).await
  }

  /// A client for one node, with the `tls` files when its address is TLS.
  fn client_for(&self, info: ConnectionInfo) -> redis::RedisResult<Client> {
    match (&self.tls, matches!(info.addr(), ConnectionAddr::TcpTls { .. })) {
      (Some(certs), true) => Client::build_with_tls(info, certs.clone()),
      _ => Client::open(info),
    }
  }

  /// One PING on a fresh connection within the command timeout.
  async fn ping_info(&self, info: ConnectionInfo) -> bool {
    let Ok(client) = self.client_for(info) else {
      return false;
    };
    let config = self.short_config();
    let ping = async {
      let mut conn = client.get_multiplexed_async_connection_with_config(&config).await?;
      redis::cmd("PING").query_async::<String>(&mut conn).await
    };
    matches!(tokio::time::timeout(self.timeouts.command, ping).await, Ok(Ok(_)))
  }
}

/// Credentials of Sentinel data nodes, to check them directly.
struct RedisConnectionSettings {
  settings: redis::RedisConnectionInfo,
  tls: bool,
}

impl RedisConnectionSettings {
  fn of(config: &SentinelConfig) -> Self {
    let mut settings = redis::RedisConnectionInfo::default().set_db(config.db);
    if let Some(u) = &config.username {
      settings = settings.set_username(u);
    }
    if let Some(p) = &config.password {
      settings = settings.set_password(p);
    }
    RedisConnectionSettings {
      settings,
      tls: config.tls,
    }
  }

  fn for_address(&self, address: &str) -> Option<ConnectionInfo> {
    let (host, port) = split_address(address)?;
    let addr = if self.tls {
      ConnectionAddr::TcpTls {
        host,
        port,
        insecure: false,
        tls_params: None,
      }
    } else {
      ConnectionAddr::Tcp(host, port)
    };
    let info = addr.into_connection_info().ok()?;
    Some(info.set_redis_settings(self.settings.clone()))
  }
}
