//! The call protocol across the boundary, one shape for every data call:
//! - `submit(call, key, tenant?, json?, ttlSeconds?)`, a plain N-API function bound to one
//!   cache (no `this` to check, nothing allocated per call), hands the call to
//!   [`Cache::submit`]. It returns the call's answer when the cache answered on the spot, or
//!   `undefined` when the call is queued for the tick's batch to Redis.
//! - `flush(chunkSize)` takes the queued calls and returns, per chunk, the promise of its
//!   answers and the positions of its calls among those queued (`null`: all, in order).
//! - An answer is the value (JSON text or `null` of a get, `null` of a set, a boolean, a
//!   number, an array of keys, a rate-limit decision as `[allowed, limit, remaining, resetMs,
//!   retryAfterMs]`) or an `Error` with `code` ([`super::error::value`]); a Rust panic becomes
//!   such an `Error` too. A decision `submit` answers on the spot is written into the caller's
//!   `Float64Array(5)` instead (bound with the function), and `submit` answers `true`: a flood
//!   of refusals makes no array per call.
//! - Who answered ([`Served`]: 0 Redis, 1 the near cache, 2 the in-process store), for
//!   tracing: `submit` writes it for an answer it gives into element 5 of that array when it
//!   has 6; an array of answers has a `served` property (a `Uint8Array`, one per answer) when
//!   any was not answered by Redis, and none otherwise (no cost in the common case).

use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi::sys;
use napi_derive::napi;

use super::error::{self, check};
use super::text::{self, spent, Text};
use crate::cache::{Action, Answer, Cache, Chunk, Flushed, Ran, RateArgs, Request, Served, Submitted, Text as Value};
use crate::keys::{EntryType, Scope};
use crate::ratelimit::Decision;

/// What a data call does, and to which type of entry.
#[napi]
#[derive(Debug, PartialEq, Eq)]
pub enum Call {
  /// `getSession(key)`.
  GetSession,
  /// `getCachedQuery(key)`.
  GetQuery,
  /// `setSession(key, json, ttl?)`.
  SetSession,
  /// `cacheQueryResult(key, json, ttl?)`.
  SetQuery,
  /// `deleteSession(key)`.
  DeleteSession,
  /// `deleteCachedQuery(key)`.
  DeleteQuery,
  /// `invalidateCache(prefix)`.
  InvalidateQueries,
  /// `invalidateAll()`.
  InvalidateAllQueries,
  /// `deleteAllSessions()`.
  DeleteAllSessions,
  /// `listSessionIds()`.
  ListSessions,
  /// `rateLimit(key, { limit, windowMs, burst?, cost? })`.
  RateLimit,
}

impl Call {
  fn parts(self) -> (Action, EntryType) {
    use EntryType::{Query, Session};
    match self {
      Call::GetSession => (Action::Get, Session),
      Call::GetQuery => (Action::Get, Query),
      Call::SetSession => (Action::Set, Session),
      Call::SetQuery => (Action::Set, Query),
      Call::DeleteSession => (Action::Delete, Session),
      Call::DeleteQuery => (Action::Delete, Query),
      Call::InvalidateQueries => (Action::Invalidate, Query),
      Call::InvalidateAllQueries => (Action::InvalidateAll, Query),
      Call::DeleteAllSessions => (Action::InvalidateAll, Session),
      Call::ListSessions => (Action::ListKeys, Session),
      // the entry type plays no part in a rate-limit check
      Call::RateLimit => (Action::RateLimit, Query),
    }
  }
}

/// A value handed back to napi-rs as is.
pub struct Raw(pub sys::napi_value);

impl ToNapiValue for Raw {
  unsafe fn to_napi_value(_env: sys::napi_env, val: Self) -> Result<sys::napi_value> {
    Ok(val.0)
  }
}

/// The answers of a chunk, on their way to JavaScript (an array, in the chunk's order, with
/// `served` when any was not answered by Redis).
pub struct Answers(pub Ran);

