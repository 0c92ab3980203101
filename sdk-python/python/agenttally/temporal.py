"""Temporal instrumentation: one interceptor that turns workflows and activities into events.

Register :class:`AgentTallyInterceptor` on the Temporal client only (``Client.connect(...,
interceptors=[...])``); workers built from that client pick it up. Registering it on the worker as
well doubles every event.

- Client side: starting a workflow (also signal-with-start and update-with-start) puts the
  ``agenttally`` header on it: ``{"tenant_id", "correlation_id", "user_id"?, "task_type"?}`` as
  a ``json/plain`` payload. The values come from the innermost :func:`context` block, else from
  the activity being run (a workflow started from an activity joins its tree), else the
  interceptor's default tenant and the workflow id as correlation id.
- Workflow side: the header is copied onto every activity, local activity, child workflow,
  continue-as-new and signal to another workflow. The run's ``agent.started`` and its
  ``agent.completed`` / ``agent.failed`` leave the sandbox through an extern function (never
  through the native module), only when the workflow is not replaying and not answering a
  query, with ids derived from the run id and the event's place in the run, so a workflow task
  that is run again stores each event once.
- Activity side: each attempt emits ``agent.started`` and ``agent.completed`` /
  ``agent.failed`` / ``agent.timeout`` (monotonic duration, queue time, attempt), plus a
  ``provider.api_call`` for each model call found in the result (OpenAI-style, Anthropic-style,
  a ``usage`` dict) or recorded with :func:`record_call`, priced by the client's price book.

``temporalio`` is an optional dependency: ``pip install 'agenttally[temporal]'``.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import contextvars
import logging
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, NoReturn, Optional

import temporalio.activity
import temporalio.api.common.v1
import temporalio.client
import temporalio.converter
import temporalio.exceptions
import temporalio.worker
import temporalio.workflow

from . import Client
from ._errors import AgentTallyError, ValidationError

HEADER_KEY = "agenttally"
"""The Temporal header that carries the context (shared with the TypeScript interceptor)."""

WORKFLOW_EVENT_NAMESPACE = uuid.UUID("5b0c7a8e-2f0d-5c1e-9a57-6e1f3a0c4d21")
"""UUIDv5 namespace of workflow event ids: ``uuid5(namespace, f"{run_id}:{n}")``, ``n`` = 0 for
``agent.started``, 1 for the run's outcome."""

_EXTERN_EMIT = "__agenttally_workflow_event"
_EXTERN_DEFAULTS = "__agenttally_defaults"

_log = logging.getLogger("agenttally.temporal")
_converter = temporalio.converter.PayloadConverter.default


@dataclass(frozen=True)
class TemporalContext:
    """What the ``agenttally`` header carries."""

    tenant_id: str
    correlation_id: str
    user_id: Optional[str] = None
    task_type: Optional[str] = None

    def to_json(self) -> dict[str, str]:
        out = {"tenant_id": self.tenant_id, "correlation_id": self.correlation_id}
        if self.user_id is not None:
            out["user_id"] = self.user_id
        if self.task_type is not None:
            out["task_type"] = self.task_type
        return out

    def to_payload(self) -> temporalio.api.common.v1.Payload:
        return _converter.to_payloads([self.to_json()])[0]

    @staticmethod
    def from_payload(payload: temporalio.api.common.v1.Payload) -> TemporalContext:
        """Decode a header; raises ``ValidationError`` naming the field that is wrong."""
        try:
            value = _converter.from_payloads([payload])[0]
        except Exception as e:
            raise ValidationError(f"header.{HEADER_KEY}: must be a JSON payload ({e})") from e
        if not isinstance(value, dict):
            raise ValidationError(
                f"header.{HEADER_KEY}: must be a JSON object, got {type(value).__name__}"
            )
        for key in ("tenant_id", "correlation_id"):
            if not isinstance(value.get(key), str) or not value[key]:
                raise ValidationError(f"header.{HEADER_KEY}.{key}: must be a non-empty string")
        for key in ("user_id", "task_type"):
            if value.get(key) is not None and not isinstance(value[key], str):
                raise ValidationError(f"header.{HEADER_KEY}.{key}: must be a string when present")
        return TemporalContext(
            value["tenant_id"],
            value["correlation_id"],
            value.get("user_id"),
            value.get("task_type"),
        )


