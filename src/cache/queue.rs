//! The calls of one event-loop tick that wait for Redis, and how they are split into chunks
//! that run concurrently (one pipeline each).

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};

use super::op::{Op, Work};

/// What [`crate::cache::Cache::submit`] did with a call.
#[derive(Debug)]
pub enum Submitted {
  /// Answered on the spot (bad input, the in-process store, or an outage).
  Answered(crate::error::Result<super::Answer>),
  /// Queued for the tick's batch to Redis; its answer comes from the chunk that runs it.
  Queued,
}

/// Some of a tick's queued calls, run together ([`crate::cache::Cache::run`]).
#[derive(Debug)]
pub struct Chunk {
  /// The calls, in the order they were made.
  pub ops: Vec<Op>,
  /// Each call's position among the tick's queued calls; `None` when the chunk holds them all
  /// in order.
  pub positions: Option<Vec<u32>>,
}

/// The queued calls of one tick.
#[derive(Default)]
pub(crate) struct Queue {
  ops: Vec<Op>,
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

  /// Queues `op` after the others.
  pub(crate) fn push(&mut self, op: Op) {
    if matches!(op.work, Work::Set { .. } | Work::Delete) {
      self.written.insert(key_hash(&op.full));
    }
    self.ops.push(op);
  }

  /// Takes every queued call, in chunks of about `size`: calls on one key go to the chunk of
  /// the first of them (chunks run concurrently, so this keeps them in order).
  pub(crate) fn take(&mut self, size: usize) -> Vec<Chunk> {
    self.written.clear();
    let ops = std::mem::take(&mut self.ops);
    let size = size.max(1);
    if ops.len() <= size {
      return vec![Chunk { ops, positions: None }];
    }
    let mut chunks: Vec<Chunk> = Vec::new();
    let mut chunk_of: HashMap<u64, usize, BuildHasherDefault<DefaultHasher>> = HashMap::default();
    let mut open: Option<usize> = None;
    for (position, op) in ops.into_iter().enumerate() {
      let hash = key_hash(&op.full);
      let at = match chunk_of.get(&hash) {
        Some(&at) => at,
        None => {
          let at = match open {
            Some(at) if chunks[at].ops.len() < size => at,
            _ => {
              chunks.push(Chunk {
                ops: Vec::with_capacity(size),
                positions: Some(Vec::with_capacity(size)),
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
    chunks
  }

  /// Nothing queued.
  pub(crate) fn is_empty(&self) -> bool {
    self.ops.is_empty()
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
  fn a_small_tick_is_one_chunk_in_order() {
    let mut q = Queue::default();
    q.push(op("a", true));
    q.push(op("b", false));
    assert!(q.holds_write("a") && !q.holds_write("b"));
    let chunks = q.take(8);
    assert_eq!(chunks.len(), 1);
    assert!(chunks[0].positions.is_none());
    assert_eq!(chunks[0].ops.len(), 2);
    assert!(q.is_empty() && !q.holds_write("a"), "taken: nothing left");
  }

  #[test]
  fn calls_on_one_key_stay_in_the_chunk_of_the_first() {
    let mut q = Queue::default();
    for key in ["a", "b", "c", "a", "d", "b"] {
      q.push(op(key, key == "a"));
    }
    let chunks = q.take(2);
    let keys: Vec<Vec<&str>> = chunks
      .iter()
      .map(|c| c.ops.iter().map(|o| o.full.as_str()).collect())
      .collect();
    assert_eq!(keys, vec![vec!["a", "b", "a", "b"], vec!["c", "d"]]);
    let positions: Vec<Vec<u32>> = chunks.iter().map(|c| c.positions.clone().unwrap()).collect();
    assert_eq!(positions, vec![vec![0, 1, 3, 5], vec![2, 4]]);
  }
}
