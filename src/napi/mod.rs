//! The boundary: JavaScript values into core types, core answers and errors back; no cache
//! logic. One file per concern:
//! - [`cache`]: the `NativeCache` class over one core [`crate::cache::Cache`];
//! - [`calls`]: the call protocol (`submit` per call, `flush` per tick, answers);
//! - [`options`]: `createCacheManager`'s options, checked in one place;
//! - [`text`]: string transfer; [`error`]: the one error conversion; [`events`]: listeners.

pub mod cache;
pub mod calls;
mod error;
mod events;
#[cfg(feature = "test-hooks")]
mod hooks;
mod options;
mod text;

use std::io::Write;

use crate::runtime;

/// Gives napi-rs the process's runtime ([`runtime`]) before any `async` call runs. An invalid
/// `FERROCACHE_WORKER_THREADS` is reported on stderr and the default used; if the runtime cannot
/// be built, napi-rs builds its own on first use.
#[napi_derive::module_init]
fn init_runtime() {
  // once per process: each `worker_threads` environment that loads the addon runs this
  static ONCE: std::sync::Once = std::sync::Once::new();
  ONCE.call_once(give_runtime);
}

fn give_runtime() {
  let workers =
    runtime::worker_threads(std::env::var(runtime::WORKER_THREADS_VAR).ok().as_deref()).unwrap_or_else(|reason| {
      // a closed or broken stderr must not stop the module from loading
      let _ = writeln!(std::io::stderr(), "ferrocache: {reason}");
      runtime::DEFAULT_WORKER_THREADS
    });
  if let Ok(rt) = runtime::build(workers) {
    napi::bindgen_prelude::create_custom_tokio_runtime(rt);
  }
}
