//! Key layout: where each (scope, entry type, key) lives in Redis and in the
//! in-process store, and how a literal prefix becomes a Redis `MATCH` pattern.
//!
//! # Layout
//! ```text
//! <keyPrefix>s:<sessionId>                        session, manager scope
//! <keyPrefix>q:<queryKey>                         query result, manager scope
//! <keyPrefix>t:<byteLen(tenant)>:<tenant>:s:<id>  session of a tenant
//! <keyPrefix>t:<byteLen(tenant)>:<tenant>:q:<key> query result of a tenant
//! <keyPrefix>r:g:<limit>:<windowMs>:<burst>:<key>  rate limiter, manager scope
//! <keyPrefix>r:t:<byteLen(tenant)>:<tenant>:<limit>:<windowMs>:<burst>:<key>
//!                                                 rate limiter of a tenant
//! <keyPrefix>r:p                                  the processes checking rate limits
//! ```
//! The character after `<keyPrefix>` (`s`, `q`, `t` or `r`) separates the manager
//! scope from tenant scopes and rate limiters from entries, and the byte length before a
//! tenant id makes the tenant part self-delimiting, so two distinct (scope, entry type, key)
//! triples never produce the same Redis key, whatever characters they contain. Rate limiters
//! live outside `s:`, `q:` and `t:`, the prefixes the near cache subscribes to: a check (a
//! write) is not broadcast to every process.

use std::borrow::Cow;

/// Longest tenant id in UTF-8 bytes.
pub const MAX_TENANT_BYTES: usize = 256;

/// On a Redis Cluster, the query index of one scope is split into this many buckets, each
/// in its own slot together with the entries it lists (see [`KeyLayout::cluster_query_index`]).
pub const CLUSTER_BUCKETS: u64 = 16;

/// What an entry holds (`byType` in metrics); each type has its own namespace and default TTL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryType {
  /// Session data (`s`).
  Session,
  /// Query result (`q`).
  Query,
}

impl EntryType {
  /// `sessionId` or `key`: how the caller's key is named in messages.
  pub fn key_name(self) -> &'static str {
    match self {
      EntryType::Session => "sessionId",
      EntryType::Query => "key",
    }
  }

  fn tag(self) -> &'static str {
    match self {
      EntryType::Session => "s:",
      EntryType::Query => "q:",
    }
  }
}

/// Whose keys: the manager's own, or one tenant's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope<'a> {
  /// The manager's own keys.
  Global,
  /// One tenant's keys.
  Tenant(&'a str),
}

impl<'a> Scope<'a> {
  /// The tenant id, `None` for the manager's own keys.
  pub fn tenant(self) -> Option<&'a str> {
    match self {
      Scope::Global => None,
      Scope::Tenant(t) => Some(t),
    }
  }
}

/// Builds full keys from a validated `keyPrefix`.
#[derive(Debug, Clone)]
pub struct KeyLayout {
  prefix: String,
}

impl KeyLayout {
  /// A layout under `prefix` (the configured `keyPrefix`).
  pub fn new(prefix: &str) -> Self {
    KeyLayout {
      prefix: prefix.to_string(),
    }
  }

  /// The full key of `key` of type `entry` in `scope`.
  pub fn key(&self, scope: Scope<'_>, entry: EntryType, key: &str) -> String {
    let mut out = self.namespace_with_room(scope, entry, key.len());
    out.push_str(key);
    out
  }

  /// The literal string every full key of (`scope`, `entry`) starting with `prefix` begins with.
  pub fn literal_prefix(&self, scope: Scope<'_>, entry: EntryType, prefix: &str) -> String {
    self.key(scope, entry, prefix)
  }

  /// The namespace of (`scope`, `entry`): what every one of its keys starts with.
  pub fn namespace(&self, scope: Scope<'_>, entry: EntryType) -> String {
    self.namespace_with_room(scope, entry, 0)
  }