impl ToNapiValue for Answers {
  unsafe fn to_napi_value(env: sys::napi_env, val: Self) -> Result<sys::napi_value> {
    let Ran { answers, served } = val.0;
    let mut array = ptr::null_mut();
    check(
      unsafe { sys::napi_create_array_with_length(env, answers.len(), &mut array) },
      "create the array of answers",
    )?;
    if served.iter().any(|s| *s != Served::Redis) {
      let codes = Uint8Array::new(served.into_iter().map(|s| s as u8).collect());
      let codes = unsafe { Uint8Array::to_napi_value(env, codes) }?;
      check(
        unsafe { sys::napi_set_named_property(env, array, c"served".as_ptr(), codes) },
        "say who answered",
      )?;
    }
    let mut read = Vec::new();
    for (i, answer) in answers.into_iter().enumerate() {
      let value = unsafe { answer_value(env, &answer) }?;
      check(
        unsafe { sys::napi_set_element(env, array, i as u32, value) },
        "fill the array of answers",
      )?;
      // texts read from Redis were allocated by a worker: a worker frees them (`spent`)
      if let Ok(Answer::Value(Some(Value::Owned(text)))) = answer {
        if text.capacity() <= spent::LARGEST {
          read.push(text);
        }
      }
    }
    spent::keep(read);
    Ok(array)
  }
}

/// One answer as a JavaScript value.
///
/// # Safety
/// `env` must be the current call's environment (on the JS thread).
unsafe fn answer_value(env: sys::napi_env, answer: &crate::error::Result<Answer>) -> Result<sys::napi_value> {
  unsafe {
    match answer {
      Ok(Answer::Value(Some(t))) => text::new_string(env, t, t.is_ascii()),
      Ok(Answer::Value(None) | Answer::Done) => Null::to_napi_value(env, Null),
      Ok(Answer::Existed(b)) => bool::to_napi_value(env, *b),
      Ok(Answer::Count(n)) => f64::to_napi_value(env, *n as f64),
      Ok(Answer::Keys(keys)) => Vec::<String>::to_napi_value(env, keys.clone()),
      Ok(Answer::Limit(d)) => {
        let fields = decision_fields(d);
        let mut array = ptr::null_mut();
        check(
          sys::napi_create_array_with_length(env, fields.len(), &mut array),
          "create a decision",
        )?;
        for (i, field) in fields.into_iter().enumerate() {
          check(
            sys::napi_set_element(env, array, i as u32, f64::to_napi_value(env, field)?),
            "fill a decision",
          )?;
        }
        Ok(array)
      }
      Err(e) => error::value(env, e),
    }
  }
}

/// Runs `body`; an error or a panic becomes an `Error` value (returned, not thrown).
unsafe fn guarded(env: sys::napi_env, body: impl FnOnce() -> Result<sys::napi_value>) -> sys::napi_value {
  let failure = match catch_unwind(AssertUnwindSafe(body)) {
    Ok(Ok(value)) => return value,
    Ok(Err(e)) => e,
    Err(panic) => napi::bindgen_prelude::panic_to_error(panic),
  };
  unsafe { error::coded(env, failure.status.as_ref(), &failure.reason) }.unwrap_or(ptr::null_mut())
}

unsafe fn is_missing(env: sys::napi_env, value: sys::napi_value) -> Result<bool> {
  let mut kind = 0;
  check(
    unsafe { sys::napi_typeof(env, value, &mut kind) },
    "read an argument's type",
  )?;
  Ok(kind == sys::ValueType::napi_undefined || kind == sys::ValueType::napi_null)
}

/// A decision as JavaScript reads it: `[allowed (1 or 0), limit, remaining, resetMs, retryAfterMs]`.
fn decision_fields(d: &Decision) -> [f64; 5] {
  [
    d.allowed as u8 as f64,
    d.limit as f64,
    d.remaining as f64,
    d.reset_ms as f64,
    d.retry_after_ms as f64,
  ]
}

