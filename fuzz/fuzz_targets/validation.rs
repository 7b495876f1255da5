//! Arbitrary options for ConfigBuilder, then arbitrary calls against a memory://
//! Cache: nothing may panic, every rejection is ERR_INVALID_ARG / ERR_TOO_LARGE,
//! and a rejected call changes neither the store nor the metrics.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use ferrocache::Cache;
use ferrocache::{redact_url, ConfigBuilder, TlsFiles};
use ferrocache::{EntryType, Scope};
use libfuzzer_sys::fuzz_target;

/// A number the way JS hands it over: anything, with the edge cases made likely.
#[derive(Debug, Arbitrary)]
enum Num {
  Any(f64),
  Int(i64),
  Edge(u8),
}

impl Num {
  fn get(&self) -> f64 {
    const EDGES: &[f64] = &[
      f64::NAN,
      f64::INFINITY,
      f64::NEG_INFINITY,
      -0.0,
      0.0,
      -1.0,
      0.5,
      1.0,
      5e-324,
      1e-300,
      65536.0,
      4194304.0,
      2_147_483_647.0,
      2_147_483_648.0,
      1_125_899_906_842_624.0,
      9_007_199_254_740_993.0,
      1e300,
      f64::MAX,
    ];
    match self {
      Num::Any(v) => *v,
      Num::Int(v) => *v as f64,
      Num::Edge(i) => EDGES[*i as usize % EDGES.len()],
    }
  }
}

#[derive(Debug, Arbitrary)]
enum Url {
  Memory,
  MemoryColon,
  Redis(String),
  Rediss(String),
  Unix(String),
  Raw(String),
}

#[derive(Debug, Arbitrary)]
struct Options {
  url: Option<Url>,
  key_prefix: Option<String>,
  session_ttl_secs: Option<Num>,
  query_ttl_secs: Option<Num>,
  command_timeout_ms: Option<Num>,
  connect_timeout_ms: Option<Num>,
  retry_attempts: Option<Num>,
  retry_base_delay_ms: Option<Num>,
  retry_max_delay_ms: Option<Num>,
  fallback_enabled: Option<bool>,
  fallback_max_bytes: Option<Num>,
  fallback_max_bytes_per_tenant: Option<Num>,
  tenant_metrics_limit: Option<Num>,
  max_key_bytes: Option<Num>,
  max_value_bytes: Option<Num>,
  metrics: Option<bool>,
  ca_file: Option<String>,
  cert_file: Option<String>,
  key_file: Option<String>,
}

#[derive(Debug, Arbitrary)]
enum Call {
  Get {
    kind: u32,
    key: String,
    tenant: Option<String>,
  },
  Set {
    kind: u32,
    key: String,
    json: String,
    ttl: Option<Num>,
    tenant: Option<String>,
  },
  Delete {
    kind: u32,
    key: String,
    tenant: Option<String>,
  },
  Invalidate {
    kind: u32,
    prefix: String,
    all: bool,
    tenant: Option<String>,
  },
  /// A key of the limit's length (plus `extra`), to reach ERR_TOO_LARGE.
  LongKey {
    extra: u8,
    set: bool,
    tenant: Option<String>,
  },
  LongTenant {
    extra: u16,
  },
}

#[derive(Debug, Arbitrary)]
struct Input {
  options: Options,
  default_budget: bool,
  calls: Vec<Call>,
}

/// Largest in-process budget a run allocates (256 MiB).
const CHEAP_BUDGET: u64 = 256 << 20;

fn builder(o: &Options, force_memory: bool) -> ConfigBuilder {
  let url = if force_memory {
    Some("memory://".to_string())
  } else {
    o.url.as_ref().map(|u| match u {
      Url::Memory => "memory://".to_string(),
      Url::MemoryColon => "memory:".to_string(),
      Url::Redis(rest) => format!("redis://{rest}"),
      Url::Rediss(rest) => format!("rediss://{rest}"),
      Url::Unix(rest) => format!("unix://{rest}"),
      Url::Raw(s) => s.clone(),
    })
  };
  let n = |v: &Option<Num>| v.as_ref().map(Num::get);
  ConfigBuilder {
    url,
    key_prefix: o.key_prefix.clone(),
    session_ttl_secs: n(&o.session_ttl_secs),
    query_ttl_secs: n(&o.query_ttl_secs),
    command_timeout_ms: n(&o.command_timeout_ms),
    connect_timeout_ms: n(&o.connect_timeout_ms),
    retry_attempts: n(&o.retry_attempts),
    retry_base_delay_ms: n(&o.retry_base_delay_ms),
    retry_max_delay_ms: n(&o.retry_max_delay_ms),
    fallback_enabled: o.fallback_enabled,
    fallback_max_bytes: n(&o.fallback_max_bytes),
    fallback_max_bytes_per_tenant: n(&o.fallback_max_bytes_per_tenant),
    tenant_metrics_limit: n(&o.tenant_metrics_limit),
    max_key_bytes: n(&o.max_key_bytes),
    max_value_bytes: n(&o.max_value_bytes),
    metrics: o.metrics,
    tls: if force_memory {
      TlsFiles::default()
    } else {
      TlsFiles {
        ca_file: o.ca_file.clone(),
        cert_file: o.cert_file.clone(),
        key_file: o.key_file.clone(),
      }
    },
    ..Default::default() // Cluster / Sentinel: validated like `url` (not fuzzed here)
  }
}

