//! Options -> validated [`Config`], with every default a named constant.
//!
//! [`ConfigBuilder`] mirrors the JS `CacheOptions` (every field optional); the napi
//! layer fills it and calls [`ConfigBuilder::build`], which rejects impossible values
//! with [`Error::InvalidArg`] before anything is created. Building does no I/O.

use std::fmt;
use std::time::Duration;

use crate::error::{Error, Result};

/// URL used when neither `url` nor `REDIS_URL` is given (the JS layer reads the env).
pub const DEFAULT_URL: &str = "redis://127.0.0.1:6379";
/// The URL that selects the in-process store only.
pub const MEMORY_URL: &str = "memory://";
/// Namespace written before every key.
pub const DEFAULT_KEY_PREFIX: &str = "fc:";
/// Default session TTL in seconds.
pub const DEFAULT_SESSION_TTL_SECS: f64 = 3600.0;
/// Default query-result TTL in seconds.
pub const DEFAULT_QUERY_TTL_SECS: f64 = 300.0;
/// Largest accepted TTL in seconds (~68 years); keeps `PX` far from overflow.
pub const MAX_TTL_SECS: f64 = 2_147_483_647.0;
/// A Redis command slower than this counts as a failure.
pub const DEFAULT_COMMAND_TIMEOUT_MS: u64 = 250;
/// Deadline for opening a connection.
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 1000;
/// Attempts per call (first try included), within the command-timeout budget.
pub const DEFAULT_RETRY_ATTEMPTS: u32 = 3;
/// First backoff delay; doubles per attempt, with jitter.
pub const DEFAULT_RETRY_BASE_DELAY_MS: u64 = 20;
/// Ceiling of the backoff delay (also of the pause before Redis is tried again).
pub const DEFAULT_RETRY_MAX_DELAY_MS: u64 = 2000;
/// Byte budget of the in-process store.
pub const DEFAULT_FALLBACK_MAX_BYTES: u64 = 64 * 1024 * 1024;
/// Smallest accepted byte budget.
pub const MIN_FALLBACK_MAX_BYTES: u64 = 64 * 1024;
/// Default tenant budget: this fraction of `fallback.maxBytes` (1/8), raised to fit
/// the largest allowed entry. A noisy tenant holds at most that; the rest stays
/// for the others.
pub const DEFAULT_TENANT_SHARE_DIVISOR: u64 = 8;
/// Default byte budget of the near cache: the same as the fallback store's, enough for the
/// 10,000 query results of 4 KB of a busy process, or ~45,000 sessions of 1 KB.
pub const DEFAULT_NEAR_CACHE_MAX_BYTES: u64 = 64 * 1024 * 1024;
/// Default fail-safe: covers Redis Sentinel's default failover (`down-after-milliseconds`
/// 30 s, then the election) and a Cluster's (`cluster-node-timeout` 15 s), and a restart of a
/// Redis that loads a few GB; past it, entries read before the outage are not served.
pub const DEFAULT_FAIL_SAFE_MS: u64 = 60_000;
/// The longest fail-safe: a day.
pub const MAX_FAIL_SAFE_MS: u64 = 86_400_000;
/// Default number of tenants with their own metrics; the rest are aggregated.
pub const DEFAULT_TENANT_METRICS_LIMIT: usize = 1000;
/// Largest `tenantMetricsLimit`.
pub const MAX_TENANT_METRICS_LIMIT: usize = 100_000;
/// Longest key (session id, query key, prefix) in UTF-8 bytes.
pub const DEFAULT_MAX_KEY_BYTES: usize = 4096;
/// Largest value in bytes of JSON text.
pub const DEFAULT_MAX_VALUE_BYTES: usize = 4 * 1024 * 1024;
/// Redis's own limit on a string value.
pub const MAX_VALUE_BYTES_CEILING: usize = 512 * 1024 * 1024;
/// Longest accepted `keyPrefix` in bytes.
pub const MAX_KEY_PREFIX_BYTES: usize = 256;

/// Where data lives.
#[derive(Clone, PartialEq, Eq)]
pub enum Backend {
  /// Redis at this URL (kept secret: see [`Backend::redacted_url`]).
  Redis { url: String },
  /// A Redis Cluster reached through these seed node URLs (auth and TLS from the URLs).
  Cluster { nodes: Vec<String> },
  /// The master of a Sentinel-monitored set, asked of the sentinels at every (re)connect.
  Sentinel(SentinelConfig),
  /// `memory://`: the in-process store only.
  Memory,
}

/// A Sentinel-monitored master. `Debug` never prints a password.
#[derive(Clone, PartialEq, Eq)]
pub struct SentinelConfig {
  /// Sentinel URLs (`redis://[user:password@]host:port`; the credentials are the sentinels' own).
  pub nodes: Vec<String>,
  /// The master name the sentinels monitor.
  pub master_name: String,
  /// ACL user of the data nodes (master, replicas).
  pub username: Option<String>,
  /// Password of the data nodes.
  pub password: Option<String>,
  /// Database number on the data nodes.
  pub db: i64,
  /// TLS to the data nodes.
  pub tls: bool,
}

