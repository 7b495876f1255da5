//! Property-based tests (proptest) of the key layout, the Redis `MATCH` escaping,
//! URL redaction and argument validation on a memory:// cache.

use std::sync::{Arc, OnceLock};

use ferrocache::{glob_escape, match_pattern, EntryType, KeyLayout, Scope};
use ferrocache::{redact_url, ConfigBuilder};
use ferrocache::{Answer, Cache, Request, Submitted};
use proptest::prelude::*;

// ----- strategies -------------------------------------------------------------

/// Strings full of the characters that could confuse a layout or a glob: separators,
/// glob metacharacters, digits (tenant lengths), the kind tags, braces, non-ASCII.
fn tricky_string(max: usize) -> impl Strategy<Value = String> {
  let ch = prop_oneof![
    4 => prop::sample::select(vec![
      ':', '*', '?', '[', ']', '\\', '{', '}', '^', '-', 's', 'q', 't', '0', '1', '2', '4', '9', 'a', 'z', ' ', '\0',
      'é', '🔑', '\u{80}', '\u{ffff}',
    ]),
    1 => any::<char>(),
  ];
  prop::collection::vec(ch, 0..=max).prop_map(|v| v.into_iter().collect())
}

/// Mostly short tricky strings, sometimes long ones (hundreds of bytes).
fn any_text() -> impl Strategy<Value = String> {
  prop_oneof![
    8 => tricky_string(12),
    1 => tricky_string(300),
    1 => any::<String>(),
  ]
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum OwnedScope {
  Global,
  Tenant(String),
}

impl OwnedScope {
  fn as_scope(&self) -> Scope<'_> {
    match self {
      OwnedScope::Global => Scope::Global,
      OwnedScope::Tenant(t) => Scope::Tenant(t),
    }
  }
}

fn scope() -> impl Strategy<Value = OwnedScope> {
  prop_oneof![1 => Just(OwnedScope::Global), 3 => any_text().prop_map(OwnedScope::Tenant)]
}

fn kind() -> impl Strategy<Value = EntryType> {
  prop_oneof![Just(EntryType::Session), Just(EntryType::Query)]
}

/// An arbitrary (scope, kind, key) triple; near misses have their own test below.
fn triple() -> impl Strategy<Value = (OwnedScope, EntryType, String)> {
  (scope(), kind(), any_text())
}

fn key_prefix() -> impl Strategy<Value = String> {
  prop_oneof![
    2 => Just("fc:".to_string()),
    3 => tricky_string(10).prop_filter("keyPrefix is non-empty", |s| !s.is_empty()),
  ]
}

fn config(cases: u32) -> ProptestConfig {
  ProptestConfig {
    cases,
    // No regression files next to the tests; failures print their minimal input.
    failure_persistence: None,
    ..ProptestConfig::default()
  }
}

// ----- (a) injectivity --------------------------------------------------------

proptest! {
  #![proptest_config(config(512))]

  /// Two distinct (scope, kind, key) triples never map to the same full key.
  #[test]
  fn distinct_triples_never_share_a_full_key(prefix in key_prefix(), a in triple(), b in triple()) {
    let l = KeyLayout::new(&prefix);
    let ka = l.key(a.0.as_scope(), a.1, &a.2);
    let kb = l.key(b.0.as_scope(), b.1, &b.2);
    prop_assert_eq!(ka == kb, a == b, "{:?} -> {:?}, {:?} -> {:?}", a, ka, b, kb);
  }

  /// Near misses: the second triple moves characters between tenant and key, or
  /// swaps the kind, the way an attacker would try to forge another tenant's key.
  #[test]
  fn near_miss_triples_never_share_a_full_key(
    prefix in key_prefix(),
    tenant in any_text(),
    key in any_text(),
    split in any::<prop::sample::Index>(),
    ka in kind(),
    kb in kind(),
    global_b in any::<bool>(),
  ) {
    let l = KeyLayout::new(&prefix);
    let a = (OwnedScope::Tenant(tenant.clone()), ka, key.clone());
    // Re-cut tenant ++ ":" ++ kindtag ++ key at an arbitrary char boundary.
    let joined = format!("{tenant}:{}{key}", if ka == EntryType::Session { "s:" } else { "q:" });
    let cuts: Vec<usize> = joined.char_indices().map(|(i, _)| i).chain([joined.len()]).collect();
    let cut = cuts[split.index(cuts.len())];
    let b = if global_b {
      (OwnedScope::Global, kb, format!("t:{}:{}", tenant.len(), joined))
    } else {
      (OwnedScope::Tenant(joined[..cut].to_string()), kb, joined[cut..].to_string())
    };
    let fa = l.key(a.0.as_scope(), a.1, &a.2);
    let fb = l.key(b.0.as_scope(), b.1, &b.2);
    prop_assert_eq!(fa == fb, a == b, "{:?} -> {:?}, {:?} -> {:?}", a, fa, b, fb);
  }
}

