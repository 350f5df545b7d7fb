"""Fallback: answer with something else when a call fails or returns junk.

Also home of :func:`exception_matcher`, the ``on=`` argument shared with
:class:`~cairn.resilience.Hedge`: exception classes, or a predicate.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, ParamSpec, TypeAlias, TypeVar, cast

from cairn.resilience._clock import DEFAULT_CLOCK, Clock
from cairn.resilience._events import FallbackUsed, Listener, emit
from cairn.resilience._policy import Policy
from cairn.resilience._timeout import check_clock, check_listeners, check_name

__all__ = ["ExceptionFilter", "Fallback", "exception_matcher"]

P = ParamSpec("P")
T = TypeVar("T")

ExceptionFilter: TypeAlias = (
    type[Exception] | tuple[type[Exception], ...] | Callable[[Exception], bool]
)
"""Which failures a policy handles: exception classes, or a predicate on the exception."""


def exception_matcher(on: ExceptionFilter, *, what: str = "on") -> Callable[[Exception], bool]:
    """Turn an ``on=`` argument into a predicate, or raise ``ValueError`` if it makes no sense.

    Only ``Exception`` subclasses are accepted: a ``BaseException`` such as
    ``CancelledError`` or ``KeyboardInterrupt`` must reach the caller, so no
    policy ever handles one (and a predicate is never shown one).
    """
    if isinstance(on, type | tuple):
        classes = on if isinstance(on, tuple) else (on,)
        if not classes:
            raise ValueError(f"{what}=() would never match; pass exception classes or a predicate")
        for cls in classes:
            if not (isinstance(cls, type) and issubclass(cls, Exception)):
                raise ValueError(
                    f"{what} must name Exception subclasses, got {cls!r}; BaseExceptions "
                    "such as CancelledError and KeyboardInterrupt are never handled"
                )
        return lambda error: isinstance(error, classes)
    if callable(on):
        return on
    raise ValueError(
        f"{what} must be an exception class, a tuple of them, or a predicate taking "
        f"the exception; got {on!r}"
    )


class Fallback(Policy):
    """Return ``fallback`` instead of failing.

    - ``on`` (default ``Exception``): the failures to replace, as exception
      classes or a predicate; any other exception propagates unchanged, and
      so does every ``BaseException`` (cancellation, ``KeyboardInterrupt``).
    - ``if_result``: optional predicate; a returned value it accepts is
      replaced too (say, an empty page from a degraded backend).
    - ``fallback``: the value to return, or a callable that makes it. The
      callable receives the exception, or ``None`` when a result was
      replaced. ``call`` needs a plain callable; for ``acall`` it may also be
      a coroutine function (whatever awaitable it returns is awaited). To
      return a function itself, wrap it: ``fallback=lambda _: fn``.

    If the fallback callable raises, that exception propagates, with the
    original failure as its ``__context__``. Emits
    :class:`~cairn.resilience.FallbackUsed` each time it steps in. The
    fallback's type is not checked against the call's: keep them compatible.
    """

    __slots__ = (
        "_async_fallback",
        "_call_fallback",
        "_clock",
        "_fallback",
        "_if_result",
        "_listeners",
        "_matches",
        "name",
    )

    def __init__(
        self,
        *,
        fallback: object,
        on: ExceptionFilter = Exception,
        if_result: Callable[[Any], bool] | None = None,
        name: str = "fallback",
        clock: Clock = DEFAULT_CLOCK,
        listeners: Iterable[Listener] = (),
    ) -> None:
        if if_result is not None and not callable(if_result):
            raise ValueError(f"if_result must be a predicate on the result, got {if_result!r}")
        self._fallback = fallback
        self._call_fallback = callable(fallback)
        self._async_fallback = inspect.iscoroutinefunction(fallback)
        self._matches = exception_matcher(on)
        self._if_result = if_result
        self.name = check_name(name)
        self._clock = check_clock(clock)
        self._listeners = check_listeners(listeners)

    def __repr__(self) -> str:
        return f"Fallback(fallback={self._fallback!r}, name={self.name!r})"

    def _used(self, error: Exception | None) -> Any:
        """Record that the fallback steps in; give back its value (maybe an awaitable)."""
        emit(
            FallbackUsed(policy=self.name, at=self._clock.monotonic(), error=error), self._listeners
        )
        if self._call_fallback:
            return cast("Callable[[Exception | None], Any]", self._fallback)(error)
        return self._fallback

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn``; on a matching failure (or unwanted result) return the fallback."""
        if self._async_fallback:
            raise TypeError(
                f"fallback {self.name!r} is a coroutine function, which a sync call "
                "cannot await; use `await policy.acall(...)` or a plain function"
            )
        try:
            result = fn(*args, **kwargs)
        except Exception as error:
            if not self._matches(error):
                raise
            return cast("T", self._used(error))
        if self._if_result is not None and self._if_result(result):
            return cast("T", self._used(None))
        return result

    async def acall(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Await ``fn``; on a matching failure (or unwanted result) return the fallback."""
        try:
            result = await fn(*args, **kwargs)
        except Exception as error:
            if not self._matches(error):
                raise
            return cast("T", await self._aused(error))
        if self._if_result is not None and self._if_result(result):
            return cast("T", await self._aused(None))
        return result

    async def _aused(self, error: Exception | None) -> Any:
        value = self._used(error)
        if self._call_fallback and inspect.isawaitable(value):
            value = await value
        return value
