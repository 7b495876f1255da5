#![deny(clippy::all)]
//! ferrocache: one cache object for Node.js sessions and query results, over
//! Redis, with an in-process store that takes over when Redis fails.
//!
//! # Architecture
//! - `lib.rs` (this file) is the napi boundary only: JS options become a
//!   [`config::ConfigBuilder`], calls go to [`cache::Cache`], core errors become JS
//!   errors with a stable `code`. No cache logic lives here.
//! - The core ([`cache`], [`config`], [`keys`], [`store`], [`failover`],
//!   [`error`]) never touches napi and is tested by `cargo test` without Node.
//! - Values cross the boundary as JSON text: the JS wrapper (`index.js`) runs
//!   V8's `JSON.stringify`/`JSON.parse` once per value, so every read is a fresh
//!   copy and Redis holds plain UTF-8 JSON any client can read.
//!
//! # Failure model
//! See [`failover`]: Redis calls have a budget; outages are served by the
//! in-process store ([`store::memory`]), bounded in bytes.

pub mod breaker;
pub mod cache;
pub mod config;
pub mod error;
pub mod events;
pub mod failover;
pub mod journal;
pub mod keys;
pub mod metrics;
pub mod runtime;
pub mod store;

use std::io::Write;
use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;

use crate::breaker::State;
use crate::cache::{BatchItem, Cache, Mode};
use crate::config::ConfigBuilder;
use crate::events::{Event, EventSink};
use crate::failover::Simulation;
use crate::keys::{Kind, Scope};

/// `err.code` of errors thrown into JavaScript.
pub struct Code(&'static str);

impl AsRef<str> for Code {
  fn as_ref(&self) -> &str {
    self.0
  }
}

fn js_error(e: error::Error) -> napi::Error<Code> {
  napi::Error::new(Code(e.code()), e.to_string())
}

/// What an async method resolves with: the value, or an `Error` object carrying
/// `code`. napi rejects async methods only with its own status codes, so failures
/// resolve as an `Error` that the JS wrapper throws (one `instanceof` per call).
type Settled<T> = Either<T, napi::Error<Code>>;

fn settle<T>(r: error::Result<T>) -> Result<Settled<T>> {
  Ok(settled(r))
}

fn settled<T>(r: error::Result<T>) -> Settled<T> {
  match r {
    Ok(v) => Either::A(v),
    Err(e) => Either::B(js_error(e)),
  }
}

/// A `batchSync` get: the value (or null), or `undefined` = ask Redis (it recovered meanwhile).
type LocalAnswer = Either<Option<String>, ()>;

fn bad_op() -> error::Error {
  error::Error::invalid("batch: unknown operation")
}

/// Decodes the arguments of `batch` (see there), borrowing them; `None` for an unknown op
/// code (answered with ERR_INVALID_ARG). Fails when the argument lengths disagree.
fn batch_ops<'a, S: std::ops::Deref<Target = str>>(
  ops: &'a str,
  keys: &'a [S],
  values: &'a [S],
  ttls: &'a [f64],
  tenants: &'a [S],
) -> Result<Vec<Option<BatchItem<'a>>>> {
  let ops = ops.as_bytes();
  let sets = ops.iter().filter(|op| matches!(op, b's' | b'S')).count();
  // no tenant ids at all: every op is in the manager's own scope
  let scoped = !tenants.is_empty();
  if ops.len() != keys.len() || (scoped && ops.len() != tenants.len()) || values.len() != sets || ttls.len() != sets {
    return Err(napi::Error::new(
      Status::InvalidArg,
      "batch: mismatched argument lengths",
    ));
  }
  let mut set_values = values.iter().zip(ttls);
  Ok(
    ops
      .iter()
      .zip(keys)
      .enumerate()
      .map(|(i, (op, key))| {
        let scope = match tenants.get(i) {
          Some(tenant) if !tenant.is_empty() => Scope::Tenant(tenant),
          _ => Scope::Global,
        };
        let kind = if op.is_ascii_lowercase() {
          Kind::Session
        } else {
          Kind::Query
        };
        match op {
          b'g' | b'G' => Some(BatchItem::Get(scope, kind, key)),
          // lengths checked above: one value and TTL per set
          b's' | b'S' => set_values.next().map(|(json, ttl)| {
            let ttl = if ttl.is_nan() { None } else { Some(*ttl) };
            BatchItem::Set(scope, kind, key, json, ttl)
          }),
          _ => None,
        }
      })
      .collect(),
  )
}

fn kind_of(k: u32) -> error::Result<Kind> {
  Kind::from_u32(k)
}

fn scope(tenant: &Option<String>) -> Scope<'_> {
  match tenant {
    Some(t) => Scope::Tenant(t),
    None => Scope::Global,
  }
}

/// Strings of the synchronous calls (`getSync`/`setSync`, the whole of a `memory://` read
/// or write), converted with fewer passes over the text than napi's `String`:
/// - [`Text`] reads a JS string in one pass, into a reused buffer: napi's `String` asks V8
///   for the UTF-8 length first (a scan of the whole string), then allocates, then copies.
///   [`Texts`] reads a whole array of them into one buffer (the arguments of `batch`).
/// - [`Shared`] hands a stored value back without copying it into a `String` first, as a
///   Latin-1 string (a plain copy into V8) when it is ASCII, else as UTF-8 (decoded by V8).
mod text {
  use std::cell::RefCell;
  use std::ops::Deref;
  use std::ptr;

  use napi::bindgen_prelude::*;
  use napi::sys;

  use crate::keys::Scope;
  use crate::store::memory::Stored;

  /// Buffers kept per thread for reuse, and the largest capacity kept (a 4 MiB value's
  /// buffer is freed, not held).
  const POOL_LEN: usize = 8;
  const POOL_MAX_CAPACITY: usize = 64 * 1024;

  /// Buffers of [`Texts`] kept for reuse on the JS thread, and the largest kept (256 calls
  /// of 4 KB values fill 1 MiB).
  const TEXTS_POOL_LEN: usize = 6;
  const TEXTS_POOL_MAX_CAPACITY: usize = 1 << 20;

  thread_local! {
    static POOL: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
    static TEXTS_POOL: RefCell<Vec<(Vec<u8>, Vec<usize>)>> = const { RefCell::new(Vec::new()) };
  }

  /// `Ok` for `napi_ok`, else an error with napi's status as its code.
  pub(super) fn check(status: sys::napi_status, what: &str) -> Result<()> {
    if status == sys::Status::napi_ok {
      Ok(())
    } else {
      Err(Error::new(Status::from(status), format!("Failed to {what}")))
    }
  }

  /// The UTF-8 text of a JS string argument, valid while the call lasts.
  pub struct Text(Vec<u8>);

  impl Deref for Text {
    type Target = str;

    fn deref(&self) -> &str {
      // SAFETY: written by V8's String::WriteUtf8 with REPLACE_INVALID_UTF8 (lone surrogates
      // become U+FFFD), so valid UTF-8 — the guarantee napi's own `String` relies on.
      unsafe { std::str::from_utf8_unchecked(&self.0) }
    }
  }

  impl Drop for Text {
    fn drop(&mut self) {
      if self.0.capacity() <= POOL_MAX_CAPACITY {
        let buf = std::mem::take(&mut self.0);
        // `try_with`: nothing to do while the thread itself is being torn down
        let _ = POOL.try_with(|pool| {
          let mut pool = pool.borrow_mut();
          if pool.len() < POOL_LEN {
            pool.push(buf);
          }
        });
      }
    }
  }

  impl FromNapiValue for Text {
    unsafe fn from_napi_value(env: sys::napi_env, value: sys::napi_value) -> Result<Self> {
      let mut buf = POOL
        .try_with(|pool| pool.borrow_mut().pop())
        .ok()
        .flatten()
        .unwrap_or_default();
      buf.clear();
      unsafe { append(env, value, &mut buf) }?;
      Ok(Text(buf))
    }
  }

