//! The tokio runtime of the process: napi-rs runs every `async` call of every cache on it.
//!
//! One worker thread by default. A call's task, its Redis reply and its answer then stay on
//! one thread; with two workers a lone call woke more threads (W1 at concurrency 1: 7.0k →
//! 10.0k calls/s, p50 122–151 → 94–97 µs, process CPU per call 102 → 77 µs; busy workloads
//! unchanged, bench/HISTORY.md). One worker spends ~2 µs per call, a fraction of
//! the JS thread's own cost, so it is not the bottleneck of one Node thread.
//! `FERROCACHE_WORKER_THREADS` raises it for a process whose several `worker_threads` all
//! use ferrocache.

/// The environment variable that sets the number of worker threads.
pub const WORKER_THREADS_VAR: &str = "FERROCACHE_WORKER_THREADS";
/// Worker threads when the variable is unset or invalid.
pub const DEFAULT_WORKER_THREADS: usize = 1;
/// The most worker threads the variable may ask for.
pub const MAX_WORKER_THREADS: usize = 64;
/// The name of the runtime's threads, workers and blocking pool alike (`/proc/<pid>/task/*/comm`, `top -H`).
pub const THREAD_NAME: &str = "ferrocache-io";

/// The worker threads `value` asks for, or the reason it is ignored.
pub fn worker_threads(value: Option<&str>) -> Result<usize, String> {
  let Some(value) = value else {
    return Ok(DEFAULT_WORKER_THREADS);
  };
  match value.trim().parse::<usize>() {
    Ok(n) if (1..=MAX_WORKER_THREADS).contains(&n) => Ok(n),
    _ => Err(format!(
      "{WORKER_THREADS_VAR}={value:?} is not an integer from 1 to {MAX_WORKER_THREADS}; using {DEFAULT_WORKER_THREADS}"
    )),
  }
}

/// A multi-thread runtime with `workers` worker threads, I/O and timers enabled.
pub fn build(workers: usize) -> std::io::Result<tokio::runtime::Runtime> {
  tokio::runtime::Builder::new_multi_thread()
    .worker_threads(workers)
    .thread_name(THREAD_NAME)
    .enable_all()
    .build()
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn unset_means_one_worker() {
    assert_eq!(worker_threads(None), Ok(1));
  }

  #[test]
  fn an_integer_in_range_is_taken() {
    assert_eq!(worker_threads(Some("3")), Ok(3));
    assert_eq!(worker_threads(Some(" 64 ")), Ok(64));
    assert_eq!(worker_threads(Some("1")), Ok(1));
  }

  #[test]
  fn anything_else_is_refused_with_the_reason() {
    for bad in ["0", "65", "-1", "two", "", "1.5"] {
      let e = worker_threads(Some(bad)).expect_err(bad);
      assert!(e.contains(WORKER_THREADS_VAR) && e.contains("using 1"), "{e}");
    }
  }

  #[test]
  fn the_runtime_has_the_named_workers() {
    let rt = build(2).expect("runtime");
    let name = rt.block_on(async { tokio::spawn(async { std::thread::current().name().map(str::to_owned) }).await });
    assert_eq!(name.expect("task").as_deref(), Some(THREAD_NAME));
    assert_eq!(rt.metrics().num_workers(), 2);
  }
}
