"""The shape every policy shares: call it, await it, or decorate with it."""

from __future__ import annotations

import functools
import inspect
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar, cast, overload

__all__ = ["Policy"]

P = ParamSpec("P")
T = TypeVar("T")


class Policy(ABC):
    """A resilience policy: wraps one call of a function, sync or async.

    - ``policy.call(fn, *args, **kwargs)`` runs ``fn`` under the policy;
    - ``await policy.acall(fn, *args, **kwargs)`` does the same for a
      coroutine function;
    - ``@policy`` decorates either kind, picking the right one.

    Policies compose in :class:`cairn.resilience.Pipeline`, outermost first.
    """

    __slots__ = ()

    name: str

    @abstractmethod
    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(*args, **kwargs)`` under this policy."""

    @abstractmethod
    async def acall(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Await ``fn(*args, **kwargs)`` under this policy."""

    @overload
    def __call__(self, fn: Callable[P, Awaitable[T]], /) -> Callable[P, Awaitable[T]]: ...
    @overload
    def __call__(self, fn: Callable[P, T], /) -> Callable[P, T]: ...
    def __call__(self, fn: Callable[P, Any], /) -> Callable[P, Any]:
        """Decorate ``fn`` (a plain or a coroutine function) with this policy."""
        if inspect.iscoroutinefunction(fn):
            acall = self.acall

            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                return await acall(fn, *args, **kwargs)

            return cast("Callable[P, Any]", async_wrapper)

        call = self.call

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            return call(fn, *args, **kwargs)

        return wrapper
