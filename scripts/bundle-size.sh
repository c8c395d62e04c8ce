#!/usr/bin/env bash
# Builds the deployable Worker bundle without uploading it
# (`wrangler deploy --dry-run --outdir dist`, no login needed) and reports its
# size: raw and gzip-compressed, per file and in all. Fails when the gzip total
# is over the limit (1 MiB by default; Cloudflare's free plan allows 3 MiB,
# measured compressed).
#   scripts/bundle-size.sh [LIMIT_BYTES]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

limit=${1:-1048576}
export WRANGLER_SEND_METRICS=false CLOUDFLARE_CF_FETCH_ENABLED=false CI=true

rm -rf dist
node_modules/.bin/wrangler deploy --dry-run --outdir dist </dev/null

raw_total=0
gzip_total=0
while IFS= read -r -d '' file; do
  raw=$(wc -c <"$file")
  gz=$(gzip -9 -c "$file" | wc -c)
  printf 'bundle: %-40s %9d bytes  gzip %9d bytes\n' "${file#dist/}" "$raw" "$gz"
  raw_total=$((raw_total + raw))
  gzip_total=$((gzip_total + gz))
done < <(find dist -type f \( -name '*.wasm' -o -name '*.js' -o -name '*.mjs' \) -print0 | sort -z)

((gzip_total > 0)) || { echo "bundle: no .wasm/.js files in dist/" >&2; exit 1; }
awk -v raw="$raw_total" -v gz="$gzip_total" -v limit="$limit" 'BEGIN {
  printf "bundle: total %d bytes (%.1f KiB), gzip %d bytes (%.1f KiB), limit %d bytes (%.1f KiB)\n",
    raw, raw / 1024, gz, gz / 1024, limit, limit / 1024 }'
if ((gzip_total > limit)); then
  echo "bundle: FAILED: gzip size $gzip_total bytes is over the limit of $limit bytes" >&2
  exit 1
fi
