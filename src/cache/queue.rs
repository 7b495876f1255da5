//! The calls of one event-loop turn that wait for the turn's flush: calls for Redis, split
//! into chunks that run concurrently (one pipeline each), and calls a Redis-backed cache
//! answered on the spot during an outage, handed over from the flush (never from the caller's
//! own microtask, so that a loop of such calls keeps yielding to the event loop).

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};

use super::op::{Op, Ran, Served, Work};
use super::Answer;
use crate::error::Result;

/// What [`crate::cache::Cache::submit`] did with a call.
#[derive(Debug)]
pub enum Submitted {
  /// Answered now, to be handed over at once (bad input, `memory://`, the near cache), and
  /// by whom.
  Answered(Result<Answer>, Served),
  /// Waiting for the turn's flush ([`crate::cache::Cache::take_queued`]): answered already
  /// and handed over then, or sent to Redis then.
  Queued,
}

/// Some of a turn's queued calls, run together ([`crate::cache::Cache::run`]).
#[derive(Debug)]
pub struct Chunk {
  /// The calls, in the order they were made.
  pub ops: Vec<Op>,
  /// Each call's position among the turn's queued calls; `None` when the chunk holds them all
  /// in order.
  pub positions: Option<Vec<u32>>,
}

/// What a flush takes: the answers given during the turn, and the calls for Redis.
#[derive(Debug, Default)]
pub struct Flushed {
  /// Answers given on the spot, with their positions among the turn's queued calls.
  pub ready: Option<(Ran, Vec<u32>)>,
  /// The calls for Redis, in chunks.
  pub chunks: Vec<Chunk>,
}

enum Entry {
  Op(Op),
  Ready(Result<Answer>, Served),
}

/// The queued calls of one turn.
#[derive(Default)]
pub(crate) struct Queue {
  entries: Vec<Entry>,
  ready: usize,
  /// Hashes of the keys written or deleted by queued calls: a later call on such a key is
  /// queued behind it, whatever the route, so the calls on one key run in the order made.
  written: HashSet<u64, BuildHasherDefault<DefaultHasher>>,
}

fn key_hash(key: &str) -> u64 {
  BuildHasherDefault::<DefaultHasher>::default().hash_one(key)
}

impl Queue {
  /// A queued call writes or deletes `key`.
  pub(crate) fn holds_write(&self, key: &str) -> bool {
    !self.written.is_empty() && self.written.contains(&key_hash(key))
  }

  /// Queues `op` for Redis after the others.
  pub(crate) fn push(&mut self, op: Op) {
    if matches!(op.work, Work::Set { .. } | Work::Delete) {
      self.written.insert(key_hash(&op.full));
    }
    self.entries.push(Entry::Op(op));
  }

  /// Queues an answer given now, to hand over with the flush.
  pub(crate) fn push_ready(&mut self, answer: Result<Answer>, served: Served) {
    self.ready += 1;
    self.entries.push(Entry::Ready(answer, served));
  }

  /// Takes every queued call: the answers ready, and the calls for Redis in chunks of about
  /// `size`; calls on one key go to the chunk of the first of them (chunks run concurrently,
  /// so this keeps them in order).
  pub(crate) fn take(&mut self, size: usize) -> Flushed {
    self.written.clear();
    let entries = std::mem::take(&mut self.entries);
    let ready = std::mem::take(&mut self.ready);
    let size = size.max(1);
    let ops = entries.len() - ready;
    let mut flushed = Flushed::default();
    if ready > 0 {
      flushed.ready = Some((Ran::with_capacity(ready), Vec::with_capacity(ready)));
    }
    // one chunk in the order made, unless answers or several chunks are interleaved
    let in_order = ready == 0 && ops <= size;
    let mut chunk_of: HashMap<u64, usize, BuildHasherDefault<DefaultHasher>> = HashMap::default();
    let mut open: Option<usize> = None;
    for (position, entry) in entries.into_iter().enumerate() {
      let op = match entry {
        Entry::Ready(answer, served) => {
          if let Some((answers, positions)) = &mut flushed.ready {
            answers.push(answer, served);
            positions.push(position as u32);
          }
          continue;
        }
        Entry::Op(op) => op,
      };
      let chunks = &mut flushed.chunks;
      let hash = key_hash(&op.full);
      let at = match chunk_of.get(&hash) {
        Some(&at) => at,
        None => {
          let at = match open {
            Some(at) if chunks[at].ops.len() < size => at,
            _ => {
              chunks.push(Chunk {
                ops: Vec::with_capacity(size.min(ops)),
                positions: (!in_order).then(|| Vec::with_capacity(size.min(ops))),
              });
              chunks.len() - 1
            }
          };
          open = Some(at);
          chunk_of.insert(hash, at);
          at
        }
      };
      chunks[at].ops.push(op);
      if let Some(p) = &mut chunks[at].positions {
        p.push(position as u32);
      }
    }
    flushed
  }

  /// Nothing queued.
  pub(crate) fn is_empty(&self) -> bool {
    self.entries.is_empty()
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::keys::EntryType;

  fn op(key: &str, write: bool) -> Op {
    Op {
      work: if write {
        Work::Set {
          value: "1".into(),
          ttl_ms: 1000,
        }
      } else {
        Work::Get
      },
      entry: EntryType::Session,
      tenant: None,
      full: key.into(),
    }
  }

  #[test]
  fn a_small_turn_is_one_chunk_in_order() {
    let mut q = Queue::default();
    q.push(op("a", true));
    q.push(op("b", false));
    assert!(q.holds_write("a") && !q.holds_write("b"));
    let flushed = q.take(8);
    assert!(flushed.ready.is_none());
    assert_eq!(flushed.chunks.len(), 1);
    assert!(flushed.chunks[0].positions.is_none());
    assert_eq!(flushed.chunks[0].ops.len(), 2);
    assert!(q.is_empty() && !q.holds_write("a"), "taken: nothing left");
  }

  #[test]
  fn calls_on_one_key_stay_in_the_chunk_of_the_first() {
    let mut q = Queue::default();
    for key in ["a", "b", "c", "a", "d", "b"] {
      q.push(op(key, key == "a"));
    }
    let chunks = q.take(2).chunks;
    let keys: Vec<Vec<&str>> = chunks
      .iter()
      .map(|c| c.ops.iter().map(|o| o.full.as_str()).collect())
      .collect();
    assert_eq!(keys, vec![vec!["a", "b", "a", "b"], vec!["c", "d"]]);
    let positions: Vec<Vec<u32>> = chunks.iter().map(|c| c.positions.clone().unwrap()).collect();
    assert_eq!(positions, vec![vec![0, 1, 3, 5], vec![2, 4]]);
  }

  #[test]
  fn ready_answers_keep_their_positions() {
    let mut q = Queue::default();
    q.push_ready(Ok(Answer::Done), Served::Local);
    q.push(op("a", false));
    q.push_ready(Ok(Answer::Existed(true)), Served::Near);
    let flushed = q.take(8);
    let (ready, positions) = flushed.ready.unwrap();
    assert_eq!(ready.answers, vec![Ok(Answer::Done), Ok(Answer::Existed(true))]);
    assert_eq!(ready.served, vec![Served::Local, Served::Near]);
    assert_eq!(positions, vec![0, 2]);
    assert_eq!(flushed.chunks[0].positions, Some(vec![1]));
  }
}
