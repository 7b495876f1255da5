//! Test support: a Redis Cluster (masters + replicas) and a Sentinel set-up, each a group of
//! `redis-server` processes on free loopback ports, stopped by pid when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrocache::{Cache, Mode, Request};
use ferrocache::{EntryType, Scope};

use super::{base_args, free_port, scratch_dir};

/// One redis-server process of a topology.
pub struct Node {
  pub port: u16,
  child: Option<Child>,
  /// What [`Node::cli`] passes to redis-cli before the command (password, TLS).
  cli_args: Vec<String>,
}

impl Node {
  fn spawn(port: u16, args: &[String]) -> Node {
    Self::spawn_auth(port, args, &Security::default())
  }

  /// Spawns with `--requirepass` / `--masterauth` and TLS options as `security` says.
  fn spawn_auth(port: u16, args: &[String], security: &Security) -> Node {
    let mut args = args.to_vec();
    args.extend(security.server_args());
    let child = Command::new("redis-server")
      .args(args)
      .stdout(Stdio::null())
      .stderr(Stdio::null())
      .spawn()
      .expect("redis-server must be installed (see .ci/run)");
    Node {
      port,
      child: Some(child),
      cli_args: security.cli_args(),
    }
  }

  /// `redis-cli -p <port> args...`, trimmed stdout.
  pub fn cli(&self, args: &[&str]) -> String {
    let mut all: Vec<&str> = self.cli_args.iter().map(String::as_str).collect();
    all.extend_from_slice(args);
    cli(self.port, &all)
  }

  /// SIGKILL by pid, then wait for it.
  pub fn kill(&mut self) {
    if let Some(mut c) = self.child.take() {
      let _ = c.kill();
      let _ = c.wait();
    }
  }

  /// True while the process runs.
  pub fn alive(&self) -> bool {
    self.child.is_some()
  }
}

impl Drop for Node {
  fn drop(&mut self) {
    self.kill();
  }
}

/// Password and TLS of a topology's data nodes.
#[derive(Default, Clone)]
pub struct Security {
  /// `requirepass` (and `masterauth`).
  pub password: Option<String>,
  /// Directory with `ca.crt`, `server.crt`, `server.key` (see `support::certs`): TLS only
  /// (`--port 0`, `--tls-port <port>`, TLS replication and cluster bus).
  pub tls_dir: Option<PathBuf>,
}

impl Security {
  /// With TLS: `--port <port>` becomes `--port 0 --tls-port <port>`.
  fn tls_only(&self, args: &mut Vec<String>, port: u16) {
    if self.tls_dir.is_some() {
      if let Some(at) = args.iter().position(|a| a == "--port") {
        args.splice(
          at..at + 2,
          ["--port".into(), "0".into(), "--tls-port".into(), port.to_string()],
        );
      }
    }
  }

  fn server_args(&self) -> Vec<String> {
    let mut args = Vec::new();
    if let Some(pw) = &self.password {
      args.extend(["--requirepass", pw, "--masterauth", pw].map(String::from));
    }
    if let Some(dir) = &self.tls_dir {
      let file = |f: &str| dir.join(f).display().to_string();
      args.extend(
        [
          "--tls-replication",
          "yes",
          "--tls-cluster",
          "yes",
          "--tls-auth-clients",
          "no",
          "--tls-cert-file",
          &file("server.crt"),
          "--tls-key-file",
          &file("server.key"),
          "--tls-ca-cert-file",
          &file("ca.crt"),
        ]
        .map(String::from),
      );
    }
    args
  }

  fn cli_args(&self) -> Vec<String> {
    let mut args = Vec::new();
    if let Some(pw) = &self.password {
      args.extend(["-a", pw, "--no-auth-warning"].map(String::from));
    }
    if let Some(dir) = &self.tls_dir {
      args.extend([
        "--tls".to_string(),
        "--cacert".to_string(),
        dir.join("ca.crt").display().to_string(),
      ]);
    }
    args
  }
}

