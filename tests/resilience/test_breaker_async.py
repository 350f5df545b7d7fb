"""CircuitBreaker, async: acall, decorated coroutine functions, ``async with``."""

from __future__ import annotations

import asyncio

import pytest

from cairn.resilience import CircuitBreaker, circuit
from cairn.resilience._errors import CircuitOpenError
from cairn.resilience._events import BreakerRejected, BreakerState, Event
from cairn.testing import VirtualClock, capture_events

pytestmark = pytest.mark.usefixtures("breaker_impl")

CLOSED = BreakerState.CLOSED
OPEN = BreakerState.OPEN
HALF_OPEN = BreakerState.HALF_OPEN


class Boom(Exception):
    pass


async def ok() -> str:
    await asyncio.sleep(0)
    return "ok"


async def boom() -> None:
    await asyncio.sleep(0)
    raise Boom("down")


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


async def test_acall_opens_refuses_and_recovers(clock: VirtualClock) -> None:
    breaker = CircuitBreaker(failure_threshold=2, recovery_timeout=5, clock=clock)
    assert await breaker.acall(ok) == "ok"
    for _ in range(2):
        with pytest.raises(Boom):
            await breaker.acall(boom)
    assert breaker.state is OPEN
    with pytest.raises(CircuitOpenError) as info:
        await breaker.acall(ok)
    assert info.value.retry_after == 5
    await clock.asleep(5)  # virtual time: returns at once
    assert await breaker.acall(ok) == "ok"
    assert breaker.state is CLOSED


async def test_acall_success_resets_the_consecutive_count(clock: VirtualClock) -> None:
    breaker = CircuitBreaker(failure_threshold=2, clock=clock)
    with pytest.raises(Boom):
        await breaker.acall(boom)
    await breaker.acall(ok)
    with pytest.raises(Boom):
        await breaker.acall(boom)
    assert breaker.state is CLOSED


async def test_acall_refusal_tells_listeners(clock: VirtualClock) -> None:
    seen: list[Event] = []
    breaker = CircuitBreaker(failure_threshold=1, clock=clock, listeners=[seen.append])
    with pytest.raises(Boom):
        await breaker.acall(boom)
    clock.advance(1)
    with pytest.raises(CircuitOpenError):
        await breaker.acall(ok)
    assert seen[-1] == BreakerRejected("circuit", 1.0, OPEN, 59.0)


async def test_acall_general_path_with_a_window_and_result_predicate(clock: VirtualClock) -> None:
    breaker = CircuitBreaker(
        window_size=2, minimum_calls=2, failure_if_result=lambda r: r == "bad", clock=clock
    )

    async def value(v: str) -> str:
        return v

    assert await breaker.acall(value, "good") == "good"
    assert await breaker.acall(value, "bad") == "bad"
    assert breaker.state is OPEN
    with pytest.raises(CircuitOpenError):
        await breaker.acall(value, "good")
    clock.advance(60)
    with pytest.raises(Boom):
        await breaker.acall(boom)  # the trial fails
    assert breaker.state is OPEN
    breaker.disable()
    assert await breaker.acall(value, "bad") == "bad"
    breaker.force_open()
    with pytest.raises(CircuitOpenError) as info:
        await breaker.acall(value, "good")
    assert info.value.state is BreakerState.FORCED_OPEN


async def test_decorated_coroutine_function(clock: VirtualClock) -> None:
    seen: list[Event] = []

    @circuit(failure_threshold=1, recovery_timeout=10, clock=clock, listeners=[seen.append])
    async def fetch(item: str) -> str:
        if item == "missing":
            raise Boom(item)
        await asyncio.sleep(0)
        return item.upper()

    assert asyncio.iscoroutinefunction(fetch)
    assert fetch.__name__ == "fetch"
    assert await fetch("a") == "A"
    with pytest.raises(Boom):
        await fetch("missing")
    with pytest.raises(CircuitOpenError):
        await fetch("a")
    assert isinstance(seen[-1], BreakerRejected)
    assert seen[-1].retry_after == 10
    clock.advance(10)
    assert await fetch("b") == "B"
    assert fetch.breaker.state is CLOSED


