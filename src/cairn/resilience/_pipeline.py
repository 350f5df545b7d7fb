"""Compose policies into one, outermost first.

The order is the order written::

    Pipeline(Timeout(seconds=10), Retry(...), CircuitBreaker(...), Timeout(seconds=2))

reads "a total timeout of 10 s around retries, each attempt going through the
breaker and an attempt timeout of 2 s" — the order of .NET's standard
resilience handler and of resilience4j's recommended decoration.

A pipeline is itself a :class:`Policy`: ``call``, ``acall`` and decorator.
It is also a context manager (``with``/``async with``) when every policy in it
is one and none needs to run the body again; with a retry inside, iterate
instead — ``for attempt in pipeline.attempts(): with attempt: ...`` (and
``async for``), so each attempt enters the policies inside the retry anew.
"""

from __future__ import annotations

import contextvars
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import (
    AbstractAsyncContextManager,
    AbstractContextManager,
    AsyncExitStack,
    ExitStack,
)
from types import TracebackType
from typing import Any, ParamSpec, Protocol, TypeVar, cast

from cairn.resilience._policy import Policy

__all__ = ["Pipeline"]

P = ParamSpec("P")
T = TypeVar("T")


class _Attempt(Protocol):
    def __enter__(self) -> object: ...
    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> bool | None: ...


class _Retrying(Protocol):
    def attempts(self) -> Any: ...