/// `redis-cli -p <port> args...`, trimmed stdout.
pub fn cli(port: u16, args: &[&str]) -> String {
  let out = Command::new("redis-cli")
    .args(["-p", &port.to_string()])
    .args(args)
    .output()
    .unwrap();
  String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
  let deadline = Instant::now() + timeout;
  while Instant::now() < deadline {
    if ok() {
      return;
    }
    std::thread::sleep(Duration::from_millis(50));
  }
  panic!("timed out waiting for {what}");
}

/// One multi-server set-up at a time per test binary: six Cluster nodes (or five Sentinel
/// processes) per test in parallel on a 2-core machine starve the nodes' cluster bus and
/// sentinel pings, and a node that misses its timeout fails over on its own.
static EXCLUSIVE: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn exclusive() -> std::sync::MutexGuard<'static, ()> {
  EXCLUSIVE.lock().unwrap_or_else(|p| p.into_inner())
}

/// True when node `n` lists each of `ports` as a master serving slots or as a replica, with no
/// fail or handshake flag: `redis-cli --cluster create` returns once the slots agree, before
/// every node has heard which nodes became replicas (masters without slots until then).
fn sees_settled(n: &Node, ports: &[u16]) -> bool {
  let view = n.cli(&["CLUSTER", "NODES"]);
  let lines: Vec<Vec<&str>> = view.lines().map(|l| l.split_whitespace().collect()).collect();
  ports.iter().all(|&p| {
    lines.iter().any(|f| {
      let port = f.get(1).and_then(|a| a.split(['@', ':']).nth(1)?.parse::<u16>().ok());
      f.len() >= 8
        && port == Some(p)
        && !["fail", "handshake", "noaddr"].iter().any(|bad| f[2].contains(bad))
        && (f[2].contains("slave") || (f[2].contains("master") && f.len() > 8))
    })
  })
}

/// A Redis Cluster of 3 masters with one replica each, `cluster-node-timeout` 1 s; while it
/// lives no other Cluster or Sentinel set-up of this test binary runs.
pub struct Cluster {
  pub nodes: Vec<Node>,
  dir: PathBuf,
  _exclusive: std::sync::MutexGuard<'static, ()>,
}

impl Cluster {
  /// Starts 3 masters + 3 replicas and waits until every node reports `cluster_state:ok`.
  pub fn start() -> Cluster {
    Self::start_with(Security::default())
  }

  /// [`Cluster::start`], every node requiring `security` (password, TLS; also between nodes).
  pub fn start_with(security: Security) -> Cluster {
    let guard = exclusive();
    let dir = scratch_dir("cluster");
    let nodes: Vec<Node> = (0..6)
      .map(|_| {
        let port = cluster_port();
        let mut args = base_args(port);
        let conf = format!("nodes-{port}.conf");
        let log = format!("node-{port}.log");
        args.extend(
          [
            "--dir",
            dir.to_str().unwrap(),
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            &conf,
            "--cluster-node-timeout",
            "1000",
            "--logfile",
            &log,
          ]
          .map(String::from),
        );
        if security.tls_dir.is_some() {
          // TLS only: the port given is the TLS port (the bus port is +10000 of it)
          let at = args.iter().position(|a| a == "--port").unwrap();
          args.splice(
            at..at + 2,
            ["--port".into(), "0".into(), "--tls-port".into(), port.to_string()],
          );
        }
        Node::spawn_auth(port, &args, &security)
      })
      .collect();
    for n in &nodes {
      wait_for("a cluster node to answer", Duration::from_secs(10), || {
        n.cli(&["PING"]) == "PONG"
      });
    }
    let addrs: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
    let out = Command::new("redis-cli")
      .args(security.cli_args())
      .arg("--cluster")
      .arg("create")
      .args(&addrs)
      .args(["--cluster-replicas", "1", "--cluster-yes"])
      .output()
      .unwrap();
    assert!(
      out.status.success(),
      "cluster create: {}",
      String::from_utf8_lossy(&out.stdout)
    );
    let cluster = Cluster {
      nodes,
      dir,
      _exclusive: guard,
    };
    cluster.wait_ok();
    cluster
  }