fn scope(t: &Option<String>) -> Scope<'_> {
  match t {
    Some(t) => Scope::Tenant(t),
    None => Scope::Global,
  }
}

fn run_call(cache: &Cache, call: &Call) -> Result<(), ferrocache::Error> {
  let limit = cache.config().limits().max_key_bytes;
  match call {
    Call::Get { kind, key, tenant } => cache.get_local(scope(tenant), EntryType::from_u32(*kind)?, key).map(drop),
    Call::Set {
      kind,
      key,
      json,
      ttl,
      tenant,
    } => cache.set_local(
      scope(tenant),
      EntryType::from_u32(*kind)?,
      key,
      json,
      ttl.as_ref().map(Num::get),
    ),
    Call::Delete { kind, key, tenant } => cache.delete_local(scope(tenant), EntryType::from_u32(*kind)?, key).map(drop),
    Call::Invalidate {
      kind,
      prefix,
      all,
      tenant,
    } => cache
      .invalidate_local(scope(tenant), EntryType::from_u32(*kind)?, prefix, *all)
      .map(drop),
    Call::LongKey { extra, set, tenant } => {
      let key = "k".repeat(limit.min(1 << 16) + *extra as usize % 3);
      if *set {
        cache.set_local(scope(tenant), EntryType::Query, &key, "1", None)
      } else {
        cache.get_local(scope(tenant), EntryType::Query, &key).map(drop)
      }
    }
    Call::LongTenant { extra } => {
      let tenant = "t".repeat(250 + *extra as usize % 16);
      cache.set_local(Scope::Tenant(&tenant), EntryType::Session, "k", "1", None)
    }
  }
}

fuzz_target!(|data: &[u8]| {
  let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
    return;
  };
  // Arbitrary options: build must return Ok or an argument error, and never echo a
  // URL's password (checked with redact_url's own output as the reference).
  let b = builder(&input.options, false);
  match b.build() {
    Ok(config) => {
      let _ = format!("{config:?}");
      // Creating the cache does no I/O (except reading TLS files, skipped here) and
      // must not panic; a huge in-process budget is legal but slow to allocate.
      if !b.tls.any() && config.fallback().max_bytes <= CHEAP_BUDGET {
        let _ = Cache::new(config);
      }
    }
    Err(e) => {
      assert_eq!(e.code(), "ERR_INVALID_ARG", "build: {e:?}");
      if let Some(url) = &b.url {
        let _ = redact_url(url);
      }
    }
  }

  // Calls against a memory:// cache built from the same options (URL and TLS forced;
  // a budget over CHEAP_BUDGET replaced by the default to keep runs fast).
  let mut b = builder(&input.options, true);
  if b.fallback_max_bytes.is_some_and(|v| v > CHEAP_BUDGET as f64) || input.default_budget {
    b.fallback_max_bytes = None;
  }
  let Ok(config) = b.build() else { return };
  let Ok(cache) = Cache::new(config) else {
    panic!("a validated memory:// config must create a cache");
  };
  for call in input.calls.iter().take(64) {
    let before = (cache.memory_stats(), cache.metrics());
    match run_call(&cache, call) {
      Ok(()) => {}
      Err(e) => {
        assert!(
          matches!(e.code(), "ERR_INVALID_ARG" | "ERR_TOO_LARGE"),
          "unexpected {e:?} for {call:?}"
        );
        let after = (cache.memory_stats(), cache.metrics());
        assert!(
          after.0 == before.0 && format!("{:?}", after.1) == format!("{:?}", before.1),
          "rejected {call:?} changed state: {before:?} -> {after:?}"
        );
      }
    }
  }
});
