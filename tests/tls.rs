//! `rediss://` against a TLS redis-server started here with certificates made by
//! openssl: the right CA works; a wrong or missing CA is a misconfiguration that
//! is reported and served from memory.

mod support;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ferrocache::cache::{Cache, Mode};
use ferrocache::config::{ConfigBuilder, TlsFiles};
use ferrocache::keys::{Kind, Scope};

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
  let dir = std::env::temp_dir().join(format!(
    "ferrocache-tls-{}-{}",
    std::process::id(),
    support::free_port()
  ));
  std::fs::create_dir_all(&dir).unwrap();
  support::certs::make_certs(&dir);
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
    .args(["--tls-auth-clients", "no"])
    .current_dir(&dir)
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("redis-server");
  let server = TlsServer { port, dir, child };
  let deadline = Instant::now() + Duration::from_secs(10);
  loop {
    let out = Command::new("redis-cli")
      .args([
        "--tls",
        "--cacert",
        "ca.crt",
        "-h",
        "localhost",
        "-p",
        &port.to_string(),
        "PING",
      ])
      .current_dir(&server.dir)
      .output()
      .unwrap();
    if String::from_utf8_lossy(&out.stdout).trim() == "PONG" {
      return server;
    }
    assert!(Instant::now() < deadline, "TLS redis-server did not start");
    std::thread::sleep(Duration::from_millis(50));
  }
}

fn cache(server: &TlsServer, ca: Option<&str>) -> std::sync::Arc<Cache> {
  let tls = TlsFiles {
    ca_file: ca.map(|f| server.dir.join(f).display().to_string()),
    ..Default::default()
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
  c.set(Scope::Global, Kind::Session, "s", "\"tls\"", None).await.unwrap();
  assert_eq!(c.mode(), Mode::Redis, "{:?}", c.failover_status());
  assert_eq!(
    c.get(Scope::Global, Kind::Session, "s").await.unwrap().as_deref(),
    Some("\"tls\"")
  );
  assert!(c.ping().await.is_ok());
}

#[tokio::test]
async fn a_wrong_or_missing_ca_is_a_misconfiguration_served_from_memory() {
  let server = start_tls_server();
  for ca in [Some("other-ca.crt"), None] {
    let c = cache(&server, ca);
    c.set(Scope::Global, Kind::Session, "s", "1", None).await.unwrap();
    let status = c.failover_status();
    assert_eq!(c.mode(), Mode::Memory, "ca {ca:?}: {status:?}");
    assert_eq!(
      status.fallback_activations, 1,
      "misconfiguration opens the breaker at once: {status:?}"
    );
    let err = status.last_error.unwrap_or_default().to_lowercase();
    assert!(err.contains("certificate") || err.contains("tls"), "ca {ca:?}: {err}");
    assert_eq!(
      c.get(Scope::Global, Kind::Session, "s").await.unwrap().as_deref(),
      Some("1")
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
