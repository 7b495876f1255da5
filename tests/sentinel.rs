//! The Redis store and the cache against a Sentinel set-up started here (1 master,
//! 1 replica, 3 sentinels): store contract, topology, and the master killed under
//! live traffic (the sentinels promote the replica; the cache follows them).

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrocache::Cache;
use ferrocache::RedisStore;
use ferrocache::{Backend, ConfigBuilder, SentinelConfig, SentinelOptions};
use ferrocache::{EntryType, Scope};
use ferrocache::{NodeRole, RedisTimeouts};
use support::topology::{assert_failover_clean, wait_recovered, Security, SentinelSet, Traffic, MASTER_NAME};

fn cache_for(set: &SentinelSet, prefix: &str) -> Arc<Cache> {
  Cache::new(
    ConfigBuilder {
      sentinel: Some(SentinelOptions {
        nodes: set.urls(),
        master_name: MASTER_NAME.into(),
        ..Default::default()
      }),
      key_prefix: Some(prefix.into()),
      command_timeout_ms: Some(500.0),
      ..Default::default()
    }
    .build()
    .unwrap(),
  )
  .unwrap()
}

/// The store contract, the topology report, then the master SIGKILLed under traffic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_topology_and_a_killed_master_under_traffic() {
  let mut set = SentinelSet::start();
  let old_master = set.master.port;

  let backend = Backend::Sentinel(SentinelConfig {
    nodes: set.urls(),
    master_name: MASTER_NAME.into(),
    username: None,
    password: None,
    db: 0,
    tls: false,
  });
  let timeouts = RedisTimeouts {
    command: Duration::from_millis(500),
    connect: Duration::from_millis(1000),
  };
  let store = RedisStore::for_backend(&backend, timeouts, &Default::default()).unwrap();
  support::contract::run(&store, "t:").await;
  assert_eq!(store.connected_address(), Some(format!("127.0.0.1:{old_master}")));

  let cache = cache_for(&set, "fo:");
  let topology = cache.topology().await.unwrap();
  assert_eq!(topology.kind, "sentinel");
  let roles: Vec<NodeRole> = topology.nodes.iter().map(|n| n.role).collect();
  assert_eq!(
    roles,
    [
      NodeRole::Master,
      NodeRole::Replica,
      NodeRole::Sentinel,
      NodeRole::Sentinel,
      NodeRole::Sentinel
    ],
    "{topology:?}"
  );
  assert!(topology.nodes.iter().all(|n| n.reachable), "{topology:?}");

  for i in 0..200 {
    cache
      .set(Scope::Global, EntryType::Query, &format!("orders_{i}"), "\"old\"", None)
      .await
      .unwrap();
  }
  // the replica has the data before the master goes
  assert_eq!(set.master.cli(&["WAIT", "1", "2000"]), "1");

  let traffic = Traffic::start(&cache, 8);
  tokio::time::sleep(Duration::from_millis(300)).await;
  let killed_at = Instant::now();
  set.master.kill();
  tokio::time::sleep(Duration::from_millis(200)).await;
  cache
    .invalidate(Scope::Global, EntryType::Query, "orders_", false)
    .await
    .unwrap();
  cache
    .set(Scope::Global, EntryType::Session, "written-during", "\"new\"", None)
    .await
    .unwrap();
  assert_eq!(
    cache.get(Scope::Global, EntryType::Query, "orders_1").await.unwrap(),
    None
  );

  if let Err(s) = wait_recovered(&cache, Duration::from_secs(40)).await {
    panic!("never recovered: {s:?}");
  }
  let recovered_after = killed_at.elapsed();
  tokio::time::sleep(Duration::from_millis(300)).await;
  let traffic = traffic.stop().await;
  assert_failover_clean("sentinel", &cache, traffic, recovered_after, 200).await;
  assert_eq!(
    set.master_port(),
    set.replica.port,
    "the sentinels promoted the replica"
  );
  assert_eq!(
    set.replica.cli(&["EXISTS", "fo:q:orders_1"]),
    "0",
    "replayed on the new master"
  );
  assert_eq!(set.replica.cli(&["GET", "fo:s:written-during"]), "\"new\"");
  let topology = cache.topology().await.unwrap();
  let master = topology.nodes.iter().find(|n| n.role == NodeRole::Master).unwrap();
  assert_eq!(
    master.address,
    format!("127.0.0.1:{}", set.replica.port),
    "{topology:?}"
  );
  assert!(master.reachable);
}