@dataclass(frozen=True)
class _Given:
    tenant_id: Optional[str]
    correlation_id: Optional[str]
    user_id: Optional[str]
    task_type: Optional[str]


_given: contextvars.ContextVar[Optional[_Given]] = contextvars.ContextVar(
    "agenttally_temporal_context", default=None
)
_activity_ctx: contextvars.ContextVar[Optional[TemporalContext]] = contextvars.ContextVar(
    "agenttally_temporal_activity_context", default=None
)


@contextlib.contextmanager
def context(
    *,
    tenant_id: Optional[str] = None,
    correlation_id: Optional[str] = None,
    user_id: Optional[str] = None,
    task_type: Optional[str] = None,
) -> Iterator[None]:
    """Workflows started by the Temporal client inside this block carry this context (fields
    left out: the interceptor's default tenant, the workflow id as correlation id)."""
    token = _given.set(_Given(tenant_id, correlation_id, user_id, task_type))
    try:
        yield
    finally:
        _given.reset(token)


def _with_header(
    headers: Mapping[str, temporalio.api.common.v1.Payload], ctx: TemporalContext
) -> Mapping[str, temporalio.api.common.v1.Payload]:
    return {**headers, HEADER_KEY: ctx.to_payload()}


class AgentTallyInterceptor(temporalio.client.Interceptor, temporalio.worker.Interceptor):
    """One interceptor for the Temporal client and its workers (register it on the client only).

    ``client`` delivers the events and prices model calls with its price book; ``tenant_id`` is
    the tenant of workflows started without a context (no :func:`context` block, no header).
    """

    def __init__(self, client: Client, *, tenant_id: str, task_type: Optional[str] = None) -> None:
        if not isinstance(client, Client):
            raise ValidationError(
                f"AgentTallyInterceptor.client: must be an agenttally.Client, "
                f"got {type(client).__name__}"
            )
        if not isinstance(tenant_id, str) or not tenant_id:
            raise ValidationError("AgentTallyInterceptor.tenant_id: must be a non-empty string")
        self.client = client
        self.tenant_id = tenant_id
        self.task_type = task_type

    # client ----------------------------------------------------------------------------------

    def intercept_client(
        self, next: temporalio.client.OutboundInterceptor
    ) -> temporalio.client.OutboundInterceptor:
        return _ClientOutbound(next, self)

    def _context_for_start(self, workflow_id: str) -> TemporalContext:
        given = _given.get()
        inherited = _activity_ctx.get()
        if given is None and inherited is not None:
            return inherited
        given = given or _Given(None, None, None, None)
        base = inherited
        return TemporalContext(
            tenant_id=given.tenant_id or (base.tenant_id if base else self.tenant_id),
            correlation_id=given.correlation_id or (base.correlation_id if base else workflow_id),
            user_id=given.user_id
            if given.user_id is not None
            else (base.user_id if base else None),
            task_type=given.task_type
            if given.task_type is not None
            else (base.task_type if base else self.task_type),
        )

    # worker ----------------------------------------------------------------------------------

    def intercept_activity(
        self, next: temporalio.worker.ActivityInboundInterceptor
    ) -> temporalio.worker.ActivityInboundInterceptor:
        return _ActivityInbound(next, self)

    def workflow_interceptor_class(
        self, input: temporalio.worker.WorkflowInterceptorClassInput
    ) -> type[temporalio.worker.WorkflowInboundInterceptor]:
        input.unsafe_extern_functions.update(
            {_EXTERN_EMIT: self._workflow_event, _EXTERN_DEFAULTS: self._defaults}
        )
        return _WorkflowInbound

    def _defaults(self) -> dict[str, Optional[str]]:
        return {"tenant_id": self.tenant_id, "task_type": self.task_type}

    def _workflow_event(self, ev: dict[str, Any]) -> None:
        # Runs on the workflow thread, outside the sandbox's module copies: track() only
        # validates and queues, so it never blocks the workflow.
        event_id = uuid.uuid5(WORKFLOW_EVENT_NAMESPACE, f"{ev.pop('run_id')}:{ev.pop('seq')}")
        self._track(ev.pop("event_type"), event_id=str(event_id), **ev)

    def _track(self, event_type: str, **fields: Any) -> Optional[str]:
        try:
            return self.client.track(event_type, **fields)
        except AgentTallyError as e:
            # Instrumentation must never fail the workflow or the activity.
            _log.warning("agenttally: %s was not tracked: %s", event_type, e)
            return None


