//! Redis client tracking for a near cache: connections that subscribe to the invalidation of
//! every key under some prefixes (`CLIENT TRACKING ON BCAST PREFIX <p>...`, RESP3 pushes), and
//! the report of what they see to a [`TrackingSink`].
//!
//! ## Behavior
//! - Broadcast mode: Redis keeps no per-key table (its memory does not grow with what the
//!   processes read) and tells every subscribed connection about every change under the
//!   prefix, by any client; `NOLOOP` leaves out the changes a connection makes itself.
//! - Single server and Sentinel: the data connection itself is RESP3 and subscribed, so this
//!   process's own writes (made on it) are not reported back.
//! - Cluster: one subscribed connection per master beside the cluster connection (whose
//!   per-node connections cannot be configured); this process's own writes come back too.
//! - Each subscription is an *epoch* ([`TrackingSink::starting`]); a connection that drops,
//!   or is dropped, ends its epoch ([`TrackingSink::lost`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::{
  AsyncConnectionConfig, Client, ConnectionAddr, ConnectionInfo, ProtocolVersion, PushInfo, PushKind, TlsCertificates,
  Value,
};

use super::topology::{cluster_masters, node_info};

/// Receives what tracked connections see (implemented by the near cache).
pub trait TrackingSink: Send + Sync {
  /// A connection is being opened and subscribed: its epoch.
  fn starting(&self) -> u64;
  /// The subscription of `epoch` is in place.
  fn established(&self, epoch: u64);
  /// The connection of `epoch` is gone.
  fn lost(&self, epoch: u64);
  /// Redis invalidated these keys.
  fn invalidated(&self, keys: &mut dyn Iterator<Item = &[u8]>);
  /// Redis invalidated everything (`FLUSHDB`, `FLUSHALL`).
  fn flushed(&self);
}

/// Tracking of one store: the prefixes to subscribe to and where to report.
#[derive(Clone)]
pub struct Tracker {
  /// Where the entries the near cache may hold live (`<keyPrefix>s:`, `q:`, `t:`): changes
  /// elsewhere (rate limiters, index sets of the manager scope) are not broadcast.
  pub prefixes: Vec<String>,
  /// Where pushes are reported.
  pub sink: Arc<dyn TrackingSink>,
}

impl Tracker {
  /// The subscription command; `noloop`: not told of this connection's own changes.
  pub fn command(&self, noloop: bool) -> redis::Cmd {
    let mut cmd = redis::cmd("CLIENT");
    cmd.arg("TRACKING").arg("ON").arg("BCAST");
    for prefix in &self.prefixes {
      cmd.arg("PREFIX").arg(prefix);
    }
    if noloop {
      cmd.arg("NOLOOP");
    }
    cmd
  }

  /// The push handler of a connection of `epoch` (runs in the connection's driver task:
  /// never blocks).
  pub fn handler(&self, epoch: u64) -> impl Fn(PushInfo) -> Result<(), ()> + Send + Sync + 'static {
    let sink = self.sink.clone();
    move |push: PushInfo| {
      report(&*sink, epoch, push);
      Ok(())
    }
  }
}

/// Reports one push message to `sink`.
pub fn report(sink: &dyn TrackingSink, epoch: u64, push: PushInfo) {
  match push.kind {
    PushKind::Invalidate => match push.data.first() {
      Some(Value::Array(keys)) => {
        let mut keys = keys.iter().filter_map(|k| match k {
          Value::BulkString(bytes) => Some(bytes.as_slice()),
          _ => None,
        });
        sink.invalidated(&mut keys);
      }
      // a null: everything (FLUSHDB / FLUSHALL)
      _ => sink.flushed(),
    },
    PushKind::Disconnection => sink.lost(epoch),
    _ => {}
  }
}

/// Subscribed connections to every master of a Cluster, one epoch for all of them: re-made
/// when the set of masters changes (a failover, a master added) or one of them drops. Checked
/// in the background at most every [`CLUSTER_CHECK_INTERVAL`] while calls are made.
pub(super) struct ClusterTracking {
  tracker: Tracker,
  /// The first seed: credentials and TLS of every node.
  seed: ConnectionInfo,
  tls: Option<TlsCertificates>,
  timeout: Duration,
  checked_ms: AtomicU64,
  started: Instant,
  state: tokio::sync::Mutex<Subscribed>,
}

