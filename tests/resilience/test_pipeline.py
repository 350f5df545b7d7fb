"""Pipeline: policies composed in the order written, outermost first."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

import pytest

from cairn.resilience import Pipeline, Policy, Retry, stop_after_attempt, wait_fixed
from cairn.testing import VirtualClock


class Recorder(Policy):
    """A minimal policy that records when it is entered and left."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log

    def call(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        self.log.append(f"{self.name}>")
        try:
            return fn(*args, **kwargs)
        finally:
            self.log.append(f"<{self.name}")

    async def acall(self, fn: Callable[..., Awaitable[Any]], /, *args: Any, **kwargs: Any) -> Any:
        self.log.append(f"{self.name}>")
        try:
            return await fn(*args, **kwargs)
        finally:
            self.log.append(f"<{self.name}")

    def __enter__(self) -> Recorder:
        self.log.append(f"{self.name}>")
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.log.append(f"<{self.name}" + ("!" if e else ""))

    async def __aenter__(self) -> Recorder:
        return self.__enter__()

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(et, e, tb)


def flaky(failures: int) -> Callable[[], str]:
    left = [failures]

    def fn() -> str:
        if left[0]:
            left[0] -= 1
            raise ConnectionError("down")
        return "ok"

    return fn


def test_order_is_outermost_first_and_retry_reruns_only_the_inner_part() -> None:
    log: list[str] = []
    clock = VirtualClock()
    pipeline = Pipeline(
        Recorder("total", log),
        Retry(stop=stop_after_attempt(3), wait=wait_fixed(1), clock=clock),
        Recorder("attempt", log),
    )
    assert pipeline.call(flaky(1)) == "ok"
    assert log == ["total>", "attempt>", "<attempt", "attempt>", "<attempt", "<total"]
    assert clock.sleeps == [1]


async def test_async_pipeline_has_the_same_semantics() -> None:
    log: list[str] = []
    clock = VirtualClock()
    pipeline = Pipeline(
        Recorder("total", log),
        Retry(stop=stop_after_attempt(3), wait=wait_fixed(1), clock=clock),
        Recorder("attempt", log),
    )
    left = [2]

    async def fn(x: int, *, y: int) -> int:
        if left[0]:
            left[0] -= 1
            raise ConnectionError("down")
        return x + y

    assert await pipeline.acall(fn, 1, y=2) == 3
    assert log == ["total>"] + ["attempt>", "<attempt"] * 3 + ["<total"]
    assert clock.sleeps == [1, 1]


def test_pipeline_as_decorator_on_sync_and_async() -> None:
    log: list[str] = []
    pipeline = Pipeline(Recorder("a", log), Recorder("b", log))

    @pipeline
    def add(x: int, y: int) -> int:
        """Adds."""
        return x + y

    assert add(2, 3) == 5
    assert add.__doc__ == "Adds."
    assert log == ["a>", "b>", "<b", "<a"]


def test_with_block_enters_every_guard_in_order() -> None:
    log: list[str] = []
    pipeline = Pipeline(Recorder("a", log), Recorder("b", log))
    with pipeline:
        log.append("body")
    with pytest.raises(KeyError), pipeline:
        raise KeyError("x")
    assert log == ["a>", "b>", "body", "<b", "<a", "a>", "b>", "<b!", "<a!"]


async def test_async_with_block() -> None:
    log: list[str] = []
    pipeline = Pipeline(Recorder("a", log), Recorder("b", log))
    async with pipeline:
        log.append("body")
    assert log == ["a>", "b>", "body", "<b", "<a"]


def test_with_block_refuses_a_retry_and_says_what_to_do_instead() -> None:
    pipeline = Pipeline(Retry(), Recorder("b", []))
    with pytest.raises(TypeError, match=r"pipeline\.attempts\(\)"), pipeline:
        pass


def test_attempts_iterate_the_retry_with_inner_guards_each_time() -> None:
    log: list[str] = []
    clock = VirtualClock()
    pipeline = Pipeline(
        Recorder("total", log),
        Retry(stop=stop_after_attempt(3), wait=wait_fixed(2), clock=clock),
        Recorder("attempt", log),
    )
    fn = flaky(2)
    results = []
    for attempt in pipeline.attempts():
        with attempt:
            results.append(fn())
    assert results == ["ok"]
    assert log == ["total>"] + ["attempt>", "<attempt!"] * 2 + ["attempt>", "<attempt", "<total"]
    assert clock.sleeps == [2, 2]


def test_attempts_give_up_with_the_last_error() -> None:
    clock = VirtualClock()
    pipeline = Pipeline(Retry(stop=stop_after_attempt(2), wait=wait_fixed(1), clock=clock))
    fn = flaky(5)
    with pytest.raises(ConnectionError):  # noqa: PT012 - the loop is the unit under test
        for attempt in pipeline.attempts():
            with attempt:
                fn()
    assert clock.sleeps == [1]


async def test_async_attempts() -> None:
    log: list[str] = []
    clock = VirtualClock()
    pipeline = Pipeline(
        Retry(stop=stop_after_attempt(3), wait=wait_fixed(1), clock=clock),
        Recorder("attempt", log),
    )
    fn = flaky(1)
    async for attempt in pipeline.aattempts():
        async with attempt:
            fn()
    assert log == ["attempt>", "<attempt!", "attempt>", "<attempt"]
    assert clock.sleeps == [1]


def test_attempts_need_exactly_one_retry() -> None:
    with pytest.raises(TypeError, match="no retry"):
        next(iter(Pipeline(Recorder("a", [])).attempts()))
    with pytest.raises(TypeError, match="more than one retry"):
        next(iter(Pipeline(Retry(), Retry()).attempts()))


def test_construction_errors_are_clear() -> None:
    with pytest.raises(ValueError, match="at least one policy"):
        Pipeline()
    with pytest.raises(TypeError, match="not a cairn policy"):
        Pipeline(Retry(), print)  # type: ignore[arg-type]


def test_repr_and_policies() -> None:
    a, b = Recorder("a", []), Recorder("b", [])
    pipeline = Pipeline(a, b, name="p")
    assert pipeline.policies == (a, b)
    assert "name='p'" in repr(pipeline)


# -- the standard stack with real policies ------------------------------------


async def test_standard_stack_total_timeout_retry_breaker_attempt_timeout() -> None:
    """Total timeout → retry → breaker → attempt timeout, on a hanging dependency."""
    from cairn.resilience import (
        BreakerState,
        BreakerStateChanged,
        CircuitBreaker,
        CircuitOpenError,
        Timeout,
        TimeoutExceeded,
    )
    from cairn.testing import capture_events

    clock = VirtualClock()
    breaker = CircuitBreaker(failure_threshold=3, recovery_timeout=60, clock=clock)
    pipeline = Pipeline(
        Timeout(seconds=10, clock=clock),
        Retry(stop=stop_after_attempt(10), wait=wait_fixed(1), clock=clock),
        breaker,
        Timeout(seconds=2, clock=clock),
    )
    started: list[float] = []

    async def hangs() -> str:
        started.append(clock.monotonic())
        await clock.asleep(30)
        return "never"

    with capture_events() as events, pytest.raises((CircuitOpenError, TimeoutExceeded)):
        await pipeline.acall(hangs)
    # Each attempt is cut at 2 s, retried after 1 s; the third timeout opens
    # the breaker, which then keeps the dependency from seeing more calls.
    assert started == [0.0, 3.0, 6.0]
    assert breaker.state is BreakerState.OPEN
    opened = [e for e in events if isinstance(e, BreakerStateChanged)]
    assert [(e.to_state, e.at) for e in opened] == [(BreakerState.OPEN, 8.0)]
    # And nothing outlives the total timeout of 10 s.
    assert clock.monotonic() <= 10.0


def test_retry_around_breaker_stops_at_an_open_circuit_when_told() -> None:
    from cairn.resilience import CircuitBreaker, CircuitOpenError

    clock = VirtualClock()
    breaker = CircuitBreaker(failure_threshold=2, recovery_timeout=30, clock=clock)
    pipeline = Pipeline(
        Retry(
            stop=stop_after_attempt(5),
            wait=wait_fixed(1),
            retry_on=lambda e: not isinstance(e, CircuitOpenError),
            clock=clock,
        ),
        breaker,
    )
    fn = flaky(100)
    with pytest.raises(CircuitOpenError) as refused:
        pipeline.call(fn)
    assert clock.sleeps == [1, 1]  # two real failures, then the open breaker ends it
    assert refused.value.retry_after == pytest.approx(29.0)
