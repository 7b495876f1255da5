//! `NativeCache`: the native half of `CacheManager`, a handle on one core [`Cache`]. The JS
//! layer (`lib/manager.js`) validates arguments, runs V8's JSON and batches a tick's calls;
//! this class converts and forwards, nothing more.

use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi_derive::napi;

use super::calls::{self, Raw};
use super::error::{thrown, Code};
use super::events::{CacheEvent, JsEventSink};
use super::options;
use crate::cache::Cache;
use crate::failover::Simulation;
use crate::report;

/// A simulated outage's mode.
#[napi(string_enum = "lowercase")]
pub enum OutageMode {
  /// Every Redis call fails at once as if the connection were refused.
  Refuse,
  /// Every Redis call hangs until `commandTimeoutMs`.
  Hang,
  /// The simulation ends.
  None,
}

/// The native half of `CacheManager` (applications use `CacheManager`).
#[napi]
pub struct NativeCache {
  pub(super) inner: Arc<Cache>,
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String> {
  serde_json::to_string(value).map_err(|e| Error::from_reason(format!("serialize a report: {e}")))
}

#[napi]
impl NativeCache {
  /// Checks `options` (see `CacheOptions`) and builds the cache; no I/O.
  #[napi(constructor, catch_unwind, ts_args_type = "options?: object | null")]
  pub fn new(env: Env, options: Unknown) -> Result<Self, Code> {
    // SAFETY: on the JS thread, within this call
    let builder = unsafe { options::builder(env.raw(), options.raw()) }.map_err(thrown)?;
    let config = builder.build().map_err(thrown)?;
    Ok(NativeCache {
      inner: Cache::new(config).map_err(thrown)?,
    })
  }

  /// `submit(call, key, tenant?, json?, ttlSeconds?)` bound to this cache: the answer, or
  /// `undefined` when the call is queued for `flush`; a rate-limit decision answered on the spot
  /// is written into `decisionSlot` and answered `true`, and who answered an answer given on the
  /// spot into its element 5 when it has 6 (see `src/napi/calls.rs`).
  #[napi(
    catch_unwind,
    ts_args_type = "decisionSlot: Float64Array",
    ts_return_type = "(call: Call, key?: string, tenant?: string, ...args: Array<string | number | undefined>) => unknown"
  )]
  pub fn submit_function(&self, env: Env, decision_slot: Unknown) -> Result<Raw> {
    calls::submit_function(&env, &self.inner, decision_slot.raw())
  }

  /// Sends the queued calls in chunks of about `chunkSize`: `[answers promise, positions |
  /// null, ...]`, two elements per chunk (empty when nothing is queued); an array of answers
  /// says who answered in `served` when not all were Redis's.
  #[napi(catch_unwind, ts_return_type = "Array<Promise<unknown[]> | Uint32Array | null>")]
  pub fn flush(&self, env: Env, chunk_size: u32) -> Result<Raw> {
    calls::flush(&env, &self.inner, chunk_size)
  }

  /// `health()` as JSON: a live check within `commandTimeoutMs`; never fails.
  #[napi]
  pub async fn health(&self) -> Result<String> {
    to_json(&report::health(&self.inner).await)
  }

  /// `metrics()` as JSON; no I/O.
  #[napi(catch_unwind)]
  pub fn metrics(&self) -> Result<String> {
    to_json(&report::metrics(&self.inner))
  }

  /// `tenant(id).metrics()` as JSON; no I/O.
  #[napi(catch_unwind)]
  pub fn tenant_metrics(&self, tenant: String) -> Result<String> {
    to_json(&report::tenant(&self.inner, &tenant))
  }

  /// Receives every event (`fallback`, `recovered`, `error`); never keeps the process alive.
  #[napi(catch_unwind, ts_args_type = "listener: (event: CacheEvent) => void")]
  pub fn set_event_listener(&self, listener: Function<CacheEvent, ()>) -> Result<()> {
    self.inner.set_event_sink(Arc::new(JsEventSink::new(listener)?));
    Ok(())
  }

  /// Starts a simulated outage (`refuse` or `hang`) or ends it (`none`).
  #[napi(catch_unwind)]
  pub fn simulate_outage(&self, mode: OutageMode) {
    let mode = match mode {
      OutageMode::Refuse => Simulation::Refuse,
      OutageMode::Hang => Simulation::Hang,
      OutageMode::None => Simulation::None,
    };
    // in the runtime: an outage starts the recovery task
    within_runtime_if_available(|| self.inner.simulate_outage(mode));
  }

  /// Closes after one attempt (within `commandTimeoutMs`) to replay the outage journal;
  /// resolves with how many journaled operations could not be replayed. The JS layer calls it
  /// once every call made before `close()` settled. Idempotent.
  #[napi]
  pub async fn close(&self) -> Result<f64> {
    let dropped = self.inner.close().await;
    // the answers kept for the next batch to free: there may be no next batch
    super::text::spent::free();
    Ok(dropped as f64)
  }
}