async def test_decorated_coroutine_function_on_the_general_path(clock: VirtualClock) -> None:
    @circuit(window_size=1, minimum_calls=1, success_threshold=2, clock=clock)
    async def fetch(fail: bool) -> str:
        if fail:
            raise Boom
        return "ok"

    with pytest.raises(Boom):
        await fetch(True)
    clock.advance(60)
    assert await fetch(False) == "ok"
    assert fetch.breaker.state is HALF_OPEN
    assert await fetch(False) == "ok"
    assert fetch.breaker.state is CLOSED
    with pytest.raises(Boom):
        await fetch(True)
    with pytest.raises(CircuitOpenError):
        await fetch(False)  # refused in OPEN, with nobody listening
    fetch.breaker.force_open()
    with pytest.raises(CircuitOpenError):
        await fetch(False)
    fetch.breaker.disable()
    assert await fetch(False) == "ok"


async def test_decorated_coroutine_function_resets_failures_on_success(
    clock: VirtualClock,
) -> None:
    @circuit(failure_threshold=2, clock=clock)
    async def fetch(fail: bool) -> None:
        if fail:
            raise Boom

    for _ in range(3):
        with pytest.raises(Boom):
            await fetch(True)
        await fetch(False)
    assert fetch.breaker.state is CLOSED
    assert fetch.breaker.stats().consecutive_failures == 0


async def test_async_with_block(clock: VirtualClock) -> None:
    breaker = CircuitBreaker(failure_threshold=1, clock=clock)
    async with breaker as entered:
        assert entered is breaker
        await asyncio.sleep(0)
    with pytest.raises(Boom):
        async with breaker:
            raise Boom
    ran = []
    with pytest.raises(CircuitOpenError):
        async with breaker:
            ran.append(1)
    assert ran == []
    clock.advance(60)
    async with breaker:
        await asyncio.sleep(0)
    assert breaker.state is CLOSED


async def test_async_with_blocks_in_concurrent_tasks_keep_their_own_permits(
    clock: VirtualClock,
) -> None:
    breaker = CircuitBreaker(failure_threshold=1, half_open_max_calls=2, clock=clock)
    with pytest.raises(Boom):
        await breaker.acall(boom)
    clock.advance(60)
    release = asyncio.Event()
    both_inside = asyncio.Event()
    inside = 0

    async def trial(fails: bool) -> None:
        nonlocal inside
        async with breaker:
            inside += 1
            if inside == 2:
                both_inside.set()
            await release.wait()
            if fails:
                raise Boom

    succeeding = asyncio.create_task(trial(False))
    failing = asyncio.create_task(trial(True))
    await asyncio.wait_for(both_inside.wait(), 10)
    release.set()
    await succeeding
    assert breaker.state is CLOSED  # the first trial to end decides
    with pytest.raises(Boom):
        await failing
    assert breaker.state is CLOSED, "the second trial ended in a later period"


async def test_cancelled_trial_counts_as_neither_and_frees_its_permit(
    clock: VirtualClock,
) -> None:
    breaker = CircuitBreaker(failure_threshold=1, clock=clock)
    with pytest.raises(Boom):
        await breaker.acall(boom)
    await clock.asleep(60)
    started = asyncio.Event()

    async def hang() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(breaker.acall(hang))
    await started.wait()
    with pytest.raises(CircuitOpenError):
        await breaker.acall(ok)  # the only trial slot is taken
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert breaker.state is HALF_OPEN
    assert breaker.stats().total_failures == 1
    assert await breaker.acall(ok) == "ok"
    assert breaker.state is CLOSED


async def test_cancelled_call_while_closed_is_not_a_failure(clock: VirtualClock) -> None:
    @circuit(failure_threshold=1, clock=clock)
    async def hang() -> None:
        await asyncio.Event().wait()

    task = asyncio.create_task(hang())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert hang.breaker.state is CLOSED
    assert hang.breaker.stats().total_failures == 0


async def test_async_recovery_waits_exactly_in_virtual_time(clock: VirtualClock) -> None:
    breaker = CircuitBreaker(failure_threshold=1, recovery_timeout=30, clock=clock)
    with capture_events() as events, pytest.raises(Boom):
        await breaker.acall(boom)
    assert [e.at for e in events] == [0.0]
    with pytest.raises(CircuitOpenError) as info:
        await breaker.acall(ok)
    assert info.value.retry_after is not None
    await clock.asleep(info.value.retry_after)
    assert clock.monotonic() == 30
    assert await breaker.acall(ok) == "ok"