class Pipeline(Policy):
    """Several policies applied as one, the first listed outermost."""

    __slots__ = ("_async_stacks", "_n", "_policies", "_retry_at", "_stacks", "name")

    def __init__(self, *policies: Policy, name: str = "pipeline") -> None:
        if not policies:
            raise ValueError(
                "Pipeline() needs at least one policy, e.g. Pipeline(Retry(), CircuitBreaker())"
            )
        for index, policy in enumerate(policies):
            if not isinstance(policy, Policy):
                raise TypeError(
                    f"Pipeline argument {index} is {policy!r}, not a cairn policy; "
                    "pass Retry, CircuitBreaker, Timeout, Bulkhead, Fallback, Hedge or Pipeline objects"
                )
        retrying = [i for i, p in enumerate(policies) if hasattr(p, "attempts")]
        self.name = name
        self._policies = tuple(policies)
        self._n = len(policies)
        self._retry_at = retrying[0] if len(retrying) == 1 else None if not retrying else -1
        # Per-context stacks, so one pipeline object serves many threads and
        # tasks through `with pipeline:` at once.
        self._stacks: contextvars.ContextVar[tuple[ExitStack, ...]] = contextvars.ContextVar(
            f"cairn_pipeline_{id(self)}", default=()
        )
        self._async_stacks: contextvars.ContextVar[tuple[AsyncExitStack, ...]] = (
            contextvars.ContextVar(f"cairn_apipeline_{id(self)}", default=())
        )

    @property
    def policies(self) -> tuple[Policy, ...]:
        """The policies, outermost first."""
        return self._policies

    def __repr__(self) -> str:
        inner = ", ".join(repr(p) for p in self._policies)
        return f"Pipeline({inner}, name={self.name!r})"

    # -- call / acall ---------------------------------------------------------

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        return cast("T", self._call(0, fn, args, kwargs))

    def _call(self, index: int, fn: Callable[..., Any], args: Any, kwargs: Any) -> Any:
        if index == self._n:
            return fn(*args, **kwargs)
        return self._policies[index].call(self._call, index + 1, fn, args, kwargs)

    async def acall(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        return cast("T", await self._acall(0, fn, args, kwargs))

    async def _acall(self, index: int, fn: Callable[..., Any], args: Any, kwargs: Any) -> Any:
        if index == self._n:
            return await fn(*args, **kwargs)
        return await self._policies[index].acall(self._acall, index + 1, fn, args, kwargs)

    # -- context-manager forms ---------------------------------------------

    def _check_block_form(self, policies: tuple[Policy, ...], kind: str) -> None:
        for policy in policies:
            if hasattr(policy, "attempts"):
                raise TypeError(
                    f"{self.name!r} holds {type(policy).__name__}, which runs the body again; "
                    f"a `{kind}` block runs once. Use `for attempt in pipeline.attempts(): "
                    "with attempt: ...` (or `async for`) instead."
                )
            method = "__aenter__" if kind == "async with" else "__enter__"
            if not hasattr(policy, method):
                raise TypeError(
                    f"{type(policy).__name__} cannot guard a `{kind}` block; "
                    "decorate a function or use pipeline.call()/acall() instead"
                )

    def __enter__(self) -> Pipeline:
        self._check_block_form(self._policies, "with")
        stack = ExitStack()
        try:
            for policy in self._policies:
                stack.enter_context(cast("AbstractContextManager[object]", policy))
        except BaseException:
            stack.close()
            raise
        self._stacks.set((*self._stacks.get(), stack))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        *rest, stack = self._stacks.get()
        self._stacks.set(tuple(rest))
        return bool(stack.__exit__(exc_type, exc, tb))

    async def __aenter__(self) -> Pipeline:
        self._check_block_form(self._policies, "async with")
        stack = AsyncExitStack()
        try:
            for policy in self._policies:
                await stack.enter_async_context(cast("AbstractAsyncContextManager[object]", policy))
        except BaseException:
            await stack.aclose()
            raise
        self._async_stacks.set((*self._async_stacks.get(), stack))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        *rest, stack = self._async_stacks.get()
        self._async_stacks.set(tuple(rest))
        return bool(await stack.__aexit__(exc_type, exc, tb))

    # -- attempts ----------------------------------------------------------

    def _split(self) -> tuple[tuple[Policy, ...], _Retrying, tuple[Policy, ...]]:
        if self._retry_at is None:
            raise TypeError(
                f"{self.name!r} holds no retry, so there is only one attempt: use `with pipeline:`"
            )
        if self._retry_at == -1:
            raise TypeError(
                f"{self.name!r} holds more than one retry; attempts() needs exactly one"
            )
        at = self._retry_at
        return self._policies[:at], cast("_Retrying", self._policies[at]), self._policies[at + 1 :]

    def attempts(self) -> Iterator[_PipelineAttempt]:
        """Iterate the retry's attempts; ``with attempt:`` enters the inner policies."""
        outer, retrying, inner = self._split()
        self._check_block_form(outer, "with")
        self._check_block_form(inner, "with")
        with ExitStack() as stack:
            for policy in outer:
                stack.enter_context(cast("AbstractContextManager[object]", policy))
            for attempt in retrying.attempts():
                yield _PipelineAttempt(attempt, inner)

    async def aattempts(self) -> AsyncIterator[_AsyncPipelineAttempt]:
        """The async form of :meth:`attempts`: ``async for`` and ``async with attempt``."""
        outer, retrying, inner = self._split()
        self._check_block_form(outer, "async with")
        self._check_block_form(inner, "async with")
        async with AsyncExitStack() as stack:
            for policy in outer:
                await stack.enter_async_context(cast("AbstractAsyncContextManager[object]", policy))
            async for attempt in retrying.attempts():
                yield _AsyncPipelineAttempt(attempt, inner)


class _PipelineAttempt:
    """One attempt: the retry's attempt around the inner policies' guards."""

    __slots__ = ("_attempt", "_inner", "_stack")

    def __init__(self, attempt: _Attempt, inner: tuple[Policy, ...]) -> None:
        self._attempt = attempt
        self._inner = inner
        self._stack = ExitStack()

    def __enter__(self) -> object:
        entered = self._attempt.__enter__()
        self._stack.push(self._attempt)
        for policy in self._inner:
            self._stack.enter_context(cast("AbstractContextManager[object]", policy))
        return entered

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        return bool(self._stack.__exit__(exc_type, exc, tb))


class _AsyncPipelineAttempt:
    """One async attempt: ``async with attempt:`` enters the inner async guards."""

    __slots__ = ("_attempt", "_inner", "_stack")

    def __init__(self, attempt: _Attempt, inner: tuple[Policy, ...]) -> None:
        self._attempt = attempt
        self._inner = inner
        self._stack = AsyncExitStack()

    async def __aenter__(self) -> object:
        entered = self._attempt.__enter__()
        self._stack.push(self._attempt)
        for policy in self._inner:
            await self._stack.enter_async_context(
                cast("AbstractAsyncContextManager[object]", policy)
            )
        return entered

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        return bool(await self._stack.__aexit__(exc_type, exc, tb))
