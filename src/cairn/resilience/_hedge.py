"""Hedging: when a call is slow, start another one and take whichever answers first.

Async only: hedging runs attempts concurrently, which needs tasks. The
decisions (which attempt next, whether a failure may be hedged, when to give
up) live in :class:`_Hedging`, which never awaits; :meth:`Hedge.acall` only
starts tasks, waits and cancels.
"""

from __future__ import annotations

import asyncio
import inspect
import math
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, NoReturn, ParamSpec, TypeVar, overload

from cairn.resilience._clock import DEFAULT_CLOCK, Clock
from cairn.resilience._events import HedgeLaunched, Listener, emit
from cairn.resilience._fallback import ExceptionFilter, exception_matcher
from cairn.resilience._policy import Policy
from cairn.resilience._timeout import check_clock, check_listeners, check_name

__all__ = ["Hedge"]

P = ParamSpec("P")
T = TypeVar("T")


class _Hedging:
    """One hedged call's bookkeeping: attempts started, and the last hedgeable failure."""

    __slots__ = ("last_error", "launched", "matches", "max_attempts")

    def __init__(self, max_attempts: int, matches: Callable[[Exception], bool]) -> None:
        self.max_attempts = max_attempts
        self.matches = matches
        self.launched = 0
        self.last_error: Exception | None = None

    @property
    def can_launch(self) -> bool:
        return self.launched < self.max_attempts

    def launch(self) -> int:
        """Count a new attempt; returns its number (1 is the original call)."""
        self.launched += 1
        return self.launched

    def to_launch(self, *, failures: int, timer_fired: bool) -> int:
        """How many attempts to start now: one per hedgeable failure (a fast
        failure does not wait for the delay), one if the delay ran out."""
        return min(failures + timer_fired, self.max_attempts - self.launched)

    def failed(self, error: BaseException) -> bool:
        """An attempt failed: ``True`` if others may still answer, ``False`` to propagate it."""
        if isinstance(error, Exception) and self.matches(error):
            self.last_error = error
            return True
        return False


def _retrieve(attempt: asyncio.Future[Any]) -> None:
    # Mark every attempt's exception as seen, so a loser that failed while
    # being cancelled never logs "Task exception was never retrieved".
    if not attempt.cancelled():
        attempt.exception()


async def _cancel_and_wait(tasks: Iterable[asyncio.Future[Any]]) -> None:
    """Cancel ``tasks`` and wait until each has finished its cleanup."""
    pending = [task for task in tasks if not task.done()]
    for task in pending:
        task.cancel()
    interrupted: asyncio.CancelledError | None = None
    while pending:
        try:
            await asyncio.wait(pending)
        except asyncio.CancelledError as exc:
            # Cancelled while cleaning up: the losers still finish first, so
            # none outlives the call, then the cancellation goes on.
            interrupted = exc
        pending = [task for task in pending if not task.done()]
    if interrupted is not None:
        raise interrupted