  /// Waits until every live node reports `cluster_state:ok`, agrees on 3 masters with slots and
  /// knows the role of every other live node.
  pub fn wait_ok(&self) {
    wait_for("cluster_state:ok on every node", Duration::from_secs(30), || {
      let live: Vec<u16> = self.nodes.iter().filter(|n| n.alive()).map(|n| n.port).collect();
      self.nodes.iter().filter(|n| n.alive()).all(|n| {
        n.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok")
          && self.masters_seen_by(n).len() == 3
          && sees_settled(n, &live)
      })
    });
    // a replica can only be promoted once it has synced with its master
    wait_for("replicas in sync", Duration::from_secs(30), || {
      self.nodes.iter().filter(|n| n.alive()).all(|n| {
        let info = n.cli(&["INFO", "replication"]);
        info.contains("role:master") || info.contains("master_link_status:up")
      })
    });
  }

  /// Ports of the masters serving slots, as node `n` sees them.
  pub fn masters_seen_by(&self, n: &Node) -> Vec<u16> {
    n.cli(&["CLUSTER", "NODES"])
      .lines()
      .filter(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 8 && f[2].contains("master") && !f[2].contains("fail")
      })
      .filter_map(|l| l.split_whitespace().nth(1)?.split(['@', ':']).nth(1)?.parse().ok())
      .collect()
  }

  /// The last lines of every node's log (diagnostics).
  pub fn logs(&self) -> String {
    let mut out = String::new();
    for n in &self.nodes {
      let text = std::fs::read_to_string(self.dir.join(format!("node-{}.log", n.port))).unwrap_or_default();
      let lines: Vec<&str> = text.lines().collect();
      out.push_str(&format!(
        "--- {}\n{}\n",
        n.port,
        lines[lines.len().saturating_sub(12)..].join("\n")
      ));
    }
    out
  }

  /// Seed URLs of every node.
  pub fn urls(&self) -> Vec<String> {
    self
      .nodes
      .iter()
      .map(|n| format!("redis://127.0.0.1:{}", n.port))
      .collect()
  }

  /// `key`'s slot, as the cluster computes it (`CLUSTER KEYSLOT`).
  pub fn slot_of(&self, key: &str) -> u16 {
    let any = self.nodes.iter().find(|n| n.alive()).unwrap();
    any.cli(&["CLUSTER", "KEYSLOT", key]).parse().unwrap()
  }

  /// The node serving `key`'s slot.
  pub fn master_of(&self, key: &str) -> usize {
    let slot = self.slot_of(key);
    self
      .nodes
      .iter()
      .position(|n| n.alive() && owns(n, slot))
      .expect("an owner of the slot")
  }

  /// How many keys each live master holds (`DBSIZE`), by port.
  pub fn keys_per_master(&self) -> Vec<(u16, u64)> {
    self
      .nodes
      .iter()
      .filter(|n| n.alive() && n.cli(&["ROLE"]).starts_with("master"))
      .map(|n| (n.port, n.cli(&["DBSIZE"]).parse().unwrap_or(0)))
      .collect()
  }

  /// Every key on every live master (via SCAN on each node), sorted.
  pub fn all_keys(&self) -> Vec<String> {
    let mut keys = Vec::new();
    for n in self.nodes.iter().filter(|n| n.alive()) {
      if !n.cli(&["ROLE"]).starts_with("master") {
        continue;
      }
      let out = n.cli(&["--scan"]);
      keys.extend(out.lines().filter(|l| !l.is_empty()).map(String::from));
    }
    keys.sort();
    keys
  }
}

/// A free port whose cluster bus port (+10000) is free and valid too.
fn cluster_port() -> u16 {
  loop {
    let port = free_port();
    if port < 55_000 && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
      return port;
    }
  }
}

fn owns(n: &Node, slot: u16) -> bool {
  n.cli(&["CLUSTER", "NODES"])
    .lines()
    .find(|l| l.contains("myself"))
    .map(|l| {
      l.split_whitespace().skip(8).any(|r| match r.split_once('-') {
        Some((a, b)) => a.parse::<u16>().is_ok_and(|a| a <= slot) && b.parse::<u16>().is_ok_and(|b| slot <= b),
        None => r.parse::<u16>() == Ok(slot),
      })
    })
    .unwrap_or(false)
}

impl Drop for Cluster {
  fn drop(&mut self) {
    for n in &mut self.nodes {
      n.kill();
    }
    let _ = std::fs::remove_dir_all(&self.dir);
  }
}

