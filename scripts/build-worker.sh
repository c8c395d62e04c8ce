#!/usr/bin/env bash
# Builds the Cloudflare Worker bundle (build/worker/shim.mjs + index_bg.wasm).
# It is wrangler.toml's `[build] command`, so `wrangler dev` and
# `wrangler deploy` run it; it can also be run by hand.
#
# worker-build would otherwise download wasm-bindgen and wasm-opt from GitHub
# releases and esbuild from npm on each fresh machine; these point it at the
# binaries scripts/setup.sh installed, so the build never downloads anything.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Set by tests that start several `wrangler dev` at once on one build (see
# scripts/wrangler-dev.sh): use build/worker as it is, whatever changed since.
if [[ "${AGENT_EDGE_WORKER_PREBUILT:-}" == 1 && -f build/worker/shim.mjs ]]; then
  echo "build-worker.sh: AGENT_EDGE_WORKER_PREBUILT=1, using the existing build/worker"
  exit 0
fi

# One build at a time (`wrangler dev` runs this twice at start, tests may start
# several), and none when nothing it reads changed since the last one: even
# with cargo up to date, worker-build reruns wasm-bindgen and wasm-opt (~12 s).
mkdir -p build
exec 9>build/.agent-edge-build.lock
flock 9
stamp=build/.agent-edge-build.stamp
if [[ -f build/worker/shim.mjs && -f "$stamp" && "$(cat "$stamp")" == "args: $*" &&
  -z "$(find src Cargo.toml Cargo.lock scripts/build-worker.sh -newer "$stamp" -print -quit)" ]]; then
  echo "build-worker.sh: build/worker is up to date"
  exit 0
fi

cargo_bin="${CARGO_HOME:-$HOME/.cargo}/bin"
export PATH="$cargo_bin:$PATH"

# wasm-bindgen-cli must match the wasm-bindgen library in Cargo.lock exactly.
wasm_bindgen_version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/"/, "", $3); print $3; exit }' Cargo.lock)

missing() {
  echo "build-worker.sh: $1 not found; run scripts/setup.sh first" >&2
  exit 1
}
command -v worker-build >/dev/null || missing "worker-build"
WASM_BINDGEN_BIN=$(command -v wasm-bindgen) || missing "wasm-bindgen (wasm-bindgen-cli $wasm_bindgen_version)"
installed=$("$WASM_BINDGEN_BIN" --version | awk '{ print $2 }')
[[ "$installed" == "$wasm_bindgen_version" ]] ||
  missing "wasm-bindgen $wasm_bindgen_version (found $installed)"
[[ -x node_modules/.bin/wasm-opt ]] || missing "node_modules/.bin/wasm-opt"
[[ -x node_modules/.bin/esbuild ]] || missing "node_modules/.bin/esbuild"

export WASM_BINDGEN_BIN
export WASM_OPT_BIN="$PWD/node_modules/.bin/wasm-opt"
export ESBUILD_BIN="$PWD/node_modules/.bin/esbuild"

# `--profile wasm` is Cargo.toml's size profile (opt-level "s", fat LTO, one
# codegen unit); worker-build then runs wasm-opt on the output.
# The stamp's time is the build's start, so a source saved during the build
# triggers the next one. Delete build/ to force a rebuild.
rm -f "$stamp"
echo "args: $*" >"$stamp.new"
worker-build --profile wasm "$@"
mv "$stamp.new" "$stamp"
