//! The one connection of a Redis store: opened lazily, shared by every concurrent call,
//! dropped when it fails, opened again by the next call.
//!
//! ## Behavior
//! - One slot holds the connection: none, being opened (a shared attempt every waiting caller
//!   awaits; a caller that gives up does not cancel it for the others), or open.
//! - A command failing with an outage (or `READONLY`: the server is no longer the master)
//!   drops the connection it ran on, only if it is still the one in the slot, so a burst of
//!   failures reconnects once.
//! - With Sentinel, opening asks the sentinels for the current master; while calls are made, a
//!   background check at most every [`MASTER_CHECK_INTERVAL`] drops a connection to a server
//!   that is no longer the master. With a Cluster, opening reads the slot map again.
//! - Every command runs under the command deadline.
//! - With a [`Tracker`] (the near cache), a single server's or Sentinel master's connection is
//!   opened in RESP3 and subscribed to invalidations ([`super::tracking`]); its epoch ends
//!   when it is dropped. A server without RESP3 gets a RESP2 connection and no tracking.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::{BoxFuture, FutureExt, Shared};
use redis::aio::MultiplexedConnection;
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::sentinel::SentinelClient;
use redis::{AsyncConnectionConfig, Client, Cmd, ConnectionAddr, ConnectionInfo, ProtocolVersion, TlsCertificates};

use super::tracking::Tracker;
use super::RedisTimeouts;
use crate::config::SentinelConfig;
use crate::error::{Error, RedisFailure, Result};

/// Sentinel: how often (at most, while calls are made) the sentinels are asked in the
/// background whether the connected server is still the master. A switch-over keeps the old
/// master up and accepting writes until the sentinels demote it (seconds later); this bounds
/// how long calls keep going to it.
pub const MASTER_CHECK_INTERVAL: Duration = Duration::from_millis(1000);

/// What the store connects to.
pub(super) enum Target {
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

/// An open connection of either kind; cheap to clone (multiplexed).
#[derive(Clone)]
pub(super) enum Conn {
  Plain(MultiplexedConnection),
  Cluster(ClusterConnection),
}

impl Conn {
  pub(super) async fn run<T: redis::FromRedisValue>(&mut self, cmd: &Cmd) -> redis::RedisResult<T> {
    match self {
      Conn::Plain(c) => cmd.query_async(c).await,
      Conn::Cluster(c) => cmd.query_async(c).await,
    }
  }
}

/// The connection in the slot.
pub(super) struct Current {
  pub(super) conn: Conn,
  /// `host:port` of the server a plain connection reached (the Sentinel master).
  pub(super) address: Option<String>,
  /// The tracking epoch of a subscribed connection.
  epoch: Option<u64>,
}

type Opening = Shared<BoxFuture<'static, Result<Arc<Current>>>>;

/// The slot's states.
enum Slot {
  /// Nothing open (never, or dropped after a failure or `disconnect`).
  Empty,
  /// An attempt every caller awaits; once it failed, the next caller starts another.
  Opening(Opening),
  /// Open.
  Open(Arc<Current>),
}

/// The connection of one store.
pub(super) struct Connection {
  pub(super) target: Arc<Target>,
  pub(super) tls: Option<TlsCertificates>,
  pub(super) timeouts: RedisTimeouts,
  slot: Arc<Mutex<Slot>>,
  /// Sentinel: when the master was last checked (ms since `epoch`).
  master_checked_ms: AtomicU64,
  epoch: Instant,
  /// Subscribes single-server and Sentinel connections to invalidations (the near cache).
  tracker: Option<Tracker>,
  /// The server answered that it has no RESP3: connections are RESP2, untracked.
  no_resp3: Arc<AtomicBool>,
}

impl Connection {
  /// A connection to `target`, not opened yet.
  pub(super) fn new(target: Target, tls: Option<TlsCertificates>, timeouts: RedisTimeouts) -> Self {
    Connection {
      target: Arc::new(target),
      tls,
      timeouts,
      slot: Arc::new(Mutex::new(Slot::Empty)),
      master_checked_ms: AtomicU64::new(0),
      epoch: Instant::now(),
      tracker: None,
      no_resp3: Arc::new(AtomicBool::new(false)),
    }
  }

