//! The one conversion of core errors for JavaScript: an `Error` whose `code` is the core
//! error's stable code ([`crate::error::codes`]). Thrown (options, constructor) or handed over
//! as a value among the answers; `lib/errors.js` gives it the class its code calls for, in
//! the caller's realm.

use std::ptr;

use napi::bindgen_prelude::*;
use napi::sys;

use crate::error::Error as CoreError;

/// `err.code` of an error thrown into JavaScript.
pub struct Code(pub &'static str);

impl AsRef<str> for Code {
  fn as_ref(&self) -> &str {
    self.0
  }
}

/// A core error to throw.
pub fn thrown(e: CoreError) -> napi::Error<Code> {
  napi::Error::new(Code(e.code()), e.to_string())
}

/// A core error as a JavaScript `Error` value with `code` (not thrown).
///
/// # Safety
/// `env` must be the current call's environment (on the JS thread).
pub unsafe fn value(env: sys::napi_env, e: &CoreError) -> Result<sys::napi_value> {
  unsafe { coded(env, e.code(), &e.to_string()) }
}

/// A JavaScript `Error` value with `code` and `message`: a core error's, or napi's own status
/// (an argument of the wrong type, a caught panic).
///
/// # Safety
/// As [`value`].
pub unsafe fn coded(env: sys::napi_env, code: &str, message: &str) -> Result<sys::napi_value> {
  let code = unsafe { <&str as ToNapiValue>::to_napi_value(env, code) }?;
  let message = unsafe { <&str as ToNapiValue>::to_napi_value(env, message) }?;
  let mut out = ptr::null_mut();
  check(
    unsafe { sys::napi_create_error(env, code, message, &mut out) },
    "create an error",
  )?;
  Ok(out)
}

/// `Ok` for `napi_ok`, else an error with napi's status as its code.
pub fn check(status: sys::napi_status, what: &str) -> Result<()> {
  if status == sys::Status::napi_ok {
    Ok(())
  } else {
    Err(napi::Error::new(Status::from(status), format!("Failed to {what}")))
  }
}
