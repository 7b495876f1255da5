//! The recovery task: probes Redis while the breaker is open, replays the journal, closes the
//! breaker; replays what failed calls journaled while it is closed.

use std::sync::atomic::Ordering;
use std::sync::Weak;
use std::time::{Duration, Instant};

use futures_util::future::try_join_all;

use super::breaker::State;
use super::journal::{Batch, KeyOp};
use super::retry::{backoff, jitter};
use super::Failover;
use crate::error::Result;
use crate::events::Event;
use crate::store::redis::KeyCommand;
use crate::store::Store;

/// Fastest probe interval while the breaker is open.
pub const PROBE_MIN_DELAY: Duration = Duration::from_millis(50);
/// Slowest probe interval while the breaker is open (recovery is seen within about twice
/// this after Redis returns, two healthy probes being needed).
pub const PROBE_MAX_DELAY: Duration = Duration::from_millis(500);
/// Longest pause between replay attempts that Redis keeps refusing.
pub const REPLAY_MAX_DELAY: Duration = Duration::from_secs(30);
/// Journal operations applied to Redis concurrently during replay.
pub const REPLAY_CONCURRENCY: usize = 64;
/// Rate-limit keys counted into Redis per pipeline on recovery.
const SYNC_CHUNK: usize = 256;

enum Step {
  /// Nothing left to do: the task ends.
  Done,
  /// Go on at once.
  Continue,
  /// Wait for the next probe.
  Wait,
}