class Hedge(Policy):
    """Start another attempt if the call has not answered within ``delay`` seconds.

    - ``delay``: seconds to wait for an answer before the next attempt
      starts; ``0`` starts all attempts at once. An attempt that fails with a
      matching exception starts the next one at once instead.
    - ``max_attempts`` (default 2): attempts in total, the original included.
    - ``on`` (default ``Exception``): failures that let the other attempts go
      on; any other exception propagates at once.

    The first success wins; the other attempts are cancelled and awaited (so
    their ``finally`` blocks have run) before it is returned. If every
    attempt fails, the last failure is raised. Async only: ``await
    hedge.acall(fn)`` or the decorator on a coroutine function. Emits
    :class:`~cairn.resilience.HedgeLaunched` for every attempt after the
    first. Hedged calls must be safe to run more than once (idempotent).
    """

    __slots__ = ("_clock", "_listeners", "_matches", "delay", "max_attempts", "name")

    def __init__(
        self,
        *,
        delay: float,
        max_attempts: int = 2,
        on: ExceptionFilter = Exception,
        name: str = "hedge",
        clock: Clock = DEFAULT_CLOCK,
        listeners: Iterable[Listener] = (),
    ) -> None:
        if (
            isinstance(delay, bool)
            or not isinstance(delay, int | float)
            or not math.isfinite(delay)
            or delay < 0
        ):
            raise ValueError(
                f"delay must be a finite number of seconds >= 0 (0 = all attempts at once), "
                f"got {delay!r}"
            )
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise ValueError(
                f"max_attempts must be an int >= 1 (the original call included), got {max_attempts!r}"
            )
        self.delay = float(delay)
        self.max_attempts = max_attempts
        self._matches = exception_matcher(on)
        self.name = check_name(name)
        self._clock = check_clock(clock)
        self._listeners = check_listeners(listeners)

    def __repr__(self) -> str:
        return f"Hedge(delay={self.delay!r}, max_attempts={self.max_attempts}, name={self.name!r})"

    def _not_sync(self, fn: Callable[..., Any]) -> NoReturn:
        raise TypeError(
            f"hedge {self.name!r} cannot run {getattr(fn, '__qualname__', fn)!r}: hedging "
            "runs several attempts concurrently, which needs asyncio tasks. Use "
            "`await hedge.acall(fn)` on a coroutine function (blocking code can be "
            "wrapped with asyncio.to_thread)"
        )

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Always raises ``TypeError``: hedging needs ``acall``."""
        self._not_sync(fn)

    @overload
    def __call__(self, fn: Callable[P, Awaitable[T]], /) -> Callable[P, Awaitable[T]]: ...
    @overload
    def __call__(self, fn: Callable[P, T], /) -> Callable[P, T]: ...
    def __call__(self, fn: Callable[P, Any], /) -> Callable[P, Any]:
        """Decorate a coroutine function; a plain function raises ``TypeError`` at once."""
        if not inspect.iscoroutinefunction(fn):
            self._not_sync(fn)
        return super().__call__(fn)

    async def acall(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Await ``fn`` with hedged attempts; the first success is returned."""
        hedging = _Hedging(self.max_attempts, self._matches)
        attempts: dict[asyncio.Future[T], int] = {}
        timer: asyncio.Future[None] | None = None
        retired: list[asyncio.Future[None]] = []  # timers made moot, still to reap
        clock = self._clock

        def launch() -> None:
            number = hedging.launch()
            if number > 1:
                emit(
                    HedgeLaunched(policy=self.name, at=clock.monotonic(), attempt=number),
                    self._listeners,
                )
            attempt = asyncio.ensure_future(fn(*args, **kwargs))
            attempt.add_done_callback(_retrieve)
            attempts[attempt] = number

        try:
            launch()
            while True:
                if self.delay == 0:
                    while hedging.can_launch:
                        launch()
                elif timer is None and hedging.can_launch:
                    timer = asyncio.ensure_future(clock.asleep(self.delay))
                waiting: set[asyncio.Future[Any]] = set(attempts)
                if timer is not None:
                    waiting.add(timer)
                done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                finished = sorted((a for a in done if a in attempts), key=attempts.__getitem__)
                for attempt in finished:
                    if not attempt.cancelled() and attempt.exception() is None:
                        winner: T = attempt.result()
                        return winner
                hedgeable = 0
                for attempt in finished:
                    del attempts[attempt]
                    if attempt.cancelled():
                        attempt.result()  # raises CancelledError: never hedged
                    error = attempt.exception()
                    assert error is not None
                    if not hedging.failed(error):
                        raise error
                    hedgeable += 1
                fired = timer is not None and timer in done
                if fired:
                    timer = None
                count = hedging.to_launch(failures=hedgeable, timer_fired=fired)
                if count and timer is not None:
                    # The next hedge counts its delay from this launch.
                    timer.cancel()
                    retired.append(timer)
                    timer = None
                for _ in range(count):
                    launch()
                if not attempts:
                    assert hedging.last_error is not None
                    raise hedging.last_error
        finally:
            leftovers: list[asyncio.Future[Any]] = [*attempts, *retired]
            if timer is not None:
                leftovers.append(timer)
            await _cancel_and_wait(leftovers)