/// How often (at most, while calls are made) the masters of a Cluster are listed again.
pub const CLUSTER_CHECK_INTERVAL: Duration = Duration::from_millis(1000);

#[derive(Default)]
struct Subscribed {
  /// The masters and their slots, as text (what changes on a failover or a resharding).
  signature: String,
  /// Known nodes, to ask for `CLUSTER NODES`.
  nodes: Vec<(String, u16)>,
  /// The subscribed connections (held: dropping one closes it) and whether one of them dropped.
  _conns: Vec<MultiplexedConnection>,
  lost: Option<Arc<AtomicBool>>,
}

impl ClusterTracking {
  pub(super) fn new(
    tracker: Tracker,
    seed: ConnectionInfo,
    tls: Option<TlsCertificates>,
    timeout: Duration,
  ) -> Arc<Self> {
    Arc::new(ClusterTracking {
      tracker,
      seed,
      tls,
      timeout,
      checked_ms: AtomicU64::new(0),
      started: Instant::now(),
      state: tokio::sync::Mutex::new(Subscribed::default()),
    })
  }

  /// At most every [`CLUSTER_CHECK_INTERVAL`], re-checks the subscriptions in a background task
  /// (never delays the call).
  pub(super) fn check_soon(self: &Arc<Self>) {
    let now = self.started.elapsed().as_millis() as u64;
    let last = self.checked_ms.load(Ordering::Relaxed);
    let first = last == 0;
    if !first && now.saturating_sub(last) < CLUSTER_CHECK_INTERVAL.as_millis() as u64 {
      return;
    }
    if self
      .checked_ms
      .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
      .is_err()
    {
      return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
      return;
    };
    let me = self.clone();
    runtime.spawn(async move {
      let _ = tokio::time::timeout(me.timeout * 4, me.refresh()).await;
    });
  }

  /// Lists the masters; (re)subscribes to all of them when they changed or one dropped.
  async fn refresh(&self) {
    let mut state = self.state.lock().await;
    let Some(text) = self.cluster_nodes(&state.nodes).await else {
      return;
    };
    let (masters, signature) = cluster_masters(&text);
    let intact = state.lost.as_ref().is_some_and(|lost| !lost.load(Ordering::Acquire));
    if intact && signature == state.signature {
      return;
    }
    let epoch = self.tracker.sink.starting();
    let lost = Arc::new(AtomicBool::new(false));
    let mut conns = Vec::with_capacity(masters.len());
    for (host, port) in &masters {
      match self.subscribe(host, *port, epoch, &lost).await {
        Some(conn) => conns.push(conn),
        None => {
          self.tracker.sink.lost(epoch);
          *state = Subscribed {
            nodes: masters,
            ..Default::default()
          };
          return;
        }
      }
    }
    if masters.is_empty() {
      self.tracker.sink.lost(epoch);
    } else {
      self.tracker.sink.established(epoch);
    }
    *state = Subscribed {
      signature,
      nodes: masters,
      _conns: conns,
      lost: Some(lost),
    };
  }

  /// `CLUSTER NODES` from the first node that answers (the known ones, then the seed).
  async fn cluster_nodes(&self, known: &[(String, u16)]) -> Option<String> {
    let mut cmd = redis::cmd("CLUSTER");
    cmd.arg("NODES");
    let known = known.iter().map(|(h, p)| node_info(&self.seed, h.clone(), *p));
    for info in known.chain(std::iter::once(self.seed.clone())) {
      let ask = async {
        let client = self.client(info, ProtocolVersion::RESP2).ok()?;
        let mut conn = client.get_multiplexed_async_connection().await.ok()?;
        cmd.query_async::<String>(&mut conn).await.ok()
      };
      if let Ok(Some(text)) = tokio::time::timeout(self.timeout, ask).await {
        return Some(text);
      }
    }
    None
  }

