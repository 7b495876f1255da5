//! The options of `createCacheManager`, checked in one place: every name against the list of
//! known options (an unknown one is refused, naming the closest known one), every value
//! against its type in the option's own terms; then [`ConfigBuilder::build`] checks ranges and
//! combinations. `undefined` and `null` mean "the default".

use std::collections::HashMap;
use std::ptr;

use napi::bindgen_prelude::*;
use napi::sys;

use super::error::check;
use crate::config::{ConfigBuilder, SentinelOptions, TlsFiles};
use crate::error::{Error as CoreError, Result as CoreResult};

/// What an option holds.
#[derive(Clone, Copy)]
enum Shape {
  /// A string (well-formed UTF-16).
  Str,
  /// A number, in the unit named.
  Num(&'static str),
  Bool,
  /// An array of strings.
  Strings,
  /// An object of these options.
  Obj(&'static [Opt]),
}

/// One known option.
struct Opt(&'static str, Shape);

use Shape::*;

const TTL: &[Opt] = &[Opt("session", Num("seconds")), Opt("query", Num("seconds"))];
const RETRY: &[Opt] = &[
  Opt("attempts", Num("attempts")),
  Opt("baseDelayMs", Num("milliseconds")),
  Opt("maxDelayMs", Num("milliseconds")),
];
const FALLBACK: &[Opt] = &[
  Opt("enabled", Bool),
  Opt("maxBytes", Num("bytes")),
  Opt("maxBytesPerTenant", Num("bytes")),
];
const NEAR_CACHE: &[Opt] = &[
  Opt("enabled", Bool),
  Opt("maxBytes", Num("bytes")),
  Opt("failSafeMs", Num("milliseconds")),
];
const LIMITS: &[Opt] = &[Opt("maxKeyBytes", Num("bytes")), Opt("maxValueBytes", Num("bytes"))];
const TLS: &[Opt] = &[Opt("caFile", Str), Opt("certFile", Str), Opt("keyFile", Str)];
const CLUSTER: &[Opt] = &[Opt("nodes", Strings)];
const SENTINEL: &[Opt] = &[
  Opt("nodes", Strings),
  Opt("masterName", Str),
  Opt("username", Str),
  Opt("password", Str),
  Opt("db", Num("database number")),
  Opt("tls", Bool),
];
/// Every option of `createCacheManager`.
const OPTIONS: &[Opt] = &[
  Opt("url", Str),
  Opt("keyPrefix", Str),
  Opt("ttl", Obj(TTL)),
  Opt("commandTimeoutMs", Num("milliseconds")),
  Opt("connectTimeoutMs", Num("milliseconds")),
  Opt("retry", Obj(RETRY)),
  Opt("fallback", Obj(FALLBACK)),
  Opt("nearCache", Obj(NEAR_CACHE)),
  Opt("limits", Obj(LIMITS)),
  Opt("tls", Obj(TLS)),
  Opt("metrics", Bool),
  Opt("queryIndex", Bool),
  Opt("tenantMetricsLimit", Num("tenants")),
  Opt("cluster", Obj(CLUSTER)),
  Opt("sentinel", Obj(SENTINEL)),
];

/// A value read from the options.
enum Given {
  Str(String),
  Num(f64),
  Bool(bool),
  Strings(Vec<String>),
}

/// The options read: dotted path (`ttl.session`) to value; absent = default.
#[derive(Default)]
struct Read(HashMap<String, Given>);

impl Read {
  fn str(&mut self, path: &str) -> Option<String> {
    match self.0.remove(path) {
      Some(Given::Str(s)) => Some(s),
      _ => None,
    }
  }
  fn num(&mut self, path: &str) -> Option<f64> {
    match self.0.remove(path) {
      Some(Given::Num(n)) => Some(n),
      _ => None,
    }
  }
  fn bool(&mut self, path: &str) -> Option<bool> {
    match self.0.remove(path) {
      Some(Given::Bool(b)) => Some(b),
      _ => None,
    }
  }
  fn strings(&mut self, path: &str) -> Option<Vec<String>> {
    match self.0.remove(path) {
      Some(Given::Strings(v)) => Some(v),
      _ => None,
    }
  }
  fn given(&self, prefix: &str) -> bool {
    self.0.keys().any(|k| k.starts_with(prefix)) || self.0.contains_key(prefix.trim_end_matches('.'))
  }
}

/// The `ConfigBuilder` of the JS options `value` (an object, `undefined` or `null`).
///
/// # Safety
/// `env` must be the current call's environment (on the JS thread).
pub unsafe fn builder(env: sys::napi_env, value: sys::napi_value) -> CoreResult<ConfigBuilder> {
  let mut read = Read::default();
  let js = Js(env);
  match js.type_of(value)? {
    sys::ValueType::napi_undefined | sys::ValueType::napi_null => {}
    sys::ValueType::napi_object if !js.is_array(value)? => js.walk(value, OPTIONS, "", &mut read)?,
    _ => {
      return Err(CoreError::invalid(format!(
        "options must be an object, got {}",
        js.describe(value)?
      )))
    }
  }
  let sentinel = if read.given("sentinel.") {
    let nodes = read
      .strings("sentinel.nodes")
      .ok_or_else(|| CoreError::invalid("sentinel.nodes must be an array of sentinel URLs"))?;
    let master_name = read
      .str("sentinel.masterName")
      .ok_or_else(|| CoreError::invalid("sentinel.masterName must be a non-empty string"))?;
    Some(SentinelOptions {
      nodes,
      master_name,
      username: read.str("sentinel.username"),
      password: read.str("sentinel.password"),
      db: read.num("sentinel.db"),
      tls: read.bool("sentinel.tls"),
    })
  } else {
    None
  };
  let cluster_nodes = if read.given("cluster.") {
    Some(
      read
        .strings("cluster.nodes")
        .ok_or_else(|| CoreError::invalid("cluster.nodes must be an array of node URLs"))?,
    )
  } else {
    None
  };
  Ok(ConfigBuilder {
    url: read.str("url"),
    key_prefix: read.str("keyPrefix"),
    session_ttl_secs: read.num("ttl.session"),
    query_ttl_secs: read.num("ttl.query"),
    command_timeout_ms: read.num("commandTimeoutMs"),
    connect_timeout_ms: read.num("connectTimeoutMs"),
    retry_attempts: read.num("retry.attempts"),
    retry_base_delay_ms: read.num("retry.baseDelayMs"),
    retry_max_delay_ms: read.num("retry.maxDelayMs"),
    fallback_enabled: read.bool("fallback.enabled"),
    fallback_max_bytes: read.num("fallback.maxBytes"),
    fallback_max_bytes_per_tenant: read.num("fallback.maxBytesPerTenant"),
    near_cache_enabled: read.bool("nearCache.enabled"),
    near_cache_max_bytes: read.num("nearCache.maxBytes"),
    near_cache_fail_safe_ms: read.num("nearCache.failSafeMs"),
    max_key_bytes: read.num("limits.maxKeyBytes"),
    max_value_bytes: read.num("limits.maxValueBytes"),
    metrics: read.bool("metrics"),
    query_index: read.bool("queryIndex"),
    tenant_metrics_limit: read.num("tenantMetricsLimit"),
    tls: TlsFiles {
      ca_file: read.str("tls.caFile"),
      cert_file: read.str("tls.certFile"),
      key_file: read.str("tls.keyFile"),
    },
    cluster_nodes,
    sentinel,
  })
}

/// The closest of `known` to `name` (by edit distance, ignoring case), if close enough to
/// be the likely intent.
fn closest<'a>(name: &str, known: impl Iterator<Item = &'a str>) -> Option<&'a str> {
  let lower = name.to_lowercase();
  known
    .map(|k| (edit_distance(&lower, &k.to_lowercase()), k))
    .filter(|(d, k)| *d <= 2.max(k.len() / 3))
    .min_by_key(|(d, _)| *d)
    .map(|(_, k)| k)
}

/// Levenshtein distance in chars.
fn edit_distance(a: &str, b: &str) -> usize {
  let b: Vec<char> = b.chars().collect();
  let mut row: Vec<usize> = (0..=b.len()).collect();
  for (i, ca) in a.chars().enumerate() {
    let mut diagonal = row[0];
    row[0] = i + 1;
    for (j, cb) in b.iter().enumerate() {
      let above = row[j + 1];
      row[j + 1] = (diagonal + usize::from(ca != *cb)).min(row[j] + 1).min(above + 1);
      diagonal = above;
    }
  }
  row[b.len()]
}

/// Reads JS values of one call.
struct Js(sys::napi_env);

fn napi_failure(e: napi::Error) -> CoreError {
  CoreError::invalid(format!("options could not be read: {}", e.reason))
}

impl Js {
  fn type_of(&self, v: sys::napi_value) -> CoreResult<sys::napi_valuetype> {
    let mut t = 0;
    check(unsafe { sys::napi_typeof(self.0, v, &mut t) }, "read a type").map_err(napi_failure)?;
    Ok(t)
  }

