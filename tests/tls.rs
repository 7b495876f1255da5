//! `rediss://` against a TLS redis-server started here with certificates made by
//! openssl: the right CA works; a wrong or missing CA is a misconfiguration that
//! is reported and served from memory. Mutual TLS: a server that requires client
//! certificates accepts one signed by its CA and refuses none or a foreign one.

mod support;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ferrocache::{Cache, Mode};
use ferrocache::{ConfigBuilder, TlsFiles};
use ferrocache::{EntryType, Scope};

struct TlsServer {
  port: u16,
  dir: PathBuf,
  child: Child,
}

impl Drop for TlsServer {
  fn drop(&mut self) {
    let _ = self.child.kill();
    let _ = self.child.wait();
    let _ = std::fs::remove_dir_all(&self.dir);
  }
}

fn start_tls_server() -> TlsServer {
  start_tls_server_with(false)
}

/// A TLS redis-server; `auth_clients`: it requires a client certificate signed by `ca`.
fn start_tls_server_with(auth_clients: bool) -> TlsServer {
  let dir = support::certs::cert_dir("tls");
  if auth_clients {
    support::certs::make_client_certs(&dir);
  }
  let port = support::free_port();
  let child = Command::new("redis-server")
    .args([
      "--port",
      "0",
      "--tls-port",
      &port.to_string(),
      "--bind",
      "127.0.0.1",
      "--save",
      "",
      "--appendonly",
      "no",
    ])
    .args([
      "--tls-cert-file",
      "server.crt",
      "--tls-key-file",
      "server.key",
      "--tls-ca-cert-file",
      "ca.crt",
    ])
    .args(["--tls-auth-clients", if auth_clients { "yes" } else { "no" }])
    .current_dir(&dir)
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("redis-server");
  let server = TlsServer { port, dir, child };
  let deadline = Instant::now() + Duration::from_secs(10);
  loop {
    let mut cli = Command::new("redis-cli");
    cli.args([
      "--tls",
      "--cacert",
      "ca.crt",
      "-h",
      "localhost",
      "-p",
      &port.to_string(),
    ]);
    if auth_clients {
      cli.args(["--cert", "client.crt", "--key", "client.key"]);
    }
    let out = cli.arg("PING").current_dir(&server.dir).output().unwrap();
    if String::from_utf8_lossy(&out.stdout).trim() == "PONG" {
      return server;
    }
    assert!(Instant::now() < deadline, "TLS redis-server did not start");
    std::thread::sleep(Duration::from_millis(50));
  }
}

fn cache(server: &TlsServer, ca: Option<&str>) -> std::sync::Arc<Cache> {
  cache_with_client_cert(server, ca, None)
}

/// A cache over `server`'s TLS port trusting `ca`, presenting `<client>.crt`/`.key` if given.
fn cache_with_client_cert(server: &TlsServer, ca: Option<&str>, client: Option<&str>) -> std::sync::Arc<Cache> {
  let file = |f: String| server.dir.join(f).display().to_string();
  let tls = TlsFiles {
    ca_file: ca.map(|f| file(f.to_string())),
    cert_file: client.map(|c| file(format!("{c}.crt"))),
    key_file: client.map(|c| file(format!("{c}.key"))),
  };
  let url = format!("rediss://localhost:{}", server.port);
  Cache::new(
    ConfigBuilder {
      url: Some(url),
      tls,
      ..Default::default()
    }
    .build()
    .unwrap(),
  )
  .unwrap()
}

#[tokio::test]
async fn rediss_with_the_right_ca_serves_from_redis() {
  let server = start_tls_server();
  let c = cache(&server, Some("ca.crt"));
  c.set(Scope::Global, EntryType::Session, "s", "\"tls\"", None)
    .await
    .unwrap();
  assert_eq!(c.mode(), Mode::Redis, "{:?}", c.failover_status().unwrap());
  assert_eq!(
    c.get(Scope::Global, EntryType::Session, "s").await.unwrap().as_deref(),
    Some("\"tls\"")
  );
  assert!(c.health_check().await.unwrap().ping.is_ok());
}

#[tokio::test]
async fn a_wrong_or_missing_ca_is_a_misconfiguration_served_from_memory() {
  let server = start_tls_server();
  for ca in [Some("other-ca.crt"), None] {
    let c = cache(&server, ca);
    c.set(Scope::Global, EntryType::Session, "s", "1", None).await.unwrap();
    let status = c.failover_status().unwrap();
    assert_eq!(c.mode(), Mode::Memory, "ca {ca:?}: {status:?}");
    assert_eq!(
      status.fallback_activations, 1,
      "misconfiguration opens the breaker at once: {status:?}"
    );
    let err = status.last_error.unwrap_or_default().to_lowercase();
    assert!(err.contains("certificate") || err.contains("tls"), "ca {ca:?}: {err}");
    assert_eq!(
      c.get(Scope::Global, EntryType::Session, "s").await.unwrap().as_deref(),
      Some("1")
    );
  }
}

#[tokio::test]
async fn mutual_tls_with_a_client_certificate_signed_by_the_server_ca_serves_from_redis() {
  let server = start_tls_server_with(true);
  let c = cache_with_client_cert(&server, Some("ca.crt"), Some("client"));
  c.set(Scope::Global, EntryType::Session, "s", "\"mtls\"", None)
    .await
    .unwrap();
  assert_eq!(c.mode(), Mode::Redis, "{:?}", c.failover_status().unwrap());
  assert_eq!(
    c.get(Scope::Global, EntryType::Session, "s").await.unwrap().as_deref(),
    Some("\"mtls\"")
  );
}

#[tokio::test]
async fn mutual_tls_without_or_with_a_foreign_client_certificate_is_refused_and_served_from_memory() {
  let server = start_tls_server_with(true);
  for client in [None, Some("foreign-client")] {
    let c = cache_with_client_cert(&server, Some("ca.crt"), client);
    c.set(Scope::Global, EntryType::Session, "s", "1", None).await.unwrap();
    let status = c.failover_status().unwrap();
    assert_eq!(c.mode(), Mode::Memory, "client {client:?}: {status:?}");
    assert_eq!(
      status.fallback_activations, 1,
      "client {client:?}: a refused certificate is a misconfiguration, the breaker opens at once: {status:?}"
    );
    assert!(
      status.last_error.is_some(),
      "client {client:?}: the refusal is reported"
    );
    assert_eq!(
      c.get(Scope::Global, EntryType::Session, "s").await.unwrap().as_deref(),
      Some("1"),
      "client {client:?}: served from memory"
    );
    assert!(
      c.health_check().await.unwrap().ping.is_err(),
      "client {client:?}: Redis never accepts it"
    );
  }
}

#[test]
fn an_unreadable_ca_file_is_an_argument_error() {
  let tls = TlsFiles {
    ca_file: Some("/nonexistent/ca.pem".into()),
    ..Default::default()
  };
  let config = ConfigBuilder {
    url: Some("rediss://localhost:1".into()),
    tls,
    ..Default::default()
  }
  .build()
  .unwrap();
  let err = Cache::new(config).err().expect("refused");
  assert_eq!(err.code(), "ERR_INVALID_ARG");
}
