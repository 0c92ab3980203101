#!/usr/bin/env bash
# The dashboard page's checks: `npm ci`, the committed dist/ is what the sources build to, tsc and
# eslint, then the browser tests (Debian's chromium, headless, through playwright-core) against
# a collector on its embedded PostgreSQL with seeded tenants.
#
#   AGENTTALLY_COLLECTOR_BIN  the collector binary (default: the debug build in $CARGO_TARGET_DIR
#                             or ./target, brought up to date first)
#   CHROMIUM                  the browser (default /usr/bin/chromium, installed when missing)
set -euo pipefail
cd "$(dirname "$0")"
root=$(cd ../.. && pwd)
start=$(date +%s)
step() { printf -- '--- %s (%ss)\n' "$*" "$(( $(date +%s) - start ))"; }
work=$(mktemp -d "${TMPDIR:-/tmp}/agenttally-dashboard.XXXXXX")
pid=
cleanup() {
  if [ -n "$pid" ]; then
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

step "npm ci"
npm ci --no-audit --no-fund

step "dist/ is what the sources build to"
npm run -s build
# The gzip forms depend on Node's zlib: check they hold the same bytes rather than compare them.
changed=$(git -C "$root" status --porcelain -- collector/dashboard/dist | grep -v '\.gz$' || true)
if [ -n "$changed" ]; then
  echo "collector/dashboard/dist differs from the build of the sources (run npm run build, commit):"
  echo "$changed"
  exit 1
fi
for gz in $(find dist -name '*.gz'); do
  cmp -s <(gzip -dc "$gz") "${gz%.gz}" || { echo "$gz is not the gzip of ${gz%.gz}"; exit 1; }
done
git -C "$root" checkout -q -- collector/dashboard/dist

step "tsc --noEmit and eslint"
npm run -s lint

chromium=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$chromium" ]; then
  step "installing chromium (Debian package)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq chromium >/dev/null
fi
export CHROMIUM=$chromium

bin=${AGENTTALLY_COLLECTOR_BIN:-}
if [ -z "$bin" ]; then
  step "building the collector (debug)"
  cargo build -q -p agenttally-collector
  bin=${CARGO_TARGET_DIR:-$root/target}/debug/agenttally-collector
fi

step "collector on embedded PostgreSQL"
log="$work/collector.log"
: >"$log"
# The tests read one tenant's figures a few hundred times a minute, above the default query
# limit (100 per minute; the limiter has its own tests in collector/tests).
"$bin" serve --data-dir "$work/data" --listen 127.0.0.1:0 --rate-query-per-minute 2000 \
  --savings-baseline most_expensive,gpt-4o --monthly-budget-usd 5 >"$log" 2>&1 &
pid=$!
for _ in $(seq 1 240); do
  grep -q '^listening on ' "$log" && break
  kill -0 "$pid" 2>/dev/null || { cat "$log"; echo "collector failed to start"; exit 1; }
  sleep 0.5
done
addr=$(sed -n 's/^listening on //p' "$log" | head -1)
[ -n "$addr" ] || { cat "$log"; echo "collector did not report its address"; exit 1; }
export AGENTTALLY_URL="http://$addr"
echo "listening on $addr"

step "keys and seeded data (tenants acme and globex)"
key() { "$bin" keys create "$@" --data-dir "$work/data"; }
export AGENTTALLY_INGEST_KEY=$(key --platform --scope ingest)
export AGENTTALLY_READ_KEY=$(key --tenant acme --scope read)
export AGENTTALLY_OTHER_READ_KEY=$(key --tenant globex --scope read)
export AGENTTALLY_PLATFORM_READ_KEY=$(key --platform --scope read)
node tests/seed.mjs "$AGENTTALLY_URL" "$AGENTTALLY_INGEST_KEY" acme
node tests/seed.mjs "$AGENTTALLY_URL" "$AGENTTALLY_INGEST_KEY" globex

step "browser tests"
node --test --test-concurrency=1 tests/
