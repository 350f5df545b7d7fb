"""The circuit breaker: stop calling what keeps failing, and try again later.

This module holds what callers touch: ``CircuitBreaker``'s call, await,
decorator and ``with`` forms, and the ``circuit`` decorator factory. The
decisions are made by the state machine in ``_breaker_state.py``.

Speed matters more here than anywhere else in cairn, since every protected
call pays for the breaker. While CLOSED with the default detector
(consecutive failures) a call costs one attribute read, one counter step, and
on success a reset of the failure counter only if it is nonzero: no lock, no
clock read. The lock guards only transitions and half-open permits, and is
never held while the protected call runs, so that call may itself query or
steer the breaker.

The decorator's two hot paths (that CLOSED path, and a rejection in OPEN) run
in C when the optional extension ``_speedups`` is built (``CAIRN_NO_SPEEDUPS=1``
turns it off): it reads the same fields and calls the same ``_settle()``, and
every other path goes to the Python wrapper below, which also runs everything
where the extension is not built.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Awaitable, Callable, Iterable
from contextvars import ContextVar
from types import ModuleType, TracebackType
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
from cairn.resilience._breaker_state import _OPEN, BreakerMachine, BreakerStats
from cairn.resilience._clock import Clock
from cairn.resilience._errors import CircuitOpenError
from cairn.resilience._events import Listener
from cairn.resilience._policy import Policy

__all__ = ["BreakerStats", "CircuitBreaker", "CircuitProtected", "circuit"]

_speedups: ModuleType | None
try:
    from cairn.resilience import _speedups
except ImportError:  # not built (no compiler at install): the Python wrapper does it all
    _speedups = None
if os.environ.get("CAIRN_NO_SPEEDUPS"):
    _speedups = None

P = ParamSpec("P")
T = TypeVar("T")
R_co = TypeVar("R_co", covariant=True)


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


class CircuitBreaker(BreakerMachine, Policy):
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

    __slots__ = ()

    def __repr__(self) -> str:
        return f"CircuitBreaker(name={self.name!r}, state={self._state.value})"

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
        if _speedups is not None:
            wrapper = self._speedy(_speedups, fn, wrapper)
        return cast("CircuitProtected[P, T]", wrapper)

    def _speedy(self, speedups: ModuleType, fn: Callable[..., Any], wrapper: Any) -> Any:
        """The C form of ``wrapper``: the same function to every caller and to ``inspect``."""
        is_async = inspect.iscoroutinefunction(wrapper)
        fast = speedups.Protected(
            breaker=self,
            fn=fn,
            slow=wrapper,
            calls=self._calls,
            rejections=self._rejections,
            error=CircuitOpenError,
            open_state=_OPEN,
            clock=self.clock,
            listeners=self._listeners,
            events=vars(_events),
            is_async=is_async,
        )
        functools.update_wrapper(fast, fn)
        # What inspect and frameworks read of a function (the C type also says
        # it is one to isinstance): the Python wrapper's own code (``*args,
        # **kwargs``, a coroutine's flags when async) and globals, so that
        # iscoroutinefunction(), signature() and the rest answer as for it.
        fast.__code__ = wrapper.__code__
        fast.__defaults__ = None
        fast.__kwdefaults__ = None
        fast.__globals__ = wrapper.__globals__
        fast.breaker = self
        return fast

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
