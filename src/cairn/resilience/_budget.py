"""A retry budget: retries may add at most a fixed share of load (Finagle's idea).

Per-call retry limits do not stop a retry storm: when a server is down, every
client retries every call, and the load multiplies just when the server can
least take it. A budget shared by all callers caps retries in proportion to
the calls made: in any ``ttl``-second window, retries may not exceed
``min_per_second * ttl + ratio * calls``. The ``min_per_second`` reserve lets
a quiet client still retry; ``ratio`` (default 20 %) bounds the extra load.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

from cairn.resilience._clock import DEFAULT_CLOCK, Clock

__all__ = ["RetryBudget", "RetryBudgetStats"]

# The window slides in ttl/10 steps: memory is fixed, precision is a tenth of ttl.
_BUCKETS = 10


@dataclass(frozen=True, slots=True)
class RetryBudgetStats:
    """A snapshot of a :class:`RetryBudget` (counts over the last ``ttl`` seconds)."""

    calls: int
    """First attempts deposited in the window."""
    retries: int
    """Retries withdrawn in the window."""
    available: float
    """Retries still allowed right now: ``reserve + ratio * calls - retries``, at least 0."""
    refused: int
    """Retries refused since the budget was made (not windowed)."""


class RetryBudget:
    """Caps retries at ``min_per_second * ttl + ratio * calls`` per ``ttl`` seconds.

    Share one budget between every :class:`~cairn.resilience.Retry` that
    talks to the same service (``Retry(budget=...)``); it is thread-safe.
    Each call's first attempt deposits, each retry withdraws, and a retry the
    budget refuses makes the policy give up with reason ``"budget"``.
    Counts live in ten time buckets of ``ttl / 10`` seconds, so memory stays
    fixed however busy the service is.
    """

    __slots__ = (
        "_calls",
        "_clock",
        "_deposits",
        "_lock",
        "_refused",
        "_reserve",
        "_retries",
        "_roll_at",
        "_slot",
        "_tick",
        "_width",
        "_withdrawals",
        "min_per_second",
        "ratio",
        "ttl",
    )

    def __init__(
        self,
        *,
        ratio: float = 0.2,
        min_per_second: float = 10.0,
        ttl: float = 10.0,
        clock: Clock = DEFAULT_CLOCK,
    ) -> None:
        for name, value in (("ratio", ratio), ("min_per_second", min_per_second), ("ttl", ttl)):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(
                    f"RetryBudget({name}=) must be a number, not {type(value).__name__}"
                )
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"RetryBudget({name}={value!r}) must be a finite number >= 0")
        if ttl == 0:
            raise ValueError("RetryBudget(ttl=0): the window must be > 0 seconds (10 is typical)")
        if ratio > 10:
            raise ValueError(
                f"RetryBudget(ratio={ratio!r}): more than 10 retries per call is no budget; "
                "use a ratio between 0 and 1 (0.2 allows 20 % extra load)"
            )
        self.ratio = float(ratio)
        self.min_per_second = float(min_per_second)
        self.ttl = float(ttl)
        self._reserve = self.min_per_second * self.ttl
        self._clock = clock
        self._clock = clock
        self._lock = threading.Lock()
        self._width = self.ttl / _BUCKETS
        self._deposits = [0] * _BUCKETS
        self._withdrawals = [0] * _BUCKETS
        self._calls = 0
        self._retries = 0
        self._refused = 0
        self._tick = math.floor(self._clock.monotonic() / self._width)
        self._slot = self._tick % _BUCKETS
        self._roll_at = (self._tick + 1) * self._width

    def __repr__(self) -> str:
        return (
            f"RetryBudget(ratio={self.ratio!r}, min_per_second={self.min_per_second!r}, "
            f"ttl={self.ttl!r})"
        )

    def _roll(self, now: float) -> None:
        # Holding the lock. Empty the buckets that slid out of the window.
        tick = math.floor(now / self._width)
        gap = tick - self._tick
        if gap <= 0:  # (tick + 1) * width rounded a hair below the true edge
            return
        deposits, withdrawals = self._deposits, self._withdrawals
        if gap >= _BUCKETS:
            deposits[:] = withdrawals[:] = [0] * _BUCKETS
            self._calls = self._retries = 0
        else:
            for step in range(1, gap + 1):
                slot = (self._tick + step) % _BUCKETS
                self._calls -= deposits[slot]
                self._retries -= withdrawals[slot]
                deposits[slot] = withdrawals[slot] = 0
        self._tick = tick
        self._slot = tick % _BUCKETS
        self._roll_at = (tick + 1) * self._width

    def deposit(self) -> None:
        """Count one call (its first attempt); every call does this once."""
        now = self._clock.monotonic()
        with self._lock:
            if now >= self._roll_at:
                self._roll(now)
            self._deposits[self._slot] += 1
            self._calls += 1

    def try_withdraw(self) -> bool:
        """Take one retry from the budget: ``True`` if allowed, ``False`` if refused."""
        now = self._clock.monotonic()
        with self._lock:
            if now >= self._roll_at:
                self._roll(now)
            if self._retries + 1 <= self._reserve + self.ratio * self._calls:
                self._withdrawals[self._slot] += 1
                self._retries += 1
                return True
            self._refused += 1
            return False

    def stats(self) -> RetryBudgetStats:
        """A consistent snapshot of the counts in the current window."""
        now = self._clock.monotonic()
        with self._lock:
            if now >= self._roll_at:
                self._roll(now)
            return RetryBudgetStats(
                calls=self._calls,
                retries=self._retries,
                available=max(0.0, self._reserve + self.ratio * self._calls - self._retries),
                refused=self._refused,
            )