impl fmt::Debug for SentinelConfig {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    f.debug_struct("SentinelConfig")
      .field("nodes", &self.nodes.iter().map(|n| redact_url(n)).collect::<Vec<_>>())
      .field("master_name", &self.master_name)
      .field("username", &self.username)
      .field("password", &self.password.as_ref().map(|_| "set"))
      .field("db", &self.db)
      .field("tls", &self.tls)
      .finish()
  }
}

/// Unvalidated `sentinel` options.
#[derive(Debug, Clone, Default)]
pub struct SentinelOptions {
  pub nodes: Vec<String>,
  pub master_name: String,
  pub username: Option<String>,
  pub password: Option<String>,
  pub db: Option<f64>,
  pub tls: Option<bool>,
}

impl Backend {
  /// The URL with any password replaced by `***`; safe for health, logs and errors.
  pub fn redacted_url(&self) -> String {
    match self {
      Backend::Redis { url } => redact_url(url),
      Backend::Cluster { nodes } => nodes.iter().map(|n| redact_url(n)).collect::<Vec<_>>().join(","),
      Backend::Sentinel(s) => format!(
        "sentinel://{}/{}",
        s.nodes.iter().map(|n| redact_url(n)).collect::<Vec<_>>().join(","),
        s.master_name
      ),
      Backend::Memory => MEMORY_URL.to_string(),
    }
  }
}

impl fmt::Debug for Backend {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    f.write_str(&self.redacted_url())
  }
}

/// Retry policy for one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryConfig {
  /// Attempts including the first, >= 1.
  pub attempts: u32,
  /// First delay.
  pub base_delay: Duration,
  /// Largest delay.
  pub max_delay: Duration,
}

/// In-process store settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FallbackConfig {
  /// Serve from memory when Redis fails (otherwise reject with `ERR_REDIS_UNAVAILABLE`).
  pub enabled: bool,
  /// Byte budget (keys + values + a fixed per-entry overhead).
  pub max_bytes: u64,
  /// The most one tenant may hold (its own cold entries are evicted past it).
  pub max_bytes_per_tenant: u64,
}

/// Near cache (L1) settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NearConfig {
  /// A per-process L1 over Redis client tracking.
  pub enabled: bool,
  /// Byte budget of the L1 (keys + values + a fixed per-entry overhead).
  pub max_bytes: u64,
  /// The most one tenant may hold in the L1 (1/8 of `max_bytes`).
  pub max_bytes_per_tenant: u64,
  /// How long L1 entries stay servable once Redis fails; zero: never.
  pub fail_safe: Duration,
}

/// Size limits enforced before anything is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
  /// Longest key in UTF-8 bytes.
  pub max_key_bytes: usize,
  /// Largest JSON value in bytes.
  pub max_value_bytes: usize,
}

/// Validated configuration. `Debug` never prints a password.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
  pub(crate) backend: Backend,
  pub(crate) key_prefix: String,
  pub(crate) session_ttl_ms: u64,
  pub(crate) query_ttl_ms: u64,
  pub(crate) command_timeout: Duration,
  pub(crate) connect_timeout: Duration,
  pub(crate) retry: RetryConfig,
  pub(crate) fallback: FallbackConfig,
  pub(crate) near: NearConfig,
  pub(crate) limits: Limits,
  pub(crate) metrics_enabled: bool,
  pub(crate) query_index: bool,
  pub(crate) tenant_metrics_limit: usize,
  pub(crate) tls: TlsFiles,
}

/// PEM files for `rediss://`: a CA to trust instead of the system roots, and a
/// client certificate + key for mutual TLS. Paths only; `Debug` never shows contents.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
  /// CA certificate(s) that sign the server's certificate.
  pub ca_file: Option<String>,
  /// Client certificate (mutual TLS).
  pub cert_file: Option<String>,
  /// Client private key (mutual TLS).
  pub key_file: Option<String>,
}

impl TlsFiles {
  /// True when any file is set.
  pub fn any(&self) -> bool {
    self.ca_file.is_some() || self.cert_file.is_some() || self.key_file.is_some()
  }
}

impl Config {
  /// The backend (Redis URL or memory).
  pub fn backend(&self) -> &Backend {
    &self.backend
  }
  /// The key namespace.
  pub fn key_prefix(&self) -> &str {
    &self.key_prefix
  }
  /// The fallback settings.
  pub fn fallback(&self) -> FallbackConfig {
    self.fallback
  }
  /// The near cache settings.
  pub fn near(&self) -> NearConfig {
    self.near
  }
  /// The size limits.
  pub fn limits(&self) -> Limits {
    self.limits
  }
  /// The heaviest entry the in-process store must be able to hold.
  pub fn largest_entry_bytes(&self) -> u64 {
    largest_entry_bytes(&self.key_prefix, self.limits.max_key_bytes, self.limits.max_value_bytes)
  }
}

