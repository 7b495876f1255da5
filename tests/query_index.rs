//! The query index against a real redis-server: layout, exact invalidation in chunks,
//! expired members swept, no leak once a scope goes quiet, concurrent writers, lost
//! scripts, the outage replay, and `queryIndex: false`.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrocache::ConfigBuilder;
use ferrocache::{Cache, Mode, Request};
use ferrocache::{EntryType, Scope};
use support::RedisServer;

fn cache_with(url: &str, query_index: bool) -> Arc<Cache> {
  Cache::new(
    ConfigBuilder {
      url: Some(url.into()),
      query_index: Some(query_index),
      ..Default::default()
    }
    .build()
    .unwrap(),
  )
  .unwrap()
}

async fn put(cache: &Cache, scope: Scope<'_>, key: &str, ttl_secs: Option<f64>) {
  cache.set(scope, EntryType::Query, key, "1", ttl_secs).await.unwrap();
}

fn members(server: &RedisServer, index: &str) -> Vec<String> {
  let out = server.cli(&["ZRANGE", index, "0", "-1"]);
  out.lines().filter(|l| !l.is_empty()).map(str::to_string).collect()
}

fn count(server: &RedisServer, args: &[&str]) -> u64 {
  server.cli(args).trim().parse().unwrap()
}

/// Every live query key of the manager scope, by SCAN (what the index must list).
fn live_queries(server: &RedisServer) -> Vec<String> {
  let out = server.cli(&["--scan", "--pattern", "fc:q:*"]);
  let mut keys: Vec<String> = out.lines().map(|l| l["fc:q:".len()..].to_string()).collect();
  keys.sort();
  keys
}

#[tokio::test]
async fn query_results_are_listed_with_their_expiry_and_sessions_are_not() {
  let server = RedisServer::start();
  let cache = cache_with(&server.url(), true);
  put(&cache, Scope::Global, "orders_1", Some(60.0)).await;
  put(&cache, Scope::Tenant("acme"), "orders_1", Some(5.0)).await;
  cache
    .set(Scope::Global, EntryType::Session, "s1", "1", None)
    .await
    .unwrap();

  assert_eq!(members(&server, "fc:i:q"), ["orders_1"]);
  assert_eq!(members(&server, "fc:t:4:acme:i:q"), ["orders_1"]);
  let expires_at: f64 = server.cli(&["ZSCORE", "fc:x:q", "orders_1"]).parse().unwrap();
  let time = server.cli(&["TIME"]);
  let now_ms = time.lines().next().unwrap().parse::<f64>().unwrap() * 1000.0;
  assert!(
    expires_at > now_ms + 59_000.0 && expires_at < now_ms + 61_000.0,
    "{expires_at} vs {now_ms}"
  );
  // each index lives at least as long as its longest entry (plus at most its TTL again, up
  // to a minute), and not forever
  let pttl = count(&server, &["PTTL", "fc:i:q"]);
  assert!(pttl > 119_000 && pttl <= 120_000, "{pttl}");
  let pttl = count(&server, &["PTTL", "fc:t:4:acme:x:q"]);
  assert!(pttl > 9_000 && pttl <= 10_000, "{pttl}");
  put(&cache, Scope::Global, "short", Some(1.0)).await;
  assert!(
    count(&server, &["PTTL", "fc:i:q"]) > 118_000,
    "a shorter entry never shortens the index"
  );
  // another process's longer entry extends it (GT), though this one knows it lives long
  let other = cache_with(&server.url(), true);
  put(&other, Scope::Global, "long", Some(600.0)).await;
  let pttl = count(&server, &["PTTL", "fc:x:q"]);
  assert!(pttl > 659_000 && pttl <= 660_000, "{pttl}");
  assert_eq!(
    server.cli(&["--scan", "--pattern", "fc:*s*:q"]),
    "",
    "no index for sessions"
  );
}

