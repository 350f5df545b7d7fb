"""Errors raised by the resilience policies.

::

    CairnError
     └── ResilienceError
          ├── CircuitOpenError     (name, state, retry_after)
          ├── RetryError           (attempts, reason, last error or result)
          ├── BulkheadFullError    (name, max_concurrent, max_queue)
          └── TimeoutExceeded      (name, timeout) — also a TimeoutError

Each carries the context needed to act on it, and its message says what to do.
Messages are built lazily in ``__str__``: a breaker rejecting 100,000 calls a
second pays for the object, not for formatting text nobody reads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cairn._errors import CairnError
from cairn.resilience._events import BreakerState

__all__ = [
    "BulkheadFullError",
    "CircuitOpenError",
    "ResilienceError",
    "RetryError",
    "TimeoutExceeded",
]


class ResilienceError(CairnError):
    """Base class of the errors raised by ``cairn.resilience`` policies."""


class CircuitOpenError(ResilienceError):
    """The circuit breaker ``name`` refused the call without running it.

    ``retry_after`` is the number of seconds until the breaker admits a trial
    call again (``None`` when that depends on an operator, as in FORCED_OPEN,
    or when HALF_OPEN's trial slots are all taken).
    """

    # No __init__ on purpose: BaseException's C constructor keeps the three
    # arguments in ``args``, and the properties read them back. A Python
    # __init__ would cost a breaker's rejection path a third of its time.
    args: tuple[str, BreakerState, float | None]

    if TYPE_CHECKING:

        def __init__(self, name: str, state: BreakerState, retry_after: float | None) -> None: ...

    @property
    def name(self) -> str:
        """The breaker's name."""
        return self.args[0]

    @property
    def state(self) -> BreakerState:
        """The state that refused the call."""
        return self.args[1]

    @property
    def retry_after(self) -> float | None:
        """Seconds until a trial call is admitted, or ``None`` when unknown."""
        return self.args[2]

    def __str__(self) -> str:
        if self.state is BreakerState.FORCED_OPEN:
            return f"circuit {self.name!r} is forced open; an operator must close it"
        if self.retry_after is None:
            return (
                f"circuit {self.name!r} is {self.state.value}: all trial calls are taken; "
                "retry shortly"
            )
        return (
            f"circuit {self.name!r} is {self.state.value}; "
            f"next trial call in {self.retry_after:.3g}s"
        )


class RetryError(ResilienceError):
    """Retries gave up (raised only when the retry policy is told not to re-raise).

    ``last_error`` is the last attempt's exception, or ``None`` when the last
    attempt returned a result that was still retryable; then ``last_result``
    holds it.
    """

    def __init__(
        self,
        name: str,
        attempts: int,
        reason: str,
        last_error: BaseException | None,
        last_result: object = None,
    ) -> None:
        super().__init__(name, attempts, reason, last_error, last_result)
        self.name = name
        self.attempts = attempts
        self.reason = reason
        self.last_error = last_error
        self.last_result = last_result

    def __str__(self) -> str:
        what = (
            f"last error: {type(self.last_error).__name__}: {self.last_error}"
            if self.last_error is not None
            else f"last result: {self.last_result!r}"
        )
        return (
            f"retry {self.name!r} gave up after {self.attempts} attempt(s) ({self.reason}); {what}"
        )


class BulkheadFullError(ResilienceError):
    """The bulkhead ``name`` had no free slot and no room in its queue."""

    __slots__ = ("max_concurrent", "max_queue", "name")

    def __init__(self, name: str, max_concurrent: int, max_queue: int) -> None:
        self.name = name
        self.max_concurrent = max_concurrent
        self.max_queue = max_queue

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.name, self.max_concurrent, self.max_queue))

    def __str__(self) -> str:
        return (
            f"bulkhead {self.name!r} is full ({self.max_concurrent} running, "
            f"{self.max_queue} queued); shed load or raise max_concurrent/max_queue"
        )


class TimeoutExceeded(ResilienceError, TimeoutError):
    """The call protected by timeout ``name`` ran longer than ``timeout`` seconds."""

    def __init__(self, name: str, timeout: float) -> None:
        super().__init__(name, timeout)
        self.name = name
        self.timeout = timeout

    def __str__(self) -> str:
        return f"timeout {self.name!r}: the call took longer than {self.timeout:.3g}s"
