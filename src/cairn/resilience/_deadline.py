"""The deadline of the current call, shared down the policy stack.

An outer timeout (the pipeline's total timeout) sets an absolute deadline in a
context variable; inner policies read it, so a retry never sleeps past it and
an attempt timeout never outlives it. Code you protect can read it too (for
example to pass the time left to an HTTP client) with :func:`time_left`.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager

from cairn.resilience._clock import DEFAULT_CLOCK, Clock

__all__ = ["current_deadline", "deadline_scope", "time_left"]

_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "cairn_deadline", default=None
)


def current_deadline() -> float | None:
    """The absolute deadline (on the policy clock) of the current call, if any."""
    return _deadline.get()


def time_left(clock: Clock = DEFAULT_CLOCK) -> float | None:
    """Seconds until the current deadline (never negative), or ``None`` if unbounded."""
    deadline = _deadline.get()
    if deadline is None:
        return None
    return max(0.0, deadline - clock.monotonic())


@contextmanager
def deadline_scope(deadline: float) -> Iterator[float]:
    """Narrow the current deadline to ``deadline`` (an outer, earlier one wins)."""
    outer = _deadline.get()
    effective = deadline if outer is None else min(outer, deadline)
    token = _deadline.set(effective)
    try:
        yield effective
    finally:
        _deadline.reset(token)