// ----- (b) literal prefixes never cross scopes or kinds ---------------------------

proptest! {
  #![proptest_config(config(512))]

  /// The full key of `k` in (scope, kind) starts with `literal_prefix(scope', kind', p)`
  /// iff (scope, kind) == (scope', kind') and `k` starts with `p`.
  #[test]
  fn literal_prefix_matches_exactly_the_keys_with_that_prefix(
    prefix in key_prefix(),
    s1 in scope(), k1 in kind(),
    s2 in scope(), k2 in kind(),
    p in any_text(),
    rest in any_text(),
    extend in any::<bool>(),
    same_ns in any::<bool>(),
  ) {
    let l = KeyLayout::new(&prefix);
    // Half of the time the key really extends the prefix, and the namespaces agree.
    let key = if extend { format!("{p}{rest}") } else { rest };
    let (s2, k2) = if same_ns { (s1.clone(), k1) } else { (s2, k2) };
    let full = l.key(s2.as_scope(), k2, &key);
    let lit = l.literal_prefix(s1.as_scope(), k1, &p);
    let expected = s1 == s2 && k1 == k2 && key.starts_with(&p);
    prop_assert_eq!(
      full.starts_with(&lit), expected,
      "key {:?} of {:?}/{:?} = {:?}; literal of {:?}/{:?}/{:?} = {:?}", key, s2, k2, full, s1, k1, p, lit
    );
  }
}

// ----- (c) match_pattern vs Redis's stringmatchlen --------------------------------

/// A port of Redis's `stringmatchlen_impl` (src/util.c, Redis 7.x), case-sensitive and
/// byte-wise: `*`, `?`, `[...]` with `^` negation, ranges `a-z` (either order) and `\`
/// escapes (also inside brackets); a trailing lone `\` matches a literal `\`; an
/// unterminated `[` runs to the end of the pattern. Bytes are compared as C `char`
/// (signed on x86-64 / the usual Redis build), which only matters for ranges.
fn redis_stringmatch(pattern: &[u8], string: &[u8]) -> bool {
  let mut skip_longer = false;
  stringmatch_impl(pattern, string, &mut skip_longer, 0)
}

