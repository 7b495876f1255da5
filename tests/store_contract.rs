//! The store contract (tests/support/contract.rs) against both stores.

mod support;

use std::time::Duration;

use ferrocache::store::redis::RedisTimeouts;
use ferrocache::store::{MemoryStore, RedisStore};

#[tokio::test]
async fn memory_store_passes_the_contract() {
  support::contract::run(&MemoryStore::new(8 << 20, 64 << 10), "t:").await;
}

#[tokio::test]
async fn redis_store_passes_the_contract() {
  let server = support::RedisServer::start();
  let timeouts = RedisTimeouts {
    command: Duration::from_millis(500),
    connect: Duration::from_millis(1000),
  };
  let store = RedisStore::new(&server.url(), timeouts).unwrap();
  support::contract::run(&store, "t:").await;
  assert_eq!(
    server.cli(&["EXISTS", "t:ordersX", "t:order", "t:ab"]),
    "3",
    "what the contract kept is in Redis"
  );
}