  fn is_array(&self, v: sys::napi_value) -> CoreResult<bool> {
    let mut is = false;
    check(unsafe { sys::napi_is_array(self.0, v, &mut is) }, "read a type").map_err(napi_failure)?;
    Ok(is)
  }

  /// `a string ('250')`, `a number (5)`, `an array`, `null` ...: for messages.
  fn describe(&self, v: sys::napi_value) -> CoreResult<String> {
    Ok(match self.type_of(v)? {
      sys::ValueType::napi_undefined => "undefined".into(),
      sys::ValueType::napi_null => "null".into(),
      sys::ValueType::napi_boolean => format!("a boolean ({})", self.bool(v)?),
      sys::ValueType::napi_number => format!("a number ({})", self.num(v)?),
      sys::ValueType::napi_string => {
        let s = self.string(v).unwrap_or_default();
        let shown: String = s.chars().take(40).collect();
        format!("a string ('{shown}')")
      }
      sys::ValueType::napi_function => "a function".into(),
      sys::ValueType::napi_object if self.is_array(v)? => "an array".into(),
      sys::ValueType::napi_object => "an object".into(),
      sys::ValueType::napi_symbol => "a symbol".into(),
      sys::ValueType::napi_bigint => "a bigint".into(),
      _ => "an unsupported value".into(),
    })
  }

