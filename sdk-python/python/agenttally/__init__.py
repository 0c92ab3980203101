"""AgentTally: cost and usage analytics for multi-agent AI platforms.

A thin layer over the Rust core (``agenttally._native``): ``Client.track`` validates, prices and
queues an event without blocking; a background worker delivers batches to the collector.
This module adds what is Python-specific: context managers, the ``instrument`` decorator,
``async`` wrappers, and the fork and interpreter-exit hooks.
"""

from __future__ import annotations

import asyncio
import atexit
import builtins
import contextvars
import functools
import inspect
import os
import threading
import weakref
from datetime import timedelta
from types import TracebackType
from typing import Any, Callable, Optional, TypeVar, Union, cast

from . import _native
from ._errors import (
    AgentTallyError,
    ClosedError,
    ConfigError,
    DeliveryError,
    PricingError,
    QueueFullError,
    TimeoutError,
    ValidationError,
)
from ._native import Cost, Dropped, PriceBook, SavingsReport, SavingsSummary, Stats

__version__: str = _native.VERSION

Seconds = Union[float, int, timedelta]
F = TypeVar("F", bound=Callable[..., Any])

_current_run: contextvars.ContextVar[Optional[Run]] = contextvars.ContextVar(
    "agenttally_current_run", default=None
)


def current_run() -> Optional[Run]:
    """The run of the innermost ``client.run(...)`` block (or instrumented function), if any."""
    return _current_run.get()


class Run:
    """One agent run: ``agent.started`` → provider calls → ``agent.completed`` / ``failed`` /
    ``timeout``. Use it as a context manager (``with`` or ``async with``): a clean exit completes
    the run; an exception fails it with the exception's type name as error code (a
    ``TimeoutError`` emits ``agent.timeout``) and is re-raised."""

    __slots__ = ("_client", "_kwargs", "_native", "_token")

    def __init__(self, client: Client, tenant_id: str, agent_id: str, task_type: str) -> None:
        self._client = client
        self._kwargs = {"tenant_id": tenant_id, "agent_id": agent_id, "task_type": task_type}
        self._native: Optional[_native.Run] = None
        self._token: Optional[contextvars.Token[Optional[Run]]] = None

    def start(self) -> Run:
        """Emit ``agent.started`` (entering the context manager does this)."""
        if self._native is None:
            self._native = self._client._start_run(**self._kwargs)
        return self

    def _run(self) -> _native.Run:
        return self.start()._native  # type: ignore[return-value]

    def record_call(self, *, provider: str, model: str, usage: Any = None) -> None:
        """Record a provider call. ``usage`` is a dict of canonical buckets or the usage object
        (or dict) of an OpenAI, Anthropic or Gemini response, e.g. ``usage=resp.usage``."""
        self._run().record_call(provider=provider, model=model, usage=usage)

    def complete(self) -> None:
        """Emit ``agent.completed``."""
        self._run().complete()

    def fail(self, error_code: str) -> None:
        """Emit ``agent.failed`` with ``error_code``."""
        self._run().fail(error_code)

    def timeout(self) -> None:
        """Emit ``agent.timeout``."""
        self._run().timeout()

    @property
    def correlation_id(self) -> str:
        return self._run().correlation_id

    @property
    def cost(self) -> Any:
        """Summed cost (``Decimal``) of the calls recorded so far, or ``None``."""
        return self._run().cost

    @property
    def finished(self) -> bool:
        return self._native is not None and self._native.finished

    def _finish(self, exc: Optional[BaseException]) -> None:
        run = self._run()
        if exc is None:
            run.complete()
        elif isinstance(exc, (builtins.TimeoutError, asyncio.TimeoutError)):
            run.timeout()
        else:
            run.fail(type(exc).__name__)

    def __enter__(self) -> Run:
        self.start()
        self._token = _current_run.set(self)
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        if self._token is not None:
            _current_run.reset(self._token)
            self._token = None
        self._finish(exc)

    async def __aenter__(self) -> Run:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.__exit__(exc_type, exc, tb)