/// 1 master, 1 replica, 3 sentinels watching `mymaster` (down after 1 s, quorum 2).
pub struct SentinelSet {
  pub master: Node,
  pub replica: Node,
  pub sentinels: Vec<Node>,
  dir: PathBuf,
  tls: bool,
  _exclusive: std::sync::MutexGuard<'static, ()>,
}

/// The master name the sentinels monitor.
pub const MASTER_NAME: &str = "mymaster";

impl SentinelSet {
  /// Starts everything and waits until each sentinel knows the replica and the other sentinels.
  pub fn start() -> SentinelSet {
    Self::start_with(Security::default())
  }

  /// [`SentinelSet::start`] with master and replica requiring `security.password` (the
  /// sentinels themselves need none; they get it with `sentinel auth-pass`) and, with
  /// `security.tls_dir`, TLS only everywhere (sentinels included).
  pub fn start_with(security: Security) -> SentinelSet {
    let guard = exclusive();
    let password = security.password.as_deref();
    let dir = scratch_dir("sentinel");
    let data = |port: u16, extra: &[String]| {
      let mut args = base_args(port);
      // a replica's full sync writes an RDB file into its directory
      args.extend(["--dir".to_string(), dir.display().to_string()]);
      args.extend_from_slice(extra);
      security.tls_only(&mut args, port);
      Node::spawn_auth(port, &args, &security)
    };
    let mport = free_port();
    let master = data(mport, &[]);
    wait_for("master", Duration::from_secs(30), || master.cli(&["PING"]) == "PONG");
    let rport = free_port();
    let replica = data(rport, &["--replicaof".into(), "127.0.0.1".into(), mport.to_string()]);
    wait_for("replica in sync", Duration::from_secs(30), || {
      replica.cli(&["INFO", "replication"]).contains("master_link_status:up")
    });
    let sentinels: Vec<Node> = (0..3)
      .map(|i| {
        let port = free_port();
        let conf = dir.join(format!("sentinel-{i}.conf"));
        std::fs::write(
          &conf,
          format!(
            "{}\nbind 127.0.0.1\ndir {}\nsentinel monitor {MASTER_NAME} 127.0.0.1 {mport} 2\n\
             sentinel down-after-milliseconds {MASTER_NAME} 1000\nsentinel failover-timeout {MASTER_NAME} 4000\n\
             sentinel parallel-syncs {MASTER_NAME} 1\n{}",
            match security.tls_dir {
              Some(_) => format!("port 0\ntls-port {port}"),
              None => format!("port {port}"),
            },
            dir.display(),
            password
              .map(|pw| format!("sentinel auth-pass {MASTER_NAME} {pw}\n"))
              .unwrap_or_default()
          ),
        )
        .unwrap();
        let tls = Security {
          password: None,
          tls_dir: security.tls_dir.clone(),
        };
        Node::spawn_auth(
          port,
          &[conf.to_str().unwrap().to_string(), "--sentinel".to_string()],
          &tls,
        )
      })
      .collect();
    for s in &sentinels {
      wait_for("sentinel ready", Duration::from_secs(30), || {
        let replicas = s.cli(&["SENTINEL", "REPLICAS", MASTER_NAME]);
        let others = s.cli(&["SENTINEL", "SENTINELS", MASTER_NAME]);
        replicas.contains(&rport.to_string()) && others.matches("127.0.0.1").count() >= 2
      });
    }
    SentinelSet {
      master,
      replica,
      sentinels,
      dir,
      tls: security.tls_dir.is_some(),
      _exclusive: guard,
    }
  }

  /// Sentinel URLs (`rediss://` with TLS).
  pub fn urls(&self) -> Vec<String> {
    let scheme = if self.tls { "rediss" } else { "redis" };
    self
      .sentinels
      .iter()
      .map(|s| format!("{scheme}://127.0.0.1:{}", s.port))
      .collect()
  }

  /// The master port the sentinels name now.
  pub fn master_port(&self) -> u16 {
    let s = self.sentinels.iter().find(|s| s.alive()).unwrap();
    let out = s.cli(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME]);
    out.lines().nth(1).and_then(|p| p.trim().parse().ok()).unwrap_or(0)
  }
}

