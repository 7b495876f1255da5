//! Rate limiting against a real redis-server started here: the script's bound, refusals without
//! a Redis call, a server that lost the script, the limiter's expiry, the heartbeat count, and an
//! outage limited locally and counted into Redis on recovery.

mod support;

use std::sync::Arc;
use std::time::Duration;

use ferrocache::{Cache, ConfigBuilder, Mode, RateArgs, Scope, Simulation};
use support::RedisServer;

fn cache_for(url: &str) -> Arc<Cache> {
  Cache::new(
    ConfigBuilder {
      url: Some(url.into()),
      command_timeout_ms: Some(250.0),
      ..Default::default()
    }
    .build()
    .unwrap(),
  )
  .unwrap()
}

fn policy(limit: f64, window_ms: f64) -> RateArgs {
  RateArgs {
    limit,
    window_ms,
    burst: None,
    cost: 1.0,
  }
}

/// The calls of the rate-limit script the server has run.
fn script_calls(server: &RedisServer) -> u64 {
  let stats = server.cli(&["INFO", "commandstats"]);
  stats
    .lines()
    .find(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:"))
    .and_then(|l| l.split("calls=").nth(1))
    .and_then(|v| v.split(',').next())
    .and_then(|v| v.parse().ok())
    .unwrap_or(0)
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
  let deadline = std::time::Instant::now() + Duration::from_secs(10);
  while !done() {
    assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
    tokio::time::sleep(Duration::from_millis(20)).await;
  }
}

#[tokio::test]
async fn a_burst_then_refusals_the_later_ones_without_a_redis_call() {
  let server = RedisServer::start();
  let cache = cache_for(&server.url());
  let p = policy(10.0, 60_000.0); // 6 s per unit: nothing drains during the test
  let mut allowed = 0;
  let mut remaining = Vec::new();
  for _ in 0..10 {
    let d = cache.rate_limit(Scope::Global, "ip", p).await.unwrap();
    allowed += d.allowed as u32;
    remaining.push(d.remaining);
  }
  assert_eq!(allowed, 10);
  assert_eq!(remaining, (0..10).rev().collect::<Vec<_>>());
  let refused = cache.rate_limit(Scope::Global, "ip", p).await.unwrap();
  assert!(!refused.allowed);
  assert!((5_900..=6_000).contains(&refused.retry_after_ms), "{refused:?}");
  assert!((59_900..=60_000).contains(&refused.reset_ms), "{refused:?}");
  let calls = script_calls(&server);
  for _ in 0..1000 {
    assert!(!cache.rate_limit(Scope::Global, "ip", p).await.unwrap().allowed);
  }
  assert_eq!(script_calls(&server), calls, "refused in-process");
  assert!(cache.rate_stats().refused_locally >= 1000);
  // another policy of the same key, and another tenant, count separately
  assert!(
    cache
      .rate_limit(Scope::Global, "ip", policy(11.0, 60_000.0))
      .await
      .unwrap()
      .allowed
  );
  assert!(cache.rate_limit(Scope::Tenant("t"), "ip", p).await.unwrap().allowed);
  let ttl: i64 = server.cli(&["PTTL", "fc:r:g:10:60000:10:ip"]).parse().unwrap();
  assert!(
    (59_000..=60_001).contains(&ttl),
    "the limiter expires once drained: {ttl}"
  );
}

#[tokio::test]
async fn a_server_that_lost_the_script_is_given_it_again() {
  let server = RedisServer::start();
  let cache = cache_for(&server.url());
  // one unit every 600 ms: nothing drains between the two checks on a busy machine
  let p = policy(100.0, 60_000.0);
  assert!(cache.rate_limit(Scope::Global, "k", p).await.unwrap().allowed);
  server.cli(&["SCRIPT", "FLUSH"]);
  let d = cache.rate_limit(Scope::Global, "k", p).await.unwrap();
  assert!(d.allowed);
  assert_eq!(d.remaining, 98, "the check counted once");
  assert_eq!(cache.mode(), Mode::Redis);
}

#[tokio::test]
async fn the_heartbeat_counts_the_live_processes() {
  let server = RedisServer::start();
  let a = cache_for(&server.url());
  let b = cache_for(&server.url());
  let p = policy(100.0, 1000.0);
  a.rate_limit(Scope::Global, "k", p).await.unwrap();
  b.rate_limit(Scope::Global, "k", p).await.unwrap();
  wait_for("both counted", || {
    a.rate_stats().processes == 2 && b.rate_stats().processes == 2
  })
  .await;
  b.close().await;
  assert_eq!(server.cli(&["ZCARD", "fc:r:p"]), "1", "a closed cache leaves at once");
  wait_for("one left", || a.rate_stats().processes == 1).await;
}

#[tokio::test]
async fn an_outage_limits_locally_and_is_counted_into_redis_on_recovery() {
  let server = RedisServer::start();
  let cache = cache_for(&server.url());
  let p = policy(20.0, 200_000.0); // 10 s per unit: nothing drains during the test
  for _ in 0..5 {
    assert!(cache.rate_limit(Scope::Global, "k", p).await.unwrap().allowed);
  }
  wait_for("counted", || cache.rate_stats().processes == 1).await;
  cache.simulate_outage(Simulation::Refuse);
  let mut during = 0;
  for _ in 0..40 {
    during += cache.rate_limit(Scope::Global, "k", p).await.unwrap().allowed as u32;
  }
  assert_eq!(during, 15, "what was consumed before the outage still counts");
  assert_eq!(cache.mode(), Mode::Memory);
  assert_eq!(cache.rate_stats().unsynced_keys, 1);
  cache.simulate_outage(Simulation::None);
  wait_for("recovered", || {
    cache.mode() == Mode::Redis && cache.rate_stats().unsynced_keys == 0
  })
  .await;
  // Redis holds all 20: its limiter lives ~20 units of 10 s
  let ttl: i64 = server.cli(&["PTTL", "fc:r:g:20:200000:20:k"]).parse().unwrap();
  assert!(ttl > 190_000 && ttl <= 200_001, "{ttl}");
  // a process that never saw the key is refused by Redis
  let other = cache_for(&server.url());
  assert!(!other.rate_limit(Scope::Global, "k", p).await.unwrap().allowed);
}

#[tokio::test]
async fn without_fallback_an_outage_is_an_error() {
  let server = RedisServer::start();
  let cache = Cache::new(
    ConfigBuilder {
      url: Some(server.url()),
      command_timeout_ms: Some(250.0),
      fallback_enabled: Some(false),
      ..Default::default()
    }
    .build()
    .unwrap(),
  )
  .unwrap();
  cache.simulate_outage(Simulation::Refuse);
  let err = cache
    .rate_limit(Scope::Global, "k", policy(10.0, 1000.0))
    .await
    .unwrap_err();
  assert_eq!(err.code(), "ERR_REDIS_UNAVAILABLE");
}

#[tokio::test]
async fn bad_input_is_refused_and_counts_nothing() {
  let server = RedisServer::start();
  let cache = cache_for(&server.url());
  let bad = [
    RateArgs {
      limit: 0.0,
      ..policy(1.0, 1.0)
    },
    RateArgs {
      window_ms: f64::NAN,
      ..policy(1.0, 1.0)
    },
    RateArgs {
      burst: Some(2.5),
      ..policy(1.0, 1.0)
    },
    RateArgs {
      cost: 3.0,
      ..policy(2.0, 1000.0)
    },
  ];
  for args in bad {
    let err = cache.rate_limit(Scope::Global, "k", args).await.unwrap_err();
    assert_eq!(err.code(), "ERR_INVALID_ARG", "{args:?}");
  }
  let err = cache.rate_limit(Scope::Global, "", policy(1.0, 1.0)).await.unwrap_err();
  assert_eq!(err.code(), "ERR_INVALID_ARG");
  let long = "k".repeat(5000);
  let err = cache
    .rate_limit(Scope::Global, &long, policy(1.0, 1.0))
    .await
    .unwrap_err();
  assert_eq!(err.code(), "ERR_TOO_LARGE");
  assert_eq!(server.cli(&["DBSIZE"]), "0");
}