impl Default for Config {
  fn default() -> Self {
    ConfigBuilder::default().build().expect("defaults are valid")
  }
}

/// Unvalidated options, one `Option` per JS option; `None` means the default.
#[derive(Debug, Clone, Default)]
pub struct ConfigBuilder {
  pub url: Option<String>,
  pub key_prefix: Option<String>,
  pub session_ttl_secs: Option<f64>,
  pub query_ttl_secs: Option<f64>,
  pub command_timeout_ms: Option<f64>,
  pub connect_timeout_ms: Option<f64>,
  pub retry_attempts: Option<f64>,
  pub retry_base_delay_ms: Option<f64>,
  pub retry_max_delay_ms: Option<f64>,
  pub fallback_enabled: Option<bool>,
  pub fallback_max_bytes: Option<f64>,
  pub fallback_max_bytes_per_tenant: Option<f64>,
  pub near_cache_enabled: Option<bool>,
  pub near_cache_max_bytes: Option<f64>,
  pub near_cache_fail_safe_ms: Option<f64>,
  pub max_key_bytes: Option<f64>,
  pub max_value_bytes: Option<f64>,
  pub metrics: Option<bool>,
  pub query_index: Option<bool>,
  pub tenant_metrics_limit: Option<f64>,
  pub tls: TlsFiles,
  /// Seed node URLs of a Redis Cluster (instead of `url`).
  pub cluster_nodes: Option<Vec<String>>,
  /// A Sentinel-monitored master (instead of `url`).
  pub sentinel: Option<SentinelOptions>,
}