fn stringmatch_impl(pattern: &[u8], string: &[u8], skip_longer: &mut bool, nesting: u32) -> bool {
  if nesting > 1000 {
    return false;
  }
  // `pattern` is a NUL-terminated sds in Redis: reading one past the end yields 0.
  let at = |p: &[u8], i: usize| -> u8 { p.get(i).copied().unwrap_or(0) };
  let (mut p, mut s) = (0usize, 0usize);
  let (plen, slen) = (pattern.len(), string.len());
  while p < plen && s < slen {
    match pattern[p] {
      b'*' => {
        while p + 1 < plen && pattern[p + 1] == b'*' {
          p += 1;
        }
        if p + 1 == plen {
          return true;
        }
        while s < slen {
          if stringmatch_impl(&pattern[p + 1..], &string[s..], skip_longer, nesting + 1) {
            return true;
          }
          if *skip_longer {
            return false;
          }
          s += 1;
        }
        *skip_longer = true;
        return false;
      }
      b'?' => {
        s += 1;
      }
      b'[' => {
        p += 1;
        let not = p < plen && pattern[p] == b'^';
        if not {
          p += 1;
        }
        let c = string[s];
        let mut matched = false;
        loop {
          if p < plen && pattern[p] == b'\\' && plen - p >= 2 {
            p += 1;
            if pattern[p] == c {
              matched = true;
            }
          } else if p < plen && pattern[p] == b']' {
            break;
          } else if p >= plen {
            // Unterminated class: Redis steps back so the outer `p++` ends the pattern.
            p -= 1;
            break;
          } else if plen - p >= 3 && pattern[p + 1] == b'-' {
            let (mut start, mut end) = (pattern[p] as i8, pattern[p + 2] as i8);
            if start > end {
              std::mem::swap(&mut start, &mut end);
            }
            p += 2;
            let ci = c as i8;
            if ci >= start && ci <= end {
              matched = true;
            }
          } else if pattern[p] == c {
            matched = true;
          }
          p += 1;
        }
        if not {
          matched = !matched;
        }
        if !matched {
          return false;
        }
        s += 1;
      }
      b'\\' => {
        if plen - p >= 2 {
          p += 1;
        }
        if pattern[p] != string[s] {
          return false;
        }
        s += 1;
      }
      c => {
        if c != string[s] {
          return false;
        }
        s += 1;
      }
    }
    p += 1;
    if s == slen {
      while at(pattern, p) == b'*' {
        p += 1;
      }
      break;
    }
  }
  p >= plen && s == slen
}

/// What `SCAN ... MATCH pattern` selects: `scanGenericCommand` skips the matcher
/// entirely for the bare pattern `*` (`use_pattern = !(patlen == 1 && pat[0] == '*')`).
fn scan_match(pattern: &[u8], key: &[u8]) -> bool {
  pattern == b"*" || redis_stringmatch(pattern, key)
}

/// Fixed cases of the literal-prefix rule, through the Redis matcher (SCAN MATCH) and
/// through the in-process store's rule (`starts_with`), which must agree.
#[test]
fn escaped_patterns_match_literally_in_both_stores() {
  let cases: &[(&str, &str, bool)] = &[
    ("orders_", "orders_2024", true),
    ("orders_", "ordersX", false),
    ("a*", "a*b", true),
    ("a*", "ab", false),
    ("a?", "a?", true),
    ("a?", "ax", false),
    ("[ab]", "[ab]c", true),
    ("[ab]", "a", false),
    (r"x\y", r"x\yz", true),
    (r"x\y", "xy", false),
    ("ключ", "ключ-1", true),
    ("🔑", "🔑x", true),
    ("🔑", "🔒", false),
  ];
  for &(prefix, key, expected) in cases {
    let pattern = match_pattern(prefix);
    assert_eq!(
      scan_match(pattern.as_bytes(), key.as_bytes()),
      expected,
      "SCAN MATCH {pattern:?} vs {key:?}"
    );
    assert_eq!(
      key.starts_with(prefix),
      expected,
      "memory store rule for {prefix:?} vs {key:?}"
    );
  }
}

