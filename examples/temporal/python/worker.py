"""An agent that runs as a Temporal workflow, instrumented by registering one interceptor.

The workflow researches, drafts and reviews an answer; each step is an activity that calls a
model (simulated here: the responses have the shape the OpenAI and Anthropic SDKs return). No
activity mentions AgentTally except `draft`, which records its two calls itself; the others'
calls are found in their results. Every event carries the ticket's correlation id, and the
collector has the cost of each workflow run.

    temporal server start-dev &    # or any Temporal server
    AGENTTALLY_ENDPOINT=http://127.0.0.1:8080 AGENTTALLY_API_KEY=... \\
        TEMPORAL_ADDRESS=127.0.0.1:7233 python worker.py [tenant] [runs]
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.worker import Worker

# The workflow sandbox re-imports this module for every run: the native extension and the
# client must come from outside it.
with workflow.unsafe.imports_passed_through():
    import agenttally
    from agenttally.temporal import AgentTallyInterceptor, context, record_call


@dataclass
class Usage:
    """Like ``openai.types.CompletionUsage``: it has ``model_dump()``."""

    prompt_tokens: int
    completion_tokens: int

    def model_dump(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens}


@activity.defn
async def research(question: str) -> dict[str, Any]:
    # What `openai_client.chat.completions.create(...).model_dump()` returns, in short.
    return {
        "object": "chat.completion",
        "model": "gpt-4o-mini",
        "choices": [{"message": {"role": "assistant", "content": f"notes on {question}"}}],
        "usage": {"prompt_tokens": 3000 + 10 * len(question), "completion_tokens": 400},
    }


@activity.defn
async def draft(notes: str) -> str:
    # Two calls in one activity, recorded explicitly (e.g. `usage=message.usage`).
    for words in (300, 120):
        usage = {"input_tokens": 2500, "output_tokens": words * 2}
        record_call(provider="anthropic", model="claude-sonnet-4-5", usage=usage)
    return f"draft from {notes}"


@activity.defn
async def review(text: str) -> dict[str, Any]:
    if activity.info().attempt == 1 and len(text) % 2 == 0:
        raise RuntimeError("the reviewer timed out upstream")  # retried by Temporal
    return {"model": "gpt-4o", "usage": Usage(1500, 80), "approved": True}


@workflow.defn
class SupportAgent:
    @workflow.run
    async def run(self, question: str) -> str:
        retry = RetryPolicy(initial_interval=timedelta(milliseconds=200))
        opts: dict[str, Any] = {
            "start_to_close_timeout": timedelta(minutes=2),
            "retry_policy": retry,
        }
        notes = await workflow.execute_activity(research, question, **opts)
        text = await workflow.execute_activity(
            draft, notes["choices"][0]["message"]["content"], **opts
        )
        verdict = await workflow.execute_activity(review, text, **opts)
        return "approved" if verdict["approved"] else "rejected"


async def main(tenant: str, runs: int) -> None:
    events = agenttally.Client(
        endpoint=os.environ.get("AGENTTALLY_ENDPOINT", "http://127.0.0.1:8080"),
        api_key=os.environ.get("AGENTTALLY_API_KEY"),
        price_book=agenttally.PriceBook.builtin(),
    )
    # Registered on the client only: the worker built from it uses it too.
    client = await Client.connect(
        os.environ.get("TEMPORAL_ADDRESS", "127.0.0.1:7233"),
        interceptors=[AgentTallyInterceptor(events, tenant_id=tenant)],
    )
    queue = f"support-{uuid.uuid4().hex[:8]}"
    with ThreadPoolExecutor(4) as pool:
        async with Worker(
            client,
            task_queue=queue,
            workflows=[SupportAgent],
            activities=[research, draft, review],
            activity_executor=pool,
        ):
            handles = []
            for i in range(runs):
                ticket = f"ticket-{uuid.uuid4().hex[:6]}-{i}"
                with context(tenant_id=tenant, correlation_id=ticket, task_type="support"):
                    handles.append(
                        await client.start_workflow(
                            SupportAgent.run, f"question {i}", id=ticket, task_queue=queue
                        )
                    )
            results = [await h.result() for h in handles]
    await events.ashutdown(timeout=10)
    print(f"{len(results)} workflow runs ({results.count('approved')} approved)")
    print(f"sent {events.stats().sent} events")


if __name__ == "__main__":
    tenant = sys.argv[1] if len(sys.argv) > 1 else "acme-corp"
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    asyncio.run(main(tenant, runs))