#[tokio::test]
async fn invalidation_is_exact_over_many_chunks_and_leaves_other_prefixes_listed() {
  let server = RedisServer::start();
  let cache = cache_with(&server.url(), true);
  let mut batch = Vec::new();
  for i in 0..2500 {
    batch.push(format!("orders_{i}"));
    if i % 5 == 0 {
      batch.push(format!("ordersX{i}"));
    }
  }
  batch.push("orders".into());
  for chunk in batch.chunks(200) {
    let items: Vec<Request> = chunk
      .iter()
      .map(|k| Request::set(Scope::Global, EntryType::Query, k, "1", None))
      .collect();
    assert!(support::run_batch(&cache, items).await.iter().all(|r| r.is_ok()));
  }
  assert_eq!(count(&server, &["ZCARD", "fc:i:q"]), 3001);
  cache.delete(Scope::Global, EntryType::Query, "orders_7").await.unwrap();

  let removed = cache
    .invalidate(Scope::Global, EntryType::Query, "orders_", false)
    .await
    .unwrap();
  assert_eq!(removed, 2499, "live entries only: orders_7 was deleted before");
  let left = live_queries(&server);
  assert_eq!(left.len(), 501);
  assert!(
    left.iter().all(|k| k == "orders" || k.starts_with("ordersX")),
    "{left:?}"
  );
  let mut listed = members(&server, "fc:x:q");
  listed.sort();
  assert_eq!(listed, left, "the expiry set lists what the lex set lists");
  assert_eq!(members(&server, "fc:i:q").len(), 501);

  assert_eq!(
    cache
      .invalidate(Scope::Global, EntryType::Query, "", true)
      .await
      .unwrap(),
    501
  );
  assert_eq!(
    count(&server, &["EXISTS", "fc:i:q", "fc:x:q"]),
    0,
    "emptied indexes are gone"
  );
}

#[tokio::test]
async fn prefixes_holding_range_syntax_and_non_ascii_match_literally() {
  let server = RedisServer::start();
  let cache = cache_with(&server.url(), true);
  let keys = ["[a", "[ab", "(a", "-", "+", "é1", "é", "e1", "a\u{10FFFF}", "a", "ab"];
  for k in keys {
    put(&cache, Scope::Global, k, None).await;
  }
  for (prefix, expected) in [
    ("[a", 2),
    ("(", 1),
    ("-", 1),
    ("+", 1),
    ("é", 2),
    ("e", 1),
    ("a\u{10FFFF}", 1),
    ("a", 2),
  ] {
    let removed = cache
      .invalidate(Scope::Global, EntryType::Query, prefix, false)
      .await
      .unwrap();
    assert_eq!(removed, expected, "prefix {prefix:?}");
  }
  assert_eq!(live_queries(&server), Vec::<String>::new());
}

#[tokio::test]
async fn tenants_invalidate_only_their_own_index() {
  let server = RedisServer::start();
  let cache = cache_with(&server.url(), true);
  for t in ["acme", "acme2", "a:q:b"] {
    for i in 0..50 {
      put(&cache, Scope::Tenant(t), &format!("k{i}"), None).await;
    }
  }
  put(&cache, Scope::Global, "k1", None).await;
  assert_eq!(
    cache
      .invalidate(Scope::Tenant("acme"), EntryType::Query, "", true)
      .await
      .unwrap(),
    50
  );
  assert_eq!(
    cache
      .invalidate(Scope::Tenant("a:q:b"), EntryType::Query, "k1", false)
      .await
      .unwrap(),
    11
  );
  assert_eq!(count(&server, &["ZCARD", "fc:t:5:acme2:i:q"]), 50);
  assert_eq!(count(&server, &["ZCARD", "fc:t:5:a:q:b:i:q"]), 39);
  assert_eq!(count(&server, &["EXISTS", "fc:q:k1", "fc:t:5:acme2:q:k1"]), 2);
}

#[tokio::test]
async fn expired_members_are_swept_and_a_quiet_index_expires() {
  let server = RedisServer::start();
  let cache = cache_with(&server.url(), true);
  for i in 0..100 {
    put(&cache, Scope::Global, &format!("brief{i}"), Some(0.05)).await;
  }
  tokio::time::sleep(Duration::from_millis(120)).await;
  for i in 0..30 {
    put(&cache, Scope::Global, &format!("lasting{i}"), Some(0.6)).await;
  }
  // one write in 16 sweeps up to 64 due members: the 100 brief ones are gone
  assert_eq!(count(&server, &["ZCARD", "fc:i:q"]), 30);
  assert_eq!(count(&server, &["ZCARD", "fc:x:q"]), 30);
  // the index outlives its last entry by at most that entry's TTL again
  tokio::time::sleep(Duration::from_millis(1400)).await;
  assert_eq!(
    count(&server, &["EXISTS", "fc:i:q", "fc:x:q"]),
    0,
    "no write after the last entry expired: the index expired with it"
  );
}

#[tokio::test]
async fn concurrent_writers_and_invalidations_never_leave_a_live_entry_unlisted() {
  let server = RedisServer::start();
  let cache = cache_with(&server.url(), true);
  let removed_during = support::race::writes_racing_invalidations(&cache, 8, 400).await;
  let live = live_queries(&server);
  let listed: std::collections::BTreeSet<String> = members(&server, "fc:i:q").into_iter().collect();
  support::race::assert_settled(&cache, removed_during, 3200, &live, &listed).await;
  assert_eq!(live_queries(&server), Vec::<String>::new());
}

