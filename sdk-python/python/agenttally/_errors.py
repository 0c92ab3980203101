"""Exception classes. The native module raises these, mapped from sdk-core's error kinds.

Every exception has ``kind`` (sdk-core's error kind: ``invalid``, ``config``, ``closed``, ...)
and ``field`` (the field or setting it is about, or ``None``).
"""

from __future__ import annotations

import builtins
from typing import Optional


class AgentTallyError(Exception):
    """Base class of every error the package raises."""

    kind: str = "other"
    field: Optional[str] = None


class ValidationError(AgentTallyError, ValueError):
    """An event, usage or price input broke a rule; the message names the field and the rule."""


class ConfigError(AgentTallyError, ValueError):
    """A client setting is out of range; the message names the setting (``config.flush_at``)."""


class PricingError(AgentTallyError):
    """A price book could not be read or imported."""


class QueueFullError(AgentTallyError):
    """The queue was full and the overflow policy (``drop_newest``) refused the event."""


class ClosedError(AgentTallyError):
    """The client (or the run) is shut down."""


class DeliveryError(AgentTallyError):
    """Events accepted before a flush were dropped on the way (see ``stats().dropped``)."""


class TimeoutError(AgentTallyError, builtins.TimeoutError):
    """A deadline passed before the work finished (delivery goes on in the background)."""


__all__ = [
    "AgentTallyError",
    "ClosedError",
    "ConfigError",
    "DeliveryError",
    "PricingError",
    "QueueFullError",
    "TimeoutError",
    "ValidationError",
]
