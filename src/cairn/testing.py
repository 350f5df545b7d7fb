"""Helpers for testing code that uses cairn.

- :class:`VirtualClock`: a clock whose sleeps return at once and advance
  virtual time exactly, so a test of a 60-second breaker recovery takes
  microseconds and asserts exact times. Async sleeps wait in virtual time and
  the clock jumps to the next timer as soon as the event loop has nothing
  else to run (trio's ``MockClock(autojump_threshold=0)``, for asyncio).
- :func:`virtual_time`: run a block with a :class:`VirtualClock` as the
  default clock of every policy that was not given one, so production code
  (``@retry(...)``, ``@circuit(...)`` with no ``clock=``) is tested as written.
- :func:`capture_events`: collect the events every resilience policy emits.
- :func:`capture_logs`, :func:`capture_spans`, :func:`capture_metrics`: what
  ``cairn.observability`` produces (needs the ``cairn[observability]`` extra).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from cairn.resilience._clock import DEFAULT_CLOCK
from cairn.resilience._events import Event, subscribe

if TYPE_CHECKING:
    from cairn.observability._testing import (
        MetricsCapture,
        capture_logs,
        capture_metrics,
        capture_spans,
    )

__all__ = [
    "MetricsCapture",
    "VirtualClock",
    "capture_events",
    "capture_logs",
    "capture_metrics",
    "capture_spans",
    "virtual_time",
]

# Captures of logs, spans and metrics live with observability, whose extra may
# not be installed: they are imported on first use, not with this module.
_OBSERVABILITY_CAPTURES = frozenset(
    {"MetricsCapture", "capture_logs", "capture_metrics", "capture_spans"}
)


def __getattr__(name: str) -> Any:
    if name in _OBSERVABILITY_CAPTURES:
        from cairn.observability import _testing

        return getattr(_testing, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class VirtualClock:
    """A :class:`cairn.resilience.Clock` that only moves when told or slept on.

    ``sleeps`` records every sleep asked of it (sync and async), in order,
    so a test can assert the exact backoff schedule.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        self.sleeps: list[float] = []
        self._timers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._jump_scheduled = False
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"VirtualClock(now={self._now!r})"

    def monotonic(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, waking async sleepers that fall due."""
        if seconds < 0:
            raise ValueError(f"time cannot go backwards (advance({seconds!r}))")
        with self._lock:
            self._now += seconds
            now = self._now
        self._wake_due(now)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if seconds > 0:
            self.advance(seconds)

    async def asleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            heapq.heappush(self._timers, (self._now + seconds, next(self._seq), future))
        self._schedule_jump(loop)
        await future

    # -- autojump ---------------------------------------------------------

    def _schedule_jump(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._jump_scheduled:
            self._jump_scheduled = True
            loop.call_soon(self._maybe_jump, loop, 0)

    def _maybe_jump(self, loop: asyncio.AbstractEventLoop, idle_turns: int) -> None:
        # Jump only once the loop has nothing else ready: every task is blocked
        # on a virtual timer (or on something only a timer can unblock). The
        # ready queue is private to asyncio; without it, wait a few turns.
        ready: Any = getattr(loop, "_ready", None)
        busy = len(ready) > 0 if ready is not None else idle_turns < 8
        if busy:
            loop.call_soon(self._maybe_jump, loop, idle_turns + 1)
            return
        self._jump_scheduled = False
        with self._lock:
            self._discard_cancelled()
            if not self._timers:
                return
            when = self._timers[0][0]
            self._now = max(self._now, when)
            now = self._now
        self._wake_due(now)

    def _discard_cancelled(self) -> None:
        while self._timers and self._timers[0][2].done():
            heapq.heappop(self._timers)

    def _wake_due(self, now: float) -> None:
        woken: list[asyncio.Future[None]] = []
        with self._lock:
            while self._timers and self._timers[0][0] <= now:
                woken.append(heapq.heappop(self._timers)[2])
            more = bool(self._timers)
        for future in woken:
            if not future.done():
                future.get_loop().call_soon_threadsafe(_resolve, future)
        if more and woken:
            self._schedule_jump(woken[0].get_loop())


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


@contextmanager
def capture_events() -> Iterator[list[Event]]:
    """Collect every resilience event emitted inside the block, in order.

    >>> with capture_events() as events:
    ...     ...
    >>> [type(e).__name__ for e in events]
    []
    """
    events: list[Event] = []
    unsubscribe = subscribe(events.append)
    try:
        yield events
    finally:
        unsubscribe()


@contextmanager
def virtual_time(clock: VirtualClock | None = None) -> Iterator[VirtualClock]:
    """Make ``clock`` (a new :class:`VirtualClock` by default) every policy's default clock.

    Policies built with an explicit ``clock=`` keep theirs. The swap is
    process-wide (policies are shared across threads), so don't nest it in
    tests that run concurrently.
    """
    clock = VirtualClock() if clock is None else clock
    previous = DEFAULT_CLOCK.use(clock)
    try:
        yield clock
    finally:
        DEFAULT_CLOCK.use(previous)