#[test]
fn the_port_agrees_with_known_redis_behaviour() {
  let cases: &[(&str, &str, bool)] = &[
    // The C loop never runs on an empty subject: a bare `*` does not match "" (SCAN
    // short-circuits the bare `*` pattern before calling the matcher; see scan_match).
    ("*", "", false),
    ("*", "abc", true),
    ("a*", "a", true),
    ("a*b", "ab", true),
    ("a*b", "axxb", true),
    ("a*b", "axxc", false),
    ("a?c", "abc", true),
    ("a?c", "ac", false),
    ("[abc]", "b", true),
    ("[abc]", "d", false),
    ("[^abc]", "d", true),
    ("[^abc]", "a", false),
    ("[a-c]x", "bx", true),
    ("[c-a]x", "bx", true),
    ("[a-c]x", "dx", false),
    (r"[\]]", "]", true),
    (r"[\-]", "-", true),
    (r"\*", "*", true),
    (r"\*", "a", false),
    (r"a\", r"a\", true),
    ("[abc", "a", true),
    ("h*llo", "heeeello", true),
    ("", "", true),
    ("", "a", false),
    ("a", "", false),
  ];
  for &(pattern, s, expected) in cases {
    assert_eq!(
      redis_stringmatch(pattern.as_bytes(), s.as_bytes()),
      expected,
      "{pattern:?} vs {s:?}"
    );
  }
}

proptest! {
  #![proptest_config(config(512))]

  /// `match_pattern(literal)` matches `s` under Redis's matcher iff `s` starts with `literal`.
  #[test]
  fn match_pattern_matches_exactly_the_strings_with_that_literal_prefix(
    literal in any_text(),
    rest in any_text(),
    other in any_text(),
    extend in any::<bool>(),
  ) {
    let s = if extend { format!("{literal}{rest}") } else { other };
    let pattern = match_pattern(&literal);
    prop_assert_eq!(
      scan_match(pattern.as_bytes(), s.as_bytes()),
      s.starts_with(&literal),
      "literal {:?} -> pattern {:?}, string {:?}", literal, pattern, s
    );
  }

  /// The escaped literal alone matches exactly the literal itself.
  #[test]
  fn glob_escape_matches_only_itself(literal in any_text(), other in any_text()) {
    let pattern = glob_escape(&literal);
    prop_assert!(redis_stringmatch(pattern.as_bytes(), literal.as_bytes()), "{:?} vs itself", pattern);
    prop_assert_eq!(redis_stringmatch(pattern.as_bytes(), other.as_bytes()), other == literal);
  }

  /// End to end: the SCAN MATCH pattern of a prefix invalidation in (scope, kind)
  /// selects exactly the keys of that scope and kind that start with the prefix.
  #[test]
  fn invalidation_pattern_never_crosses_scopes(
    prefix in key_prefix(),
    s1 in scope(), k1 in kind(), p in any_text(),
    s2 in scope(), k2 in kind(), key in any_text(),
    same_ns in any::<bool>(),
  ) {
    let l = KeyLayout::new(&prefix);
    let (s2, k2) = if same_ns { (s1.clone(), k1) } else { (s2, k2) };
    let pattern = match_pattern(&l.literal_prefix(s1.as_scope(), k1, &p));
    let full = l.key(s2.as_scope(), k2, &key);
    let expected = s1 == s2 && k1 == k2 && key.starts_with(&p);
    prop_assert_eq!(scan_match(pattern.as_bytes(), full.as_bytes()), expected, "{:?} vs {:?}", pattern, full);
  }
}

// ----- (d) redact_url ----------------------------------------------------------

/// Percent-encodes everything but RFC 3986 unreserved characters (what a correct URL holds).
fn percent_encode(s: &str) -> String {
  let mut out = String::new();
  for b in s.bytes() {
    if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
      out.push(b as char);
    } else {
      out.push_str(&format!("%{b:02X}"));
    }
  }
  out
}

fn user() -> impl Strategy<Value = String> {
  "[a-z0-9_]{0,8}"
}

fn host() -> impl Strategy<Value = String> {
  "[a-z][a-z0-9.-]{0,11}"
}

fn password() -> impl Strategy<Value = String> {
  prop_oneof![3 => tricky_string(24), 1 => any::<String>(), 1 => "[!-~]{1,24}"]
    .prop_filter("non-empty", |s| !s.is_empty())
}

