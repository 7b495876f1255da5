//! The query index: what makes `invalidateCache(prefix)` cost the number of keys it
//! removes instead of the size of the keyspace (a `SCAN` visits every key).
//!
//! Each scope's query keys are listed in two sorted sets with the same members (the
//! keys as the caller wrote them, see [`crate::keys::QueryIndex`]): `lex`, every score
//! 0, read by prefix with `ZRANGEBYLEX`, and `expiry`, scored by when each entry is
//! expected to expire. The invariant is that **a live entry is always listed in `lex`**:
//! - a write is one `MULTI`/`EXEC` transaction (`ZADD expiry`, `ZADD lex`, `SET`, and when
//!   needed `PEXPIRE` of both sets): it runs whole or not at all, and no other client's
//!   command runs between its parts;
//! - an invalidation ([`Scripts::invalidate`]) is one script step: it takes up to
//!   [`INVALIDATE_CHUNK`] members in the prefix's range, unlinks their entries (counting
//!   the live ones) and drops them from both sets; the caller repeats it until a chunk
//!   comes back short;
//! - a sweep ([`Scripts::sweep`], sent with every [`SWEEP_EVERY`]th write) looks at the
//!   members whose expiry score has passed and drops only those whose entry is gone; an
//!   entry still alive (the score came from a client clock behind the server's) is
//!   re-scored from its `PTTL`. So the score is only a hint and clock skew cannot unlist
//!   a live entry.
//!
//! Memory: both sets expire no earlier than their longest-lived entry (`PEXPIRE NX` to
//! give a new set a TTL, `PEXPIRE GT` to extend it, with [`TTL_SLACK_MS`] to spare so
//! most writes need neither); a scope that goes quiet loses its sets with its last entry.
//! A busy scope holds its live entries plus those expired since the last sweeps. Deleting
//! one entry leaves its member listed until its score passes; a listed member without an
//! entry is harmless (unlinking it counts 0).

use redis::{Cmd, Script};

use crate::keys::QueryIndex;
use crate::ratelimit::{CHECK_SCRIPT, HEARTBEAT_SCRIPT};

/// Members one invalidation script step handles (Redis answers other clients between steps).
pub const INVALIDATE_CHUNK: usize = 1000;
/// One write in this many carries a sweep.
pub const SWEEP_EVERY: u64 = 16;
/// Members a sweep looks at: 4 per write on average, more than the at most 1 a write can add.
pub const SWEEP_LIMIT: usize = 64;
/// The index sets are given up to this much more time than the entry that extends them
/// (at most the entry's TTL again), so the writes that follow within it send no `PEXPIRE`.
pub const TTL_SLACK_MS: u64 = 60_000;

/// How long a write gives the index sets to live: its entry's TTL plus the slack.
pub fn index_lifetime(ttl_ms: u64) -> u64 {
  ttl_ms + ttl_ms.min(TTL_SLACK_MS)
}

