//! Key commands in pipelines: the GETs, writes and deletes of one batch in one round trip
//! (per master on a Cluster), with the query index's transaction for query writes.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures_util::future::join_all;
use redis::Cmd;

use super::query_index::{self, is_noscript};
use super::slots::SlotTable;
use super::topology::{cluster_nodes, split_address, NodeRole};
use super::{not_utf8, RedisStore};
use crate::error::{Error, RedisFailure, Result};
use crate::keys::QueryIndex;
use crate::store::Store;

/// One key command of a batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KeyCommand<'a> {
  /// `GET key`.
  Get(&'a str),
  /// `GET key` and `PTTL key`.
  GetWithTtl(&'a str),
  /// Writes `value` under `key` for `ttl_ms` (a query result: listed in its index).
  Set { key: &'a str, value: &'a str, ttl_ms: u64 },
  /// `UNLINK key`.
  Delete(&'a str),
  /// A rate-limit check of the limiter `key` (see [`crate::ratelimit::CHECK_SCRIPT`]).
  RateLimit {
    key: &'a str,
    interval_us: f64,
    tolerance_us: f64,
    cost: u64,
    /// Count the cost whatever the debt (local consumption counted on recovery).
    force: bool,
  },
}

impl<'a> KeyCommand<'a> {
  /// The key it works on.
  pub fn key(&self) -> &'a str {
    match *self {
      KeyCommand::Get(key)
      | KeyCommand::GetWithTtl(key)
      | KeyCommand::Delete(key)
      | KeyCommand::Set { key, .. }
      | KeyCommand::RateLimit { key, .. } => key,
    }
  }
}

/// What one key command answered.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyReply {
  /// A GET: the text, or `None` for a missing key.
  Value(Option<String>),
  /// A GET with its key's remaining TTL in ms (`None`: the key does not expire).
  Valued(Option<String>, Option<u64>),
  /// A write succeeded.
  Done,
  /// A delete: whether the key existed.
  Existed(bool),
  /// A rate-limit check: whether its cost was counted, and the limiter's debt (µs) after it.
  Limited { allowed: bool, debt_us: f64 },
}

/// The commands of one write, and what to remember once it succeeded.
struct WriteCmds {
  cmds: Vec<Cmd>,
  /// The index's lex key and until when it now lives, when the write extends it.
  extends: Option<(String, u64)>,
  sweep: Option<Cmd>,
}

/// The commands of a batch (see [`RedisStore::execute`]).
struct Plan {
  cmds: Vec<Cmd>,
  /// Per command of the batch, where its replies are among the replies of `cmds`.
  spans: Vec<std::ops::Range<usize>>,
  /// Per command, what it extends once it succeeded (see [`WriteCmds::extends`]).
  lifetimes: Vec<Option<(String, u64)>>,
  sweeps: Vec<Cmd>,
}

/// True for a reply saying the key is served elsewhere or not right now (a Cluster
/// redirect), directly or inside a transaction's `EXEC`.
fn is_redirect(reply: &redis::RedisResult<redis::Value>) -> bool {
  use redis::ServerErrorKind::{Ask, ClusterDown, ExecAbort, Moved, TryAgain};
  let redirect = |kind: redis::ErrorKind| {
    matches!(
      kind,
      redis::ErrorKind::Server(Moved | Ask | TryAgain | ClusterDown | ExecAbort)
    )
  };
  match reply {
    Err(e) => redirect(e.kind()),
    Ok(redis::Value::Array(items)) => items
      .iter()
      .any(|item| matches!(item, redis::Value::ServerError(e) if redirect(redis::RedisError::from(e.clone()).kind()))),
    Ok(_) => false,
  }
}

/// Indexes whose lifetime one store remembers (past it the memory starts over: writes
/// then extend their index once more).
const MAX_KNOWN_INDEXES: usize = 10_000;

