#!/usr/bin/env bash
# The AgentTally demo: builds the workspace and runs the example agents.
# Installs what it needs (PostgreSQL server binaries) when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v pg_config >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq postgresql >/dev/null
fi
cargo run -q --release -p agenttally-examples --example events