def _error_code(exc: BaseException) -> str:
    if isinstance(exc, temporalio.exceptions.ApplicationError) and exc.type:
        return exc.type
    if isinstance(exc, temporalio.exceptions.ActivityError) and exc.cause is not None:
        return _error_code(exc.cause)
    if isinstance(exc, temporalio.exceptions.ChildWorkflowError) and exc.cause is not None:
        return _error_code(exc.cause)
    return type(exc).__name__


# client ----------------------------------------------------------------------------------------


class _ClientOutbound(temporalio.client.OutboundInterceptor):
    def __init__(self, next: temporalio.client.OutboundInterceptor, root: AgentTallyInterceptor):
        super().__init__(next)
        self.root = root

    async def start_workflow(
        self, input: temporalio.client.StartWorkflowInput
    ) -> temporalio.client.WorkflowHandle[Any, Any]:
        if HEADER_KEY not in input.headers:
            input.headers = _with_header(input.headers, self.root._context_for_start(input.id))
        return await super().start_workflow(input)

    async def start_update_with_start_workflow(
        self, input: temporalio.client.StartWorkflowUpdateWithStartInput
    ) -> temporalio.client.WorkflowUpdateHandle[Any]:
        start = input.start_workflow_input
        if HEADER_KEY not in start.headers:
            start.headers = _with_header(start.headers, self.root._context_for_start(start.id))
        return await super().start_update_with_start_workflow(input)


# activities ------------------------------------------------------------------------------------


@dataclass
class _Call:
    provider: str
    model: str
    usage: Any


class _ActivityAttempt:
    """The events of one activity attempt."""

    def __init__(self, root: AgentTallyInterceptor, ctx: TemporalContext) -> None:
        info = temporalio.activity.info()
        self.root = root
        self.ctx = ctx
        self.started = time.monotonic()
        self.agent_id = info.activity_type
        self.workflow_id = info.workflow_id
        self.metadata = {
            "temporal": {
                "scope": "activity",
                "workflow_type": info.workflow_type,
                "workflow_run_id": info.workflow_run_id,
                "activity_type": info.activity_type,
                "activity_id": info.activity_id,
                "attempt": info.attempt,
                "task_queue": info.task_queue,
            }
        }
        queue = info.started_time - info.current_attempt_scheduled_time
        self.queue_ms = max(0, int(queue.total_seconds() * 1000))
        self.cost: Optional[Decimal] = None
        self.calls = 0
        self.lock = threading.Lock()

    def tags(self) -> dict[str, Any]:
        return {
            "tenant_id": self.ctx.tenant_id,
            "correlation_id": self.ctx.correlation_id,
            "user_id": self.ctx.user_id,
            "task_type": self.ctx.task_type,
            "agent_id": self.agent_id,
            "workflow_id": self.workflow_id,
        }

    def start(self) -> None:
        self.root._track(
            "agent.started", queue_ms=self.queue_ms, metadata=self.metadata, **self.tags()
        )

    def record(self, call: _Call) -> None:
        tags = self.tags()
        cost: Optional[Decimal] = None
        try:
            cost = self.root.client.price_call(
                tenant_id=tags["tenant_id"],
                provider=call.provider,
                model=call.model,
                usage=call.usage,
            )
        except AgentTallyError as e:
            _log.warning("agenttally: call usage not understood: %s", e)
            return
        self.root._track(
            "provider.api_call",
            provider=call.provider,
            model=call.model,
            usage=call.usage,
            metadata=self.metadata,
            **tags,
        )
        with self.lock:
            self.calls += 1
            if cost is not None:
                self.cost = cost if self.cost is None else self.cost + cost

    def finish(self, exc: Optional[BaseException]) -> None:
        duration_ms = int((time.monotonic() - self.started) * 1000)
        with self.lock:
            metadata = {**self.metadata, "calls": self.calls}
            cost = self.cost
        fields: dict[str, Any] = {
            "duration_ms": duration_ms,
            "queue_ms": self.queue_ms,
            "metadata": metadata,
            "cost_usd": cost,
            **self.tags(),
        }
        if exc is None:
            self.root._track("agent.completed", **fields)
        elif _timed_out(exc):
            self.root._track("agent.timeout", success=False, error_code="timeout", **fields)
        else:
            self.root._track("agent.failed", success=False, error_code=_error_code(exc), **fields)


