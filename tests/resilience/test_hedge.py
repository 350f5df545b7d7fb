"""Hedging: exact launch times on the virtual clock, and no attempt left behind."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cairn.resilience import HedgeLaunched
from cairn.resilience._events import Event
from cairn.resilience._hedge import Hedge
from cairn.testing import VirtualClock, capture_events

pytestmark = pytest.mark.timeout(60)  # a loser never reaped shows up as a hang

tenant: contextvars.ContextVar[str] = contextvars.ContextVar("tenant", default="-")


class Flaky(Exception):
    """A failure worth hedging."""


@dataclass
class Script:
    """Attempt ``n`` (1-based) sleeps ``plan[n][0]`` virtual seconds, then returns or raises."""

    clock: VirtualClock
    plan: dict[int, tuple[float, object]]
    started: list[tuple[int, float]] = field(default_factory=list)
    finished: list[int] = field(default_factory=list)
    cleaned_up: list[int] = field(default_factory=list)
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    async def __call__(self) -> object:
        number = len(self.started) + 1
        self.started.append((number, self.clock.monotonic()))
        task = asyncio.current_task()
        assert task is not None
        self.tasks.append(task)
        seconds, outcome = self.plan[number]
        try:
            await self.clock.asleep(seconds)
            self.finished.append(number)
            if isinstance(outcome, BaseException):
                raise outcome
            return outcome
        finally:
            self.cleaned_up.append(number)


def launches(events: list[Event]) -> list[tuple[int, float]]:
    return [(e.attempt, e.at) for e in events if isinstance(e, HedgeLaunched)]


# -- configuration and the sync refusal -------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"delay": -0.1}, "delay must be a finite number of seconds >= 0"),
        ({"delay": math.nan}, "delay must be"),
        ({"delay": math.inf}, "delay must be"),
        ({"delay": True}, "delay must be"),
        ({"delay": 1, "max_attempts": 0}, "max_attempts must be an int >= 1"),
        ({"delay": 1, "max_attempts": 2.0}, "max_attempts must be an int"),
        ({"delay": 1, "max_attempts": True}, "max_attempts must be an int"),
        ({"delay": 1, "on": KeyboardInterrupt}, "must name Exception subclasses"),
        ({"delay": 1, "name": ""}, "name must be"),
        ({"delay": 1, "listeners": [1]}, "listeners must be"),
    ],
)
def test_rejects_nonsense_configuration(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Hedge(**kwargs)


def test_configuration_is_keyword_only_and_shown() -> None:
    with pytest.raises(TypeError):
        Hedge(0.1)  # type: ignore[call-arg]
    hedge = Hedge(delay=0.25, max_attempts=3, name="search")
    assert (hedge.delay, hedge.max_attempts) == (0.25, 3)
    assert repr(hedge) == "Hedge(delay=0.25, max_attempts=3, name='search')"


def test_sync_call_explains_that_hedging_needs_acall() -> None:
    ran: list[bool] = []
    with pytest.raises(TypeError, match=r"concurrently.*await hedge\.acall"):
        Hedge(delay=0.1).call(lambda: ran.append(True))
    assert ran == []


def test_decorating_a_plain_function_fails_at_once() -> None:
    def lookup() -> int:
        return 1

    with pytest.raises(TypeError, match="lookup"):
        Hedge(delay=0.1)(lookup)


# -- who wins, and when ------------------------------------------------------


async def test_a_fast_answer_launches_no_hedge_and_leaves_nothing_behind() -> None:
    clock = VirtualClock()
    script = Script(clock, {1: (0.5, "first")})
    with capture_events() as events:
        assert await Hedge(delay=1, clock=clock).acall(script) == "first"
    assert clock.monotonic() == 0.5
    assert events == []
    assert script.started == [(1, 0.0)]
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_a_slow_attempt_is_hedged_and_the_first_success_wins() -> None:
    clock = VirtualClock()
    script = Script(clock, {1: (10, "slow"), 2: (2, "hedge")})
    seen: list[Event] = []
    hedge = Hedge(delay=1, clock=clock, name="search", listeners=[seen.append])
    with capture_events() as events:
        assert await hedge.acall(script) == "hedge"
    assert clock.monotonic() == 3.0
    assert script.started == [(1, 0.0), (2, 1.0)]
    assert events == [HedgeLaunched(policy="search", at=1.0, attempt=2)]
    assert seen == events
    # The loser was cancelled, and its cleanup ran before the winner came back.
    assert script.finished == [2]
    assert sorted(script.cleaned_up) == [1, 2]
    assert all(task.done() for task in script.tasks)
    assert script.tasks[0].cancelled()


async def test_the_original_can_still_win_after_a_hedge_started() -> None:
    clock = VirtualClock()
    script = Script(clock, {1: (1.5, "original"), 2: (5, "hedge")})
    assert await Hedge(delay=1, clock=clock).acall(script) == "original"
    assert clock.monotonic() == 1.5
    assert script.tasks[1].cancelled()


async def test_a_fast_failure_launches_the_next_attempt_at_once() -> None:
    clock = VirtualClock()
    script = Script(clock, {1: (0.25, Flaky("1")), 2: (3, "second"), 3: (0.5, "third")})
    with capture_events() as events:
        result = await Hedge(delay=1, max_attempts=3, clock=clock).acall(script)
    # Attempt 2 starts when attempt 1 fails; attempt 3 a full delay after that.
    assert launches(events) == [(2, 0.25), (3, 1.25)]
    assert result == "third"
    assert clock.monotonic() == 1.75


async def test_when_all_fail_the_last_failure_is_raised() -> None:
    clock = VirtualClock()
    errors = {n: Flaky(f"attempt {n}") for n in (1, 2, 3)}
    # Attempt 1 fails last although it started first.
    script = Script(clock, {1: (9, errors[1]), 2: (2, errors[2]), 3: (3, errors[3])})
    with pytest.raises(Flaky) as info:
        await Hedge(delay=1, max_attempts=3, clock=clock).acall(script)
    assert info.value is errors[1]
    assert clock.monotonic() == 9.0
    assert sorted(script.finished) == [1, 2, 3]


async def test_a_non_matching_failure_propagates_and_cancels_the_rest() -> None:
    clock = VirtualClock()
    script = Script(clock, {1: (10, "slow"), 2: (1, KeyError("bug"))})
    with pytest.raises(KeyError):
        await Hedge(delay=1, on=Flaky, clock=clock).acall(script)
    assert clock.monotonic() == 2.0
    assert script.tasks[0].cancelled()
    assert sorted(script.cleaned_up) == [1, 2]


async def test_delay_zero_starts_every_attempt_at_once() -> None:
    clock = VirtualClock()
    script = Script(clock, {1: (3, "a"), 2: (1, "b"), 3: (2, "c")})
    with capture_events() as events:
        assert await Hedge(delay=0, max_attempts=3, clock=clock).acall(script) == "b"
    assert launches(events) == [(2, 0.0), (3, 0.0)]
    assert [start for _, start in script.started] == [0.0, 0.0, 0.0]
    assert clock.monotonic() == 1.0
    assert script.tasks[0].cancelled()
    assert script.tasks[2].cancelled()


async def test_simultaneous_answers_go_to_the_earlier_attempt() -> None:
    clock = VirtualClock()
    script = Script(clock, {1: (2, "first"), 2: (2, "second")})
    assert await Hedge(delay=0, clock=clock).acall(script) == "first"


async def test_one_attempt_means_no_hedging() -> None:
    clock = VirtualClock()
    script = Script(clock, {1: (5, Flaky("only"))})
    with capture_events() as events, pytest.raises(Flaky):
        await Hedge(delay=1, max_attempts=1, clock=clock).acall(script)
    assert events == []
    assert clock.monotonic() == 5.0


async def test_attempts_see_the_callers_context_and_arguments() -> None:
    clock = VirtualClock()
    seen: list[tuple[str, int]] = []

    async def attempt(x: int) -> int:
        seen.append((tenant.get(), x))
        await clock.asleep(5 if len(seen) == 1 else 1)
        return x * 10

    token = tenant.set("acme")
    try:
        assert await Hedge(delay=1, clock=clock).acall(attempt, 4) == 40
    finally:
        tenant.reset(token)
    assert seen == [("acme", 4), ("acme", 4)]


async def test_decorates_coroutine_functions() -> None:
    clock = VirtualClock()

    @Hedge(delay=1, clock=clock)
    async def fetch() -> str:
        """Fetch it."""
        await clock.asleep(0.5)
        return "ok"

    assert await fetch() == "ok"
    assert fetch.__doc__ == "Fetch it."


# -- cancellation and leaks ---------------------------------------------------


async def test_an_outer_cancel_cancels_every_attempt() -> None:
    clock = VirtualClock()
    script = Script(clock, {1: (100, "a"), 2: (100, "b")})
    hedged = asyncio.create_task(Hedge(delay=1, clock=clock).acall(script))
    await clock.asleep(2)  # both attempts are running now
    assert len(script.started) == 2
    hedged.cancel()
    with pytest.raises(asyncio.CancelledError):
        await hedged
    assert sorted(script.cleaned_up) == [1, 2]
    assert all(task.cancelled() for task in script.tasks)


async def test_a_second_cancel_during_cleanup_still_waits_for_the_losers() -> None:
    clock = VirtualClock()
    cleanup_may_finish = asyncio.Event()
    cleaned: list[str] = []

    async def slow_to_clean_up() -> None:
        try:
            await clock.asleep(100)
        finally:
            await cleanup_may_finish.wait()
            cleaned.append("done")

    hedged = asyncio.create_task(Hedge(delay=0, clock=clock).acall(slow_to_clean_up))
    await clock.asleep(1)
    hedged.cancel()
    await clock.asleep(1)  # hedged is now waiting for its attempts' cleanup
    hedged.cancel()
    await clock.asleep(1)
    assert not hedged.done()
    cleanup_may_finish.set()
    with pytest.raises(asyncio.CancelledError):
        await hedged
    assert cleaned == ["done", "done"]


async def test_a_cancel_while_reaping_losers_is_not_lost() -> None:
    clock = VirtualClock()
    cleanup_may_finish = asyncio.Event()
    calls = 0

    async def attempt() -> str:
        nonlocal calls
        calls += 1
        if calls == 2:
            await clock.asleep(1)
            return "winner"
        try:
            await clock.asleep(100)
        finally:
            await cleanup_may_finish.wait()
        return "loser"

    hedged = asyncio.create_task(Hedge(delay=0, clock=clock).acall(attempt))
    await clock.asleep(2)  # the winner has answered; the loser is still cleaning up
    assert not hedged.done()
    hedged.cancel()
    await clock.asleep(1)
    cleanup_may_finish.set()
    with pytest.raises(asyncio.CancelledError):
        await hedged


async def test_an_attempt_cancelled_on_its_own_propagates() -> None:
    clock = VirtualClock()
    script = Script(clock, {1: (10, "slow"), 2: (1, asyncio.CancelledError())})
    with pytest.raises(asyncio.CancelledError):
        await Hedge(delay=1, clock=clock).acall(script)
    assert script.tasks[0].cancelled()


async def test_losers_that_fail_while_cancelled_leave_no_unretrieved_exception() -> None:
    clock = VirtualClock()
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))

    async def attempt() -> str:
        first = not hasattr(attempt, "ran")
        attempt.ran = True  # type: ignore[attr-defined]
        if first:
            try:
                await clock.asleep(100)
            except asyncio.CancelledError:
                raise RuntimeError("failed while being cancelled") from None
        await clock.asleep(1)
        return "hedge"

    try:
        assert await Hedge(delay=1, clock=clock).acall(attempt) == "hedge"
        gc.collect()
    finally:
        loop.set_exception_handler(None)
    assert reported == []


@settings(max_examples=60, deadline=None)
@given(
    delay=st.sampled_from([0.0, 0.5, 1.0, 2.5]),
    max_attempts=st.integers(1, 4),
    plan=st.lists(
        st.tuples(st.integers(0, 8).map(lambda q: q / 2), st.sampled_from(["ok", "flaky", "bug"])),
        min_size=4,
        max_size=4,
    ),
)
def test_properties_of_any_hedged_call(
    delay: float, max_attempts: int, plan: list[tuple[float, str]]
) -> None:
    async def scenario() -> None:
        clock = VirtualClock()
        outcomes: dict[str, object] = {"ok": None, "flaky": Flaky(), "bug": KeyError()}
        script = Script(
            clock,
            {
                n: (seconds, f"ok {n}" if kind == "ok" else outcomes[kind])
                for n, (seconds, kind) in enumerate(plan, start=1)
            },
        )
        hedge = Hedge(delay=delay, max_attempts=max_attempts, on=Flaky, clock=clock)
        with capture_events() as events:
            try:
                result: object = await hedge.acall(script)
            except (Flaky, KeyError) as exc:
                result = exc
        launched = len(script.started)
        assert 1 <= launched <= max_attempts
        assert launches(events) == [(n, at) for n, at in script.started[1:]]
        # Nothing outlives the call, and every attempt's cleanup has run.
        assert all(task.done() for task in script.tasks)
        assert sorted(script.cleaned_up) == list(range(1, launched + 1))
        # Attempts start no more than `delay` apart.
        starts = [at for _, at in script.started]
        assert all(b - a <= delay for a, b in itertools.pairwise(starts))
        if isinstance(result, str):
            winner = int(result.split()[1])
            assert winner in script.finished
        elif isinstance(result, KeyError):
            assert any(script.plan[n][1] is result for n in script.finished)
        else:
            # Every attempt that could be started was, and all of them failed.
            assert launched == max_attempts
            assert sorted(script.finished) == list(range(1, launched + 1))
        assert asyncio.all_tasks() == {asyncio.current_task()}

    asyncio.run(scenario())