/// KEYS: lex, expiry. ARGV: namespace, min, max (ZRANGEBYLEX bounds), chunk size.
/// Returns {live entries unlinked, members handled}.
const INVALIDATE: &str = r"
local members = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[2], ARGV[3], 'LIMIT', 0, tonumber(ARGV[4]))
if #members == 0 then return {0, 0} end
local keys = {}
for i, m in ipairs(members) do keys[i] = ARGV[1] .. m end
local removed = redis.call('UNLINK', unpack(keys))
redis.call('ZREM', KEYS[1], unpack(members))
redis.call('ZREM', KEYS[2], unpack(members))
return {removed, #members}
";

/// KEYS: lex, expiry. ARGV: namespace, how many due members to look at.
/// Returns how many members were dropped.
const SWEEP: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
local gone = {}
for _, m in ipairs(due) do
  local left = redis.call('PTTL', ARGV[1] .. m)
  if left > 0 then
    redis.call('ZADD', KEYS[2], now + left, m)
  elseif left == -1 then
    redis.call('ZADD', KEYS[2], now + 3600000, m)
  else
    gone[#gone + 1] = m
  end
end
if #gone > 0 then
  redis.call('ZREM', KEYS[1], unpack(gone))
  redis.call('ZREM', KEYS[2], unpack(gone))
end
return #gone
";

/// The outage replay's write (rare): unless Redis holds a value for the entry that expires
/// later, the same effects as a write's transaction. KEYS: entry, lex, expiry. ARGV: value,
/// ttl ms, member, index lifetime ms. Returns 1 if written, 0 if not.
const WRITE_IF_LATER: &str = r"
local ttl = tonumber(ARGV[2])
if redis.call('PTTL', KEYS[1]) > ttl then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[3], now + ttl, ARGV[3])
redis.call('ZADD', KEYS[2], 0, ARGV[3])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
local keep = tonumber(ARGV[4])
for i = 2, 3 do
  local p = redis.call('PTTL', KEYS[i])
  if p == -1 or p < keep then redis.call('PEXPIRE', KEYS[i], keep) end
end
return 1
";

/// The store's scripts (the index's and the rate limiter's), hashed once.
pub struct Scripts {
  invalidate: Script,
  sweep: Script,
  write_if_later: Script,
  rate_check: Script,
  heartbeat: Script,
}

impl Default for Scripts {
  fn default() -> Self {
    Scripts {
      invalidate: Script::new(INVALIDATE),
      sweep: Script::new(SWEEP),
      write_if_later: Script::new(WRITE_IF_LATER),
      rate_check: Script::new(CHECK_SCRIPT),
      heartbeat: Script::new(HEARTBEAT_SCRIPT),
    }
  }
}

impl Scripts {
  /// `SCRIPT LOAD` of every script (after `NOSCRIPT`: a restarted or flushed server).
  pub fn load_cmds(&self) -> Vec<Cmd> {
    [INVALIDATE, SWEEP, WRITE_IF_LATER, CHECK_SCRIPT, HEARTBEAT_SCRIPT]
      .into_iter()
      .map(|code| {
        let mut cmd = redis::cmd("SCRIPT");
        cmd.arg("LOAD").arg(code);
        cmd
      })
      .collect()
  }

  /// One step of the invalidation of every listed key starting with `index.member`
  /// (every key of the scope when it is empty). Replies `(live entries unlinked, members handled)`.
  pub fn invalidate(&self, index: &QueryIndex<'_>) -> Cmd {
    let (min, max) = lex_range(index.member);
    let mut cmd = evalsha(&self.invalidate, &[&index.lex, &index.expiry]);
    cmd.arg(&*index.namespace).arg(min).arg(max).arg(INVALIDATE_CHUNK);
    cmd
  }

  /// Drops up to [`SWEEP_LIMIT`] members of `index` whose entries are gone.
  pub fn sweep(&self, index: &QueryIndex<'_>) -> Cmd {
    let mut cmd = evalsha(&self.sweep, &[&index.lex, &index.expiry]);
    cmd.arg(&*index.namespace).arg(SWEEP_LIMIT);
    cmd
  }

  /// A rate-limit check of `name` (see [`crate::ratelimit::CHECK_SCRIPT`]); `force` counts
  /// the cost whatever the debt.
  pub fn rate_check(&self, name: &str, interval_us: f64, tolerance_us: f64, cost: u64, force: bool) -> Cmd {
    let mut cmd = evalsha(&self.rate_check, &[name]);
    cmd
      .arg(format!("{interval_us:.3}"))
      .arg(format!("{tolerance_us:.3}"))
      .arg(cost)
      .arg(if force { "1" } else { "0" });
    cmd
  }

  /// This process's heartbeat in `set` (see [`crate::ratelimit::HEARTBEAT_SCRIPT`]).
  pub fn heartbeat(&self, set: &str, instance: &str, live_ms: u64) -> Cmd {
    let mut cmd = evalsha(&self.heartbeat, &[set]);
    cmd.arg(instance).arg(live_ms);
    cmd
  }

  /// The replay's write: only if Redis holds no value for `full` that expires later.
  pub fn write_if_later(&self, full: &str, index: &QueryIndex<'_>, value: &str, ttl_ms: u64) -> Cmd {
    let mut cmd = evalsha(&self.write_if_later, &[full, &index.lex, &index.expiry]);
    cmd.arg(value).arg(ttl_ms).arg(index.member).arg(index_lifetime(ttl_ms));
    cmd
  }
}

/// The commands of one indexed write, a `MULTI`/`EXEC` transaction: `now_ms` (this
/// process's clock) only seeds the expiry score (see the module doc); with `extend`, both
/// sets are given at least [`index_lifetime`] to live.
pub fn write(full: &str, index: &QueryIndex<'_>, value: &str, ttl_ms: u64, now_ms: u64, extend: bool) -> Vec<Cmd> {
  let mut cmds = Vec::with_capacity(if extend { 9 } else { 5 });
  cmds.push(redis::cmd("MULTI"));
  let mut expiry = redis::cmd("ZADD");
  expiry.arg(&index.expiry).arg(now_ms + ttl_ms).arg(index.member);
  cmds.push(expiry);
  let mut lex = redis::cmd("ZADD");
  lex.arg(&index.lex).arg(0).arg(index.member);
  cmds.push(lex);
  let mut set = redis::cmd("SET");
  set.arg(full).arg(value).arg("PX").arg(ttl_ms);
  cmds.push(set);
  if extend {
    let keep = index_lifetime(ttl_ms);
    for key in [&index.lex, &index.expiry] {
      for when in ["NX", "GT"] {
        let mut cmd = redis::cmd("PEXPIRE");
        cmd.arg(key).arg(keep).arg(when);
        cmds.push(cmd);
      }
    }
  }
  cmds.push(redis::cmd("EXEC"));
  cmds
}

/// The outcome of a write's replies ([`write`]): the first error (a command refused when
/// queued, `EXECABORT`, or an error inside `EXEC`'s reply), else success.
pub fn write_outcome(replies: &[redis::RedisResult<redis::Value>]) -> redis::RedisResult<()> {
  for reply in replies {
    match reply {
      Err(e) => return Err(e.clone()),
      Ok(redis::Value::Array(items)) => {
        for item in items {
          if let redis::Value::ServerError(e) = item {
            return Err(e.clone().into());
          }
        }
      }
      Ok(_) => {}
    }
  }
  Ok(())
}

fn evalsha(script: &Script, keys: &[&str]) -> Cmd {
  let mut cmd = redis::cmd("EVALSHA");
  cmd.arg(script.get_hash()).arg(keys.len()).arg(keys);
  cmd
}

/// `ZRANGEBYLEX` bounds of the members starting with `prefix`: from `[prefix` (inclusive)
/// to `(prefix 0xFF` (exclusive; UTF-8 text never holds the byte 0xFF, so every member
/// starting with `prefix` sorts below it and every other member outside the range).
pub fn lex_range(prefix: &str) -> (Vec<u8>, Vec<u8>) {
  if prefix.is_empty() {
    return (b"-".to_vec(), b"+".to_vec());
  }
  let min = [b"[", prefix.as_bytes()].concat();
  let max = [b"(", prefix.as_bytes(), &[0xFF]].concat();
  (min, max)
}

/// True when `err` is Redis saying it does not know a script (`NOSCRIPT`).
pub fn is_noscript(err: &redis::RedisError) -> bool {
  err.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn lex_range_brackets_exactly_the_prefix() {
    let (min, max) = lex_range("orders_");
    assert_eq!(min, b"[orders_");
    assert_eq!(max, b"(orders_\xff");
    let inside = |m: &str| m.as_bytes() >= &min[1..] && m.as_bytes() < &max[1..];
    for m in ["orders_", "orders_1", "orders_\u{10FFFF}", "orders_é"] {
      assert!(inside(m), "{m}");
    }
    for m in ["orders", "ordersX", "orders^", "orders`", "p", "order"] {
      assert!(!inside(m), "{m}");
    }
    assert_eq!(lex_range(""), (b"-".to_vec(), b"+".to_vec()));
  }

  #[test]
  fn a_write_is_one_transaction_listing_before_it_sets() {
    let layout = crate::keys::KeyLayout::new("fc:");
    let index = layout.query_index("fc:q:k").unwrap();
    let names = |cmds: &[Cmd]| -> Vec<String> {
      cmds
        .iter()
        .map(|c| {
          let packed = String::from_utf8_lossy(&c.get_packed_command()).to_string();
          let words: Vec<&str> = packed.split("\r\n").filter(|w| !w.starts_with(['*', '$'])).collect();
          words.join(" ").trim().to_string()
        })
        .collect()
    };
    let plain = write("fc:q:k", &index, "{}", 1000, 5_000, false);
    assert_eq!(
      names(&plain),
      [
        "MULTI",
        "ZADD fc:x:q 6000 k",
        "ZADD fc:i:q 0 k",
        "SET fc:q:k {} PX 1000",
        "EXEC"
      ]
    );
    let extended = names(&write("fc:q:k", &index, "{}", 1000, 5_000, true));
    assert_eq!(extended.len(), 9);
    assert_eq!(extended[4], "PEXPIRE fc:i:q 2000 NX");
    assert_eq!(extended[7], "PEXPIRE fc:x:q 2000 GT");
    assert_eq!(index_lifetime(3_600_000), 3_660_000, "the slack is capped");
  }

  #[test]
  fn write_outcome_finds_errors_inside_exec() {
    use redis::Value;
    let ok = [Ok(Value::Okay), Ok(Value::Array(vec![Value::Int(1), Value::Okay]))];
    assert!(write_outcome(&ok).is_ok());
    // what EXEC answers when one queued command failed at run time
    let exec = redis::parse_redis_value(b"*2\r\n:1\r\n-WRONGTYPE Operation against a key\r\n").unwrap();
    let failed = [Ok(Value::Okay), Ok(exec)];
    assert!(write_outcome(&failed).is_err());
    let refused = [
      Ok(Value::Okay),
      Err(redis::RedisError::from((redis::ErrorKind::Io, "gone"))),
    ];
    assert!(write_outcome(&refused).is_err());
  }
}