impl RedisStore {
  /// The commands of `batch` in one round trip: one pipeline against one server (a single
  /// server or the Sentinel master); on a Cluster one pipeline per master (by the slot table,
  /// see [`super::slots`]), all masters at once, and a command its master redirected (or that
  /// is alone on its master, or whose master's pipeline failed) sent on its own, the commands
  /// on one key one after the other in the order given. A script command the server did not
  /// know (restarted, flushed, a promoted replica) is sent again on its own, which loads it.
  /// Per command, in order: its reply or the error reply of that one command; `Err` when the
  /// batch as a whole failed (outage).
  pub async fn execute(&self, batch: &[KeyCommand<'_>]) -> Result<Vec<Result<KeyReply>>> {
    let mut out = self.execute_once(batch).await?;
    // a server that lost the scripts: those commands again, on their own (which loads them)
    for (i, reply) in out.iter_mut().enumerate() {
      if is_lost_script(reply) {
        *reply = self.one(batch[i]).await;
      }
    }
    Ok(out)
  }

  async fn execute_once(&self, batch: &[KeyCommand<'_>]) -> Result<Vec<Result<KeyReply>>> {
    self.track_cluster();
    if !self.is_cluster() {
      return self
        .run_plan(batch, None, |replies, cmd, extends| self.outcome(replies, cmd, extends))
        .await;
    }
    // a failure here (no slot table) leaves every command to be sent on its own
    let answers = self
      .by_master(batch)
      .await
      .unwrap_or_else(|_| batch.iter().map(|_| None).collect());
    let mut out: Vec<Option<Result<KeyReply>>> = Vec::with_capacity(batch.len());
    // the commands left to send on their own, chained by key
    let mut chains: Vec<Vec<usize>> = Vec::new();
    let mut chain_of: HashMap<&str, usize> = HashMap::new();
    for (i, answer) in answers.into_iter().enumerate() {
      if answer.is_none() {
        let chain = *chain_of.entry(batch[i].key()).or_insert_with(|| {
          chains.push(Vec::new());
          chains.len() - 1
        });
        chains[chain].push(i);
      }
      out.push(answer);
    }
    let runs = chains.iter().map(|chain| async move {
      let mut done = Vec::with_capacity(chain.len());
      for &i in chain {
        done.push((i, self.one(batch[i]).await));
      }
      done
    });
    for (i, reply) in join_all(runs).await.into_iter().flatten() {
      out[i] = Some(reply);
    }
    Ok(
      out
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(unanswered())))
        .collect(),
    )
  }

  /// One key command on its own (the connection routes it; a Cluster follows redirects).
  async fn one(&self, cmd: KeyCommand<'_>) -> Result<KeyReply> {
    match cmd {
      KeyCommand::Get(key) => self.get(key).await.map(KeyReply::Value),
      KeyCommand::GetWithTtl(key) => {
        let mut replies = self.conn.pipeline(get_with_ttl(&self.name(key)), None).await?;
        value_with_ttl(&mut replies)
      }
      KeyCommand::Set { key, value, ttl_ms } => self.set(key, value, ttl_ms).await.map(|()| KeyReply::Done),
      KeyCommand::Delete(key) => self.delete(key).await.map(KeyReply::Existed),
      KeyCommand::RateLimit { .. } => {
        let reply: Vec<i64> = self.query_script(&self.rate_check_cmd(&cmd)).await?;
        limited(&reply)
      }
    }
  }

  /// The `EVALSHA` of a [`KeyCommand::RateLimit`].
  fn rate_check_cmd(&self, cmd: &KeyCommand<'_>) -> Cmd {
    match *cmd {
      KeyCommand::RateLimit {
        key,
        interval_us,
        tolerance_us,
        cost,
        force,
      } => self.scripts.rate_check(key, interval_us, tolerance_us, cost, force),
      _ => unreachable!("not a rate-limit check"),
    }
  }

