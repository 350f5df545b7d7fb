"""Time, injected.

Every policy reads time and sleeps only through a :class:`Clock`, so tests can
swap in :class:`cairn.testing.VirtualClock` and never wait on the wall clock.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, runtime_checkable

__all__ = ["DEFAULT_CLOCK", "SYSTEM_CLOCK", "Clock", "DefaultClock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """What a policy needs of time: a monotonic reading and two ways to wait."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards."""
        ...

    def sleep(self, seconds: float) -> None:
        """Block the calling thread for ``seconds``."""
        ...

    async def asleep(self, seconds: float) -> None:
        """Suspend the calling task for ``seconds``."""
        ...


class SystemClock:
    """The real clock: :func:`time.monotonic`, :func:`time.sleep`, :func:`asyncio.sleep`."""

    __slots__ = ()

    # Bound straight to the C functions: a policy's hot path pays no extra call.
    monotonic = staticmethod(time.monotonic)
    sleep = staticmethod(time.sleep)

    async def asleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def __repr__(self) -> str:
        return "SystemClock()"


SYSTEM_CLOCK: Clock = SystemClock()


class DefaultClock:
    """The clock a policy uses when none is given: the system clock, swappable.

    ``cairn.testing.virtual_time()`` swaps in a virtual clock for a block, so
    code written exactly as in production (``@retry(...)`` with no ``clock=``)
    runs its waits in virtual time under test. The clock's methods are bound
    straight onto this object, so reading it costs what reading the target
    costs.
    """

    monotonic: Callable[[], float]
    sleep: Callable[[float], None]
    asleep: Callable[[float], Coroutine[Any, Any, None]]

    def __init__(self) -> None:
        self.target: Clock = SYSTEM_CLOCK
        self.use(SYSTEM_CLOCK)

    def use(self, clock: Clock) -> Clock:
        """Make ``clock`` the default; returns the previous one."""
        previous = self.target
        self.target = clock
        self.monotonic = clock.monotonic
        self.sleep = clock.sleep
        self.asleep = clock.asleep
        return previous

    def __repr__(self) -> str:
        return f"DefaultClock(target={self.target!r})"


DEFAULT_CLOCK = DefaultClock()
