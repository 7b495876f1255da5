#![deny(clippy::all)]
//! ferrocache: one cache object for Node.js sessions and query results, over Redis, with an
//! in-process store that takes over when Redis fails.
//!
//! # Architecture
//! - [`napi`] is the boundary: JS values into core types, answers and errors back.
//! - The core never touches napi and is tested by `cargo test` without Node: [`cache`] (every
//!   call takes one route), [`failover`] (breaker, journal, probe, replay), [`store`] (the
//!   in-process store, Redis), [`near`] (the near cache), [`ratelimit`], [`config`], [`keys`],
//!   [`metrics`], [`report`], [`events`].
//! - Values cross the boundary as JSON text: the JS layer runs V8's `JSON.stringify` /
//!   `JSON.parse` once per value, so every read is a fresh copy and Redis holds plain UTF-8
//!   JSON any client can read.
//!
//! # Failure model
//! See [`failover`]: Redis calls have a budget; outages are served by the in-process store,
//! bounded in bytes, and journaled for replay.

mod cache;
mod config;
mod error;
mod events;
mod failover;
mod keys;
mod metrics;
mod napi;
mod near;
mod ratelimit;
mod report;
mod runtime;
mod store;

// What the integration tests (`tests/`) and the fuzz targets (`fuzz/`) use of the core.
pub use crate::cache::{Action, Answer, Cache, Chunk, Mode, Ran, RateArgs, Request, Served, Submitted, Text};
pub use crate::config::{
  redact_url, Backend, ConfigBuilder, SentinelConfig, SentinelOptions, TlsFiles, DEFAULT_MAX_KEY_BYTES,
  DEFAULT_MAX_VALUE_BYTES,
};
pub use crate::error::{Error, RedisFailure, Result};
pub use crate::events::{Event, EventSink};
pub use crate::failover::Simulation;
pub use crate::keys::{
  glob_escape, match_pattern, untag, EntryType, KeyLayout, Scope, CLUSTER_BUCKETS, MAX_TENANT_BYTES,
};
pub use crate::ratelimit::{Decision, Policy, RateStats};
pub use crate::store::redis::{KeyCommand, KeyReply, NodeRole, RedisStore, RedisTimeouts};
pub use crate::store::{MemoryStore, Store};
