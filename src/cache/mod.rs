//! The cache: every call takes one route. It is validated ([`Cache::submit`] or
//! [`Cache::call`]), then answered by the in-process store or sent to Redis, as
//! [`Cache::route`] decides with the [failover](crate::failover); a Redis call that fails is
//! served like a call routed to the in-process store, or fails, as the failover says
//! ([`Cache::settle`]).
//!
//! ## Behavior
//! - Bad arguments (key empty or over `maxKeyBytes`, TTL not positive and finite, value over
//!   `maxValueBytes`, tenant id) are refused before anything changes.
//! - `memory://`: the in-process store alone, answered on the calling thread.
//! - Redis mode: a call goes to Redis while the breaker is closed, within the
//!   `commandTimeoutMs` budget. When Redis fails (or the breaker is open), it is served by
//!   the in-process store and, if it changes anything, recorded in the journal, which the
//!   recovery task replays before Redis is trusted again.
//! - A key with a pending journal entry (or under a pending invalidation) is read from the
//!   journal and written through it until replay applied it: nothing deleted or invalidated
//!   during an outage is read back.
//! - The calls made in one event-loop tick wait in a queue ([`Cache::take_queued`]) and run
//!   in chunks ([`Cache::run`]): per chunk, one pipeline to Redis (per master on a Cluster).
//!   Calls on one key run in the order they were made.
//! - Without fallback an outage is an `ERR_REDIS_UNAVAILABLE` error.
//! - The in-process store only holds outage data in Redis mode; it is emptied on recovery
//!   and a successful Redis write drops the key's copy, so nothing stale is served later.
//! - After [`Cache::close`] every new call fails with `ERR_CLOSED`.

mod op;
mod queue;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use futures_util::future::join_all;

use self::op::Work;
pub use self::op::{Action, Answer, Op, Ran, RateArgs, Request, Served, Text};
use self::queue::Queue;
pub use self::queue::{Chunk, Flushed, Submitted};
use crate::config::{ttl_ms, Backend, Config};
use crate::error::{Error, Result};
use crate::events::{EventSink, Events};
use crate::failover::journal::Lookup;
use crate::failover::{Failover, FailoverStatus, Simulation};
use crate::keys::{EntryType, KeyLayout, Scope, MAX_TENANT_BYTES};
use crate::metrics::{Metrics, TenantCounts};
use crate::near::{NearCache, NearStats};
use crate::ratelimit::{Decision, Limits, Policy, RateStats, HEARTBEAT_INTERVAL, LIVE_MS};
use crate::store::memory::{Stored, TenantUsage};
use crate::store::redis::{KeyCommand, KeyReply, RedisTimeouts, Topology, Tracker};
use crate::store::{MemoryStats, MemoryStore, RedisStore, Store};

/// Which store serves calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
  /// Redis.
  Redis,
  /// The in-process store.
  Memory,
}

/// Where a call is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
  /// By the near cache: this value.
  Near(Stored),
  /// A rate-limit check refused in-process (its key is known to be over its limit).
  Refused(Decision),
  /// By the in-process store (and the journal, in Redis mode).
  Local,
  /// By Redis.
  Redis,
}

/// A Redis deployment, its failover and its near cache.
struct Remote {
  redis: Arc<RedisStore>,
  failover: Arc<Failover>,
  near: Option<Arc<NearCache>>,
}

impl Remote {
  /// `op` changes a key (or a prefix): the near cache stops serving what it held for it.
  fn forget(&self, op: &Op) {
    let Some(near) = &self.near else { return };
    match op.work {
      Work::Set { .. } | Work::Delete => near.forget(op.tenant.as_deref(), &op.full),
      Work::Invalidate => near.forget_prefix(op.tenant.as_deref(), &op.full),
      _ => {}
    }
  }
}

/// What Redis answered one call.
enum Reply {
  Key(KeyReply),
  Count(u64),
  Keys(Vec<String>),
}

/// What a read or write sent to Redis may install in the near cache: taken before sending.
type Install = Option<crate::near::Ticket>;

/// The live check of `health()`.
#[derive(Debug)]
pub struct HealthCheck {
  /// The PING's round trip, or why it failed.
  pub ping: Result<Duration>,
  /// Redis `used_memory` in bytes, when the PING answered.
  pub used_memory: Option<u64>,
  /// The nodes and whether each answered.
  pub topology: Topology,
}

/// The cache: one per `CacheManager`.
pub struct Cache {
  config: Config,
  layout: KeyLayout,
  memory: Arc<MemoryStore>,
  remote: Option<Remote>,
  limits: Arc<Limits>,
  metrics: Arc<Metrics>,
  events: Arc<Events>,
  queue: Mutex<Queue>,
  closed: AtomicBool,
  created_wall: SystemTime,
}