proptest! {
  #![proptest_config(config(512))]

  /// `redis://user:PASSWORD@host:port` with the password percent-encoded as a valid URL
  /// requires: redacted to exactly `redis://user:***@host:port`.
  #[test]
  fn redacts_encoded_userinfo_passwords(u in user(), pw in password(), h in host(), port in any::<u16>(), path in "(/[0-9]{1,2})?") {
    let enc = percent_encode(&pw);
    let url = format!("redis://{u}:{enc}@{h}:{port}{path}");
    let out = redact_url(&url);
    prop_assert_eq!(out, format!("redis://{u}:***@{h}:{port}{path}"));
  }

  /// Same form, password pasted raw (unencoded), as users do with generated secrets.
  /// Whatever the URL parser later makes of it, the output must not contain it.
  #[test]
  fn redacts_raw_userinfo_passwords(u in user(), pw in password(), h in host(), port in any::<u16>(), path in "(/[0-9]{1,2})?") {
    let url = format!("redis://{u}:{pw}@{h}:{port}{path}");
    let clean = format!("redis://{u}:***@{h}:{port}{path}");
    // A password that is a substring of the redacted URL itself (e.g. "1") proves nothing.
    prop_assume!(!clean.contains(&pw));
    let out = redact_url(&url);
    prop_assert!(!out.contains(&pw), "url {:?} -> {:?} still contains the password {:?}", url, out, pw);
  }

  /// The same raw URL given as `url`: whether or not it is accepted, neither the error
  /// message nor the config's Debug output may echo the password.
  #[test]
  fn config_errors_never_echo_a_raw_password(u in user(), pw in password(), h in host(), port in any::<u16>()) {
    let url = format!("redis://{u}:{pw}@{h}:{port}");
    let clean = format!("redis://{u}:***@{h}:{port} url is not a valid Redis URL url must start with");
    prop_assume!(!clean.contains(&pw) && !pw.trim().is_empty());
    // the Debug output of any config has braces, quotes and field names of its own
    let baseline = format!("{:?}", ConfigBuilder { url: Some(format!("redis://{u}:x@{h}:{port}")), ..Default::default() }.build());
    prop_assume!(!baseline.contains(&pw));
    let shown = match (ConfigBuilder { url: Some(url.clone()), ..Default::default() }).build() {
      Ok(c) => format!("{c:?}"),
      Err(e) => format!("{e} {e:?}"),
    };
    prop_assert!(!shown.contains(&pw), "url {:?} -> {:?}", url, shown);
  }

  /// `?password=` query parameter, encoded or raw, first or later among other parameters.
  #[test]
  fn redacts_password_query_parameters(
    h in host(), port in any::<u16>(), pw in password(), raw in any::<bool>(),
    before in "(db=[0-9]&)?", after in "(&db=[0-9])?", name in "(password|PASSWORD|Password)",
  ) {
    // A raw `&` ends the value in every reading of a query string (the URL parser's
    // included), so what follows it is another parameter, not part of the password.
    prop_assume!(!(raw && pw.contains('&')));
    let value = if raw { pw.clone() } else { percent_encode(&pw) };
    let url = format!("redis://{h}:{port}/?{before}{name}={value}{after}");
    let clean = format!("redis://{h}:{port}/?{before}{name}=***{after}");
    prop_assume!(!clean.contains(&pw) && !clean.contains(&value));
    let out = redact_url(&url);
    prop_assert!(!out.contains(&pw) && !out.contains(&value), "url {:?} -> {:?}", url, out);
    if !raw {
      prop_assert_eq!(out, clean);
    }
  }

  /// redis-rs reads the password of a unix-socket URL from `?pass=` (redis 1.8,
  /// `url_to_unix_connection_info`), and `unix://` / `redis+unix://` URLs are accepted
  /// by `ConfigBuilder::build`, so that parameter must be redacted too.
  #[test]
  fn redacts_unix_socket_pass_parameter(pw in "[A-Za-z0-9]{6,24}", scheme in "(unix|redis\\+unix)", db in "(db=[0-9]&)?") {
    let url = format!("{scheme}:///run/redis.sock?{db}pass={pw}");
    let out = redact_url(&url);
    prop_assert!(!out.contains(&pw), "url {:?} -> {:?}", url, out);
  }

  /// redact_url never panics and keeps URLs without credentials unchanged.
  #[test]
  fn redact_url_is_total(s in any_text()) {
    let _ = redact_url(&s);
    let plain = format!("redis://{}", s.replace(['@', '?', ':'], ""));
    prop_assert_eq!(redact_url(&plain), plain.clone());
  }
}

// ----- (e) argument validation never panics and a rejection changes nothing ----