  /// Reads the JS string `value` into `buf` after what it holds already (one pass, see
  /// [`Text`]).
  ///
  /// # Safety
  /// `env` must be the current call's environment (on the JS thread).
  unsafe fn append(env: sys::napi_env, value: sys::napi_value, buf: &mut Vec<u8>) -> Result<()> {
    // the length in UTF-16 code units: O(1), and fails with StringExpected for a non-string
    let mut units = 0;
    check(
      unsafe { sys::napi_get_value_string_utf16(env, value, ptr::null_mut(), 0, &mut units) },
      "convert a JavaScript value into a string",
    )?;
    // one code unit is at most 3 bytes of UTF-8 (a surrogate pair, 2 units, is 4); + V8's NUL
    let room = units * 3 + 1;
    buf.reserve(room);
    let start = buf.len();
    let mut written = 0;
    check(
      unsafe { sys::napi_get_value_string_utf8(env, value, buf.as_mut_ptr().add(start).cast(), room, &mut written) },
      "convert a JavaScript string into UTF-8",
    )?;
    // SAFETY: V8 wrote `written` bytes (< room, the NUL after them) after `start`
    unsafe { buf.set_len(start + written.min(room - 1)) };
    Ok(())
  }

  /// The UTF-8 texts of a JS array of strings, all in one buffer: two allocations per
  /// array instead of one per string (a `batch` reads hundreds of keys and values).
  pub struct Texts {
    buf: Vec<u8>,
    ends: Vec<usize>,
  }

  impl Texts {
    /// Gives the buffers back for the next [`Texts`] read on this thread (the JS thread: a
    /// `batch` hands its arguments back with its answers). Reused, they need no allocation
    /// and no step-by-step growth, and they are not freed by a tokio worker into the JS
    /// thread's malloc arena.
    pub fn recycle(self) {
      if self.buf.capacity() > TEXTS_POOL_MAX_CAPACITY {
        return;
      }
      let _ = TEXTS_POOL.try_with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.len() < TEXTS_POOL_LEN {
          pool.push((self.buf, self.ends));
        }
      });
    }

    /// The texts in order.
    pub fn strs(&self) -> Vec<&str> {
      let mut start = 0;
      self
        .ends
        .iter()
        .map(|&end| {
          // SAFETY: each range was written by V8's String::WriteUtf8 with
          // REPLACE_INVALID_UTF8, so it is valid UTF-8 on its own (see `Text`)
          let text = unsafe { std::str::from_utf8_unchecked(&self.buf[start..end]) };
          start = end;
          text
        })
        .collect()
    }
  }

  impl FromNapiValue for Texts {
    unsafe fn from_napi_value(env: sys::napi_env, value: sys::napi_value) -> Result<Self> {
      let mut len = 0;
      check(
        unsafe { sys::napi_get_array_length(env, value, &mut len) },
        "read an array of strings",
      )?;
      let (mut buf, mut ends) = TEXTS_POOL
        .try_with(|pool| pool.borrow_mut().pop())
        .ok()
        .flatten()
        .unwrap_or_default();
      buf.clear();
      ends.clear();
      ends.reserve(len as usize);
      let mut texts = Texts { buf, ends };
      for i in 0..len {
        let mut element = ptr::null_mut();
        check(
          unsafe { sys::napi_get_element(env, value, i, &mut element) },
          "read an array element",
        )?;
        unsafe { append(env, element, &mut texts.buf) }?;
        texts.ends.push(texts.buf.len());
      }
      Ok(texts)
    }
  }

  /// The scope of an optional tenant id.
  pub fn scope(tenant: &Option<Text>) -> Scope<'_> {
    match tenant {
      Some(t) => Scope::Tenant(t),
      None => Scope::Global,
    }
  }

  /// A value of the in-process store (JSON text) on its way to JavaScript as a new string.
  pub struct Shared(pub Stored);

  impl ToNapiValue for Shared {
    unsafe fn to_napi_value(env: sys::napi_env, val: Self) -> Result<sys::napi_value> {
      unsafe { new_string_of(env, &val.0.text, val.0.ascii) }
    }
  }

  /// The answers of a `batch`, on their way to JavaScript: an array of strings (values read
  /// from Redis, copied as with [`Shared`]), nulls and errors.
  ///
  /// The texts were allocated by tokio workers; freeing them here, on the JS thread, takes
  /// glibc's lock of their arena while those workers allocate from it. Once copied they go to
  /// [`spent`], and the next `batch` frees them on a worker (W1 and W2: ~3 % more calls/s).
  pub struct Answers(pub Vec<super::Settled<Option<String>>>, pub [Texts; 3]);

  impl ToNapiValue for Answers {
    unsafe fn to_napi_value(env: sys::napi_env, val: Self) -> Result<sys::napi_value> {
      let mut array = ptr::null_mut();
      check(
        unsafe { sys::napi_create_array_with_length(env, val.0.len(), &mut array) },
        "create the array of answers",
      )?;
      // converted in place: the worker-allocated vector itself is kept, with its texts
      let (mut answers, buffers) = (val.0, val.1);
      for (i, answer) in answers.iter_mut().enumerate() {
        let value = match answer {
          Either::A(Some(text)) => {
            let value = unsafe { new_string(env, text) }?;
            if text.capacity() > spent::LARGEST {
              drop(std::mem::take(text));
            }
            value
          }
          other => unsafe { ToNapiValue::to_napi_value(env, std::mem::replace(other, Either::A(None))) }?,
        };
        check(
          unsafe { sys::napi_set_element(env, array, i as u32, value) },
          "fill the array of answers",
        )?;
      }
      spent::keep(answers);
      buffers.into_iter().for_each(Texts::recycle);
      Ok(array)
    }
  }

  /// Texts already copied into JavaScript, kept until a tokio worker frees them: at most
  /// [`HELD`] bytes, in texts of at most [`LARGEST`] (larger ones are freed where they are).
  pub mod spent {
    use std::sync::Mutex;

    use napi::Either;

    /// A batch's answers, their texts already copied into JavaScript.
    pub type Answered = Vec<crate::Settled<Option<String>>>;

    /// The largest text kept (a larger one is its own `mmap` or a rare free).
    pub const LARGEST: usize = 64 * 1024;
    /// The most kept at once; past it, texts are freed where they are.
    pub const HELD: usize = 16 << 20;

    struct Kept {
      texts: Vec<Answered>,
      bytes: usize,
    }

    static KEPT: Mutex<Kept> = Mutex::new(Kept {
      texts: Vec::new(),
      bytes: 0,
    });

    /// Keeps `texts` for [`free`] (one short lock per batch, no deallocation while under
    /// [`HELD`]).
    pub fn keep(texts: Answered) {
      let bytes: usize = texts
        .iter()
        .map(|a| match a {
          Either::A(Some(text)) => text.capacity(),
          _ => 0,
        })
        .sum();
      if bytes == 0 {
        return;
      }
      let mut kept = KEPT.lock().unwrap_or_else(|p| p.into_inner());
      if kept.bytes + bytes <= HELD {
        kept.bytes += bytes;
        kept.texts.push(texts);
      }
    }

    /// Frees what was kept (each `batch` calls it on its worker, so what is held is the
    /// answers of the batches since the last one). The list keeps its capacity: `keep`, on
    /// the JS thread, then pushes without growing it.
    pub fn free() {
      let texts: Vec<Answered> = {
        let mut kept = KEPT.lock().unwrap_or_else(|p| p.into_inner());
        kept.bytes = 0;
        kept.texts.drain(..).collect()
      };
      drop(texts);
    }

    /// Bytes held now.
    #[cfg(test)]
    pub fn held() -> usize {
      KEPT.lock().unwrap_or_else(|p| p.into_inner()).bytes
    }
  }

  /// A new JS string of `text`: Latin-1 (a plain copy) when it is ASCII, else from UTF-8.
  ///
  /// # Safety
  /// `env` must be the current call's environment (on the JS thread).
  unsafe fn new_string(env: sys::napi_env, text: &str) -> Result<sys::napi_value> {
    unsafe { new_string_of(env, text, text.is_ascii()) }
  }

  /// [`new_string`] when whether `text` is ASCII is known already.
  ///
  /// # Safety
  /// As [`new_string`].
  unsafe fn new_string_of(env: sys::napi_env, text: &str, ascii: bool) -> Result<sys::napi_value> {
    debug_assert_eq!(ascii, text.is_ascii());
    let mut out = ptr::null_mut();
    let status = if ascii {
      // ASCII is Latin-1 byte for byte: V8 copies it into a one-byte string as is
      unsafe { sys::napi_create_string_latin1(env, text.as_ptr().cast(), text.len() as isize, &mut out) }
    } else {
      unsafe { sys::napi_create_string_utf8(env, text.as_ptr().cast(), text.len() as isize, &mut out) }
    };
    check(status, "convert a stored value into a JavaScript string")?;
    Ok(out)
  }
}

