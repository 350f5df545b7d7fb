"""The circuit breaker: stop calling what keeps failing, and try again later.

One state machine serves threads and asyncio tasks at once, because a breaker
never sleeps nor awaits: it admits a call (or refuses it at once) and later
records how the call ended. Time is read from the injected clock, and the
OPEN → HALF_OPEN move happens lazily, on the first call after the recovery
timeout: no timer, no thread.

Speed matters more here than anywhere else in cairn, since every protected
call pays for the breaker. While CLOSED with the default detector
(consecutive failures) a call costs one attribute read, one counter step, and
on success a reset of the failure counter only if it is nonzero: no lock, no
clock read. The lock guards only transitions and half-open permits, and is
never held while the protected call runs, so that call may itself query or
steer the breaker.

A *token* identifies what a call was admitted under: the positive epoch of a
CLOSED period, the negated epoch of a HALF_OPEN period (a trial permit), or 0
(DISABLED: record nothing). Every transition starts a new epoch, so a call
that ends after the state moved on is counted in the totals only.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import math
import threading
from collections.abc import Awaitable, Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from types import TracebackType
from typing import (
    Any,
    ParamSpec,
    Protocol,
    Self,
    TypeAlias,
    TypedDict,
    TypeVar,
    Unpack,
    cast,
    overload,
)

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
from cairn.resilience._policy import Policy

__all__ = ["BreakerStats", "CircuitBreaker", "CircuitProtected", "circuit"]

P = ParamSpec("P")
T = TypeVar("T")
R_co = TypeVar("R_co", covariant=True)

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


class CircuitProtected(Protocol[P, R_co]):
    """A function decorated by a breaker; ``fn.breaker`` is that breaker."""

    @property
    def breaker(self) -> CircuitBreaker: ...

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R_co: ...


# One ``with breaker:`` block in progress: (breaker, token, start, outer block).
_Entry: TypeAlias = "tuple[CircuitBreaker, int, float, _Entry | None]"

# A context variable (not a thread-local) so that tasks sharing a thread each
# keep their own open blocks.
_entered: ContextVar[_Entry | None] = ContextVar("cairn_breaker_entered", default=None)


def _count_of(counter: itertools.count[int]) -> int:
    # itertools.count steps atomically under the GIL with no lock; its repr is
    # the only public way to read it without stepping it.
    return int(repr(counter)[6:-1])


class CircuitBreaker(Policy):
    """Refuse calls to a dependency that keeps failing, then probe it again.

    CLOSED lets calls through and watches them. When the detector trips, the
    breaker goes OPEN and refuses calls with :class:`CircuitOpenError` for
    ``recovery_timeout`` seconds; the first call after that moves it to
    HALF_OPEN, which admits ``half_open_max_calls`` concurrent trial calls and
    refuses the rest at once. ``success_threshold`` trial successes in a row
    close it; any trial failure opens it again (for ``recovery_multiplier``
    times longer, up to ``max_recovery_timeout``). ``force_open()``,
    ``disable()`` (let everything through, record nothing) and ``reset()``
    are the operator's levers.

    Detection, one per breaker:

    - default: ``failure_threshold`` consecutive failures (5);
    - ``window_size=N``: failure rate over the last N calls;
    - ``window_duration=T``: failure rate over the last T seconds.

    With a window it opens once it holds ``minimum_calls`` calls and
    ``failure_rate`` of them failed, or ``slow_call_rate`` of them ran longer
    than ``slow_call_duration`` seconds.

    What counts: exceptions of ``record_on`` are failures, unless they are of
    ``ignore_on`` (neither success nor failure); other exceptions count as
    successes; a result for which ``failure_if_result`` is true is a failure;
    a ``BaseException`` that is not an ``Exception`` (cancellation,
    ``KeyboardInterrupt``) counts as neither.

    resilience4j's ``CircuitBreakerConfig``, in cairn's names:
    ``slidingWindowType``/``slidingWindowSize`` → ``window_size`` or
    ``window_duration``; ``failureRateThreshold`` (percent) → ``failure_rate``
    (fraction); ``slowCallRateThreshold`` → ``slow_call_rate``;
    ``slowCallDurationThreshold`` → ``slow_call_duration``;
    ``minimumNumberOfCalls`` → ``minimum_calls``; ``waitDurationInOpenState`` →
    ``recovery_timeout``; ``intervalBiFunctionInOpenState`` (exponential) →
    ``recovery_multiplier`` + ``max_recovery_timeout``;
    ``permittedNumberOfCallsInHalfOpenState`` → ``half_open_max_calls``;
    ``recordExceptions``/``ignoreExceptions``/``recordResult`` → ``record_on``/
    ``ignore_on``/``failure_if_result``. Unlike resilience4j, HALF_OPEN is
    judged by consecutive trial outcomes (``success_threshold``), not by a rate.
    """

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

    def __repr__(self) -> str:
        return f"CircuitBreaker(name={self.name!r}, state={self._state.value})"

    @property
    def state(self) -> BreakerState:
        """The current state (OPEN stays OPEN until a call arrives after the timeout)."""
        return self._state

    # -- running calls ------------------------------------------------------

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(*args, **kwargs)`` if the circuit allows; else raise CircuitOpenError."""
        token = self._fast_token
        if token:
            next(self._calls)
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:
                self._settle(token, self._classify(exc), 0.0)
                raise
            if self._failures and token == self._fast_token:
                self._failures = 0
            return result
        admitted = self._admit()
        if isinstance(admitted, int):
            return self._run(admitted, fn, args, kwargs)
        try:
            raise admitted
        finally:
            del admitted  # else this frame, kept by the traceback, holds a cycle

    async def acall(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Await ``fn(*args, **kwargs)`` if the circuit allows; else raise CircuitOpenError."""
        token = self._fast_token
        if token:
            next(self._calls)
            try:
                result = await fn(*args, **kwargs)
            except Exception as exc:
                self._settle(token, self._classify(exc), 0.0)
                raise
            if self._failures and token == self._fast_token:
                self._failures = 0
            return result
        admitted = self._admit()
        if isinstance(admitted, int):
            return await self._arun(admitted, fn, args, kwargs)
        try:
            raise admitted
        finally:
            del admitted  # else this frame, kept by the traceback, holds a cycle

    def _run(self, token: int, fn: Callable[..., T], args: Any, kwargs: Any) -> T:
        """Run a call admitted under ``token`` and record how it ended."""
        if not token:
            return fn(*args, **kwargs)
        start = self.clock.monotonic() if self._slow_after is not None else 0.0
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            self._settle(token, self._classify(exc), start)
            raise
        self._settle_result(token, result, start)
        return result

    async def _arun(self, token: int, fn: Callable[..., Awaitable[T]], args: Any, kwargs: Any) -> T:
        """Await a call admitted under ``token`` and record how it ended."""
        if not token:
            return await fn(*args, **kwargs)
        start = self.clock.monotonic() if self._slow_after is not None else 0.0
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            self._settle(token, self._classify(exc), start)
            raise
        self._settle_result(token, result, start)
        return result

    def __call__(self, fn: Callable[P, T], /) -> CircuitProtected[P, T]:
        """Decorate ``fn`` (plain or coroutine function); ``wrapper.breaker`` is this breaker."""
        # call() and acall() are inlined rather than called: a Python frame
        # is a third of the breaker's cost. So is the refusal in OPEN, which
        # then needs no local (see the ``del admitted`` below).
        breaker = self
        step = self._calls.__next__
        refuse = self._rejections.__next__
        admit = self._admit
        clock = self.clock
        listeners = self._listeners
        wrapper: Any
        if inspect.iscoroutinefunction(fn):
            arun = self._arun

            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                token = breaker._fast_token
                if token:
                    step()
                    try:
                        result = await fn(*args, **kwargs)
                    except Exception as exc:
                        breaker._settle(token, breaker._classify(exc), 0.0)
                        raise
                    if breaker._failures and token == breaker._fast_token:
                        breaker._failures = 0
                    return result
                if breaker._state is _OPEN:
                    now = clock.monotonic()
                    wait = breaker._open_until - now
                    if wait > 0:
                        refuse()
                        if listeners or _events._listeners:
                            breaker._emit_rejected(_OPEN, wait, now)
                        raise CircuitOpenError(breaker.name, _OPEN, wait)
                admitted = admit()
                if isinstance(admitted, int):
                    return await arun(admitted, fn, args, kwargs)
                try:
                    raise admitted
                finally:
                    del admitted  # else this frame, kept by the traceback, holds a cycle

            wrapper = async_wrapper
        else:
            run = self._run

            @functools.wraps(fn)
            def sync_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                token = breaker._fast_token
                if token:
                    step()
                    try:
                        result = fn(*args, **kwargs)
                    except Exception as exc:
                        breaker._settle(token, breaker._classify(exc), 0.0)
                        raise
                    if breaker._failures and token == breaker._fast_token:
                        breaker._failures = 0
                    return result
                if breaker._state is _OPEN:
                    now = clock.monotonic()
                    wait = breaker._open_until - now
                    if wait > 0:
                        refuse()
                        if listeners or _events._listeners:
                            breaker._emit_rejected(_OPEN, wait, now)
                        raise CircuitOpenError(breaker.name, _OPEN, wait)
                admitted = admit()
                if isinstance(admitted, int):
                    return run(admitted, fn, args, kwargs)
                try:
                    raise admitted
                finally:
                    del admitted  # else this frame, kept by the traceback, holds a cycle

            wrapper = sync_wrapper
        wrapper.breaker = self
        return cast("CircuitProtected[P, T]", wrapper)

    def __enter__(self) -> Self:
        """Protect the body of a ``with`` block; raise CircuitOpenError if refused."""
        token = self._fast_token
        if token:
            next(self._calls)
        else:
            admitted = self._admit()
            if not isinstance(admitted, int):
                try:
                    raise admitted
                finally:
                    del admitted  # else this frame, kept by the traceback, holds a cycle
            token = admitted
        start = self.clock.monotonic() if token and self._slow_after is not None else 0.0
        _entered.set((self, token, start, _entered.get()))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _, token, start, _ = self._pop_entry()
        if not token:
            return
        if exc is not None:
            self._settle(token, self._classify(exc), start)
        elif token == self._fast_token:
            if self._failures:
                self._failures = 0
        else:
            self._settle(token, 0, start)

    async def __aenter__(self) -> Self:
        """Protect the body of an ``async with`` block (no await: admission is instant)."""
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    def _pop_entry(self) -> _Entry:
        entry = _entered.get()
        if entry is not None and entry[0] is self:
            _entered.set(entry[3])
            return entry
        # Blocks of different breakers closed out of order (an ExitStack used
        # by hand): unlink this breaker's innermost block, keep the others.
        skipped: list[_Entry] = []
        while entry is not None and entry[0] is not self:
            skipped.append(entry)
            entry = entry[3]
        if entry is None:
            raise RuntimeError(f"circuit {self.name!r}: __exit__ without a matching __enter__")
        outer = entry[3]
        for other in reversed(skipped):
            outer = (*other[:3], outer)
        _entered.set(outer)
        return entry

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


class _Options(TypedDict, total=False):
    name: str
    failure_threshold: int | None
    window_size: int | None
    window_duration: float | None
    failure_rate: float
    minimum_calls: int | None
    slow_call_duration: float | None
    slow_call_rate: float
    recovery_timeout: float
    recovery_multiplier: float
    max_recovery_timeout: float | None
    half_open_max_calls: int
    success_threshold: int
    record_on: type[Exception] | tuple[type[Exception], ...]
    ignore_on: type[BaseException] | tuple[type[BaseException], ...]
    failure_if_result: Callable[[Any], bool] | None
    clock: Clock
    listeners: Iterable[Listener]


@overload
def circuit(fn: Callable[P, T], /) -> CircuitProtected[P, T]: ...
@overload
def circuit(
    **options: Unpack[_Options],
) -> Callable[[Callable[P, T]], CircuitProtected[P, T]]: ...
def circuit(fn: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """Give a function its own :class:`CircuitBreaker`; ``fn.breaker`` reaches it.

    Use it bare (``@circuit``) or configured, as the seed does::

        @circuit(failure_threshold=5, recovery_timeout=60)
        def call_external_api(): ...

    Five consecutive failures open the circuit; calls then fail fast with
    :class:`CircuitOpenError` for 60 s; then one trial call goes through, and
    its success closes the circuit. The options are those of
    :class:`CircuitBreaker`; ``name`` defaults to the function's qualified name.
    """

    def decorate(fn: Callable[P, T]) -> CircuitProtected[P, T]:
        config = dict(options)
        name = config.pop("name", None) or f"{fn.__module__}.{fn.__qualname__}"
        return CircuitBreaker(name=name, **config)(fn)

    if fn is None:
        CircuitBreaker(**options)  # fail on bad options here, not at decoration
        return decorate
    return decorate(fn)
