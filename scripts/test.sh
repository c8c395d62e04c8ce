#!/usr/bin/env bash
# The whole check, as CI runs it (.ci/run): installs what is missing, then
# formatting, lints (native and wasm32), the Worker's deploy bundle and its
# size, the Lambda deployment zip, all tests (which build the benchmarks
# too), and short fuzz runs (scripts/fuzz.sh). Stops at the first failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
export WRANGLER_SEND_METRICS=false CLOUDFLARE_CF_FETCH_ENABLED=false

script_start=$SECONDS
section_name=""
section_start=$SECONDS
section() {
  [[ -z "$section_name" ]] || echo "==> $section_name: ok ($((SECONDS - section_start)) s)"
  section_name="$1"
  section_start=$SECONDS
  echo
  echo "==> $section_name"
}
trap 'status=$?; if [[ $status -ne 0 ]]; then echo; echo "==> FAILED: $section_name (exit $status)" >&2; fi' EXIT

section "setup (scripts/setup.sh)"
scripts/setup.sh

section "cargo fmt --check"
cargo fmt --check

section "cargo clippy --all-targets (native)"
cargo clippy --all-targets -- -D warnings

section "cargo clippy --lib --target wasm32-unknown-unknown"
cargo clippy --lib --target wasm32-unknown-unknown -- -D warnings

# Before the tests: the suites that run the Worker under `wrangler dev` then
# start from an up-to-date build.
section "worker bundle: wrangler deploy --dry-run, gzip size under 1 MiB"
scripts/bundle-size.sh

# The README's Lambda build: the deployment zip for Graviton (zig links it).
section "lambda deployment zip: cargo lambda build --release --arm64"
PATH="$PWD/target/cargo-lambda/bin:$PATH" cargo lambda build --release --arm64 \
  --bin agent-edge-lambda --output-format zip
ls -l target/lambda/agent-edge-lambda/bootstrap.zip

section "cargo test --all-targets, then the doc tests"
cargo test --all-targets
cargo test --doc

section "fuzz: SSE parser, transformer, JWT parsing (20 s each, scripts/fuzz.sh)"
scripts/fuzz.sh 20

section "done"
trap - EXIT
echo "==> all checks passed in $((SECONDS - script_start)) s"
