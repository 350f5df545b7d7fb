"""Retry: try a call again after failures, with stop, wait, deadline and budget.

The decision logic is written once, in :class:`_Run`, a per-call state
machine that never sleeps or awaits: told how an attempt ended and what time
it is, it answers with the delay before the next attempt, or gives up. Three
thin drivers run it: :meth:`Retry.call` (``clock.sleep``), :meth:`Retry.acall`
(``await clock.asleep``), and the :meth:`Retry.attempts` iterator.

The success path pays for one clock read and a ``try``: the state machine,
the :class:`RetryState` records and the events only exist once a call fails.
"""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, NoReturn, ParamSpec, Protocol, TypeVar, cast, overload

from cairn.resilience._budget import RetryBudget
from cairn.resilience._clock import DEFAULT_CLOCK, Clock
from cairn.resilience._deadline import current_deadline
from cairn.resilience._errors import RetryError
from cairn.resilience._events import Listener, RetryGaveUp, RetryScheduled, emit
from cairn.resilience._policy import Policy
from cairn.resilience._stop import RetryState, StopFunc, stop_after_attempt
from cairn.resilience._wait import WaitFunc, wait_full_jitter

__all__ = ["Attempt", "Attempts", "Retry", "RetryDecorator", "RetryOn", "retry"]

P = ParamSpec("P")
T = TypeVar("T")

RetryOn = type[Exception] | tuple[type[Exception], ...] | Callable[[Exception], bool]
"""What to retry: exception types, or a predicate on the exception."""

_DEFAULT_STOP = stop_after_attempt(3)
_DEFAULT_WAIT = wait_full_jitter(base=0.1, cap=5.0)
# One shared generator: random.Random's methods are atomic under the GIL.
_DEFAULT_RNG = random.Random()


def _split_retry_on(
    retry_on: RetryOn,
) -> tuple[tuple[type[Exception], ...], Callable[[Exception], bool] | None]:
    """``retry_on`` as (exception types, predicate); one of the two is unused."""
    if not isinstance(retry_on, tuple | type):
        if not callable(retry_on):
            raise TypeError(f"retry_on takes exception types or a predicate, got {retry_on!r}")
        return (), retry_on
    types = retry_on if isinstance(retry_on, tuple) else (retry_on,)
    if not types:
        raise ValueError("retry_on=() retries nothing; name the exceptions to retry on")
    for kind in types:
        if not (isinstance(kind, type) and issubclass(kind, BaseException)):
            raise TypeError(f"retry_on takes exception types or a predicate, got {kind!r}")
        if not issubclass(kind, Exception):
            raise ValueError(
                f"retry_on={kind.__name__}: only Exception subclasses can be retried; "
                "KeyboardInterrupt, SystemExit and CancelledError always propagate"
            )
    return types, None


