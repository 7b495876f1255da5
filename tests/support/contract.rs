//! One behaviour suite, run against every store (tests/store_contract.rs).

use std::time::Duration;

use ferrocache::Store;

/// Runs the shared contract against `store`; keys are namespaced by `ns`.
pub async fn run<S: Store>(store: &S, ns: &str) {
  let k = |s: &str| format!("{ns}{s}");
  assert_eq!(store.get(&k("missing")).await.unwrap(), None);
  store.set(&k("a"), "{\"x\":1}", 60_000).await.unwrap();
  assert_eq!(store.get(&k("a")).await.unwrap().as_deref(), Some("{\"x\":1}"));
  store.set(&k("a"), "2", 60_000).await.unwrap();
  assert_eq!(store.get(&k("a")).await.unwrap().as_deref(), Some("2"), "set replaces");
  assert!(store.delete(&k("a")).await.unwrap());
  assert!(!store.delete(&k("a")).await.unwrap(), "second delete finds nothing");

  let keys = [
    "orders_1",
    "orders_2",
    "orders_",
    "ordersX",
    "order",
    "o*rders_",
    "[o]rders_1",
    "a\\b",
    "a?c",
    "ab",
  ];
  for key in keys {
    store.set(&k(key), "1", 60_000).await.unwrap();
  }
  assert_eq!(store.invalidate_prefix(&k("orders_")).await.unwrap(), 3);
  assert_eq!(store.get(&k("orders_1")).await.unwrap(), None);
  assert!(store.get(&k("ordersX")).await.unwrap().is_some(), "ordersX survives");
  assert_eq!(store.invalidate_prefix(&k("o*")).await.unwrap(), 1, "* is literal");
  assert!(store.get(&k("order")).await.unwrap().is_some());
  assert_eq!(store.invalidate_prefix(&k("[o]")).await.unwrap(), 1, "[] is literal");
  assert_eq!(store.invalidate_prefix(&k("a\\")).await.unwrap(), 1, "\\ is literal");
  assert_eq!(store.invalidate_prefix(&k("a?")).await.unwrap(), 1, "? is literal");
  assert!(store.get(&k("ab")).await.unwrap().is_some());
  assert_eq!(store.invalidate_prefix(&k("nothing")).await.unwrap(), 0);

  store.set(&k("short"), "1", 30).await.unwrap();
  assert!(store.get(&k("short")).await.unwrap().is_some());
  tokio::time::sleep(Duration::from_millis(80)).await;
  assert_eq!(store.get(&k("short")).await.unwrap(), None, "TTL honoured");
  assert!(
    !store.delete(&k("short")).await.unwrap(),
    "an expired entry does not count as deleted"
  );

  store.set(&k("uni:ключ🔑"), "\"é\"", 60_000).await.unwrap();
  assert_eq!(store.get(&k("uni:ключ🔑")).await.unwrap().as_deref(), Some("\"é\""));
  assert_eq!(store.invalidate_prefix(&k("uni:ключ")).await.unwrap(), 1);
  store.ping().await.unwrap();
}
