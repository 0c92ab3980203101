"""Run context managers and the decorator emit the right events: success, exception, timeout."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import agenttally

from conftest import Collector


class FakeOpenAIUsage:
    """The shape of ``openai.types.CompletionUsage`` (a pydantic model): ``model_dump()``."""

    def model_dump(self) -> dict[str, Any]:
        return {"prompt_tokens": 900, "completion_tokens": 120, "total_tokens": 1_020}


def outcomes(collector: Collector, tenant: str) -> list[tuple[str, str]]:
    rows = collector.query(
        "SELECT event_type, coalesce(error_code, '') FROM events WHERE tenant_id = "
        f"'{tenant}' AND event_type LIKE 'agent.%' AND event_type <> 'agent.started' "
        "ORDER BY event_type, error_code"
    )
    return [(r[0], r[1]) for r in rows]


def test_sync_runs(collector: Collector, tenant: str) -> None:
    with agenttally.Client(
        endpoint=collector.endpoint,
        api_key=collector.api_key,
        price_book=agenttally.PriceBook.builtin(),
    ) as client:
        with client.run(tenant_id=tenant, agent_id="bugfix", task_type="bug_fix") as run:
            assert agenttally.current_run() is run
            run.record_call(provider="openai", model="gpt-4o", usage=FakeOpenAIUsage())
        assert agenttally.current_run() is None
        assert run.finished and run.cost is not None

        with pytest.raises(KeyError):
            with client.run(tenant_id=tenant, agent_id="bugfix", task_type="bug_fix") as run:
                raise KeyError("missing")
        with pytest.raises(TimeoutError):
            with client.run(tenant_id=tenant, agent_id="bugfix", task_type="bug_fix"):
                raise TimeoutError("too slow")

        @client.instrument(task_type="summarize", tenant_id=tenant)
        def summarize(text: str) -> int:
            run = agenttally.current_run()
            assert run is not None
            run.record_call(provider="openai", model="gpt-4o-mini", usage=FakeOpenAIUsage())
            if not text:
                raise ValueError("empty")
            return len(text)

        assert summarize("hello") == 5
        with pytest.raises(ValueError):
            summarize("")
        client.flush(timeout=30)

    rep = collector.report(tenant)
    assert (rep.runs, rep.completed, rep.failed, rep.timed_out) == (5, 2, 2, 1)
    assert rep.providers["openai"].calls == 3
    assert outcomes(collector, tenant) == [
        ("agent.completed", ""),
        ("agent.completed", ""),
        ("agent.failed", "KeyError"),
        ("agent.failed", "ValueError"),
        ("agent.timeout", "timeout"),
    ]


def test_async_runs(collector: Collector, tenant: str) -> None:
    async def main() -> None:
        async with agenttally.Client(
            endpoint=collector.endpoint, api_key=collector.api_key
        ) as client:
            async with client.run(tenant_id=tenant, agent_id="a", task_type="t") as run:
                await asyncio.sleep(0)
                run.record_call(provider="openai", model="gpt-4o", usage=FakeOpenAIUsage())
            with pytest.raises(RuntimeError):
                async with client.run(tenant_id=tenant, agent_id="a", task_type="t"):
                    raise RuntimeError("boom")
            with pytest.raises(asyncio.TimeoutError):
                async with client.run(tenant_id=tenant, agent_id="a", task_type="t"):
                    await asyncio.wait_for(asyncio.sleep(10), timeout=0.01)

            @client.instrument(task_type="t", agent_id="decorated")
            async def step(*, tenant_id: str) -> str:
                await asyncio.sleep(0)
                return tenant_id

            assert await step(tenant_id=tenant) == tenant
            await client.aflush(timeout=30)

    asyncio.run(main())
    rep = collector.report(tenant)
    assert (rep.runs, rep.completed, rep.failed, rep.timed_out) == (4, 2, 1, 1)
    assert outcomes(collector, tenant) == [
        ("agent.completed", ""),
        ("agent.completed", ""),
        ("agent.failed", "RuntimeError"),
        ("agent.timeout", "timeout"),
    ]


def test_instrument_needs_a_tenant() -> None:
    with agenttally.Client(disabled=True) as client:

        @client.instrument(task_type="t")
        def f() -> None:
            pass

        with pytest.raises(agenttally.ValidationError, match=r"^instrument\.tenant_id"):
            f()
