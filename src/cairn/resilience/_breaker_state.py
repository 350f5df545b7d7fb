"""The circuit breaker's state machine: admission, outcomes, transitions, stats.

A breaker never sleeps nor awaits: it admits a call (or refuses it at once)
and later records how the call ended, so one machine serves threads and
asyncio tasks at once. Time is read from the injected clock, and the
OPEN → HALF_OPEN move happens lazily, on the first call after the recovery
timeout: no timer, no thread. The call wrappers live in ``_breaker.py``.

A *token* identifies what a call was admitted under: the positive epoch of a
CLOSED period, the negated epoch of a HALF_OPEN period (a trial permit), or 0
(DISABLED: record nothing). Every transition starts a new epoch, so a call
that ends after the state moved on is counted in the totals only.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from cairn.resilience import _events
from cairn.resilience._clock import DEFAULT_CLOCK, Clock
from cairn.resilience._detectors import (
    FAILED,
    IGNORED,
    SLOW,
    TimeWindow,
    exception_classes,
    make_window,
)
from cairn.resilience._errors import CircuitOpenError
from cairn.resilience._events import (
    BreakerRejected,
    BreakerState,
    BreakerStateChanged,
    Listener,
    emit,
)

__all__ = ["BreakerMachine", "BreakerStats"]

_CLOSED = BreakerState.CLOSED
_OPEN = BreakerState.OPEN
_HALF_OPEN = BreakerState.HALF_OPEN
_FORCED_OPEN = BreakerState.FORCED_OPEN
_DISABLED = BreakerState.DISABLED

_Change = tuple[BreakerState, BreakerState, str, float]


@dataclass(frozen=True, slots=True)
class BreakerStats:
    """A snapshot of one breaker, taken under its lock.

    The ``window_*`` counts and both rates describe the sliding window; with
    the consecutive-failures detector they are 0 and ``None``. A rate is
    ``None`` until the window holds ``minimum_calls`` calls. Totals count
    since the breaker was made and are never reset (they are counters, in the
    Prometheus sense). ``retry_after`` is the number of seconds until a trial
    call is admitted: set in OPEN (0.0 once due, as the move to HALF_OPEN waits
    for a call) and in HALF_OPEN while trial slots are free (0.0).
    """

    name: str
    state: BreakerState
    window_calls: int
    window_failures: int
    window_slow_calls: int
    failure_rate: float | None
    slow_call_rate: float | None
    consecutive_failures: int
    total_calls: int
    total_failures: int
    total_rejections: int
    opened_at: float | None
    retry_after: float | None
    recovery_timeout: float


def _count_of(counter: itertools.count[int]) -> int:
    # itertools.count steps atomically under the GIL with no lock; its repr is
    # the only public way to read it without stepping it.
    return int(repr(counter)[6:-1])


class BreakerMachine:
    """The state of one breaker and every decision about it; see ``CircuitBreaker``."""

    __slots__ = (
        "_base_timeout",
        "_calls",
        "_epoch",
        "_failure_if_result",
        "_failures",
        "_fast_token",
        "_half_open_max_calls",
        "_ignore_on",
        "_listeners",
        "_lock",
        "_max_timeout",
        "_multiplier",
        "_open_until",
        "_opened_at",
        "_plain",
        "_record_on",
        "_rejections",
        "_slow_after",
        "_state",
        "_streak",
        "_success_threshold",
        "_threshold",
        "_timed_window",
        "_timeout",
        "_total_failures",
        "_trial_successes",
        "_trials",
        "_window",
        "clock",
        "name",
    )

    def __init__(
        self,
        *,
        name: str = "circuit",
        failure_threshold: int | None = None,
        window_size: int | None = None,
        window_duration: float | None = None,
        failure_rate: float = 0.5,
        minimum_calls: int | None = None,
        slow_call_duration: float | None = None,
        slow_call_rate: float = 1.0,
        recovery_timeout: float = 60.0,
        recovery_multiplier: float = 1.0,
        max_recovery_timeout: float | None = None,
        half_open_max_calls: int = 1,
        success_threshold: int = 1,
        record_on: type[Exception] | tuple[type[Exception], ...] = Exception,
        ignore_on: type[BaseException] | tuple[type[BaseException], ...] = (),
        failure_if_result: Callable[[Any], bool] | None = None,
        clock: Clock = DEFAULT_CLOCK,
        listeners: Iterable[Listener] = (),
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, not {name!r}")
        self.name = name
        self._window = make_window(
            failure_threshold=failure_threshold,
            size=window_size,
            duration=window_duration,
            failure_rate=failure_rate,
            minimum_calls=minimum_calls,
            slow_call_duration=slow_call_duration,
            slow_call_rate=slow_call_rate,
        )
        self._threshold = 5 if failure_threshold is None else failure_threshold
        if self._threshold < 1:
            raise ValueError(f"failure_threshold must be >= 1, not {failure_threshold!r}")
        self._slow_after = slow_call_duration
        self._timed_window = isinstance(self._window, TimeWindow)
        if not (0 <= recovery_timeout < math.inf):
            raise ValueError(
                f"recovery_timeout must be a finite number of seconds >= 0, not {recovery_timeout!r}"
            )
        if not (1 <= recovery_multiplier < math.inf):
            raise ValueError(
                f"recovery_multiplier must be >= 1 (1 keeps the break constant), "
                f"not {recovery_multiplier!r}"
            )
        if max_recovery_timeout is None:
            max_recovery_timeout = 10 * recovery_timeout
        elif not (recovery_timeout <= max_recovery_timeout < math.inf):
            raise ValueError(
                f"max_recovery_timeout must be finite and >= recovery_timeout "
                f"({recovery_timeout!r}), not {max_recovery_timeout!r}"
            )
        if half_open_max_calls < 1:
            raise ValueError(f"half_open_max_calls must be >= 1, not {half_open_max_calls!r}")
        if success_threshold < 1:
            raise ValueError(f"success_threshold must be >= 1, not {success_threshold!r}")
        self._base_timeout = self._timeout = float(recovery_timeout)
        self._multiplier = float(recovery_multiplier)
        self._max_timeout = float(max_recovery_timeout)
        self._half_open_max_calls = half_open_max_calls
        self._success_threshold = success_threshold
        self._record_on = exception_classes(record_on, "record_on", exceptions_only=True)
        self._ignore_on = exception_classes(ignore_on, "ignore_on")
        if failure_if_result is not None and not callable(failure_if_result):
            raise ValueError(f"failure_if_result must be callable, not {failure_if_result!r}")
        self._failure_if_result = failure_if_result
        if not callable(getattr(clock, "monotonic", None)):
            raise ValueError(f"clock must have a monotonic() method, not {clock!r}")
        # Read at call time, never bound once: virtual_time() swaps the default.
        self.clock = clock
        self._listeners = tuple(listeners)
        # Only this configuration may take the lock-free path of CLOSED.
        self._plain = self._window is None and failure_if_result is None
        self._lock = threading.Lock()
        self._calls = itertools.count()
        self._rejections = itertools.count()
        self._total_failures = 0
        self._failures = 0
        self._streak = 0
        self._trials = self._trial_successes = 0
        self._opened_at: float | None = None
        self._open_until = 0.0
        self._epoch = 1
        self._state = _CLOSED
        self._fast_token = self._epoch if self._plain else 0

    @property
    def state(self) -> BreakerState:
        """The current state (OPEN stays OPEN until a call arrives after the timeout)."""
        return self._state

    # -- running calls ------------------------------------------------------

    # -- the state machine ----------------------------------------------------

    def _admit(self) -> int | CircuitOpenError:
        """Return the token of an admitted call, or the refusal for the caller to raise.

        Returned, not raised: raised in the caller's frame, the traceback of
        a refusal is one entry shorter, which is a tenth of its cost.
        """
        # Read without the lock: should a transition slip in between, the
        # token names another period, and _settle() ignores its outcome.
        epoch = self._epoch
        state = self._state
        if state is _CLOSED:
            next(self._calls)
            return epoch
        if state is _OPEN:
            now = self.clock.monotonic()
            wait = self._open_until - now
            if wait > 0:
                next(self._rejections)
                if self._listeners or _events._listeners:
                    self._emit_rejected(_OPEN, wait, now)
                return CircuitOpenError(self.name, _OPEN, wait)
        elif state is _DISABLED:
            return 0
        elif state is _FORCED_OPEN or self._trials >= self._half_open_max_calls:
            return self._rejected(state, None)
        return self._trial()

    def _trial(self) -> int | CircuitOpenError:
        """Take a half-open permit (first moving OPEN → HALF_OPEN when due)."""
        change: _Change | None = None
        token: int | None = None
        wait: float | None = None
        with self._lock:
            state = self._state
            if state is _OPEN:
                now = self.clock.monotonic()
                wait = self._open_until - now
                if wait <= 0:
                    change = self._enter(_HALF_OPEN, "recovery timeout elapsed", now)
                    state = _HALF_OPEN
            if state is _HALF_OPEN:
                if self._trials < self._half_open_max_calls:
                    self._trials += 1
                    token = -self._epoch
            elif state is _CLOSED:
                token = self._epoch
            elif state is _DISABLED:
                token = 0
        if change is not None:
            self._announce(change)
        if token is None:
            return self._rejected(state, wait if state is _OPEN else None)
        if token:
            next(self._calls)
        return token

    def _rejected(self, state: BreakerState, wait: float | None) -> CircuitOpenError:
        next(self._rejections)
        if self._listeners or _events._listeners:
            self._emit_rejected(state, wait, self.clock.monotonic())
        return CircuitOpenError(self.name, state, wait)

    def _emit_rejected(self, state: BreakerState, wait: float | None, now: float) -> None:
        emit(BreakerRejected(self.name, now, state, wait), self._listeners)

    def _classify(self, exc: BaseException) -> int:
        if not isinstance(exc, Exception) or (self._ignore_on and isinstance(exc, self._ignore_on)):
            return IGNORED
        return FAILED if isinstance(exc, self._record_on) else 0

    def _settle_result(self, token: int, result: object, start: float) -> None:
        judge = self._failure_if_result
        if judge is None:
            self._settle(token, 0, start)
            return
        try:
            outcome = FAILED if judge(result) else 0
        except BaseException:
            self._settle(token, IGNORED, start)  # give the permit back
            raise
        self._settle(token, outcome, start)

    def _settle(self, token: int, outcome: int, start: float) -> None:
        """Record how an admitted call ended; trip or close the circuit if due."""
        now = -math.inf
        if self._slow_after is not None:
            now = self.clock.monotonic()
            if now - start > self._slow_after:
                outcome |= SLOW
        elif self._timed_window:
            now = self.clock.monotonic()
        change: _Change | None = None
        with self._lock:
            if outcome & FAILED:
                self._total_failures += 1
            if token > 0:
                if token == self._epoch and self._state is _CLOSED and not outcome & IGNORED:
                    change = self._judge_closed(outcome, now)
            elif -token == self._epoch and self._state is _HALF_OPEN:
                self._trials -= 1
                if outcome & IGNORED:
                    pass
                elif outcome & (FAILED | SLOW):
                    reason = "trial failed" if outcome & FAILED else "trial too slow"
                    change = self._open(reason, now)
                else:
                    self._trial_successes += 1
                    if self._trial_successes >= self._success_threshold:
                        change = self._close("trial succeeded", now)
        if change is not None:
            self._announce(change)

    def _judge_closed(self, outcome: int, now: float) -> _Change | None:
        if outcome & FAILED:
            self._failures += 1
        else:
            self._failures = 0
        if self._window is not None:
            reason = self._window.record(outcome, now)
        elif self._failures >= self._threshold:
            reason = f"{self._failures} consecutive failures"
        else:
            return None
        return None if reason is None else self._open(reason, now)

    def _open(self, reason: str, now: float) -> _Change:
        if now == -math.inf:
            now = self.clock.monotonic()
        self._streak += 1
        if self._streak > 1:
            # Multiplied step by step: a power could overflow after many reopenings.
            self._timeout = min(self._timeout * self._multiplier, self._max_timeout)
        self._opened_at = now
        self._open_until = now + self._timeout
        return self._enter(_OPEN, reason, now)

    def _close(self, reason: str, now: float) -> _Change:
        if now == -math.inf:
            now = self.clock.monotonic()
        self._clear()
        return self._enter(_CLOSED, reason, now)

    def _clear(self) -> None:
        self._failures = 0
        self._streak = 0
        self._timeout = self._base_timeout
        self._opened_at = None
        if self._window is not None:
            self._window.clear()

    def _enter(self, state: BreakerState, reason: str, now: float) -> _Change:
        """Move to ``state`` (lock held); the caller announces it once unlocked."""
        self._fast_token = 0
        old = self._state
        self._epoch += 1
        self._trials = self._trial_successes = 0
        self._state = state
        if state is _CLOSED and self._plain:
            self._fast_token = self._epoch
        return (old, state, reason, now)

    def _announce(self, change: _Change) -> None:
        # Outside the lock: a listener may call stats() or any other method.
        if self._listeners or _events._listeners:
            old, new, reason, now = change
            emit(BreakerStateChanged(self.name, now, old, new, reason), self._listeners)

    # -- the operator's levers ------------------------------------------------

    def force_open(self) -> None:
        """Refuse every call until :meth:`reset` (FORCED_OPEN)."""
        self._steer(_FORCED_OPEN, "forced")

    def disable(self) -> None:
        """Let every call through and record nothing until :meth:`reset` (DISABLED)."""
        self._steer(_DISABLED, "disabled")

    def reset(self) -> None:
        """Return to CLOSED, forgetting failures, windows and the growing break."""
        self._steer(_CLOSED, "reset")

    def _steer(self, state: BreakerState, reason: str) -> None:
        now = self.clock.monotonic()
        change: _Change | None = None
        with self._lock:
            if state is _CLOSED:
                self._clear()
            elif state is _FORCED_OPEN and self._state is not state:
                self._opened_at = now
            if self._state is not state:
                change = self._enter(state, reason, now)
        if change is not None:
            self._announce(change)

    def stats(self) -> BreakerStats:
        """A consistent snapshot of the breaker's state and counters."""
        now = self.clock.monotonic()
        with self._lock:
            state = self._state
            if self._window is not None:
                calls, failures, slow, failure_rate, slow_rate = self._window.rates(now)
            else:
                calls, failures, slow, failure_rate, slow_rate = 0, 0, 0, None, None
            retry_after: float | None = None
            if state is _OPEN:
                retry_after = max(0.0, self._open_until - now)
            elif state is _HALF_OPEN and self._trials < self._half_open_max_calls:
                retry_after = 0.0
            return BreakerStats(
                name=self.name,
                state=state,
                window_calls=calls,
                window_failures=failures,
                window_slow_calls=slow,
                failure_rate=failure_rate,
                slow_call_rate=slow_rate,
                consecutive_failures=self._failures,
                total_calls=_count_of(self._calls),
                total_failures=self._total_failures,
                total_rejections=_count_of(self._rejections),
                opened_at=self._opened_at if state in (_OPEN, _FORCED_OPEN, _HALF_OPEN) else None,
                retry_after=retry_after,
                recovery_timeout=self._timeout,
            )