  /// [`KeyLayout::namespace`] with room for `extra` more bytes: a full key is built in one
  /// allocation (this runs on every call).
  fn namespace_with_room(&self, scope: Scope<'_>, entry: EntryType, extra: usize) -> String {
    // "t:" + up to 3 digits (MAX_TENANT_BYTES) + ':' + tenant + ':'; then the entry type's tag
    let tenant = scope.tenant().map_or(0, |t| t.len() + 7);
    let mut out = String::with_capacity(self.prefix.len() + tenant + entry.tag().len() + extra);
    out.push_str(&self.prefix);
    if let Scope::Tenant(t) = scope {
      out.push_str("t:");
      out.push_str(&t.len().to_string());
      out.push(':');
      out.push_str(t);
      out.push(':');
    }
    out.push_str(entry.tag());
    out
  }
}

impl KeyLayout {
  /// The prefixes under which entries live, rate limiters excluded: the near cache subscribes
  /// to their changes, and the journal's last-resort wipe covers them (a query entry through
  /// its scope's index, so the indexes stay in step).
  pub fn entry_prefixes(&self) -> Vec<String> {
    ["s:", "q:", "t:"]
      .iter()
      .map(|tag| format!("{}{tag}", self.prefix))
      .collect()
  }

  /// The Redis key of the rate limiter of `key` under the policy named `policy` in `scope`.
  pub fn rate_limit_key(&self, scope: Scope<'_>, policy: &str, key: &str) -> String {
    let mut out = String::with_capacity(self.prefix.len() + 16 + policy.len() + key.len());
    out.push_str(&self.prefix);
    match scope {
      Scope::Global => out.push_str("r:g:"),
      Scope::Tenant(t) => {
        out.push_str("r:t:");
        out.push_str(&t.len().to_string());
        out.push(':');
        out.push_str(t);
        out.push(':');
      }
    }
    out.push_str(policy);
    out.push_str(key);
    out
  }

  /// The sorted set of the processes checking rate limits (their last heartbeat).
  pub fn processes_key(&self) -> String {
    format!("{}r:p", self.prefix)
  }
}

/// Where the query-key index of one scope lives in Redis (see `docs/decisions.md`, "Query
/// index"): two sorted sets holding the same members, the keys as the caller wrote them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryIndex<'k> {
  /// The scope's query namespace as Redis names it: Redis key = `namespace` + member
  /// (on a Cluster the namespace ends with the bucket's hash tag).
  pub namespace: Cow<'k, str>,
  /// The member part: the caller's key (or prefix) within the namespace.
  pub member: &'k str,
  /// All scores 0, ordered by member: ranges by prefix (`ZRANGEBYLEX`).
  pub lex: String,
  /// Score = when the member's entry expires (ms, Redis clock): finds expired members.
  pub expiry: String,
}

impl KeyLayout {
  /// The index of the query namespace `full` lies in (a full query key, or a literal
  /// prefix under a query namespace); `None` for sessions or text not under this layout.
  /// `<scope>q:<key>` is indexed in `<scope>i:q` (lex) and `<scope>x:q` (expiry): the
  /// characters `i` and `x` after a scope are used by no other kind.
  pub fn query_index<'k>(&self, full: &'k str) -> Option<QueryIndex<'k>> {
    let (scope, member) = self.split_query(full)?;
    Some(QueryIndex {
      namespace: Cow::Borrowed(&full[..full.len() - member.len()]),
      member,
      lex: format!("{scope}i:q"),
      expiry: format!("{scope}x:q"),
    })
  }

  /// [`KeyLayout::query_index`] for a Redis Cluster, where a transaction or script can only
  /// touch keys of one slot. A scope's entries are spread over [`CLUSTER_BUCKETS`] buckets
  /// by their key; the entries of a bucket and its two index sets carry the same hash tag
  /// `{<hash of the scope>.<bucket>}`: `<scope>q:{…}<key>`, `<scope>i:q{…}`, `<scope>x:q{…}`.
  /// `None` where a query key is not indexed, and for a scope whose text holds `{` (its own
  /// braces would decide the slot): those keep their plain names and `SCAN`.
  pub fn cluster_query_index<'k>(&self, full: &'k str) -> Option<QueryIndex<'k>> {
    let (scope, member) = self.split_query(full)?;
    (!scope.contains('{')).then(|| tagged_index(scope, member, bucket_of(member)))
  }

  /// The Redis name of the query entry `full` on a Cluster ([`KeyLayout::cluster_query_index`]'s
  /// `key()`, without building the index names).
  pub fn cluster_query_key(&self, full: &str) -> Option<String> {
    let (scope, member) = self.split_query(full)?;
    if scope.contains('{') {
      return None;
    }
    let tag = bucket_tag(scope, bucket_of(member));
    Some(format!("{scope}q:{tag}{member}"))
  }

  /// The index of every bucket of the scope of `literal` (a literal query prefix) on a
  /// Redis Cluster, each with `literal`'s member part: a prefix may match keys in all of them.
  pub fn cluster_query_indexes<'k>(&self, literal: &'k str) -> Option<Vec<QueryIndex<'k>>> {
    let (scope, member) = self.split_query(literal)?;
    (!scope.contains('{')).then(|| (0..CLUSTER_BUCKETS).map(|b| tagged_index(scope, member, b)).collect())
  }

  /// `(scope, member)` of a full query key (or literal query prefix) of this layout: the
  /// prefix and tenant part, and what follows the kind's tag.
  fn split_query<'k>(&self, full: &'k str) -> Option<(&'k str, &'k str)> {
    let rest = full.strip_prefix(self.prefix.as_str())?;
    let scope_len = match rest.strip_prefix("t:") {
      None => 0,
      Some(tenant) => {
        let (digits, _) = tenant.split_once(':')?;
        let n: usize = digits.parse().ok()?;
        let len = n.checked_add(2 + digits.len() + 2)?;
        if rest.as_bytes().get(len - 1) != Some(&b':') {
          return None;
        }
        len
      }
    };
    let scope = full.get(..self.prefix.len() + scope_len)?;
    let member = full.get(scope.len()..)?.strip_prefix(EntryType::Query.tag())?;
    Some((scope, member))
  }
}

