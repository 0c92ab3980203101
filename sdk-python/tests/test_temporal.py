"""`agenttally.temporal` against a real Temporal dev server and the real collector.

Workers run with ``max_cached_workflows=0``, so every workflow task after the first replays the
run from its history: events must leave only from the live part, exactly once.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from temporal_workflows import (
    OPENAI_RESULT,
    BugFixWorkflow,
    ChildWorkflow,
    FlakyTaskWorkflow,
    LocalWorkflow,
    ParentWorkflow,
    TimeoutWorkflow,
    note,
    plan,
    run_tests,
    slow,
    write_patch,
)
from temporalio.client import Client as TemporalClient
from temporalio.client import WorkflowFailureError, WorkflowHistory
from temporalio.worker import Replayer, Worker

import agenttally
from agenttally.temporal import (
    HEADER_KEY,
    WORKFLOW_EVENT_NAMESPACE,
    AgentTallyInterceptor,
    TemporalContext,
    calls_in_result,
    context,
)

from conftest import Collector

WORKFLOWS = [
    BugFixWorkflow,
    FlakyTaskWorkflow,
    ParentWorkflow,
    ChildWorkflow,
    TimeoutWorkflow,
    LocalWorkflow,
]
COLUMNS = (
    "event_type, agent_id, correlation_id, user_id, task_type, workflow_id, duration_ms, "
    "queue_ms, cost_usd, provider, model, success, error_code, metadata, id"
)


@dataclass
class Row:
    event_type: str
    agent_id: str
    correlation_id: str
    user_id: str
    task_type: str
    workflow_id: str
    duration_ms: str
    queue_ms: str
    cost_usd: str
    provider: str
    model: str
    success: str
    error_code: str
    metadata: dict[str, Any]
    id: str

    @property
    def temporal(self) -> dict[str, Any]:
        t = self.metadata.get("temporal")
        assert isinstance(t, dict), self.metadata
        return t


def rows_of(collector: Collector, tenant: str) -> list[Row]:
    out = []
    for r in collector.query(
        f"SELECT {COLUMNS} FROM events WHERE tenant_id = '{tenant}' ORDER BY ts, received_at"
    ):
        r[13] = json.loads(r[13])
        out.append(Row(*r))  # type: ignore[arg-type]
    return out


def make_client(collector: Collector, book: agenttally.PriceBook) -> agenttally.Client:
    return agenttally.Client(
        endpoint=collector.endpoint, api_key=collector.api_key, flush_interval=0.1, price_book=book
    )


def make_worker(client: TemporalClient, task_queue: str, pool: ThreadPoolExecutor) -> Worker:
    return Worker(
        client,
        task_queue=task_queue,
        workflows=WORKFLOWS,
        activities=[plan, write_patch, run_tests, note, slow],
        activity_executor=pool,
        max_cached_workflows=0,
    )


@dataclass
class BugFixRun:
    tenant: str
    workflow_id: str
    run_id: str
    task_queue: str
    history: WorkflowHistory
    stats: agenttally.Stats
    book: agenttally.PriceBook


@pytest.fixture(scope="module")
def bugfix_run(collector: Collector, temporal_server: str) -> BugFixRun:
    """One BugFixWorkflow run: plan (OpenAI-style result), write_patch (fails once, then
    records a call), run_tests (fails for good, so the workflow fails)."""
    tenant = f"py-{uuid.uuid4().hex[:12]}"
    book = agenttally.PriceBook.builtin()
    at = make_client(collector, book)
    interceptor = AgentTallyInterceptor(at, tenant_id="not-this-one")
    task_queue = f"tq-{uuid.uuid4().hex[:8]}"
    workflow_id = f"bugfix-{uuid.uuid4().hex[:8]}"

    async def main() -> tuple[str, WorkflowHistory]:
        client = await TemporalClient.connect(temporal_server, interceptors=[interceptor])
        with ThreadPoolExecutor(4) as pool:
            async with make_worker(client, task_queue, pool):
                with context(
                    tenant_id=tenant, correlation_id="order-42", user_id="u-7", task_type="bug_fix"
                ):
                    handle = await client.start_workflow(
                        BugFixWorkflow.run, "fix it", id=workflow_id, task_queue=task_queue
                    )
                with pytest.raises(WorkflowFailureError):
                    await handle.result()
                desc = await handle.describe()
                return desc.run_id, await handle.fetch_history()

    run_id, history = asyncio.run(main())
    at.flush(timeout=30)
    stats = at.stats()
    at.shutdown(timeout=10)
    return BugFixRun(tenant, workflow_id, run_id, task_queue, history, stats, book)


def test_three_activities_emit_exactly_the_expected_events(
    collector: Collector, bugfix_run: BugFixRun
) -> None:
    r = bugfix_run
    rows = rows_of(collector, r.tenant)
    got = sorted((x.event_type, x.agent_id, x.temporal.get("attempt")) for x in rows)
    want = sorted(
        [
            ("agent.started", "BugFixWorkflow", None),
            ("agent.failed", "BugFixWorkflow", None),
            ("agent.started", "plan", 1),
            ("provider.api_call", "plan", 1),
            ("agent.completed", "plan", 1),
            ("agent.started", "write_patch", 1),
            ("agent.failed", "write_patch", 1),
            ("agent.started", "write_patch", 2),
            ("provider.api_call", "write_patch", 2),
            ("agent.completed", "write_patch", 2),
            ("agent.started", "run_tests", 1),
            ("agent.failed", "run_tests", 1),
        ],
        key=repr,
    )
    assert sorted(got, key=repr) == want
    # Nothing was sent twice: replayed workflow tasks emitted nothing.
    assert r.stats.accepted == 12 and r.stats.duplicates == 0, r.stats
    assert r.stats.dropped.total() == 0

    for x in rows:
        # The header's context reached every activity of the tree.
        assert (x.correlation_id, x.user_id, x.task_type) == ("order-42", "u-7", "bug_fix"), x
        assert x.workflow_id == r.workflow_id
        t = x.temporal
        assert t["workflow_type"] == "BugFixWorkflow"
        assert t["workflow_run_id"] == r.run_id
        assert t["task_queue"] == r.task_queue
        if x.agent_id == "BugFixWorkflow":
            assert t["scope"] == "workflow" and "activity_type" not in t
        else:
            assert t["scope"] == "activity"
            assert t["activity_type"] == x.agent_id and t["activity_id"]
            if x.event_type != "provider.api_call":
                assert x.queue_ms != "" and int(x.queue_ms) >= 0, x
        if x.event_type in ("agent.completed", "agent.failed"):
            assert x.duration_ms != "" and int(x.duration_ms) >= 0, x
        assert x.success == ("f" if x.event_type == "agent.failed" else "t"), x

    def one(event_type: str, agent: str, attempt: Any = None) -> Row:
        (m,) = [
            x
            for x in rows
            if x.event_type == event_type
            and x.agent_id == agent
            and x.temporal.get("attempt") == attempt
        ]
        return m

    # Failures carry an error code: the exception's type, or the ApplicationError's type.
    assert one("agent.failed", "write_patch", 1).error_code == "FlakyError"
    assert one("agent.failed", "run_tests", 1).error_code == "TestsFailed"
    assert one("agent.failed", "BugFixWorkflow").error_code == "FixRejected"
    # The workflow duration covers the activities (the retry waited >= 100 ms).
    assert int(one("agent.failed", "BugFixWorkflow").duration_ms) >= 100

    # Cost: the OpenAI-style result of `plan`, priced by the client's book...
    openai = r.book.cost("gpt-4o", input_tokens=1000, output_tokens=200).usd
    call = one("provider.api_call", "plan", 1)
    assert (call.provider, call.model) == ("openai", "gpt-4o")
    assert Decimal(call.cost_usd) == openai
    done = one("agent.completed", "plan", 1)
    assert Decimal(done.cost_usd) == openai and done.metadata["calls"] == 1
    # ... and the call `write_patch` recorded itself (a sync activity in a thread).
    anthropic = r.book.cost("claude-sonnet-4-5", input_tokens=2000, output_tokens=500).usd
    call = one("provider.api_call", "write_patch", 2)
    assert (call.provider, call.model) == ("anthropic", "claude-sonnet-4-5")
    assert Decimal(call.cost_usd) == anthropic
    done = one("agent.completed", "write_patch", 2)
    assert Decimal(done.cost_usd) == anthropic and done.metadata["calls"] == 1
    assert one("agent.failed", "write_patch", 1).metadata["calls"] == 0

    # Workflow event ids are derived from the run id and the event's place in the run.
    assert one("agent.started", "BugFixWorkflow").id == str(
        uuid.uuid5(WORKFLOW_EVENT_NAMESPACE, f"{r.run_id}:0")
    )
    assert one("agent.failed", "BugFixWorkflow").id == str(
        uuid.uuid5(WORKFLOW_EVENT_NAMESPACE, f"{r.run_id}:1")
    )

    # Cost per workflow run, as the collector reports it: the calls, counted once.
    report = collector.report(r.tenant)
    assert sum(p.cost_usd for p in report.providers.values()) == openai + anthropic


def test_history_replays_with_and_without_the_interceptor_and_emits_nothing(
    collector: Collector, bugfix_run: BugFixRun
) -> None:
    history = bugfix_run.history
    # The header travelled on the scheduled activities.
    scheduled = [
        e.activity_task_scheduled_event_attributes
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    assert len(scheduled) == 3
    for attrs in scheduled:
        ctx = TemporalContext.from_payload(attrs.header.fields[HEADER_KEY])
        assert ctx == TemporalContext(bugfix_run.tenant, "order-42", "u-7", "bug_fix")

    fresh = make_client(collector, bugfix_run.book)

    async def main() -> None:
        for interceptors in ([], [AgentTallyInterceptor(fresh, tenant_id="replay")]):
            result = await Replayer(workflows=WORKFLOWS, interceptors=interceptors).replay_workflow(
                history, raise_on_replay_failure=False
            )
            # A failed workflow replays to its failure; a non-determinism error would be a
            # replay failure instead.
            assert result.replay_failure is None, result.replay_failure

    asyncio.run(main())
    fresh.flush(timeout=10)
    assert fresh.stats().accepted == 0, fresh.stats()
    fresh.shutdown(timeout=5)


def test_rerun_workflow_task_does_not_double_count(
    collector: Collector, temporal_server: str, tenant: str
) -> None:
    book = agenttally.PriceBook.builtin()
    at = make_client(collector, book)
    interceptor = AgentTallyInterceptor(at, tenant_id=tenant)
    task_queue = f"tq-{uuid.uuid4().hex[:8]}"
    workflow_id = f"flaky-{uuid.uuid4().hex[:8]}"

    async def main() -> str:
        client = await TemporalClient.connect(temporal_server, interceptors=[interceptor])
        with ThreadPoolExecutor(2) as pool:
            async with make_worker(client, task_queue, pool):
                # No context block: the default tenant, the workflow id as correlation id.
                handle = await client.start_workflow(
                    FlakyTaskWorkflow.run, "x", id=workflow_id, task_queue=task_queue
                )
                assert await handle.result() == "done"
                history = await handle.fetch_history()
                failed_tasks = [
                    e for e in history.events if e.HasField("workflow_task_failed_event_attributes")
                ]
                assert len(failed_tasks) == 1
                return (await handle.describe()).run_id

    run_id = asyncio.run(main())
    at.flush(timeout=30)
    stats = at.stats()
    at.shutdown(timeout=10)
    # agent.started left twice (once per run of the workflow code) with the same id ...
    assert stats.accepted == 6 and stats.duplicates == 1, stats
    # ... and is stored once.
    rows = rows_of(collector, tenant)
    wf = sorted((x.event_type, x.id) for x in rows if x.agent_id == "FlakyTaskWorkflow")
    assert wf == sorted(
        [
            ("agent.started", str(uuid.uuid5(WORKFLOW_EVENT_NAMESPACE, f"{run_id}:0"))),
            ("agent.completed", str(uuid.uuid5(WORKFLOW_EVENT_NAMESPACE, f"{run_id}:1"))),
        ]
    )
    assert len(rows) == 5
    assert {x.correlation_id for x in rows} == {workflow_id}
    assert collector.report(tenant).completed == 2  # the workflow run and the activity


def test_header_reaches_a_child_workflow_through_continue_as_new_and_its_activity(
    collector: Collector, temporal_server: str, tenant: str
) -> None:
    at = make_client(collector, agenttally.PriceBook.builtin())
    task_queue = f"tq-{uuid.uuid4().hex[:8]}"
    workflow_id = f"parent-{uuid.uuid4().hex[:8]}"

    async def main() -> None:
        client = await TemporalClient.connect(
            temporal_server, interceptors=[AgentTallyInterceptor(at, tenant_id="not-this-one")]
        )
        with ThreadPoolExecutor(2) as pool:
            async with make_worker(client, task_queue, pool):
                with context(tenant_id=tenant, correlation_id="tree-1", task_type="triage"):
                    handle = await client.start_workflow(
                        ParentWorkflow.run, id=workflow_id, task_queue=task_queue
                    )
                assert await handle.result() == "child"

    asyncio.run(main())
    at.flush(timeout=30)
    at.shutdown(timeout=10)
    child = f"{workflow_id}-child"
    got = sorted(
        (
            x.workflow_id,
            x.agent_id,
            x.event_type,
            x.correlation_id,
            x.task_type,
            bool(x.metadata.get("continued_as_new")),
        )
        for x in rows_of(collector, tenant)
    )
    assert got == [
        (workflow_id, "ParentWorkflow", "agent.completed", "tree-1", "triage", False),
        (workflow_id, "ParentWorkflow", "agent.started", "tree-1", "triage", False),
        (child, "ChildWorkflow", "agent.completed", "tree-1", "triage", False),
        (child, "ChildWorkflow", "agent.completed", "tree-1", "triage", True),
        (child, "ChildWorkflow", "agent.started", "tree-1", "triage", False),
        (child, "ChildWorkflow", "agent.started", "tree-1", "triage", False),
        (child, "note", "agent.completed", "tree-1", "triage", False),
        (child, "note", "agent.started", "tree-1", "triage", False),
    ]


def test_local_activity_carries_the_header(
    collector: Collector, temporal_server: str, tenant: str
) -> None:
    at = make_client(collector, agenttally.PriceBook.builtin())
    task_queue = f"tq-{uuid.uuid4().hex[:8]}"
    workflow_id = f"local-{uuid.uuid4().hex[:8]}"

    async def main() -> None:
        client = await TemporalClient.connect(
            temporal_server, interceptors=[AgentTallyInterceptor(at, tenant_id="not-this-one")]
        )
        with ThreadPoolExecutor(2) as pool:
            async with make_worker(client, task_queue, pool):
                with context(tenant_id=tenant, correlation_id="local-1", user_id="u-9"):
                    handle = await client.start_workflow(
                        LocalWorkflow.run, id=workflow_id, task_queue=task_queue
                    )
                assert await handle.result() == "local"

    asyncio.run(main())
    at.flush(timeout=30)
    at.shutdown(timeout=10)
    got = sorted(
        (x.agent_id, x.event_type, x.correlation_id, x.user_id, x.temporal["scope"])
        for x in rows_of(collector, tenant)
    )
    assert got == [
        ("LocalWorkflow", "agent.completed", "local-1", "u-9", "workflow"),
        ("LocalWorkflow", "agent.started", "local-1", "u-9", "workflow"),
        ("note", "agent.completed", "local-1", "u-9", "activity"),
        ("note", "agent.started", "local-1", "u-9", "activity"),
    ]


def test_activity_past_its_start_to_close_timeout_emits_agent_timeout(
    collector: Collector, temporal_server: str, tenant: str
) -> None:
    at = make_client(collector, agenttally.PriceBook.builtin())
    task_queue = f"tq-{uuid.uuid4().hex[:8]}"

    async def main() -> None:
        client = await TemporalClient.connect(
            temporal_server, interceptors=[AgentTallyInterceptor(at, tenant_id=tenant)]
        )
        with ThreadPoolExecutor(2) as pool:
            async with make_worker(client, task_queue, pool):
                handle = await client.start_workflow(
                    TimeoutWorkflow.run, id=f"slow-{uuid.uuid4().hex[:8]}", task_queue=task_queue
                )
                assert await handle.result() == "timed out"
                # The attempt's outcome leaves when the worker sees the cancellation.
                for _ in range(50):
                    at.flush(timeout=30)
                    if len([x for x in rows_of(collector, tenant) if x.agent_id == "slow"]) >= 2:
                        break
                    await asyncio.sleep(0.2)

    asyncio.run(main())
    at.shutdown(timeout=10)
    got = sorted(
        (x.event_type, x.error_code, x.success)
        for x in rows_of(collector, tenant)
        if x.agent_id == "slow"
    )
    assert got == [("agent.started", "", "t"), ("agent.timeout", "timeout", "f")]


def test_calls_in_result_shapes() -> None:
    assert calls_in_result(OPENAI_RESULT) == [
        ("openai", "gpt-4o", OPENAI_RESULT["usage"]),
    ]
    anthropic = {
        "type": "message",
        "model": "claude-sonnet-4-5",
        "usage": {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 0},
    }
    assert calls_in_result(anthropic)[0][:2] == ("anthropic", "claude-sonnet-4-5")
    plain = {"provider": "google", "model": "gemini-2.5-pro", "usage": {"input_tokens": 1}}
    assert calls_in_result([plain, "text", None]) == [
        ("google", "gemini-2.5-pro", {"input_tokens": 1})
    ]
    assert calls_in_result("text") == []
    assert calls_in_result({"usage": {"input_tokens": 1}}) == []  # no model: not a call


def test_bad_settings_and_headers_name_the_field() -> None:
    from temporalio.converter import PayloadConverter

    with pytest.raises(agenttally.ValidationError, match=r"AgentTallyInterceptor\.tenant_id"):
        AgentTallyInterceptor(agenttally.Client(disabled=True), tenant_id="")
    with pytest.raises(agenttally.ValidationError, match=r"AgentTallyInterceptor\.client"):
        AgentTallyInterceptor(object(), tenant_id="t")  # type: ignore[arg-type]
    payload = PayloadConverter.default.to_payloads([{"tenant_id": "t"}])[0]
    with pytest.raises(agenttally.ValidationError, match=r"header\.agenttally\.correlation_id"):
        TemporalContext.from_payload(payload)
    ctx = TemporalContext("acme-corp", "order-42", "u-7", "bug_fix")
    payload = ctx.to_payload()
    assert payload.metadata["encoding"] == b"json/plain"
    assert json.loads(payload.data) == {
        "tenant_id": "acme-corp",
        "correlation_id": "order-42",
        "user_id": "u-7",
        "task_type": "bug_fix",
    }


def test_example_worker(collector: Collector, temporal_server: str, tenant: str) -> None:
    """examples/temporal/python/worker.py: the collector has the cost of each workflow run."""
    example = Path(__file__).resolve().parents[2] / "examples" / "temporal" / "python" / "worker.py"
    p = subprocess.run(
        [sys.executable, str(example), tenant, "3"],
        env={
            **os.environ,
            "AGENTTALLY_ENDPOINT": collector.endpoint,
            "AGENTTALLY_API_KEY": collector.api_key,
            "TEMPORAL_ADDRESS": temporal_server,
        },
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    assert "3 workflow runs (3 approved)" in p.stdout
    per_run = collector.query(
        "SELECT workflow_id, count(*), sum(cost_usd), count(*) FILTER (WHERE cost_usd IS NULL) "
        f"FROM events WHERE tenant_id = '{tenant}' AND event_type = 'provider.api_call' "
        "GROUP BY workflow_id"
    )
    assert len(per_run) == 3
    for workflow_id, calls, cost, unpriced in per_run:
        assert workflow_id.startswith("ticket-")
        assert (int(calls), int(unpriced)) == (4, 0) and Decimal(cost) > 0
    rep = collector.report(tenant)
    assert rep.runs == rep.completed + rep.failed and rep.completed >= 12
