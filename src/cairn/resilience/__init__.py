"""Resilience policies: retry, circuit breaker, timeout, bulkhead, fallback,
hedging, and the pipeline that composes them.

Policy logic is written once, as state machines that never sleep or await and
read time from an injected :class:`Clock`; thin sync and async drivers run it.
"""

from __future__ import annotations

from cairn.resilience._clock import SYSTEM_CLOCK, Clock, SystemClock
from cairn.resilience._deadline import current_deadline, time_left
from cairn.resilience._errors import (
    BulkheadFullError,
    CircuitOpenError,
    ResilienceError,
    RetryError,
    TimeoutExceeded,
)
from cairn.resilience._events import (
    BreakerRejected,
    BreakerState,
    BreakerStateChanged,
    BulkheadRejected,
    Event,
    FallbackUsed,
    HedgeLaunched,
    RetryGaveUp,
    RetryScheduled,
    TimeoutElapsed,
    subscribe,
)
from cairn.resilience._policy import Policy

__all__ = [
    "SYSTEM_CLOCK",
    "BreakerRejected",
    "BreakerState",
    "BreakerStateChanged",
    "BulkheadFullError",
    "BulkheadRejected",
    "CircuitOpenError",
    "Clock",
    "Event",
    "FallbackUsed",
    "HedgeLaunched",
    "Policy",
    "ResilienceError",
    "RetryError",
    "RetryGaveUp",
    "RetryScheduled",
    "SystemClock",
    "TimeoutElapsed",
    "TimeoutExceeded",
    "current_deadline",
    "subscribe",
    "time_left",
]