class Retry(Policy):
    """Run a call again when it fails, until a stop strategy, deadline or budget says no.

    All options are keyword-only:

    - ``stop``: when to give up (default ``stop_after_attempt(3)``); stop
      strategies combine with ``|`` (any) and ``&`` (all).
    - ``wait``: how long to wait between attempts (default
      ``wait_full_jitter(base=0.1, cap=5.0)``). A zero wait retries without
      calling the clock's sleep at all.
    - ``retry_on``: exception types, or a predicate on the exception (default
      ``Exception``: every error is retried, as tenacity does). An error that
      does not match propagates at once, unchanged. Whatever is not an
      ``Exception`` (``KeyboardInterrupt``, ``asyncio.CancelledError``, …) is
      never retried.
    - ``retry_if_result``: a predicate; a result it accepts is retried too.
    - ``hint``: given the exception or the retryable result, returns the delay
      the server asked for (such as ``Retry-After``, see
      :func:`parse_retry_after`) or ``None``; a delay replaces the computed wait.
    - ``deadline``: seconds from the start of the first attempt. No wait may
      end past it (nor past the deadline inherited from an outer timeout): a
      retry that would cross it gives up at once, with reason ``"deadline"``.
    - ``budget``: a shared :class:`RetryBudget`; when it refuses, the retry
      gives up with reason ``"budget"``.
    - ``reraise``: what giving up looks like. With ``True`` (the default), the
      last exception is re-raised as it was, and when the last attempt
      *returned* a retryable result, **that result is returned** to the
      caller. With ``False``, :class:`RetryError` is raised instead, holding
      the last exception (and chained ``from`` it) or the last result.
    - ``name`` (for events and errors), ``clock``, ``rng`` (the
      :class:`random.Random` jittered waits draw from), ``listeners`` (this
      policy's own event listeners, called before the global ones).

    Events: :class:`RetryScheduled` before each wait, :class:`RetryGaveUp`
    when giving up; nothing while calls succeed.
    """

    __slots__ = (
        "_retry_pred",
        "_retry_types",
        "budget",
        "clock",
        "deadline",
        "hint",
        "listeners",
        "name",
        "reraise",
        "retry_if_result",
        "retry_on",
        "rng",
        "stop",
        "wait",
    )

    def __init__(
        self,
        *,
        stop: StopFunc = _DEFAULT_STOP,
        wait: WaitFunc = _DEFAULT_WAIT,
        retry_on: RetryOn = Exception,
        retry_if_result: Callable[[Any], bool] | None = None,
        hint: Callable[[Any], float | None] | None = None,
        deadline: float | None = None,
        budget: RetryBudget | None = None,
        reraise: bool = True,
        name: str = "retry",
        clock: Clock = DEFAULT_CLOCK,
        rng: random.Random | None = None,
        listeners: tuple[Listener, ...] = (),
    ) -> None:
        for option, strategy in (("stop", stop), ("wait", wait)):
            if not callable(strategy):
                raise TypeError(f"Retry({option}=) takes a strategy, got {strategy!r}")
        for option, function in (("retry_if_result", retry_if_result), ("hint", hint)):
            if function is not None and not callable(function):
                raise TypeError(f"Retry({option}=) takes a function or None, got {function!r}")
        if deadline is not None:
            if isinstance(deadline, bool) or not isinstance(deadline, int | float):
                raise TypeError(f"Retry(deadline=) takes seconds or None, got {deadline!r}")
            if not (math.isfinite(deadline) and deadline > 0):
                raise ValueError(
                    f"Retry(deadline={deadline!r}): the deadline must be a finite number of "
                    "seconds > 0, or None for no deadline"
                )
        if budget is not None and not isinstance(budget, RetryBudget):
            raise TypeError(f"Retry(budget=) takes a RetryBudget or None, got {budget!r}")
        if not isinstance(name, str) or not name:
            raise ValueError(f"Retry(name={name!r}): give the policy a non-empty name")
        if not isinstance(clock, Clock):
            raise TypeError(f"Retry(clock=) takes a Clock, got {clock!r}")
        if rng is not None and not isinstance(rng, random.Random):
            raise TypeError(f"Retry(rng=) takes a random.Random or None, got {rng!r}")
        if not isinstance(listeners, tuple) or not all(map(callable, listeners)):
            raise TypeError(f"Retry(listeners=) takes a tuple of callables, got {listeners!r}")
        self._retry_types, self._retry_pred = _split_retry_on(retry_on)
        self.stop = stop
        self.wait = wait
        self.retry_on = retry_on
        self.retry_if_result = retry_if_result
        self.hint = hint
        self.deadline = None if deadline is None else float(deadline)
        self.budget = budget
        self.reraise = bool(reraise)
        self.name = name
        self.clock = clock
        self.rng = _DEFAULT_RNG if rng is None else rng
        self.listeners = listeners

    def __repr__(self) -> str:
        return f"Retry(name={self.name!r}, stop={self.stop!r}, wait={self.wait!r})"

    def _renamed(self, name: str) -> Retry:
        clone = copy.copy(self)
        clone.name = name
        return clone

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(*args, **kwargs)``, retrying as configured."""
        start = self.clock.monotonic()
        if self.budget is not None:
            self.budget.deposit()
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:
            error = exc  # retried outside this block: later errors must not chain to it
        else:
            if self.retry_if_result is None or not self.retry_if_result(result):
                return result
            return cast("T", self._call_again(start, None, result, fn, args, kwargs))
        return cast("T", self._call_again(start, error, None, fn, args, kwargs))

    def _call_again(
        self,
        start: float,
        error: Exception | None,
        result: object,
        fn: Callable[..., object],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> object:
        run = _Run(self, start)
        sleep = self.clock.sleep
        while True:
            delay = run.after(error, result, self.clock.monotonic())
            if delay is None:
                return run.finish(error, result)
            if delay > 0:
                sleep(delay)
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:
                error, result = exc, None
            else:
                error = None

    async def acall(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Await ``fn(*args, **kwargs)``, retrying as configured."""
        start = self.clock.monotonic()
        if self.budget is not None:
            self.budget.deposit()
        try:
            result = await fn(*args, **kwargs)
        except Exception as exc:
            error = exc  # retried outside this block: later errors must not chain to it
        else:
            if self.retry_if_result is None or not self.retry_if_result(result):
                return result
            return cast("T", await self._acall_again(start, None, result, fn, args, kwargs))
        return cast("T", await self._acall_again(start, error, None, fn, args, kwargs))

    async def _acall_again(
        self,
        start: float,
        error: Exception | None,
        result: object,
        fn: Callable[..., Awaitable[object]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> object:
        run = _Run(self, start)
        asleep = self.clock.asleep
        while True:
            delay = run.after(error, result, self.clock.monotonic())
            if delay is None:
                return run.finish(error, result)
            if delay > 0:
                await asleep(delay)  # a cancellation here propagates: never retried
            try:
                result = await fn(*args, **kwargs)
            except Exception as exc:
                error, result = exc, None
            else:
                error = None

    def attempts(self) -> Attempts:
        """Iterate over attempts, tenacity-style, sync or async::

            for attempt in policy.attempts():
                with attempt:
                    do_something()

            async for attempt in policy.attempts():
                with attempt:
                    await do_something()

        An exception inside ``with attempt`` that will be retried is swallowed
        (keep all the work inside the ``with``); one that will not propagates
        from the ``with``. The loop ends after an attempt that does not fail.
        To retry on results, hand the result over with :meth:`Attempt.set_result`.
        """
        return Attempts(self)


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


class RetryDecorator(Protocol):
    """What ``retry(...)`` returns: a decorator for plain and coroutine functions."""

    @overload
    def __call__(self, fn: Callable[P, Awaitable[T]], /) -> Callable[P, Awaitable[T]]: ...
    @overload
    def __call__(self, fn: Callable[P, T], /) -> Callable[P, T]: ...


@overload
def retry(fn: Callable[P, T], /) -> Callable[P, T]: ...
@overload
def retry(
    *,
    stop: StopFunc = ...,
    wait: WaitFunc = ...,
    retry_on: RetryOn = ...,
    retry_if_result: Callable[[Any], bool] | None = ...,
    hint: Callable[[Any], float | None] | None = ...,
    deadline: float | None = ...,
    budget: RetryBudget | None = ...,
    reraise: bool = ...,
    name: str | None = ...,
    clock: Clock = ...,
    rng: random.Random | None = ...,
    listeners: tuple[Listener, ...] = ...,
) -> RetryDecorator: ...
def retry(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    stop: StopFunc = _DEFAULT_STOP,
    wait: WaitFunc = _DEFAULT_WAIT,
    retry_on: RetryOn = Exception,
    retry_if_result: Callable[[Any], bool] | None = None,
    hint: Callable[[Any], float | None] | None = None,
    deadline: float | None = None,
    budget: RetryBudget | None = None,
    reraise: bool = True,
    name: str | None = None,
    clock: Clock = DEFAULT_CLOCK,
    rng: random.Random | None = None,
    listeners: tuple[Listener, ...] = (),
) -> Any:
    """Decorate a function (plain or ``async``) with a :class:`Retry` policy.

    Use it bare, ``@retry``, for the defaults, or configured, ``@retry(stop=...,
    wait=...)``, with the options of :class:`Retry`. The policy is named after
    the function's qualified name unless ``name`` is given. Configuration is
    checked when ``retry(...)`` is called, not on the first call.
    """
    policy = Retry(
        stop=stop,
        wait=wait,
        retry_on=retry_on,
        retry_if_result=retry_if_result,
        hint=hint,
        deadline=deadline,
        budget=budget,
        reraise=reraise,
        name="retry" if name is None else name,
        clock=clock,
        rng=rng,
        listeners=listeners,
    )

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        named = policy._renamed(func.__qualname__) if name is None else policy
        return named(func)

    return decorate if fn is None else decorate(fn)