class Client(_native.Client):
    """The delivery client. Keyword-only settings; those left out keep sdk-core's defaults.
    Durations are seconds (``float``) or ``timedelta``. ``with Client(...) as c:`` shuts down
    on exit; at interpreter exit every live client is shut down within ``exit_timeout``
    (default 2 s; 0 drops what is queued at once)."""

    def __init__(self, **settings: Any) -> None:
        # The settings were taken by the native __new__; here only the exit hook is registered.
        _live.add(self)

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.shutdown(timeout=self.exit_timeout)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        await self.ashutdown(timeout=self.exit_timeout)

    async def aflush(self, timeout: Optional[Seconds] = None) -> None:
        """``flush`` in a worker thread: the event loop keeps running while it waits."""
        await _in_thread(self.flush, timeout)

    async def ashutdown(self, timeout: Optional[Seconds] = None) -> None:
        """``shutdown`` in a worker thread: the event loop keeps running while it waits."""
        await _in_thread(self.shutdown, timeout)

    def run(self, *, tenant_id: str, agent_id: str, task_type: str) -> Run:
        """A run, to use as ``with client.run(...) as run:`` (or ``async with``)."""
        return Run(self, tenant_id, agent_id, task_type)

    def instrument(
        self,
        *,
        task_type: str,
        tenant_id: Optional[str] = None,
        agent_id: Optional[str] = None,
    ) -> Callable[[F], F]:
        """Decorate a function (plain or ``async``) so each call is a run. ``agent_id``
        defaults to the function's qualified name; without ``tenant_id`` the call's own
        ``tenant_id=`` keyword argument is used. Inside, ``agenttally.current_run()`` is the run."""

        def decorate(fn: F) -> F:
            agent = agent_id or fn.__qualname__

            def tenant_of(kwargs: dict[str, Any]) -> str:
                tenant = tenant_id if tenant_id is not None else kwargs.get("tenant_id")
                if not isinstance(tenant, str):
                    raise ValidationError(
                        "instrument.tenant_id: give tenant_id= to instrument() or call "
                        f"{fn.__qualname__} with a tenant_id= keyword argument"
                    )
                return tenant

            if inspect.iscoroutinefunction(fn):

                @functools.wraps(fn)
                async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                    async with self.run(
                        tenant_id=tenant_of(kwargs), agent_id=agent, task_type=task_type
                    ):
                        return await fn(*args, **kwargs)

                return cast(F, async_wrapper)

            @functools.wraps(fn)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                with self.run(tenant_id=tenant_of(kwargs), agent_id=agent, task_type=task_type):
                    return fn(*args, **kwargs)

            return cast(F, wrapper)

        return decorate


async def _in_thread(fn: Callable[..., None], *args: Any) -> None:
    # A dedicated daemon thread, not the loop's default executor: a long flush must not
    # occupy an executor slot other code is waiting for, nor keep the interpreter from exiting.
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def target() -> None:
        try:
            fn(*args)
        except BaseException as e:
            loop.call_soon_threadsafe(_settle, done, e)
        else:
            loop.call_soon_threadsafe(_settle, done, None)

    threading.Thread(target=target, name="agenttally-await", daemon=True).start()
    await done


def _settle(fut: asyncio.Future[None], err: Optional[BaseException]) -> None:
    if fut.cancelled():
        return
    if err is None:
        fut.set_result(None)
    else:
        fut.set_exception(err)


_live: weakref.WeakSet[Client] = weakref.WeakSet()


def _exit_all() -> None:
    for client in list(_live):
        try:
            client._exit_shutdown()
        except AgentTallyError:
            # A budget that ran out is reported in stats; exit must go on.
            pass


atexit.register(_exit_all)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_native.after_fork_in_child)


__all__ = [
    "AgentTallyError",
    "Client",
    "ClosedError",
    "ConfigError",
    "Cost",
    "DeliveryError",
    "Dropped",
    "PriceBook",
    "PricingError",
    "QueueFullError",
    "Run",
    "SavingsReport",
    "SavingsSummary",
    "Stats",
    "TimeoutError",
    "ValidationError",
    "current_run",
]
