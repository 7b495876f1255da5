//! The cache core against a real redis-server started here: layout, TTL, invalidation, simple fallback.

mod support;

use std::sync::Arc;
use std::time::Duration;

use ferrocache::ConfigBuilder;
use ferrocache::{Cache, Mode};
use ferrocache::{EntryType, Scope};
use support::RedisServer;

fn cache_for(url: &str) -> Arc<Cache> {
  Cache::new(
    ConfigBuilder {
      url: Some(url.into()),
      ..Default::default()
    }
    .build()
    .unwrap(),
  )
  .unwrap()
}

#[tokio::test]
async fn values_are_plain_json_with_a_millisecond_ttl() {
  let server = RedisServer::start();
  let cache = cache_for(&server.url());
  cache
    .set(Scope::Global, EntryType::Session, "abc", "{\"user\":\"é\"}", None)
    .await
    .unwrap();
  assert_eq!(server.cli(&["GET", "fc:s:abc"]), "{\"user\":\"é\"}");
  let pttl: u64 = server.cli(&["PTTL", "fc:s:abc"]).parse().unwrap();
  assert!(pttl > 3_590_000 && pttl <= 3_600_000, "pttl {pttl}");
  cache
    .set(Scope::Global, EntryType::Query, "q", "1", Some(1.5))
    .await
    .unwrap();
  let pttl: u64 = server.cli(&["PTTL", "fc:q:q"]).parse().unwrap();
  assert!(pttl > 1000 && pttl <= 1500, "pttl {pttl}");
  assert_eq!(cache.mode(), Mode::Redis);
}

#[tokio::test]
async fn invalidation_is_exact_across_many_pages() {
  let server = RedisServer::start();
  let cache = cache_for(&server.url());
  for i in 0..2500 {
    cache
      .set(Scope::Global, EntryType::Query, &format!("orders_{i}"), "1", None)
      .await
      .unwrap();
    if i % 5 == 0 {
      cache
        .set(Scope::Global, EntryType::Query, &format!("ordersX{i}"), "1", None)
        .await
        .unwrap();
    }
  }
  assert_eq!(
    cache
      .invalidate(Scope::Global, EntryType::Query, "orders_", false)
      .await
      .unwrap(),
    2500
  );
  assert_eq!(
    server.cli(&["DBSIZE"]),
    "502",
    "500 ordersX keys and the scope's two index sets"
  );
}

#[tokio::test]
async fn invalidation_counts_only_live_keys_while_others_expire_and_arrive() {
  let server = RedisServer::start();
  let cache = cache_for(&server.url());
  for i in 0..300 {
    let ttl = if i % 2 == 0 { Some(0.05) } else { None };
    cache
      .set(Scope::Global, EntryType::Query, &format!("p:{i}"), "1", ttl)
      .await
      .unwrap();
  }
  tokio::time::sleep(Duration::from_millis(120)).await;
  let writer = {
    let cache = cache.clone();
    tokio::spawn(async move {
      for i in 0..200 {
        cache
          .set(Scope::Global, EntryType::Query, &format!("p:new{i}"), "1", None)
          .await
          .unwrap();
      }
    })
  };
  let removed = cache
    .invalidate(Scope::Global, EntryType::Query, "p:", false)
    .await
    .unwrap();
  writer.await.unwrap();
  // the 150 live keys from before are always removed; concurrent writes may or may not be
  assert!((150..=350).contains(&removed), "removed {removed}");
  // DBSIZE minus the scope's two index sets (still listing the keys left)
  let left: u64 = server.cli(&["DBSIZE"]).parse::<u64>().unwrap() - 2;
  assert_eq!(
    removed + left,
    350,
    "every live key was either counted as removed or is still there"
  );
  for i in (1..300).step_by(2) {
    assert_eq!(
      cache
        .get(Scope::Global, EntryType::Query, &format!("p:{i}"))
        .await
        .unwrap(),
      None
    );
  }
}

