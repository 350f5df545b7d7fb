"""Timeout: cancellation semantics on real asyncio, exact timing on the virtual clock."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import math
import threading
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cairn import CairnError
from cairn.resilience import (
    DEFAULT_CLOCK,
    SYSTEM_CLOCK,
    Clock,
    ResilienceError,
    Retry,
    RetryGaveUp,
    TimeoutElapsed,
    TimeoutExceeded,
    current_deadline,
    stop_never,
    time_left,
    wait_fixed,
)
from cairn.resilience._deadline import deadline_scope
from cairn.resilience._events import Event
from cairn.resilience._timeout import Timeout
from cairn.testing import VirtualClock, capture_events, virtual_time

# A real-clock limit short enough to keep the suite fast; the work it cuts
# short blocks on an event that is never set, so there is no race to lose.
SHORT = 0.02
request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


async def _forever() -> None:
    await asyncio.Event().wait()


# -- configuration and the error -------------------------------------------


@pytest.mark.parametrize("seconds", [0, -1, math.nan, math.inf, True, "1", None])
def test_rejects_nonsense_limits(seconds: Any) -> None:
    with pytest.raises(ValueError, match="seconds must be a finite number"):
        Timeout(seconds=seconds)


def test_rejects_a_bad_name_and_listeners() -> None:
    with pytest.raises(ValueError, match="name must be a non-empty string"):
        Timeout(seconds=1, name="")
    with pytest.raises(ValueError, match="listeners must be callables"):
        Timeout(seconds=1, listeners=[42])  # type: ignore[list-item]


def test_rejects_something_that_is_not_a_clock() -> None:
    with pytest.raises(TypeError, match=r"clock must be a cairn\.resilience\.Clock"):
        Timeout(seconds=1, clock=object())  # type: ignore[arg-type]


def test_configuration_is_keyword_only_and_shown() -> None:
    with pytest.raises(TypeError):
        Timeout(1)  # type: ignore[call-arg]
    timeout = Timeout(seconds=2, name="db")
    assert timeout.seconds == 2.0
    assert repr(timeout) == "Timeout(seconds=2.0, name='db')"


def test_the_error_is_a_builtin_timeout_error_with_context() -> None:
    clock = VirtualClock()
    with pytest.raises(TimeoutError) as info:
        Timeout(seconds=1.5, name="inventory", clock=clock).call(clock.sleep, 2)
    error = info.value
    assert isinstance(error, TimeoutExceeded)
    assert isinstance(error, ResilienceError)
    assert isinstance(error, CairnError)
    assert (error.name, error.timeout) == ("inventory", 1.5)
    assert "'inventory'" in str(error)
    assert "1.5s" in str(error)


# -- async: exact timing on the virtual clock ------------------------------


async def test_async_call_is_cancelled_exactly_at_the_limit() -> None:
    clock = VirtualClock(start=100)
    reached_end = False
    cleaned_up = False

    async def slow() -> str:
        nonlocal reached_end, cleaned_up
        try:
            await clock.asleep(10)
            reached_end = True
            return "late"
        finally:
            cleaned_up = True

    seen: list[Event] = []
    timeout = Timeout(seconds=2, name="slow", clock=clock, listeners=[seen.append])
    with capture_events() as events, pytest.raises(TimeoutExceeded) as info:
        await timeout.acall(slow)
    assert clock.monotonic() == 102
    assert (reached_end, cleaned_up) == (False, True)
    assert info.value.timeout == 2.0
    assert isinstance(info.value.__cause__, asyncio.CancelledError)
    assert events == [TimeoutElapsed(policy="slow", at=102.0, timeout=2.0)]
    assert seen == events


async def test_async_call_in_time_returns_and_emits_nothing() -> None:
    clock = VirtualClock()

    async def quick(x: int) -> int:
        await clock.asleep(1.5)
        return x * 2

    with capture_events() as events:
        assert await Timeout(seconds=2, clock=clock).acall(quick, 21) == 42
    assert events == []
    assert clock.monotonic() == 1.5


async def test_the_deadline_is_narrowed_for_the_code_inside() -> None:
    clock = VirtualClock(start=100)
    seen: list[tuple[float | None, float | None]] = []

    async def inner() -> None:
        seen.append((current_deadline(), time_left(clock)))
        await clock.asleep(1)
        seen.append((current_deadline(), time_left(clock)))

    assert current_deadline() is None
    await Timeout(seconds=3, clock=clock).acall(inner)
    assert seen == [(103.0, 3.0), (103.0, 2.0)]
    assert current_deadline() is None


async def test_an_earlier_inherited_deadline_cuts_the_limit_short() -> None:
    clock = VirtualClock()
    with deadline_scope(2.0), capture_events() as events, pytest.raises(TimeoutExceeded) as info:
        await Timeout(seconds=5, name="attempt", clock=clock).acall(clock.asleep, 10)
    assert clock.monotonic() == 2.0
    assert (info.value.name, info.value.timeout) == ("attempt", 2.0)
    assert events == [TimeoutElapsed(policy="attempt", at=2.0, timeout=2.0)]


async def test_nested_timeouts_end_at_the_earlier_deadline() -> None:
    clock = VirtualClock()
    total = Timeout(seconds=2, name="total", clock=clock)
    attempt = Timeout(seconds=5, name="attempt", clock=clock)
    with capture_events() as events, pytest.raises(TimeoutExceeded) as info:
        await total.acall(attempt.acall, clock.asleep, 10)
    assert clock.monotonic() == 2.0
    assert info.value.timeout == 2.0
    assert len(events) == 1


async def test_a_deadline_already_past_fails_without_running() -> None:
    clock = VirtualClock(start=10)
    ran = False

    async def work() -> None:
        nonlocal ran
        ran = True

    with deadline_scope(9.0), capture_events() as events, pytest.raises(TimeoutExceeded) as info:
        await Timeout(seconds=1, clock=clock).acall(work)
    assert not ran
    assert info.value.timeout == 0.0
    assert events == [TimeoutElapsed(policy="timeout", at=10.0, timeout=0.0)]


async def test_async_with_cancels_the_body() -> None:
    clock = VirtualClock()
    after_sleep = False

    async def body() -> None:
        nonlocal after_sleep
        async with Timeout(seconds=4, clock=clock):
            assert time_left(clock) == 4.0
            await clock.asleep(5)
            after_sleep = True

    with pytest.raises(TimeoutExceeded):
        await body()
    assert not after_sleep
    assert clock.monotonic() == 4.0
    assert current_deadline() is None


async def test_async_with_in_time_passes_through() -> None:
    clock = VirtualClock()
    timeout = Timeout(seconds=4, clock=clock)
    async with timeout:
        await clock.asleep(3)
    with pytest.raises(KeyError):
        async with timeout:
            raise KeyError("mine")
    assert clock.monotonic() == 3.0


# -- async: cancellation semantics, real and virtual ------------------------


def _clocks() -> list[Any]:
    return [
        pytest.param(SYSTEM_CLOCK, id="system"),
        pytest.param(DEFAULT_CLOCK, id="default"),
        pytest.param(VirtualClock(), id="virtual"),
    ]


@pytest.mark.parametrize("clock", _clocks())
async def test_an_outer_cancel_propagates_as_cancelled_error(clock: Clock) -> None:
    started = asyncio.Event()

    async def work() -> None:
        started.set()
        await _forever()

    task = asyncio.create_task(Timeout(seconds=60, clock=clock).acall(work))
    await started.wait()
    task.cancel()
    with capture_events() as events, pytest.raises(asyncio.CancelledError):
        await task
    assert events == []


@pytest.mark.parametrize("clock", _clocks())
async def test_an_outer_cancel_arriving_with_the_timeout_wins(clock: Clock) -> None:
    outer: asyncio.Task[None] | None = None

    async def work() -> None:
        try:
            await _forever()
        except asyncio.CancelledError:
            assert outer is not None
            outer.cancel()  # someone cancels the caller in the same instant
            raise

    async def caller() -> None:
        await Timeout(seconds=SHORT, clock=clock).acall(work)

    outer = asyncio.create_task(caller())
    with pytest.raises(asyncio.CancelledError):
        await outer
    assert outer.cancelled()


@pytest.mark.parametrize("clock", _clocks())
async def test_own_timeout_after_an_absorbed_outer_cancel(clock: Clock) -> None:
    # The caller was cancelled before and handled it: the count is not zero,
    # yet the timeout must still recognise its own cancellation.
    waiting = asyncio.Event()

    async def caller() -> str:
        with contextlib.suppress(asyncio.CancelledError):
            waiting.set()
            await _forever()
        task = asyncio.current_task()
        assert task is not None
        assert task.cancelling() == 1
        try:
            await Timeout(seconds=SHORT, clock=clock).acall(_forever)
        except TimeoutExceeded:
            return "own timeout"
        return "no timeout"

    task = asyncio.create_task(caller())
    await waiting.wait()
    task.cancel()
    assert await task == "own timeout"


async def test_real_clock_times_out_and_runs_the_cleanup() -> None:
    cleaned_up = asyncio.Event()

    async def stuck() -> None:
        try:
            await _forever()
        finally:
            cleaned_up.set()

    with capture_events() as events, pytest.raises(TimeoutExceeded) as info:
        await Timeout(seconds=SHORT, name="real").acall(stuck)
    assert cleaned_up.is_set()
    assert info.value.timeout == SHORT
    assert [type(e) for e in events] == [TimeoutElapsed]


async def test_a_timeout_error_of_the_work_itself_is_not_ours() -> None:
    async def own() -> None:
        raise TimeoutError("from the socket")

    with capture_events() as events, pytest.raises(TimeoutError, match="socket") as info:
        await Timeout(seconds=60).acall(own)
    assert not isinstance(info.value, TimeoutExceeded)
    assert events == []


async def test_work_that_swallows_the_cancel_keeps_its_result() -> None:
    clock = VirtualClock()

    async def stubborn() -> str:
        try:
            await clock.asleep(10)
        except asyncio.CancelledError:
            return "finished anyway"
        return "never"

    assert await Timeout(seconds=1, clock=clock).acall(stubborn) == "finished anyway"
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0


async def test_decorates_coroutine_functions() -> None:
    clock = VirtualClock()

    @Timeout(seconds=1, clock=clock)
    async def fetch(delay: float) -> str:
        await clock.asleep(delay)
        return "ok"

    assert await fetch(0.5) == "ok"
    with pytest.raises(TimeoutExceeded):
        await fetch(2)


# -- sync, pessimistic: a worker thread on the real clock -------------------


def test_sync_call_runs_in_a_worker_thread_with_the_callers_context() -> None:
    token = request_id.set("r-42")
    try:

        def work(x: int) -> tuple[int, str, str, float | None]:
            return x + 1, threading.current_thread().name, request_id.get(), time_left()

        value, thread, seen_id, left = Timeout(seconds=30, name="db").call(work, 1)
    finally:
        request_id.reset(token)
    assert value == 2
    assert thread == "cairn-timeout[db]"
    assert seen_id == "r-42"
    assert left is not None
    assert 0 < left <= 30


def test_sync_call_abandons_a_stuck_thread() -> None:
    release = threading.Event()
    finished = threading.Event()
    worker: list[threading.Thread] = []

    def stuck() -> str:
        worker.append(threading.current_thread())
        release.wait()
        finished.set()
        return "too late"

    with capture_events() as events, pytest.raises(TimeoutExceeded):
        Timeout(seconds=SHORT).call(stuck)
    assert not finished.is_set()
    assert worker[0].daemon
    assert [type(e) for e in events] == [TimeoutElapsed]
    release.set()
    worker[0].join(timeout=10)
    assert finished.is_set()


def test_sync_call_reraises_the_workers_exception() -> None:
    boom = ValueError("bad input")

    def fails() -> None:
        raise boom

    with pytest.raises(ValueError, match="bad input") as info:
        Timeout(seconds=30).call(fails)
    assert info.value is boom


def test_sync_call_with_a_past_deadline_does_not_start_a_thread() -> None:
    started: list[bool] = []
    with deadline_scope(0.0), pytest.raises(TimeoutExceeded):
        Timeout(seconds=30).call(lambda: started.append(True))
    assert started == []


# -- sync under a virtual clock: inline and exact ---------------------------


def test_sync_call_under_a_virtual_clock_runs_inline() -> None:
    clock = VirtualClock()
    assert Timeout(seconds=1, clock=clock).call(threading.current_thread) is (
        threading.current_thread()
    )


def test_sync_call_overrun_becomes_a_timeout_with_exact_time() -> None:
    clock = VirtualClock(start=50)
    with capture_events() as events, pytest.raises(TimeoutExceeded):
        Timeout(seconds=2, clock=clock).call(clock.sleep, 3)
    assert events == [TimeoutElapsed(policy="timeout", at=53.0, timeout=2.0)]


def test_late_errors_become_the_cause_and_early_ones_pass() -> None:
    clock = VirtualClock()
    timeout = Timeout(seconds=2, clock=clock)

    def fail_after(seconds: float) -> None:
        clock.sleep(seconds)
        raise ConnectionError(f"after {seconds}")

    with pytest.raises(ConnectionError, match="after 1"):
        timeout.call(fail_after, 1)
    with pytest.raises(TimeoutExceeded) as info:
        timeout.call(fail_after, 3)
    assert isinstance(info.value.__cause__, ConnectionError)


def test_interrupts_are_never_replaced() -> None:
    clock = VirtualClock()

    def interrupted() -> None:
        clock.sleep(5)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Timeout(seconds=1, clock=clock).call(interrupted)


@settings(max_examples=200, deadline=None)
@given(
    limit=st.floats(min_value=0.001, max_value=1e6),
    took=st.floats(min_value=0, max_value=2e6),
)
def test_sync_outcome_depends_only_on_whether_the_work_took_longer(
    limit: float, took: float
) -> None:
    clock = VirtualClock(start=1000)
    timeout = Timeout(seconds=limit, clock=clock)
    start = clock.monotonic()
    try:
        timeout.call(clock.sleep, took)
    except TimeoutExceeded:
        timed_out = True
    else:
        timed_out = False
    assert timed_out == (clock.monotonic() > start + limit)


# -- sync, cooperative: `with` ---------------------------------------------


def test_with_sets_the_deadline_and_checks_it_at_exit() -> None:
    clock = VirtualClock(start=7)
    timeout = Timeout(seconds=5, clock=clock)
    with timeout:
        assert current_deadline() == 12.0
        assert time_left(clock) == 5.0
        clock.sleep(4)
    assert current_deadline() is None
    with pytest.raises(TimeoutExceeded), timeout:
        clock.sleep(6)
    assert current_deadline() is None


def test_with_on_the_system_clock() -> None:
    with Timeout(seconds=30):
        left = time_left()
    assert left is not None
    assert 29 < left <= 30


def test_one_object_nests_and_serves_threads_at_once() -> None:
    clock = VirtualClock()
    timeout = Timeout(seconds=10, clock=clock)
    with timeout:
        clock.sleep(4)
        with timeout:
            assert current_deadline() == 10.0  # the outer one is earlier
        assert current_deadline() == 10.0

    inside = threading.Barrier(2, timeout=10)
    deadlines: list[float | None] = []

    def worker() -> None:
        with timeout:
            inside.wait()  # both threads are inside the same object at once
            deadlines.append(current_deadline())

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert deadlines == [14.0, 14.0]


def test_leaving_out_of_order_is_an_error() -> None:
    clock = VirtualClock()
    first = Timeout(seconds=1, name="first", clock=clock)
    second = Timeout(seconds=1, name="second", clock=clock)
    first.__enter__()
    second.__enter__()
    with pytest.raises(RuntimeError, match="'first' exited without being entered"):
        first.__exit__(None, None, None)
    second.__exit__(None, None, None)
    first.__exit__(None, None, None)
    with pytest.raises(RuntimeError):
        first.__exit__(None, None, None)


def test_decorates_plain_functions() -> None:
    clock = VirtualClock()
    calls: list[float] = []

    @Timeout(seconds=1, clock=clock)
    def work(seconds: float) -> float:
        """Sleep and report."""
        clock.sleep(seconds)
        calls.append(seconds)
        return seconds

    assert work(0.25) == 0.25
    assert work.__doc__ == "Sleep and report."
    with pytest.raises(TimeoutExceeded):
        work(1.5)
    assert calls == [0.25, 1.5]


@settings(max_examples=40, deadline=None)
@given(
    limit=st.floats(min_value=0.001, max_value=1e4),
    took=st.floats(min_value=0, max_value=2e4),
)
def test_async_outcome_and_end_time_on_the_virtual_clock(limit: float, took: float) -> None:
    assume(took != limit)  # a tie is decided by timer order, not by the policy

    async def case() -> bool:
        clock = VirtualClock()
        try:
            await Timeout(seconds=limit, clock=clock).acall(clock.asleep, took)
        except TimeoutExceeded:
            assert clock.monotonic() == limit
            return True
        assert clock.monotonic() == took
        return False

    assert asyncio.run(case()) == (took > limit)


# -- the swappable default clock ---------------------------------------------

built_at_import = Timeout(seconds=1, name="import-time")


def test_virtual_time_reaches_a_sync_timeout_built_without_a_clock() -> None:
    with virtual_time() as clock:
        assert built_at_import.call(threading.current_thread) is threading.current_thread()
        with pytest.raises(TimeoutExceeded):
            built_at_import.call(clock.sleep, 1.5)
        assert clock.monotonic() == 1.5
    # Back on the system clock: a worker thread again.
    assert built_at_import.call(threading.current_thread) is not threading.current_thread()


async def test_virtual_time_reaches_an_async_timeout_built_without_a_clock() -> None:
    with virtual_time() as clock:
        with pytest.raises(TimeoutExceeded):
            await built_at_import.acall(clock.asleep, 30)
        assert clock.monotonic() == 1.0


# -- with the retry inside ------------------------------------------------------


def test_an_inner_retry_never_sleeps_past_the_timeout() -> None:
    clock = VirtualClock()
    inner = Retry(stop=stop_never, wait=wait_fixed(2), clock=clock)
    attempts: list[float] = []

    def flaky() -> None:
        attempts.append(clock.monotonic())
        raise ConnectionError("down")

    with capture_events() as events, pytest.raises(ConnectionError):
        Timeout(seconds=5, clock=clock).call(inner.call, flaky)
    assert attempts == [0.0, 2.0, 4.0]
    assert clock.monotonic() == 4.0  # a third wait would have ended past 5
    assert [e.reason for e in events if isinstance(e, RetryGaveUp)] == ["deadline"]


async def test_an_inner_async_retry_never_sleeps_past_the_timeout() -> None:
    clock = VirtualClock()
    inner = Retry(stop=stop_never, wait=wait_fixed(2), clock=clock)
    attempts: list[float] = []

    async def flaky() -> None:
        attempts.append(clock.monotonic())
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        await Timeout(seconds=5, clock=clock).acall(inner.acall, flaky)
    assert attempts == [0.0, 2.0, 4.0]
    assert clock.monotonic() == 4.0