impl ConfigBuilder {
  /// Validates every option and applies defaults.
  pub fn build(&self) -> Result<Config> {
    let backend = match self.topology()? {
      Some(b) => b,
      None => parse_backend(self.url.as_deref().unwrap_or(DEFAULT_URL))?,
    };
    let key_prefix = self.key_prefix.clone().unwrap_or_else(|| DEFAULT_KEY_PREFIX.into());
    if key_prefix.is_empty() || key_prefix.len() > MAX_KEY_PREFIX_BYTES {
      return Err(Error::invalid(format!(
        "keyPrefix must be a non-empty string of at most {MAX_KEY_PREFIX_BYTES} bytes"
      )));
    }
    let session_ttl_ms = ttl_ms(self.session_ttl_secs.unwrap_or(DEFAULT_SESSION_TTL_SECS))
      .map_err(|e| Error::invalid(format!("ttl.session: {e}")))?;
    let query_ttl_ms = ttl_ms(self.query_ttl_secs.unwrap_or(DEFAULT_QUERY_TTL_SECS))
      .map_err(|e| Error::invalid(format!("ttl.query: {e}")))?;
    let ms = |v: Option<f64>, default: u64, name: &str, min: u64, max: u64| -> Result<u64> {
      whole(v, default, name, min, max)
    };
    let command_timeout = ms(
      self.command_timeout_ms,
      DEFAULT_COMMAND_TIMEOUT_MS,
      "commandTimeoutMs",
      1,
      600_000,
    )?;
    let connect_timeout = ms(
      self.connect_timeout_ms,
      DEFAULT_CONNECT_TIMEOUT_MS,
      "connectTimeoutMs",
      1,
      600_000,
    )?;
    let attempts = ms(
      self.retry_attempts,
      DEFAULT_RETRY_ATTEMPTS as u64,
      "retry.attempts",
      1,
      100,
    )? as u32;
    let base = ms(
      self.retry_base_delay_ms,
      DEFAULT_RETRY_BASE_DELAY_MS,
      "retry.baseDelayMs",
      0,
      600_000,
    )?;
    let max = ms(
      self.retry_max_delay_ms,
      DEFAULT_RETRY_MAX_DELAY_MS,
      "retry.maxDelayMs",
      0,
      3_600_000,
    )?;
    if base > max {
      return Err(Error::invalid("retry.baseDelayMs must not exceed retry.maxDelayMs"));
    }
    let max_key_bytes = ms(
      self.max_key_bytes,
      DEFAULT_MAX_KEY_BYTES as u64,
      "limits.maxKeyBytes",
      1,
      1 << 20,
    )? as usize;
    let max_bytes = ms(
      self.fallback_max_bytes,
      DEFAULT_FALLBACK_MAX_BYTES,
      "fallback.maxBytes",
      MIN_FALLBACK_MAX_BYTES,
      1 << 50,
    )?;
    if self.tls.cert_file.is_some() != self.tls.key_file.is_some() {
      return Err(Error::invalid("tls.certFile and tls.keyFile must be given together"));
    }
    if self.tls.any() && !backend.uses_tls() {
      return Err(Error::invalid("tls options need a rediss:// url"));
    }
    let enabled = self.fallback_enabled.unwrap_or(true);
    let memory_needed = enabled || backend == Backend::Memory;
    let admissible = crate::store::memory::admissible_weight;
    // an explicit per-tenant budget is checked against `maxBytes` before it shapes the
    // value limit's default
    let explicit_tenant_bytes = match self.fallback_max_bytes_per_tenant {
      Some(_) => Some(ms(
        self.fallback_max_bytes_per_tenant,
        max_bytes,
        "fallback.maxBytesPerTenant",
        1,
        max_bytes,
      )?),
      None => None,
    };
    let max_value_bytes = match self.max_value_bytes {
      Some(_) => ms(
        self.max_value_bytes,
        DEFAULT_MAX_VALUE_BYTES as u64,
        "limits.maxValueBytes",
        1,
        MAX_VALUE_BYTES_CEILING as u64,
      )? as usize,
      // not given: the default, or the largest value the in-process budgets hold
      None if memory_needed => {
        let key_room = largest_entry_bytes(&key_prefix, max_key_bytes, 0);
        let budget = explicit_tenant_bytes.unwrap_or(max_bytes).min(max_bytes);
        let fits = admissible(budget).saturating_sub(key_room);
        if fits == 0 {
          return Err(Error::invalid(format!(
            "fallback.maxBytes{} ({budget}) must hold at least one entry of limits.maxKeyBytes ({max_key_bytes}) plus its overhead",
            if explicit_tenant_bytes.is_some() { "PerTenant" } else { "" }
          )));
        }
        (fits as usize).min(DEFAULT_MAX_VALUE_BYTES)
      }
      None => DEFAULT_MAX_VALUE_BYTES,
    };
    let largest_entry = largest_entry_bytes(&key_prefix, max_key_bytes, max_value_bytes);
    if memory_needed && largest_entry > admissible(max_bytes) {
      return Err(Error::invalid(format!(
        "fallback.maxBytes ({max_bytes}) must hold at least one entry of limits.maxValueBytes ({max_value_bytes}) plus its key"
      )));
    }
    let fair_share = (max_bytes / DEFAULT_TENANT_SHARE_DIVISOR)
      .max((largest_entry as f64 / crate::store::memory::HOT_ALLOCATION).ceil() as u64 + 1)
      .min(max_bytes);
    let max_bytes_per_tenant = explicit_tenant_bytes.unwrap_or(fair_share);
    if memory_needed && largest_entry > admissible(max_bytes_per_tenant) {
      return Err(Error::invalid(format!(
        "fallback.maxBytesPerTenant ({max_bytes_per_tenant}) must hold at least one entry of limits.maxValueBytes ({max_value_bytes}) plus its key"
      )));
    }
    let near = self.near(&backend)?;
    let tenant_metrics_limit = ms(
      self.tenant_metrics_limit,
      DEFAULT_TENANT_METRICS_LIMIT as u64,
      "tenantMetricsLimit",
      0,
      MAX_TENANT_METRICS_LIMIT as u64,
    )? as usize;
    Ok(Config {
      backend,
      key_prefix,
      session_ttl_ms,
      query_ttl_ms,
      command_timeout: Duration::from_millis(command_timeout),
      connect_timeout: Duration::from_millis(connect_timeout),
      retry: RetryConfig {
        attempts,
        base_delay: Duration::from_millis(base),
        max_delay: Duration::from_millis(max),
      },
      fallback: FallbackConfig {
        enabled,
        max_bytes,
        max_bytes_per_tenant,
      },
      near,
      limits: Limits {
        max_key_bytes,
        max_value_bytes,
      },
      metrics_enabled: self.metrics.unwrap_or(true),
      query_index: self.query_index.unwrap_or(true),
      tenant_metrics_limit,
      tls: self.tls.clone(),
    })
  }
}

impl ConfigBuilder {
  /// The near cache settings: on by default whenever Redis is configured.
  fn near(&self, backend: &Backend) -> Result<NearConfig> {
    let redis = *backend != Backend::Memory;
    let enabled = self.near_cache_enabled.unwrap_or(redis);
    if enabled && !redis {
      return Err(Error::invalid(
        "nearCache.enabled needs Redis (url, cluster or sentinel): memory:// is in-process already",
      ));
    }
    let max_bytes = whole(
      self.near_cache_max_bytes,
      DEFAULT_NEAR_CACHE_MAX_BYTES,
      "nearCache.maxBytes",
      MIN_FALLBACK_MAX_BYTES,
      1 << 50,
    )?;
    let fail_safe = whole(
      self.near_cache_fail_safe_ms,
      DEFAULT_FAIL_SAFE_MS,
      "nearCache.failSafeMs",
      0,
      MAX_FAIL_SAFE_MS,
    )?;
    Ok(NearConfig {
      enabled,
      max_bytes,
      max_bytes_per_tenant: (max_bytes / DEFAULT_TENANT_SHARE_DIVISOR).max(1),
      fail_safe: Duration::from_millis(fail_safe),
    })
  }