impl Cache {
  /// A cache for `config`; does no I/O.
  pub fn new(config: Config) -> Result<Arc<Self>> {
    let fallback = config.fallback();
    let memory = Arc::new(MemoryStore::with_tenant_budget(
      fallback.max_bytes,
      fallback.max_bytes_per_tenant,
      config.largest_entry_bytes(),
    ));
    let metrics = Arc::new(Metrics::new(config.metrics_enabled, config.tenant_metrics_limit));
    let events = Arc::new(Events::default());
    let limits = Arc::new(Limits::new());
    let remote = match config.backend() {
      Backend::Memory => None,
      backend => {
        let timeouts = RedisTimeouts {
          command: config.command_timeout,
          connect: config.connect_timeout,
        };
        let mut store = RedisStore::for_backend(backend, timeouts, &config.tls)?;
        if config.query_index {
          store = store.with_query_index(KeyLayout::new(config.key_prefix()));
        }
        let near_config = config.near();
        let near = near_config.enabled.then(|| {
          Arc::new(NearCache::new(
            near_config.max_bytes,
            near_config.max_bytes_per_tenant,
            config.largest_entry_bytes(),
            near_config.fail_safe,
            // a Cluster's writes go over the cluster connection, not the subscribed ones
            !store.is_cluster(),
          ))
        });
        if let Some(near) = &near {
          store = store.with_tracking(Tracker {
            prefixes: KeyLayout::new(config.key_prefix()).entry_prefixes(),
            sink: near.clone(),
          });
        }
        let redis = Arc::new(store);
        let failover = Failover::new(
          &config,
          redis.clone(),
          memory.clone(),
          near.clone(),
          limits.clone(),
          metrics.clone(),
          events.clone(),
        );
        Some(Remote { redis, failover, near })
      }
    };
    Ok(Arc::new(Cache {
      layout: KeyLayout::new(config.key_prefix()),
      config,
      memory,
      remote,
      limits,
      metrics,
      events,
      queue: Mutex::new(Queue::default()),
      closed: AtomicBool::new(false),
      created_wall: SystemTime::now(),
    }))
  }

  /// The configuration in use.
  pub fn config(&self) -> &Config {
    &self.config
  }

  /// True for `memory://`: no Redis at all.
  pub fn is_memory_only(&self) -> bool {
    self.remote.is_none()
  }

  /// Which store serves calls now.
  pub fn mode(&self) -> Mode {
    match &self.remote {
      Some(r) if r.failover.redis_serves() => Mode::Redis,
      _ => Mode::Memory,
    }
  }

  /// True once closed.
  pub fn is_closed(&self) -> bool {
    self.closed.load(Ordering::Acquire)
  }

  // ----- the route --------------------------------------------------------------

  /// Validates a call and answers it on the spot when the in-process store answers it (or it is
  /// bad); otherwise queues it for the tick's batch to Redis ([`Cache::take_queued`]).
  pub fn submit(&self, request: Request<'_>) -> Submitted {
    let op = match self.prepare(&request) {
      Ok(op) => op,
      Err(e) => return Submitted::Answered(Err(e), Served::Local),
    };
    let Some(remote) = &self.remote else {
      let (answer, served) = match self.route(&op) {
        Ok(Route::Refused(decision)) => (Ok(Answer::Limit(decision)), Served::Local),
        _ => self.answer_locally(&op, false),
      };
      self.count(&op, &answer);
      return Submitted::Answered(answer, served);
    };
    // before it is queued: a read made after it in this turn no longer finds the old value
    remote.forget(&op);
    let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
    // behind a queued write of the same key, whatever the route: calls on one key run in order
    if queue.holds_write(&op.full) {
      queue.push(op);
      return Submitted::Queued;
    }
    match self.route(&op) {
      Ok(Route::Redis) => queue.push(op),
      Ok(Route::Near(stored)) => {
        drop(queue);
        let answer = Ok(Answer::Value(Some(Text::Shared(stored))));
        self.count(&op, &answer);
        return Submitted::Answered(answer, Served::Near);
      }
      Ok(Route::Refused(decision)) => {
        drop(queue);
        let answer = Ok(Answer::Limit(decision));
        self.count(&op, &answer);
        return Submitted::Answered(answer, self.refused_by());
      }
      // answered now, handed over from the flush
      Ok(Route::Local) => {
        let (answer, served) = self.answer_now(&op);
        queue.push_ready(answer, served)
      }
      Err(e) => queue.push_ready(Err(e), Served::Local),
    }
    Submitted::Queued
  }

  /// Takes what [`Cache::submit`] queued: the answers it gave, and the calls for Redis in
  /// chunks of about `size` calls to run concurrently ([`Cache::run`]).
  pub fn take_queued(&self, size: usize) -> Flushed {
    let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
    if queue.is_empty() {
      return Flushed::default();
    }
    queue.take(size)
  }

  /// One call, validated and run at once (not queued): the same route as a batch of one.
  pub async fn call(&self, request: Request<'_>) -> Result<Answer> {
    let op = self.prepare(&request)?;
    self
      .run(vec![op])
      .await
      .answers
      .pop()
      .unwrap_or_else(|| Err(unanswered()))
  }