  fn num(&self, v: sys::napi_value) -> CoreResult<f64> {
    let mut n = 0.0;
    check(
      unsafe { sys::napi_get_value_double(self.0, v, &mut n) },
      "read a number",
    )
    .map_err(napi_failure)?;
    Ok(n)
  }

  fn bool(&self, v: sys::napi_value) -> CoreResult<bool> {
    let mut b = false;
    check(unsafe { sys::napi_get_value_bool(self.0, v, &mut b) }, "read a boolean").map_err(napi_failure)?;
    Ok(b)
  }

  /// A string, `None` when it is not well-formed UTF-16 (a lone surrogate).
  fn string(&self, v: sys::napi_value) -> Option<String> {
    let mut units = 0;
    unsafe { sys::napi_get_value_string_utf16(self.0, v, ptr::null_mut(), 0, &mut units) };
    let mut buf: Vec<u16> = vec![0; units + 1];
    let mut written = 0;
    let status = unsafe { sys::napi_get_value_string_utf16(self.0, v, buf.as_mut_ptr(), units + 1, &mut written) };
    if status != sys::Status::napi_ok {
      return None;
    }
    String::from_utf16(&buf[..written]).ok()
  }

  fn property(&self, object: sys::napi_value, name: &str) -> CoreResult<sys::napi_value> {
    let key = unsafe { <&str as ToNapiValue>::to_napi_value(self.0, name) }.map_err(napi_failure)?;
    let mut value = ptr::null_mut();
    check(
      unsafe { sys::napi_get_property(self.0, object, key, &mut value) },
      "read a property",
    )
    .map_err(napi_failure)?;
    Ok(value)
  }

  /// The own enumerable string keys of `object`.
  fn keys(&self, object: sys::napi_value) -> CoreResult<Vec<String>> {
    let mut names = ptr::null_mut();
    check(
      unsafe { sys::napi_get_property_names(self.0, object, &mut names) },
      "list the options",
    )
    .map_err(napi_failure)?;
    self
      .elements(names)?
      .into_iter()
      .map(|n| Ok(self.string(n).unwrap_or_default()))
      .collect()
  }

