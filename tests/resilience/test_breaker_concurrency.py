"""CircuitBreaker under threads and tasks: exact half-open permits, no lock held
across the protected call, exact counters."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest

from cairn.resilience import CircuitBreaker
from cairn.resilience._errors import CircuitOpenError
from cairn.resilience._events import BreakerState, BreakerStateChanged, Event
from cairn.testing import VirtualClock, capture_events

pytestmark = pytest.mark.usefixtures("breaker_impl")

DEADLINE = 10.0  # seconds; only reached when the breaker is broken


class Boom(Exception):
    pass


def boom() -> None:
    raise Boom


def wait_for(condition: threading.Condition, predicate: Callable[[], bool]) -> None:
    with condition:
        assert condition.wait_for(predicate, timeout=DEADLINE), "condition not reached in time"


def opened_and_due(clock: VirtualClock, **options: int) -> CircuitBreaker:
    breaker = CircuitBreaker(failure_threshold=1, recovery_timeout=60, clock=clock, **options)
    with pytest.raises(Boom):
        breaker.call(boom)
    clock.advance(60)
    assert breaker.state is BreakerState.OPEN
    return breaker


@pytest.mark.parametrize("permits", [1, 3])
def test_threads_racing_into_half_open_get_exactly_the_permits(permits: int) -> None:
    clock = VirtualClock()
    breaker = opened_and_due(clock, half_open_max_calls=permits)
    threads = 16
    barrier = threading.Barrier(threads)
    release = threading.Event()
    progress = threading.Condition()
    admitted: list[int] = []
    refused: list[CircuitOpenError] = []

    def trial(i: int) -> str:
        with progress:
            admitted.append(i)
            progress.notify_all()
        assert release.wait(DEADLINE)
        return "ok"

    def worker(i: int) -> None:
        barrier.wait()
        try:
            breaker.call(trial, i)
        except CircuitOpenError as error:
            with progress:
                refused.append(error)
                progress.notify_all()

    with capture_events() as events:
        workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
        for w in workers:
            w.start()
        # Every refusal arrives while the admitted trials still block: refusing
        # never waits behind a running call.
        wait_for(progress, lambda: len(admitted) + len(refused) == threads)
        assert not release.is_set()
        assert len(admitted) == permits
        assert all(e.state is BreakerState.HALF_OPEN for e in refused)
        assert breaker.stats().retry_after is None, "all trial slots are taken"
        release.set()
        for w in workers:
            w.join(DEADLINE)
            assert not w.is_alive()
    assert breaker.state is BreakerState.CLOSED
    moves = [(e.from_state, e.to_state) for e in events if isinstance(e, BreakerStateChanged)]
    assert moves == [
        (BreakerState.OPEN, BreakerState.HALF_OPEN),
        (BreakerState.HALF_OPEN, BreakerState.CLOSED),
    ], "each transition exactly once"
    assert breaker.stats().total_rejections == threads - permits


@pytest.mark.parametrize("permits", [1, 2])
async def test_tasks_racing_into_half_open_get_exactly_the_permits(permits: int) -> None:
    clock = VirtualClock()
    breaker = opened_and_due(clock, half_open_max_calls=permits)
    tasks = 12
    release = asyncio.Event()
    everyone_arrived = asyncio.Event()
    admitted: list[int] = []
    refused: list[CircuitOpenError] = []

    def arrived() -> None:
        if len(admitted) + len(refused) == tasks:
            everyone_arrived.set()

    async def trial(i: int) -> str:
        admitted.append(i)
        arrived()
        await release.wait()
        return "ok"

    async def attempt(i: int) -> str | None:
        try:
            return await breaker.acall(trial, i)
        except CircuitOpenError as error:
            refused.append(error)
            arrived()
            return None

    running = [asyncio.create_task(attempt(i)) for i in range(tasks)]
    # Refusals all come while the admitted trials still wait on ``release``.
    await asyncio.wait_for(everyone_arrived.wait(), DEADLINE)
    assert len(admitted) == permits
    assert all(e.state is BreakerState.HALF_OPEN and e.retry_after is None for e in refused)
    release.set()
    results = await asyncio.gather(*running)
    assert results.count("ok") == permits
    assert breaker.state is BreakerState.CLOSED


def run_in_thread(target: Callable[[], None]) -> None:
    """Run ``target`` in a thread; a deadlock shows as a thread still alive."""
    errors: list[BaseException] = []

    def guarded() -> None:
        try:
            target()
        except BaseException as error:  # reported below, in the test's thread
            errors.append(error)

    thread = threading.Thread(target=guarded, daemon=True)
    thread.start()
    thread.join(DEADLINE)
    assert not thread.is_alive(), "deadlock: the breaker held its lock across the call"
    if errors:
        raise errors[0]


@pytest.mark.parametrize("window", [{}, {"window_size": 4, "minimum_calls": 1}])
def test_the_protected_call_may_use_the_breaker_itself(window: dict[str, int]) -> None:
    clock = VirtualClock()
    breaker = CircuitBreaker(clock=clock, **window)
    seen: list[str] = []

    def inner() -> str:
        return "inner"

    def protected() -> str:
        seen.append(str(breaker.stats().state))
        seen.append(breaker.call(inner))
        breaker.force_open()
        seen.append(str(breaker.state))
        breaker.reset()
        with breaker:
            seen.append("block")
        return "outer"

    def scenario() -> None:
        assert breaker.call(protected) == "outer"

    run_in_thread(scenario)
    assert seen == ["closed", "inner", "forced_open", "block"]
    assert breaker.state is BreakerState.CLOSED


def test_listeners_may_query_and_steer_the_breaker() -> None:
    clock = VirtualClock()
    seen: list[tuple[str, BreakerState]] = []
    breaker: CircuitBreaker

    def listener(event: Event) -> None:
        seen.append((type(event).__name__, breaker.stats().state))

    breaker = CircuitBreaker(failure_threshold=1, clock=clock, listeners=[listener])

    def scenario() -> None:
        with pytest.raises(Boom):
            breaker.call(boom)
        with pytest.raises(CircuitOpenError):
            breaker.call(boom)
        clock.advance(60)
        breaker.call(lambda: None)

    run_in_thread(scenario)
    assert seen == [
        ("BreakerStateChanged", BreakerState.OPEN),
        ("BreakerRejected", BreakerState.OPEN),
        ("BreakerStateChanged", BreakerState.HALF_OPEN),
        ("BreakerStateChanged", BreakerState.CLOSED),
    ]


def test_counters_are_exact_under_contending_threads() -> None:
    breaker = CircuitBreaker(failure_threshold=1_000_000)
    threads, calls = 4, 2_000
    barrier = threading.Barrier(threads)

    def worker() -> None:
        barrier.wait()
        for i in range(calls):
            if i % 4 == 0:
                with pytest.raises(Boom):
                    breaker.call(boom)
            else:
                breaker.call(lambda: None)

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(DEADLINE * 6)
        assert not w.is_alive()
    stats = breaker.stats()
    assert stats.total_calls == threads * calls
    assert stats.total_failures == threads * calls // 4
    assert stats.state is BreakerState.CLOSED


def test_threads_share_one_state_machine_with_tasks() -> None:
    clock = VirtualClock()
    breaker = CircuitBreaker(failure_threshold=2, clock=clock)

    async def failing() -> None:
        raise Boom

    async def from_a_task() -> None:
        with pytest.raises(Boom):
            await breaker.acall(failing)

    def from_a_thread() -> None:
        with pytest.raises(Boom):
            breaker.call(boom)

    run_in_thread(from_a_thread)
    asyncio.run(from_a_task())
    assert breaker.state is BreakerState.OPEN
    assert breaker.stats().consecutive_failures == 2
