//! Prefix removal and listing: the query index's script, or `SCAN` + `UNLINK` in pages
//! (never blocking Redis), on every master of a Cluster.

use futures_util::future::try_join_all;

use super::connection::Target;
use super::query_index::INVALIDATE_CHUNK;
use super::topology::cluster_masters;
use super::RedisStore;
use crate::error::{Error, RedisFailure, Result};
use crate::keys::{match_pattern, untag, QueryIndex};

/// Keys asked for per `SCAN` page.
pub const SCAN_COUNT: usize = 1000;
/// Cluster prefix invalidation: full passes over the masters at most, while the slot map
/// read before a pass differs from the one read after it.
pub const MAX_INVALIDATION_PASSES: usize = 3;

impl RedisStore {
  /// Removes every live key starting with `literal_prefix`; returns how many. A query prefix
  /// with the index: its script per index (every bucket on a Cluster); otherwise `SCAN` +
  /// `UNLINK`, on every master of a Cluster.
  pub(super) async fn invalidate(&self, literal_prefix: &str) -> Result<u64> {
    let pattern = match_pattern(literal_prefix);
    {
      if self.tagged {
        if let Some(buckets) = self
          .index
          .as_ref()
          .and_then(|l| l.cluster_query_indexes(literal_prefix))
        {
          let counts = try_join_all(buckets.iter().map(|index| self.invalidate_indexed(index))).await?;
          return Ok(counts.iter().sum());
        }
      } else if let Some(index) = self.index_of(literal_prefix) {
        return self.invalidate_indexed(&index).await;
      }
      match self.target() {
        Target::Cluster { .. } => self.invalidate_cluster(&pattern).await,
        _ => self.scan_unlink(&pattern, None).await,
      }
    }
  }
}

impl RedisStore {
  /// Every key starting with `literal_prefix`: `SCAN MATCH` in pages (never blocking Redis), on
  /// every master of a Cluster; sorted, without duplicates. Keys that are not UTF-8 are skipped.
  pub async fn keys_with_prefix(&self, literal_prefix: &str) -> Result<Vec<String>> {
    let pattern = match_pattern(literal_prefix);
    let nodes: Vec<Option<(String, u16)>> = match self.target() {
      Target::Cluster { .. } => self.cluster_slot_map().await?.0.into_iter().map(Some).collect(),
      _ => vec![None],
    };
    let mut out = Vec::new();
    for node in &nodes {
      let mut cursor: u64 = 0;
      loop {
        let mut scan = redis::cmd("SCAN");
        scan.arg(cursor).arg("MATCH").arg(&pattern).arg("COUNT").arg(SCAN_COUNT);
        let (next, keys): (u64, Vec<Vec<u8>>) = match node {
          Some((host, port)) => self.query_node(&scan, host, *port).await?,
          None => self.query(&scan).await?,
        };
        out.extend(keys.into_iter().filter_map(|k| String::from_utf8(k).ok()).map(|k| {
          if self.tagged {
            untag(&k).into_owned()
          } else {
            k
          }
        }));
        if next == 0 {
          break;
        }
        cursor = next;
      }
    }
    out.sort();
    out.dedup();
    Ok(out)
  }

  /// Removes the listed query results starting with `index.member`, one atomic chunk of
  /// [`INVALIDATE_CHUNK`] members at a time; returns how many were live.
  async fn invalidate_indexed(&self, index: &QueryIndex<'_>) -> Result<u64> {
    let cmd = self.scripts.invalidate(index);
    let mut removed = 0;
    loop {
      let (live, handled): (u64, u64) = self.query_script(&cmd).await?;
      removed += live;
      if handled < INVALIDATE_CHUNK as u64 {
        return Ok(removed);
      }
    }
  }

  /// `SCAN MATCH pattern` + `UNLINK` per page, on the connection or (Cluster) on one node.
  async fn scan_unlink(&self, pattern: &str, node: Option<(&str, u16)>) -> Result<u64> {
    let mut cursor: u64 = 0;
    let mut removed = 0;
    loop {
      let mut scan = redis::cmd("SCAN");
      scan.arg(cursor).arg("MATCH").arg(pattern).arg("COUNT").arg(SCAN_COUNT);
      let (next, keys): (u64, Vec<Vec<u8>>) = match node {
        Some((host, port)) => self.query_node(&scan, host, port).await?,
        None => self.query(&scan).await?,
      };
      if !keys.is_empty() {
        removed += match node {
          Some((host, port)) => self.unlink_on_node(&keys, host, port).await?,
          None => {
            let mut unlink = redis::cmd("UNLINK");
            unlink.arg(&keys);
            self.query::<u64>(&unlink).await?
          }
        };
      }
      if next == 0 {
        return Ok(removed);
      }
      cursor = next;
    }
  }

  /// Removes `keys` (one SCAN page of the Cluster node `host:port`): one pipeline of single-key
  /// `UNLINK`s sent to that node by the crate's routing by address. A multi-key `UNLINK` would be
  /// CROSSSLOT across slots, and one command per slot costs a round trip each. A key whose slot
  /// moved meanwhile answers MOVED: the call fails (an outage to the caller, so the invalidation
  /// is journaled and replayed) rather than count it wrongly.
  async fn unlink_on_node(&self, keys: &[Vec<u8>], host: &str, port: u16) -> Result<u64> {
    let cmds = keys
      .iter()
      .map(|key| {
        let mut unlink = redis::cmd("UNLINK");
        unlink.arg(key);
        unlink
      })
      .collect();
    let replies = self.pipeline_on(cmds, Some((host, port))).await?;
    replies.into_iter().try_fold(0, |sum, reply| {
      let n: u64 = reply
        .and_then(|v| redis::from_redis_value(v).map_err(redis::RedisError::from))
        .map_err(|e| Error::Redis {
          kind: RedisFailure::Connection,
          message: format!("UNLINK on {host}:{port}: {e}"),
        })?;
      Ok(sum + n)
    })
  }

  /// Prefix removal on every master of the Cluster, repeated while the slot map changed
  /// during a pass (a key moved to a master already scanned would be missed otherwise).
  async fn invalidate_cluster(&self, pattern: &str) -> Result<u64> {
    let mut removed = 0;
    let (mut masters, mut before) = self.cluster_slot_map().await?;
    for _ in 0..MAX_INVALIDATION_PASSES {
      let counts = try_join_all(
        masters
          .iter()
          .map(|(host, port)| self.scan_unlink(pattern, Some((host.as_str(), *port)))),
      )
      .await?;
      removed += counts.iter().sum::<u64>();
      let (now, after) = self.cluster_slot_map().await?;
      if after == before {
        return Ok(removed);
      }
      (masters, before) = (now, after);
    }
    Ok(removed)
  }

  pub(super) async fn cluster_slot_map(&self) -> Result<(Vec<(String, u16)>, String)> {
    let mut cmd = redis::cmd("CLUSTER");
    cmd.arg("NODES");
    let text: String = self.query(&cmd).await?;
    let (masters, signature) = cluster_masters(&text);
    if masters.is_empty() {
      return Err(Error::Redis {
        kind: RedisFailure::Connection,
        message: "the cluster reports no master serving slots".into(),
      });
    }
    Ok((masters, signature))
  }
}
