"""Interpreter exit: a bounded flush delivers what short-lived processes tracked, and never
hangs the exit."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from conftest import Collector, run_script

SHORT = r"""
import os, time
import agenttally
c = agenttally.Client(endpoint=os.environ["T_ENDPOINT"], api_key=os.environ["T_KEY"])
for i in range(100):
    c.track("provider.api_call", tenant_id=os.environ["T_TENANT"], provider="openai",
            model="gpt-4o", usage={"input_tokens": 1}, metadata={"p": int(os.environ["T_N"])})
print(time.time(), flush=True)
"""

BUDGET = 2.0  # the default exit_timeout
SLACK = 0.5  # interpreter teardown after the flush


def one(n: int, env: dict[str, str]) -> float:
    p = subprocess.Popen(
        [sys.executable, "-c", SHORT],
        env={**os.environ, **env, "T_N": str(n)},
        stdout=subprocess.PIPE,
        text=True,
    )
    out, _ = p.communicate(timeout=60)
    ended = time.time()
    assert p.returncode == 0
    return ended - float(out.strip())


def test_short_lived_interpreters(collector: Collector, tenant: str) -> None:
    env = {"T_TENANT": tenant, "T_ENDPOINT": collector.endpoint, "T_KEY": collector.api_key}
    with ThreadPoolExecutor(max_workers=8) as pool:
        exits = list(pool.map(lambda n: one(n, env), range(100)))
    assert max(exits) < BUDGET + SLACK, sorted(exits)[-5:]
    rows = collector.query(
        f"SELECT count(*), count(DISTINCT id), count(DISTINCT metadata->>'p') FROM events "
        f"WHERE tenant_id = '{tenant}'"
    )
    assert [int(x) for x in rows[0]] == [10_000, 10_000, 100]


HANG = r"""
import time
import agenttally
c = agenttally.Client(endpoint="http://127.0.0.1:{port}", exit_timeout={budget})
for i in range(1000):
    c.track("agent.created", tenant_id="acme", agent_id="a")
print(time.time(), flush=True)
"""


def test_exit_never_hangs_on_an_unreachable_collector() -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # a closed port: every send fails and is retried
    for budget in (1.0, 0):
        p = run_script(HANG.format(port=port, budget=budget), {}, timeout=30)
        ended = time.time()
        assert p.returncode == 0, p.stderr
        assert ended - float(p.stdout.strip()) < budget + SLACK