/// `memory://` reads and writes as two plain N-API functions bound to one cache, created by
/// [`NativeCache::local_functions`]. Before the body of a `#[napi]` method runs, napi-rs 3
/// checks the class of `this` and opens a borrow scope (an `Arc<Mutex>` allocation and
/// thread-local bookkeeping): ~0.4 µs of a ~1.1 µs `getSync` (bench/native-calls.js). These
/// functions find their cache in the data pointer N-API hands them: no `this` to check,
/// nothing to allocate. They take the arguments of `getSync`/`setSync`, throw an `Error`
/// with `code` like them, and turn a Rust panic into a thrown `Error` too.
mod local {
  use std::ffi::{c_void, CString};
  use std::panic::{catch_unwind, AssertUnwindSafe};
  use std::ptr;
  use std::sync::Arc;

  use napi::bindgen_prelude::*;
  use napi::sys;

  use super::text::{self, check, Text};
  use crate::cache::Cache;
  use crate::error;
  use crate::keys::Kind;

  /// What a call throws: `code` and message.
  pub struct Failure(String, String);

  impl From<error::Error> for Failure {
    fn from(e: error::Error) -> Self {
      Failure(e.code().into(), e.to_string())
    }
  }

  impl From<napi::Error> for Failure {
    fn from(e: napi::Error) -> Self {
      Failure(e.status.as_ref().into(), e.reason.clone())
    }
  }

  /// A raw value handed back to napi-rs as is.
  pub struct Raw(pub sys::napi_value);

  impl ToNapiValue for Raw {
    unsafe fn to_napi_value(_env: sys::napi_env, val: Self) -> Result<sys::napi_value> {
      Ok(val.0)
    }
  }

  fn c_string(s: String) -> CString {
    CString::new(s.replace('\0', "\\0")).unwrap_or_default()
  }

  /// Runs `body` with the call's first `N` arguments (missing ones are `undefined`) and the
  /// cache of the function; a failure or a panic becomes a thrown JS `Error` with `code`.
  unsafe fn call<const N: usize>(
    env: sys::napi_env,
    info: sys::napi_callback_info,
    body: impl FnOnce(&[sys::napi_value; N], &Cache) -> std::result::Result<sys::napi_value, Failure>,
  ) -> sys::napi_value {
    let run = || -> std::result::Result<sys::napi_value, Failure> {
      let mut argc = N;
      let mut argv = [ptr::null_mut(); N];
      let mut data = ptr::null_mut();
      check(
        unsafe { sys::napi_get_cb_info(env, info, &mut argc, argv.as_mut_ptr(), ptr::null_mut(), &mut data) },
        "read the arguments",
      )?;
      // SAFETY: `data` is the `Arc<Cache>` the function was created with; its finalizer
      // releases it only once the function is collected, so not during a call of it.
      let cache = unsafe { &*(data as *const Cache) };
      body(&argv, cache)
    };
    let failure = match catch_unwind(AssertUnwindSafe(run)) {
      Ok(Ok(value)) => return value,
      Ok(Err(failure)) => failure,
      Err(panic) => {
        let e = napi::bindgen_prelude::panic_to_error(panic);
        Failure(e.status.as_ref().into(), e.reason.clone())
      }
    };
    let (code, message) = (c_string(failure.0), c_string(failure.1));
    unsafe { sys::napi_throw_error(env, code.as_ptr(), message.as_ptr()) };
    ptr::null_mut()
  }

  unsafe fn kind(env: sys::napi_env, v: sys::napi_value) -> std::result::Result<Kind, Failure> {
    let k = unsafe { u32::from_napi_value(env, v) }?;
    Ok(Kind::from_u32(k)?)
  }

  unsafe fn optional<T: FromNapiValue>(env: sys::napi_env, v: sys::napi_value) -> Result<Option<T>> {
    unsafe { Option::<T>::from_napi_value(env, v) }
  }

  /// `get(kindId, key, tenant?)`: the JSON text or null.
  unsafe extern "C" fn get(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    unsafe {
      call::<3>(env, info, |args, cache| {
        let kind = kind(env, args[0])?;
        let key = Text::from_napi_value(env, args[1])?;
        let tenant: Option<Text> = optional(env, args[2])?;
        let value = cache.get_local(text::scope(&tenant), kind, &key)?;
        Ok(Option::<text::Shared>::to_napi_value(env, value.map(text::Shared))?)
      })
    }
  }

  /// `set(kindId, key, json, ttlSeconds?, tenant?)`: undefined.
  unsafe extern "C" fn set(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    unsafe {
      call::<5>(env, info, |args, cache| {
        let kind = kind(env, args[0])?;
        let key = Text::from_napi_value(env, args[1])?;
        let json = Text::from_napi_value(env, args[2])?;
        let ttl: Option<f64> = optional(env, args[3])?;
        let tenant: Option<Text> = optional(env, args[4])?;
        cache.set_local(text::scope(&tenant), kind, &key, &json, ttl)?;
        Ok(<()>::to_napi_value(env, ())?)
      })
    }
  }

  /// Test hook: a function whose body panics inside [`call`].
  pub unsafe extern "C" fn panic_for_tests(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    unsafe { call::<0>(env, info, |_, _| panic!("ferrocache test panic (local)")) }
  }

  unsafe extern "C" fn release(_env: sys::napi_env, data: *mut c_void, _hint: *mut c_void) {
    // SAFETY: the pointer `function` made with `Arc::into_raw`, released once
    drop(unsafe { Arc::from_raw(data as *const Cache) });
  }

  /// A JS function named `name` running `cb` with `cache`.
  pub unsafe fn function(
    env: sys::napi_env,
    name: &str,
    cb: sys::napi_callback,
    cache: &Arc<Cache>,
  ) -> Result<sys::napi_value> {
    let data = Arc::into_raw(cache.clone()) as *mut c_void;
    let mut f = ptr::null_mut();
    let made = check(
      unsafe { sys::napi_create_function(env, name.as_ptr().cast(), name.len() as isize, cb, data, &mut f) },
      "create a function",
    )
    .and_then(|()| {
      check(
        unsafe { sys::napi_add_finalizer(env, f, data, Some(release), ptr::null_mut(), ptr::null_mut()) },
        "add a finalizer",
      )
    });
    if made.is_err() {
      unsafe { release(env, data, ptr::null_mut()) };
    }
    made.map(|()| f)
  }

  pub type Callback = unsafe extern "C" fn(sys::napi_env, sys::napi_callback_info) -> sys::napi_value;

