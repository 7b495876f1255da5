//! One call to the cache: what the caller asked ([`Request`]), the same validated and owned
//! ([`Op`], what waits in the queue and runs), what it answers ([`Answer`]) and who answered
//! it ([`Served`]).

use std::sync::Arc;

use crate::keys::{EntryType, Scope};
use crate::ratelimit::{Decision, Policy};
use crate::store::memory::Stored;

/// What a call does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
  /// Read one entry.
  Get,
  /// Write one entry (value and TTL).
  Set,
  /// Delete one entry.
  Delete,
  /// Remove the entries whose key starts with a prefix.
  Invalidate,
  /// Remove every entry of the type in the scope.
  InvalidateAll,
  /// List the keys of the type in the scope.
  ListKeys,
  /// Check a rate limit (the request's `rate`).
  RateLimit,
}

/// The numbers of a rate-limit check, as the caller gave them (validated by
/// [`crate::cache::Cache::prepare`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateArgs {
  /// Units per window.
  pub limit: f64,
  /// The window in ms.
  pub window_ms: f64,
  /// Units at once; `None` = `limit`.
  pub burst: Option<f64>,
  /// Units this check spends.
  pub cost: f64,
}

/// One call as the caller made it, borrowed from its arguments.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
  /// What it does.
  pub action: Action,
  /// Session or query entry.
  pub entry: EntryType,
  /// The manager's own keys or one tenant's.
  pub scope: Scope<'a>,
  /// The key (a prefix for `Invalidate`; ignored for `InvalidateAll` and `ListKeys`).
  pub key: &'a str,
  /// The JSON text of a `Set`.
  pub value: Option<&'a str>,
  /// The TTL of a `Set` in seconds; `None` = the type's default.
  pub ttl_secs: Option<f64>,
  /// The policy and cost of a `RateLimit`.
  pub rate: Option<RateArgs>,
}

impl<'a> Request<'a> {
  fn new(action: Action, entry: EntryType, scope: Scope<'a>, key: &'a str) -> Self {
    Request {
      action,
      entry,
      scope,
      key,
      value: None,
      ttl_secs: None,
      rate: None,
    }
  }

  /// Reads `key`.
  pub fn get(scope: Scope<'a>, entry: EntryType, key: &'a str) -> Self {
    Self::new(Action::Get, entry, scope, key)
  }

  /// Writes `json` under `key` for `ttl_secs` (or the type's default).
  pub fn set(scope: Scope<'a>, entry: EntryType, key: &'a str, json: &'a str, ttl_secs: Option<f64>) -> Self {
    Request {
      value: Some(json),
      ttl_secs,
      ..Self::new(Action::Set, entry, scope, key)
    }
  }

  /// Deletes `key`.
  pub fn delete(scope: Scope<'a>, entry: EntryType, key: &'a str) -> Self {
    Self::new(Action::Delete, entry, scope, key)
  }

  /// Removes the entries whose key starts with `prefix` (non-empty).
  pub fn invalidate(scope: Scope<'a>, entry: EntryType, prefix: &'a str) -> Self {
    Self::new(Action::Invalidate, entry, scope, prefix)
  }

  /// Removes every entry of `entry`'s type in `scope`.
  pub fn invalidate_all(scope: Scope<'a>, entry: EntryType) -> Self {
    Self::new(Action::InvalidateAll, entry, scope, "")
  }

  /// Lists the keys of `entry`'s type in `scope`.
  pub fn list_keys(scope: Scope<'a>, entry: EntryType) -> Self {
    Self::new(Action::ListKeys, entry, scope, "")
  }

  /// Checks the rate limit of `key` in `scope` (the entry type plays no part).
  pub fn rate_limit(scope: Scope<'a>, key: &'a str, rate: RateArgs) -> Self {
    Request {
      rate: Some(rate),
      ..Self::new(Action::RateLimit, EntryType::Query, scope, key)
    }
  }
}

