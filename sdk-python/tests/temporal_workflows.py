"""Workflows and activities of the Temporal tests (imported by the worker and, per run, by the
workflow sandbox: `agenttally` and the shared flags are passed through)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    import temporal_flags

    from agenttally.temporal import record_call

FAST_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=100), backoff_coefficient=1.0)

# An OpenAI chat completion as `resp.model_dump()` gives it.
OPENAI_RESULT: dict[str, Any] = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "model": "gpt-4o",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "plan"}}],
    "usage": {"prompt_tokens": 1000, "completion_tokens": 200, "total_tokens": 1200},
}


class FlakyError(Exception):
    pass


@activity.defn
async def plan(task: str) -> dict[str, Any]:
    """Returns an OpenAI-style response: the interceptor finds its usage and prices it."""
    return OPENAI_RESULT


@activity.defn
def write_patch(task: str) -> str:
    """A sync activity (thread pool): fails its first attempt, then records a call itself."""
    if activity.info().attempt == 1:
        raise FlakyError("first attempt fails")
    usage = {"input_tokens": 2000, "output_tokens": 500}
    assert record_call(provider="anthropic", model="claude-sonnet-4-5", usage=usage)
    return "patch"


@activity.defn
async def run_tests(task: str) -> str:
    raise ApplicationError("tests fail", type="TestsFailed", non_retryable=True)


@workflow.defn
class BugFixWorkflow:
    @workflow.run
    async def run(self, task: str) -> str:
        opts: dict[str, Any] = {
            "start_to_close_timeout": timedelta(seconds=30),
            "retry_policy": FAST_RETRY,
        }
        await workflow.execute_activity(plan, task, **opts)
        patch = await workflow.execute_activity(write_patch, task, **opts)
        try:
            await workflow.execute_activity(run_tests, task, **opts)
        except ActivityError as e:
            raise ApplicationError("the fix did not pass", type="FixRejected") from e
        return patch


@workflow.defn
class FlakyTaskWorkflow:
    """Its first workflow task raises a plain exception (a workflow task failure, retried by the
    server), so the workflow code runs from the start twice without replaying."""

    @workflow.run
    async def run(self, task: str) -> str:
        wid = workflow.info().workflow_id
        if wid not in temporal_flags.failed_first_task:
            temporal_flags.failed_first_task.add(wid)
            raise RuntimeError("first workflow task fails")
        await workflow.execute_activity(plan, task, start_to_close_timeout=timedelta(seconds=30))
        return "done"


@activity.defn
async def note(text: str) -> str:
    return text


@activity.defn
async def slow() -> str:
    """Heartbeats past its start-to-close timeout: the worker cancels it as timed out."""
    for i in range(40):
        activity.heartbeat(i)
        await asyncio.sleep(0.1)
    return "late"


@workflow.defn
class ChildWorkflow:
    """Continues as new once, then runs an activity: every run carries the parent's header."""

    @workflow.run
    async def run(self, n: int) -> str:
        if n == 0:
            workflow.continue_as_new(1)
        return await workflow.execute_activity(
            note, "child", start_to_close_timeout=timedelta(seconds=30)
        )


@workflow.defn
class ParentWorkflow:
    @workflow.run
    async def run(self) -> str:
        return await workflow.execute_child_workflow(
            ChildWorkflow.run, 0, id=f"{workflow.info().workflow_id}-child"
        )


@workflow.defn
class TimeoutWorkflow:
    """One activity that outlives its start-to-close timeout."""

    @workflow.run
    async def run(self) -> str:
        try:
            await workflow.execute_activity(
                slow,
                start_to_close_timeout=timedelta(seconds=1),
                heartbeat_timeout=timedelta(milliseconds=400),
                retry_policy=RetryPolicy(maximum_attempts=1),
            )
        except ActivityError:
            return "timed out"
        return "finished"


@workflow.defn
class LocalWorkflow:
    """One local activity: it carries the header and is instrumented like any activity."""

    @workflow.run
    async def run(self) -> str:
        return await workflow.execute_local_activity(
            note, "local", start_to_close_timeout=timedelta(seconds=30)
        )