impl QueryIndex<'_> {
  /// The Redis key of the entry this index was made for.
  pub fn key(&self) -> String {
    let mut key = String::with_capacity(self.namespace.len() + self.member.len());
    key.push_str(&self.namespace);
    key.push_str(self.member);
    key
  }
}

/// The index names of one bucket of `scope` on a Cluster (see [`KeyLayout::cluster_query_index`]).
fn tagged_index<'k>(scope: &str, member: &'k str, bucket: u64) -> QueryIndex<'k> {
  let tag = bucket_tag(scope, bucket);
  QueryIndex {
    namespace: Cow::Owned(format!("{scope}q:{tag}")),
    member,
    lex: format!("{scope}i:q{tag}"),
    expiry: format!("{scope}x:q{tag}"),
  }
}

/// The bucket of a query key on a Cluster.
fn bucket_of(member: &str) -> u64 {
  fnv1a(member.as_bytes()) % CLUSTER_BUCKETS
}

/// The hash tag of `bucket` of `scope` on a Cluster: `{<FNV-1a of the scope>.<bucket>}`.
fn bucket_tag(scope: &str, bucket: u64) -> String {
  format!("{{{:016x}.{bucket:x}}}", fnv1a(scope.as_bytes()))
}

/// 64-bit FNV-1a: stable across processes, machines and versions (it places keys in Redis).
fn fnv1a(bytes: &[u8]) -> u64 {
  bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
    (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
  })
}

/// A Cluster key name as the cache names the entry: the bucket tag after a query namespace
/// (see [`KeyLayout::cluster_query_index`]) removed; any other name as it is.
pub fn untag(name: &str) -> Cow<'_, str> {
  let Some(open) = name.find('{') else {
    return Cow::Borrowed(name);
  };
  let tag = name[open + 1..].split('}').next().unwrap_or_default();
  let well_formed = name[..open].ends_with(EntryType::Query.tag())
    && tag.len() > 17
    && name.len() > open + tag.len() + 1
    && tag.as_bytes()[16] == b'.'
    && tag.bytes().enumerate().all(|(i, b)| i == 16 || b.is_ascii_hexdigit());
  if !well_formed {
    return Cow::Borrowed(name);
  }
  Cow::Owned(format!("{}{}", &name[..open], &name[open + tag.len() + 2..]))
}

/// A Redis `SCAN MATCH` pattern matching exactly the keys that start with `literal`.
pub fn match_pattern(literal: &str) -> String {
  let mut out = glob_escape(literal);
  out.push('*');
  out
}

