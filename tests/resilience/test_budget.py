"""The retry budget: its arithmetic, its sliding window, and sharing it."""

from __future__ import annotations

import dataclasses
import math
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cairn.resilience import RetryError
from cairn.resilience._budget import RetryBudget, RetryBudgetStats
from cairn.resilience._retry import Retry
from cairn.resilience._stop import stop_never
from cairn.resilience._wait import wait_none
from cairn.testing import VirtualClock


def test_retries_are_a_share_of_calls() -> None:
    budget = RetryBudget(ratio=0.5, min_per_second=0, clock=VirtualClock())
    for _ in range(4):
        budget.deposit()
    assert [budget.try_withdraw() for _ in range(3)] == [True, True, False]
    assert budget.stats() == RetryBudgetStats(calls=4, retries=2, available=0.0, refused=1)


def test_the_reserve_allows_retries_without_calls() -> None:
    budget = RetryBudget(ratio=0.0, min_per_second=1.0, ttl=10, clock=VirtualClock())
    assert budget.stats().available == 10.0
    assert all(budget.try_withdraw() for _ in range(10))
    assert budget.try_withdraw() is False


def test_reserve_and_ratio_add_up() -> None:
    budget = RetryBudget(ratio=0.2, min_per_second=0.5, ttl=4, clock=VirtualClock())  # reserve 2
    for _ in range(10):
        budget.deposit()
    assert budget.stats().available == pytest.approx(4.0)
    assert sum(budget.try_withdraw() for _ in range(10)) == 4


def test_counts_slide_out_of_the_window_bucket_by_bucket() -> None:
    clock = VirtualClock()
    budget = RetryBudget(ratio=1.0, min_per_second=0, ttl=10, clock=clock)  # buckets of 1 s
    budget.deposit()  # bucket [0, 1)
    clock.advance(5)
    budget.deposit()  # bucket [5, 6)
    assert budget.try_withdraw() is True  # at 5: 1 retry of 2 allowed, in bucket [5, 6)
    clock.advance(4.99)  # 9.99: everything still in the window
    assert (budget.stats().calls, budget.stats().retries) == (2, 1)
    clock.advance(0.01)  # 10.0: the first bucket has slid out
    assert (budget.stats().calls, budget.stats().retries) == (1, 1)
    assert budget.try_withdraw() is False  # 1 call allows 1 retry, already taken
    clock.advance(5)  # 15.0: the rest slides out too
    assert (budget.stats().calls, budget.stats().retries) == (0, 0)


def test_a_rounded_bucket_edge_loses_no_counts() -> None:
    # 43 * 0.1 == 4.3, yet floor(4.3 / 0.1) == 42: the edge and the bucket disagree.
    clock = VirtualClock(start=4.3)
    budget = RetryBudget(ratio=1.0, min_per_second=0, ttl=1.0, clock=clock)
    budget.deposit()
    assert budget.try_withdraw() is True
    clock.advance(0.05)
    budget.deposit()
    assert (budget.stats().calls, budget.stats().retries) == (2, 1)


def test_a_long_quiet_spell_empties_the_window() -> None:
    clock = VirtualClock()
    budget = RetryBudget(ratio=1.0, min_per_second=0, ttl=2, clock=clock)
    for _ in range(3):
        budget.deposit()
    budget.try_withdraw()
    clock.advance(1000)
    stats = budget.stats()
    assert (stats.calls, stats.retries, stats.available) == (0, 0, 0.0)
    assert budget.try_withdraw() is False
    assert stats.refused == 0
    assert budget.stats().refused == 1  # refusals are counted forever, not windowed


def test_stats_is_a_frozen_snapshot() -> None:
    budget = RetryBudget(clock=VirtualClock())
    snapshot = budget.stats()
    budget.deposit()
    assert snapshot.calls == 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        snapshot.calls = 5  # type: ignore[misc]