  fn elements(&self, array: sys::napi_value) -> CoreResult<Vec<sys::napi_value>> {
    let mut len = 0;
    check(
      unsafe { sys::napi_get_array_length(self.0, array, &mut len) },
      "read an array",
    )
    .map_err(napi_failure)?;
    (0..len)
      .map(|i| {
        let mut e = ptr::null_mut();
        check(
          unsafe { sys::napi_get_element(self.0, array, i, &mut e) },
          "read an array",
        )
        .map_err(napi_failure)?;
        Ok(e)
      })
      .collect()
  }

  /// Reads the options of `object` known in `shape` into `read` under `prefix`.
  fn walk(&self, object: sys::napi_value, known: &[Opt], prefix: &str, read: &mut Read) -> CoreResult<()> {
    for name in self.keys(object)? {
      let path = format!("{prefix}{name}");
      let Some(Opt(_, shape)) = known.iter().find(|o| o.0 == name) else {
        let hint = match closest(&name, known.iter().map(|o| o.0)) {
          Some(k) => format!(" (did you mean '{prefix}{k}'?)"),
          None => format!(" (known: {})", known.iter().map(|o| o.0).collect::<Vec<_>>().join(", ")),
        };
        return Err(CoreError::invalid(format!("unknown option '{path}'{hint}")));
      };
      let value = self.property(object, &name)?;
      let t = self.type_of(value)?;
      if t == sys::ValueType::napi_undefined || t == sys::ValueType::napi_null {
        continue;
      }
      let wrong = |expected: &str| -> CoreResult<()> {
        Err(CoreError::invalid(format!(
          "{path} must be {expected}, got {}",
          self.describe(value)?
        )))
      };
      match *shape {
        Str if t == sys::ValueType::napi_string => match self.string(value) {
          Some(s) => {
            read.0.insert(path, Given::Str(s));
          }
          None => {
            return Err(CoreError::invalid(format!(
              "{path} contains a lone surrogate (not well-formed UTF-16)"
            )))
          }
        },
        Str => wrong("a string")?,
        Num(unit) if t == sys::ValueType::napi_number => {
          let n = self.num(value)?;
          if !n.is_finite() {
            return Err(CoreError::invalid(format!(
              "{path} must be a finite number of {unit}, got {n}"
            )));
          }
          read.0.insert(path, Given::Num(n));
        }
        Num(unit) => wrong(&format!("a number of {unit}"))?,
        Bool if t == sys::ValueType::napi_boolean => {
          read.0.insert(path, Given::Bool(self.bool(value)?));
        }
        Bool => wrong("true or false")?,
        Strings if t == sys::ValueType::napi_object && self.is_array(value)? => {
          let mut out = Vec::new();
          for (i, e) in self.elements(value)?.into_iter().enumerate() {
            match (self.type_of(e)?, self.string(e)) {
              (sys::ValueType::napi_string, Some(s)) if !s.is_empty() => out.push(s),
              _ => {
                return Err(CoreError::invalid(format!(
                  "{path}[{i}] must be a non-empty string, got {}",
                  self.describe(e)?
                )))
              }
            }
          }
          read.0.insert(path, Given::Strings(out));
        }
        Strings => wrong("an array of strings")?,
        Obj(inner) if t == sys::ValueType::napi_object && !self.is_array(value)? => {
          // an empty object still counts as given (`sentinel: {}` lacks its nodes)
          read.0.insert(path.clone(), Given::Bool(true));
          self.walk(value, inner, &format!("{path}."), read)?;
          read.0.remove(&path);
          read.0.insert(format!("{path}."), Given::Bool(true));
        }
        Obj(_) => wrong("an object")?,
      }
    }
    Ok(())
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn closest_known_name() {
    let known = OPTIONS.iter().map(|o| o.0);
    assert_eq!(closest("keyprefix", known.clone()), Some("keyPrefix"));
    assert_eq!(closest("commandTimeout", known.clone()), Some("commandTimeoutMs"));
    assert_eq!(closest("redis", known.clone()), None);
    assert_eq!(closest("sesion", TTL.iter().map(|o| o.0)), Some("session"));
    assert_eq!(edit_distance("kitten", "sitting"), 3);
  }
}
