//! The Redis deployment behind a store: its nodes, whether each answers, Redis memory use.

use futures_util::future::{join_all, try_join_all};
use redis::{AsyncConnectionConfig, Client, ConnectionAddr, ConnectionInfo, IntoConnectionInfo};

use super::connection::Target;
use super::RedisStore;
use crate::config::SentinelConfig;
use crate::error::{Error, RedisFailure, Result};
use crate::store::Store;

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

/// Masters serving slots, from `CLUSTER NODES`: (`host`, `port`), sorted, and the slot
/// map as text (what changes when slots move or a replica is promoted).
pub(super) fn cluster_masters(nodes: &str) -> (Vec<(String, u16)>, String) {
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

pub(super) struct ClusterNode {
  pub(super) address: String,
  pub(super) role: NodeRole,
  pub(super) failed: bool,
  pub(super) slots: Vec<String>,
}

/// Parses `CLUSTER NODES`: `<id> <ip:port@cport[,host]> <flags> <master> <ping> <pong> <epoch> <link> <slot>...`
pub(super) fn cluster_nodes(text: &str) -> Vec<ClusterNode> {
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

pub(super) fn split_address(address: &str) -> Option<(String, u16)> {
  let (host, port) = address.rsplit_once(':')?;
  Some((host.to_string(), port.parse().ok()?))
}

impl RedisStore {
  /// `used_memory` from `INFO memory`, in bytes (summed over the masters of a Cluster).
  pub async fn used_memory(&self) -> Result<u64> {
    let mut cmd = redis::cmd("INFO");
    cmd.arg("memory");
    let infos: Vec<String> = match self.target() {
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
    let topology = match tokio::time::timeout(self.conn.timeouts.command, self.check_topology()).await {
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
      let (kind, nodes): (&'static str, Vec<(String, NodeRole)>) = match self.target() {
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
    match self.target() {
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
      if let Ok(Ok((m, r))) = tokio::time::timeout(self.conn.timeouts.command, asked).await {
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
      .set_connection_timeout(Some(self.conn.timeouts.command))
      .set_response_timeout(Some(self.conn.timeouts.command))
  }

  /// A Cluster node at `address`, with the seed's credentials and TLS.
  async fn ping_node(&self, seed: &ConnectionInfo, address: &str) -> bool {
    let Some((host, port)) = split_address(address) else {
      return false;
    };
    self.ping_info(node_info(seed, host, port)).await
  }

  /// A client for one node, with the `tls` files when its address is TLS.
  fn client_for(&self, info: ConnectionInfo) -> redis::RedisResult<Client> {
    match (&self.conn.tls, matches!(info.addr(), ConnectionAddr::TcpTls { .. })) {
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
    matches!(tokio::time::timeout(self.conn.timeouts.command, ping).await, Ok(Ok(_)))
  }
}

/// The Cluster node at `host:port`, with the seed's credentials and TLS mode.
pub(super) fn node_info(seed: &ConnectionInfo, host: String, port: u16) -> ConnectionInfo {
  let addr = match seed.addr() {
    ConnectionAddr::TcpTls { insecure, .. } => ConnectionAddr::TcpTls {
      host,
      port,
      insecure: *insecure,
      tls_params: None,
    },
    _ => ConnectionAddr::Tcp(host, port),
  };
  seed.clone().set_addr(addr)
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
