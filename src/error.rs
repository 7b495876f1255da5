//! The core error type and its stable, documented codes.
//!
//! Every fallible core function returns [`Error`]. The napi boundary maps it to a
//! JS error in exactly one place (`lib.rs`), using [`Error::code`] as `err.code`.
//! The JS wrapper turns `ERR_INVALID_ARG`/`ERR_SERIALIZE` into `TypeError` and
//! `ERR_TOO_LARGE` into `RangeError`.

use std::fmt;

/// Result with the core [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// Stable error codes, as seen by JavaScript in `err.code`.
pub mod codes {
  /// Wrong type, empty key, malformed option, bad TTL.
  pub const INVALID_ARG: &str = "ERR_INVALID_ARG";
  /// The value cannot be represented as JSON (raised by the JS layer, listed for completeness).
  #[allow(dead_code)]
  pub const SERIALIZE: &str = "ERR_SERIALIZE";
  /// A key or value is larger than the configured limit.
  pub const TOO_LARGE: &str = "ERR_TOO_LARGE";
  /// The manager was closed.
  pub const CLOSED: &str = "ERR_CLOSED";
  /// Redis cannot serve the call and the in-process fallback is disabled.
  pub const REDIS_UNAVAILABLE: &str = "ERR_REDIS_UNAVAILABLE";
  /// Redis answered with an error reply that is not an outage (e.g. WRONGTYPE).
  pub const REDIS: &str = "ERR_REDIS";
}

/// How a Redis failure is classified by the failover layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RedisFailure {
  /// No answer within the deadline (hung or overloaded server).
  Timeout,
  /// The connection was refused: the command was certainly not sent.
  Refused,
  /// Connection reset or dropped, I/O or protocol error: the command may or may not have run.
  Connection,
  /// Wrong password, unknown ACL user, unknown host, TLS: retrying will not help.
  Misconfiguration,
  /// The server refused a write for capacity (`OOM` under `maxmemory` with `noeviction`,
  /// `MISCONF`, `NOREPLICAS`): it still serves reads, so this is a partial outage.
  WriteRefused,
  /// The server refused a write because it is a replica now (`READONLY`: a demoted master).
  /// A partial outage like [`RedisFailure::WriteRefused`]; the connection is opened anew
  /// (with Sentinel, to the new master).
  ReadOnly,
  /// The server replied with an error to a well-formed command.
  Reply,
}

/// The core error, by cause.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
  /// Bad argument or option; the message names it.
  InvalidArg(String),
  /// A key or value over its limit; the message names the limit.
  TooLarge(String),
  /// The manager was closed.
  Closed,
  /// Redis failed and fallback is disabled (or the failure could not be hidden).
  RedisUnavailable(String),
  /// A Redis failure, classified.
  Redis { kind: RedisFailure, message: String },
}

impl Error {
  /// The stable `err.code` for JavaScript.
  pub fn code(&self) -> &'static str {
    match self {
      Error::InvalidArg(_) => codes::INVALID_ARG,
      Error::TooLarge(_) => codes::TOO_LARGE,
      Error::Closed => codes::CLOSED,
      Error::RedisUnavailable(_) => codes::REDIS_UNAVAILABLE,
      Error::Redis {
        kind: RedisFailure::Reply,
        ..
      } => codes::REDIS,
      Error::Redis { .. } => codes::REDIS_UNAVAILABLE,
    }
  }

  /// Shorthand for [`Error::InvalidArg`].
  pub fn invalid(message: impl Into<String>) -> Self {
    Error::InvalidArg(message.into())
  }

  /// True when the failure means "Redis is not serving": a reason to use the fallback store.
  pub fn is_outage(&self) -> bool {
    matches!(
      self,
      Error::Redis {
        kind: RedisFailure::Timeout | RedisFailure::Refused | RedisFailure::Connection | RedisFailure::Misconfiguration,
        ..
      }
    )
  }

  /// True for an outage after which the command may still have run (or may run
  /// late, e.g. on a server that hung with the command in its socket buffer).
  pub fn may_have_been_applied(&self) -> bool {
    matches!(
      self,
      Error::Redis {
        kind: RedisFailure::Timeout | RedisFailure::Connection,
        ..
      }
    )
  }

  /// True when Redis refused a write for capacity or role ([`RedisFailure::WriteRefused`],
  /// [`RedisFailure::ReadOnly`]).
  pub fn is_write_refused(&self) -> bool {
    matches!(
      self,
      Error::Redis {
        kind: RedisFailure::WriteRefused | RedisFailure::ReadOnly,
        ..
      }
    )
  }

  /// True when the connection should be opened anew: an outage, or a server that is no
  /// longer the master (`READONLY`; with Sentinel the next connect asks for the new one).
  pub fn needs_new_connection(&self) -> bool {
    self.is_outage()
      || matches!(
        self,
        Error::Redis {
          kind: RedisFailure::ReadOnly,
          ..
        }
      )
  }

  /// True for a deadline that passed without an answer.
  pub fn is_timeout(&self) -> bool {
    matches!(
      self,
      Error::Redis {
        kind: RedisFailure::Timeout,
        ..
      }
    )
  }

  /// True for failures that retrying cannot fix (credentials, TLS, DNS).
  pub fn is_misconfiguration(&self) -> bool {
    matches!(
      self,
      Error::Redis {
        kind: RedisFailure::Misconfiguration,
        ..
      }
    )
  }

  pub(crate) fn timeout(what: &str, ms: u64) -> Self {
    Error::Redis {
      kind: RedisFailure::Timeout,
      message: format!("{what} timed out after {ms} ms"),
    }
  }
}