/// Escapes the glob metacharacters of Redis patterns (`* ? [ ] \`) so they match literally.
pub fn glob_escape(literal: &str) -> String {
  let mut out = String::with_capacity(literal.len() + 8);
  for c in literal.chars() {
    if matches!(c, '*' | '?' | '[' | ']' | '\\') {
      out.push('\\');
    }
    out.push(c);
  }
  out
}

#[cfg(test)]
mod tests {
  use super::*;

  fn layout() -> KeyLayout {
    KeyLayout::new("fc:")
  }

  #[test]
  fn documented_layout() {
    let l = layout();
    assert_eq!(l.key(Scope::Global, EntryType::Session, "abc"), "fc:s:abc");
    assert_eq!(l.key(Scope::Global, EntryType::Query, "orders_1"), "fc:q:orders_1");
    assert_eq!(l.key(Scope::Tenant("acme"), EntryType::Query, "k"), "fc:t:4:acme:q:k");
    assert_eq!(l.key(Scope::Tenant("é"), EntryType::Session, "k"), "fc:t:2:é:s:k");
  }

  #[test]
  fn escapes_every_glob_character() {
    assert_eq!(glob_escape(r"a*b?c[d]e\f"), r"a\*b\?c\[d\]e\\f");
    assert_eq!(match_pattern("fc:q:orders_"), "fc:q:orders_*");
  }

  #[test]
  fn scopes_and_kinds_never_collide() {
    let l = layout();
    let tenants = [
      "", "a", "a:", "a:s", "s", "q", "t", "1:a", "4:acme", ":", "*", "{x}", "\\", "é",
    ];
    let keys = ["", "k", "s:k", "q:k", ":k", "t:1:a:s:k", "1:a:s:k", "*", "é"];
    let mut seen = std::collections::HashMap::new();
    let mut scopes = vec![Scope::Global];
    scopes.extend(tenants.iter().map(|t| Scope::Tenant(t)));
    for scope in &scopes {
      for kind in [EntryType::Session, EntryType::Query] {
        for key in keys {
          let full = l.key(*scope, kind, key);
          if let Some(prev) = seen.insert(full.clone(), (*scope, kind, key)) {
            panic!("{full} produced by both {prev:?} and {:?}", (scope, kind, key));
          }
        }
      }
    }
  }

  #[test]
  fn rate_limiters_never_meet_entries_or_other_scopes() {
    let l = layout();
    assert_eq!(
      l.rate_limit_key(Scope::Global, "10:1000:10:", "ip"),
      "fc:r:g:10:1000:10:ip"
    );
    assert_eq!(
      l.rate_limit_key(Scope::Tenant("acme"), "10:1000:10:", "ip"),
      "fc:r:t:4:acme:10:1000:10:ip"
    );
    let tenants = ["a", "a:", "g", "4:acme", "r:g:", "é"];
    let keys = ["", "k", "g:k", "t:1:a:k", "10:1000:10:k"];
    let mut seen = std::collections::HashSet::new();
    let mut scopes = vec![Scope::Global];
    scopes.extend(tenants.iter().map(|t| Scope::Tenant(t)));
    for scope in &scopes {
      for key in keys {
        let full = l.rate_limit_key(*scope, "10:1000:10:", key);
        assert!(seen.insert(full.clone()), "{full} twice");
        assert!(
          !l.entry_prefixes().iter().any(|p| full.starts_with(p)),
          "{full} is tracked"
        );
        assert_ne!(full, l.processes_key());
      }
    }
    assert_eq!(l.entry_prefixes(), ["fc:s:", "fc:q:", "fc:t:"]);
  }

  #[test]
  fn a_scope_prefix_never_matches_another_scope() {
    let l = layout();
    let other = l.key(Scope::Tenant("acme"), EntryType::Query, "orders_1");
    for scope in [
      Scope::Global,
      Scope::Tenant("acm"),
      Scope::Tenant("acme2"),
      Scope::Tenant("4:acme"),
    ] {
      let p = l.literal_prefix(scope, EntryType::Query, "");
      assert!(!other.starts_with(&p), "{p} matches {other}");
    }
    let session = l.key(Scope::Global, EntryType::Session, "orders_1");
    assert!(!session.starts_with(&l.literal_prefix(Scope::Global, EntryType::Query, "orders_")));
  }