  /// The Cluster or Sentinel backend, when one is configured (`None`: `url` decides).
  fn topology(&self) -> Result<Option<Backend>> {
    let given = [
      self.url.is_some(),
      self.cluster_nodes.is_some(),
      self.sentinel.is_some(),
    ];
    if given.iter().filter(|g| **g).count() > 1 {
      return Err(Error::invalid("give only one of url, cluster and sentinel"));
    }
    if let Some(nodes) = &self.cluster_nodes {
      check_node_urls("cluster.nodes", nodes)?;
      // redis-rs checks the seeds agree on credentials, TLS and db, without I/O
      redis::cluster::ClusterClient::new(nodes.clone()).map_err(|e| {
        Error::invalid(format!(
          "cluster.nodes are not usable: {}",
          e.detail().unwrap_or("invalid")
        ))
      })?;
      return Ok(Some(Backend::Cluster { nodes: nodes.clone() }));
    }
    let Some(s) = &self.sentinel else { return Ok(None) };
    check_node_urls("sentinel.nodes", &s.nodes)?;
    if s.master_name.is_empty() {
      return Err(Error::invalid("sentinel.masterName must be a non-empty string"));
    }
    let db = whole(s.db, 0, "sentinel.db", 0, 1 << 20)? as i64;
    Ok(Some(Backend::Sentinel(SentinelConfig {
      nodes: s.nodes.clone(),
      master_name: s.master_name.clone(),
      username: s.username.clone(),
      password: s.password.clone(),
      db,
      tls: s.tls.unwrap_or(false),
    })))
  }
}

/// Non-empty, each a `redis://` or `rediss://` URL (no unix sockets: nodes announce TCP addresses).
fn check_node_urls(name: &str, nodes: &[String]) -> Result<()> {
  if nodes.is_empty() {
    return Err(Error::invalid(format!("{name} must list at least one node URL")));
  }
  for n in nodes {
    if !(n.starts_with("redis://") || n.starts_with("rediss://")) || redis::Client::open(n.as_str()).is_err() {
      return Err(Error::invalid(format!(
        "{name}: '{}' is not a redis:// or rediss:// URL",
        redact_url(n)
      )));
    }
  }
  Ok(())
}

impl Backend {
  /// True when some connection of this backend uses TLS (the `tls` files apply to it).
  pub fn uses_tls(&self) -> bool {
    match self {
      Backend::Redis { url } => url.starts_with("rediss://"),
      Backend::Cluster { nodes } => nodes.iter().any(|n| n.starts_with("rediss://")),
      Backend::Sentinel(s) => s.tls || s.nodes.iter().any(|n| n.starts_with("rediss://")),
      Backend::Memory => false,
    }
  }
}

/// The heaviest in-process entry the limits allow: the longest full key (prefix,
/// tenant part, kind tag, key) plus the largest value plus the per-entry overhead.
fn largest_entry_bytes(key_prefix: &str, max_key_bytes: usize, max_value_bytes: usize) -> u64 {
  let tenant_part = crate::keys::MAX_TENANT_BYTES + 8;
  (key_prefix.len() + tenant_part + 2 + max_key_bytes + max_value_bytes) as u64
    + crate::store::memory::ENTRY_OVERHEAD
    + crate::store::memory::LEDGER_OVERHEAD
}

/// A whole number option within `[min, max]`, or its default.
fn whole(v: Option<f64>, default: u64, name: &str, min: u64, max: u64) -> Result<u64> {
  let Some(v) = v else { return Ok(default) };
  if !v.is_finite() || v.fract() != 0.0 || v < min as f64 || v > max as f64 {
    return Err(Error::invalid(format!(
      "{name} must be a whole number in [{min}, {max}], got {v}"
    )));
  }
  Ok(v as u64)
}

/// Converts a TTL in seconds (positive, finite, fractions allowed) to whole
/// milliseconds, rounding up so that a tiny TTL never becomes 0 (= no expiry).
pub fn ttl_ms(seconds: f64) -> Result<u64> {
  if !seconds.is_finite() || seconds <= 0.0 || seconds > MAX_TTL_SECS {
    return Err(Error::invalid(format!(
      "TTL must be a positive, finite number of seconds up to {MAX_TTL_SECS}, got {seconds}"
    )));
  }
  Ok(((seconds * 1000.0).ceil() as u64).max(1))
}