impl fmt::Display for Error {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match self {
      Error::InvalidArg(m) | Error::TooLarge(m) | Error::RedisUnavailable(m) => f.write_str(m),
      Error::Closed => f.write_str("the cache manager is closed"),
      Error::Redis { message, .. } => write!(f, "redis: {message}"),
    }
  }
}

impl std::error::Error for Error {}

impl From<redis::RedisError> for Error {
  fn from(e: redis::RedisError) -> Self {
    Error::Redis {
      kind: classify(&e),
      message: e.to_string(),
    }
  }
}

/// Sorts a redis-rs error into the failure classes the failover layer acts on.
fn classify(e: &redis::RedisError) -> RedisFailure {
  use redis::{ErrorKind as K, ServerErrorKind as S};
  let text = e.to_string();
  if e.is_timeout() {
    RedisFailure::Timeout
  } else if matches!(e.kind(), K::Server(S::ReadOnly)) || e.code() == Some("READONLY") {
    RedisFailure::ReadOnly
  } else if matches!(e.code(), Some("OOM" | "MISCONF" | "NOREPLICAS")) {
    RedisFailure::WriteRefused
  } else if matches!(
    e.kind(),
    K::AuthenticationFailed | K::InvalidClientConfig | K::Server(S::NoPerm)
  ) || [
    "NOAUTH",
    "WRONGPASS",
    "NOPERM",
    // the cluster client wraps a refused password of a node in an I/O error
    "AuthenticationFailed",
    "failed to lookup address",
    "certificate",
    "Certificate",
    "HandshakeFailure",
    // rustls: the server's TLS alert (UnknownCA, BadCertificate, AccessDenied...) refusing our client certificate
    "received fatal alert",
  ]
  .iter()
  .any(|m| text.contains(m))
  {
    RedisFailure::Misconfiguration
  } else if e.is_connection_refusal() {
    RedisFailure::Refused
  } else if e.is_io_error()
    || e.is_connection_refusal()
    || e.is_connection_dropped()
    || matches!(
      e.kind(),
      K::Io
        | K::Parse
        | K::Server(
          S::BusyLoading | S::TryAgain | S::ClusterDown | S::MasterDown | S::Moved | S::Ask
        )
    )
    // a Cluster shard or a Sentinel master being replaced: a redirection redis-rs could not
    // follow (MOVED/ASK reaching us), no connection to the slot's master yet, or the
    // sentinels name no (reachable) master for a moment
    || matches!(
      e.kind(),
      K::ClusterConnectionNotFound
        | K::MasterNameNotFoundBySentinel
        | K::NoValidReplicasFoundBySentinel
        | K::EmptySentinelList
    )
  {
    // not serving: refused, reset, protocol garbage, loading
    RedisFailure::Connection
  } else {
    RedisFailure::Reply
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn codes_are_stable() {
    assert_eq!(Error::invalid("x").code(), "ERR_INVALID_ARG");
    assert_eq!(Error::TooLarge("x".into()).code(), "ERR_TOO_LARGE");
    assert_eq!(Error::Closed.code(), "ERR_CLOSED");
    assert_eq!(Error::RedisUnavailable("x".into()).code(), "ERR_REDIS_UNAVAILABLE");
  }

  #[test]
  fn redis_errors_are_classified_by_cause() {
    use redis::{ErrorKind as K, RedisError, ServerErrorKind as S};
    let of = |kind, desc: &'static str| Error::from(RedisError::from((kind, desc)));
    let refused = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
    let refused = Error::from(refused);
    assert!(refused.is_outage());
    assert!(
      !refused.may_have_been_applied(),
      "a refused connection never ran the command"
    );
    assert!(Error::timeout("SET", 1).may_have_been_applied());
    assert!(of(K::AuthenticationFailed, "bad password").is_misconfiguration());
    assert!(of(K::Server(S::ResponseError), "WRONGPASS invalid username-password pair").is_misconfiguration());
    assert!(of(K::Server(S::BusyLoading), "LOADING").is_outage());
    let readonly = of(K::Server(S::ReadOnly), "READONLY");
    assert!(
      readonly.is_write_refused() && !readonly.is_outage(),
      "a demoted master still serves reads"
    );
    assert!(readonly.needs_new_connection(), "Sentinel: reconnect to the new master");
    assert_eq!(readonly.code(), "ERR_REDIS_UNAVAILABLE");
    let reply = |line: &[u8]| match redis::parse_redis_value(line).unwrap() {
      redis::Value::ServerError(e) => Error::from(RedisError::from(e)),
      other => panic!("not an error reply: {other:?}"),
    };
    for refusal in [
      &b"-OOM command not allowed when used memory > 'maxmemory'.\r\n"[..],
      b"-MISCONF Redis is configured to save RDB snapshots\r\n",
      b"-NOREPLICAS Not enough good replicas to write.\r\n",
    ] {
      let e = reply(refusal);
      assert!(
        e.is_write_refused() && !e.is_outage() && !e.needs_new_connection(),
        "{e:?}"
      );
    }
    assert!(!reply(b"-ERR unknown command\r\n").is_write_refused());
    let wrongtype = of(K::Server(S::ResponseError), "WRONGTYPE Operation against a key");
    assert!(!wrongtype.is_outage());
    assert_eq!(wrongtype.code(), "ERR_REDIS");
    assert!(!of(K::UnexpectedReturnType, "type error").is_outage());
  }

  #[test]
  fn outage_classification() {
    assert!(Error::timeout("GET", 5).is_outage());
    assert!(Error::timeout("GET", 5).is_timeout());
    let reply = Error::Redis {
      kind: RedisFailure::Reply,
      message: "WRONGTYPE".into(),
    };
    assert!(!reply.is_outage());
    assert_eq!(reply.code(), "ERR_REDIS");
    assert!(!Error::invalid("x").is_outage());
  }
}