  /// Runs validated calls, in order, with the answers separate calls would give (and who gave
  /// each): the calls Redis answers share one pipeline (one round trip and one budget; per
  /// master on a Cluster), and each call Redis failed is settled on its own
  /// ([`Cache::settle`]).
  pub async fn run(&self, ops: Vec<Op>) -> Ran {
    if let Some(remote) = &self.remote {
      // again when it runs: replies to reads sent meanwhile are not installed
      ops.iter().for_each(|op| remote.forget(op));
    }
    let mut answers: Vec<Option<Result<Answer>>> = Vec::with_capacity(ops.len());
    let mut served = vec![Served::Redis; ops.len()];
    let (mut keyed, mut others) = (Vec::new(), Vec::new());
    for (i, op) in ops.iter().enumerate() {
      match self.route(op) {
        Ok(Route::Near(stored)) => {
          served[i] = Served::Near;
          answers.push(Some(Ok(Answer::Value(Some(Text::Shared(stored))))));
        }
        Ok(Route::Refused(decision)) => {
          served[i] = self.refused_by();
          answers.push(Some(Ok(Answer::Limit(decision))));
        }
        Ok(Route::Local) => {
          let (answer, by) = self.answer_locally(op, false);
          served[i] = by;
          answers.push(Some(answer));
        }
        Ok(Route::Redis) => {
          match op.work {
            Work::Invalidate | Work::ListKeys => others.push(i),
            _ => keyed.push(i),
          }
          answers.push(None);
        }
        Err(e) => answers.push(Some(Err(e))),
      }
    }
    if let Some(remote) = &self.remote {
      let near = remote.near.as_deref();
      // taken before the commands are sent: what raced an invalidation is not installed
      let tickets: Vec<Install> = keyed.iter().map(|&i| ticket(near, &ops[i])).collect();
      if let Some(near) = near {
        (keyed.iter().filter(|&&i| ops[i].work == Work::Get)).for_each(|_| near.count_miss());
      }
      let keyed_replies = async {
        if keyed.is_empty() {
          return Vec::new();
        }
        let commands: Vec<KeyCommand> = keyed.iter().map(|&i| key_command(&ops[i], near.is_some())).collect();
        match remote.failover.call(|| remote.redis.execute(&commands)).await {
          // per command: its reply, or its own error reply (not counted yet)
          Ok(replies) => replies.into_iter().map(|r| (r.map(Reply::Key), false)).collect(),
          // the batch as a whole failed: that many failed calls, the first counted by `call`
          Err(e) => (0..keyed.len()).map(|n| (Err(e.clone()), n == 0)).collect(),
        }
      };
      let other_replies = join_all(others.iter().map(|&i| {
        let op = &ops[i];
        async move {
          let reply = match op.work {
            Work::ListKeys => remote
              .failover
              .call(|| remote.redis.keys_with_prefix(&op.full))
              .await
              .map(Reply::Keys),
            _ => remote
              .failover
              .call(|| remote.redis.invalidate_prefix(&op.full))
              .await
              .map(Reply::Count),
          };
          (reply, true)
        }
      }));
      let sent = Instant::now();
      let (keyed_replies, other_replies) = tokio::join!(keyed_replies, other_replies);
      if let Some(near) = near {
        for ((&i, ticket), (reply, _)) in keyed.iter().zip(&tickets).zip(&keyed_replies) {
          self.install(near, &ops[i], *ticket, reply, sent);
        }
      }
      for (i, (reply, counted)) in keyed
        .into_iter()
        .chain(others)
        .zip(keyed_replies.into_iter().chain(other_replies))
      {
        let (answer, by) = self.settle(&ops[i], reply, counted, sent);
        served[i] = by;
        answers[i] = Some(answer);
      }
    }
    let answers = ops
      .iter()
      .zip(answers)
      .map(|(op, answer)| {
        let answer = answer.unwrap_or_else(|| Err(unanswered()));
        self.count(op, &answer);
        answer
      })
      .collect();
    Ran { answers, served }
  }

  /// Who answered a rate-limit check refused in-process: while Redis serves, the debt it last
  /// reported; otherwise the local limiter.
  fn refused_by(&self) -> Served {
    match self.mode() {
      Mode::Redis => Served::Near,
      Mode::Memory => Served::Local,
    }
  }

  /// The one decision every call goes through: answered by the in-process store (`memory://`,
  /// an outage, a pending journal entry, Redis refusing writes) or by Redis. An outage
  /// without fallback is an error.
  fn route(&self, op: &Op) -> Result<Route> {
    if let Work::RateLimit { policy, cost } = &op.work {
      // a key over its limit is refused without a Redis call
      if let Some(decision) = self.limits.refuse_locally(&op.full, policy, *cost) {
        return Ok(Route::Refused(decision));
      }
      if let Some(remote) = &self.remote {
        self.ensure_heartbeat(remote);
      }
    }
    let Some(remote) = &self.remote else {
      return Ok(Route::Local);
    };
    let failover = &remote.failover;
    let unjournaled = || failover.lookup(&op.full) == Lookup::Unknown;
    if let (Work::Get, Some(near)) = (&op.work, &remote.near) {
      if failover.redis_serves() && unjournaled() {
        return Ok(match near.get(&op.full) {
          Some(stored) => Route::Near(stored),
          None => Route::Redis,
        });
      }
    }
    let to_redis = match op.work {
      Work::Get => failover.redis_serves() && unjournaled(),
      Work::ListKeys => failover.redis_serves(),
      Work::Set { .. } | Work::Delete => failover.takes_writes() && unjournaled(),
      // an invalidation must not reach Redis before the journaled writes it follows
      Work::Invalidate => failover.takes_writes() && failover.journal_is_empty(),
      Work::RateLimit { .. } => failover.takes_writes(),
    };
    if to_redis {
      return Ok(Route::Redis);
    }
    if !failover.redis_serves() {
      failover.refuse_without_fallback()?;
    }
    Ok(Route::Local)
  }

  /// The answer of a call Redis failed or answered: a success drops what the in-process
  /// store held for the key; a failure is served by the in-process store, or is the
  /// caller's error, as the failover says; with who answered. `counted`: the failure is in the
  /// metrics already; `sent`: when the command went out.
  fn settle(&self, op: &Op, reply: Result<Reply>, counted: bool, sent: Instant) -> (Result<Answer>, Served) {
    let reply = match (reply, &self.remote) {
      (Ok(reply), Some(_)) => reply,
      (Err(e), Some(remote)) => {
        if !counted {
          self.metrics.redis_error(e.is_timeout());
        }
        let uncertain = e.may_have_been_applied();
        if let Err(e) = remote.failover.on_failure(e) {
          return (Err(e), Served::Redis);
        }
        return self.answer_locally(op, uncertain);
      }
      (_, None) => return (Err(unanswered()), Served::Redis),
    };
    (self.reply_answer(op, reply, sent), Served::Redis)
  }