fn parse_backend(url: &str) -> Result<Backend> {
  if url == MEMORY_URL || url == "memory:" {
    return Ok(Backend::Memory);
  }
  let scheme = url.split("://").next().unwrap_or_default();
  match scheme {
    "redis" | "rediss" | "redis+unix" | "unix" => {}
    _ => {
      return Err(Error::invalid(format!(
        "url must start with redis://, rediss://, unix:// or be memory://, got {}",
        redact_url(url)
      )))
    }
  }
  // redis-rs parses without any I/O; a malformed URL is an argument error.
  redis::Client::open(url).map_err(|_| Error::invalid(format!("url is not a valid Redis URL: {}", redact_url(url))))?;
  Ok(Backend::Redis { url: url.to_string() })
}

/// Replaces the password of `scheme://user:password@host` (and any
/// `password=` query parameter) with `***`.
pub fn redact_url(url: &str) -> String {
  let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
    return url.to_string();
  };
  // query parameters first, so that a raw '@' inside one is gone before userinfo is looked for
  let url = redact_password_params(url);
  let (head, rest) = url.split_at(scheme_end);
  // Everything before the last '@' is taken as userinfo, so a password holding a raw
  // '/', '?' or '#' (an invalid but common URL) is still hidden; over-redacting is safe.
  match rest.rfind('@') {
    Some(at) => match rest[..at].find(':') {
      Some(colon) => format!("{head}{}:***{}", &rest[..colon], &rest[at..]),
      None => url.clone(),
    },
    None => url.clone(),
  }
}

