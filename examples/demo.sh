#!/usr/bin/env bash
# The AgentTally demo: the collector on its embedded PostgreSQL, example agents of three tenants
# sending events through the SDK client, then a report of what was stored: runs, cost by
# provider and the savings of routing — and the dashboard's address. On a terminal it then keeps
# serving (the agents send a trickle, so the live view moves) until Ctrl-C;
# AGENTTALLY_DEMO_WAIT=0 stops at once (CI), =1 waits even without a terminal.
# Installs PostgreSQL's server binaries when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v pg_config >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq postgresql >/dev/null
fi

# CI runs the demo on the debug build it already has; people get the release build.
profile="${AGENTTALLY_DEMO_PROFILE:-release}"
out_dir=$([ "$profile" = dev ] && echo debug || echo "$profile")
echo "== building ($profile)"
cargo build -q --profile "$profile" -p agenttally-collector
cargo build -q --profile "$profile" -p agenttally-examples --example agents
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
collector="$target_dir/$out_dir/agenttally-collector"
data_dir="${AGENTTALLY_DEMO_DIR:-$target_dir/demo-data}"
rm -rf "$data_dir"

echo "== starting the collector on its embedded PostgreSQL ($data_dir)"
log=$(mktemp)
"$collector" serve --data-dir "$data_dir" --listen 127.0.0.1:0 \
  --savings-baseline most_expensive,gpt-4o >"$log" 2>&1 &
pid=$!
cleanup() { kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -f "$log"; }
trap cleanup EXIT
for _ in $(seq 1 120); do
  grep -q '^listening on ' "$log" && break
  kill -0 "$pid" 2>/dev/null || { cat "$log"; echo "collector failed to start"; exit 1; }
  sleep 0.5
done
addr=$(sed -n 's/^listening on //p' "$log" | head -1)
[ -n "$addr" ] || { cat "$log"; echo "collector did not report its address"; exit 1; }
echo "   listening on $addr"

key=$("$collector" keys create --platform --scope ingest --data-dir "$data_dir")
echo "== running the example agents (3 tenants) with key ${key:0:11}..."
AGENTTALLY_ENDPOINT="http://$addr" AGENTTALLY_API_KEY="$key" "$target_dir/$out_dir/examples/agents" "${1:-40}"

echo "== report of what was stored"
"$collector" report --data-dir "$data_dir"

reader=$("$collector" keys create --tenant acme-corp --scope read --scope export --data-dir "$data_dir")
echo
echo "== dashboard (tenant acme-corp; the key after #token= is a read key made for this demo)"
echo "   http://$addr/#token=$reader"
wait_default=$([ -t 1 ] && [ -z "${CI:-}" ] && echo 1 || echo 0)
if [ "${AGENTTALLY_DEMO_WAIT:-$wait_default}" = 1 ]; then
  echo "   serving until Ctrl-C; the agents keep sending a trickle of events"
  while kill -0 "$pid" 2>/dev/null; do
    AGENTTALLY_ENDPOINT="http://$addr" AGENTTALLY_API_KEY="$key" \
      "$target_dir/$out_dir/examples/agents" 1 >/dev/null 2>&1 || true
    sleep 2
  done
fi
