#!/usr/bin/env bash
# Build and test the Node package the way a user gets it: `npm ci`, the addon built from source
# (`npm run build`: napi build --platform --release), the generated loader and declarations
# checked for drift, eslint and prettier, `npm pack` and the tarball installed into a scratch
# project, `tsc --noEmit` on the typed example (examples/node), then `node --test` against a real
# collector on its embedded PostgreSQL, importing the installed package only.
#
#   AGENTTALLY_COLLECTOR_BIN  the collector binary (default: $CARGO_TARGET_DIR or ./target, debug;
#                             built when missing)
set -euo pipefail
cd "$(dirname "$0")"
root=$(cd .. && pwd)
start=$(date +%s)
step() { printf '\n--- %s (%ss)\n' "$*" "$(( $(date +%s) - start ))"; }
scratch=$(mktemp -d /tmp/agenttally-node-ci.XXXXXX)
collector_pid=
cleanup() {
  if [ -n "$collector_pid" ]; then
    kill "$collector_pid" 2>/dev/null || true
    wait "$collector_pid" 2>/dev/null || true
  fi
  rm -rf "$scratch"
}
trap cleanup EXIT

step "npm ci"
npm ci --no-audit --no-fund

step "npm run build (addon from source, release)"
npm run build
node -e "const a = require('./index.js'); console.log('agenttally', a.VERSION, 'built')"

step "generated loader and declarations match the committed ones"
git -C "$root" diff --exit-code -- sdk-node/native.js sdk-node/native.d.ts

step "eslint and prettier"
npx eslint --max-warnings 0 .
npx prettier --check .
npx prettier --config .prettierrc.json --check "$root/examples/node"

step "npm pack; install the tarball into a scratch project"
tarball=$(npm pack --silent --pack-destination "$scratch" | tail -n 1)
app="$scratch/app"
mkdir -p "$app"
cp "$root/examples/node/agent.ts" "$root/examples/node/tsconfig.json" "$app/"
printf '{ "name": "scratch", "private": true, "type": "module" }\n' > "$app/package.json"
(cd "$app" && npm install --no-audit --no-fund --silent "$scratch/$tarball")
pkg="$app/node_modules/agenttally"
(cd "$scratch" && node -e "const a = require('$pkg'); if (!require.resolve('$pkg').startsWith('$app')) process.exit(1); console.log('installed', a.VERSION)")
(cd "$app" && node --input-type=module -e "import { Client, VERSION } from 'agenttally'; console.log('ESM import ok', VERSION, typeof Client)")

step "tsc --noEmit on the typed example, then build it"
types="$PWD/node_modules/@types"
(cd "$app" && "$root/sdk-node/node_modules/.bin/tsc" --noEmit -p tsconfig.json --typeRoots "$types")
(cd "$app" && "$root/sdk-node/node_modules/.bin/tsc" -p tsconfig.json --typeRoots "$types")

step "collector on embedded PostgreSQL"
target=${CARGO_TARGET_DIR:-$root/target}
export AGENTTALLY_COLLECTOR_BIN=${AGENTTALLY_COLLECTOR_BIN:-$target/debug/agenttally-collector}
if [ ! -x "$AGENTTALLY_COLLECTOR_BIN" ]; then
  (cd "$root" && cargo build -q -p agenttally-collector)
fi
# Under /tmp and world-traversable: as root the cluster runs as the `postgres` user.
data="$scratch/collector"
mkdir -p "$data" && chmod 755 "$scratch" "$data"
"$AGENTTALLY_COLLECTOR_BIN" serve --data-dir "$data" --listen 127.0.0.1:0 --no-fsync \
  > "$scratch/collector.log" 2>&1 &
collector_pid=$!
for _ in $(seq 1 360); do
  grep -q '^listening on ' "$scratch/collector.log" && break
  kill -0 "$collector_pid" 2>/dev/null || { cat "$scratch/collector.log"; exit 1; }
  sleep 0.5
done
addr=$(sed -n 's/^listening on //p' "$scratch/collector.log" | head -n 1)
[ -n "$addr" ] || { cat "$scratch/collector.log"; exit 1; }
export AGENTTALLY_TEST_ENDPOINT="http://$addr"
export AGENTTALLY_TEST_DATA_DIR="$data"
AGENTTALLY_TEST_KEY=$("$AGENTTALLY_COLLECTOR_BIN" keys create --platform --scope ingest --data-dir "$data")
export AGENTTALLY_TEST_KEY
export AGENTTALLY_PACKAGE="$pkg"
export AGENTTALLY_EXAMPLE="$app/dist/agent.js"

step "node --test (the installed tarball, against the collector)"
node --test --test-concurrency=1 tests/

step "done"
