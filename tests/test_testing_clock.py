"""The virtual clock that every timing test stands on."""

from __future__ import annotations

import asyncio

import pytest

from cairn.resilience import Clock
from cairn.testing import VirtualClock


def test_is_a_clock() -> None:
    assert isinstance(VirtualClock(), Clock)


def test_sync_sleep_advances_exactly_and_is_recorded() -> None:
    clock = VirtualClock(start=100.0)
    clock.sleep(1.5)
    clock.sleep(0)
    clock.sleep(2.25)
    assert clock.monotonic() == 103.75
    assert clock.sleeps == [1.5, 0, 2.25]


def test_advance_rejects_going_backwards() -> None:
    clock = VirtualClock()
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-1)


async def test_concurrent_async_sleepers_wake_in_time_order() -> None:
    clock = VirtualClock()
    woke: list[tuple[float, float]] = []

    async def sleeper(seconds: float) -> None:
        await clock.asleep(seconds)
        woke.append((seconds, clock.monotonic()))

    await asyncio.gather(sleeper(5), sleeper(1), sleeper(3), sleeper(3))
    assert woke == [(1, 1.0), (3, 3.0), (3, 3.0), (5, 5.0)]
    assert clock.monotonic() == 5.0


async def test_cancelled_sleeper_does_not_hold_time_back() -> None:
    clock = VirtualClock()
    long = asyncio.create_task(clock.asleep(100))
    await clock.asleep(2)
    long.cancel()
    with pytest.raises(asyncio.CancelledError):
        await long
    await clock.asleep(1)
    assert clock.monotonic() == 3.0


async def test_manual_advance_wakes_due_sleepers_only() -> None:
    clock = VirtualClock()
    order: list[str] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.asleep(seconds)
        order.append(name)

    first = asyncio.create_task(sleeper("first", 1))
    second = asyncio.create_task(sleeper("second", 10))
    await asyncio.sleep(0)  # let both register their timers
    clock.advance(1)
    await first
    assert order == ["first"]
    assert not second.done()
    second.cancel()
    with pytest.raises(asyncio.CancelledError):
        await second


async def test_zero_sleep_yields_without_moving_time() -> None:
    clock = VirtualClock(start=7)
    await clock.asleep(0)
    assert clock.monotonic() == 7
    assert clock.sleeps == [0]