#[tokio::test]
async fn a_server_that_lost_the_scripts_gets_them_again() {
  let server = RedisServer::start();
  let cache = cache_with(&server.url(), true);
  put(&cache, Scope::Global, "a1", None).await;
  server.cli(&["SCRIPT", "FLUSH"]);
  put(&cache, Scope::Global, "a2", None).await;
  server.cli(&["SCRIPT", "FLUSH"]);
  let items = vec![
    Request::set(Scope::Global, EntryType::Query, "a3", "1", None),
    Request::get(Scope::Global, EntryType::Query, "a1"),
    Request::set(Scope::Global, EntryType::Query, "a4", "1", None),
  ];
  let results = support::run_batch(&cache, items).await;
  assert_eq!(
    results.iter().map(|r| r.as_ref().unwrap().text()).collect::<Vec<_>>(),
    [None, Some("1"), None]
  );
  server.cli(&["SCRIPT", "FLUSH"]);
  assert_eq!(
    cache
      .invalidate(Scope::Global, EntryType::Query, "a", false)
      .await
      .unwrap(),
    4
  );
  assert_eq!(cache.mode(), Mode::Redis, "a lost script is not an outage");
  assert_eq!(cache.failover_status().unwrap().fallback_activations, 0);
}

#[tokio::test]
async fn writes_replayed_after_an_outage_are_listed() {
  use ferrocache::Simulation;
  let server = RedisServer::start();
  let cache = cache_with(&server.url(), true);
  put(&cache, Scope::Global, "before", None).await;
  cache.simulate_outage(Simulation::Refuse);
  put(&cache, Scope::Global, "during", None).await;
  put(&cache, Scope::Tenant("acme"), "during", None).await;
  cache.simulate_outage(Simulation::None);
  let deadline = Instant::now() + Duration::from_secs(5);
  while cache.mode() != Mode::Redis || cache.failover_status().unwrap().journal_depth > 0 {
    assert!(Instant::now() < deadline, "{:?}", cache.failover_status().unwrap());
    tokio::time::sleep(Duration::from_millis(20)).await;
  }
  assert_eq!(members(&server, "fc:i:q"), ["before", "during"]);
  assert_eq!(members(&server, "fc:t:4:acme:i:q"), ["during"]);
  assert_eq!(
    cache
      .invalidate(Scope::Global, EntryType::Query, "", true)
      .await
      .unwrap(),
    2
  );
}

#[tokio::test]
async fn without_the_index_invalidation_scans_and_nothing_is_listed() {
  let server = RedisServer::start();
  let cache = cache_with(&server.url(), false);
  for i in 0..20 {
    put(&cache, Scope::Global, &format!("orders_{i}"), None).await;
  }
  assert_eq!(count(&server, &["EXISTS", "fc:i:q", "fc:x:q"]), 0);
  assert_eq!(
    cache
      .invalidate(Scope::Global, EntryType::Query, "orders_", false)
      .await
      .unwrap(),
    20
  );
  // an indexing process sharing the keyPrefix does not see the unlisted entries (documented)
  put(&cache, Scope::Global, "unlisted", None).await;
  let indexing = cache_with(&server.url(), true);
  assert_eq!(
    indexing
      .invalidate(Scope::Global, EntryType::Query, "unl", false)
      .await
      .unwrap(),
    0
  );
  assert_eq!(
    cache
      .invalidate(Scope::Global, EntryType::Query, "unl", false)
      .await
      .unwrap(),
    1
  );
}

#[tokio::test]
async fn a_user_not_allowed_to_index_is_a_misconfiguration_and_nothing_is_half_written() {
  let acl = ["--user", "default", "on", "nopass", "~*", "+@all", "-zadd"];
  let server = RedisServer::start_with(support::free_port(), &acl);
  let cache = cache_with(&server.url(), true);
  put(&cache, Scope::Global, "q1", None).await;
  assert_eq!(
    cache.mode(),
    Mode::Memory,
    "refused at once: {:?}",
    cache.failover_status()
  );
  let error = cache.last_error().unwrap_or_default();
  assert!(error.contains("zadd"), "{error}");
  assert_eq!(
    count(&server, &["EXISTS", "fc:q:q1", "fc:i:q", "fc:x:q"]),
    0,
    "the transaction was aborted whole: no entry without its listing"
  );
  assert_eq!(
    cache
      .get(Scope::Global, EntryType::Query, "q1")
      .await
      .unwrap()
      .as_deref(),
    Some("1"),
    "served from memory"
  );
}
