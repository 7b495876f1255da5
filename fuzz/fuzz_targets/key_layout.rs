//! Two (scope, kind, key) triples decoded from arbitrary bytes under one arbitrary
//! keyPrefix: distinct triples never share a full key, and a literal prefix of one
//! (scope, kind) selects exactly the keys of that (scope, kind) starting with it.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use ferrocache::{match_pattern, KeyLayout, EntryType, Scope};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary, PartialEq, Eq)]
struct Triple {
  tenant: Option<String>,
  query: bool,
  key: String,
}

impl Triple {
  fn scope(&self) -> Scope<'_> {
    match &self.tenant {
      Some(t) => Scope::Tenant(t),
      None => Scope::Global,
    }
  }
  fn kind(&self) -> EntryType {
    if self.query {
      EntryType::Query
    } else {
      EntryType::Session
    }
  }
}

#[derive(Debug, Arbitrary)]
struct Input {
  prefix: String,
  a: Triple,
  b: Triple,
  literal: String,
}

fuzz_target!(|data: &[u8]| {
  let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
    return;
  };
  let l = KeyLayout::new(&input.prefix);
  let (a, b) = (&input.a, &input.b);
  let fa = l.key(a.scope(), a.kind(), &a.key);
  let fb = l.key(b.scope(), b.kind(), &b.key);
  assert_eq!(fa == fb, a == b, "injectivity: {a:?} -> {fa:?}, {b:?} -> {fb:?}");

  // The literal prefix of (a's scope, a's kind, literal) against b's full key.
  let lit = l.literal_prefix(a.scope(), a.kind(), &input.literal);
  let expected = a.tenant == b.tenant && a.query == b.query && b.key.starts_with(&input.literal);
  assert_eq!(
    fb.starts_with(&lit),
    expected,
    "literal prefix {lit:?} vs {fb:?} ({a:?}, {b:?}, {:?})",
    input.literal
  );
  // And of a's own key: matches iff a's key starts with the literal.
  assert_eq!(fa.starts_with(&lit), a.key.starts_with(&input.literal));
  // The SCAN pattern is the escaped literal plus one unescaped trailing `*`.
  let pattern = match_pattern(&lit);
  assert!(pattern.ends_with('*') && pattern.len() > lit.len());
});
