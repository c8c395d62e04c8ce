#!/usr/bin/env bash
# Fuzzes the SSE parser, the transformer (original mode must give back its
# input byte for byte) and JWT parsing with libFuzzer, SECONDS each
# (default 20), and prints each run's final figures (execs/s, coverage).
# cargo-fuzz needs nightly compiler flags; RUSTC_BOOTSTRAP=1 lets the stable
# toolchain accept them. No sanitizer: the code is safe Rust, and the runs
# are about panics and the targets' assertions. A crash fails the script
# and leaves its input in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
export RUSTC_BOOTSTRAP=1

seconds="${1:-20}"
for target in sse_parser transformer jwt; do
  seeds=()
  case "$target" in
    sse_parser | transformer) seeds=(tests/data/sse) ;;
  esac
  mkdir -p "fuzz/corpus/$target"
  echo "fuzz: $target for ${seconds} s"
  log="fuzz/artifacts/$target.log"
  mkdir -p fuzz/artifacts
  status=0
  cargo fuzz run --sanitizer none --release "$target" "fuzz/corpus/$target" "${seeds[@]}" -- \
    -max_total_time="$seconds" -print_final_stats=1 -max_len=4096 >"$log" 2>&1 || status=$?
  grep -E '^(#[0-9]+[[:space:]]+DONE|stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb|Done )' "$log" || true
  if [[ $status -ne 0 ]]; then
    tail -40 "$log" >&2
    echo "fuzz: $target FAILED (exit $status); the input is in fuzz/artifacts/$target/" >&2
    exit "$status"
  fi
done
