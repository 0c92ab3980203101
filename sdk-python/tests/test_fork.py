"""A preloaded client survives fork: 4 workers x 10,000 events plus the parent's arrive exactly
once, with a fork while sends are in flight, and nothing deadlocks."""

from __future__ import annotations

from conftest import Collector, run_script

SCRIPT = r"""
import os, sys
import agenttally

tenant = os.environ["T_TENANT"]
client = agenttally.Client(endpoint=os.environ["T_ENDPOINT"], api_key=os.environ["T_KEY"],
                           flush_at=50, exit_timeout=30)

def burst(n, who):
    for i in range(n):
        client.track("provider.api_call", tenant_id=tenant, provider="openai", model="gpt-4o",
                     usage={"input_tokens": 3}, metadata={"who": who, "i": i})

# The parent is busy sending when it forks: queued and in-flight events at every fork.
burst(5_000, "parent")
pids = []
for w in range(4):
    held = client.stats().queue_depth
    pid = os.fork()
    if pid == 0:
        burst(10_000, f"worker{w}")
        if w < 2:
            # Two workers flush and check their own counters; all four exit through the
            # interpreter-exit flush (gunicorn's workers exit the same way).
            client.flush(timeout=60)
            s = client.stats()
            if (s.accepted, s.sent, s.duplicates) != (10_000, 10_000, 0):
                print("worker", w, s, flush=True)
                os._exit(3)
        sys.exit(0)
    print("fork", w, "held", held, flush=True)
    pids.append(pid)
    burst(250, "parent")

failed = []
for pid in pids:
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        failed.append(status)
client.flush(timeout=60)
s = client.stats()
print("parent", s, flush=True)
assert not failed, failed
assert (s.accepted, s.sent, s.duplicates) == (6_000, 6_000, 0), s
print("OK")
"""


def test_fork_workers(collector: Collector, tenant: str) -> None:
    env = {"T_TENANT": tenant, "T_ENDPOINT": collector.endpoint, "T_KEY": collector.api_key}
    # The timeout is the deadlock check.
    p = run_script(SCRIPT, env, timeout=240)
    assert p.returncode == 0 and "OK" in p.stdout, p.stdout + p.stderr
    held = [int(line.split()[-1]) for line in p.stdout.splitlines() if line.startswith("fork ")]
    assert len(held) == 4 and held[0] > 0, p.stdout  # events were queued or in flight at fork
    rows = collector.query(
        "SELECT metadata->>'who', count(*), count(DISTINCT id) FROM events "
        f"WHERE tenant_id = '{tenant}' GROUP BY 1 ORDER BY 1"
    )
    got = {r[0]: (int(r[1]), int(r[2])) for r in rows}
    expected = {"parent": (6_000, 6_000)} | {f"worker{w}": (10_000, 10_000) for w in range(4)}
    assert got == expected