  /// `{ get, set }` bound to `cache`.
  pub fn functions(env: &Env, cache: &Arc<Cache>) -> Result<Raw> {
    let env = env.raw();
    unsafe {
      let mut object = ptr::null_mut();
      check(sys::napi_create_object(env, &mut object), "create an object")?;
      for (name, cb) in [(c"get", Some(get as Callback)), (c"set", Some(set as Callback))] {
        let f = function(env, name.to_str().unwrap_or_default(), cb, cache)?;
        check(
          sys::napi_set_named_property(env, object, name.as_ptr(), f),
          "set a property",
        )?;
      }
      Ok(Raw(object))
    }
  }
}

/// Default TTLs in seconds.
#[napi(object)]
pub struct TtlOptions {
  /// Session TTL in seconds; default 3600. Positive and finite.
  pub session: Option<f64>,
  /// Query-result TTL in seconds; default 300. Positive and finite.
  pub query: Option<f64>,
}

/// Retry policy of one Redis call, within `commandTimeoutMs`.
#[napi(object)]
pub struct RetryOptions {
  /// Attempts including the first; default 3, range 1..=100.
  pub attempts: Option<f64>,
  /// First backoff delay in ms (doubles per attempt, with jitter); default 20.
  pub base_delay_ms: Option<f64>,
  /// Largest backoff delay in ms, also the longest pause before Redis is tried again; default 2000.
  pub max_delay_ms: Option<f64>,
}

/// The in-process store.
#[napi(object)]
pub struct FallbackOptions {
  /// Serve from memory while Redis fails; default true. When false, calls reject with `ERR_REDIS_UNAVAILABLE`.
  pub enabled: Option<bool>,
  /// Byte budget of the in-process store (keys + values + 320 bytes per entry, 480 for a tenant's); default 64 MiB.
  pub max_bytes: Option<f64>,
  /// The most one tenant may hold in the in-process store; past it, the tenant's own
  /// cold entries are evicted. Default: 1/8 of `maxBytes` (raised to fit the largest value).
  pub max_bytes_per_tenant: Option<f64>,
}

/// TLS for `rediss://` (server certificate and name are always checked).
#[napi(object)]
pub struct TlsOptions {
  /// PEM file of the CA that signs the server certificate; default: the system's trusted roots.
  pub ca_file: Option<String>,
  /// PEM client certificate for mutual TLS (with `keyFile`).
  pub cert_file: Option<String>,
  /// PEM client private key for mutual TLS (with `certFile`).
  pub key_file: Option<String>,
}

/// Size limits, enforced before anything is written (`ERR_TOO_LARGE`).
#[napi(object)]
pub struct LimitOptions {
  /// Longest key, session id or prefix in UTF-8 bytes; default 4096.
  pub max_key_bytes: Option<f64>,
  /// Largest value in bytes of JSON text; default 4 MiB, at most 512 MiB.
  pub max_value_bytes: Option<f64>,
}

/// A Redis Cluster (instead of `url`).
#[napi(object)]
pub struct ClusterOptions {
  /// Seed node URLs, `redis://[user:password@]host:port` or `rediss://` (TLS, with `tls` files);
  /// at least one. All must agree on credentials and TLS; the other nodes are discovered.
  pub nodes: Vec<String>,
}

/// A master monitored by Redis Sentinel (instead of `url`).
#[napi(object)]
pub struct SentinelOptions {
  /// Sentinel URLs, `redis://[user:password@]host:port` (the sentinels' own credentials)
  /// or `rediss://`; at least one.
  pub nodes: Vec<String>,
  /// The master name the sentinels monitor.
  pub master_name: String,
  /// ACL user of the master and replicas; default none.
  pub username: Option<String>,
  /// Password of the master and replicas; default none.
  pub password: Option<String>,
  /// Database number on the master; default 0.
  pub db: Option<f64>,
  /// TLS to the master and replicas (with `tls` files); default false.
  pub tls: Option<bool>,
}

/// Options of `createCacheManager`.
#[napi(object)]
pub struct CacheOptions {
  /// `redis://[user:password@]host:port[/db]`, or `memory://` for the in-process store alone.
  /// Default `redis://127.0.0.1:6379` (the JS layer reads `REDIS_URL` first).
  pub url: Option<String>,
  /// Namespace written before every key; default `fc:`.
  pub key_prefix: Option<String>,
  /// Default TTLs in seconds.
  pub ttl: Option<TtlOptions>,
  /// A Redis call slower than this (ms) counts as a failure and is served from memory; default 250.
  pub command_timeout_ms: Option<f64>,
  /// Deadline for opening a connection (ms); default 1000.
  pub connect_timeout_ms: Option<f64>,
  /// Retry policy within the call budget.
  pub retry: Option<RetryOptions>,
  /// The in-process store.
  pub fallback: Option<FallbackOptions>,
  /// Key and value size limits.
  pub limits: Option<LimitOptions>,
  /// TLS files for `rediss://` URLs.
  pub tls: Option<TlsOptions>,
  /// Count hits, misses, errors and Redis latency for `metrics()`; default true.
  /// `false` skips all counting (its cost is measured by bench/metrics-overhead.js).
  pub metrics: Option<bool>,
  /// Index query results in Redis so `invalidateCache` costs the keys it removes, not the
  /// keyspace (single server and Sentinel; a Cluster always scans). Default true.
  pub query_index: Option<bool>,
  /// Tenants with their own counters in `tenant(id).metrics()`; the rest are aggregated. Default 1000.
  pub tenant_metrics_limit: Option<f64>,
  /// A Redis Cluster to use instead of `url` (exclusive with `url` and `sentinel`).
  pub cluster: Option<ClusterOptions>,
  /// A Sentinel-monitored master to use instead of `url` (exclusive with `url` and `cluster`).
  pub sentinel: Option<SentinelOptions>,
}

impl From<CacheOptions> for ConfigBuilder {
  fn from(o: CacheOptions) -> Self {
    ConfigBuilder {
      url: o.url,
      key_prefix: o.key_prefix,
      session_ttl_secs: o.ttl.as_ref().and_then(|t| t.session),
      query_ttl_secs: o.ttl.as_ref().and_then(|t| t.query),
      command_timeout_ms: o.command_timeout_ms,
      connect_timeout_ms: o.connect_timeout_ms,
      retry_attempts: o.retry.as_ref().and_then(|r| r.attempts),
      retry_base_delay_ms: o.retry.as_ref().and_then(|r| r.base_delay_ms),
      retry_max_delay_ms: o.retry.as_ref().and_then(|r| r.max_delay_ms),
      fallback_enabled: o.fallback.as_ref().and_then(|f| f.enabled),
      fallback_max_bytes: o.fallback.as_ref().and_then(|f| f.max_bytes),
      fallback_max_bytes_per_tenant: o.fallback.as_ref().and_then(|f| f.max_bytes_per_tenant),
      max_key_bytes: o.limits.as_ref().and_then(|l| l.max_key_bytes),
      max_value_bytes: o.limits.as_ref().and_then(|l| l.max_value_bytes),
      metrics: o.metrics,
      query_index: o.query_index,
      tenant_metrics_limit: o.tenant_metrics_limit,
      tls: o
        .tls
        .map(|t| config::TlsFiles {
          ca_file: t.ca_file,
          cert_file: t.cert_file,
          key_file: t.key_file,
        })
        .unwrap_or_default(),
      cluster_nodes: o.cluster.map(|c| c.nodes),
      sentinel: o.sentinel.map(|s| config::SentinelOptions {
        nodes: s.nodes,
        master_name: s.master_name,
        username: s.username,
        password: s.password,
        db: s.db,
        tls: s.tls,
      }),
    }
  }
}

/// The native half of `CacheManager`. Applications use the `CacheManager`
/// class of `index.js`, which validates arguments and does the JSON.
/// `kind`: 0 = session, 1 = query. `tenant`: a tenant id, or undefined for the manager's own keys.
#[napi]
pub struct NativeCache {
  inner: Arc<Cache>,
}

