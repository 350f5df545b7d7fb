"""Timeout: a time limit on a call, and the time left told to the code inside.

Python can cancel a task but cannot interrupt a thread, so the forms differ:

- ``await timeout.acall(fn)`` and ``async with timeout:`` cancel the work when
  the time is up and raise :class:`~cairn.resilience.TimeoutExceeded`. Only
  their own cancellation becomes ``TimeoutExceeded``: a cancellation from
  outside still propagates as ``CancelledError`` (the ``asyncio.timeout``
  contract, counted with ``Task.uncancel``).
- ``timeout.call(fn)`` is *pessimistic* (Polly's word): it runs ``fn`` in a
  fresh daemon thread, with the caller's context variables, and waits at most
  the limit. On expiry it raises ``TimeoutExceeded`` and abandons the thread,
  which runs on and whose result or error is dropped. Each call pays for
  starting a thread.
- ``with timeout:`` is *cooperative*: it interrupts nothing. The body reads
  the limit with :func:`cairn.resilience.time_left` (an inner retry does so by
  itself), and if the body overran, ``TimeoutExceeded`` is raised at exit.

Every form narrows the shared deadline (``_deadline.deadline_scope``) for the
code it protects, and honours an earlier deadline inherited from outside: an
attempt timeout never outlives the total one. A limit cut short that way is
reported as the time that was actually left.

The deadline is read on the policy's clock, decided at each call. On any
clock but the system clock (a ``cairn.testing.VirtualClock`` passed as
``clock=`` or made the default by ``cairn.testing.virtual_time()``), ``call``
runs ``fn`` inline, exactly like ``with timeout:``: virtual time cannot wake a
thread, and inline the outcome is exact and needs no wall-clock wait. The
async forms then wait on a watcher task sleeping in ``clock.asleep`` instead
of using ``asyncio.timeout``.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import threading
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

from cairn.resilience._clock import DEFAULT_CLOCK, Clock, DefaultClock, SystemClock
from cairn.resilience._deadline import current_deadline, deadline_scope
from cairn.resilience._errors import TimeoutExceeded
from cairn.resilience._events import Listener, TimeoutElapsed, emit
from cairn.resilience._policy import Policy

__all__ = [
    "DeadlineAlarm",
    "Timeout",
    "check_clock",
    "check_listeners",
    "check_name",
    "on_system_clock",
]

P = ParamSpec("P")
T = TypeVar("T")


def check_name(name: object) -> str:
    """Validate a policy ``name`` (shared by the policies of this package)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    return name


def check_clock(clock: object) -> Clock:
    """Validate a policy ``clock`` (a ``TypeError``, as ``Retry`` does)."""
    if not isinstance(clock, Clock):
        raise TypeError(f"clock must be a cairn.resilience.Clock, got {clock!r}")
    return clock


def on_system_clock(clock: Clock) -> bool:
    """Whether ``clock`` reads real time right now, looking through the swappable default."""
    if isinstance(clock, DefaultClock):
        clock = clock.target
    return isinstance(clock, SystemClock)


def check_listeners(listeners: Iterable[Listener]) -> tuple[Listener, ...]:
    """Validate per-policy ``listeners`` into the tuple ``emit`` wants."""
    result = tuple(listeners)
    for listener in result:
        if not callable(listener):
            raise ValueError(f"listeners must be callables taking an event, got {listener!r}")
    return result


