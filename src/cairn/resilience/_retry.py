"""Retry: try a call again after failures, with stop, wait, deadline and budget.

The decision logic is written once, in ``_retry_run._Run``, a per-call state
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
from typing import Any, ParamSpec, Protocol, TypeVar, cast, overload

from cairn.resilience._budget import RetryBudget
from cairn.resilience._clock import DEFAULT_CLOCK, Clock
from cairn.resilience._events import Listener
from cairn.resilience._policy import Policy
from cairn.resilience._retry_run import Attempt, Attempts, _Run
from cairn.resilience._stop import StopFunc, stop_after_attempt
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
