"""Balancers' fairness properties, and outlier ejection in virtual time."""

from __future__ import annotations

import collections
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cairn.client import (
    LeastOutstanding,
    OutlierDetection,
    RandomChoice,
    RoundRobin,
    WeightedRoundRobin,
)
from cairn.client._outlier import OutlierState
from cairn.discovery import Instance
from cairn.testing import VirtualClock


def _instances(n: int, weights: list[int] | None = None) -> list[Instance]:
    return [
        Instance(
            "svc",
            f"svc-{i}",
            "127.0.0.1",
            9000 + i,
            meta={} if weights is None else {"weight": str(weights[i])},
        )
        for i in range(n)
    ]


@given(n=st.integers(1, 12), rounds=st.integers(1, 6), seed=st.integers(0, 2**32))
def test_round_robin_gives_each_instance_exactly_its_turn(n: int, rounds: int, seed: int) -> None:
    candidates = _instances(n)
    balancer = RoundRobin(rng=random.Random(seed)).fork()
    counts = collections.Counter(balancer.pick(candidates, {}).id for _ in range(n * rounds))
    assert counts == {c.id: rounds for c in candidates}


@given(weights=st.lists(st.integers(0, 6), min_size=1, max_size=8), rounds=st.integers(1, 4))
def test_smooth_weighted_round_robin_is_exact_per_cycle(weights: list[int], rounds: int) -> None:
    candidates = _instances(len(weights), weights)
    balancer = WeightedRoundRobin().fork()
    total = sum(weights) or len(weights)
    picks = [balancer.pick(candidates, {}).id for _ in range(total * rounds)]
    counts = collections.Counter(picks)
    expected = weights if sum(weights) else [1] * len(weights)
    assert {c.id: counts[c.id] for c in candidates} == {
        c.id: w * rounds for c, w in zip(candidates, expected, strict=True)
    }
    # Smooth: within any cycle, no instance of weight w gets more than w picks in a row... of the
    # cycle's length, and a heavy instance is interleaved when others have weight.
    if len([w for w in weights if w]) > 1:
        heaviest = max(expected)
        longest = max(len(list(g)) for g in _runs(picks))
        assert longest <= heaviest


def _runs(items: list[str]) -> list[list[str]]:
    runs: list[list[str]] = []
    for item in items:
        if runs and runs[-1][-1] == item:
            runs[-1].append(item)
        else:
            runs.append([item])
    return runs


def test_weights_come_from_meta_with_a_default() -> None:
    balancer = WeightedRoundRobin(key="w", default=2)
    heavy = Instance("svc", "a", "127.0.0.1", 1, meta={"w": "3"})
    default = Instance("svc", "b", "127.0.0.1", 2)
    broken = Instance("svc", "c", "127.0.0.1", 3, meta={"w": "lots"})
    assert [balancer.weight(i) for i in (heavy, default, broken)] == [3, 2, 2]
    with pytest.raises(ValueError, match="key"):
        WeightedRoundRobin(key="")
    with pytest.raises(ValueError, match="default"):
        WeightedRoundRobin(default=-1)
    assert "WeightedRoundRobin" in repr(balancer)


@given(
    loads=st.lists(st.integers(0, 50), min_size=2, max_size=10, unique=True),
    seed=st.integers(0, 2**32),
)
def test_power_of_two_choices_never_picks_the_unique_most_loaded(
    loads: list[int], seed: int
) -> None:
    candidates = _instances(len(loads))
    load = {c.id: n for c, n in zip(candidates, loads, strict=True)}
    busiest = max(candidates, key=lambda c: load[c.id])
    balancer = LeastOutstanding(rng=random.Random(seed)).fork()
    for _ in range(50):
        assert balancer.pick(candidates, load) is not busiest


def test_power_of_two_choices_prefers_the_idle_of_two() -> None:
    a, b = _instances(2)
    balancer = LeastOutstanding(rng=random.Random(1))
    assert {balancer.pick([a, b], {"svc-0": 5}).id for _ in range(20)} == {"svc-1"}
    assert balancer.pick([a], {"svc-0": 5}) is a


def test_random_choice_spreads_over_every_candidate() -> None:
    candidates = _instances(4)
    balancer = RandomChoice(rng=random.Random(7)).fork()
    counts = collections.Counter(balancer.pick(candidates, {}).id for _ in range(4000))
    assert set(counts) == {c.id for c in candidates}
    assert all(800 < n < 1200 for n in counts.values()), counts


def test_balancers_refuse_a_bad_rng() -> None:
    for kind in (RoundRobin, RandomChoice, LeastOutstanding):
        with pytest.raises(ValueError, match="rng"):
            kind(rng=3)  # type: ignore[arg-type]
        assert kind.__name__ in repr(kind())


# -- outlier ejection -----------------------------------------------------------


def test_consecutive_failures_eject_for_a_growing_period() -> None:
    clock = VirtualClock()
    detector = OutlierDetection(consecutive_failures=3, base_ejection=10.0, max_ejection=25.0)
    state = OutlierState()

    def fail_until_ejected() -> float:
        for n in range(1, 4):
            until = detector.record_failure(state, now=clock.monotonic(), ejected=0, instances=4)
            if n < 3:
                assert until is None
        assert until is not None
        return until

    assert fail_until_ejected() == 10.0
    assert state.ejected(clock.monotonic())
    # While ejected, failures do not extend it.
    assert detector.record_failure(state, now=1.0, ejected=1, instances=4) is None
    clock.advance(10.0)
    assert not state.ejected(clock.monotonic())
    assert fail_until_ejected() == clock.monotonic() + 20.0  # second time: twice as long
    clock.advance(20.0)
    assert fail_until_ejected() == clock.monotonic() + 25.0  # capped at max_ejection
    assert state.ejections == 3
    # Time back in service pays ejections off: 30 s is three base periods.
    clock.advance(25.0 + 30.0)
    assert fail_until_ejected() == clock.monotonic() + 10.0
    assert state.ejections == 1


def test_a_success_ends_the_run_of_failures() -> None:
    detector = OutlierDetection(consecutive_failures=2)
    state = OutlierState()
    assert detector.record_failure(state, now=0.0, ejected=0, instances=2) is None
    detector.record_success(state)
    assert detector.record_failure(state, now=0.0, ejected=0, instances=2) is None
    assert detector.record_failure(state, now=0.0, ejected=0, instances=2) is not None


def test_no_more_than_the_allowed_share_is_ejected() -> None:
    detector = OutlierDetection(consecutive_failures=1, max_ejected_fraction=0.5)
    assert detector.allowed(2) == 1
    assert detector.allowed(5) == 2
    assert detector.allowed(1) == 1
    state = OutlierState()
    assert detector.record_failure(state, now=0.0, ejected=1, instances=2) is None
    assert detector.record_failure(state, now=0.0, ejected=0, instances=2) == 10.0
    assert OutlierDetection(max_ejected_fraction=0).allowed(10) == 1  # one may always go


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"consecutive_failures": 0}, "consecutive_failures"),
        ({"base_ejection": 0}, "base_ejection"),
        ({"max_ejection": 1.0, "base_ejection": 2.0}, "max_ejection"),
        ({"max_ejected_fraction": 2}, "max_ejected_fraction"),
    ],
)
def test_bad_outlier_settings_are_refused(settings: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        OutlierDetection(**settings)  # type: ignore[arg-type]
    assert "OutlierDetection(" in repr(OutlierDetection())