class DeadlineAlarm:
    """Cancel the current task when ``clock`` reaches ``deadline`` (an async context manager).

    The ``asyncio.timeout_at`` contract on any clock: if the alarm's own
    cancellation ends the body, ``__aexit__`` raises ``make_error()`` instead;
    any other cancellation (also one that arrives together with the alarm)
    propagates untouched. On the system clock it *is* ``asyncio.timeout``;
    elsewhere a watcher task sleeps in ``clock.asleep`` and cancels the task,
    and the ``cancelling``/``uncancel`` count is kept here the same way.
    """

    __slots__ = (
        "_cancelling",
        "_clock",
        "_deadline",
        "_inner",
        "_make_error",
        "_task",
        "_watcher",
        "fired",
    )

    def __init__(
        self, clock: Clock, deadline: float, make_error: Callable[[], BaseException]
    ) -> None:
        self._clock = clock
        self._deadline = deadline
        self._make_error = make_error
        self._inner: asyncio.Timeout | None = None
        self._task: asyncio.Task[Any] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._cancelling = 0
        self.fired = False
        """Whether the alarm went off (even if the body finished anyway)."""

    async def __aenter__(self) -> None:
        clock = self._clock
        if on_system_clock(clock):
            self._inner = asyncio.timeout(self._deadline - clock.monotonic())
            await self._inner.__aenter__()
            return
        task = asyncio.current_task()
        if task is None:  # pragma: no cover - asyncio always runs coroutines in a task
            raise RuntimeError("a timeout needs to run inside an asyncio task")
        self._task = task
        self._cancelling = task.cancelling()
        self._watcher = asyncio.get_running_loop().create_task(self._watch(task))

    async def _watch(self, task: asyncio.Task[Any]) -> None:
        await self._clock.asleep(max(0.0, self._deadline - self._clock.monotonic()))
        self.fired = True
        task.cancel()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        inner = self._inner
        if inner is not None:
            try:
                await inner.__aexit__(exc_type, exc, tb)
            except TimeoutError:
                # asyncio.timeout raises TimeoutError only for its own cancellation.
                self.fired = True
                raise self._make_error() from exc
            self.fired = inner.expired()
            return
        assert self._watcher is not None
        assert self._task is not None
        # Not awaited: a cancelled watcher finishes on the next loop turn, and
        # awaiting here would open a window for yet another cancellation.
        self._watcher.cancel()
        if (
            self.fired
            and self._task.uncancel() <= self._cancelling
            and isinstance(exc, asyncio.CancelledError)
        ):
            raise self._make_error() from exc


class _Run:
    """One protected call's limit: the effective deadline and the timeout it stands for."""

    __slots__ = ("deadline", "timeout")

    def __init__(self, seconds: float, now: float) -> None:
        own = now + seconds
        outer = current_deadline()
        if outer is not None and outer < own:
            self.deadline = outer
            self.timeout = max(0.0, outer - now)
        else:
            self.deadline = own
            self.timeout = seconds


class _Entry:
    """What ``with``/``async with`` keep between entering and leaving."""

    __slots__ = ("alarm", "owner", "run", "scope")

    def __init__(
        self,
        owner: Timeout,
        run: _Run,
        scope: AbstractContextManager[float],
        alarm: DeadlineAlarm | None,
    ) -> None:
        self.owner = owner
        self.run = run
        self.scope = scope
        self.alarm = alarm


# One policy object may be entered by many threads and tasks at once, so what
# an entry needs at exit lives in the caller's context, not on the policy.
_entries: contextvars.ContextVar[tuple[_Entry, ...]] = contextvars.ContextVar(
    "cairn_timeout_entries", default=()
)