  /// Subscribes the connections this store opens to invalidations (not a Cluster's).
  pub(super) fn track(&mut self, tracker: Tracker) {
    self.tracker = Some(tracker);
  }

  /// Drops the connection (pending commands fail); the next call reconnects.
  pub(super) fn disconnect(&self) {
    let old = std::mem::replace(&mut *lock(&self.slot), Slot::Empty);
    if let Slot::Open(current) = old {
      self.end_epoch(&current);
    }
  }

  fn end_epoch(&self, current: &Current) {
    if let (Some(t), Some(epoch)) = (&self.tracker, current.epoch) {
      t.sink.lost(epoch);
    }
  }

  /// The open connection, if any (no I/O).
  pub(super) fn current(&self) -> Option<Arc<Current>> {
    match &*lock(&self.slot) {
      Slot::Open(c) => Some(c.clone()),
      _ => None,
    }
  }

  /// The open connection, or the one being opened.
  async fn get(&self) -> Result<Arc<Current>> {
    let attempt = {
      let mut slot = lock(&self.slot);
      match &*slot {
        Slot::Open(c) => {
          let c = c.clone();
          drop(slot);
          self.check_master_soon(&c);
          return Ok(c);
        }
        Slot::Opening(pending) if pending.peek().is_none() => pending.clone(),
        _ => {
          let fresh = self.open().boxed().shared();
          *slot = Slot::Opening(fresh.clone());
          fresh
        }
      }
    };
    attempt.await
  }