/// The master's password is `sentinel.password` (the sentinels need none here); a wrong one is
/// reported and calls are served from memory meanwhile.
#[tokio::test]
async fn a_password_protected_master_and_a_wrong_password() {
  let set = SentinelSet::start_with(Security {
    password: Some("s3cret".into()),
    tls_dir: None,
  });
  let with = |pw: &str| {
    Cache::new(
      ConfigBuilder {
        sentinel: Some(SentinelOptions {
          nodes: set.urls(),
          master_name: MASTER_NAME.into(),
          password: Some(pw.into()),
          ..Default::default()
        }),
        command_timeout_ms: Some(500.0),
        ..Default::default()
      }
      .build()
      .unwrap(),
    )
    .unwrap()
  };
  let cache = with("s3cret");
  cache
    .set(Scope::Global, EntryType::Session, "s", "1", None)
    .await
    .unwrap();
  assert_eq!(set.master.cli(&["GET", "fc:s:s"]), "1");
  let topology = cache.topology().await.unwrap();
  assert!(topology.nodes.iter().all(|n| n.reachable), "{topology:?}");

  let wrong = with("wrong");
  wrong
    .set(Scope::Global, EntryType::Session, "s", "2", None)
    .await
    .unwrap();
  assert_eq!(wrong.mode(), ferrocache::Mode::Memory);
  let error = wrong.last_error().unwrap();
  assert!(
    error.contains("WRONGPASS") || error.to_lowercase().contains("auth"),
    "{error}"
  );
  let topology = wrong.topology().await.unwrap();
  let master = topology.nodes.iter().find(|n| n.role == NodeRole::Master).unwrap();
  assert!(!master.reachable, "the master refuses the wrong password: {topology:?}");
}

/// A graceful switch-over (`SENTINEL FAILOVER`): the old master stays up as a replica, so writes
/// sent to it fail with READONLY; the cache treats that as an outage, reconnects, asks the
/// sentinels again and lands on the new master. No call fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switch_over_is_followed_without_errors() {
  let set = SentinelSet::start();
  let cache = cache_for(&set, "so:");
  cache
    .set(Scope::Global, EntryType::Session, "before", "1", None)
    .await
    .unwrap();
  let traffic = Traffic::start(&cache, 8);
  tokio::time::sleep(Duration::from_millis(200)).await;
  let started = Instant::now();
  assert_eq!(set.sentinels[0].cli(&["SENTINEL", "FAILOVER", MASTER_NAME]), "OK");
  let deadline = Instant::now() + Duration::from_secs(30);
  let new_master = format!("127.0.0.1:{}", set.replica.port);
  while set.master_port() != set.replica.port {
    assert!(Instant::now() < deadline, "the sentinels never switched");
    tokio::time::sleep(Duration::from_millis(20)).await;
  }
  // then a write reaches the new master (through the cache, not around it)
  loop {
    cache
      .set(Scope::Global, EntryType::Session, "after", "2", None)
      .await
      .unwrap();
    if set.replica.cli(&["GET", "so:s:after"]) == "2" && cache.failover_status().unwrap().journal_depth == 0 {
      break;
    }
    assert!(
      Instant::now() < deadline,
      "never wrote to the new master: {:?}",
      cache.failover_status()
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
  }
  let switched_after = started.elapsed();
  let (calls, errors) = traffic.stop().await;
  eprintln!(
    "sentinel switch-over: {calls} calls, {errors} failed, writing to {new_master} {switched_after:?} after \
     SENTINEL FAILOVER; {:?}",
    cache.failover_status()
  );
  assert_eq!(errors, 0);
  assert_eq!(set.replica.cli(&["ROLE"]).lines().next(), Some("master"));
  assert_eq!(
    cache
      .get(Scope::Global, EntryType::Session, "before")
      .await
      .unwrap()
      .as_deref(),
    Some("1")
  );
}

/// TLS only (sentinels, master, replica): `rediss://` sentinel URLs, `sentinel.tls` for the
/// master, `tls.caFile` for both.
#[tokio::test]
async fn a_tls_sentinel_set_up() {
  let dir = support::certs::cert_dir("sentinel-tls");
  let set = SentinelSet::start_with(Security {
    password: None,
    tls_dir: Some(dir.clone()),
  });
  let cache = Cache::new(
    ConfigBuilder {
      sentinel: Some(SentinelOptions {
        nodes: set.urls(),
        master_name: MASTER_NAME.into(),
        tls: Some(true),
        ..Default::default()
      }),
      command_timeout_ms: Some(1000.0),
      connect_timeout_ms: Some(2000.0),
      tls: ferrocache::TlsFiles {
        ca_file: Some(dir.join("ca.crt").display().to_string()),
        ..Default::default()
      },
      ..Default::default()
    }
    .build()
    .unwrap(),
  )
  .unwrap();
  cache
    .set(Scope::Global, EntryType::Session, "s", "1", None)
    .await
    .unwrap();
  assert_eq!(
    cache.failover_status().unwrap().fallback_activations,
    0,
    "{:?}",
    cache.failover_status()
  );
  assert_eq!(set.master.cli(&["GET", "fc:s:s"]), "1");
  let topology = cache.topology().await.unwrap();
  assert_eq!(topology.nodes.len(), 5, "{topology:?}");
  assert!(topology.nodes.iter().all(|n| n.reachable), "{topology:?}");
  drop(set);
  let _ = std::fs::remove_dir_all(&dir);
}