/// Replaces the values of `password=` (redis://) and `pass=` (unix sockets) query parameters.
fn redact_password_params(url: &str) -> String {
  let Some(q) = url.find('?') else { return url.to_string() };
  let (path, query) = url.split_at(q + 1);
  let redacted: Vec<String> = query
    .split('&')
    .map(|kv| match kv.split_once('=') {
      Some((k, _)) if k.eq_ignore_ascii_case("password") || k.eq_ignore_ascii_case("pass") => format!("{k}=***"),
      _ => kv.to_string(),
    })
    .collect();
  format!("{path}{}", redacted.join("&"))
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn defaults() {
    let c = Config::default();
    assert_eq!(
      c.backend,
      Backend::Redis {
        url: DEFAULT_URL.into()
      }
    );
    assert_eq!(c.key_prefix, "fc:");
    assert_eq!(c.session_ttl_ms, 3_600_000);
    assert_eq!(c.query_ttl_ms, 300_000);
    assert_eq!(c.command_timeout, Duration::from_millis(250));
    assert_eq!(c.retry.attempts, 3);
    assert!(c.fallback.enabled);
    assert_eq!(c.fallback.max_bytes, 64 * 1024 * 1024);
    assert_eq!(c.fallback.max_bytes_per_tenant, 8 * 1024 * 1024, "a fair share: 1/8");
    assert_eq!(c.tenant_metrics_limit, DEFAULT_TENANT_METRICS_LIMIT);
    assert_eq!(c.limits.max_value_bytes, 4 * 1024 * 1024);
  }

  #[test]
  fn memory_url_selects_memory() {
    let c = ConfigBuilder {
      url: Some("memory://".into()),
      ..Default::default()
    }
    .build()
    .unwrap();
    assert_eq!(c.backend, Backend::Memory);
  }

  #[test]
  fn rejects_bad_urls() {
    for url in ["", "http://x", "redis://:pw@", "mongodb://a"] {
      let r = ConfigBuilder {
        url: Some(url.into()),
        ..Default::default()
      }
      .build();
      assert!(matches!(r, Err(Error::InvalidArg(_))), "{url} accepted");
    }
  }

  #[test]
  fn rejects_bad_numbers() {
    let bad = [f64::NAN, f64::INFINITY, -1.0, 0.5, 1e12];
    for v in bad {
      let r = ConfigBuilder {
        command_timeout_ms: Some(v),
        ..Default::default()
      }
      .build();
      assert!(r.is_err(), "commandTimeoutMs {v} accepted");
    }
    for v in [f64::NAN, 0.0, -3.0, f64::INFINITY, 1e300] {
      let r = ConfigBuilder {
        session_ttl_secs: Some(v),
        ..Default::default()
      }
      .build();
      assert!(r.is_err(), "ttl {v} accepted");
    }
    let r = ConfigBuilder {
      key_prefix: Some(String::new()),
      ..Default::default()
    }
    .build();
    assert!(r.is_err());
    let r = ConfigBuilder {
      retry_base_delay_ms: Some(500.0),
      retry_max_delay_ms: Some(100.0),
      ..Default::default()
    }
    .build();
    assert!(r.is_err());
  }

  #[test]
  fn tenant_budget_defaults_to_a_fair_share_that_fits_the_largest_value() {
    let c = ConfigBuilder {
      fallback_max_bytes: Some(16.0 * 1024.0 * 1024.0),
      ..Default::default()
    }
    .build()
    .unwrap();
    let largest = c.largest_entry_bytes();
    assert!(
      c.fallback.max_bytes_per_tenant > 2 * 1024 * 1024,
      "raised past 1/8 to fit {largest}"
    );
    assert!(largest <= crate::store::memory::admissible_weight(c.fallback.max_bytes_per_tenant));
    let set = |v: f64| ConfigBuilder {
      fallback_max_bytes_per_tenant: Some(v),
      max_value_bytes: Some(1024.0),
      ..Default::default()
    };
    assert_eq!(set(65536.0).build().unwrap().fallback.max_bytes_per_tenant, 65536);
    assert!(set(100.0).build().is_err(), "too small for one entry");
    assert!(set(1e15).build().is_err(), "above fallback.maxBytes");
    assert!(set(0.5).build().is_err());
    let limit = |v: f64| ConfigBuilder {
      tenant_metrics_limit: Some(v),
      ..Default::default()
    };
    assert_eq!(limit(0.0).build().unwrap().tenant_metrics_limit, 0);
    assert!(limit(-1.0).build().is_err());
    assert!(limit(1e9).build().is_err());
  }

  #[test]
  fn value_limit_defaults_to_what_the_budget_holds() {
    let small = ConfigBuilder {
      fallback_max_bytes: Some(1024.0 * 1024.0),
      ..Default::default()
    }
    .build()
    .unwrap();
    let value = small.limits.max_value_bytes;
    assert!(value < 1024 * 1024 && value > 900 * 1024, "{value}");
    assert!(small.largest_entry_bytes() <= crate::store::memory::admissible_weight(small.fallback.max_bytes));
    assert!(
      small.largest_entry_bytes() <= crate::store::memory::admissible_weight(small.fallback.max_bytes_per_tenant)
    );
    let tiny_tenant = ConfigBuilder {
      fallback_max_bytes: Some(1024.0 * 1024.0),
      fallback_max_bytes_per_tenant: Some(65536.0),
      ..Default::default()
    }
    .build()
    .unwrap();
    assert!(
      tiny_tenant.limits.max_value_bytes < 65536,
      "follows the tenant budget too"
    );
    let default = ConfigBuilder::default().build().unwrap();
    assert_eq!(
      default.limits.max_value_bytes, DEFAULT_MAX_VALUE_BYTES,
      "a big budget keeps the default"
    );
  }

  #[test]
  fn an_explicit_value_limit_over_the_budget_is_refused() {
    let contradiction = ConfigBuilder {
      fallback_max_bytes: Some(1024.0 * 1024.0),
      max_value_bytes: Some(4.0 * 1024.0 * 1024.0),
      ..Default::default()
    };
    assert!(contradiction.build().is_err());
    let fits = ConfigBuilder {
      fallback_max_bytes: Some(1024.0 * 1024.0),
      max_value_bytes: Some(65536.0),
      ..Default::default()
    };
    assert_eq!(fits.build().unwrap().limits.max_value_bytes, 65536);
    let off = ConfigBuilder {
      fallback_enabled: Some(false),
      fallback_max_bytes: Some(1024.0 * 1024.0),
      ..Default::default()
    };
    assert_eq!(
      off.build().unwrap().limits.max_value_bytes,
      DEFAULT_MAX_VALUE_BYTES,
      "the budget is irrelevant without fallback"
    );
    let keys_too_long = ConfigBuilder {
      fallback_max_bytes: Some(65536.0),
      max_key_bytes: Some(70000.0),
      ..Default::default()
    };
    assert!(keys_too_long.build().is_err());
  }

  #[test]
  fn near_cache_defaults_with_redis_and_refuses_memory() {
    let redis = ConfigBuilder::default().build().unwrap();
    assert!(redis.near.enabled);
    assert_eq!(redis.near.max_bytes, DEFAULT_NEAR_CACHE_MAX_BYTES);
    assert_eq!(redis.near.fail_safe, Duration::from_millis(DEFAULT_FAIL_SAFE_MS));
    let memory = ConfigBuilder {
      url: Some("memory://".into()),
      ..Default::default()
    };
    assert!(!memory.build().unwrap().near.enabled);
    let contradiction = ConfigBuilder {
      near_cache_enabled: Some(true),
      ..memory
    };
    assert!(contradiction.build().is_err());
    for (bytes, ms) in [
      (Some(100.0), None),
      (None, Some(-1.0)),
      (None, Some(1e12)),
      (Some(65536.5), None),
    ] {
      let b = ConfigBuilder {
        near_cache_max_bytes: bytes,
        near_cache_fail_safe_ms: ms,
        ..Default::default()
      };
      assert!(b.build().is_err(), "{bytes:?} {ms:?}");
    }
    let off = ConfigBuilder {
      near_cache_fail_safe_ms: Some(0.0),
      ..Default::default()
    };
    assert!(off.build().unwrap().near.fail_safe.is_zero());
  }

  #[test]
  fn ttl_rounds_up_to_a_millisecond() {
    assert_eq!(ttl_ms(0.0001).unwrap(), 1);
    assert_eq!(ttl_ms(1.5).unwrap(), 1500);
    assert_eq!(ttl_ms(300.0).unwrap(), 300_000);
    assert!(ttl_ms(0.0).is_err());
    assert!(ttl_ms(-0.0).is_err());
  }

  #[test]
  fn redacts_passwords() {
    assert_eq!(redact_url("redis://user:s3cret@h:6379/0"), "redis://user:***@h:6379/0");
    assert_eq!(redact_url("redis://:s3cret@h"), "redis://:***@h");
    assert_eq!(redact_url("redis://h:6379"), "redis://h:6379");
    assert_eq!(redact_url("redis://h/?password=x&db=1"), "redis://h/?password=***&db=1");
    assert_eq!(redact_url("redis://u:p@ss:w@h"), "redis://u:***@h");
    assert_eq!(
      redact_url("redis://:a/b?c#d@h:1/0"),
      "redis://:***@h:1/0",
      "raw / ? # in a password"
    );
    assert_eq!(
      redact_url("unix:///run/redis.sock?pass=x&db=1"),
      "unix:///run/redis.sock?pass=***&db=1"
    );
    let c = ConfigBuilder {
      url: Some("redis://u:hunter2@h".into()),
      ..Default::default()
    }
    .build()
    .unwrap();
    assert!(!format!("{c:?}").contains("hunter2"));
  }

  #[test]
  fn cluster_and_sentinel_are_validated_and_exclusive() {
    let cluster = |nodes: &[&str]| ConfigBuilder {
      cluster_nodes: Some(nodes.iter().map(|n| n.to_string()).collect()),
      ..Default::default()
    };
    let c = cluster(&["redis://:pw@127.0.0.1:7000", "redis://:pw@127.0.0.1:7001"])
      .build()
      .unwrap();
    assert!(matches!(c.backend, Backend::Cluster { ref nodes } if nodes.len() == 2));
    assert_eq!(
      c.backend.redacted_url(),
      "redis://:***@127.0.0.1:7000,redis://:***@127.0.0.1:7001"
    );
    assert!(cluster(&[]).build().is_err(), "no seed");
    assert!(cluster(&["unix:///tmp/r.sock"]).build().is_err(), "no unix sockets");
    assert!(
      cluster(&["redis://:a@h:1", "redis://:b@h:2"]).build().is_err(),
      "seeds must agree on the password"
    );
    let both = ConfigBuilder {
      url: Some("redis://h".into()),
      ..cluster(&["redis://h:1"])
    };
    assert!(both.build().is_err(), "url and cluster are exclusive");
    let sentinel = |master: &str| ConfigBuilder {
      sentinel: Some(SentinelOptions {
        nodes: vec!["redis://127.0.0.1:26379".into()],
        master_name: master.into(),
        password: Some("hunter2".into()),
        ..Default::default()
      }),
      ..Default::default()
    };
    let s = sentinel("mymaster").build().unwrap();
    assert_eq!(s.backend.redacted_url(), "sentinel://redis://127.0.0.1:26379/mymaster");
    assert!(!format!("{s:?}").contains("hunter2"), "{s:?}");
    assert!(sentinel("").build().is_err(), "empty master name");
    let tls_without_rediss = ConfigBuilder {
      tls: TlsFiles {
        ca_file: Some("ca.pem".into()),
        ..Default::default()
      },
      ..sentinel("m")
    };
    assert!(tls_without_rediss.build().is_err());
  }

  #[test]
  fn tls_options_need_rediss_and_pairs() {
    let tls = |ca: Option<&str>, cert: Option<&str>, key: Option<&str>| TlsFiles {
      ca_file: ca.map(Into::into),
      cert_file: cert.map(Into::into),
      key_file: key.map(Into::into),
    };
    let ok = ConfigBuilder {
      url: Some("rediss://h:6380".into()),
      tls: tls(Some("ca.pem"), None, None),
      ..Default::default()
    };
    assert!(ok.build().is_ok());
    let plain = ConfigBuilder {
      url: Some("redis://h".into()),
      tls: tls(Some("ca.pem"), None, None),
      ..Default::default()
    };
    assert!(plain.build().is_err(), "tls files with redis://");
    let half = ConfigBuilder {
      url: Some("rediss://h".into()),
      tls: tls(None, Some("c.pem"), None),
      ..Default::default()
    };
    assert!(half.build().is_err(), "a certificate without its key");
  }
}
