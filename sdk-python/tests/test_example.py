"""The example agent (examples/python/agent.py) runs against the collector."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import Collector

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "python" / "agent.py"


def test_example_agent(collector: Collector, tenant: str) -> None:
    p = subprocess.run(
        [sys.executable, str(EXAMPLE), tenant, "20"],
        env={"AGENTTALLY_ENDPOINT": collector.endpoint, "AGENTTALLY_API_KEY": collector.api_key},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    assert "20 tasks" in p.stdout
    rep = collector.report(tenant)
    assert rep.runs == 20 and rep.completed + rep.failed == 20 and rep.failed > 0
    assert rep.providers["openai"].calls == 40
    assert rep.providers["openai"].unpriced == 0 and rep.providers["openai"].cost_usd > 0