  /// The answer of what Redis replied to `op`, sent at `sent`.
  fn reply_answer(&self, op: &Op, reply: Reply, sent: Instant) -> Result<Answer> {
    let tenant = op.tenant.as_deref();
    Ok(match reply {
      Reply::Key(KeyReply::Value(v) | KeyReply::Valued(v, _)) => Answer::Value(v.map(Text::Owned)),
      Reply::Key(KeyReply::Done) => {
        self.memory.delete_now(tenant, &op.full);
        Answer::Done
      }
      Reply::Key(KeyReply::Existed(existed)) => {
        self.memory.delete_now(tenant, &op.full);
        Answer::Existed(existed)
      }
      Reply::Count(n) => {
        self.memory.invalidate_prefix_now(tenant, &op.full);
        Answer::Count(n)
      }
      Reply::Keys(keys) => Answer::Keys(self.listing(&op.full, keys)),
      Reply::Key(KeyReply::Limited { allowed, debt_us }) => match &op.work {
        Work::RateLimit { policy, cost } => {
          Answer::Limit(self.limits.observe(&op.full, policy, *cost, allowed, debt_us, sent))
        }
        _ => return Err(unanswered()),
      },
    })
  }

  /// [`Cache::answer_locally`] for a call answered at submission, counted.
  fn answer_now(&self, op: &Op) -> (Result<Answer>, Served) {
    let (answer, served) = self.answer_locally(op, false);
    self.count(op, &answer);
    (answer, served)
  }

  /// A call answered by the in-process store: `memory://`, or in Redis mode the journal and
  /// the in-process store, a change journaled for replay; with who answered (the near cache's
  /// fail-safe may answer a read). `uncertain`: a Redis write of the key just failed with an
  /// unknown outcome (replay then overwrites whatever Redis holds).
  fn answer_locally(&self, op: &Op, uncertain: bool) -> (Result<Answer>, Served) {
    if let (Work::Get, Some(_)) = (&op.work, &self.remote) {
      let (value, served) = self.read_outage(&op.full);
      return (Ok(Answer::Value(value)), served);
    }
    (self.answer_from_store(op, uncertain), Served::Local)
  }

  /// [`Cache::answer_locally`] for every call but a read in Redis mode.
  fn answer_from_store(&self, op: &Op, uncertain: bool) -> Result<Answer> {
    let tenant = op.tenant.as_deref();
    let failover = self.remote.as_ref().map(|r| &r.failover);
    Ok(match (&op.work, failover) {
      (Work::Get, None) => Answer::Value(self.memory.get_stored(&op.full).map(Text::Shared)),
      (Work::Get, Some(_)) => Answer::Value(self.read_outage(&op.full).0),
      (Work::Set { value, ttl_ms }, _) => {
        let expires_at = Instant::now() + Duration::from_millis(*ttl_ms);
        self.memory.set_until(tenant, &op.full, value.clone(), expires_at)?;
        if let Some(f) = failover {
          let namespace = self.layout.namespace(op.scope(), op.entry);
          f.record_set(&op.full, value.clone(), expires_at, &namespace, uncertain);
        }
        Answer::Done
      }
      (Work::Delete, None) => Answer::Existed(self.memory.delete_now(tenant, &op.full)),
      (Work::Delete, Some(f)) => {
        let existed = self.read_outage(&op.full).0.is_some();
        self.memory.delete_now(tenant, &op.full);
        f.record_delete(&op.full, &self.layout.namespace(op.scope(), op.entry), uncertain);
        Answer::Existed(existed)
      }
      (Work::Invalidate, _) => {
        let removed = self.memory.invalidate_prefix_now(tenant, &op.full);
        if let Some(f) = failover {
          f.record_invalidate(&op.full);
        }
        Answer::Count(removed)
      }
      (Work::ListKeys, _) => Answer::Keys(self.listing(&op.full, Vec::new())),
      (Work::RateLimit { policy, cost }, None) => {
        Answer::Limit(self.limits.decide_locally(&op.full, policy, *cost, 1, false))
      }
      (Work::RateLimit { policy, cost }, Some(f)) => {
        // this process's share, counted into Redis on recovery
        let decision = self
          .limits
          .decide_locally(&op.full, policy, *cost, self.limits.share(), true);
        f.ensure_recovery();
        Answer::Limit(decision)
      }
    })
  }

  /// A read served during an outage: the journal, then the in-process store, then the near
  /// cache's fail-safe; with who answered.
  fn read_outage(&self, key: &str) -> (Option<Text>, Served) {
    let Some(remote) = self.remote.as_ref() else {
      return (None, Served::Local);
    };
    match remote.failover.lookup(key) {
      Lookup::Value(v) => (Some(v.into()), Served::Local),
      Lookup::Gone => (None, Served::Local),
      Lookup::Unknown => match self.memory.get_stored(key) {
        Some(stored) => (Some(Text::Shared(stored)), Served::Local),
        // the fail-safe: what the near cache held when the outage began
        None => match remote.near.as_ref().and_then(|near| near.get_fail_safe(key)) {
          Some(stored) => (Some(Text::Shared(stored)), Served::Near),
          None => (None, Served::Local),
        },
      },
    }
  }

  /// Installs in the near cache what Redis answered a read or a write of `op`, sent at `sent`.
  fn install(&self, near: &NearCache, op: &Op, ticket: Install, reply: &Result<Reply>, sent: Instant) {
    let Some(ticket) = ticket else { return };
    let tenant = op.tenant.as_deref();
    match (&op.work, reply) {
      (Work::Get, Ok(Reply::Key(KeyReply::Valued(Some(text), ttl)))) => {
        // the Redis TTL counted from before the read was sent: never later than Redis's
        let expires_at = match ttl {
          Some(ms) => sent + Duration::from_millis(*ms),
          None => sent + Duration::from_secs(crate::config::MAX_TTL_SECS as u64),
        };
        near.install(ticket, tenant, &op.full, text.as_str().into(), expires_at);
      }
      (Work::Set { value, ttl_ms }, Ok(Reply::Key(KeyReply::Done))) if near.installs_writes() => {
        near.install(
          ticket,
          tenant,
          &op.full,
          value.clone(),
          sent + Duration::from_millis(*ttl_ms),
        );
      }
      _ => {}
    }
  }