impl Failover {
  /// Starts the recovery task unless it runs already (needs a tokio runtime).
  pub fn ensure_recovery(&self) {
    if self.recovering.swap(true, Ordering::AcqRel) {
      return;
    }
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
      self.recovering.store(false, Ordering::Release);
      return;
    };
    handle.spawn(recovery_loop(self.me.clone()));
  }

  fn needs_recovery(&self) -> bool {
    !self.closed.load(Ordering::Acquire)
      && (!self.journal.is_empty() || self.limits.has_unsynced() || self.breaker.state() != State::Closed)
  }

  async fn recovery_step(&self) -> Step {
    match self.breaker.state() {
      State::Open => {
        let healthy = match self.probe().await {
          Ok(()) => true,
          Err(e) => {
            self.set_last_error(&e);
            if e.is_misconfiguration() {
              self.report_misconfiguration(&e);
            }
            false
          }
        };
        if self.breaker.on_probe(healthy) {
          Step::Continue
        } else {
          Step::Wait
        }
      }
      State::HalfOpen => match self.replay().await {
        Ok(()) => {
          if let Some(outage_ms) = self.breaker.close(self.now_ms()) {
            self.misconfiguration_reported.store(false, Ordering::Release);
            self.mode_since_ms.store(self.now_ms(), Ordering::Relaxed);
            self.memory.clear();
            if let Some(near) = &self.near {
              near.recovered();
            }
            let replayed = self.replayed.swap(0, Ordering::Relaxed);
            self.events.emit(Event::Recovered { outage_ms, replayed });
          }
          Step::Continue
        }
        Err(e) => {
          self.set_last_error(&e);
          self.breaker.reopen();
          Step::Wait
        }
      },
      State::Closed if self.journal.is_empty() && !self.limits.has_unsynced() => {
        // everything written while Redis refused writes is in Redis now
        self.writes_refused.store(false, Ordering::Release);
        Step::Done
      }
      State::Closed => match self.replay().await {
        Ok(()) => Step::Continue,
        Err(e) if e.is_write_refused() => {
          // still refused: the episode goes on, probed again after a backoff
          self.set_last_error(&e);
          Step::Wait
        }
        Err(e) => {
          let _ = self.on_failure(e);
          Step::Wait
        }
      },
    }
  }

  async fn probe(&self) -> Result<()> {
    self.ping().await.map(|_| ())
  }

  /// Applies the journal to Redis; entries leave the journal only once applied.
  async fn replay(&self) -> Result<()> {
    match self.replay_quietly().await {
      Ok(()) => {
        self.replay_failures.store(0, Ordering::Relaxed);
        Ok(())
      }
      // reported once per episode (`on_write_refused`); probed with the short backoff
      Err(e) if e.is_write_refused() => Err(e),
      Err(e) => {
        // a refusal retrying cannot fix (ACL without EVAL, say) backs the loop off and is
        // reported once per run of failures; a transient one is reported each time
        let persistent = !e.is_outage() || e.is_misconfiguration();
        let report = !persistent || self.replay_failures.fetch_add(1, Ordering::Relaxed) == 0;
        if report {
          self.events.emit(Event::Error {
            message: format!("replay failed, will retry: {e}"),
            kind: "replay",
          });
        }
        Err(e)
      }
    }
  }

  /// [`Failover::replay`] without events or failure bookkeeping (also the last attempt of
  /// [`Failover::close`]).
  pub(super) async fn replay_quietly(&self) -> Result<()> {
    let batch = self.journal.snapshot(Instant::now());
    if !batch.is_empty() {
      self.apply(&batch).await?;
      self.replayed.fetch_add(batch.len() as u64, Ordering::Relaxed);
    }
    self.count_local_consumption().await
  }

  /// Counts into Redis what rate-limit checks admitted locally (an outage, a failed check),
  /// forcing each key's cost in: the window that spans the outage is not exceeded. What a
  /// failure interrupts waits for the next replay.
  async fn count_local_consumption(&self) -> Result<()> {
    let mut pending = self.limits.take_unsynced();
    while !pending.is_empty() {
      let rest = pending.split_off(pending.len().min(SYNC_CHUNK));
      let cmds: Vec<KeyCommand> = pending
        .iter()
        .map(|(key, policy, units)| KeyCommand::RateLimit {
          key,
          interval_us: policy.interval_us(),
          tolerance_us: policy.tolerance_us(),
          cost: *units,
          force: true,
        })
        .collect();
      if let Err(e) = self.once("replay", self.redis.execute(&cmds)).await {
        // an error reply of one key (another client's value there) is not retried
        pending.extend(rest);
        self.limits.restore_unsynced(pending);
        return Err(e);
      }
      self.replayed.fetch_add(cmds.len() as u64, Ordering::Relaxed);
      pending = rest;
    }
    Ok(())
  }

  /// Replays `batch` in order, committing what is applied as it goes (the prefixes, then
  /// each chunk of keys): what a failure interrupts stays journaled for the next replay.
  async fn apply(&self, batch: &Batch) -> Result<()> {
    for prefix in batch.wipes.iter().chain(batch.prefixes.iter()) {
      // not bounded by one budget: a large invalidation takes many bounded SCAN pages
      self.unless_simulated(self.redis.invalidate_prefix(prefix)).await?;
    }
    self.journal.commit_prefixes(batch);
    for (n, chunk) in batch.keys.chunks(REPLAY_CONCURRENCY).enumerate() {
      // the remaining TTL is computed per chunk, right before it is sent
      let now = Instant::now();
      let pending: Vec<_> = chunk.iter().map(|(key, op)| self.apply_one(key, op, now)).collect();
      try_join_all(pending).await?;
      let start = n * REPLAY_CONCURRENCY;
      self.journal.commit_keys(batch, start..start + chunk.len());
    }
    Ok(())
  }

  async fn apply_one(&self, key: &str, op: &KeyOp, now: Instant) -> Result<()> {
    let redis = &self.redis;
    let write = async {
      match op {
        KeyOp::Set {
          value,
          expires_at,
          force,
        } if *expires_at > now => {
          let ms = (*expires_at - now).as_millis().max(1) as u64;
          if *force {
            redis.set(key, value, ms).await
          } else {
            redis.set_if_later(key, value, ms).await.map(|_| ())
          }
        }
        _ => redis.delete(key).await.map(|_| ()),
      }
    };
    self.once("replay", write).await
  }
}

/// The recovery task: holds only a `Weak` reference between steps, so a dropped cache ends
/// it, and it never keeps the process alive.
async fn recovery_loop(weak: Weak<Failover>) {
  let mut waits = 0u32;
  loop {
    let delay = {
      let Some(failover) = weak.upgrade() else { return };
      if failover.closed.load(Ordering::Acquire) {
        failover.recovering.store(false, Ordering::Release);
        return;
      }
      match failover.recovery_step().await {
        Step::Done => {
          failover.recovering.store(false, Ordering::Release);
          // something may have been journaled between the check and the store
          if failover.needs_recovery() && !failover.recovering.swap(true, Ordering::AcqRel) {
            continue;
          }
          return;
        }
        Step::Continue => {
          waits = 0;
          Duration::ZERO
        }
        Step::Wait => {
          waits += 1;
          match failover.replay_failures.load(Ordering::Relaxed) {
            // Redis answers PING but refuses the replay (e.g. an ACL without EVAL): back off far
            0 => backoff(waits, PROBE_MIN_DELAY, PROBE_MAX_DELAY, jitter()),
            n => backoff(n, PROBE_MAX_DELAY, REPLAY_MAX_DELAY, jitter()),
          }
        }
      }
    };
    if delay.is_zero() {
      tokio::task::yield_now().await;
    } else {
      tokio::time::sleep(delay).await;
    }
  }
}
