"""Shared fixtures: one real collector (on its embedded PostgreSQL) for the whole session.

The collector binary comes from ``AGENTTALLY_COLLECTOR_BIN`` (ci.sh sets it). What arrived is
read back with the collector's own CLI (``report``) and, for per-event detail, with ``psql``
against the embedded cluster.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Iterator

import pytest

HERE = Path(__file__).resolve().parent


@dataclass
class ProviderLine:
    calls: int
    tokens: int
    cost_usd: Decimal
    unpriced: int


@dataclass
class TenantReport:
    runs: int = 0
    completed: int = 0
    failed: int = 0
    timed_out: int = 0
    providers: dict[str, ProviderLine] = field(default_factory=dict)


@dataclass
class Collector:
    binary: str
    data_dir: str
    endpoint: str
    api_key: str
    _url: str | None = None

    def report(self, tenant: str) -> TenantReport:
        out = subprocess.run(
            [self.binary, "report", "--data-dir", self.data_dir, "--tenant", tenant],
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout
        r = TenantReport()
        section = False
        for line in out.splitlines():
            if line.startswith("tenant "):
                section = line.split()[1] == tenant
                continue
            if not section:
                continue
            m = re.match(r"\s+runs: (\d+) \(completed (\d+), failed (\d+), timed out (\d+)\)", line)
            if m:
                r.runs, r.completed, r.failed, r.timed_out = map(int, m.groups())
                continue
            m = re.match(r"\s+(\S+)\s+(\d+)\s+(\d+)\s+(-?[\d.]+)\s+(\d+)\s*$", line)
            if m:
                r.providers[m.group(1)] = ProviderLine(
                    int(m.group(2)), int(m.group(3)), Decimal(m.group(4)), int(m.group(5))
                )
        return r

    def query(self, sql: str) -> list[list[str]]:
        """Rows of ``sql`` run as the cluster's superuser (tab-separated psql output)."""
        if self._url is None:
            self._url = subprocess.run(
                [self.binary, "database-url", "--data-dir", self.data_dir],
                check=True,
                capture_output=True,
                text=True,
                timeout=60,
            ).stdout.strip()
        cmd = ["psql", self._url, "-X", "-q", "-A", "-t", "-F", "\t", "-c", sql]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=60)
        return [row.split("\t") for row in out.stdout.splitlines() if row]


def _default_binary() -> str:
    target = os.environ.get("CARGO_TARGET_DIR") or str(HERE.parent.parent / "target")
    return os.path.join(target, "debug", "agenttally-collector")


@pytest.fixture(scope="session")
def collector() -> Iterator[Collector]:
    binary = os.environ.get("AGENTTALLY_COLLECTOR_BIN") or _default_binary()
    if not os.path.exists(binary):
        pytest.fail(f"collector binary not found at {binary} (set AGENTTALLY_COLLECTOR_BIN)")
    # Under /tmp and world-traversable: as root the cluster runs as the `postgres` user.
    data_dir = tempfile.mkdtemp(prefix="agenttally-pytest-", dir="/tmp")
    os.chmod(data_dir, 0o755)
    proc = subprocess.Popen(
        [binary, "serve", "--data-dir", data_dir, "--listen", "127.0.0.1:0", "--no-fsync"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    addr: list[str] = []
    log: list[str] = []
    ready = threading.Event()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            log.append(line)
            if line.startswith("listening on ") and not addr:
                addr.append(line.split()[-1])
                ready.set()
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    try:
        if not ready.wait(180) or not addr:
            pytest.fail("collector did not start:\n" + "".join(log))
        key = subprocess.run(
            [binary, "keys", "create", "--platform", "--scope", "ingest", "--data-dir", data_dir],
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout.strip()
        yield Collector(binary, data_dir, f"http://{addr[0]}", key)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def tenant() -> str:
    """A tenant id of its own per test, so counts are exact."""
    return f"py-{uuid.uuid4().hex[:12]}"


def run_script(code: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter of this venv."""
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
