//! Strings across the boundary, with fewer passes over the text than napi's `String`:
//! - [`Text`] reads a JS string in one pass into a reused buffer (napi's `String` asks V8 for
//!   the UTF-8 length first, a scan of the whole string, then allocates, then copies).
//! - [`new_string`] hands a value to JavaScript as a Latin-1 string (a plain copy into V8)
//!   when it is ASCII, else as UTF-8 (decoded by V8).
//! - [`spent`] keeps texts already copied into JavaScript until a tokio worker frees them.

use std::cell::RefCell;
use std::ops::Deref;
use std::ptr;

use napi::bindgen_prelude::*;
use napi::sys;

use super::error::check;

/// Buffers kept per thread for reuse, and the largest capacity kept (a 4 MiB value's buffer
/// is freed, not held).
const POOL_LEN: usize = 8;
const POOL_MAX_CAPACITY: usize = 64 * 1024;

thread_local! {
  static POOL: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
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

impl Text {
  /// Reads the JS string `value` (fails with `StringExpected` for another type).
  ///
  /// # Safety
  /// `env` must be the current call's environment (on the JS thread).
  pub unsafe fn read(env: sys::napi_env, value: sys::napi_value) -> Result<Self> {
    let mut buf = POOL
      .try_with(|pool| pool.borrow_mut().pop())
      .ok()
      .flatten()
      .unwrap_or_default();
    buf.clear();
    // the length in UTF-16 code units: O(1), and fails with StringExpected for a non-string
    let mut units = 0;
    check(
      unsafe { sys::napi_get_value_string_utf16(env, value, ptr::null_mut(), 0, &mut units) },
      "convert a JavaScript value into a string",
    )?;
    // one code unit is at most 3 bytes of UTF-8 (a surrogate pair, 2 units, is 4); + V8's NUL
    let room = units * 3 + 1;
    buf.reserve(room);
    let mut written = 0;
    check(
      unsafe { sys::napi_get_value_string_utf8(env, value, buf.as_mut_ptr().cast(), room, &mut written) },
      "convert a JavaScript string into UTF-8",
    )?;
    // SAFETY: V8 wrote `written` bytes (< room, the NUL after them)
    unsafe { buf.set_len(written.min(room - 1)) };
    Ok(Text(buf))
  }
}

/// A new JS string of `text`: Latin-1 (a plain copy) when it is ASCII, else from UTF-8.
///
/// # Safety
/// `env` must be the current call's environment (on the JS thread).
pub unsafe fn new_string(env: sys::napi_env, text: &str, ascii: bool) -> Result<sys::napi_value> {
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

/// Texts already copied into JavaScript, kept until a tokio worker frees them: at most
/// [`HELD`](spent::HELD) bytes, in texts of at most [`LARGEST`](spent::LARGEST) (larger ones
/// are freed where they are).
///
/// The texts of Redis replies were allocated by tokio workers; freeing them on the JS thread
/// takes glibc's lock of their arena while those workers allocate from it. Once copied they
/// wait here, and the next batch frees them on a worker (W1 and W2: ~3 % more calls/s).
pub mod spent {
  use std::sync::Mutex;

  /// The largest text kept (a larger one is its own `mmap` or a rare free).
  pub const LARGEST: usize = 64 * 1024;
  /// The most kept at once; past it, texts are freed where they are.
  pub const HELD: usize = 16 << 20;

  struct Kept {
    texts: Vec<Vec<String>>,
    bytes: usize,
  }

  static KEPT: Mutex<Kept> = Mutex::new(Kept {
    texts: Vec::new(),
    bytes: 0,
  });

  /// Keeps `texts` for [`free`] (one short lock per batch, no deallocation while under
  /// [`HELD`]).
  pub fn keep(texts: Vec<String>) {
    let bytes: usize = texts.iter().map(String::capacity).sum();
    if bytes == 0 {
      return;
    }
    let mut kept = KEPT.lock().unwrap_or_else(|p| p.into_inner());
    if kept.bytes + bytes <= HELD {
      kept.bytes += bytes;
      kept.texts.push(texts);
    }
  }

  /// Frees what was kept (each batch calls it on its worker, so what is held is the answers
  /// of the batches since the last one). The list keeps its capacity: `keep`, on the JS
  /// thread, then pushes without growing it.
  pub fn free() {
    let texts: Vec<Vec<String>> = {
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

  #[cfg(test)]
  mod tests {
    use super::*;

    #[test]
    fn texts_are_held_up_to_a_bound_and_freed_by_the_next_batch() {
      free();
      keep(vec!["x".repeat(1000), "x".repeat(3000)]);
      assert!(held() >= 4000);
      // past the bound, texts are freed where they are, not held
      keep((0..HELD / LARGEST + 1).map(|_| "x".repeat(LARGEST)).collect());
      assert!(held() < 8000, "held {}", held());
      free();
      assert_eq!(held(), 0);
    }
  }
}
