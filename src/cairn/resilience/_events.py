"""Events: what policies tell the world, without knowing who listens.

``cairn.resilience`` imports nothing else from cairn. It hands frozen, slotted
event records to subscribers; ``cairn.observability`` (or your code) subscribes
and turns them into log lines, metrics and span events.

Listeners run synchronously, in the caller's thread or task and context, right
where the event happens; so a listener can attach a span event to the current
span. They must be quick and must not raise: an exception from a listener is
logged on the ``cairn.resilience`` logger and never reaches the protected call.

The success path of every policy emits nothing, so subscribing costs nothing
while things go well.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "BreakerRejected",
    "BreakerState",
    "BreakerStateChanged",
    "BulkheadRejected",
    "Event",
    "FallbackUsed",
    "HedgeLaunched",
    "Listener",
    "RetryGaveUp",
    "RetryScheduled",
    "TimeoutElapsed",
    "emit",
    "subscribe",
]

_log = logging.getLogger("cairn.resilience")


class BreakerState(enum.Enum):
    """The states of a circuit breaker (resilience4j's names)."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    FORCED_OPEN = "forced_open"
    DISABLED = "disabled"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class Event:
    """Base of every event: which policy, and when (policy clock, seconds)."""

    policy: str
    at: float


@dataclass(frozen=True, slots=True)
class RetryScheduled(Event):
    """Attempt ``attempt`` failed; the next one starts after ``delay`` seconds."""

    attempt: int
    delay: float
    error: BaseException | None
    """The failure, or ``None`` when a result (not an exception) was retried."""


@dataclass(frozen=True, slots=True)
class RetryGaveUp(Event):
    """No more attempts. ``reason`` is ``"stop"``, ``"deadline"`` or ``"budget"``."""

    attempts: int
    reason: str
    error: BaseException | None


@dataclass(frozen=True, slots=True)
class BreakerStateChanged(Event):
    """A breaker moved from one state to another, and why."""

    from_state: BreakerState
    to_state: BreakerState
    reason: str


@dataclass(frozen=True, slots=True)
class BreakerRejected(Event):
    """A breaker refused a call; the next trial is possible in ``retry_after`` s."""

    state: BreakerState
    retry_after: float | None


@dataclass(frozen=True, slots=True)
class BulkheadRejected(Event):
    """A bulkhead had no free slot and no queue room."""

    max_concurrent: int
    max_queue: int


@dataclass(frozen=True, slots=True)
class TimeoutElapsed(Event):
    """A call overran its timeout of ``timeout`` seconds."""

    timeout: float


@dataclass(frozen=True, slots=True)
class HedgeLaunched(Event):
    """A hedged call started attempt number ``attempt`` (2 is the first hedge)."""

    attempt: int


@dataclass(frozen=True, slots=True)
class FallbackUsed(Event):
    """A fallback replaced a failure (``error``) or an unwanted result."""

    error: BaseException | None


Listener = Callable[[Event], object]

# Copy-on-write: emit() iterates a tuple without taking a lock.
_listeners: tuple[Listener, ...] = ()
_lock = threading.Lock()


def subscribe(listener: Listener) -> Callable[[], None]:
    """Call ``listener(event)`` for every event of every policy.

    Returns a function that unsubscribes it again.
    """
    global _listeners
    with _lock:
        _listeners = (*_listeners, listener)

    def unsubscribe() -> None:
        global _listeners
        with _lock:
            remaining = list(_listeners)
            if listener in remaining:
                remaining.remove(listener)
            _listeners = tuple(remaining)

    return unsubscribe


def emit(event: Event, local: tuple[Listener, ...] = ()) -> None:
    """Hand ``event`` to the policy's own listeners, then to the global ones."""
    for listener in (*local, *_listeners) if local else _listeners:
        try:
            listener(event)
        except Exception:
            _log.exception("cairn: event listener %r failed on %r", listener, event)