/// `submit(call, key, tenant?, json?, ttlSeconds?)`, or for a rate-limit check
/// `submit(call, key, tenant?, limit, windowMs, burst?, cost)`: see the module documentation.
unsafe extern "C" fn submit(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
  unsafe {
    guarded(env, || {
      let mut argc = 7;
      let mut argv = [ptr::null_mut(); 7];
      let mut data = ptr::null_mut();
      check(
        sys::napi_get_cb_info(env, info, &mut argc, argv.as_mut_ptr(), ptr::null_mut(), &mut data),
        "read the arguments",
      )?;
      // SAFETY: `data` is the `Bound` the function was made with; its finalizer releases it
      // only once the function is collected, so not during a call of it.
      let bound = &*(data as *const Bound);
      let cache = &*bound.cache;
      let present = |i: usize| -> Result<bool> { Ok(i < argc && !is_missing(env, argv[i])?) };
      let (action, entry) = Call::from_napi_value(env, argv[0])?.parts();
      let key = match action {
        Action::InvalidateAll | Action::ListKeys => None,
        _ => Some(Text::read(env, argv[1])?),
      };
      let tenant = if present(2)? {
        Some(Text::read(env, argv[2])?)
      } else {
        None
      };
      let json = if action == Action::Set && present(3)? {
        Some(Text::read(env, argv[3])?)
      } else {
        None
      };
      let ttl_secs = if action == Action::Set && present(4)? {
        Some(f64::from_napi_value(env, argv[4])?)
      } else {
        None
      };
      let number = |i: usize| -> Result<f64> {
        match present(i)? {
          true => f64::from_napi_value(env, argv[i]),
          false => Ok(f64::NAN),
        }
      };
      let rate = match action {
        Action::RateLimit => Some(RateArgs {
          limit: number(3)?,
          window_ms: number(4)?,
          burst: present(5)?.then(|| number(5)).transpose()?,
          cost: number(6)?,
        }),
        _ => None,
      };
      let request = Request {
        action,
        entry,
        scope: match &tenant {
          Some(t) => Scope::Tenant(t),
          None => Scope::Global,
        },
        key: key.as_deref().unwrap_or(""),
        value: json.as_deref(),
        ttl_secs,
        rate,
      };
      // in the runtime: a call served during an outage may start the recovery task
      let submitted = match cache.is_memory_only() {
        true => cache.submit(request),
        false => within_runtime_if_available(|| cache.submit(request)),
      };
      let served = match &submitted {
        Submitted::Answered(_, served) => *served,
        Submitted::Queued => return <()>::to_napi_value(env, ()),
      };
      if bound.slot_len > 5 {
        // SAFETY: the slot is a live Float64Array of `slot_len` (held by `slot_ref`), on the JS
        // thread
        *bound.slot.add(5) = served as u8 as f64;
      }
      match submitted {
        Submitted::Queued => <()>::to_napi_value(env, ()),
        Submitted::Answered(Ok(Answer::Limit(d)), _) if !bound.slot.is_null() => {
          // SAFETY: the slot is a live Float64Array of at least 5 (held by `slot_ref`), on the
          // JS thread
          let slot = std::slice::from_raw_parts_mut(bound.slot, 5);
          slot.copy_from_slice(&decision_fields(&d));
          bool::to_napi_value(env, true)
        }
        Submitted::Answered(answer, _) => answer_value(env, &answer),
      }
    })
  }
}

/// What a `submit` function is bound to.
struct Bound {
  cache: Arc<Cache>,
  /// The data of the caller's `Float64Array(5)` (or 6: who answered, at 5) for what `submit`
  /// answers on the spot, or null.
  slot: *mut f64,
  /// Its length (0 when null).
  slot_len: usize,
  /// Keeps that array alive as long as the function.
  slot_ref: sys::napi_ref,
}

unsafe extern "C" fn release(env: sys::napi_env, data: *mut c_void, _hint: *mut c_void) {
  // SAFETY: the pointer `function` made with `Box::into_raw`, released once
  let bound = unsafe { Box::from_raw(data as *mut Bound) };
  if !bound.slot_ref.is_null() {
    unsafe { sys::napi_delete_reference(env, bound.slot_ref) };
  }
}

/// A plain N-API function.
pub type Callback = unsafe extern "C" fn(sys::napi_env, sys::napi_callback_info) -> sys::napi_value;