#[tokio::test]
async fn serves_from_memory_while_redis_is_down_and_replays_on_recovery() {
  let server = RedisServer::start();
  let cache = cache_for(&server.url());
  cache
    .set(Scope::Global, EntryType::Session, "before", "1", None)
    .await
    .unwrap();
  cache
    .set(Scope::Global, EntryType::Session, "deleted", "1", None)
    .await
    .unwrap();
  cache
    .set(Scope::Global, EntryType::Query, "orders_1", "1", None)
    .await
    .unwrap();
  let port = server.kill();
  for i in 0..3 {
    cache
      .set(Scope::Global, EntryType::Session, &format!("during{i}"), "2", None)
      .await
      .unwrap();
  }
  let status = cache.failover_status().unwrap();
  assert_eq!(
    cache.mode(),
    Mode::Memory,
    "three refused calls opened the breaker: {status:?}"
  );
  let during = cache.get(Scope::Global, EntryType::Session, "during0").await.unwrap();
  assert_eq!(during.as_deref(), Some("2"));
  assert!(
    !cache
      .delete(Scope::Global, EntryType::Session, "deleted")
      .await
      .unwrap(),
    "not in memory"
  );
  assert_eq!(
    cache
      .invalidate(Scope::Global, EntryType::Query, "orders_", false)
      .await
      .unwrap(),
    0
  );
  assert_eq!(cache.failover_status().unwrap().journal_depth, 5);
  let server = RedisServer::start_on(port);
  // the restarted server is empty: put back what "survived" in Redis (a query result with
  // its listing in the query index, as a persisted server would have kept them)
  server.cli(&["SET", "fc:s:deleted", "1"]);
  server.cli(&["SET", "fc:q:orders_1", "1"]);
  server.cli(&["ZADD", "fc:i:q", "0", "orders_1"]);
  server.cli(&["ZADD", "fc:x:q", "9999999999999", "orders_1"]);
  let deadline = std::time::Instant::now() + Duration::from_secs(5);
  while cache.failover_status().unwrap().journal_depth > 0 || cache.mode() != Mode::Redis {
    let status = cache.failover_status().unwrap();
    assert!(
      std::time::Instant::now() < deadline,
      "never returned to Redis: {status:?}"
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
  }
  assert_eq!(
    server.cli(&["MGET", "fc:s:during0", "fc:s:during2"]),
    "2\n2",
    "outage writes replayed"
  );
  assert_eq!(
    server.cli(&["EXISTS", "fc:s:deleted", "fc:q:orders_1"]),
    "0",
    "outage deletes replayed"
  );
  assert_eq!(
    cache.get(Scope::Global, EntryType::Session, "deleted").await.unwrap(),
    None
  );
  let pttl: u64 = server.cli(&["PTTL", "fc:s:during1"]).parse().unwrap();
  assert!(
    pttl > 3_500_000 && pttl <= 3_600_000,
    "replayed with its remaining TTL: {pttl}"
  );
  cache
    .set(Scope::Global, EntryType::Session, "after", "3", None)
    .await
    .unwrap();
  assert_eq!(server.cli(&["GET", "fc:s:after"]), "3");
  assert_eq!(cache.failover_status().unwrap().fallback_activations, 1);
}

#[tokio::test]
async fn a_hung_server_costs_at_most_the_call_budget() {
  let server = RedisServer::start();
  let config = ConfigBuilder {
    url: Some(server.url()),
    command_timeout_ms: Some(200.0),
    ..Default::default()
  };
  let cache = Cache::new(config.build().unwrap()).unwrap();
  cache
    .set(Scope::Global, EntryType::Query, "k", "1", None)
    .await
    .unwrap();
  let pid = server_pid(&server);
  signal(pid, "-STOP");
  for i in 0..5 {
    let started = std::time::Instant::now();
    cache
      .set(Scope::Global, EntryType::Query, &format!("k{i}"), &i.to_string(), None)
      .await
      .unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_millis(400), "call {i} took {took:?}");
  }
  assert_eq!(cache.mode(), Mode::Memory, "repeated timeouts opened the breaker");
  let started = std::time::Instant::now();
  assert_eq!(
    cache
      .get(Scope::Global, EntryType::Query, "k4")
      .await
      .unwrap()
      .as_deref(),
    Some("4")
  );
  let before = cache.get(Scope::Global, EntryType::Query, "k").await.unwrap();
  assert_eq!(
    before.as_deref(),
    Some("1"),
    "written before the outage: the near cache's fail-safe"
  );
  assert!(cache.near_stats().unwrap().fail_safe_hits >= 1);
  assert!(
    started.elapsed() < Duration::from_millis(50),
    "an open breaker does not wait for Redis"
  );
  signal(pid, "-CONT");
  let deadline = std::time::Instant::now() + Duration::from_secs(5);
  while cache.mode() != Mode::Redis || cache.failover_status().unwrap().journal_depth > 0 {
    assert!(
      std::time::Instant::now() < deadline,
      "did not recover: {:?}",
      cache.failover_status()
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
  }
  assert_eq!(server.cli(&["GET", "fc:q:k4"]), "4", "the outage write was replayed");
  assert_eq!(
    server.cli(&["GET", "fc:q:k"]),
    "1",
    "what was in Redis before is still there"
  );
}
fn server_pid(server: &RedisServer) -> u32 {
  server
    .cli(&["INFO", "server"])
    .lines()
    .find_map(|l| l.strip_prefix("process_id:"))
    .unwrap()
    .trim()
    .parse()
    .unwrap()
}

fn signal(pid: u32, sig: &str) {
  let status = std::process::Command::new("kill")
    .args([sig, &pid.to_string()])
    .status()
    .unwrap();
  assert!(status.success());
}

#[tokio::test]
async fn foreign_values_are_reply_errors_not_outages() {
  let server = RedisServer::start();
  let cache = cache_for(&server.url());
  server.cli(&["RPUSH", "fc:q:list", "x"]);
  let err = cache.get(Scope::Global, EntryType::Query, "list").await.unwrap_err();
  assert_eq!(err.code(), "ERR_REDIS", "{err}");
  let status = std::process::Command::new("sh")
    .arg("-c")
    .arg(format!(
      "printf '\\377\\376' | redis-cli -p {} -x SET fc:q:bin",
      server.port
    ))
    .status()
    .unwrap();
  assert!(status.success());
  let err = cache.get(Scope::Global, EntryType::Query, "bin").await.unwrap_err();
  assert_eq!(err.code(), "ERR_REDIS", "{err}");
  assert_eq!(cache.mode(), Mode::Redis, "a foreign value is not an outage");
}

#[tokio::test]
async fn replayed_writes_keep_the_entry_that_expires_later() {
  use ferrocache::RedisStore;
  use ferrocache::RedisTimeouts;
  let server = RedisServer::start();
  let timeouts = RedisTimeouts {
    command: Duration::from_millis(500),
    connect: Duration::from_millis(1000),
  };
  let store = RedisStore::new(&server.url(), timeouts).unwrap();
  server.cli(&["SET", "k", "theirs", "PX", "100000"]);
  assert!(
    !store.set_if_later("k", "ours", 50_000).await.unwrap(),
    "theirs expires later: kept"
  );
  assert_eq!(server.cli(&["GET", "k"]), "theirs");
  assert!(
    store.set_if_later("k", "ours", 200_000).await.unwrap(),
    "ours expires later: written"
  );
  assert_eq!(server.cli(&["GET", "k"]), "ours");
  let pttl: u64 = server.cli(&["PTTL", "k"]).parse().unwrap();
  assert!(pttl > 199_000 && pttl <= 200_000, "{pttl}");
  server.cli(&["SET", "forever", "theirs"]);
  assert!(
    store.set_if_later("forever", "ours", 1000).await.unwrap(),
    "a key without TTL is overwritten"
  );
  assert!(store.set_if_later("missing", "ours", 1000).await.unwrap());
}

#[tokio::test]
async fn simulated_outage_goes_through_the_real_failover_path() {
  use ferrocache::Simulation;
  let server = RedisServer::start();
  let cache = cache_for(&server.url());
  cache
    .set(Scope::Global, EntryType::Session, "gone", "1", None)
    .await
    .unwrap();
  cache.simulate_outage(Simulation::Refuse);
  assert_eq!(cache.mode(), Mode::Memory);
  cache
    .set(Scope::Global, EntryType::Session, "new", "2", None)
    .await
    .unwrap();
  cache.delete(Scope::Global, EntryType::Session, "gone").await.unwrap();
  assert_eq!(
    server.cli(&["EXISTS", "fc:s:new"]),
    "0",
    "nothing reached Redis during the outage"
  );
  assert_eq!(cache.failover_status().unwrap().journal_depth, 2);
  cache.simulate_outage(Simulation::None);
  let deadline = std::time::Instant::now() + Duration::from_secs(5);
  while cache.mode() != Mode::Redis || cache.failover_status().unwrap().journal_depth > 0 {
    assert!(
      std::time::Instant::now() < deadline,
      "{:?}",
      cache.failover_status().unwrap()
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
  }
  assert_eq!(server.cli(&["GET", "fc:s:new"]), "2");
  assert_eq!(server.cli(&["EXISTS", "fc:s:gone"]), "0");
}

#[tokio::test]
async fn wrong_password_is_a_misconfiguration_served_from_memory() {
  let server = RedisServer::start_with(support::free_port(), &["--requirepass", "s3cret"]);
  let port = server.port;
  let cache = cache_for(&format!("redis://:wrongpw@127.0.0.1:{port}"));
  cache
    .set(Scope::Global, EntryType::Session, "s", "1", None)
    .await
    .unwrap();
  assert_eq!(cache.mode(), Mode::Memory, "misconfiguration opens the breaker at once");
  let err = cache.last_error().unwrap();
  assert!(!err.contains("wrongpw"), "{err}");
  assert_eq!(
    cache
      .get(Scope::Global, EntryType::Session, "s")
      .await
      .unwrap()
      .as_deref(),
    Some("1")
  );
  let good = cache_for(&format!("redis://:s3cret@127.0.0.1:{port}"));
  good
    .set(Scope::Global, EntryType::Session, "s", "2", None)
    .await
    .unwrap();
  assert_eq!(good.mode(), Mode::Redis);
}

#[tokio::test]
async fn an_unknown_host_is_a_misconfiguration_served_from_memory() {
  let cache = cache_for("redis://no-such-host.invalid:6379");
  cache
    .set(Scope::Global, EntryType::Session, "s", "1", None)
    .await
    .unwrap();
  let status = cache.failover_status().unwrap();
  assert_eq!(cache.mode(), Mode::Memory, "{status:?}");
  assert!(
    status.last_error.as_deref().unwrap_or_default().contains("lookup"),
    "{status:?}"
  );
  assert_eq!(
    status.fallback_activations, 1,
    "misconfiguration opens the breaker at once"
  );
  assert_eq!(
    cache
      .get(Scope::Global, EntryType::Session, "s")
      .await
      .unwrap()
      .as_deref(),
    Some("1")
  );
}

#[tokio::test]
async fn a_replay_redis_keeps_refusing_is_reported_once_and_backed_off() {
  use ferrocache::Simulation;
  use ferrocache::{Event, EventSink};
  use std::sync::Mutex;

  #[derive(Default)]
  struct Collect(Mutex<Vec<Event>>);
  impl EventSink for Collect {
    fn emit(&self, event: Event) {
      self.0.lock().unwrap().push(event);
    }
  }

  // PING/GET/SET/UNLINK allowed, EVAL (used by replay) refused
  let acl = ["--user", "default", "on", "nopass", "~*", "+@all", "-eval"];
  let server = RedisServer::start_with(support::free_port(), &acl);
  let cache = cache_for(&server.url());
  let events = Arc::new(Collect::default());
  cache.set_event_sink(events.clone());
  cache.simulate_outage(Simulation::Refuse);
  cache
    .set(Scope::Global, EntryType::Session, "s", "1", None)
    .await
    .unwrap();
  cache.simulate_outage(Simulation::None);
  tokio::time::sleep(Duration::from_millis(1500)).await;
  let replay_errors = events
    .0
    .lock()
    .unwrap()
    .iter()
    .filter(|e| matches!(e, Event::Error { kind: "replay", .. }))
    .count();
  assert_eq!(replay_errors, 1, "reported once, not once per retry");
  let status = cache.failover_status().unwrap();
  assert_eq!(status.journal_depth, 1, "nothing dropped: {status:?}");
  assert_eq!(
    cache.mode(),
    Mode::Memory,
    "never back on Redis before the replay: {status:?}"
  );
  assert_eq!(
    cache
      .get(Scope::Global, EntryType::Session, "s")
      .await
      .unwrap()
      .as_deref(),
    Some("1")
  );
}

#[tokio::test]
async fn a_batch_shares_one_pipeline_with_the_results_of_separate_calls() {
  use ferrocache::{Answer, Request, Text};
  let server = RedisServer::start();
  let cache = cache_for(&server.url());
  server.cli(&["RPUSH", "fc:s:list", "x"]); // a foreign key of the wrong type
  cache
    .set(Scope::Global, EntryType::Session, "old", "1", None)
    .await
    .unwrap();
  let tenant = Scope::Tenant("t");
  let items = vec![
    Request::set(Scope::Global, EntryType::Session, "a", "\"A\"", None),
    Request::get(Scope::Global, EntryType::Session, "old"),
    Request::set(tenant, EntryType::Query, "q", "2", Some(60.0)),
    Request::get(Scope::Global, EntryType::Session, "missing"),
    Request::get(Scope::Global, EntryType::Session, "list"),
    Request::set(Scope::Global, EntryType::Session, "", "1", None),
  ];
  let results = support::run_batch(&cache, items).await;
  assert_eq!(results[0], Ok(Answer::Done));
  assert_eq!(results[1], Ok(Answer::Value(Some(Text::Owned("1".into())))));
  assert_eq!(results[2], Ok(Answer::Done));
  assert_eq!(results[3], Ok(Answer::Value(None)));
  assert_eq!(results[4].as_ref().unwrap_err().code(), "ERR_REDIS", "{:?}", results[4]);
  assert_eq!(results[5].as_ref().unwrap_err().code(), "ERR_INVALID_ARG");
  assert_eq!(server.cli(&["GET", "fc:s:a"]), "\"A\"");
  assert_eq!(server.cli(&["GET", "fc:t:1:t:q:q"]), "2");
  let m = cache.metrics().snapshot();
  assert_eq!(
    (m.session.hits, m.session.misses, m.session.sets, m.query.sets),
    (1, 1, 2, 1)
  );
  assert_eq!(cache.mode(), Mode::Redis, "a reply error is not an outage");
}

#[tokio::test]
async fn a_failed_batch_counts_each_call_and_serves_it_from_memory() {
  use ferrocache::Request;
  let server = RedisServer::start();
  let cache = cache_for(&server.url());
  cache
    .set(Scope::Global, EntryType::Session, "warm", "1", None)
    .await
    .unwrap();
  server.kill(); // the pipeline itself fails (refused), not a breaker already open
  assert_eq!(cache.mode(), Mode::Redis);
  let items = vec![
    Request::set(Scope::Global, EntryType::Session, "a", "1", None),
    Request::set(Scope::Global, EntryType::Session, "b", "2", None),
    Request::get(Scope::Global, EntryType::Session, "a"),
  ];
  let results = support::run_batch(&cache, items).await;
  assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
  assert_eq!(cache.mode(), Mode::Memory, "three failed calls open the breaker");
  assert_eq!(
    cache
      .get(Scope::Global, EntryType::Session, "b")
      .await
      .unwrap()
      .as_deref(),
    Some("2"),
    "served from memory (journaled)"
  );
  assert_eq!(cache.failover_status().unwrap().journal_depth, 2);
}

#[tokio::test]
async fn keys_lists_one_scope_and_kind_by_scan_with_globs_literal() {
  let server = RedisServer::start();
  let cache = cache_for(&server.url());
  for k in ["b", "a*", "[x]"] {
    cache
      .set(Scope::Global, EntryType::Session, k, "1", None)
      .await
      .unwrap();
  }
  cache
    .set(Scope::Global, EntryType::Query, "q", "1", None)
    .await
    .unwrap();
  cache
    .set(Scope::Tenant("t"), EntryType::Session, "t1", "1", None)
    .await
    .unwrap();
  server.cli(&["SET", "fc:s", "foreign"]); // not under the session namespace `fc:s:`
  assert_eq!(
    cache.keys(Scope::Global, EntryType::Session).await.unwrap(),
    ["[x]", "a*", "b"]
  );
  assert_eq!(
    cache.keys(Scope::Tenant("t"), EntryType::Session).await.unwrap(),
    ["t1"]
  );
  assert_eq!(cache.keys(Scope::Global, EntryType::Query).await.unwrap(), ["q"]);
}
