"""The Python half of temporal.test.cjs's cross-language tests, run with the interpreter that has
`agenttally[temporal]` installed (AGENTTALLY_PYTHON).

    temporal_python.py start ADDRESS QUEUE WORKFLOW_ID TENANT CORRELATION USER TASK_TYPE
        A Python client with AgentTallyInterceptor starts `parentWorkflow` (a TypeScript
        worker's) inside `context(...)` and prints the workflow's result.
    temporal_python.py worker ADDRESS QUEUE TENANT
        A Python worker (the interceptor on its client) runs `PyAgent` until stdin closes,
        then flushes its events. Prints "ready" once it polls.

The collector: AGENTTALLY_ENDPOINT and AGENTTALLY_API_KEY.
"""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker

with workflow.unsafe.imports_passed_through():
    import agenttally
    from agenttally.temporal import AgentTallyInterceptor, context


@activity.defn
async def py_call(topic: str) -> dict[str, Any]:
    """An OpenAI-style result: priced by the worker's interceptor."""
    return {
        "object": "chat.completion",
        "model": "gpt-4o-mini",
        "choices": [{"message": {"role": "assistant", "content": f"notes on {topic}"}}],
        "usage": {"prompt_tokens": 1000, "completion_tokens": 100},
    }


@workflow.defn
class PyAgent:
    @workflow.run
    async def run(self, topic: str) -> str:
        result = await workflow.execute_activity(
            py_call, topic, start_to_close_timeout=timedelta(seconds=30)
        )
        return str(result["model"])


def events_client() -> agenttally.Client:
    return agenttally.Client(
        endpoint=os.environ["AGENTTALLY_ENDPOINT"],
        api_key=os.environ["AGENTTALLY_API_KEY"],
        price_book=agenttally.PriceBook.builtin(),
        flush_interval=0.1,
    )


async def start(args: list[str]) -> None:
    address, queue, workflow_id, tenant, correlation, user, task_type = args
    events = events_client()
    client = await Client.connect(
        address, interceptors=[AgentTallyInterceptor(events, tenant_id="python-default")]
    )
    with context(tenant_id=tenant, correlation_id=correlation, user_id=user, task_type=task_type):
        handle = await client.start_workflow("parentWorkflow", id=workflow_id, task_queue=queue)
    print(await handle.result(), flush=True)
    await events.ashutdown(timeout=10)


async def worker(args: list[str]) -> None:
    address, queue, tenant = args
    events = events_client()
    client = await Client.connect(
        address, interceptors=[AgentTallyInterceptor(events, tenant_id=tenant)]
    )
    async with Worker(
        client,
        task_queue=queue,
        workflows=[PyAgent],
        activities=[py_call],
        max_cached_workflows=0,
    ):
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await events.ashutdown(timeout=10)
    print(f"sent {events.stats().sent} events", flush=True)


if __name__ == "__main__":
    modes = {"start": start, "worker": worker}
    if len(sys.argv) < 2 or sys.argv[1] not in modes:
        sys.exit(f"usage: {sys.argv[0]} start|worker ...")
    asyncio.run(modes[sys.argv[1]](sys.argv[2:]))