#[napi]
impl NativeCache {
  /// Validates `options` and builds the cache; no I/O.
  #[napi(constructor, catch_unwind)]
  pub fn new(options: Option<CacheOptions>) -> Result<Self, Code> {
    let builder: ConfigBuilder = options.map(Into::into).unwrap_or_default();
    let config = builder.build().map_err(js_error)?;
    Ok(NativeCache {
      inner: Cache::new(config).map_err(js_error)?,
    })
  }

  /// True for `memory://`: the `*Sync` methods may be used.
  #[napi(getter)]
  pub fn memory_only(&self) -> bool {
    self.inner.is_memory_only()
  }

  /// `'redis'` or `'memory'`: which store serves calls now.
  #[napi(getter, ts_return_type = "'redis' | 'memory'")]
  pub fn mode(&self) -> &'static str {
    mode_name(self.inner.mode())
  }

  /// True when calls fall back to the in-process store during an outage.
  #[napi(getter)]
  pub fn fallback_enabled(&self) -> bool {
    self.inner.config().fallback().enabled
  }

  /// True once `close()` was called.
  #[napi(getter)]
  pub fn closed(&self) -> bool {
    self.inner.is_closed()
  }

  /// The Redis URL with its password redacted, or `memory://`.
  #[napi(getter)]
  pub fn url(&self) -> String {
    self.inner.config().backend().redacted_url()
  }

  /// The last Redis failure (password-free), or null.
  #[napi(getter)]
  pub fn last_error(&self) -> Option<String> {
    self.inner.last_error()
  }

  /// Reads the JSON text of a key.
  #[napi(ts_return_type = "Promise<string | null | Error>")]
  pub async fn get(&self, kind_id: u32, key: String, tenant: Option<String>) -> Result<Settled<Option<String>>> {
    settle(async { self.inner.get(scope(&tenant), kind_of(kind_id)?, &key).await }.await)
  }

  /// Writes JSON text under a key; `ttl_seconds` undefined = the kind's default.
  #[napi(ts_return_type = "Promise<undefined | Error>")]
  pub async fn set(
    &self,
    kind_id: u32,
    key: String,
    json: String,
    ttl_seconds: Option<f64>,
    tenant: Option<String>,
  ) -> Result<Settled<()>> {
    settle(
      async {
        self
          .inner
          .set(scope(&tenant), kind_of(kind_id)?, &key, &json, ttl_seconds)
          .await
      }
      .await,
    )
  }

  /// Runs the gets and sets of one event-loop tick in one crossing and one task:
  /// `ops[i]` is `g`/`G` (get session/query) or `s`/`S` (set session/query) for
  /// `keys[i]` in scope `tenants[i]` (`""` = the manager's own keys; `tenants` empty = all
  /// of them the manager's own, so a tick without tenants sends no ids); the n-th set
  /// takes `values[n]` and `ttls[n]` (NaN = the kind's default). Resolves with one
  /// result per op, in order: the JSON text (or null) of a get, null for a set, or
  /// an Error with `code`. The ops run concurrently, like separate calls.
  #[napi(
    ts_args_type = "ops: string, keys: Array<string>, values: Array<string>, ttls: Array<number>, tenants: Array<string>",
    ts_return_type = "Promise<Array<string | null | Error>>"
  )]
  pub async fn batch(
    &self,
    ops: String,
    keys: text::Texts,
    values: text::Texts,
    ttls: Vec<f64>,
    tenants: text::Texts,
  ) -> Result<text::Answers> {
    text::spent::free();
    let answers = {
      let (keys, values, tenants) = (keys.strs(), values.strs(), tenants.strs());
      let ops = batch_ops(&ops, &keys, &values, &ttls, &tenants)?;
      let items: Vec<BatchItem> = ops.iter().flatten().copied().collect();
      // boxed: ~10 KB of state, allocated here on the worker rather than inside the future
      // napi-rs allocates on the JS thread for each call (and a worker frees)
      let mut done = Box::pin(self.inner.run_batch(&items)).await.into_iter();
      ops
        .iter()
        .map(|op| settled(op.and_then(|_| done.next()).unwrap_or_else(|| Err(bad_op()))))
        .collect()
    };
    // the argument buffers go back to the JS thread with the answers, for reuse there
    Ok(text::Answers(answers, [keys, values, tenants]))
  }

  /// `batch` answered on the calling thread, for while `servesLocally`: no thread
  /// hop (outage writes are journaled as on the asynchronous path). A get answers
  /// `undefined` when Redis recovered meanwhile and must be asked (send it to `batch`).
  #[napi(
    catch_unwind,
    ts_args_type = "ops: string, keys: Array<string>, values: Array<string>, ttls: Array<number>, tenants: Array<string>",
    ts_return_type = "Array<string | null | undefined | Error>"
  )]
  pub fn batch_sync(
    &self,
    ops: String,
    keys: text::Texts,
    values: text::Texts,
    ttls: Vec<f64>,
    tenants: text::Texts,
  ) -> Result<Vec<Settled<LocalAnswer>>> {
    let (keys, values, tenants) = (keys.strs(), values.strs(), tenants.strs());
    let ops = batch_ops(&ops, &keys, &values, &ttls, &tenants)?;
    let cache = &self.inner;
    let answer = |op| match op {
      Some(BatchItem::Get(scope, kind, key)) => cache.get_outage_local(scope, kind, key).map(|v| match v {
        Some(v) => Either::A(v.map(|s| s.to_string())),
        None => Either::B(()),
      }),
      Some(BatchItem::Set(scope, kind, key, json, ttl)) => {
        cache.set_local(scope, kind, key, json, ttl).map(|()| Either::A(None))
      }
      None => Err(bad_op()),
    };
    Ok(within_runtime_if_available(|| {
      ops.into_iter().map(|op| settled(answer(op))).collect()
    }))
  }

  /// The keys of every live entry of the kind in the scope (SCAN; see `Cache::keys`), sorted.
  #[napi(ts_return_type = "Promise<string[] | Error>")]
  pub async fn keys(&self, kind_id: u32, tenant: Option<String>) -> Result<Settled<Vec<String>>> {
    settle(async { self.inner.keys(scope(&tenant), kind_of(kind_id)?).await }.await)
  }

  /// Deletes a key; true if it existed.
  #[napi(ts_return_type = "Promise<boolean | Error>")]
  pub async fn delete(&self, kind_id: u32, key: String, tenant: Option<String>) -> Result<Settled<bool>> {
    settle(async { self.inner.delete(scope(&tenant), kind_of(kind_id)?, &key).await }.await)
  }

  /// Removes every key of the kind starting with `prefix` (every key when `all`); returns the count.
  #[napi(ts_return_type = "Promise<number | Error>")]
  pub async fn invalidate(
    &self,
    kind_id: u32,
    prefix: String,
    all: bool,
    tenant: Option<String>,
  ) -> Result<Settled<i64>> {
    settle(
      async {
        Ok(
          self
            .inner
            .invalidate(scope(&tenant), kind_of(kind_id)?, &prefix, all)
            .await? as i64,
        )
      }
      .await,
    )
  }

  /// True while `getSync`/`setSync` answer for Redis mode too: the breaker is open
  /// and fallback on, so calls are served from memory without a thread hop.
  #[napi(getter)]
  pub fn serves_locally(&self) -> bool {
    self.inner.serves_locally()
  }

  /// `get` on the calling thread: memory://, or Redis mode while `servesLocally`.
  #[napi(
    catch_unwind,
    ts_args_type = "kindId: number, key: string, tenant?: string | undefined | null",
    ts_return_type = "string | null"
  )]
  pub fn get_sync(
    &self,
    kind_id: u32,
    key: text::Text,
    tenant: Option<text::Text>,
  ) -> Result<Option<text::Shared>, Code> {
    let v = self
      .inner
      .get_local(text::scope(&tenant), kind_of(kind_id).map_err(js_error)?, &key)
      .map_err(js_error)?;
    Ok(v.map(text::Shared))
  }

  /// `set` on the calling thread: memory://, or Redis mode while `servesLocally`
  /// (journaled; the recovery task is started in napi's runtime if need be).
  #[napi(
    catch_unwind,
    ts_args_type = "kindId: number, key: string, json: string, ttlSeconds?: number | undefined | null, tenant?: string | undefined | null"
  )]
  pub fn set_sync(
    &self,
    kind_id: u32,
    key: text::Text,
    json: text::Text,
    ttl_seconds: Option<f64>,
    tenant: Option<text::Text>,
  ) -> Result<(), Code> {
    let kind = kind_of(kind_id).map_err(js_error)?;
    within_runtime_if_available(|| {
      self
        .inner
        .set_local(text::scope(&tenant), kind, &key, &json, ttl_seconds)
    })
    .map_err(js_error)
  }

  /// `memory://` only: `{ get, set }`, `getSync` and `setSync` as plain functions bound to
  /// this cache (no method-call overhead; see the `local` module).
  #[napi(
    catch_unwind,
    ts_return_type = "{ get(kindId: number, key: string, tenant?: string | undefined | null): string | null; set(kindId: number, key: string, json: string, ttlSeconds?: number | undefined | null, tenant?: string | undefined | null): void }"
  )]
  pub fn local_functions(&self, env: Env) -> Result<local::Raw, Code> {
    if !self.inner.is_memory_only() {
      return Err(js_error(error::Error::invalid("localFunctions: memory:// only")));
    }
    local::functions(&env, &self.inner).map_err(|e| napi::Error::new(Code("GenericFailure"), e.reason.clone()))
  }

  /// Test hook (not part of the API): a function made like `localFunctions`'s that panics,
  /// to prove that the panic becomes a thrown JS error instead of aborting Node.
  #[doc(hidden)]
  #[napi(catch_unwind, js_name = "__localPanicForTests", ts_return_type = "() => void")]
  pub fn local_panic_for_tests(&self, env: Env) -> Result<local::Raw> {
    let f = unsafe {
      local::function(
        env.raw(),
        "panic",
        Some(local::panic_for_tests as local::Callback),
        &self.inner,
      )
    }?;
    Ok(local::Raw(f))
  }

  /// `delete` on the calling thread (memory:// only).
  #[napi(catch_unwind)]
  pub fn delete_sync(&self, kind_id: u32, key: String, tenant: Option<String>) -> Result<bool, Code> {
    self
      .inner
      .delete_local(scope(&tenant), kind_of(kind_id).map_err(js_error)?, &key)
      .map_err(js_error)
  }

  /// `invalidate` on the calling thread (memory:// only).
  #[napi(catch_unwind)]
  pub fn invalidate_sync(&self, kind_id: u32, prefix: String, all: bool, tenant: Option<String>) -> Result<i64, Code> {
    let n = self
      .inner
      .invalidate_local(scope(&tenant), kind_of(kind_id).map_err(js_error)?, &prefix, all)
      .map_err(js_error)?;
    Ok(n as i64)
  }

  /// Entries, bytes and byte budget of the in-process store.
  #[napi(catch_unwind)]
  pub fn memory_stats(&self) -> MemoryStats {
    let s = self.inner.memory_stats();
    MemoryStats {
      entries: s.entries as f64,
      bytes: s.bytes as f64,
      max_bytes: s.max_bytes as f64,
    }
  }

  /// Closes after one attempt (within `commandTimeoutMs`) to replay what the outage journal
  /// holds; resolves with how many journaled operations could not be replayed. The JS layer
  /// calls it once every call made before `close()` has settled. Idempotent.
  #[napi]
  pub async fn close(&self) -> Result<f64> {
    let dropped = self.inner.close_gracefully().await;
    // the answers kept for the next batch to free (`text::spent`): there may be no next batch
    text::spent::free();
    Ok(dropped as f64)
  }

  /// Receives every event (`fallback`, `recovered`, `error`). The callback never
  /// keeps the process alive (weak threadsafe function).
  #[napi(catch_unwind, ts_args_type = "listener: (event: CacheEvent) => void")]
  pub fn set_event_listener(&self, listener: Function<CacheEvent, ()>) -> Result<()> {
    let tsfn = listener
      .build_threadsafe_function::<CacheEvent>()
      .callee_handled::<false>()
      .weak::<true>()
      .build()?;
    self.inner.set_event_sink(Arc::new(JsEventSink(tsfn)));
    Ok(())
  }

  /// Starts a simulated outage (`'refuse'` or `'hang'`) or ends it (`'none'`).
  #[napi(catch_unwind, ts_args_type = "mode: 'refuse' | 'hang' | 'none'")]
  pub fn simulate_outage(&self, mode: String) -> Result<(), Code> {
    let mode = match mode.as_str() {
      "refuse" => Simulation::Refuse,
      "hang" => Simulation::Hang,
      "none" => Simulation::None,
      other => {
        return Err(js_error(error::Error::invalid(format!(
          "mode must be 'refuse' or 'hang', got '{other}'"
        ))))
      }
    };
    self.inner.simulate_outage(mode);
    Ok(())
  }

  /// Failover state: mode, breaker state, journal depth, activations, time in memory mode.
  #[napi(catch_unwind)]
  pub fn failover_status(&self) -> FailoverStatus {
    let s = self.inner.failover_status();
    FailoverStatus {
      mode: mode_name(s.mode).into(),
      breaker: match s.state {
        State::Closed => "closed",
        State::Open => "open",
        State::HalfOpen => "half-open",
      }
      .into(),
      journal_depth: s.journal_depth as f64,
      fallback_activations: s.fallback_activations as f64,
      memory_mode_ms: s.memory_mode_ms as f64,
      replayed: s.replayed as f64,
      last_error: s.last_error,
      mode_age_ms: self.inner.mode_age_ms() as f64,
      writes_refused: s.writes_refused,
    }
  }

  /// Counters, latency percentiles, fallback store size and failover state; no I/O.
  #[napi(catch_unwind)]
  pub fn metrics(&self) -> NativeMetrics {
    let m = self.inner.metrics();
    let f = self.inner.failover_status();
    let mem = self.inner.memory_stats();
    let hist = self.inner.metrics_ref().latency();
    // buckets and count from one pass, so +Inf always equals the count
    let (latency_buckets, latency_total) = hist.cumulative(&LATENCY_BOUNDS_US);
    let kind = |k: metrics::KindStats| KindMetrics {
      hits: k.hits as f64,
      misses: k.misses as f64,
      hit_rate: k.hit_rate(),
      sets: k.sets as f64,
      deletes: k.deletes as f64,
    };
    NativeMetrics {
      mode: mode_name(f.mode).into(),
      hits: m.hits() as f64,
      misses: m.misses() as f64,
      hit_rate: m.hit_rate(),
      session: kind(m.session),
      query: kind(m.query),
      invalidations: m.invalidations as f64,
      invalidated_entries: m.invalidated_entries as f64,
      errors: m.errors as f64,
      timeouts: m.timeouts as f64,
      write_refusals: m.write_refusals as f64,
      fallback_activations: f.fallback_activations as f64,
      memory_mode_ms: f.memory_mode_ms as f64,
      journal_depth: f.journal_depth as f64,
      latency_ms: vec![m.latency_ms[0], m.latency_ms[1], m.latency_ms[2], m.latency_ms[3]],
      latency_count: latency_total as f64,
      latency_sum_ms: hist.sum_us() as f64 / 1000.0,
      latency_buckets: latency_buckets.into_iter().map(|c| c as f64).collect(),
      fallback_bytes: mem.bytes as f64,
      fallback_entries: mem.entries as f64,
      fallback_max_bytes: mem.max_bytes as f64,
      tenants: {
        let t = self.inner.metrics_ref().tenants();
        NativeTenantsSummary {
          tracked: t.tracked.len() as f64,
          limit: t.limit as f64,
          other: counts(&t.other),
        }
      },
      topology: self.inner.last_topology().map(native_topology),
    }
  }

  /// One tenant's counters and in-process store usage; no I/O.
  #[napi(catch_unwind)]
  pub fn tenant_metrics(&self, tenant: String) -> NativeTenantMetrics {
    let (c, usage) = self.inner.tenant_stats(&tenant);
    self.tenant_metrics_of(tenant, c, usage)
  }

  /// Every tenant tracked one by one (at most `tenantMetricsLimit`), sorted by id.
  #[napi(catch_unwind)]
  pub fn all_tenant_metrics(&self) -> Vec<NativeTenantMetrics> {
    let snapshot = self.inner.metrics_ref().tenants();
    snapshot
      .tracked
      .into_iter()
      .map(|(tenant, c)| {
        let (_, usage) = self.inner.tenant_stats(&tenant);
        self.tenant_metrics_of(tenant, Some(c), usage)
      })
      .collect()
  }

  /// The live part of `health()`: PING (and Redis memory when it answers) plus
  /// mode age and recent PING percentiles. Never fails while open.
  #[napi]
  pub async fn health_check(&self) -> Result<NativeHealth> {
    let (check, topology) = tokio::join!(self.inner.health_check(), self.inner.topology());
    let pings = self.inner.ping_percentiles();
    Ok(NativeHealth {
      connected: check.ping.is_ok(),
      latency_ms: check.ping.as_ref().ok().map(|d| d.as_secs_f64() * 1000.0),
      error: check.ping.err().map(|e| e.to_string()),
      used_memory: check.used_memory.map(|b| b as f64),
      ping_ms: pings.map(|p| p.to_vec()),
      topology: topology.map(native_topology),
    })
  }

  /// Live round trip to Redis within the command timeout: latency in ms, or an
  /// Error with the (password-free) cause. `memory://` answers 0.
  #[napi(ts_return_type = "Promise<number | Error>")]
  pub async fn ping(&self) -> Result<Settled<f64>> {
    settle(self.inner.ping().await.map(|d| d.as_secs_f64() * 1000.0))
  }
}

