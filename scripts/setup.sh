#!/usr/bin/env bash
# Installs what building, running and testing agent-edge needs, skipping what
# is already there (a few seconds when everything is present):
#   - the wasm32-unknown-unknown and aarch64-unknown-linux-gnu Rust targets,
#     rustfmt and clippy;
#   - cargo-fuzz (pinned), for the fuzz runs of the test command;
#   - worker-build (pinned) and wasm-bindgen-cli at exactly the version of the
#     wasm-bindgen library in Cargo.lock (the two must match);
#   - wrangler, workerd, esbuild, binaryen's wasm-opt and playwright-core (which
#     drives Chromium, and downloads no browser): `npm ci`, rerun only when
#     package-lock.json changed;
#   - Debian's `chromium`, the browser of the browser tests;
#   - Debian's `redis-server`, which the Redis limits store tests start (each
#     their own, on a free loopback port), and `openssl` for their TLS
#     certificates;
#   - a Python venv in target/pyenv with botocore, PyJWT and cryptography, the
#     reference implementations the interoperability tests compare against,
#     and cfn-lint, which checks the Lambda deployment template;
#   - cargo-lambda (pinned, from PyPI, with its ziglang wheel) in a venv of its
#     own, target/cargo-lambda: `cargo lambda watch` runs the Lambda target of
#     the conformance suite, `cargo lambda build` makes the deployment zip.
# Idempotent; stops at the first failing step and names it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

WORKER_BUILD_VERSION=0.8.7
CARGO_FUZZ_VERSION=0.13.2
PYTHON_REQUIREMENTS=(botocore==1.43.107 PyJWT==2.15.1 cryptography==50.0.2 cfn-lint==1.58.0)
PYENV=target/pyenv
CARGO_LAMBDA_VERSION=1.9.2
CARGO_LAMBDA_VENV=target/cargo-lambda

cargo_bin="${CARGO_HOME:-$HOME/.cargo}/bin"
export PATH="$cargo_bin:$PATH"

current_step=""
trap 'status=$?; [[ $status -eq 0 ]] || echo "setup.sh: FAILED at step: $current_step (exit $status)" >&2' EXIT
step() {
  current_step="$1"
  echo "setup: $1"
}

# The version a program reports: the last word of the first line of its
# `--version` output ("" when the program is absent).
version_of() {
  "$@" --version 2>/dev/null | awk 'NR == 1 { print $NF }' || true
}

# --- Rust toolchain pieces -------------------------------------------------
# wasm32 for the Worker; aarch64 Linux for the Lambda zip (cross-linked by zig).
for target in wasm32-unknown-unknown aarch64-unknown-linux-gnu; do
  if ! rustup target list --installed | grep -qx "$target"; then
    step "rustup target add $target"
    rustup target add "$target"
  fi
done
for component in rustfmt clippy; do
  if ! rustup component list --installed | grep -q "^$component"; then
    step "rustup component add $component"
    rustup component add "$component"
  fi
done

if [[ "$(version_of worker-build)" != "$WORKER_BUILD_VERSION" ]]; then
  step "cargo install worker-build --version $WORKER_BUILD_VERSION (about 6 minutes)"
  cargo install worker-build --version "$WORKER_BUILD_VERSION" --force
fi

current_step="read the wasm-bindgen version from Cargo.lock"
wasm_bindgen_version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/"/, "", $3); print $3; exit }' Cargo.lock)
[[ -n "$wasm_bindgen_version" ]]
if [[ "$(version_of wasm-bindgen)" != "$wasm_bindgen_version" ]]; then
  # Not --locked: its lock file does not resolve for 0.2.130 (webpki-roots).
  step "cargo install wasm-bindgen-cli --version $wasm_bindgen_version (about 3 minutes)"
  cargo install wasm-bindgen-cli --version "$wasm_bindgen_version" --force
fi

# cargo-fuzz for the short fuzz runs of the test command (scripts/fuzz.sh).
if [[ "$(version_of cargo fuzz)" != "$CARGO_FUZZ_VERSION" ]]; then
  step "cargo install cargo-fuzz --version $CARGO_FUZZ_VERSION (about 2 minutes)"
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked --force
fi

# --- Node packages: wrangler (with workerd and esbuild), binaryen --------------
npm_stamp=node_modules/.agent-edge-package-lock.sha256
lock_hash=$(sha256sum package-lock.json | cut -d' ' -f1)
if [[ ! -d node_modules || "$(cat "$npm_stamp" 2>/dev/null)" != "$lock_hash" ]]; then
  step "npm ci (package-lock.json changed or node_modules missing)"
  npm ci --no-audit --no-fund
  echo "$lock_hash" >"$npm_stamp"
fi

# --- Debian packages: apt as root, else sudo --------------------------------
as_root=()
[[ $(id -u) -eq 0 ]] || as_root=(sudo)
apt_updated=""
apt_install() {
  if [[ -z "$apt_updated" ]]; then
    "${as_root[@]}" apt-get update -q
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y --no-install-recommends "$@"
}

# Chromium for the browser tests.
if [[ ! -x /usr/bin/chromium ]]; then
  step "apt-get install chromium"
  apt_install chromium
fi

# redis-server for the Redis limits store tests (they start their own), and
# openssl, with which the `rediss://` test makes its certificates.
for program in redis-server openssl; do
  if ! command -v "$program" >/dev/null; then
    step "apt-get install $program"
    apt_install "$program"
  fi
done

# --- Python reference implementations for the interoperability tests ---------
py_stamp="$PYENV/.agent-edge-requirements"
if [[ ! -x "$PYENV/bin/python" || "$(cat "$py_stamp" 2>/dev/null)" != "${PYTHON_REQUIREMENTS[*]}" ]]; then
  step "python3 -m venv $PYENV; pip install ${PYTHON_REQUIREMENTS[*]}"
  python3 -m venv "$PYENV"
  "$PYENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PYTHON_REQUIREMENTS[@]}"
  echo "${PYTHON_REQUIREMENTS[*]}" >"$py_stamp"
fi

# --- cargo-lambda: the Lambda runtime emulator and the deployment build -------
# `cargo-lambda lambda --version` prints "cargo-lambda 1.9.2 (<commit> <date>)".
cargo_lambda_version=$("$CARGO_LAMBDA_VENV/bin/cargo-lambda" lambda --version 2>/dev/null | awk 'NR == 1 { print $2 }' || true)
if [[ "$cargo_lambda_version" != "$CARGO_LAMBDA_VERSION" ]]; then
  step "python3 -m venv $CARGO_LAMBDA_VENV; pip install cargo-lambda==$CARGO_LAMBDA_VERSION (a 100 MB ziglang wheel)"
  python3 -m venv "$CARGO_LAMBDA_VENV"
  "$CARGO_LAMBDA_VENV/bin/python" -m pip install --quiet --disable-pip-version-check "cargo-lambda==$CARGO_LAMBDA_VERSION"
fi

current_step=""
echo "setup: ready (worker-build $WORKER_BUILD_VERSION, wasm-bindgen $wasm_bindgen_version," \
  "wrangler $(node -p 'require("wrangler/package.json").version'), cargo-lambda $CARGO_LAMBDA_VERSION," \
  "$(/usr/bin/chromium --version 2>/dev/null), $(redis-server --version 2>/dev/null | awk '{ print $1, $2, $3 }'))"
