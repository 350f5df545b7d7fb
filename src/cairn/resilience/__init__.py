"""Resilience policies: retry, circuit breaker, timeout, bulkhead, fallback,
hedging, and the pipeline that composes them.

Policy logic is written once, as state machines that never sleep or await and
read time from an injected :class:`Clock`; thin sync and async drivers run it.
"""

from __future__ import annotations

from cairn.resilience._breaker import BreakerStats, CircuitBreaker, CircuitProtected, circuit
from cairn.resilience._budget import RetryBudget, RetryBudgetStats
from cairn.resilience._bulkhead import Bulkhead, BulkheadStats
from cairn.resilience._clock import DEFAULT_CLOCK, SYSTEM_CLOCK, Clock, DefaultClock, SystemClock
from cairn.resilience._deadline import current_deadline, deadline_scope, time_left
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
from cairn.resilience._fallback import ExceptionFilter, Fallback
from cairn.resilience._hedge import Hedge
from cairn.resilience._pipeline import Pipeline
from cairn.resilience._policy import Policy
from cairn.resilience._retry import Attempt, Attempts, Retry, RetryDecorator, RetryOn, retry
from cairn.resilience._stop import (
    RetryState,
    StopFunc,
    StopStrategy,
    stop_after_attempt,
    stop_after_delay,
    stop_all,
    stop_any,
    stop_never,
)
from cairn.resilience._timeout import Timeout
from cairn.resilience._wait import (
    DEFAULT_MAX_WAIT,
    WaitFunc,
    WaitStrategy,
    parse_retry_after,
    wait_combine,
    wait_decorrelated_jitter,
    wait_equal_jitter,
    wait_exponential,
    wait_fixed,
    wait_full_jitter,
    wait_none,
    wait_random,
)

__all__ = [
    "DEFAULT_CLOCK",
    "DEFAULT_MAX_WAIT",
    "SYSTEM_CLOCK",
    "Attempt",
    "Attempts",
    "BreakerRejected",
    "BreakerState",
    "BreakerStateChanged",
    "BreakerStats",
    "Bulkhead",
    "BulkheadFullError",
    "BulkheadRejected",
    "BulkheadStats",
    "CircuitBreaker",
    "CircuitOpenError",
    "CircuitProtected",
    "Clock",
    "DefaultClock",
    "Event",
    "ExceptionFilter",
    "Fallback",
    "FallbackUsed",
    "Hedge",
    "HedgeLaunched",
    "Pipeline",
    "Policy",
    "ResilienceError",
    "Retry",
    "RetryBudget",
    "RetryBudgetStats",
    "RetryDecorator",
    "RetryError",
    "RetryGaveUp",
    "RetryOn",
    "RetryScheduled",
    "RetryState",
    "StopFunc",
    "StopStrategy",
    "SystemClock",
    "Timeout",
    "TimeoutElapsed",
    "TimeoutExceeded",
    "WaitFunc",
    "WaitStrategy",
    "circuit",
    "current_deadline",
    "deadline_scope",
    "parse_retry_after",
    "retry",
    "stop_after_attempt",
    "stop_after_delay",
    "stop_all",
    "stop_any",
    "stop_never",
    "subscribe",
    "time_left",
    "wait_combine",
    "wait_decorrelated_jitter",
    "wait_equal_jitter",
    "wait_exponential",
    "wait_fixed",
    "wait_full_jitter",
    "wait_none",
    "wait_random",
]