impl NativeCache {
  fn tenant_metrics_of(
    &self,
    tenant: String,
    c: Option<metrics::TenantCounts>,
    usage: store::memory::TenantUsage,
  ) -> NativeTenantMetrics {
    let TenantCountsJs {
      hits,
      misses,
      hit_rate,
      invalidated,
    } = counts(&c.unwrap_or_default());
    NativeTenantMetrics {
      tenant,
      tracked: c.is_some(),
      hits,
      misses,
      hit_rate,
      invalidated,
      fallback_bytes: usage.bytes as f64,
      fallback_entries: usage.entries as f64,
      fallback_max_bytes: self.inner.tenant_max_bytes() as f64,
    }
  }
}

fn counts(c: &metrics::TenantCounts) -> TenantCountsJs {
  TenantCountsJs {
    hits: c.hits as f64,
    misses: c.misses as f64,
    hit_rate: c.hit_rate(),
    invalidated: c.invalidated as f64,
  }
}

/// One tenant's metrics.
#[napi(object)]
pub struct NativeTenantMetrics {
  /// The tenant id.
  pub tenant: String,
  /// False when the tenant is past `tenantMetricsLimit`: its counters are in the
  /// aggregate (`metrics().tenants.other`) and read 0 here; the fallback figures are exact.
  pub tracked: bool,
  /// Reads that found a value.
  pub hits: f64,
  /// Reads that found nothing.
  pub misses: f64,
  /// hits / (hits + misses), 0 without reads.
  pub hit_rate: f64,
  /// Entries removed by the tenant's invalidations.
  pub invalidated: f64,
  /// Bytes the tenant holds in the in-process store.
  pub fallback_bytes: f64,
  /// Entries the tenant holds in the in-process store.
  pub fallback_entries: f64,
  /// The most one tenant may hold there (`fallback.maxBytesPerTenant`).
  pub fallback_max_bytes: f64,
}