def _timed_out(exc: BaseException) -> bool:
    """Whether the attempt ended by a timeout: a timeout error, or a cancellation that says so.
    The server does not tell a worker that an attempt timed out: the worker learns it from a
    heartbeat, which finds the attempt gone (``not_found``); that counts as a timeout once the
    attempt's start-to-close or schedule-to-close deadline has passed."""
    if isinstance(exc, (builtins.TimeoutError, asyncio.TimeoutError)):
        return True
    if isinstance(exc, temporalio.exceptions.TimeoutError):
        return True
    if not isinstance(exc, (asyncio.CancelledError, temporalio.exceptions.CancelledError)):
        return False
    details = temporalio.activity.cancellation_details()
    if details is None:
        return False
    if details.timed_out:
        return True
    if not details.not_found:
        return False
    info = temporalio.activity.info()
    now = datetime.now(timezone.utc)
    deadlines = [
        (info.current_attempt_scheduled_time, info.start_to_close_timeout),
        (info.scheduled_time, info.schedule_to_close_timeout),
    ]
    return any(t and now >= since + t for since, t in deadlines)


# Attempts by task token: sync activities run in an executor thread that does not inherit
# context variables, but `activity.info()` works there.
_attempts: dict[bytes, _ActivityAttempt] = {}
_attempts_lock = threading.Lock()


def _current_attempt() -> Optional[_ActivityAttempt]:
    if not temporalio.activity.in_activity():
        return None
    token = temporalio.activity.info().task_token
    with _attempts_lock:
        return _attempts.get(token)


def record_call(*, provider: str, model: str, usage: Any = None) -> bool:
    """Record a model call made by the current activity: a ``provider.api_call`` priced by the
    client's price book, whose cost is added to the attempt's outcome event. ``usage`` is a dict
    of canonical buckets or a provider SDK's usage object (OpenAI, Anthropic, Gemini). Returns
    ``False`` (and records nothing) outside an activity run by an instrumented worker."""
    for name, value in (("provider", provider), ("model", model)):
        if not isinstance(value, str) or not value:
            raise ValidationError(f"record_call.{name}: must be a non-empty string")
    attempt = _current_attempt()
    if attempt is None:
        return False
    attempt.record(_Call(provider, model, usage))
    return True


def _as_mapping(obj: Any) -> Optional[Mapping[str, Any]]:
    if isinstance(obj, Mapping):
        return obj
    dump = getattr(obj, "model_dump", None) or getattr(obj, "to_dict", None)
    if callable(dump):
        try:
            out = dump()
        except Exception:
            return None
        return out if isinstance(out, Mapping) else None
    return None


def _guess_provider(result: Mapping[str, Any], usage: Mapping[str, Any], model: str) -> str:
    given = result.get("provider")
    if isinstance(given, str) and given:
        return given
    if "prompt_tokens" in usage or "completion_tokens" in usage:
        return "openai"
    if "promptTokenCount" in usage or "prompt_token_count" in usage:
        return "google"
    if result.get("type") == "message" or any(
        k in usage for k in ("cache_creation_input_tokens", "cache_read_input_tokens")
    ):
        return "anthropic"
    if "input_tokens_details" in usage or result.get("object") == "response":
        return "openai"
    name = model.lower()
    if name.startswith("claude"):
        return "anthropic"
    if name.startswith("gemini"):
        return "google"
    return "openai"


