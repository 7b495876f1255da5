//! The store contract (tests/support/contract.rs) against both stores.

mod support;

use std::time::Duration;

use ferrocache::RedisTimeouts;
use ferrocache::{MemoryStore, RedisStore};

const TIMEOUTS: RedisTimeouts = RedisTimeouts {
  command: Duration::from_millis(500),
  connect: Duration::from_millis(1000),
};

#[tokio::test]
async fn memory_store_passes_the_contract() {
  support::contract::run(&MemoryStore::new(8 << 20, 64 << 10), "t:").await;
}

#[tokio::test]
async fn redis_store_passes_the_contract() {
  let server = support::RedisServer::start();
  let store = RedisStore::new(&server.url(), TIMEOUTS).unwrap();
  support::contract::run(&store, "t:").await;
  assert_eq!(
    server.cli(&["EXISTS", "t:ordersX", "t:order", "t:ab"]),
    "3",
    "what the contract kept is in Redis"
  );
}

#[tokio::test]
async fn indexed_redis_store_passes_the_contract() {
  let server = support::RedisServer::start();
  let store = RedisStore::new(&server.url(), TIMEOUTS)
    .unwrap()
    .with_query_index(ferrocache::KeyLayout::new("fc:"));
  assert!(store.indexes_queries());
  // a tenant's query namespace: every key of the contract is listed and invalidated by the index
  support::contract::run(&store, "fc:t:4:acme:q:").await;
  assert_eq!(
    server.cli(&[
      "EXISTS",
      "fc:t:4:acme:q:ordersX",
      "fc:t:4:acme:q:order",
      "fc:t:4:acme:q:ab"
    ]),
    "3",
    "what the contract kept is in Redis"
  );
  let listed = server.cli(&["ZRANGE", "fc:t:4:acme:i:q", "0", "-1"]);
  for kept in ["ordersX", "order", "ab"] {
    assert!(listed.lines().any(|m| m == kept), "{kept} listed in {listed:?}");
  }
}