  /// One connection attempt, bounded by the connect timeout; puts what it opened in the slot
  /// unless the slot was emptied meanwhile (`disconnect`).
  fn open(&self) -> impl Future<Output = Result<Arc<Current>>> + Send + 'static {
    let target = self.target.clone();
    let timeouts = self.timeouts;
    let slot = self.slot.clone();
    let tracker = self.tracker.clone();
    let tls = self.tls.clone();
    let no_resp3 = self.no_resp3.clone();
    async move {
      let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeouts.connect))
        .set_response_timeout(Some(timeouts.command));
      let ms = timeouts.connect.as_millis() as u64;
      let connect = async {
        let server = match &*target {
          Target::Single(client) => client.clone(),
          Target::Cluster { client, .. } => {
            return Ok::<_, Error>((Conn::Cluster(client.get_async_connection().await?), None, None));
          }
          // asks the sentinels for the current master (and checks its ROLE) on every connect
          Target::Sentinel { client, .. } => client.lock().await.async_get_client().await?,
        };
        let address = Some(server.get_connection_info().addr().to_string());
        if let Some(t) = tracker.as_ref().filter(|_| !no_resp3.load(Ordering::Relaxed)) {
          let epoch = t.sink.starting();
          let resp3 = with_protocol(&server, ProtocolVersion::RESP3, tls.as_ref())?;
          match resp3
            .get_multiplexed_async_connection_with_config(&config.clone().set_push_sender(t.handler(epoch)))
            .await
          {
            Ok(mut conn) => {
              // a refused subscription (an ACL without CLIENT, say) leaves the L1 unused
              match t.command(true).query_async::<()>(&mut conn).await {
                Ok(()) => t.sink.established(epoch),
                Err(_) => t.sink.lost(epoch),
              }
              return Ok((Conn::Plain(conn), address, Some(epoch)));
            }
            Err(e) if e.kind() == redis::ErrorKind::RESP3NotSupported => {
              no_resp3.store(true, Ordering::Relaxed);
              t.sink.lost(epoch);
            }
            Err(e) => {
              t.sink.lost(epoch);
              return Err(e.into());
            }
          }
        }
        let conn = server.get_multiplexed_async_connection_with_config(&config).await?;
        Ok((Conn::Plain(conn), address, None))
      };
      let (conn, address, epoch) = tokio::time::timeout(timeouts.connect, connect)
        .await
        .map_err(|_| Error::timeout("connect", ms))??;
      let fresh = Arc::new(Current { conn, address, epoch });
      let mut slot = lock(&slot);
      if matches!(&*slot, Slot::Opening(_)) {
        *slot = Slot::Open(fresh.clone());
      } else if let (Some(t), Some(e)) = (&tracker, epoch) {
        // emptied meanwhile (disconnect): this connection serves this call only
        t.sink.lost(e);
      }
      Ok(fresh)
    }
  }

  /// Sentinel: at most every [`MASTER_CHECK_INTERVAL`], asks the sentinels in a background task
  /// whether `current` is still connected to the master; drops it if not, so the next call
  /// reconnects to the new master. Never delays the call.
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
    let (target, slot, current, timeout, certs, tracker) = (
      self.target.clone(),
      self.slot.clone(),
      current.clone(),
      self.timeouts.command,
      self.tls.clone(),
      self.tracker.clone(),
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
          if format!("{host}:{port}") != address && forget(&slot, &current) {
            if let (Some(t), Some(e)) = (&tracker, current.epoch) {
              t.sink.lost(e);
            }
          }
          return;
        }
      }
    });
  }

  /// Runs `run` on the connection under the command deadline; drops a broken connection.
  pub(super) async fn with_conn<T, F, Fut>(&self, run: F) -> Result<T>
  where
    F: FnOnce(Conn) -> Fut,
    Fut: Future<Output = redis::RedisResult<T>>,
  {
    let current = self.get().await?;
    let ms = self.timeouts.command.as_millis() as u64;
    let result = match tokio::time::timeout(self.timeouts.command, run(current.conn.clone())).await {
      Ok(r) => r.map_err(Error::from),
      Err(_) => Err(Error::timeout("command", ms)),
    };
    if let Err(e) = &result {
      if e.needs_new_connection() && forget(&self.slot, &current) {
        self.end_epoch(&current);
      }
    }
    result
  }

  /// Runs one command under the command deadline; drops a broken connection.
  pub(super) async fn query<T: redis::FromRedisValue>(&self, cmd: &Cmd) -> Result<T> {
    self.with_conn(|mut conn| async move { conn.run(cmd).await }).await
  }

  /// `cmds` in one pipeline (one round trip), sent to the Cluster node `host:port` when given
  /// (the crate's routing by address; commands of any slot that node serves), else routed as
  /// usual: a reply per command, error replies included; `Err` when the pipeline as a whole
  /// failed (outage).
  pub(super) async fn pipeline(
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

  /// Runs one command on the Cluster node at `host:port` (the crate's routing by address).
  pub(super) async fn query_node<T: redis::FromRedisValue>(&self, cmd: &Cmd, host: &str, port: u16) -> Result<T> {
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
}

/// A reply value as a result: an error reply becomes `Err`.
pub(super) fn into_result(value: redis::Value) -> redis::RedisResult<redis::Value> {
  match value {
    redis::Value::ServerError(e) => Err(e.into()),
    other => Ok(other),
  }
}

fn lock(slot: &Mutex<Slot>) -> std::sync::MutexGuard<'_, Slot> {
  slot.lock().unwrap_or_else(|p| p.into_inner())
}

/// Drops `current` if it is still the connection in the slot; true if it was.
fn forget(slot: &Mutex<Slot>, current: &Arc<Current>) -> bool {
  let mut slot = lock(slot);
  if matches!(&*slot, Slot::Open(c) if Arc::ptr_eq(c, current)) {
    *slot = Slot::Empty;
    return true;
  }
  false
}

/// `client` speaking `protocol` (its address, credentials, database and TLS as they are).
fn with_protocol(client: &Client, protocol: ProtocolVersion, tls: Option<&TlsCertificates>) -> Result<Client> {
  let info = client.get_connection_info().clone();
  let settings = info.redis_settings().clone().set_protocol(protocol);
  let info = info.set_redis_settings(settings);
  let tls_addr = matches!(info.addr(), ConnectionAddr::TcpTls { .. });
  Ok(match (tls, tls_addr) {
    (Some(certs), true) => Client::build_with_tls(info, certs.clone())?,
    _ => Client::open(info)?,
  })
}