@settings(max_examples=200)
@given(
    ops=st.lists(
        st.one_of(
            st.just(("deposit", 0.0)),
            st.just(("withdraw", 0.0)),
            st.tuples(st.just("advance"), st.floats(0, 4)),
        ),
        max_size=80,
    ),
    ratio=st.sampled_from([0.0, 0.1, 0.25, 0.5, 1.0]),
    reserve=st.sampled_from([0.0, 0.1, 0.3]),
)
def test_matches_a_model_that_keeps_every_timestamp(
    ops: list[tuple[str, float]], ratio: float, reserve: float
) -> None:
    ttl = 10.0
    clock = VirtualClock(start=3.7)
    budget = RetryBudget(ratio=ratio, min_per_second=reserve, ttl=ttl, clock=clock)
    calls: list[float] = []
    retries: list[float] = []

    def in_window(times: list[float]) -> int:
        # The window is the ten one-second buckets ending with the current one.
        now_bucket = math.floor(clock.monotonic() / 1.0)
        return sum(1 for t in times if math.floor(t / 1.0) > now_bucket - 10)

    for op, amount in ops:
        if op == "deposit":
            budget.deposit()
            calls.append(clock.monotonic())
        elif op == "withdraw":
            allowed = in_window(retries) + 1 <= reserve * ttl + ratio * in_window(calls)
            assert budget.try_withdraw() is allowed
            if allowed:
                retries.append(clock.monotonic())
        else:
            clock.advance(amount)
        stats = budget.stats()
        assert (stats.calls, stats.retries) == (in_window(calls), in_window(retries))


def test_one_budget_is_shared_safely_across_threads() -> None:
    budget = RetryBudget(ratio=0.5, min_per_second=1.0, ttl=10, clock=VirtualClock())  # reserve 10
    threads, per_thread = 8, 500
    deposited = threading.Barrier(threads)
    granted: list[int] = []

    def worker() -> None:
        for _ in range(per_thread):
            budget.deposit()
        deposited.wait(timeout=30)  # every deposit lands before any withdrawal
        granted.append(sum(budget.try_withdraw() for _ in range(per_thread)))

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=30)
    stats = budget.stats()
    assert stats.calls == threads * per_thread
    assert sum(granted) == stats.retries == 10 + 0.5 * threads * per_thread
    assert stats.refused == threads * per_thread - stats.retries


def test_policies_sharing_a_budget_drain_it_together() -> None:
    clock = VirtualClock()
    budget = RetryBudget(ratio=0.0, min_per_second=0.2, ttl=10, clock=clock)  # 2 retries per window
    first = Retry(stop=stop_never, wait=wait_none(), budget=budget, reraise=False, clock=clock)
    second = Retry(stop=stop_never, wait=wait_none(), budget=budget, reraise=False, clock=clock)

    def always_fails() -> None:
        raise OSError

    with pytest.raises(RetryError) as one:
        first.call(always_fails)
    with pytest.raises(RetryError) as two:
        second.call(always_fails)
    assert (one.value.reason, one.value.attempts) == ("budget", 3)  # used both retries
    assert (two.value.reason, two.value.attempts) == ("budget", 1)  # none left
    assert budget.stats().calls == 2


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"ratio": -0.1}, ValueError, r"ratio=-0.1\) must be a finite number >= 0"),
        ({"ratio": 11}, ValueError, "more than 10 retries per call is no budget"),
        ({"ratio": math.nan}, ValueError, "finite"),
        ({"ratio": "0.2"}, TypeError, "must be a number"),
        ({"min_per_second": -1}, ValueError, "min_per_second=-1"),
        ({"min_per_second": math.inf}, ValueError, "finite"),
        ({"ttl": 0}, ValueError, "the window must be > 0 seconds"),
        ({"ttl": True}, TypeError, "must be a number"),
    ],
)
def test_bad_configuration_is_refused(
    options: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        RetryBudget(**options)  # type: ignore[arg-type]


def test_repr_shows_the_configuration() -> None:
    assert (
        repr(RetryBudget(clock=VirtualClock()))
        == "RetryBudget(ratio=0.2, min_per_second=10.0, ttl=10.0)"
    )