def calls_in_result(result: Any) -> list[tuple[str, str, Mapping[str, Any]]]:
    """The model calls an activity result reports, as ``(provider, model, usage)``: an
    OpenAI-style or Anthropic-style response (object or dict), a dict with ``usage`` and
    ``model`` (and optionally ``provider``), or a list or tuple of those."""
    if isinstance(result, (list, tuple)):
        return [c for item in result for c in calls_in_result(item)]
    mapping = _as_mapping(result)
    if mapping is None:
        usage_attr, model_attr = getattr(result, "usage", None), getattr(result, "model", None)
        if usage_attr is None or not isinstance(model_attr, str):
            return []
        mapping = {"usage": usage_attr, "model": model_attr}
    usage = _as_mapping(mapping.get("usage"))
    model = mapping.get("model")
    if usage is None or not isinstance(model, str) or not model:
        return []
    return [(_guess_provider(mapping, usage, model), model, dict(usage))]


class _ActivityInbound(temporalio.worker.ActivityInboundInterceptor):
    def __init__(
        self, next: temporalio.worker.ActivityInboundInterceptor, root: AgentTallyInterceptor
    ) -> None:
        super().__init__(next)
        self.root = root

    def _context(self, headers: Mapping[str, temporalio.api.common.v1.Payload]) -> TemporalContext:
        payload = headers.get(HEADER_KEY)
        if payload is not None:
            try:
                return TemporalContext.from_payload(payload)
            except ValidationError as e:
                _log.warning("agenttally: %s; using the defaults", e)
        info = temporalio.activity.info()
        return TemporalContext(
            self.root.tenant_id, info.workflow_id or info.activity_id, None, self.root.task_type
        )

    async def execute_activity(self, input: temporalio.worker.ExecuteActivityInput) -> Any:
        ctx = self._context(input.headers)
        attempt = _ActivityAttempt(self.root, ctx)
        token = temporalio.activity.info().task_token
        with _attempts_lock:
            _attempts[token] = attempt
        ctx_token = _activity_ctx.set(ctx)
        attempt.start()
        try:
            result = await super().execute_activity(input)
        except BaseException as e:
            attempt.finish(e)
            raise
        else:
            for provider, model, usage in calls_in_result(result):
                attempt.record(_Call(provider, model, usage))
            attempt.finish(None)
            return result
        finally:
            _activity_ctx.reset(ctx_token)
            with _attempts_lock:
                _attempts.pop(token, None)


# workflows -------------------------------------------------------------------------------------