fn memory_cache() -> Arc<Cache> {
  static CACHE: OnceLock<Arc<Cache>> = OnceLock::new();
  CACHE
    .get_or_init(|| {
      Cache::new(
        ConfigBuilder {
          url: Some("memory://".into()),
          ..Default::default()
        }
        .build()
        .unwrap(),
      )
      .unwrap()
    })
    .clone()
}

const MAX_KEY: usize = ferrocache::DEFAULT_MAX_KEY_BYTES;
const MAX_VALUE: usize = ferrocache::DEFAULT_MAX_VALUE_BYTES;
const MAX_TENANT: usize = ferrocache::MAX_TENANT_BYTES;

/// Keys and tenants: empty, ordinary, or around a byte limit (multi-byte chars included).
fn sized_text(limit: usize) -> impl Strategy<Value = String> {
  prop_oneof![
    1 => Just(String::new()),
    6 => any_text(),
    2 => (limit - 3..=limit + 3, prop::sample::select(vec!["a", "é", "🔑", ":", "*"]))
      .prop_map(|(n, c)| c.repeat(n / c.len().max(1) + 1).chars().take_while({
        let mut used = 0usize;
        move |ch| { used += ch.len_utf8(); used <= n }
      }).collect()),
  ]
}

fn ttl() -> impl Strategy<Value = Option<f64>> {
  prop_oneof![
    2 => Just(None),
    2 => prop::sample::select(vec![
      f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0, 0.0, -1.0, 1e-300, f64::MIN_POSITIVE, 5e-324, 0.0001, 1.0,
      2_147_483_647.0, 2_147_483_647.000_001, 2_147_483_648.0, 1e300, f64::MAX, -f64::MAX,
    ]).prop_map(Some),
    2 => any::<f64>().prop_map(Some),
    1 => (0.0f64..10.0).prop_map(Some),
  ]
}

fn value() -> impl Strategy<Value = String> {
  prop_oneof![
    8 => any_text(),
    1 => (MAX_VALUE - 2..=MAX_VALUE + 2).prop_map(|n| "x".repeat(n)),
  ]
}

#[derive(Debug, Clone)]
enum Call {
  Set {
    key: String,
    value: String,
    ttl: Option<f64>,
  },
  Get {
    key: String,
  },
  Delete {
    key: String,
  },
  Invalidate {
    prefix: String,
    all: bool,
  },
}

fn call() -> impl Strategy<Value = Call> {
  prop_oneof![
    (sized_text(MAX_KEY), value(), ttl()).prop_map(|(key, value, ttl)| Call::Set { key, value, ttl }),
    sized_text(MAX_KEY).prop_map(|key| Call::Get { key }),
    sized_text(MAX_KEY).prop_map(|key| Call::Delete { key }),
    (sized_text(MAX_KEY), any::<bool>()).prop_map(|(prefix, all)| Call::Invalidate { prefix, all }),
  ]
}

fn call_scope() -> impl Strategy<Value = Option<String>> {
  prop_oneof![1 => Just(None), 3 => sized_text(MAX_TENANT).prop_map(Some)]
}

/// What the validation rules say about a call, independently of the implementation.
fn expected_rejection(tenant: &Option<String>, call: &Call) -> Option<&'static str> {
  if let Some(t) = tenant {
    if t.is_empty() || t.len() > MAX_TENANT {
      return Some("ERR_INVALID_ARG");
    }
  }
  let check_key = |k: &str| {
    if k.is_empty() {
      Some("ERR_INVALID_ARG")
    } else if k.len() > MAX_KEY {
      Some("ERR_TOO_LARGE")
    } else {
      None
    }
  };
  match call {
    Call::Get { key } | Call::Delete { key } => check_key(key),
    // invalidateAll takes no prefix
    Call::Invalidate { prefix, all } => {
      if *all {
        None
      } else {
        check_key(prefix)
      }
    }
    Call::Set { key, value, ttl } => check_key(key)
      .or_else(|| match ttl {
        Some(t) if !(t.is_finite() && *t > 0.0 && *t <= 2_147_483_647.0) => Some("ERR_INVALID_ARG"),
        _ => None,
      })
      .or_else(|| (value.len() > MAX_VALUE).then_some("ERR_TOO_LARGE")),
  }
}

