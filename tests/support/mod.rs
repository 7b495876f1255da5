//! Test support: a private `redis-server` on a free loopback port, stopped by pid.
#![allow(dead_code)] // each test crate uses part of the support code

pub mod certs;
pub mod contract;
pub mod race;
pub mod topology;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A redis-server owned by one test; killed when dropped.
pub struct RedisServer {
  pub port: u16,
  child: Child,
}

impl RedisServer {
  /// Starts redis-server on a free port and waits until it answers.
  pub fn start() -> Self {
    let port = free_port();
    Self::start_on(port)
  }

  /// Starts redis-server on `port` and waits until it answers.
  pub fn start_on(port: u16) -> Self {
    Self::start_with(port, &[])
  }

  /// Starts redis-server on `port` with `extra` arguments (e.g. `--requirepass x`).
  pub fn start_with(port: u16, extra: &[&str]) -> Self {
    let child = Command::new("redis-server")
      .args(base_args(port))
      .args(extra)
      .stdout(Stdio::null())
      .stderr(Stdio::null())
      .spawn()
      .expect("redis-server must be installed (see .ci/run)");
    let server = RedisServer { port, child };
    server.wait_ready();
    server
  }

  /// `redis://127.0.0.1:<port>`
  pub fn url(&self) -> String {
    format!("redis://127.0.0.1:{}", self.port)
  }

  /// Runs `redis-cli` against this server and returns its trimmed output.
  pub fn cli(&self, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
      .args(["-p", &self.port.to_string()])
      .args(args)
      .output()
      .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
  }

  fn wait_ready(&self) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
      // a password-protected server answers NOAUTH: it is up all the same
      let answer = self.cli(&["PING"]);
      if answer == "PONG" || answer.contains("NOAUTH") {
        return;
      }
      std::thread::sleep(Duration::from_millis(20));
    }
    panic!("redis-server on port {} did not start", self.port);
  }

  /// Kills the server (SIGKILL) and waits for it.
  pub fn kill(mut self) -> u16 {
    let _ = self.child.kill();
    let _ = self.child.wait();
    self.port
  }
}

impl Drop for RedisServer {
  fn drop(&mut self) {
    let _ = self.child.kill();
    let _ = self.child.wait();
  }
}

/// Loopback, no persistence, replicas synced at once (no diskless-sync delay).
pub fn base_args(port: u16) -> Vec<String> {
  let args = [
    "--port",
    &port.to_string(),
    "--bind",
    "127.0.0.1",
    "--save",
    "",
    "--appendonly",
    "no",
    "--repl-diskless-sync-delay",
    "0",
  ]
  .map(String::from);
  args.to_vec()
}

/// A loopback port nothing listens on right now.
/// A new empty directory under the system temp dir, named for `tag`, this process and a free port.
pub fn scratch_dir(tag: &str) -> std::path::PathBuf {
  let dir = std::env::temp_dir().join(format!("ferrocache-{tag}-{}-{}", std::process::id(), free_port()));
  std::fs::create_dir_all(&dir).unwrap();
  dir
}

pub fn free_port() -> u16 {
  TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Runs `requests` as one batch, as a tick of JS calls does: each validated (a bad one
/// answered with its error), the others run together; the answers in the order made.
#[allow(dead_code)]
pub async fn run_batch(
  cache: &ferrocache::Cache,
  requests: Vec<ferrocache::Request<'_>>,
) -> Vec<Result<ferrocache::Answer, ferrocache::Error>> {
  let mut answers: Vec<Option<Result<ferrocache::Answer, ferrocache::Error>>> = Vec::new();
  let (mut ops, mut at) = (Vec::new(), Vec::new());
  for request in requests {
    match cache.prepare(&request) {
      Ok(op) => {
        at.push(answers.len());
        ops.push(op);
        answers.push(None);
      }
      Err(e) => answers.push(Some(Err(e))),
    }
  }
  for (i, result) in at.into_iter().zip(cache.run(ops).await.answers) {
    answers[i] = Some(result);
  }
  answers.into_iter().map(|a| a.expect("every call answered")).collect()
}