  /// The commands of each master in one pipeline sent to that master. Per command: its
  /// reply, or `None` when it must be sent on its own (redirected, alone on its master, its
  /// master's pipeline failed, or no master known for it); the slot table is read again after
  /// any of these.
  async fn by_master(&self, batch: &[KeyCommand<'_>]) -> Result<Vec<Option<Result<KeyReply>>>> {
    let table = self.slot_table().await?;
    let mut groups: Vec<Vec<usize>> = vec![Vec::new(); table.masters.len()];
    for (i, cmd) in batch.iter().enumerate() {
      if let Some(master) = table.master_of(self.name(cmd.key()).as_bytes()) {
        groups[master].push(i);
      }
    }
    let mut out: Vec<Option<Result<KeyReply>>> = batch.iter().map(|_| None).collect();
    let sent = groups
      .iter()
      .enumerate()
      .filter(|(_, group)| group.len() > 1)
      .map(|(master, group)| {
        let (host, port) = &table.masters[master];
        let cmds: Vec<KeyCommand> = group.iter().map(|&i| batch[i]).collect();
        async move {
          let replies = self
            .run_plan(&cmds, Some((host, *port)), |replies, cmd, extends| {
              (!replies.iter().any(is_redirect)).then(|| self.outcome(replies, cmd, extends))
            })
            .await;
          (group, replies)
        }
      });
    let mut stale = false;
    for (group, replies) in join_all(sent).await {
      match replies {
        Ok(replies) => {
          for (&i, reply) in group.iter().zip(replies) {
            stale |= reply.is_none();
            out[i] = reply;
          }
        }
        Err(_) => stale = true,
      }
    }
    if stale {
      *self.slot_table.write().unwrap_or_else(|p| p.into_inner()) = None;
    }
    Ok(out)
  }

  /// `batch` planned ([`RedisStore::plan`]) and sent as one pipeline (to `node` when given), the
  /// sweeps' replies handled, and `each` applied to every command's replies.
  async fn run_plan<T>(
    &self,
    batch: &[KeyCommand<'_>],
    node: Option<(&str, u16)>,
    mut each: impl FnMut(&mut [redis::RedisResult<redis::Value>], &KeyCommand, Option<(String, u64)>) -> T,
  ) -> Result<Vec<T>> {
    let plan = self.plan(batch);
    let swept = plan.cmds.len();
    let mut cmds = plan.cmds;
    cmds.extend(plan.sweeps);
    let mut replies = self.conn.pipeline(cmds, node).await?;
    self.after_sweeps(&replies[swept..]).await;
    Ok(
      plan
        .spans
        .iter()
        .zip(plan.lifetimes)
        .zip(batch)
        .map(|((span, extends), cmd)| each(&mut replies[span.clone()], cmd, extends))
        .collect(),
    )
  }

  /// The Redis commands of `batch`, the span of each one's replies, what each successful
  /// write extends, and the sweeps to send after them.
  fn plan(&self, batch: &[KeyCommand<'_>]) -> Plan {
    let mut plan = Plan {
      cmds: Vec::with_capacity(batch.len()),
      spans: Vec::with_capacity(batch.len()),
      lifetimes: Vec::with_capacity(batch.len()),
      sweeps: Vec::new(),
    };
    for cmd in batch {
      let start = plan.cmds.len();
      let mut extends = None;
      match *cmd {
        KeyCommand::Get(key) => {
          let mut get = redis::cmd("GET");
          get.arg(&*self.name(key));
          plan.cmds.push(get);
        }
        KeyCommand::GetWithTtl(key) => plan.cmds.extend(get_with_ttl(&self.name(key))),
        KeyCommand::Delete(key) => {
          let mut unlink = redis::cmd("UNLINK");
          unlink.arg(&*self.name(key));
          plan.cmds.push(unlink);
        }
        KeyCommand::Set { key, value, ttl_ms } => {
          let write = self.write_cmds(key, value, ttl_ms);
          plan.cmds.extend(write.cmds);
          extends = write.extends;
          plan.sweeps.extend(write.sweep);
        }
        KeyCommand::RateLimit { .. } => plan.cmds.push(self.rate_check_cmd(cmd)),
      }
      plan.spans.push(start..plan.cmds.len());
      plan.lifetimes.push(extends);
    }
    plan
  }

  /// The reply of one command of a [`Plan`] from its replies; a successful write records
  /// what it `extends`.
  fn outcome(
    &self,
    replies: &mut [redis::RedisResult<redis::Value>],
    cmd: &KeyCommand,
    extends: Option<(String, u64)>,
  ) -> Result<KeyReply> {
    match cmd {
      KeyCommand::Set { .. } => {
        query_index::write_outcome(replies).map_err(Error::from)?;
        if let Some(extends) = extends {
          self.note_lifetime(extends);
        }
        Ok(KeyReply::Done)
      }
      KeyCommand::Delete(_) => {
        let n: u64 = take_reply(replies)?;
        Ok(KeyReply::Existed(n > 0))
      }
      KeyCommand::Get(_) => {
        let bytes: Option<Vec<u8>> = take_reply(replies)?;
        let text = bytes.map(String::from_utf8).transpose().map_err(|_| not_utf8())?;
        Ok(KeyReply::Value(text))
      }
      KeyCommand::GetWithTtl(_) => value_with_ttl(replies),
      KeyCommand::RateLimit { .. } => {
        if matches!(&replies[0], Err(e) if is_noscript(e)) {
          return Err(Error::Redis {
            kind: RedisFailure::Reply,
            message: NOSCRIPT.into(),
          });
        }
        let reply: Vec<i64> = take_reply(replies)?;
        limited(&reply)
      }
    }
  }

  /// The index `full` (a query key or a literal query prefix) is listed in, when indexing.
  pub(super) fn index_of<'k>(&self, full: &'k str) -> Option<QueryIndex<'k>> {
    let layout = self.index.as_ref()?;
    if self.tagged {
      layout.cluster_query_index(full)
    } else {
      layout.query_index(full)
    }
  }

  /// The Redis name of the entry `full`: itself, but on a Cluster with the index a query
  /// entry's name carries its bucket's hash tag.
  pub(super) fn name<'k>(&self, full: &'k str) -> std::borrow::Cow<'k, str> {
    match self
      .index
      .as_ref()
      .filter(|_| self.tagged)
      .and_then(|l| l.cluster_query_key(full))
    {
      Some(name) => name.into(),
      None => full.into(),
    }
  }

  /// [`RedisStore::name`] of `full`, listed in `index`.
  pub(super) fn name_in<'k>(&self, full: &'k str, index: &QueryIndex<'_>) -> std::borrow::Cow<'k, str> {
    if self.tagged {
      index.key().into()
    } else {
      full.into()
    }
  }

  /// The write of `value` under `key`: a plain `SET`, or for a query result the index's
  /// transaction (see [`query_index::write`]), with a sweep of its index every
  /// [`query_index::SWEEP_EVERY`]th time.
  fn write_cmds(&self, key: &str, value: &str, ttl_ms: u64) -> WriteCmds {
    let Some(index) = self.index_of(key) else {
      let mut set = redis::cmd("SET");
      set.arg(key).arg(value).arg("PX").arg(ttl_ms);
      return WriteCmds {
        cmds: vec![set],
        extends: None,
        sweep: None,
      };
    };
    let now_ms = std::time::SystemTime::now()
      .duration_since(std::time::UNIX_EPOCH)
      .map_or(0, |d| d.as_millis() as u64);
    let mono_ms = self.epoch.elapsed().as_millis() as u64;
    let known = self
      .index_lifetimes
      .lock()
      .unwrap_or_else(|p| p.into_inner())
      .get(&index.lex)
      .copied();
    // the sets must outlive this entry: extend them unless a write of this process did
    // lately with enough to spare (a set emptied and made again meanwhile has no TTL
    // at all, which never unlists an entry; the next extension gives it one)
    let extend = known.is_none_or(|until| mono_ms + ttl_ms + 1000 > until);
    let sweep = self
      .writes
      .fetch_add(1, Ordering::Relaxed)
      .is_multiple_of(query_index::SWEEP_EVERY)
      .then(|| self.scripts.sweep(&index));
    WriteCmds {
      cmds: query_index::write(&self.name_in(key, &index), &index, value, ttl_ms, now_ms, extend),
      extends: extend.then(|| (index.lex.clone(), mono_ms + query_index::index_lifetime(ttl_ms))),
      sweep,
    }
  }

  /// A single write: one `SET`, or the index's transaction (and maybe a sweep) in a pipeline.
  pub(super) async fn write_one(&self, key: &str, value: &str, ttl_ms: u64) -> Result<()> {
    let WriteCmds {
      mut cmds,
      extends,
      sweep,
    } = self.write_cmds(key, value, ttl_ms);
    if extends.is_none() && sweep.is_none() && cmds.len() == 1 {
      return self.conn.query::<()>(&cmds[0]).await;
    }
    let sent = cmds.len();
    cmds.extend(sweep);
    let replies = self.conn.pipeline(cmds, None).await?;
    self.after_sweeps(&replies[sent..]).await;
    query_index::write_outcome(&replies[..sent])?;
    if let Some(extends) = extends {
      self.note_lifetime(extends);
    }
    Ok(())
  }

  /// Remembers, after the transaction succeeded, until when (ms since `epoch`) an index lives.
  fn note_lifetime(&self, (lex, until): (String, u64)) {
    let mut known = self.index_lifetimes.lock().unwrap_or_else(|p| p.into_inner());
    if known.len() >= MAX_KNOWN_INDEXES {
      known.clear();
    }
    known.insert(lex, until);
  }

  /// A sweep answered `NOSCRIPT`: the server lost the scripts (restarted, `SCRIPT FLUSH`);
  /// they are loaded again for the next sweep or invalidation. Other sweep errors are
  /// ignored: a sweep only reclaims memory, and the next one retries.
  async fn after_sweeps(&self, replies: &[redis::RedisResult<redis::Value>]) {
    if replies.iter().any(|r| matches!(r, Err(e) if is_noscript(e))) {
      // one command at a time: a Cluster sends a keyless command to every master, a
      // keyless pipeline to one node
      for load in self.scripts.load_cmds() {
        let _ = self.conn.query::<redis::Value>(&load).await;
      }
    }
  }

  /// The slot table of the Cluster, read from `CLUSTER NODES` when there is none.
  async fn slot_table(&self) -> Result<Arc<SlotTable>> {
    if let Some(table) = self.slot_table.read().unwrap_or_else(|p| p.into_inner()).clone() {
      return Ok(table);
    }
    let mut cmd = redis::cmd("CLUSTER");
    cmd.arg("NODES");
    let text: String = self.conn.query(&cmd).await?;
    let masters = cluster_nodes(&text)
      .into_iter()
      .filter(|n| n.role == NodeRole::Master && !n.failed && !n.slots.is_empty())
      .filter_map(|n| split_address(&n.address).map(|a| (a, n.slots)))
      .collect();
    let table = Arc::new(SlotTable::new(masters));
    *self.slot_table.write().unwrap_or_else(|p| p.into_inner()) = Some(table.clone());
    Ok(table)
  }
}