class _WorkflowInbound(temporalio.worker.WorkflowInboundInterceptor):
    """Runs inside the workflow sandbox: no native code, no I/O; events leave through the
    extern function, only when the workflow is not replaying (and never from a query)."""

    def __init__(self, next: temporalio.worker.WorkflowInboundInterceptor) -> None:
        super().__init__(next)
        self.externs = temporalio.workflow.extern_functions()
        self.header: Optional[temporalio.api.common.v1.Payload] = None
        self.ctx: Optional[TemporalContext] = None

    def init(self, outbound: temporalio.worker.WorkflowOutboundInterceptor) -> None:
        super().init(_WorkflowOutbound(outbound, self))

    def _load(self, headers: Mapping[str, temporalio.api.common.v1.Payload]) -> TemporalContext:
        info = temporalio.workflow.info()
        payload = headers.get(HEADER_KEY)
        if payload is not None:
            try:
                self.ctx = TemporalContext.from_payload(payload)
                self.header = payload
                return self.ctx
            except ValidationError:
                pass
        defaults = self.externs[_EXTERN_DEFAULTS]()
        self.ctx = TemporalContext(
            defaults["tenant_id"], info.workflow_id, None, defaults.get("task_type")
        )
        self.header = self.ctx.to_payload()
        return self.ctx

    def _emit(self, event_type: str, seq: int, **fields: Any) -> None:
        if temporalio.workflow.unsafe.is_replaying() or temporalio.workflow.unsafe.is_read_only():
            return
        info = temporalio.workflow.info()
        ctx = self.ctx
        assert ctx is not None
        self.externs[_EXTERN_EMIT](
            {
                "event_type": event_type,
                "run_id": info.run_id,
                "seq": seq,
                "tenant_id": ctx.tenant_id,
                "correlation_id": ctx.correlation_id,
                "user_id": ctx.user_id,
                "task_type": ctx.task_type,
                "agent_id": info.workflow_type,
                "workflow_id": info.workflow_id,
                "timestamp": temporalio.workflow.now(),
                "metadata": {
                    "temporal": {
                        "scope": "workflow",
                        "workflow_type": info.workflow_type,
                        "workflow_run_id": info.run_id,
                        "task_queue": info.task_queue,
                    },
                    **fields.pop("metadata", {}),
                },
                **fields,
            }
        )

    async def execute_workflow(self, input: temporalio.worker.ExecuteWorkflowInput) -> Any:
        self._load(input.headers)
        self._emit("agent.started", 0)
        try:
            result = await super().execute_workflow(input)
        except temporalio.workflow.ContinueAsNewError:
            self._emit("agent.completed", 1, duration_ms=_run_ms(), metadata=_continued())
            raise
        except (temporalio.exceptions.FailureError, asyncio.CancelledError) as e:
            # Only these end the run; any other exception fails the workflow task, which is
            # retried (the run goes on and its outcome is emitted later).
            self._emit(
                "agent.failed", 1, duration_ms=_run_ms(), success=False, error_code=_error_code(e)
            )
            raise
        self._emit("agent.completed", 1, duration_ms=_run_ms())
        return result


def _run_ms() -> int:
    start = temporalio.workflow.info().start_time
    if start.tzinfo is None:
        start = start.replace(tzinfo=timezone.utc)
    elapsed = temporalio.workflow.now() - start
    return max(0, int(elapsed.total_seconds() * 1000))


def _continued() -> dict[str, Any]:
    return {"continued_as_new": True}


class _WorkflowOutbound(temporalio.worker.WorkflowOutboundInterceptor):
    def __init__(
        self, next: temporalio.worker.WorkflowOutboundInterceptor, root: _WorkflowInbound
    ) -> None:
        super().__init__(next)
        self.root = root

    def _headers(
        self, headers: Mapping[str, temporalio.api.common.v1.Payload]
    ) -> Mapping[str, temporalio.api.common.v1.Payload]:
        if self.root.header is None:
            self.root._load(temporalio.workflow.info().headers)
        assert self.root.header is not None
        return {**headers, HEADER_KEY: self.root.header}

    def start_activity(
        self, input: temporalio.worker.StartActivityInput
    ) -> temporalio.workflow.ActivityHandle[Any]:
        input.headers = self._headers(input.headers)
        return super().start_activity(input)

    def start_local_activity(
        self, input: temporalio.worker.StartLocalActivityInput
    ) -> temporalio.workflow.ActivityHandle[Any]:
        input.headers = self._headers(input.headers)
        return super().start_local_activity(input)

    async def start_child_workflow(
        self, input: temporalio.worker.StartChildWorkflowInput
    ) -> temporalio.workflow.ChildWorkflowHandle[Any, Any]:
        input.headers = self._headers(input.headers)
        return await super().start_child_workflow(input)

    def continue_as_new(self, input: temporalio.worker.ContinueAsNewInput) -> NoReturn:
        input.headers = self._headers(input.headers)
        super().continue_as_new(input)

    async def signal_child_workflow(
        self, input: temporalio.worker.SignalChildWorkflowInput
    ) -> None:
        input.headers = self._headers(input.headers)
        await super().signal_child_workflow(input)

    async def signal_external_workflow(
        self, input: temporalio.worker.SignalExternalWorkflowInput
    ) -> None:
        input.headers = self._headers(input.headers)
        await super().signal_external_workflow(input)


__all__ = [
    "HEADER_KEY",
    "WORKFLOW_EVENT_NAMESPACE",
    "AgentTallyInterceptor",
    "TemporalContext",
    "calls_in_result",
    "context",
    "record_call",
]
