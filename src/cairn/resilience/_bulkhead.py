"""Bulkhead: at most N calls at once, a short FIFO queue, and fast rejection beyond.

One counter machine (:class:`_Slots`) under a ``threading.Lock`` serves
threads and asyncio tasks at once. It never blocks: it admits, queues or
rejects, and a release hands the slot straight to the oldest waiter. The
drivers only wait for that hand-over: a thread on a ``threading.Event``, a task
on a future woken with ``call_soon_threadsafe``.

A slot is never free while someone waits, so arrivals cannot overtake the
queue. A waiter that gives up (queue timeout, cancellation, interrupt) leaves
the queue under the lock; if a slot was handed to it in the meantime it owns
that slot and passes it on, so no slot ever leaks.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import ParamSpec, TypeVar

from cairn.resilience._clock import DEFAULT_CLOCK, Clock
from cairn.resilience._errors import BulkheadFullError
from cairn.resilience._events import BulkheadRejected, Listener, emit
from cairn.resilience._policy import Policy
from cairn.resilience._timeout import (
    DeadlineAlarm,
    check_clock,
    check_listeners,
    check_name,
    on_system_clock,
)

__all__ = ["Bulkhead", "BulkheadStats"]

P = ParamSpec("P")
T = TypeVar("T")

# How often a thread queued under a non-system clock re-reads that clock:
# virtual time cannot wake a thread, so it has to look.
_VIRTUAL_POLL = 0.005


@dataclass(frozen=True, slots=True)
class BulkheadStats:
    """A snapshot of a bulkhead, from :meth:`Bulkhead.stats`."""

    name: str
    max_concurrent: int
    max_queue: int
    running: int
    """Calls holding a slot now."""
    queued: int
    """Calls waiting for a slot now."""
    rejected: int
    """Calls turned away since creation (full, or timed out in the queue)."""


class _Waiter:
    __slots__ = ("granted",)

    def __init__(self) -> None:
        self.granted = False

    def wake(self) -> None:
        raise NotImplementedError


class _ThreadWaiter(_Waiter):
    __slots__ = ("event",)

    def __init__(self) -> None:
        super().__init__()
        self.event = threading.Event()

    def wake(self) -> None:
        self.event.set()


class _TaskWaiter(_Waiter):
    __slots__ = ("future",)

    def __init__(self) -> None:
        super().__init__()
        self.future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def wake(self) -> None:
        # Raises RuntimeError if that loop is closed; the releaser handles it.
        self.future.get_loop().call_soon_threadsafe(_resolve, self.future)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():  # the waiter may have been cancelled meanwhile
        future.set_result(None)


class _Slots:
    """The counting state machine: decides, never waits. Thread-safe."""

    __slots__ = ("_lock", "max_concurrent", "max_queue", "queue", "rejected", "running")

    def __init__(self, max_concurrent: int, max_queue: int) -> None:
        self._lock = threading.Lock()
        self.max_concurrent = max_concurrent
        self.max_queue = max_queue
        self.running = 0
        self.rejected = 0
        self.queue: deque[_Waiter] = deque()

    def enter(self, make_waiter: Callable[[], _Waiter]) -> _Waiter | bool:
        """``True``: a slot is yours. ``False``: rejected. A waiter: queued, wait for it."""
        with self._lock:
            if self.running < self.max_concurrent:
                self.running += 1
                return True
            if len(self.queue) < self.max_queue:
                waiter = make_waiter()
                self.queue.append(waiter)
                return waiter
            self.rejected += 1
            return False

    def release(self) -> None:
        """Give a slot back: to the oldest waiter if any, else to the pool."""
        while True:
            with self._lock:
                if not self.queue:
                    self.running -= 1
                    return
                waiter = self.queue.popleft()
                waiter.granted = True
            try:
                waiter.wake()
                return
            except RuntimeError:
                # Its event loop is closed: nobody will ever run with this slot.
                continue

    def leave(self, waiter: _Waiter, *, rejected: bool) -> bool:
        """A waiter gives up. ``False`` if it was granted a slot first: it owns it now."""
        with self._lock:
            if waiter.granted:
                return False
            self.queue.remove(waiter)
            if rejected:
                self.rejected += 1
            return True


class Bulkhead(Policy):
    """Run at most ``max_concurrent`` calls at once; queue up to ``max_queue`` more.

    - ``max_queue`` (default 0): callers that find every slot taken wait
      here, first come first served; when the queue is full too, the call is
      rejected at once with :class:`~cairn.resilience.BulkheadFullError`.
    - ``queue_timeout`` (default ``None``: wait as long as it takes): a
      queued caller gives up after this many seconds with the same error.

    One bulkhead can guard threads and asyncio tasks (of any loop) at the
    same time. Use ``call``/``acall``, the decorator, or ``with bulkhead:`` /
    ``async with bulkhead:``. Emits :class:`~cairn.resilience.BulkheadRejected`
    on every rejection.

    Under a non-system clock, ``queue_timeout`` is measured on that clock: a
    task sleeps in ``clock.asleep``; a thread re-reads the clock every few
    milliseconds.
    """

    __slots__ = ("_clock", "_listeners", "_queue_timeout", "_slots", "name")

    def __init__(
        self,
        *,
        max_concurrent: int,
        max_queue: int = 0,
        queue_timeout: float | None = None,
        name: str = "bulkhead",
        clock: Clock = DEFAULT_CLOCK,
        listeners: Iterable[Listener] = (),
    ) -> None:
        if isinstance(max_concurrent, bool) or not isinstance(max_concurrent, int):
            raise ValueError(f"max_concurrent must be an int >= 1, got {max_concurrent!r}")
        if max_concurrent < 1:
            raise ValueError(
                f"max_concurrent must be >= 1, got {max_concurrent}; a bulkhead that admits "
                "nothing rejects every call"
            )
        if isinstance(max_queue, bool) or not isinstance(max_queue, int) or max_queue < 0:
            raise ValueError(f"max_queue must be an int >= 0, got {max_queue!r}")
        if queue_timeout is not None:
            if (
                isinstance(queue_timeout, bool)
                or not isinstance(queue_timeout, int | float)
                or not math.isfinite(queue_timeout)
                or queue_timeout <= 0
            ):
                raise ValueError(
                    f"queue_timeout must be None (wait as long as it takes) or a finite "
                    f"number of seconds > 0, got {queue_timeout!r}"
                )
            if max_queue == 0:
                raise ValueError(
                    "queue_timeout has no effect with max_queue=0 (nobody ever waits); "
                    "set max_queue > 0 or drop queue_timeout"
                )
            queue_timeout = float(queue_timeout)
        self._slots = _Slots(max_concurrent, max_queue)
        self._queue_timeout = queue_timeout
        self.name = check_name(name)
        self._clock = check_clock(clock)
        self._listeners = check_listeners(listeners)

    def __repr__(self) -> str:
        slots = self._slots
        return (
            f"Bulkhead(max_concurrent={slots.max_concurrent}, max_queue={slots.max_queue}, "
            f"queue_timeout={self._queue_timeout!r}, name={self.name!r})"
        )

    @property
    def max_concurrent(self) -> int:
        """How many calls may run at once."""
        return self._slots.max_concurrent

    @property
    def max_queue(self) -> int:
        """How many calls may wait for a slot."""
        return self._slots.max_queue

    @property
    def queue_timeout(self) -> float | None:
        """How long a queued call waits before giving up (``None``: no limit)."""
        return self._queue_timeout

    def stats(self) -> BulkheadStats:
        """A consistent snapshot of the counters."""
        slots = self._slots
        with slots._lock:
            return BulkheadStats(
                name=self.name,
                max_concurrent=slots.max_concurrent,
                max_queue=slots.max_queue,
                running=slots.running,
                queued=len(slots.queue),
                rejected=slots.rejected,
            )

    def _rejection(self) -> BulkheadFullError:
        slots = self._slots
        emit(
            BulkheadRejected(
                policy=self.name,
                at=self._clock.monotonic(),
                max_concurrent=slots.max_concurrent,
                max_queue=slots.max_queue,
            ),
            self._listeners,
        )
        return BulkheadFullError(self.name, slots.max_concurrent, slots.max_queue)

    # -- sync ----------------------------------------------------------------

    def _acquire(self) -> None:
        slots = self._slots
        admitted = slots.enter(_ThreadWaiter)
        if admitted is True:
            return
        if admitted is False:
            raise self._rejection()
        assert isinstance(admitted, _ThreadWaiter)
        try:
            if self._wait(admitted.event):
                return
        except BaseException:  # KeyboardInterrupt while queued
            if not slots.leave(admitted, rejected=False):
                slots.release()
            raise
        if slots.leave(admitted, rejected=True):
            raise self._rejection()
        # Granted just as the wait ran out: the slot is ours.

    def _wait(self, event: threading.Event) -> bool:
        timeout = self._queue_timeout
        if timeout is None:
            return event.wait()
        clock = self._clock
        if on_system_clock(clock):
            return event.wait(timeout)
        give_up = clock.monotonic() + timeout
        while (left := give_up - clock.monotonic()) > 0:
            if event.wait(min(left, _VIRTUAL_POLL)):
                return True
        return event.is_set()

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn`` once a slot is free; raise ``BulkheadFullError`` if none will be."""
        self._acquire()
        try:
            return fn(*args, **kwargs)
        finally:
            self._slots.release()

    def __enter__(self) -> None:
        """Take a slot for the body (waiting in the queue if allowed)."""
        self._acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._slots.release()

    # -- async ---------------------------------------------------------------

    async def _aacquire(self) -> None:
        slots = self._slots
        admitted = slots.enter(_TaskWaiter)
        if admitted is True:
            return
        if admitted is False:
            raise self._rejection()
        assert isinstance(admitted, _TaskWaiter)
        timeout = self._queue_timeout
        try:
            if timeout is None:
                await admitted.future
            else:
                clock = self._clock
                async with DeadlineAlarm(clock, clock.monotonic() + timeout, _QueueTimeout):
                    await admitted.future
        except _QueueTimeout:
            if slots.leave(admitted, rejected=True):
                raise self._rejection() from None
            # Granted just as the wait ran out: the slot is ours.
        except BaseException:  # cancelled while queued
            if not slots.leave(admitted, rejected=False):
                slots.release()
            raise

    async def acall(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Await ``fn`` once a slot is free; raise ``BulkheadFullError`` if none will be."""
        await self._aacquire()
        try:
            return await fn(*args, **kwargs)
        finally:
            self._slots.release()

    async def __aenter__(self) -> None:
        """Take a slot for the body (waiting in the queue if allowed)."""
        await self._aacquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._slots.release()


class _QueueTimeout(Exception):
    """Raised by the alarm of a queued task; never leaves this module."""
