//! Test hooks, compiled only with the `test-hooks` feature (the test build, never the
//! published binary): panics inside each kind of native call, to prove they become JS errors
//! instead of aborting Node.
// Called from JavaScript only: the unit-test build registers no exports.
#![allow(dead_code)]

use napi::bindgen_prelude::*;
use napi_derive::napi;

use super::cache::NativeCache;
use super::calls::{self, Raw};

/// Panics inside a synchronous native call.
#[napi(catch_unwind, js_name = "__panicForTests")]
pub fn panic_for_tests() {
  panic!("ferrocache test panic (sync)");
}

/// Panics inside an async native call.
#[napi(js_name = "__asyncPanicForTests")]
pub async fn async_panic_for_tests() -> Result<()> {
  panic!("ferrocache test panic (async)");
}

/// A function made like `submit` whose body panics.
#[napi(catch_unwind, js_name = "__submitPanicForTests", ts_return_type = "() => unknown")]
pub fn submit_panic_for_tests(env: Env, native: &NativeCache) -> Result<Raw> {
  calls::panicking_function(&env, &native.inner)
}
