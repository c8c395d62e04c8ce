#!/usr/bin/env bash
# Runs the Worker locally with `wrangler dev`, quiet and offline, for tests and
# benchmarks:
#   scripts/wrangler-dev.sh [wrangler dev options...]
# It listens on 127.0.0.1 unless --ip is given, on a free port unless --port is
# given (`agent-edge dev --target worker` gives both); the port is
# in the line "Ready on http://127.0.0.1:<port>" on stdout. Useful options:
#   --port 0 --inspector-port 0   free ports (the inspector's default, 9229,
#                                 clashes when two instances run at once)
#   --env-file FILE               the variables and secrets, KEY=VALUE lines;
#                                 with it, .dev.vars is not read
#   --var KEY:VALUE               one variable (split at the first ':'), over
#                                 --env-file, .dev.vars and [vars]
#   --persist-to DIR              local state (the Cache API, where the Worker
#                                 caches JWKS): a fresh DIR isolates a run
# wrangler runs scripts/build-worker.sh (twice) at start: it builds one at a
# time and skips when nothing changed, so several instances can start at once
# (3 to 4 s each when the build is up to date). AGENT_EDGE_WORKER_PREBUILT=1
# uses an existing build/worker even when sources changed since.
# Stop it with SIGTERM to this process (it execs wrangler; workerd goes too),
# or start it in its own process group and kill the group.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export WRANGLER_SEND_METRICS=false CLOUDFLARE_CF_FETCH_ENABLED=false CI=true

args=()
[[ " $* " == *" --ip "* || " $* " == *" --ip="* ]] || args+=(--ip 127.0.0.1)
[[ " $* " == *" --port "* || " $* " == *" --port="* ]] || args+=(--port 0)
[[ " $* " == *" --inspector-port"* ]] || args+=(--inspector-port 0)
exec node_modules/.bin/wrangler dev "${args[@]}" "$@" </dev/null
