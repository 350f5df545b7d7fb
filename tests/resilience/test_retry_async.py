"""The Retry policy, async: the same engine behind ``await`` and ``async for``."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterator

import pytest

from cairn.resilience import RetryError, RetryGaveUp, RetryScheduled
from cairn.resilience._budget import RetryBudget
from cairn.resilience._deadline import deadline_scope
from cairn.resilience._events import Event
from cairn.resilience._retry import Retry, retry
from cairn.resilience._stop import stop_after_attempt, stop_never
from cairn.resilience._wait import wait_fixed, wait_none
from cairn.testing import VirtualClock, capture_events


class AsyncFlaky:
    """Fails with the given errors in turn, then returns ``result``."""

    def __init__(self, *errors: BaseException, result: object = "ok") -> None:
        self.errors = list(errors)
        self.result = result
        self.calls = 0

    async def __call__(self, *args: object, **kwargs: object) -> object:
        self.calls += 1
        await asyncio.sleep(0)  # a real suspension point, as I/O would be
        if self.errors:
            raise self.errors.pop(0)
        return self.result


def policy(clock: VirtualClock, **options: object) -> Retry:
    options.setdefault("stop", stop_after_attempt(3))
    options.setdefault("wait", wait_fixed(1))
    return Retry(clock=clock, **options)  # type: ignore[arg-type]


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def events() -> Iterator[list[Event]]:
    with capture_events() as captured:
        yield captured


async def test_acall_retries_until_success_in_virtual_time(clock: VirtualClock) -> None:
    starts: list[float] = []

    async def fn(a: int, *, b: int) -> int:
        starts.append(clock.monotonic())
        if len(starts) < 3:
            raise OSError
        return a * b

    assert await policy(clock, wait=wait_fixed(2.5)).acall(fn, 3, b=4) == 12
    assert starts == [0.0, 2.5, 5.0]
    assert clock.sleeps == [2.5, 2.5]


async def test_acall_success_emits_nothing(clock: VirtualClock, events: list[Event]) -> None:
    assert await policy(clock).acall(AsyncFlaky()) == "ok"
    assert events == []
    assert clock.sleeps == []


async def test_acall_non_retryable_error_propagates_at_once(clock: VirtualClock) -> None:
    fn = AsyncFlaky(KeyError("permanent"))
    with pytest.raises(KeyError):
        await policy(clock, retry_on=OSError).acall(fn)
    assert fn.calls == 1


async def test_acall_gives_up_with_retry_error_chained_to_the_last_error(
    clock: VirtualClock, events: list[Event]
) -> None:
    last = OSError("3")
    with pytest.raises(RetryError) as caught:
        await policy(clock, reraise=False).acall(AsyncFlaky(OSError("1"), OSError("2"), last))
    assert caught.value.__cause__ is last
    assert caught.value.attempts == 3
    assert [type(e) for e in events] == [RetryScheduled, RetryScheduled, RetryGaveUp]


async def test_acall_reraise_gives_the_last_error_itself(clock: VirtualClock) -> None:
    last = OSError("3")
    with pytest.raises(OSError) as caught:
        await policy(clock).acall(AsyncFlaky(OSError("1"), OSError("2"), last))
    assert caught.value is last
    assert caught.value.__context__ is None


async def test_acall_retries_results(clock: VirtualClock) -> None:
    results = iter([None, "x"])

    async def fn() -> object:
        return next(results)

    assert await policy(clock, retry_if_result=lambda r: r is None).acall(fn) == "x"
    assert clock.sleeps == [1.0]


async def test_acall_result_give_up(clock: VirtualClock) -> None:
    async def busy() -> str:
        return "busy"

    assert await policy(clock, retry_if_result=lambda r: True).acall(busy) == "busy"
    with pytest.raises(RetryError) as caught:
        await policy(clock, retry_if_result=lambda r: True, reraise=False).acall(busy)
    assert caught.value.last_result == "busy"


async def test_a_zero_wait_does_not_call_the_clock(clock: VirtualClock) -> None:
    assert await policy(clock, wait=wait_none()).acall(AsyncFlaky(OSError())) == "ok"
    assert clock.sleeps == []


async def test_cancellation_during_a_backoff_sleep_propagates(clock: VirtualClock) -> None:
    scheduled = asyncio.Event()
    fn = AsyncFlaky(*[OSError()] * 5)
    retrying = policy(clock, wait=wait_fixed(1000), listeners=(lambda e: scheduled.set(),))
    task = asyncio.create_task(retrying.acall(fn))
    await scheduled.wait()  # the policy is about to sleep for 1000 virtual seconds
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert fn.calls == 1
    assert clock.sleeps == [1000]
    assert clock.monotonic() < 1000  # cancelled before the wait was over


async def test_cancelled_error_from_the_call_is_never_retried(clock: VirtualClock) -> None:
    fn = AsyncFlaky(asyncio.CancelledError())
    with pytest.raises(asyncio.CancelledError):
        await policy(clock, retry_on=lambda exc: True).acall(fn)
    assert fn.calls == 1


async def test_the_inherited_deadline_bounds_async_waits(
    clock: VirtualClock, events: list[Event]
) -> None:
    with deadline_scope(3.5), pytest.raises(OSError):
        await policy(clock, stop=stop_never).acall(AsyncFlaky(*[OSError()] * 10))
    assert clock.sleeps == [1.0, 1.0, 1.0]
    assert isinstance(events[-1], RetryGaveUp)
    assert events[-1].reason == "deadline"


async def test_concurrent_calls_keep_separate_state(
    clock: VirtualClock, events: list[Event]
) -> None:
    retrying = policy(clock, stop=stop_after_attempt(4), wait=lambda s: float(s.attempt))
    one, two = AsyncFlaky(OSError(), OSError()), AsyncFlaky(OSError())
    assert list(await asyncio.gather(retrying.acall(one), retrying.acall(two))) == ["ok", "ok"]
    scheduled = [(e.attempt, e.delay) for e in events if isinstance(e, RetryScheduled)]
    assert sorted(scheduled) == [(1, 1.0), (1, 1.0), (2, 2.0)]
    assert clock.monotonic() == 3.0  # the longer call: waits of 1 then 2


async def test_acall_deposits_and_withdraws_from_the_budget(clock: VirtualClock) -> None:
    budget = RetryBudget(ratio=0.0, min_per_second=0.1, ttl=10, clock=clock)  # one retry
    with pytest.raises(RetryError) as caught:
        await policy(clock, budget=budget, reraise=False).acall(AsyncFlaky(*[OSError()] * 3))
    assert (caught.value.reason, caught.value.attempts) == ("budget", 2)
    stats = budget.stats()
    assert (stats.calls, stats.retries, stats.refused) == (1, 1, 1)


async def test_async_decorator_keeps_a_coroutine_function_and_its_metadata(
    clock: VirtualClock,
) -> None:
    async def original(x: int) -> int:
        """Doubles."""
        return 2 * x

    wrapped = retry(clock=clock)(original)
    assert inspect.iscoroutinefunction(wrapped)
    assert wrapped.__name__ == "original"
    assert wrapped.__doc__ == "Doubles."
    assert inspect.signature(wrapped) == inspect.signature(original)
    assert await wrapped(21) == 42


async def test_async_decorator_on_a_method(clock: VirtualClock) -> None:
    class Client:
        calls = 0

        @retry(wait=wait_fixed(1), clock=clock)
        async def get(self) -> int:
            self.calls += 1
            if self.calls < 3:
                raise OSError
            return self.calls

    assert await Client().get() == 3
    assert clock.sleeps == [1.0, 1.0]


async def test_async_for_attempts(clock: VirtualClock) -> None:
    fn = AsyncFlaky(OSError(), OSError())
    numbers: list[int] = []
    times: list[float] = []
    async for attempt in policy(clock, wait=wait_fixed(2)).attempts():
        with attempt:
            numbers.append(attempt.number)
            times.append(clock.monotonic())
            await fn()
    assert numbers == [1, 2, 3]
    assert times == [0.0, 2.0, 4.0]


async def test_async_for_attempts_gives_up(clock: VirtualClock) -> None:
    async def run() -> None:
        async for attempt in policy(clock, reraise=False).attempts():
            with attempt:
                await AsyncFlaky(OSError("always"))()

    with pytest.raises(RetryError) as caught:
        await run()
    assert isinstance(caught.value.__cause__, OSError)
    assert clock.sleeps == [1.0, 1.0]


async def test_async_for_attempts_cancelled_while_waiting(clock: VirtualClock) -> None:
    scheduled = asyncio.Event()
    entered = 0

    async def run() -> None:
        nonlocal entered
        retrying = policy(clock, wait=wait_fixed(50), listeners=(lambda e: scheduled.set(),))
        async for attempt in retrying.attempts():
            with attempt:
                entered += 1
                raise OSError

    task = asyncio.create_task(run())
    await scheduled.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert entered == 1
    assert clock.monotonic() < 50