class _Outcome:
    """The result of a call run in a worker thread, handed back once."""

    __slots__ = ("done", "error", "value")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None

    def run(
        self,
        context: contextvars.Context,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        try:
            self.value = context.run(fn, *args, **kwargs)
        except BaseException as exc:  # handed to the caller, who re-raises it
            self.error = exc
        finally:
            self.done.set()


class Timeout(Policy):
    """Give up on a call that takes longer than ``seconds``.

    >>> limit = Timeout(seconds=2.0, name="inventory")
    >>> # result = await limit.acall(fetch_stock, sku)     # cancels the work
    >>> # result = limit.call(fetch_stock_blocking, sku)   # abandons a thread
    >>> # with limit: ...                                  # cooperative

    See the module documentation for what each form can and cannot stop.
    Raises :class:`~cairn.resilience.TimeoutExceeded` (also a built-in
    ``TimeoutError``) and emits :class:`~cairn.resilience.TimeoutElapsed`.
    """

    __slots__ = ("_clock", "_listeners", "name", "seconds")

    def __init__(
        self,
        *,
        seconds: float,
        name: str = "timeout",
        clock: Clock = DEFAULT_CLOCK,
        listeners: Iterable[Listener] = (),
    ) -> None:
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, int | float)
            or not math.isfinite(seconds)
            or seconds <= 0
        ):
            raise ValueError(
                f"seconds must be a finite number of seconds > 0, got {seconds!r}; "
                "to bound nothing, leave the timeout out of the pipeline"
            )
        self.seconds = float(seconds)
        self.name = check_name(name)
        self._clock = check_clock(clock)
        self._listeners = check_listeners(listeners)

    def __repr__(self) -> str:
        return f"Timeout(seconds={self.seconds!r}, name={self.name!r})"

    # -- the decisions -------------------------------------------------------

    def _start(self) -> _Run:
        now = self._clock.monotonic()
        run = _Run(self.seconds, now)
        if run.deadline <= now:
            # An outer deadline has already passed: starting the work is pointless.
            raise self._expire(run)
        return run

    def _overran(self, run: _Run) -> bool:
        return self._clock.monotonic() > run.deadline

    def _expire(self, run: _Run) -> TimeoutExceeded:
        emit(
            TimeoutElapsed(policy=self.name, at=self._clock.monotonic(), timeout=run.timeout),
            self._listeners,
        )
        return TimeoutExceeded(self.name, run.timeout)

    # -- sync ----------------------------------------------------------------

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn`` in a worker thread and wait at most ``seconds`` for it.

        On expiry the thread is abandoned, not stopped. With a non-system
        clock, ``fn`` runs inline instead and the limit is checked when it
        returns (exact under a ``VirtualClock``).
        """
        if not on_system_clock(self._clock):
            # Virtual time cannot wake a blocked thread: see the module docstring.
            with self:
                return fn(*args, **kwargs)
        run = self._start()
        with deadline_scope(run.deadline):
            context = contextvars.copy_context()
        outcome = _Outcome()
        worker = threading.Thread(
            target=outcome.run,
            args=(context, fn, args, kwargs),
            name=f"cairn-timeout[{self.name}]",
            daemon=True,  # an abandoned call must not keep the interpreter alive
        )
        worker.start()
        if not outcome.done.wait(run.deadline - self._clock.monotonic()):
            raise self._expire(run)
        error = outcome.error
        if error is not None:
            outcome.error = None  # no reference cycle through the traceback
            raise error
        value: T = outcome.value
        return value

    def __enter__(self) -> None:
        """Set the deadline for the body; ``TimeoutExceeded`` at exit if it overran."""
        run = self._start()
        scope = deadline_scope(run.deadline)
        scope.__enter__()
        _entries.set((*_entries.get(), _Entry(self, run, scope, None)))

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        entry = self._leave()
        entry.scope.__exit__(None, None, None)
        # Past the limit the caller gets the timeout, as a preemptive one would
        # have given; what the body raised late stays attached as the cause.
        # KeyboardInterrupt and friends always win.
        if (exc is None or isinstance(exc, Exception)) and self._overran(entry.run):
            raise self._expire(entry.run) from exc

    def _leave(self) -> _Entry:
        entries = _entries.get()
        if not entries or entries[-1].owner is not self:
            raise RuntimeError(f"timeout {self.name!r} exited without being entered here")
        _entries.set(entries[:-1])
        return entries[-1]

    # -- async ---------------------------------------------------------------

    async def acall(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Await ``fn``; cancel it and raise ``TimeoutExceeded`` after ``seconds``."""
        run = self._start()
        with deadline_scope(run.deadline):
            async with DeadlineAlarm(self._clock, run.deadline, lambda: self._expire(run)):
                return await fn(*args, **kwargs)

    async def __aenter__(self) -> None:
        """Cancel the body when the time is up, raising ``TimeoutExceeded`` at exit."""
        run = self._start()
        scope = deadline_scope(run.deadline)
        scope.__enter__()
        alarm = DeadlineAlarm(self._clock, run.deadline, lambda: self._expire(run))
        try:
            await alarm.__aenter__()
        except BaseException:  # pragma: no cover - only outside a task
            scope.__exit__(None, None, None)
            raise
        _entries.set((*_entries.get(), _Entry(self, run, scope, alarm)))

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        entry = self._leave()
        assert entry.alarm is not None, "entered with `with`, left with `async with`"
        try:
            await entry.alarm.__aexit__(exc_type, exc, tb)
        finally:
            entry.scope.__exit__(None, None, None)