  #[test]
  fn query_index_of_every_scope() {
    let l = layout();
    let q = l.query_index("fc:q:orders_1").unwrap();
    assert_eq!(
      (&*q.namespace, q.member, q.lex.as_str(), q.expiry.as_str()),
      ("fc:q:", "orders_1", "fc:i:q", "fc:x:q")
    );
    let t = l.query_index("fc:t:4:acme:q:").unwrap();
    assert_eq!(
      (&*t.namespace, t.member, t.lex.as_str()),
      ("fc:t:4:acme:q:", "", "fc:t:4:acme:i:q")
    );
    // a tenant id holding the layout's own separators
    let full = l.key(Scope::Tenant("a:q:b"), EntryType::Query, "q:k");
    let odd = l.query_index(&full).unwrap();
    assert_eq!(
      (&*odd.namespace, odd.member, odd.expiry.as_str()),
      ("fc:t:5:a:q:b:q:", "q:k", "fc:t:5:a:q:b:x:q")
    );
    for not_indexed in [
      "fc:s:k",
      "fc:t:4:acme:s:q:k",
      "other:q:k",
      "fc:t:9:acme:q:k",
      "fc:t:x:q:k",
      "fc:i:q",
      "fc:t:",
    ] {
      assert_eq!(l.query_index(not_indexed), None, "{not_indexed}");
    }
  }

  #[test]
  fn cluster_index_shares_a_slot_with_its_entries_and_spreads_a_scope() {
    let l = layout();
    let slot = |name: &str| redis::cluster_routing::Slot::for_key(name);
    let mut slots = std::collections::HashSet::new();
    for i in 0..200 {
      let full = l.key(Scope::Tenant("acme}"), EntryType::Query, &format!("orders_{i}"));
      let q = l.cluster_query_index(&full).unwrap();
      let name = q.key();
      assert_eq!(l.cluster_query_key(&full).as_ref(), Some(&name));
      assert!(
        name.starts_with("fc:t:5:acme}:q:{") && name.ends_with(&format!("}}orders_{i}")),
        "{name}"
      );
      assert_eq!((slot(&name), slot(&name)), (slot(&q.lex), slot(&q.expiry)), "{name}");
      assert_eq!(untag(&name), full);
      slots.insert(slot(&name));
      // the prefix's indexes include this entry's bucket
      let all = l.cluster_query_indexes("fc:t:5:acme}:q:orders_").unwrap();
      assert_eq!(all.len() as u64, CLUSTER_BUCKETS);
      assert!(all.iter().any(|b| b.lex == q.lex && b.member == "orders_"));
    }
    assert_eq!(slots.len() as u64, CLUSTER_BUCKETS, "one slot per bucket");
    // another scope, other slots (the scope is hashed into the tag)
    let other = l.cluster_query_index("fc:q:orders_1").unwrap();
    assert_ne!(other.lex, l.cluster_query_index("fc:t:4:acme:q:orders_1").unwrap().lex);
    // a scope with its own brace is not indexed; nor are sessions
    assert!(l.cluster_query_index("fc:t:3:a{b:q:k").is_none());
    assert!(KeyLayout::new("app{1}:").cluster_query_indexes("app{1}:q:").is_none());
    assert!(l.cluster_query_index("fc:s:k").is_none());
    // untag leaves every other name alone
    for name in [
      "fc:s:{0123456789abcdef.1}k",
      "fc:q:{x}k",
      "fc:q:k",
      "fc:i:q{0123456789abcdef.f}",
      "{",
    ] {
      assert_eq!(untag(name), name);
    }
  }

  #[test]
  fn index_keys_are_outside_every_namespace() {
    let l = layout();
    for scope in [Scope::Global, Scope::Tenant("acme"), Scope::Tenant("i:q")] {
      let ns = l.literal_prefix(scope, EntryType::Query, "");
      let q = l.query_index(&ns).unwrap();
      for kind in [EntryType::Session, EntryType::Query] {
        for other in [Scope::Global, Scope::Tenant("acme"), Scope::Tenant("i:q")] {
          let ns = l.namespace(other, kind);
          assert!(
            !q.lex.starts_with(&ns) && !q.expiry.starts_with(&ns),
            "{} under {ns}",
            q.lex
          );
        }
      }
    }
  }
}