  /// The keys (as the caller wrote them) of the live entries under the namespace `prefix`:
  /// `from_redis`, plus what the in-process store and the journal hold, minus what was deleted
  /// or invalidated during an outage. Sorted.
  fn listing(&self, prefix: &str, from_redis: Vec<String>) -> Vec<String> {
    let mut full: std::collections::BTreeSet<String> = from_redis.into_iter().collect();
    full.extend(self.memory.keys_with_prefix(prefix));
    if let Some(remote) = &self.remote {
      full.extend(remote.failover.journaled_keys_under(prefix));
      full.retain(|k| remote.failover.lookup(k) != Lookup::Gone);
    }
    full.into_iter().map(|k| k[prefix.len()..].to_string()).collect()
  }

  /// Counts a call's outcome in the metrics.
  fn count(&self, op: &Op, answer: &Result<Answer>) {
    let tenant = op.tenant.as_deref();
    match (answer, &op.work) {
      (Ok(Answer::Value(v)), _) => {
        self.metrics.read(op.entry, v.is_some());
        if let Some(t) = tenant {
          self.metrics.tenant_read(t, v.is_some());
        }
      }
      (Ok(Answer::Done), _) => self.metrics.set(op.entry),
      (Ok(Answer::Existed(_)), _) => self.metrics.delete(op.entry),
      (Ok(Answer::Count(n)), _) => {
        self.metrics.invalidation(*n);
        if let Some(t) = tenant {
          self.metrics.tenant_invalidated(t, *n);
        }
      }
      (Ok(Answer::Limit(d)), _) => {
        self.metrics.rate_check(d.allowed);
        if let Some(t) = tenant {
          self.metrics.tenant_rate_check(t, d.allowed);
        }
      }
      _ => {}
    }
  }

  // ----- validation -------------------------------------------------------------

  /// A request checked and made into an [`Op`] (closed cache, tenant id, key, TTL, value),
  /// ready for [`Cache::run`].
  pub fn prepare(&self, r: &Request<'_>) -> Result<Op> {
    if self.is_closed() {
      return Err(Error::Closed);
    }
    if let Scope::Tenant(t) = r.scope {
      if t.is_empty() || t.len() > MAX_TENANT_BYTES {
        return Err(Error::invalid(format!(
          "tenantId must be a non-empty string of at most {MAX_TENANT_BYTES} bytes"
        )));
      }
    }
    let (work, key) = match r.action {
      Action::Get => (Work::Get, self.check_key(r.entry.key_name(), r.key)?),
      Action::Delete => (Work::Delete, self.check_key(r.entry.key_name(), r.key)?),
      Action::Set => {
        let key = self.check_key(r.entry.key_name(), r.key)?;
        let ttl_ms = match r.ttl_secs {
          Some(s) => ttl_ms(s)?,
          None => match r.entry {
            EntryType::Session => self.config.session_ttl_ms,
            EntryType::Query => self.config.query_ttl_ms,
          },
        };
        let value = r.value.ok_or_else(|| Error::invalid("a write needs a value"))?;
        self.check_value(value)?;
        (
          Work::Set {
            value: value.into(),
            ttl_ms,
          },
          key,
        )
      }
      Action::Invalidate => (Work::Invalidate, self.check_key("prefix", r.key)?),
      Action::InvalidateAll => (Work::Invalidate, ""),
      Action::ListKeys => (Work::ListKeys, ""),
      Action::RateLimit => {
        let key = self.check_key("key", r.key)?;
        let rate = r
          .rate
          .ok_or_else(|| Error::invalid("a rate-limit check needs its policy"))?;
        let policy = Policy::new(rate.limit, rate.window_ms, rate.burst)?;
        let cost = policy.cost(rate.cost)?;
        return Ok(Op {
          full: self.layout.rate_limit_key(r.scope, &policy.key_part(), key),
          work: Work::RateLimit { policy, cost },
          entry: r.entry,
          tenant: r.scope.tenant().map(Arc::from),
        });
      }
    };
    Ok(Op {
      work,
      entry: r.entry,
      tenant: r.scope.tenant().map(Arc::from),
      full: self.layout.key(r.scope, r.entry, key),
    })
  }

