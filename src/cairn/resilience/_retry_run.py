"""One retried call: the state machine that decides, and the attempts iterator.

:class:`_Run` is told how each attempt ended and what time it is; it answers
with the delay before the next attempt, or gives up. It never sleeps nor
awaits: :meth:`Retry.call`, :meth:`Retry.acall` and :class:`Attempts` (the
``for``/``async for`` form) are the drivers that wait.
"""

from __future__ import annotations

import math
from types import TracebackType
from typing import TYPE_CHECKING, NoReturn, cast

from cairn.resilience._deadline import current_deadline
from cairn.resilience._errors import RetryError
from cairn.resilience._events import RetryGaveUp, RetryScheduled, emit
from cairn.resilience._stop import RetryState

if TYPE_CHECKING:
    from cairn.resilience._retry import Retry

__all__ = ["Attempt", "Attempts", "_Run"]


class _Run:
    """One call's retry state machine: decides, never sleeps nor awaits."""

    __slots__ = ("attempt", "deadline", "policy", "previous_delay", "reason", "start")

    def __init__(self, policy: Retry, start: float) -> None:
        self.policy = policy
        self.start = start
        self.attempt = 1
        self.previous_delay: float | None = None
        self.reason: str | None = None
        self.deadline = math.inf if policy.deadline is None else start + policy.deadline

    def after(self, error: Exception | None, result: object, now: float) -> float | None:
        """The attempt ended (``error``, or else ``result``) at ``now``: seconds until
        the next one, or ``None`` when there is none (then :attr:`reason` says
        why: ``None`` when the outcome was not retryable)."""
        policy = self.policy
        if error is not None:
            predicate = policy._retry_pred
            if predicate is None:
                if not isinstance(error, policy._retry_types):
                    return None
            elif not predicate(error):
                return None
            result = None
        elif policy.retry_if_result is None or not policy.retry_if_result(result):
            return None
        state = RetryState(
            self.attempt, now - self.start, self.previous_delay, error, result, policy.rng
        )
        if policy.stop(state):
            self._give_up("stop", error, now)
            return None
        delay = None if policy.hint is None else policy.hint(result if error is None else error)
        if delay is None:
            delay = policy.wait(state)
        if not delay >= 0:  # negative or NaN from a custom strategy or hint
            delay = 0.0
        deadline = self.deadline
        inherited = current_deadline()
        if inherited is not None and inherited < deadline:
            deadline = inherited
        if now + delay > deadline:
            self._give_up("deadline", error, now)
            return None
        if policy.budget is not None and not policy.budget.try_withdraw():
            self._give_up("budget", error, now)
            return None
        emit(
            RetryScheduled(
                policy=policy.name, at=now, attempt=self.attempt, delay=delay, error=error
            ),
            policy.listeners,
        )
        self.attempt += 1
        self.previous_delay = delay
        return delay

    def _give_up(self, reason: str, error: Exception | None, now: float) -> None:
        self.reason = reason
        emit(
            RetryGaveUp(
                policy=self.policy.name, at=now, attempts=self.attempt, reason=reason, error=error
            ),
            self.policy.listeners,
        )

    def give_up_error(self, result: object) -> RetryError:
        return RetryError(self.policy.name, self.attempt, cast("str", self.reason), None, result)

    def finish(self, error: Exception | None, result: object) -> object:
        """What the caller gets once :meth:`after` said ``None``."""
        if error is not None:
            self.raise_(error)
        if self.reason is not None and not self.policy.reraise:
            raise self.give_up_error(result)
        return result

    def raise_(self, error: Exception) -> NoReturn:
        try:
            if self.reason is None or self.policy.reraise:
                raise error
            raise RetryError(self.policy.name, self.attempt, self.reason, error) from error
        finally:
            del error  # the traceback holds this frame: break the cycle


class Attempt:
    """One attempt of :meth:`Retry.attempts`; use it as a context manager."""

    __slots__ = ("_delay", "_has_result", "_result", "_run", "number")

    def __init__(self, run: _Run) -> None:
        self._run = run
        self.number = run.attempt
        """1 for the first attempt."""
        self._delay: float | None = None
        self._result: object = None
        self._has_result = False

    def __repr__(self) -> str:
        return f"<Attempt {self.number} of {self._run.policy.name!r}>"

    def set_result(self, result: object) -> None:
        """Hand the attempt's result over, for ``retry_if_result`` to judge."""
        self._result = result
        self._has_result = True

    def __enter__(self) -> Attempt:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        run = self._run
        if exc is None:
            if self._has_result:
                self._delay = run.after(None, self._result, run.policy.clock.monotonic())
                if self._delay is None:
                    run.finish(None, self._result)
            return False
        if not isinstance(exc, Exception):
            return False  # KeyboardInterrupt, CancelledError, …: never retried
        self._delay = run.after(exc, None, run.policy.clock.monotonic())
        if self._delay is not None:
            return True  # swallowed: the iterator waits, then yields the next attempt
        if run.reason is not None and not run.policy.reraise:
            raise RetryError(run.policy.name, run.attempt, run.reason, exc) from exc
        return False  # propagates as it was, traceback intact


class Attempts:
    """The iterator :meth:`Retry.attempts` returns: ``for`` or ``async for`` it."""

    __slots__ = ("_attempt", "_policy", "_run")

    def __init__(self, policy: Retry) -> None:
        self._policy = policy
        self._run: _Run | None = None
        self._attempt: Attempt | None = None

    def _step(self) -> tuple[Attempt, float] | None:
        previous, run = self._attempt, self._run
        if previous is None or run is None:
            policy = self._policy
            start = policy.clock.monotonic()
            if policy.budget is not None:
                policy.budget.deposit()
            self._run = run = _Run(policy, start)
            self._attempt = Attempt(run)
            return self._attempt, 0.0
        if previous._delay is None:
            return None
        self._attempt = Attempt(run)
        return self._attempt, previous._delay

    def __iter__(self) -> Attempts:
        return self

    def __next__(self) -> Attempt:
        step = self._step()
        if step is None:
            raise StopIteration
        attempt, delay = step
        if delay > 0:
            self._policy.clock.sleep(delay)
        return attempt

    def __aiter__(self) -> Attempts:
        return self

    async def __anext__(self) -> Attempt:
        step = self._step()
        if step is None:
            raise StopAsyncIteration
        attempt, delay = step
        if delay > 0:
            await self._policy.clock.asleep(delay)
        return attempt