/// Counters of one tenant or of the untracked ones.
#[napi(object)]
pub struct TenantCountsJs {
  /// Reads that found a value.
  pub hits: f64,
  /// Reads that found nothing.
  pub misses: f64,
  /// hits / (hits + misses), 0 without reads.
  pub hit_rate: f64,
  /// Entries removed by invalidations.
  pub invalidated: f64,
}

/// The per-tenant metrics' bounds.
#[napi(object)]
pub struct NativeTenantsSummary {
  /// Tenants with their own counters.
  pub tracked: f64,
  /// `tenantMetricsLimit`.
  pub limit: f64,
  /// The tenants past the limit, summed.
  pub other: TenantCountsJs,
}

/// Upper bounds (µs) of the Prometheus latency buckets: 0.1 ms .. 2.5 s.
const LATENCY_BOUNDS_US: [u64; 14] = [
  100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
];

/// The live part of `health()`.
#[napi(object)]
pub struct NativeHealth {
  /// The PING answered.
  pub connected: bool,
  /// Its round trip (ms).
  pub latency_ms: Option<f64>,
  /// Why it failed (password-free).
  pub error: Option<String>,
  /// Redis `used_memory` (bytes) when it answered.
  pub used_memory: Option<f64>,
  /// p50, p95, p99 (ms) of recent PINGs, or null before the first.
  pub ping_ms: Option<Vec<f64>>,
  /// The nodes and whether each answered a PING just now; null for `memory://`.
  pub topology: Option<NativeTopology>,
}

/// One Redis node.
#[napi(object)]
pub struct NativeNode {
  /// `host:port`.
  pub address: String,
  /// Its role.
  #[napi(ts_type = "'master' | 'replica' | 'sentinel'")]
  pub role: String,
  /// It answered a PING within `commandTimeoutMs`.
  pub reachable: bool,
}

/// The Redis deployment behind the cache.
#[napi(object)]
pub struct NativeTopology {
  /// `single` (one server), `cluster` or `sentinel`.
  #[napi(ts_type = "'single' | 'cluster' | 'sentinel'")]
  pub kind: String,
  /// Every known node (for Sentinel: the sentinels, the current master and its replicas).
  pub nodes: Vec<NativeNode>,
}

fn native_topology(t: store::redis::Topology) -> NativeTopology {
  NativeTopology {
    kind: t.kind.into(),
    nodes: t
      .nodes
      .into_iter()
      .map(|n| NativeNode {
        address: n.address,
        role: n.role.name().into(),
        reachable: n.reachable,
      })
      .collect(),
  }
}

/// Counters of one kind.
#[napi(object)]
pub struct KindMetrics {
  /// Reads that found a value.
  pub hits: f64,
  /// Reads that found nothing.
  pub misses: f64,
  /// hits / (hits + misses), 0 without reads.
  pub hit_rate: f64,
  /// Successful writes.
  pub sets: f64,
  /// Successful deletes.
  pub deletes: f64,
}