  fn check_key<'k>(&self, what: &str, key: &'k str) -> Result<&'k str> {
    if key.is_empty() {
      return Err(Error::invalid(format!("{what} must be a non-empty string")));
    }
    let max = self.config.limits().max_key_bytes;
    if key.len() > max {
      return Err(Error::TooLarge(format!(
        "{what} is {} bytes; the limit is {max} (limits.maxKeyBytes)",
        key.len()
      )));
    }
    Ok(key)
  }

  fn check_value(&self, json: &str) -> Result<()> {
    let max = self.config.limits().max_value_bytes;
    if json.len() > max {
      return Err(Error::TooLarge(format!(
        "value is {} bytes of JSON; the limit is {max} (limits.maxValueBytes)",
        json.len()
      )));
    }
    Ok(())
  }

  // ----- convenience calls (one route: [`Cache::call`]) -----------------------------

  /// Reads `key`: its JSON text, or `None`.
  pub async fn get(&self, scope: Scope<'_>, entry: EntryType, key: &str) -> Result<Option<String>> {
    let answer = self.call(Request::get(scope, entry, key)).await?;
    Ok(answer.text().map(str::to_string))
  }

  /// Writes `json` under `key` for `ttl_secs` (or the type's default).
  pub async fn set(
    &self,
    scope: Scope<'_>,
    entry: EntryType,
    key: &str,
    json: &str,
    ttl_secs: Option<f64>,
  ) -> Result<()> {
    self
      .call(Request::set(scope, entry, key, json, ttl_secs))
      .await
      .map(|_| ())
  }

  /// Deletes `key`; true if it existed.
  pub async fn delete(&self, scope: Scope<'_>, entry: EntryType, key: &str) -> Result<bool> {
    match self.call(Request::delete(scope, entry, key)).await? {
      Answer::Existed(existed) => Ok(existed),
      _ => Err(unanswered()),
    }
  }

  /// Removes the entries of (`scope`, `entry`) whose key starts with `prefix` (every entry
  /// when `all`); returns how many.
  pub async fn invalidate(&self, scope: Scope<'_>, entry: EntryType, prefix: &str, all: bool) -> Result<u64> {
    let request = match all {
      true => Request::invalidate_all(scope, entry),
      false => Request::invalidate(scope, entry, prefix),
    };
    match self.call(request).await? {
      Answer::Count(n) => Ok(n),
      _ => Err(unanswered()),
    }
  }

  /// Checks the rate limit of `key` in `scope`: the decision.
  pub async fn rate_limit(&self, scope: Scope<'_>, key: &str, rate: RateArgs) -> Result<Decision> {
    match self.call(Request::rate_limit(scope, key, rate)).await? {
      Answer::Limit(d) => Ok(d),
      _ => Err(unanswered()),
    }
  }

  /// The keys of every live entry of (`scope`, `entry`): from Redis by `SCAN` (never blocking
  /// it), plus what the journal and the in-process store hold. Sorted.
  pub async fn keys(&self, scope: Scope<'_>, entry: EntryType) -> Result<Vec<String>> {
    match self.call(Request::list_keys(scope, entry)).await? {
      Answer::Keys(keys) => Ok(keys),
      _ => Err(unanswered()),
    }
  }

  // ----- state, health, lifecycle ----------------------------------------------------

  /// The failover state (`None` for `memory://`).
  pub fn failover_status(&self) -> Option<FailoverStatus> {
    Some(self.remote.as_ref()?.failover.status())
  }

  /// When the current mode began (creation for `memory://`), by the wall clock.
  pub fn mode_since(&self) -> SystemTime {
    match &self.remote {
      Some(r) => r.failover.status().mode_since,
      None => self.created_wall,
    }
  }

  /// The counters.
  pub fn metrics(&self) -> &Metrics {
    &self.metrics
  }

  /// The rate limits' in-process counters and the live processes sharing them.
  pub fn rate_stats(&self) -> RateStats {
    self.limits.stats()
  }

  /// Starts the heartbeat that counts this process among those sharing the rate limits (at
  /// the first check): every [`HEARTBEAT_INTERVAL`] while Redis serves, until the cache is
  /// closed or dropped; never keeps the process alive.
  fn ensure_heartbeat(&self, remote: &Remote) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
      return;
    };
    if !self.limits.start_heartbeat() {
      return;
    }
    let (limits, redis, failover) = (
      Arc::downgrade(&self.limits),
      Arc::downgrade(&remote.redis),
      Arc::downgrade(&remote.failover),
    );
    let (key, timeout) = (self.layout.processes_key(), self.config.command_timeout);
    runtime.spawn(async move {
      loop {
        {
          let (Some(limits), Some(redis), Some(failover)) = (limits.upgrade(), redis.upgrade(), failover.upgrade())
          else {
            return;
          };
          if failover.is_closed() {
            return;
          }
          // during an outage the count from before it stands
          if failover.redis_serves() && failover.simulation() == Simulation::None {
            if let Ok(Ok(n)) = tokio::time::timeout(timeout, redis.heartbeat(&key, limits.instance(), LIVE_MS)).await {
              limits.set_processes(n);
            }
          }
        }
        tokio::time::sleep(HEARTBEAT_INTERVAL).await;
      }
    });
  }

  /// The near cache's counters, size and tracking state (`None` when it is off).
  pub fn near_stats(&self) -> Option<NearStats> {
    Some(self.remote.as_ref()?.near.as_ref()?.stats())
  }

  /// What `tenant` holds in the near cache (zero when it is off).
  pub fn near_tenant_usage(&self, tenant: &str) -> TenantUsage {
    self
      .remote
      .as_ref()
      .and_then(|r| r.near.as_ref())
      .map(|n| n.tenant_usage(tenant))
      .unwrap_or_default()
  }

  /// The in-process store's size.
  pub fn memory_stats(&self) -> MemoryStats {
    self.memory.stats()
  }

  /// One tenant's counters (`None` when not tracked one by one) and what it holds in the
  /// in-process store; no I/O.
  pub fn tenant_stats(&self, tenant: &str) -> (Option<TenantCounts>, TenantUsage) {
    (self.metrics.tenant_counts(tenant), self.memory.tenant_usage(tenant))
  }

  /// The most one tenant may hold in the in-process store.
  pub fn tenant_max_bytes(&self) -> u64 {
    self.memory.tenant_max_bytes()
  }

  /// The last Redis failure, password-free.
  pub fn last_error(&self) -> Option<String> {
    self.remote.as_ref()?.failover.last_error()
  }

  /// The live check of `health()`, within one command timeout: a PING, Redis's
  /// `used_memory` and every node; a misconfiguration found here is handled as a data call
  /// would handle it. `None` for `memory://` or once closed.
  pub async fn health_check(&self) -> Option<HealthCheck> {
    let remote = self.remote.as_ref().filter(|_| !self.is_closed())?;
    let failover = &remote.failover;
    let memory = async { failover.once("INFO", remote.redis.used_memory()).await.ok() };
    let (ping, used_memory, topology) = tokio::join!(failover.ping(), memory, remote.redis.topology());
    if let Err(e) = &ping {
      failover.on_health_failure(e);
    }
    let used_memory = if ping.is_ok() { used_memory } else { None };
    Some(HealthCheck {
      ping,
      used_memory,
      topology,
    })
  }

  /// p50, p95, p99 (ms) of recent PINGs (health checks and recovery probes).
  pub fn ping_percentiles(&self) -> Option<[f64; 3]> {
    self.remote.as_ref()?.failover.ping_percentiles()
  }

  /// The Redis nodes (single server, Cluster nodes, or sentinels + master + replicas) and
  /// whether each answers a PING now; `None` for `memory://`. At most one command timeout.
  pub async fn topology(&self) -> Option<Topology> {
    Some(self.remote.as_ref()?.redis.topology().await)
  }

  /// The topology as of the last health check (no I/O).
  pub fn last_topology(&self) -> Option<Topology> {
    self.remote.as_ref()?.redis.last_topology()
  }

  /// Installs the receiver of [`crate::events::Event`]s.
  pub fn set_event_sink(&self, sink: Arc<dyn EventSink>) {
    self.events.set_sink(sink);
  }

  /// Starts (or ends, with `Simulation::None`) a simulated outage; no effect for `memory://`.
  pub fn simulate_outage(&self, mode: Simulation) {
    if let Some(remote) = &self.remote {
      remote.failover.simulate(mode);
    }
  }

  /// Closes: new calls fail with `ERR_CLOSED`; one last attempt, within one command timeout,
  /// to replay what the outage journal holds; then the connection, the in-process data and
  /// the event sink are dropped. Returns how many journaled operations could not be replayed.
  /// Calls already running finish first (the caller waits for them). Idempotent (later: 0).
  pub async fn close(&self) -> u64 {
    if self.closed.swap(true, Ordering::AcqRel) {
      return 0;
    }
    let dropped = match &self.remote {
      Some(remote) => {
        let dropped = remote.failover.close().await;
        if self.limits.heartbeat_started() && remote.failover.redis_serves() {
          // the others' share grows at once, not after LIVE_MS
          let key = self.layout.processes_key();
          let leave = remote.redis.leave(&key, self.limits.instance());
          let _ = tokio::time::timeout(self.config.command_timeout, leave).await;
        }
        remote.redis.disconnect();
        dropped
      }
      None => 0,
    };
    self.memory.clear();
    if let Some(near) = self.remote.as_ref().and_then(|r| r.near.as_ref()) {
      near.clear();
    }
    self.events.clear();
    dropped
  }
}