impl Drop for SentinelSet {
  fn drop(&mut self) {
    for s in &mut self.sentinels {
      s.kill();
    }
    self.master.kill();
    self.replica.kill();
    let _ = std::fs::remove_dir_all(&self.dir);
  }
}

/// Workers calling set + get of sessions in a loop on one cache, counting calls and failures.
pub struct Traffic {
  calls: Arc<AtomicU64>,
  errors: Arc<AtomicU64>,
  stop: Arc<AtomicBool>,
  workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Traffic {
  /// Starts `n` workers (needs a multi-thread runtime: calls served from memory never wait).
  pub fn start(cache: &Arc<Cache>, n: usize) -> Traffic {
    let calls = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let workers = (0..n)
      .map(|w| {
        let (cache, errors, calls, stop) = (cache.clone(), errors.clone(), calls.clone(), stop.clone());
        tokio::spawn(async move {
          let mut i = 0u64;
          while !stop.load(Ordering::Relaxed) {
            let key = format!("live_{w}_{}", i % 50);
            let mut failed = Vec::new();
            if i.is_multiple_of(2) {
              let set = cache.set(Scope::Global, EntryType::Session, &key, "1", None).await;
              let get = cache.get(Scope::Global, EntryType::Session, &key).await;
              failed.extend([set.err(), get.err()].into_iter().flatten());
              calls.fetch_add(2, Ordering::Relaxed);
            } else {
              // batches, as a tick of JS calls makes them, over keys of every master: a
              // recovery must end under this write rate too (the journal once never drained)
              let keys: Vec<String> = (0..8).map(|k| format!("{key}_{k}")).collect();
              let value = i.to_string();
              for batch in [
                keys
                  .iter()
                  .map(|k| Request::set(Scope::Global, EntryType::Session, k, &value, None))
                  .collect::<Vec<_>>(),
                keys
                  .iter()
                  .map(|k| Request::get(Scope::Global, EntryType::Session, k))
                  .collect(),
              ] {
                failed.extend(
                  super::run_batch(&cache, batch)
                    .await
                    .into_iter()
                    .filter_map(|r| r.err()),
                );
              }
              calls.fetch_add(2 * keys.len() as u64, Ordering::Relaxed);
            }
            for e in failed {
              if errors.fetch_add(1, Ordering::Relaxed) < 5 {
                eprintln!("call failed: {e:?}");
              }
            }
            i += 1;
            tokio::task::yield_now().await;
          }
        })
      })
      .collect();
    Traffic {
      calls,
      errors,
      stop,
      workers,
    }
  }

  /// Stops the workers; (calls, failed calls).
  pub async fn stop(self) -> (u64, u64) {
    self.stop.store(true, Ordering::Relaxed);
    for w in self.workers {
      w.await.unwrap();
    }
    (self.calls.load(Ordering::Relaxed), self.errors.load(Ordering::Relaxed))
  }
}

/// Waits until `cache` fell back at least once and is back on Redis with an empty journal;
/// the status if it does not happen within `timeout`.
pub async fn wait_recovered(cache: &Cache, timeout: Duration) -> Result<(), String> {
  let deadline = Instant::now() + timeout;
  loop {
    let s = cache.failover_status().expect("a Redis cache");
    if cache.mode() == Mode::Redis && s.journal_depth == 0 && s.fallback_activations > 0 {
      return Ok(());
    }
    if Instant::now() > deadline {
      return Err(format!("{s:?}"));
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
  }
}

/// After a failover: reports the numbers, asserts no call failed and none of the `orders`
/// query keys invalidated during the failover is served again.
pub async fn assert_failover_clean(
  label: &str,
  cache: &Cache,
  traffic: (u64, u64),
  recovered: Duration,
  orders: usize,
) {
  let (calls, errors) = traffic;
  eprintln!(
    "{label} failover: {calls} calls, {errors} failed, recovered {recovered:?} after the kill, status {:?}",
    cache.failover_status()
  );
  assert_eq!(errors, 0, "no call failed");
  for i in 0..orders {
    let key = format!("orders_{i}");
    let got = cache.get(Scope::Global, EntryType::Query, &key).await.unwrap();
    assert_eq!(got, None, "no stale {key} after recovery");
  }
}