/// What a validated call does, with what it needs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Work {
  Get,
  Set {
    value: Arc<str>,
    ttl_ms: u64,
  },
  Delete,
  /// Removes what starts with the op's (literal) full prefix.
  Invalidate,
  ListKeys,
  /// A rate-limit check of the limiter at the op's full key.
  RateLimit {
    policy: Policy,
    cost: u64,
  },
}

/// A validated call, owning what it needs: it may wait in the queue for the tick's batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Op {
  pub(crate) work: Work,
  pub(crate) entry: EntryType,
  pub(crate) tenant: Option<Arc<str>>,
  /// The full key (or literal full prefix) in Redis and in the in-process stores.
  pub(crate) full: String,
}

impl Op {
  /// The scope the op runs in.
  pub(crate) fn scope(&self) -> Scope<'_> {
    match &self.tenant {
      Some(t) => Scope::Tenant(t),
      None => Scope::Global,
    }
  }
}

/// A value as read: text of a Redis reply, or shared with the in-process store (or the near
/// cache). Two texts are equal when their contents are, wherever they are held.
#[derive(Debug, Clone)]
pub enum Text {
  /// Read from Redis.
  Owned(String),
  /// Held by the in-process store (not copied).
  Shared(Stored),
}

impl std::ops::Deref for Text {
  type Target = str;

  fn deref(&self) -> &str {
    match self {
      Text::Owned(s) => s,
      Text::Shared(s) => s,
    }
  }
}

impl PartialEq for Text {
  fn eq(&self, other: &Self) -> bool {
    **self == **other
  }
}

impl Eq for Text {}

impl Text {
  /// Every byte is ASCII (then also Latin-1, the cheapest form for a JavaScript string).
  pub fn is_ascii(&self) -> bool {
    match self {
      Text::Owned(s) => s.is_ascii(),
      Text::Shared(s) => s.ascii,
    }
  }
}

impl From<Arc<str>> for Text {
  fn from(text: Arc<str>) -> Self {
    let ascii = text.is_ascii();
    Text::Shared(Stored { text, ascii })
  }
}

/// What a call answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
  /// A get: the JSON text, or `None` on a miss.
  Value(Option<Text>),
  /// A set.
  Done,
  /// A delete: whether the entry existed.
  Existed(bool),
  /// An invalidation: how many entries it removed.
  Count(u64),
  /// A listing: the keys as the caller wrote them, sorted.
  Keys(Vec<String>),
  /// A rate-limit check.
  Limit(Decision),
}

impl Answer {
  /// The text of a get's answer (`None` for a miss or another answer).
  pub fn text(&self) -> Option<&str> {
    match self {
      Answer::Value(Some(t)) => Some(t),
      _ => None,
    }
  }
}

/// Who answered a call (reported to tracing; an error's is meaningless).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Served {
  /// A Redis round trip.
  Redis = 0,
  /// In-process, from what Redis last said: the near cache (its fail-safe copy during an
  /// outage included), or a rate-limit check refused from the debt Redis last reported.
  Near = 1,
  /// The in-process store and the outage journal (`memory://`, an outage, a key with a
  /// pending journal entry), or the local rate limiter.
  Local = 2,
}

/// The answers of some calls, in order, and who answered each.
#[derive(Debug, Default, PartialEq)]
pub struct Ran {
  /// The answers.
  pub answers: Vec<crate::error::Result<Answer>>,
  /// Who answered each (same length).
  pub served: Vec<Served>,
}

impl Ran {
  /// Room for `n` answers.
  pub fn with_capacity(n: usize) -> Self {
    Ran {
      answers: Vec::with_capacity(n),
      served: Vec::with_capacity(n),
    }
  }

  /// Adds an answer.
  pub fn push(&mut self, answer: crate::error::Result<Answer>, served: Served) {
    self.answers.push(answer);
    self.served.push(served);
  }
}