/// `GET name` and `PTTL name`.
fn get_with_ttl(name: &str) -> Vec<Cmd> {
  let mut get = redis::cmd("GET");
  get.arg(name);
  let mut ttl = redis::cmd("PTTL");
  ttl.arg(name);
  vec![get, ttl]
}

/// The value and remaining TTL of [`get_with_ttl`]'s replies.
fn value_with_ttl(replies: &mut [redis::RedisResult<redis::Value>]) -> Result<KeyReply> {
  let bytes: Option<Vec<u8>> = take_reply(&mut replies[..1])?;
  let text = bytes.map(String::from_utf8).transpose().map_err(|_| not_utf8())?;
  let ttl: i64 = take_reply(&mut replies[1..])?;
  // -1: no expiry; -2: gone meanwhile (the value is then not kept either)
  Ok(KeyReply::Valued(text, u64::try_from(ttl).ok()))
}

/// What a pipelined script command answers on a server that lost the scripts (restarted,
/// flushed, or a promoted replica): sent again on its own ([`RedisStore::execute`]).
const NOSCRIPT: &str = "NOSCRIPT in a pipeline";

fn is_lost_script(reply: &Result<KeyReply>) -> bool {
  matches!(reply, Err(Error::Redis { message, .. }) if message == NOSCRIPT)
}

/// The reply `{allowed, debt µs}` of a rate-limit check.
fn limited(reply: &[i64]) -> Result<KeyReply> {
  match reply {
    [allowed, debt] => Ok(KeyReply::Limited {
      allowed: *allowed == 1,
      debt_us: *debt as f64,
    }),
    _ => Err(Error::Redis {
      kind: RedisFailure::Reply,
      message: format!("unexpected reply to a rate-limit check: {reply:?}"),
    }),
  }
}

/// The single reply of a command, converted; an error reply is the command's error.
fn take_reply<T: redis::FromRedisValue>(replies: &mut [redis::RedisResult<redis::Value>]) -> Result<T> {
  let value = std::mem::replace(&mut replies[0], Ok(redis::Value::Nil)).map_err(Error::from)?;
  redis::from_redis_value(value).map_err(|e| Error::Redis {
    kind: RedisFailure::Reply,
    message: e.to_string(),
  })
}

fn unanswered() -> Error {
  Error::Redis {
    kind: RedisFailure::Connection,
    message: "a command of the batch got no reply".into(),
  }
}