/// The data and length of a `Float64Array` of at least 5 elements, and a reference holding it.
unsafe fn decision_slot(env: sys::napi_env, array: sys::napi_value) -> Result<(*mut f64, usize, sys::napi_ref)> {
  let (mut kind, mut length, mut data) = (0, 0usize, ptr::null_mut());
  let (mut buffer, mut offset) = (ptr::null_mut(), 0usize);
  check(
    unsafe { sys::napi_get_typedarray_info(env, array, &mut kind, &mut length, &mut data, &mut buffer, &mut offset) },
    "read the decision slot",
  )?;
  if kind != sys::TypedarrayType::float64_array || length < 5 {
    return Err(Error::new(
      Status::InvalidArg,
      "the decision slot must be a Float64Array(5)",
    ));
  }
  let mut reference = ptr::null_mut();
  check(
    unsafe { sys::napi_create_reference(env, array, 1, &mut reference) },
    "hold the decision slot",
  )?;
  Ok((data as *mut f64, length, reference))
}

/// A JS function named `name` running `cb` bound to `cache` (and, when given, the decision
/// slot `slot`, a `Float64Array` of 5 or 6).
pub fn function(env: &Env, name: &str, cb: Callback, cache: &Arc<Cache>, slot: Option<sys::napi_value>) -> Result<Raw> {
  let env = env.raw();
  let (slot, slot_len, slot_ref) = match slot {
    Some(array) => unsafe { decision_slot(env, array) }?,
    None => (ptr::null_mut(), 0, ptr::null_mut()),
  };
  let data = Box::into_raw(Box::new(Bound {
    cache: cache.clone(),
    slot,
    slot_len,
    slot_ref,
  })) as *mut c_void;
  let mut f = ptr::null_mut();
  let made = check(
    unsafe { sys::napi_create_function(env, name.as_ptr().cast(), name.len() as isize, Some(cb), data, &mut f) },
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
  made.map(|()| Raw(f))
}

/// The `submit` function of `cache`, writing the decisions it answers on the spot (and, in a
/// slot of 6, who answered) into `slot`.
pub fn submit_function(env: &Env, cache: &Arc<Cache>, slot: sys::napi_value) -> Result<Raw> {
  function(env, "submit", submit, cache, Some(slot))
}

/// Takes the queued calls: the answers already given (an array, first) and the calls for Redis
/// in chunks of about `size`, each started on the runtime (a promise of its answers): the JS
/// array `[answers or promise, positions or null, ...]`, two elements per chunk.
pub fn flush(env: &Env, cache: &Arc<Cache>, size: u32) -> Result<Raw> {
  let Flushed { ready, chunks } = cache.take_queued(size as usize);
  let raw_env = env.raw();
  let mut array = ptr::null_mut();
  let count = chunks.len() + usize::from(ready.is_some());
  check(
    unsafe { sys::napi_create_array_with_length(raw_env, count * 2, &mut array) },
    "create the array of chunks",
  )?;
  let mut at = 0;
  let mut set = |value: sys::napi_value| {
    let done = check(
      unsafe { sys::napi_set_element(raw_env, array, at, value) },
      "fill the array of chunks",
    );
    at += 1;
    done
  };
  if let Some((answers, positions)) = ready {
    set(unsafe { Answers::to_napi_value(raw_env, Answers(answers)) }?)?;
    set(unsafe { Uint32Array::to_napi_value(raw_env, Uint32Array::new(positions)) }?)?;
  }
  for Chunk { ops, positions } in chunks {
    let cache = cache.clone();
    let promise = env.spawn_future(async move {
      spent::free();
      // boxed: the state of a run is allocated by the worker that polls it, not in the task
      // napi-rs allocates on the JS thread
      Ok(Answers(Box::pin(cache.run(ops)).await))
    })?;
    let positions = match positions {
      Some(p) => unsafe { Uint32Array::to_napi_value(raw_env, Uint32Array::new(p)) }?,
      None => unsafe { Null::to_napi_value(raw_env, Null) }?,
    };
    set(promise.raw())?;
    set(positions)?;
  }
  Ok(Raw(array))
}

/// Test hook: a function made like `submit` whose body panics.
#[cfg(feature = "test-hooks")]
#[allow(dead_code)] // called from the hooks' napi export only
pub fn panicking_function(env: &Env, cache: &Arc<Cache>) -> Result<Raw> {
  unsafe extern "C" fn panics(env: sys::napi_env, _info: sys::napi_callback_info) -> sys::napi_value {
    unsafe { guarded(env, || panic!("ferrocache test panic (submit)")) }
  }
  function(env, "panic", panics, cache, None)
}
