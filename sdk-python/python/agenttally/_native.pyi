# Stubs of the native module (checked against it by stubtest in ci.sh).
import os
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Final, Literal, Optional, Union, final

from typing_extensions import disjoint_base

__all__ = [
    "VERSION",
    "Client",
    "Cost",
    "Dropped",
    "PriceBook",
    "Run",
    "SavingsReport",
    "SavingsSummary",
    "Stats",
    "after_fork_in_child",
]

VERSION: Final[str]

_Seconds = Union[float, int, timedelta]
_Overflow = Literal["drop_newest", "drop_oldest", "spool"]
_Tier = Literal["standard", "batch", "priority", "flex"]

def after_fork_in_child() -> None: ...

@disjoint_base
class Client:
    def __new__(
        cls,
        *,
        endpoint: Optional[str] = None,
        api_key: Optional[str] = None,
        ca_file: Optional[Union[str, os.PathLike[str]]] = None,
        flush_at: Optional[int] = None,
        flush_interval: Optional[_Seconds] = None,
        max_queue_events: Optional[int] = None,
        max_queue_bytes: Optional[int] = None,
        overflow: Optional[_Overflow] = None,
        spool_dir: Optional[Union[str, os.PathLike[str]]] = None,
        gzip: Optional[bool] = None,
        disabled: Optional[bool] = None,
        price_book: Optional[PriceBook] = None,
        request_timeout: Optional[_Seconds] = None,
        max_retry_time: Optional[_Seconds] = None,
        max_in_flight: Optional[int] = None,
        exit_timeout: Optional[_Seconds] = None,
    ) -> Client: ...
    def track(
        self,
        event_type: str,
        *,
        tenant_id: str,
        correlation_id: Optional[str] = None,
        user_id: Optional[str] = None,
        agent_id: Optional[str] = None,
        workflow_id: Optional[str] = None,
        duration_ms: Optional[int] = None,
        queue_ms: Optional[int] = None,
        cost_usd: Optional[Union[Decimal, int, str]] = None,
        provider: Optional[str] = None,
        model: Optional[str] = None,
        task_type: Optional[str] = None,
        usage: Any = None,
        success: bool = True,
        error_code: Optional[str] = None,
        metadata: Optional[Mapping[str, Any]] = None,
        timestamp: Optional[datetime] = None,
        service_tier: Optional[_Tier] = None,
        event_id: Optional[Union[str, uuid.UUID]] = None,
    ) -> str: ...
    def flush(self, timeout: Optional[_Seconds] = None) -> None: ...
    def shutdown(self, timeout: Optional[_Seconds] = None) -> None: ...
    def stats(self) -> Stats: ...
    @property
    def exit_timeout(self) -> float: ...
    def _exit_shutdown(self) -> None: ...
    def price_call(
        self,
        *,
        tenant_id: str,
        provider: str,
        model: str,
        usage: Any = None,
        service_tier: Optional[_Tier] = None,
    ) -> Optional[Decimal]: ...
    def _start_run(self, *, tenant_id: str, agent_id: str, task_type: str) -> Run: ...

@final
class Run:
    def record_call(self, *, provider: str, model: str, usage: Any = None) -> None: ...
    def complete(self) -> None: ...
    def fail(self, error_code: str) -> None: ...
    def timeout(self) -> None: ...
    @property
    def correlation_id(self) -> str: ...
    @property
    def cost(self) -> Optional[Decimal]: ...
    @property
    def finished(self) -> bool: ...

@final
class Dropped:
    @property
    def queue_full(self) -> int: ...
    @property
    def evicted(self) -> int: ...
    @property
    def undeliverable(self) -> int: ...
    @property
    def shutdown(self) -> int: ...
    @property
    def spool_full(self) -> int: ...
    @property
    def spool_io(self) -> int: ...
    def total(self) -> int: ...

@final
class Stats:
    @property
    def accepted(self) -> int: ...
    @property
    def sent(self) -> int: ...
    @property
    def duplicates(self) -> int: ...
    @property
    def retried(self) -> int: ...
    @property
    def requests(self) -> int: ...
    @property
    def rejected(self) -> int: ...
    @property
    def dropped(self) -> Dropped: ...
    @property
    def queue_depth(self) -> int: ...
    @property
    def queue_bytes(self) -> int: ...
    @property
    def spooled(self) -> int: ...
    @property
    def replayed(self) -> int: ...
    @property
    def spool_pending(self) -> int: ...
    @property
    def spool_bytes(self) -> int: ...
    @property
    def spool_corrupt(self) -> int: ...
    @property
    def oldest_queued_age(self) -> timedelta: ...
    @property
    def requests_in_flight(self) -> int: ...
    @property
    def in_flight_limit(self) -> int: ...
    def delivered(self) -> int: ...

@final
class PriceBook:
    @staticmethod
    def builtin() -> PriceBook: ...
    @staticmethod
    def from_litellm_json(path_or_text: Union[str, os.PathLike[str]]) -> PriceBook: ...
    @property
    def version(self) -> str: ...
    def __len__(self) -> int: ...
    def cost(
        self,
        model: str,
        *,
        input_tokens: int = 0,
        cached_input_tokens: int = 0,
        cache_write_tokens: int = 0,
        cache_write_1h_tokens: int = 0,
        output_tokens: int = 0,
        reasoning_tokens: int = 0,
        requests: int = 0,
        service_tier: _Tier = "standard",
        at: Optional[datetime] = None,
    ) -> Cost: ...
    def savings(
        self, tasks: Iterable[Mapping[str, Any]], *, baseline: Optional[str] = None
    ) -> SavingsReport: ...

@final
class Cost:
    @property
    def usd(self) -> Optional[Decimal]: ...
    @property
    def status(self) -> Literal["priced", "estimated", "unpriced", "reported"]: ...
    @property
    def price_version(self) -> Optional[str]: ...
    def explain(self) -> str: ...

@final
class SavingsSummary:
    @property
    def tasks(self) -> int: ...
    @property
    def successful_tasks(self) -> int: ...
    @property
    def compared_tasks(self) -> int: ...
    @property
    def actual_unpriced(self) -> int: ...
    @property
    def baseline_unpriced(self) -> int: ...
    @property
    def estimated_tasks(self) -> int: ...
    @property
    def actual_usd(self) -> Decimal: ...
    @property
    def baseline_usd(self) -> Decimal: ...
    @property
    def savings_usd(self) -> Decimal: ...
    @property
    def savings_percent(self) -> Optional[Decimal]: ...
    @property
    def successful_savings_usd(self) -> Decimal: ...
    @property
    def successful_savings_percent(self) -> Optional[Decimal]: ...
    @property
    def cost_per_successful_task(self) -> Optional[Decimal]: ...

@final
class SavingsReport:
    @property
    def total(self) -> SavingsSummary: ...
    @property
    def by_provider(self) -> dict[str, SavingsSummary]: ...
    @property
    def by_task_type(self) -> dict[str, SavingsSummary]: ...