/// Everything `metrics()` and the Prometheus exposition need, in one crossing.
#[napi(object)]
pub struct NativeMetrics {
  /// Which store serves calls now.
  #[napi(ts_type = "'redis' | 'memory'")]
  pub mode: String,
  /// Reads that found a value, both kinds.
  pub hits: f64,
  /// Reads that found nothing, both kinds.
  pub misses: f64,
  /// hits / (hits + misses), 0 without reads.
  pub hit_rate: f64,
  /// Session counters.
  pub session: KindMetrics,
  /// Query-result counters.
  pub query: KindMetrics,
  /// invalidateCache/invalidateAll calls.
  pub invalidations: f64,
  /// Entries they removed.
  pub invalidated_entries: f64,
  /// Failed Redis calls.
  pub errors: f64,
  /// Failed Redis calls that ran out of budget.
  pub timeouts: f64,
  /// Writes Redis refused for capacity or role (kept in memory and journaled instead).
  pub write_refusals: f64,
  /// Times the manager switched to memory mode.
  pub fallback_activations: f64,
  /// Total time in memory mode (ms).
  pub memory_mode_ms: f64,
  /// Outage operations waiting for replay.
  pub journal_depth: f64,
  /// p50, p95, p99, max of Redis round trips (ms)
  pub latency_ms: Vec<f64>,
  /// Successful Redis round trips measured.
  pub latency_count: f64,
  /// Their total time (ms).
  pub latency_sum_ms: f64,
  /// cumulative counts at `latencyBoundsMs()`
  pub latency_buckets: Vec<f64>,
  /// Bytes held by the in-process store.
  pub fallback_bytes: f64,
  /// Entries held by the in-process store.
  pub fallback_entries: f64,
  /// The in-process store's byte budget.
  pub fallback_max_bytes: f64,
  /// Per-tenant counters: how many tenants are tracked, the limit, the aggregate of the rest.
  pub tenants: NativeTenantsSummary,
  /// The nodes as of the last `health()` check (no I/O here); null before it or for `memory://`.
  pub topology: Option<NativeTopology>,
}

/// Upper bounds (ms) of the latency buckets in `NativeCache.metrics().latencyBuckets`.
#[napi]
pub fn latency_bounds_ms() -> Vec<f64> {
  LATENCY_BOUNDS_US.iter().map(|us| *us as f64 / 1000.0).collect()
}

fn mode_name(mode: Mode) -> &'static str {
  match mode {
    Mode::Redis => "redis",
    Mode::Memory => "memory",
  }
}

/// An event for `on(...)` listeners.
#[napi(object)]
pub struct CacheEvent {
  /// `'fallback' | 'recovered' | 'error'`
  #[napi(js_name = "type", ts_type = "'fallback' | 'recovered' | 'error'")]
  pub event_type: String,
  /// fallback: the failure that opened the breaker.
  pub cause: Option<String>,
  /// fallback: `timeout | connection | misconfiguration | simulated`; error: `misconfiguration | replay | write-refused`.
  pub kind: Option<String>,
  /// recovered: how long the outage lasted (ms).
  pub outage_ms: Option<f64>,
  /// recovered: journal operations applied to Redis.
  pub replayed: Option<f64>,
  /// error: what went wrong.
  pub message: Option<String>,
}

impl From<Event> for CacheEvent {
  fn from(e: Event) -> Self {
    let empty = |t: &str| CacheEvent {
      event_type: t.into(),
      cause: None,
      kind: None,
      outage_ms: None,
      replayed: None,
      message: None,
    };
    match e {
      Event::Fallback { cause, kind } => CacheEvent {
        cause: Some(cause),
        kind: Some(kind.into()),
        ..empty("fallback")
      },
      Event::Recovered { outage_ms, replayed } => CacheEvent {
        outage_ms: Some(outage_ms as f64),
        replayed: Some(replayed as f64),
        ..empty("recovered")
      },
      Event::Error { message, kind } => CacheEvent {
        message: Some(message),
        kind: Some(kind.into()),
        ..empty("error")
      },
    }
  }
}

struct JsEventSink(ThreadsafeFunction<CacheEvent, (), CacheEvent, Status, false, true>);

impl EventSink for JsEventSink {
  fn emit(&self, event: Event) {
    // NonBlocking: never wait for the JS thread; a closing environment just drops it
    let _ = self.0.call(event.into(), ThreadsafeFunctionCallMode::NonBlocking);
  }
}

/// Failover state of a manager.
#[napi(object)]
pub struct FailoverStatus {
  /// `'redis' | 'memory'`
  #[napi(ts_type = "'redis' | 'memory'")]
  pub mode: String,
  /// `'closed' | 'open' | 'half-open'`
  #[napi(ts_type = "'closed' | 'open' | 'half-open'")]
  pub breaker: String,
  /// Operations made during an outage, waiting for replay to Redis.
  pub journal_depth: f64,
  /// Times the manager switched to memory mode.
  pub fallback_activations: f64,
  /// Total time in memory mode (ms), the current outage included.
  pub memory_mode_ms: f64,
  /// Journal operations replayed to Redis since the last recovery.
  pub replayed: f64,
  /// The last Redis failure (password-free), or null.
  pub last_error: Option<String>,
  /// How long the current mode has held (ms).
  pub mode_age_ms: f64,
  /// Redis refuses writes (capacity or role): they are kept in memory and journaled.
  pub writes_refused: bool,
}

/// Size of the in-process store.
#[napi(object)]
pub struct MemoryStats {
  /// Entries held.
  pub entries: f64,
  /// Bytes charged to the budget.
  pub bytes: f64,
  /// The byte budget.
  pub max_bytes: f64,
}

/// Test hook (not part of the API): panics inside a synchronous native call, to
/// prove that a Rust panic becomes a thrown JS error instead of aborting Node.
#[doc(hidden)]
#[napi(catch_unwind, js_name = "__panicForTests")]
pub fn panic_for_tests() {
  panic!("ferrocache test panic (sync)");
}

/// Test hook (not part of the API): panics inside an async native call, to prove
/// that it becomes a rejected promise instead of aborting Node.
#[doc(hidden)]
#[napi(js_name = "__asyncPanicForTests")]
pub async fn async_panic_for_tests() -> Result<()> {
  panic!("ferrocache test panic (async)");
}

/// Gives napi-rs the process's runtime ([`runtime`]) before any `async` call runs. An
/// invalid `FERROCACHE_WORKER_THREADS` is reported on stderr and the default used; if the
/// runtime cannot be built, napi-rs builds its own on first use.
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

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn spent_texts_are_held_up_to_a_bound_and_freed_by_the_next_batch() {
    use text::spent;
    spent::free();
    let text = |n| Either::A(Some("x".repeat(n)));
    spent::keep(vec![text(1000), text(3000), Either::A(None)]);
    assert!(spent::held() >= 4000);
    // past the bound, texts are freed where they are, not held
    let big: spent::Answered = (0..spent::HELD / spent::LARGEST + 1)
      .map(|_| text(spent::LARGEST))
      .collect();
    spent::keep(big);
    assert!(spent::held() < 8000, "held {}", spent::held());
    spent::free();
    assert_eq!(spent::held(), 0);
  }

  #[test]
  fn batch_ops_pairs_each_set_with_its_value_and_scopes_by_tenant() {
    let (keys, values, ttls) = (["a", "b", "c"], ["{}"], [f64::NAN]);
    let ops = batch_ops("gSx", &keys, &values, &ttls, &["", "t", ""]).unwrap();
    assert!(matches!(
      ops[0],
      Some(BatchItem::Get(Scope::Global, Kind::Session, "a"))
    ));
    assert!(matches!(
      ops[1],
      Some(BatchItem::Set(Scope::Tenant("t"), Kind::Query, "b", "{}", None))
    ));
    assert!(ops[2].is_none(), "an unknown op code is answered on its own");
  }

  #[test]
  fn batch_ops_without_tenant_ids_puts_every_op_in_the_managers_scope() {
    let ops = batch_ops::<&str>("gs", &["a", "b"], &["1"], &[60.0], &[]).unwrap();
    assert!(matches!(
      ops[0],
      Some(BatchItem::Get(Scope::Global, Kind::Session, "a"))
    ));
    assert!(matches!(
      ops[1],
      Some(BatchItem::Set(Scope::Global, Kind::Session, "b", "1", Some(t))) if t == 60.0
    ));
    // but tenant ids that are given must be one per op
    assert!(batch_ops("gs", &["a", "b"], &["1"], &[60.0], &["t"]).is_err());
    assert!(
      batch_ops("gs", &["a", "b"], &[], &[], &["", ""]).is_err(),
      "a set without its value"
    );
  }
}