/// The answer of a call made at once (memory:// answers every call on the spot).
fn now(cache: &Cache, request: Request<'_>) -> Result<Answer, ferrocache::Error> {
  match cache.submit(request) {
    Submitted::Answered(answer, _) => answer,
    Submitted::Queued => panic!("memory:// queued a call"),
  }
}

/// The value of `key`, read at once.
fn peek(cache: &Cache, scope: Scope<'_>, entry: EntryType, key: &str) -> Option<String> {
  now(cache, Request::get(scope, entry, key))
    .unwrap()
    .text()
    .map(str::to_string)
}

proptest! {
  #![proptest_config(config(512))]

  /// Every call returns Ok or ERR_INVALID_ARG / ERR_TOO_LARGE (never panics), rejects
  /// exactly what the documented rules reject, and a rejected call changes nothing.
  #[test]
  fn validation_never_panics_and_rejections_change_nothing(
    tenant in call_scope(),
    entry in prop_oneof![Just(EntryType::Session), Just(EntryType::Query)],
    seed_key in "[a-z]{1,8}",
    call in call(),
  ) {
    let cache = memory_cache();
    let scope = match &tenant { Some(t) => Scope::Tenant(t), None => Scope::Global };
    // Seed a live entry in the same namespace so that a wrongly accepted delete or
    // invalidation would be visible.
    let seed_scope = match &tenant {
      Some(t) if !t.is_empty() && t.len() <= MAX_TENANT => Scope::Tenant(t),
      _ => Scope::Global,
    };
    now(&cache, Request::set(seed_scope, entry, &seed_key, "\"seed\"", Some(3600.0))).unwrap();

    let target = match &call {
      Call::Set { key, .. } | Call::Get { key } | Call::Delete { key } => Some(key.clone()),
      Call::Invalidate { .. } => None,
    };
    // Peek at the target key (when it is a valid key) before the call.
    let peekable = |k: &String| expected_rejection(&tenant, &Call::Get { key: k.clone() }).is_none();
    let seen_before = match &target {
      Some(k) if peekable(k) => peek(&cache, scope, entry, k),
      _ => None,
    };
    let before = (cache.memory_stats(), cache.metrics().snapshot());

    let request = match &call {
      Call::Set { key, value, ttl } => Request::set(scope, entry, key, value, *ttl),
      Call::Get { key } => Request::get(scope, entry, key),
      Call::Delete { key } => Request::delete(scope, entry, key),
      Call::Invalidate { all: true, .. } => Request::invalidate_all(scope, entry),
      Call::Invalidate { prefix, all: false } => Request::invalidate(scope, entry, prefix),
    };
    let result = now(&cache, request).map(drop);
    let expected = expected_rejection(&tenant, &call);
    match &result {
      Ok(()) => prop_assert!(expected.is_none(), "accepted {:?}; expected {:?}", call, expected),
      Err(e) => {
        prop_assert!(matches!(e.code(), "ERR_INVALID_ARG" | "ERR_TOO_LARGE"), "code {} for {:?}", e.code(), call);
        prop_assert_eq!(Some(e.code()), expected, "{:?}: {}", call, e);
        let after = (cache.memory_stats(), cache.metrics().snapshot());
        prop_assert_eq!(&after, &before, "a rejected call changed the store or metrics");
        if let Some(k) = &target {
          if peekable(k) {
            prop_assert_eq!(peek(&cache, scope, entry, k), seen_before, "a rejected call changed the key's value");
          }
        }
        let seed = peek(&cache, seed_scope, entry, &seed_key);
        prop_assert_eq!(seed.as_deref(), Some("\"seed\""), "a rejected call removed a neighbour");
      }
    }
    if let (Ok(()), Call::Set { key, value, ttl }) = (&result, &call) {
      // A long-lived accepted write is readable right away.
      if ttl.is_none_or(|t| t >= 1.0) {
        let read = peek(&cache, scope, entry, key);
        prop_assert_eq!(read.as_deref(), Some(value.as_str()));
      }
    }
  }
}
