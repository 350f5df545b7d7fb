"""Sliding windows that judge a circuit breaker's recent calls.

A window holds the outcome of recent calls and says when their failure rate
or slow-call rate crosses its threshold. Two kinds, as in resilience4j:

- :class:`CountWindow`: the last ``size`` calls, in a ring of one byte each;
- :class:`TimeWindow`: the calls of the last ``duration`` seconds, summed per
  bucket (one second wide, or a tenth of the window when it is shorter than
  ten seconds), so memory depends on the duration and never on the traffic.

Windows are not thread-safe: the breaker calls them under its lock. The
breaker's default detector, consecutive failures, needs no window at all and
lives in the breaker's fast path.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

__all__ = [
    "FAILED",
    "IGNORED",
    "SLOW",
    "CountWindow",
    "RateWindow",
    "TimeWindow",
    "exception_classes",
    "make_window",
]

# An outcome is a small bit set, so a count window stores it in one byte.
FAILED = 1
SLOW = 2
IGNORED = 4
"""Neither success nor failure: never reaches a window."""

MAX_WINDOW_SIZE = 100_000
"""Bounds the ring at 100 kB; busier services want a time window."""

MAX_WINDOW_DURATION = 3600.0
"""Longer time windows would need coarser buckets than one second."""

# A bucket index far below any clock reading: the first record clears all.
_NEVER = -(1 << 62)


class RateWindow(ABC):
    """Counts calls, failures and slow calls; trips on either rate."""

    __slots__ = ("calls", "failure_rate", "failures", "minimum_calls", "slow", "slow_call_rate")

    def __init__(self, *, failure_rate: float, slow_call_rate: float, minimum_calls: int) -> None:
        self.failure_rate = failure_rate
        self.slow_call_rate = slow_call_rate
        self.minimum_calls = minimum_calls
        self.calls = 0
        self.failures = 0
        self.slow = 0

    def record(self, outcome: int, now: float) -> str | None:
        """Add one call's outcome; return why the circuit must open, or ``None``.

        Judged after every call, successes included: a success can bring the
        window up to ``minimum_calls`` (or, in a time window, push out old
        successes) while the rate already stands above the threshold.
        """
        self._add(outcome, now)
        calls = self.calls
        if calls < self.minimum_calls:
            return None
        if self.failures / calls >= self.failure_rate:
            return f"failure rate {self.failures / calls:.0%} >= {self.failure_rate:.0%} {self._over()}"
        if self.slow / calls >= self.slow_call_rate:
            return f"slow-call rate {self.slow / calls:.0%} >= {self.slow_call_rate:.0%} {self._over()}"
        return None

    def rates(self, now: float) -> tuple[int, int, int, float | None, float | None]:
        """``(calls, failures, slow, failure_rate, slow_call_rate)`` as of ``now``.

        The rates are ``None`` until the window holds ``minimum_calls`` calls,
        as the breaker does not judge them before that either.
        """
        self._expire(now)
        calls = self.calls
        if calls < self.minimum_calls or calls == 0:
            return calls, self.failures, self.slow, None, None
        return calls, self.failures, self.slow, self.failures / calls, self.slow / calls

    @abstractmethod
    def clear(self) -> None:
        """Forget every call."""

    @abstractmethod
    def _add(self, outcome: int, now: float) -> None: ...

    @abstractmethod
    def _expire(self, now: float) -> None: ...

    @abstractmethod
    def _over(self) -> str: ...


class CountWindow(RateWindow):
    """The last ``size`` calls."""

    __slots__ = ("_next", "_ring", "size")

    def __init__(
        self, size: int, *, failure_rate: float, slow_call_rate: float, minimum_calls: int
    ) -> None:
        super().__init__(
            failure_rate=failure_rate, slow_call_rate=slow_call_rate, minimum_calls=minimum_calls
        )
        self.size = size
        self._ring = bytearray(size)
        self._next = 0

    def clear(self) -> None:
        self._ring = bytearray(self.size)
        self._next = 0
        self.calls = self.failures = self.slow = 0

    def _add(self, outcome: int, now: float) -> None:
        ring, i = self._ring, self._next
        if self.calls == self.size:
            old = ring[i]
            self.failures -= old & FAILED
            self.slow -= (old & SLOW) >> 1
        else:
            self.calls += 1
        ring[i] = outcome
        self.failures += outcome & FAILED
        self.slow += (outcome & SLOW) >> 1
        self._next = (i + 1) % self.size

    def _expire(self, now: float) -> None:
        # Calls leave a count window only when newer ones push them out.
        return

    def _over(self) -> str:
        return f"over the last {self.calls} calls"


class TimeWindow(RateWindow):
    """The calls of the last ``duration`` seconds, to within one bucket."""

    __slots__ = ("_buckets", "_calls", "_failures", "_head", "_slow", "_width", "duration")

    def __init__(
        self, duration: float, *, failure_rate: float, slow_call_rate: float, minimum_calls: int
    ) -> None:
        super().__init__(
            failure_rate=failure_rate, slow_call_rate=slow_call_rate, minimum_calls=minimum_calls
        )
        self.duration = duration
        self._buckets = max(10, math.ceil(duration))
        self._width = duration / self._buckets
        self.clear()

    def clear(self) -> None:
        n = self._buckets
        self._calls = [0] * n
        self._failures = [0] * n
        self._slow = [0] * n
        self._head = _NEVER
        self.calls = self.failures = self.slow = 0

    def _add(self, outcome: int, now: float) -> None:
        slot = self._advance(now) % self._buckets
        failed, slow = outcome & FAILED, (outcome & SLOW) >> 1
        self._calls[slot] += 1
        self._failures[slot] += failed
        self._slow[slot] += slow
        self.calls += 1
        self.failures += failed
        self.slow += slow

    def _expire(self, now: float) -> None:
        self._advance(now)

    def _advance(self, now: float) -> int:
        """Empty the buckets that fell out of the window; return the current index."""
        index = int(now // self._width)
        head = self._head
        if index <= head:
            # A clock that never goes backwards gives index == head here; a
            # reading from a slightly earlier caller lands in the head bucket.
            return head
        n = self._buckets
        if index - head >= n:
            self._calls = [0] * n
            self._failures = [0] * n
            self._slow = [0] * n
            self.calls = self.failures = self.slow = 0
        else:
            calls, failures, slow = self._calls, self._failures, self._slow
            for i in range(head + 1, index + 1):
                slot = i % n
                if calls[slot]:
                    self.calls -= calls[slot]
                    self.failures -= failures[slot]
                    self.slow -= slow[slot]
                    calls[slot] = failures[slot] = slow[slot] = 0
        self._head = index
        return index

    def _over(self) -> str:
        return f"over {self.calls} calls in the last {self.duration:g}s"


def make_window(
    *,
    failure_threshold: int | None,
    size: int | None,
    duration: float | None,
    failure_rate: float,
    minimum_calls: int | None,
    slow_call_duration: float | None,
    slow_call_rate: float,
) -> RateWindow | None:
    """Check the breaker's detection options; build its window (``None``: consecutive)."""
    if size is None and duration is None:
        if slow_call_duration is not None:
            raise ValueError(
                "slow_call_duration needs a sliding window: pass window_size= or window_duration="
            )
        return None
    if failure_threshold is not None:
        raise ValueError(
            "failure_threshold (consecutive failures) and a sliding window are two "
            "detectors; pick one: drop failure_threshold= or window_size=/window_duration="
        )
    if size is not None and duration is not None:
        raise ValueError("pick one window: window_size= (calls) or window_duration= (seconds)")
    if not (0 < failure_rate <= 1):
        raise ValueError(
            f"failure_rate is a fraction in (0, 1] (resilience4j's 50 is 0.5), not {failure_rate!r}"
        )
    if not (0 < slow_call_rate <= 1):
        raise ValueError(f"slow_call_rate is a fraction in (0, 1], not {slow_call_rate!r}")
    if slow_call_duration is not None and not (0 < slow_call_duration < math.inf):
        raise ValueError(f"slow_call_duration must be > 0 seconds, not {slow_call_duration!r}")
    rates = {"failure_rate": failure_rate, "slow_call_rate": slow_call_rate}
    if size is not None:
        if not (1 <= size <= MAX_WINDOW_SIZE):
            raise ValueError(
                f"window_size must be in 1..{MAX_WINDOW_SIZE}, not {size!r}; "
                "for more traffic use window_duration="
            )
        minimum = min(10, size) if minimum_calls is None else minimum_calls
        if not (1 <= minimum <= size):
            raise ValueError(
                f"minimum_calls must be in 1..window_size ({size}), not {minimum_calls!r}"
            )
        return CountWindow(size, minimum_calls=minimum, **rates)
    assert duration is not None
    if not (0 < duration <= MAX_WINDOW_DURATION):
        raise ValueError(
            f"window_duration must be in (0, {MAX_WINDOW_DURATION:g}] seconds, not "
            f"{duration!r}; for longer memory use window_size="
        )
    minimum = 10 if minimum_calls is None else minimum_calls
    if minimum < 1:
        raise ValueError(f"minimum_calls must be >= 1, not {minimum_calls!r}")
    return TimeWindow(duration, minimum_calls=minimum, **rates)


def exception_classes(
    value: object, what: str, *, exceptions_only: bool = False
) -> tuple[type[BaseException], ...]:
    """Check ``record_on``/``ignore_on``: one exception class or a tuple of them."""
    classes = value if isinstance(value, tuple) else (value,)
    for cls in classes:
        if not (isinstance(cls, type) and issubclass(cls, BaseException)):
            raise ValueError(f"{what} must be an exception class or a tuple of them, not {cls!r}")
        if exceptions_only and not issubclass(cls, Exception):
            raise ValueError(
                f"{what} must name Exception subclasses; {cls.__name__} is a "
                "BaseException, which never counts (cancellation is not a failure)"
            )
    return classes