  /// A RESP3 connection to the master at `host:port`, subscribed for `epoch`.
  async fn subscribe(
    &self,
    host: &str,
    port: u16,
    epoch: u64,
    lost: &Arc<AtomicBool>,
  ) -> Option<MultiplexedConnection> {
    let client = self
      .client(node_info(&self.seed, host.to_string(), port), ProtocolVersion::RESP3)
      .ok()?;
    let sink = self.tracker.sink.clone();
    let dropped = lost.clone();
    let handler = move |push: PushInfo| -> Result<(), ()> {
      if push.kind == PushKind::Disconnection {
        dropped.store(true, Ordering::Release);
      }
      report(&*sink, epoch, push);
      Ok(())
    };
    let config = AsyncConnectionConfig::new()
      .set_connection_timeout(Some(self.timeout))
      .set_response_timeout(Some(self.timeout))
      .set_push_sender(handler);
    let open = async {
      let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .ok()?;
      // no NOLOOP: this process writes over other connections, and its writes come back too
      self.tracker.command(false).query_async::<()>(&mut conn).await.ok()?;
      Some(conn)
    };
    tokio::time::timeout(self.timeout, open).await.ok().flatten()
  }

  fn client(&self, info: ConnectionInfo, protocol: ProtocolVersion) -> redis::RedisResult<Client> {
    let settings = info.redis_settings().clone().set_protocol(protocol);
    let info = info.set_redis_settings(settings);
    match (&self.tls, matches!(info.addr(), ConnectionAddr::TcpTls { .. })) {
      (Some(certs), true) => Client::build_with_tls(info, certs.clone()),
      _ => Client::open(info),
    }
  }

  /// Drops the subscriptions (close).
  pub(super) fn stop(&self) {
    if let Ok(mut state) = self.state.try_lock() {
      if let Some(lost) = &state.lost {
        lost.store(true, Ordering::Release);
      }
      *state = Subscribed::default();
    }
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use std::sync::Mutex;

  #[derive(Default)]
  struct Seen(Mutex<Vec<String>>);

  impl TrackingSink for Seen {
    fn starting(&self) -> u64 {
      1
    }
    fn established(&self, e: u64) {
      self.0.lock().unwrap().push(format!("established {e}"));
    }
    fn lost(&self, e: u64) {
      self.0.lock().unwrap().push(format!("lost {e}"));
    }
    fn invalidated(&self, keys: &mut dyn Iterator<Item = &[u8]>) {
      for k in keys {
        self
          .0
          .lock()
          .unwrap()
          .push(format!("invalidated {}", String::from_utf8_lossy(k)));
      }
    }
    fn flushed(&self) {
      self.0.lock().unwrap().push("flushed".into());
    }
  }

  #[test]
  fn pushes_are_reported_by_kind() {
    let seen = Seen::default();
    let keys = Value::Array(vec![
      Value::BulkString(b"fc:s:a".to_vec()),
      Value::BulkString(b"fc:q:b".to_vec()),
    ]);
    report(
      &seen,
      7,
      PushInfo {
        kind: PushKind::Invalidate,
        data: vec![keys],
      },
    );
    report(
      &seen,
      7,
      PushInfo {
        kind: PushKind::Invalidate,
        data: vec![Value::Nil],
      },
    );
    report(
      &seen,
      7,
      PushInfo {
        kind: PushKind::Disconnection,
        data: vec![],
      },
    );
    report(
      &seen,
      7,
      PushInfo {
        kind: PushKind::Message,
        data: vec![],
      },
    );
    assert_eq!(
      *seen.0.lock().unwrap(),
      ["invalidated fc:s:a", "invalidated fc:q:b", "flushed", "lost 7"]
    );
  }

  #[test]
  fn the_subscription_covers_the_prefixes() {
    let tracker = Tracker {
      prefixes: vec!["fc:s:".into(), "fc:q:".into()],
      sink: Arc::new(Seen::default()),
    };
    let packed = String::from_utf8_lossy(&tracker.command(true).get_packed_command()).to_string();
    assert!(packed.contains("BCAST") && packed.contains("NOLOOP"), "{packed}");
    assert_eq!(packed.matches("PREFIX").count(), 2, "{packed}");
    assert!(packed.contains("fc:s:") && packed.contains("fc:q:"), "{packed}");
  }
}
