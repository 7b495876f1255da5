//! Events the cache reports to the application (`cm.on(...)` in JS).

use std::sync::{Arc, RwLock};

/// Something the application may want to know about.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
  /// Switched to the in-process store (breaker opened).
  Fallback {
    /// The failure that opened the breaker (password-free).
    cause: String,
    /// `timeout`, `connection`, `misconfiguration`, or `simulated`.
    kind: &'static str,
  },
  /// Back on Redis after the outage journal was replayed.
  Recovered {
    /// How long the outage lasted.
    outage_ms: u64,
    /// Journal operations applied to Redis.
    replayed: u64,
  },
  /// A failure retrying cannot fix (credentials, TLS, DNS) or a failed replay.
  Error {
    /// Password-free description.
    message: String,
    /// `misconfiguration`, `replay` or `write-refused`.
    kind: &'static str,
  },
}

/// Receives events; implemented by the napi layer (a non-blocking JS callback).
pub trait EventSink: Send + Sync {
  /// Called from any thread; must not block.
  fn emit(&self, event: Event);
}

/// The optional sink of one cache.
#[derive(Default)]
pub struct Events {
  sink: RwLock<Option<Arc<dyn EventSink>>>,
}

impl Events {
  /// Installs (or replaces) the sink.
  pub fn set_sink(&self, sink: Arc<dyn EventSink>) {
    *self.sink.write().unwrap_or_else(|p| p.into_inner()) = Some(sink);
  }

  /// Removes the sink.
  pub fn clear(&self) {
    *self.sink.write().unwrap_or_else(|p| p.into_inner()) = None;
  }

  /// Delivers `event` if a sink is installed.
  pub fn emit(&self, event: Event) {
    let sink = self.sink.read().unwrap_or_else(|p| p.into_inner()).clone();
    if let Some(sink) = sink {
      sink.emit(event);
    }
  }
}
