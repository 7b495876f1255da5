#!/usr/bin/env bash
# Runs each cargo-fuzz target in fuzz/ for a bounded time. Not part of CI.
#
#   scripts/fuzz.sh                 # every target, FUZZ_SECONDS (default 60) each
#   FUZZ_SECONDS=600 scripts/fuzz.sh validation
#
# Needs `cargo install cargo-fuzz`. Builds on the stable toolchain with
# `--sanitizer none` (no nightly -Z flags); libFuzzer's coverage instrumentation
# uses stable codegen options. Crashes land in fuzz/artifacts/<target>/ and make
# the script exit non-zero; corpora grow in fuzz/corpus/<target>/ (both gitignored).
set -euo pipefail

cd "$(dirname "$0")/../fuzz"
seconds="${FUZZ_SECONDS:-60}"
if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi

status=0
for target in "${targets[@]}"; do
  echo "== ${target}: ${seconds}s"
  mkdir -p "corpus/${target}" "artifacts/${target}"
  if ! cargo fuzz run --sanitizer none "${target}" "corpus/${target}" -- \
    -max_total_time="${seconds}" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1; then
    echo "!! ${target} failed; reproducers in fuzz/artifacts/${target}/" >&2
    status=1
  fi
done
exit "$status"