/// The Redis command of a key call; `near`: a read also asks the TTL (the near cache's entry
/// must not outlive it).
fn key_command(op: &Op, near: bool) -> KeyCommand<'_> {
  match &op.work {
    Work::Set { value, ttl_ms } => KeyCommand::Set {
      key: &op.full,
      value,
      ttl_ms: *ttl_ms,
    },
    Work::Delete => KeyCommand::Delete(&op.full),
    Work::RateLimit { policy, cost } => KeyCommand::RateLimit {
      key: &op.full,
      interval_us: policy.interval_us(),
      tolerance_us: policy.tolerance_us(),
      cost: *cost,
      force: false,
    },
    _ if near => KeyCommand::GetWithTtl(&op.full),
    _ => KeyCommand::Get(&op.full),
  }
}

/// A near-cache ticket for a read or write of `op` about to be sent.
fn ticket(near: Option<&NearCache>, op: &Op) -> Install {
  match op.work {
    Work::Get | Work::Set { .. } => near?.ticket(&op.full),
    _ => None,
  }
}

fn unanswered() -> Error {
  Error::invalid("internal: a call was not answered")
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::config::ConfigBuilder;

  fn memory_cache() -> Arc<Cache> {
    Cache::new(
      ConfigBuilder {
        url: Some("memory://".into()),
        ..Default::default()
      }
      .build()
      .unwrap(),
    )
    .unwrap()
  }

  /// A Redis URL where nothing listens (a port just released by the OS).
  pub(crate) fn dead_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    format!("redis://127.0.0.1:{port}")
  }

  /// A cache over a Redis where nothing listens.
  fn unreachable_cache(fallback: bool) -> Arc<Cache> {
    let config = ConfigBuilder {
      url: Some(dead_url()),
      fallback_enabled: Some(fallback),
      ..Default::default()
    };
    Cache::new(config.build().unwrap()).unwrap()
  }

  fn journal_depth(c: &Cache) -> u64 {
    c.failover_status().map_or(0, |s| s.journal_depth)
  }

  #[tokio::test]
  async fn memory_mode_round_trip() {
    let c = memory_cache();
    assert!(c.is_memory_only());
    c.set(Scope::Global, EntryType::Session, "s1", "{\"a\":1}", None)
      .await
      .unwrap();
    assert_eq!(
      c.get(Scope::Global, EntryType::Session, "s1").await.unwrap().as_deref(),
      Some("{\"a\":1}")
    );
    assert_eq!(
      c.get(Scope::Global, EntryType::Query, "s1").await.unwrap(),
      None,
      "types are separate"
    );
    match c.submit(Request::get(Scope::Global, EntryType::Session, "s1")) {
      Submitted::Answered(Ok(a), served) => {
        assert_eq!(a.text(), Some("{\"a\":1}"));
        assert_eq!(served, Served::Local);
      }
      other => panic!("memory:// answers at once, got {other:?}"),
    }
    assert!(c.delete(Scope::Global, EntryType::Session, "s1").await.unwrap());
    assert!(c.failover_status().is_none(), "memory:// keeps no journal");
  }

  #[tokio::test]
  async fn bad_input_changes_nothing() {
    let c = memory_cache();
    c.set(Scope::Global, EntryType::Query, "k", "1", None).await.unwrap();
    let long = "k".repeat(5000);
    let big = "1".repeat(5 * 1024 * 1024);
    let code = |r: Result<()>| r.unwrap_err().code();
    assert_eq!(
      code(c.set(Scope::Global, EntryType::Query, "", "2", None).await),
      "ERR_INVALID_ARG"
    );
    assert_eq!(
      code(c.set(Scope::Global, EntryType::Query, &long, "2", None).await),
      "ERR_TOO_LARGE"
    );
    assert_eq!(
      code(c.set(Scope::Global, EntryType::Query, "k", &big, None).await),
      "ERR_TOO_LARGE"
    );
    for ttl in [0.0, -1.0, f64::NAN, f64::INFINITY] {
      assert_eq!(
        code(c.set(Scope::Global, EntryType::Query, "k", "2", Some(ttl)).await),
        "ERR_INVALID_ARG"
      );
    }
    assert_eq!(
      c.invalidate(Scope::Global, EntryType::Query, "", false)
        .await
        .unwrap_err()
        .code(),
      "ERR_INVALID_ARG"
    );
    assert_eq!(
      c.get(Scope::Tenant(""), EntryType::Query, "k")
        .await
        .unwrap_err()
        .code(),
      "ERR_INVALID_ARG"
    );
    assert_eq!(
      c.get(Scope::Global, EntryType::Query, "k").await.unwrap().as_deref(),
      Some("1")
    );
  }

  #[tokio::test]
  async fn tenants_are_isolated() {
    let c = memory_cache();
    for (scope, v) in [
      (Scope::Tenant("a"), "\"a\""),
      (Scope::Tenant("b"), "\"b\""),
      (Scope::Global, "\"g\""),
    ] {
      c.set(scope, EntryType::Query, "orders_1", v, None).await.unwrap();
    }
    assert_eq!(
      c.invalidate(Scope::Tenant("a"), EntryType::Query, "orders_", false)
        .await
        .unwrap(),
      1
    );
    assert_eq!(
      c.get(Scope::Tenant("b"), EntryType::Query, "orders_1")
        .await
        .unwrap()
        .as_deref(),
      Some("\"b\"")
    );
    assert_eq!(
      c.invalidate(Scope::Global, EntryType::Query, "", true).await.unwrap(),
      1,
      "invalidateAll stays in scope"
    );
    assert!(c
      .get(Scope::Tenant("b"), EntryType::Query, "orders_1")
      .await
      .unwrap()
      .is_some());
  }

  #[tokio::test]
  async fn closed_cache_refuses_everything() {
    let c = memory_cache();
    assert_eq!(c.close().await, 0);
    assert_eq!(c.close().await, 0);
    assert_eq!(
      c.get(Scope::Global, EntryType::Query, "k").await.unwrap_err(),
      Error::Closed
    );
    assert!(matches!(
      c.submit(Request::set(Scope::Global, EntryType::Query, "k", "1", None)),
      Submitted::Answered(Err(Error::Closed), _)
    ));
  }

  #[tokio::test]
  async fn falls_back_and_journals_when_redis_is_unreachable() {
    let c = unreachable_cache(true);
    c.set(Scope::Global, EntryType::Session, "s", "1", None).await.unwrap();
    assert!(c.last_error().is_some());
    assert_eq!(
      c.get(Scope::Global, EntryType::Session, "s").await.unwrap().as_deref(),
      Some("1")
    );
    assert_eq!(journal_depth(&c), 1, "the write waits for replay");
    assert!(c.delete(Scope::Global, EntryType::Session, "s").await.unwrap());
    assert_eq!(c.get(Scope::Global, EntryType::Session, "s").await.unwrap(), None);
    assert_eq!(journal_depth(&c), 1, "latest operation per key");
  }

  #[tokio::test]
  async fn without_fallback_an_outage_is_an_error() {
    let c = unreachable_cache(false);
    for _ in 0..5 {
      let err = c
        .set(Scope::Global, EntryType::Session, "s", "1", None)
        .await
        .unwrap_err();
      assert_eq!(err.code(), "ERR_REDIS_UNAVAILABLE");
    }
    assert_eq!(c.mode(), Mode::Memory, "the breaker opened");
    let err = c.get(Scope::Global, EntryType::Session, "s").await.unwrap_err();
    assert_eq!(err.code(), "ERR_REDIS_UNAVAILABLE", "also while the breaker is open");
    assert_eq!(journal_depth(&c), 0);
  }

  #[tokio::test]
  async fn queued_calls_run_in_chunks_and_a_call_behind_a_queued_write_waits_its_turn() {
    let c = unreachable_cache(true);
    let set = Request::set(Scope::Global, EntryType::Session, "k", "2", None);
    assert!(matches!(c.submit(set), Submitted::Queued));
    // the breaker opens meanwhile: a read of the same key still waits behind the write
    c.simulate_outage(Simulation::Refuse);
    assert!(matches!(
      c.submit(Request::get(Scope::Global, EntryType::Session, "k")),
      Submitted::Queued
    ));
    // another key: answered now (the outage), handed over with the flush
    assert!(matches!(
      c.submit(Request::get(Scope::Global, EntryType::Session, "other")),
      Submitted::Queued
    ));
    let flushed = c.take_queued(64);
    let (ready, positions) = flushed.ready.unwrap();
    assert_eq!((ready.answers, positions), (vec![Ok(Answer::Value(None))], vec![2]));
    assert_eq!(ready.served, vec![Served::Local]);
    assert_eq!(flushed.chunks.len(), 1);
    let ran = c.run(flushed.chunks.into_iter().next().unwrap().ops).await;
    let answers = &ran.answers;
    assert_eq!(answers[0], Ok(Answer::Done));
    assert_eq!(answers[1].as_ref().unwrap().text(), Some("2"), "the read saw the write");
    assert_eq!(ran.served, vec![Served::Local; 2], "the outage: both served in-process");
    assert!(c.take_queued(64).chunks.is_empty());
  }
}
