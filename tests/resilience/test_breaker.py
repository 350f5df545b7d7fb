"""CircuitBreaker, sync: every transition and detector, on a virtual clock."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable
from contextlib import ExitStack, suppress
from typing import Any

import pytest

from cairn.resilience import BreakerStats, CircuitBreaker, _breaker_state, circuit
from cairn.resilience._detectors import FAILED, SLOW, TimeWindow
from cairn.resilience._errors import CircuitOpenError
from cairn.resilience._events import BreakerRejected, BreakerState, BreakerStateChanged, Event
from cairn.resilience._policy import Policy
from cairn.testing import VirtualClock, capture_events

pytestmark = pytest.mark.usefixtures("breaker_impl")

CLOSED = BreakerState.CLOSED
OPEN = BreakerState.OPEN
HALF_OPEN = BreakerState.HALF_OPEN
FORCED_OPEN = BreakerState.FORCED_OPEN
DISABLED = BreakerState.DISABLED


class Boom(Exception):
    pass


def ok() -> str:
    return "ok"


def boom() -> None:
    raise Boom("down")


def raising(exc: BaseException) -> Callable[[], None]:
    def fn() -> None:
        raise exc

    return fn


def fail(breaker: CircuitBreaker, times: int = 1, exc: type[BaseException] = Boom) -> None:
    for _ in range(times):
        with pytest.raises(exc):
            breaker.call(raising(exc("down")))


def succeed(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        assert breaker.call(ok) == "ok"


def refused(breaker: CircuitBreaker) -> CircuitOpenError:
    ran = []
    with pytest.raises(CircuitOpenError) as info:
        breaker.call(lambda: ran.append(1))
    assert ran == [], "a refused call must not run"
    return info.value


def transitions(events: list[Event]) -> list[tuple[BreakerState, BreakerState, str]]:
    return [
        (e.from_state, e.to_state, e.reason) for e in events if isinstance(e, BreakerStateChanged)
    ]


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


# -- configuration ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"name": ""}, "name must be a non-empty string"),
        ({"failure_threshold": 0}, "failure_threshold must be >= 1"),
        ({"recovery_timeout": -1}, "recovery_timeout must be a finite number"),
        ({"recovery_timeout": float("inf")}, "recovery_timeout must be a finite number"),
        ({"recovery_timeout": float("nan")}, "recovery_timeout must be a finite number"),
        ({"recovery_multiplier": 0.5}, "recovery_multiplier must be >= 1"),
        ({"max_recovery_timeout": 10}, "max_recovery_timeout must be finite and >= recovery"),
        ({"half_open_max_calls": 0}, "half_open_max_calls must be >= 1"),
        ({"success_threshold": 0}, "success_threshold must be >= 1"),
        ({"record_on": KeyboardInterrupt}, "record_on must name Exception subclasses"),
        ({"record_on": (ValueError, "oops")}, "record_on must be an exception class"),
        ({"ignore_on": 3}, "ignore_on must be an exception class"),
        ({"failure_if_result": 3}, "failure_if_result must be callable"),
        ({"clock": object()}, "clock must have a monotonic"),
        ({"slow_call_duration": 1.0}, "slow_call_duration needs a sliding window"),
        ({"failure_threshold": 3, "window_size": 10}, "pick one"),
        ({"window_size": 10, "window_duration": 10}, "pick one window"),
        ({"window_size": 0}, "window_size must be in 1..100000"),
        ({"window_size": 100_001}, "window_size must be in 1..100000"),
        (
            {"window_size": 10, "minimum_calls": 11},
            r"minimum_calls must be in 1..window_size \(10\)",
        ),
        ({"window_size": 10, "minimum_calls": 0}, "minimum_calls must be in 1..window_size"),
        ({"window_duration": 10, "minimum_calls": 0}, "minimum_calls must be >= 1"),
        ({"window_duration": 0}, "window_duration must be in"),
        ({"window_duration": 3601}, "window_duration must be in"),
        ({"window_size": 10, "failure_rate": 50}, r"resilience4j's 50 is 0.5"),
        ({"window_size": 10, "failure_rate": 0}, "failure_rate is a fraction"),
        ({"window_size": 10, "slow_call_rate": 1.5}, "slow_call_rate is a fraction"),
        ({"window_size": 10, "slow_call_duration": 0}, "slow_call_duration must be > 0"),
    ],
)
def test_bad_configuration_is_refused_at_construction(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        CircuitBreaker(**options)


def test_defaults_follow_the_seed() -> None:
    breaker = CircuitBreaker()
    assert isinstance(breaker, Policy)
    assert breaker.state is CLOSED
    stats = breaker.stats()
    assert stats.recovery_timeout == 60.0
    assert stats.name == "circuit"
    assert repr(breaker) == "CircuitBreaker(name='circuit', state=closed)"


# -- consecutive failures ----------------------------------------------------------


def test_consecutive_failures_open_and_success_resets_the_count(clock: VirtualClock) -> None:
    breaker = CircuitBreaker(failure_threshold=3, clock=clock)
    fail(breaker, 2)
    succeed(breaker)
    assert breaker.stats().consecutive_failures == 0
    fail(breaker, 2)
    assert breaker.state is CLOSED
    assert breaker.stats().consecutive_failures == 2
    fail(breaker)
    assert breaker.state is OPEN
    assert refused(breaker).retry_after == 60.0


def test_recovery_timeout_is_exact(clock: VirtualClock) -> None:
    breaker = CircuitBreaker(failure_threshold=1, recovery_timeout=30, clock=clock)
    clock.advance(100)
    fail(breaker)
    clock.advance(29.75)
    assert refused(breaker).retry_after == pytest.approx(0.25)
    assert breaker.state is OPEN
    stats = breaker.stats()
    assert stats.opened_at == 100
    assert stats.retry_after == pytest.approx(0.25)
    clock.advance(0.25)
    # Due, but the move waits for a call: no timer runs.
    assert breaker.state is OPEN
    assert breaker.stats().retry_after == 0.0
    succeed(breaker)
    assert breaker.state is CLOSED


def test_trial_failure_reopens_for_another_full_timeout(clock: VirtualClock) -> None:
    breaker = CircuitBreaker(failure_threshold=2, recovery_timeout=10, clock=clock)
    with capture_events() as events:
        fail(breaker, 2)
        clock.advance(10)
        fail(breaker)
        assert breaker.state is OPEN
        assert breaker.stats().opened_at == 10
        clock.advance(9)
        assert refused(breaker).retry_after == pytest.approx(1)
        clock.advance(1)
        succeed(breaker)
    assert transitions(events) == [
        (CLOSED, OPEN, "2 consecutive failures"),
        (OPEN, HALF_OPEN, "recovery timeout elapsed"),
        (HALF_OPEN, OPEN, "trial failed"),
        (OPEN, HALF_OPEN, "recovery timeout elapsed"),
        (HALF_OPEN, CLOSED, "trial succeeded"),
    ]


def test_success_threshold_needs_that_many_trial_successes(clock: VirtualClock) -> None:
    breaker = CircuitBreaker(failure_threshold=1, success_threshold=3, clock=clock)
    fail(breaker)
    clock.advance(60)
    succeed(breaker, 2)
    assert breaker.state is HALF_OPEN
    assert breaker.stats().retry_after == 0.0
    succeed(breaker)
    assert breaker.state is CLOSED


def test_success_threshold_resets_when_a_trial_fails(clock: VirtualClock) -> None:
    breaker = CircuitBreaker(failure_threshold=1, success_threshold=2, clock=clock)
    fail(breaker)
    clock.advance(60)
    succeed(breaker)
    fail(breaker)
    clock.advance(60)
    succeed(breaker)
    assert breaker.state is HALF_OPEN, "the success before the reopening must not count"
    succeed(breaker)
    assert breaker.state is CLOSED


def test_growing_break_multiplies_per_reopening_up_to_the_cap(clock: VirtualClock) -> None:
    breaker = CircuitBreaker(
        failure_threshold=1,
        recovery_timeout=10,
        recovery_multiplier=3,
        max_recovery_timeout=100,
        clock=clock,
    )
    fail(breaker)
    seen = []
    for _ in range(4):
        seen.append(breaker.stats().recovery_timeout)
        assert refused(breaker).retry_after == seen[-1]
        clock.advance(seen[-1])
        fail(breaker)  # the trial fails
    assert seen == [10, 30, 90, 100]
    assert breaker.stats().recovery_timeout == 100
    clock.advance(100)
    succeed(breaker)
    # Closing forgets the streak: the next opening waits the base time again.
    fail(breaker)
    assert breaker.stats().recovery_timeout == 10


def test_default_cap_of_the_growing_break_is_ten_times_the_base(clock: VirtualClock) -> None:
    breaker = CircuitBreaker(
        failure_threshold=1, recovery_timeout=1, recovery_multiplier=100, clock=clock
    )
    fail(breaker)
    clock.advance(1)
    fail(breaker)
    assert breaker.stats().recovery_timeout == 10


def test_zero_recovery_timeout_admits_a_trial_at_once(clock: VirtualClock) -> None:
    breaker = CircuitBreaker(failure_threshold=1, recovery_timeout=0, clock=clock)
    fail(breaker)
    assert breaker.state is OPEN
    succeed(breaker)
    assert breaker.state is CLOSED


# -- what counts -----------------------------------------------------------------


def test_record_on_limits_failures_and_other_errors_count_as_success(
    clock: VirtualClock,
) -> None:
    breaker = CircuitBreaker(failure_threshold=2, record_on=ConnectionError, clock=clock)
    fail(breaker, exc=ConnectionError)
    fail(breaker, exc=KeyError)  # not recorded: a success, so the streak breaks
    assert breaker.stats().consecutive_failures == 0
    fail(breaker, exc=ConnectionError)
    assert breaker.state is CLOSED
    fail(breaker, exc=ConnectionError)
    assert breaker.state is OPEN
    assert breaker.stats().total_failures == 3


def test_ignore_on_counts_as_neither_and_wins_over_record_on(clock: VirtualClock) -> None:
    breaker = CircuitBreaker(
        failure_threshold=2,
        record_on=(LookupError, ConnectionError),
        ignore_on=KeyError,
        clock=clock,
    )
    fail(breaker, exc=IndexError)
    fail(breaker, exc=KeyError)  # a LookupError, but ignored: the streak holds
    assert breaker.stats().consecutive_failures == 1
    fail(breaker, exc=ConnectionError)
    assert breaker.state is OPEN


def test_ignored_trial_releases_its_permit_without_deciding(clock: VirtualClock) -> None:
    breaker = CircuitBreaker(failure_threshold=1, ignore_on=KeyError, clock=clock)
    fail(breaker)
    clock.advance(60)
    fail(breaker, exc=KeyError)
    assert breaker.state is HALF_OPEN
    assert breaker.stats().retry_after == 0.0, "the permit must be free again"
    succeed(breaker)
    assert breaker.state is CLOSED


@pytest.mark.parametrize("exc", [KeyboardInterrupt, SystemExit, GeneratorExit])
def test_base_exceptions_count_as_neither(clock: VirtualClock, exc: type[BaseException]) -> None:
    breaker = CircuitBreaker(failure_threshold=1, clock=clock)
    fail(breaker, exc=exc)
    assert breaker.state is CLOSED
    assert breaker.stats().total_failures == 0
    fail(breaker)
    clock.advance(60)
    fail(breaker, exc=exc)
    assert breaker.state is HALF_OPEN
    succeed(breaker)
    assert breaker.state is CLOSED


def test_failure_if_result_treats_a_value_as_failure(clock: VirtualClock) -> None:
    breaker = CircuitBreaker(
        failure_threshold=2, failure_if_result=lambda r: r is None, clock=clock
    )
    assert breaker.call(lambda: None) is None  # still returned to the caller
    assert breaker.call(lambda: 1) == 1
    assert breaker.call(lambda: None) is None
    assert breaker.state is CLOSED
    assert breaker.call(lambda: None) is None
    assert breaker.state is OPEN
    assert breaker.stats().total_failures == 3


def test_a_raising_result_predicate_propagates_and_frees_the_permit(
    clock: VirtualClock,
) -> None:
    def judge(result: object) -> bool:
        raise RuntimeError("bad predicate")

    breaker = CircuitBreaker(failure_threshold=1, failure_if_result=judge, clock=clock)
    fail(breaker)
    clock.advance(60)
    with pytest.raises(RuntimeError, match="bad predicate"):
        breaker.call(ok)
    assert breaker.state is HALF_OPEN
    assert breaker.stats().retry_after == 0.0


# -- sliding windows ----------------------------------------------------------------


def test_count_window_opens_at_the_failure_rate_once_minimum_calls_is_reached(
    clock: VirtualClock,
) -> None:
    breaker = CircuitBreaker(window_size=10, failure_rate=0.5, minimum_calls=4, clock=clock)
    fail(breaker, 3)
    assert breaker.state is CLOSED, "3 calls are fewer than minimum_calls"
    assert breaker.stats().failure_rate is None
    with capture_events() as events:
        succeed(breaker)  # the 4th call: 3/4 failed, and a success trips it
    assert breaker.state is OPEN
    assert transitions(events) == [(CLOSED, OPEN, "failure rate 75% >= 50% over the last 4 calls")]
    stats = breaker.stats()
    assert (stats.window_calls, stats.window_failures, stats.failure_rate) == (4, 3, 0.75)


def test_count_window_forgets_calls_pushed_out(clock: VirtualClock) -> None:
    breaker = CircuitBreaker(window_size=4, failure_rate=0.5, clock=clock)
    assert breaker.stats().failure_rate is None
    succeed(breaker, 3)
    fail(breaker)  # [s s s f]: 25 %
    succeed(breaker, 3)  # [f s s s]: the failure is the oldest call
    assert breaker.stats().window_failures == 1
    succeed(breaker)  # [s s s s]
    assert breaker.stats().window_failures == 0
    fail(breaker)  # [s s s f]
    assert breaker.state is CLOSED
    fail(breaker)  # [s s f f]: 50 %
    assert breaker.state is OPEN


def test_count_window_is_judged_exactly_at_the_threshold(clock: VirtualClock) -> None:
    breaker = CircuitBreaker(window_size=5, failure_rate=0.4, minimum_calls=5, clock=clock)
    succeed(breaker, 3)
    fail(breaker)
    assert breaker.state is CLOSED
    fail(breaker)  # 2/5 = 40 % >= 40 %
    assert breaker.state is OPEN


def test_window_is_cleared_when_the_circuit_closes(clock: VirtualClock) -> None:
    breaker = CircuitBreaker(window_size=4, failure_rate=0.5, minimum_calls=2, clock=clock)
    fail(breaker, 2)
    assert breaker.stats().window_calls == 2
    clock.advance(60)
    succeed(breaker)
    assert breaker.state is CLOSED
    stats = breaker.stats()
    assert (stats.window_calls, stats.consecutive_failures) == (0, 0)
    fail(breaker)
    assert breaker.state is CLOSED, "one failure out of one is below minimum_calls"


def test_time_window_counts_only_the_last_seconds(clock: VirtualClock) -> None:
    breaker = CircuitBreaker(window_duration=10, failure_rate=0.5, minimum_calls=4, clock=clock)
    fail(breaker, 3)  # t = 0
    clock.advance(10)  # the bucket of t = 0 leaves the window
    succeed(breaker)
    stats = breaker.stats()
    assert (stats.window_calls, stats.window_failures) == (1, 0)
    clock.advance(5)
    fail(breaker, 2)  # t = 15
    clock.advance(4.5)  # t = 19.5: the call at t = 10 is still inside
    assert breaker.state is CLOSED
    fail(breaker)  # 3 of 4 calls in (9.5, 19.5] failed
    assert breaker.state is OPEN


def test_time_window_forgets_everything_after_a_long_silence(clock: VirtualClock) -> None:
    breaker = CircuitBreaker(window_duration=2, minimum_calls=2, clock=clock)
    fail(breaker)
    clock.advance(1000)
    assert breaker.stats().window_calls == 0
    fail(breaker)
    assert breaker.state is CLOSED


def test_time_window_reports_its_span_in_the_reason(clock: VirtualClock) -> None:
    breaker = CircuitBreaker(window_duration=30, minimum_calls=2, clock=clock)
    with capture_events() as events:
        fail(breaker, 2)
    assert transitions(events) == [
        (CLOSED, OPEN, "failure rate 100% >= 50% over 2 calls in the last 30s")
    ]


def work(clock: VirtualClock, seconds: float, result: str = "ok") -> Callable[[], str]:
    def fn() -> str:
        clock.advance(seconds)
        return result

    return fn


def test_slow_calls_open_the_circuit_on_their_own_rate(clock: VirtualClock) -> None:
    breaker = CircuitBreaker(
        window_size=4,
        minimum_calls=4,
        slow_call_duration=2,
        slow_call_rate=0.5,
        clock=clock,
    )
    breaker.call(work(clock, 2))  # exactly the threshold: not slow
    breaker.call(work(clock, 2.5))
    breaker.call(work(clock, 0.1))
    assert breaker.stats().window_slow_calls == 1
    with capture_events() as events:
        breaker.call(work(clock, 3))
    assert breaker.state is OPEN
    assert transitions(events) == [
        (CLOSED, OPEN, "slow-call rate 50% >= 50% over the last 4 calls")
    ]
    stats = breaker.stats()
    assert (stats.slow_call_rate, stats.failure_rate) == (0.5, 0.0)


def test_a_slow_trial_reopens_the_circuit(clock: VirtualClock) -> None:
    breaker = CircuitBreaker(window_duration=60, minimum_calls=1, slow_call_duration=1, clock=clock)
    breaker.call(work(clock, 5))
    assert breaker.state is OPEN
    clock.advance(60)
    with capture_events() as events:
        breaker.call(work(clock, 5))
    assert transitions(events)[-1] == (HALF_OPEN, OPEN, "trial too slow")
    clock.advance(60)
    breaker.call(work(clock, 0.5))
    assert breaker.state is CLOSED


def test_slow_failures_count_both_ways(clock: VirtualClock) -> None:
    def slow_failure() -> None:
        clock.advance(3)
        raise Boom

    breaker = CircuitBreaker(window_size=10, minimum_calls=10, slow_call_duration=1, clock=clock)
    with pytest.raises(Boom):
        breaker.call(slow_failure)
    stats = breaker.stats()
    assert (stats.window_calls, stats.window_failures, stats.window_slow_calls) == (1, 1, 1)


# -- operator's levers -----------------------------------------------------------------


def test_force_open_refuses_until_reset(clock: VirtualClock) -> None:
    breaker = CircuitBreaker(clock=clock)
    with capture_events() as events:
        breaker.force_open()
        breaker.force_open()  # no second transition
        error = refused(breaker)
        clock.advance(10_000)
        refused(breaker)
        breaker.reset()
    assert error.state is FORCED_OPEN
    assert error.retry_after is None
    assert "forced open" in str(error)
    assert transitions(events) == [(CLOSED, FORCED_OPEN, "forced"), (FORCED_OPEN, CLOSED, "reset")]
    rejections = [e for e in events if isinstance(e, BreakerRejected)]
    assert [(e.state, e.retry_after) for e in rejections] == [(FORCED_OPEN, None)] * 2
    succeed(breaker)


def test_force_open_stats(clock: VirtualClock) -> None:
    breaker = CircuitBreaker(clock=clock)
    clock.advance(7)
    breaker.force_open()
    stats = breaker.stats()
    assert (stats.state, stats.opened_at, stats.retry_after) == (FORCED_OPEN, 7, None)


def test_disabled_lets_everything_through_and_records_nothing(clock: VirtualClock) -> None:
    breaker = CircuitBreaker(failure_threshold=1, clock=clock)
    fail(breaker)
    with capture_events() as events:
        breaker.disable()
        fail(breaker, 10)
        succeed(breaker)
    assert breaker.state is DISABLED
    assert transitions(events) == [(OPEN, DISABLED, "disabled")]
    stats = breaker.stats()
    assert (stats.total_calls, stats.total_failures, stats.total_rejections) == (1, 1, 0)
    breaker.reset()
    assert breaker.state is CLOSED
    fail(breaker)
    assert breaker.state is OPEN


def test_reset_clears_counts_and_the_growing_break(clock: VirtualClock) -> None:
    breaker = CircuitBreaker(
        failure_threshold=3, recovery_timeout=10, recovery_multiplier=2, clock=clock
    )
    fail(breaker, 2)
    with capture_events() as events:
        breaker.reset()  # already CLOSED: counts cleared, no transition
    assert transitions(events) == []
    fail(breaker, 2)
    assert breaker.state is CLOSED
    fail(breaker)
    clock.advance(10)
    fail(breaker)  # reopened for 20 s
    assert breaker.stats().recovery_timeout == 20
    breaker.reset()
    fail(breaker, 3)
    assert breaker.stats().recovery_timeout == 10
    assert breaker.stats().total_failures == 9, "totals are never reset"


# -- stale outcomes ----------------------------------------------------------------------


def test_a_call_that_ends_after_the_circuit_opened_is_not_judged(clock: VirtualClock) -> None:
    breaker = CircuitBreaker(failure_threshold=1, recovery_timeout=10, clock=clock)

    def outlived() -> None:
        fail(breaker)  # a concurrent failure opens the circuit meanwhile
        clock.advance(10)
        succeed(breaker)  # ... and a trial closes it again
        raise Boom("late")

    with pytest.raises(Boom):
        breaker.call(outlived)
    assert breaker.state is CLOSED
    stats = breaker.stats()
    assert stats.consecutive_failures == 0, "a failure admitted in an earlier period"
    assert stats.total_failures == 2


def test_a_trial_that_ends_after_another_closed_the_circuit_is_not_judged(
    clock: VirtualClock,
) -> None:
    breaker = CircuitBreaker(failure_threshold=1, half_open_max_calls=2, clock=clock)
    fail(breaker)
    clock.advance(60)

    def first_trial() -> None:
        succeed(breaker)  # the second trial closes the circuit
        raise Boom("late trial")

    with pytest.raises(Boom):
        breaker.call(first_trial)
    assert breaker.state is CLOSED
    assert breaker.stats().consecutive_failures == 0


def test_a_trial_that_ends_after_force_open_does_not_reopen(clock: VirtualClock) -> None:
    breaker = CircuitBreaker(failure_threshold=1, clock=clock)
    fail(breaker)
    clock.advance(60)

    def trial() -> None:
        breaker.force_open()
        raise Boom

    with pytest.raises(Boom):
        breaker.call(trial)
    assert breaker.state is FORCED_OPEN


# -- events and stats -----------------------------------------------------------------


def test_local_listeners_see_rejections_with_their_wait(clock: VirtualClock) -> None:
    seen: list[Event] = []
    breaker = CircuitBreaker(
        name="inventory", failure_threshold=1, clock=clock, listeners=[seen.append]
    )
    fail(breaker)
    clock.advance(15)
    refused(breaker)
    assert seen == [
        BreakerStateChanged("inventory", 0.0, CLOSED, OPEN, "1 consecutive failures"),
        BreakerRejected("inventory", 15.0, OPEN, 45.0),
    ]


def test_no_event_is_built_when_nobody_listens(
    clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[str] = []
    monkeypatch.setattr(_breaker_state, "BreakerRejected", lambda *a: built.append("rejected"))
    monkeypatch.setattr(_breaker_state, "BreakerStateChanged", lambda *a: built.append("changed"))
    breaker = CircuitBreaker(failure_threshold=1, clock=clock)
    fail(breaker)
    refused(breaker)
    clock.advance(60)
    succeed(breaker)
    breaker.force_open()
    refused(breaker)
    assert breaker.state is FORCED_OPEN
    assert built == []


def test_half_open_rejection_event_has_no_retry_after(clock: VirtualClock) -> None:
    breaker = CircuitBreaker(failure_threshold=1, clock=clock)
    fail(breaker)
    clock.advance(60)
    with capture_events() as events:

        def trial() -> None:
            error = refused(breaker)
            assert (error.state, error.retry_after) == (HALF_OPEN, None)
            assert breaker.stats().retry_after is None, "no free trial slot"

        breaker.call(trial)
    assert [e for e in events if isinstance(e, BreakerRejected)] == [
        BreakerRejected("circuit", 60.0, HALF_OPEN, None)
    ]


def test_stats_is_a_frozen_snapshot(clock: VirtualClock) -> None:
    breaker = CircuitBreaker(name="db", failure_threshold=2, clock=clock)
    succeed(breaker, 3)
    fail(breaker, 2)
    clock.advance(1)
    refused(breaker)
    refused(breaker)
    stats = breaker.stats()
    assert stats == BreakerStats(
        name="db",
        state=OPEN,
        window_calls=0,
        window_failures=0,
        window_slow_calls=0,
        failure_rate=None,
        slow_call_rate=None,
        consecutive_failures=2,
        total_calls=5,
        total_failures=2,
        total_rejections=2,
        opened_at=0.0,
        retry_after=59.0,
        recovery_timeout=60.0,
    )
    with pytest.raises(AttributeError):
        stats.state = CLOSED  # type: ignore[misc]
    assert not hasattr(stats, "__dict__")


# -- ways to call ----------------------------------------------------------------------


def test_decorator_keeps_metadata_and_exposes_its_breaker(clock: VirtualClock) -> None:
    breaker = CircuitBreaker(failure_threshold=2, clock=clock)

    @breaker
    def fetch(x: int, *, scale: int = 1) -> int:
        """Fetch a thing."""
        if x < 0:
            raise Boom
        return x * scale

    assert fetch.breaker is breaker
    assert fetch.__name__ == "fetch"
    assert fetch.__doc__ == "Fetch a thing."
    assert fetch(2, scale=3) == 6
    with pytest.raises(Boom):
        fetch(-1)
    assert fetch(1) == 1  # breaks the streak
    assert breaker.stats().consecutive_failures == 0
    for _ in range(2):
        with pytest.raises(Boom):
            fetch(-1)
    with pytest.raises(CircuitOpenError):
        fetch(2)
    clock.advance(60)
    assert fetch(2) == 2
    assert breaker.state is CLOSED


def test_decorator_on_a_window_breaker_takes_the_general_path(clock: VirtualClock) -> None:
    @circuit(window_size=2, minimum_calls=2, clock=clock)
    def fetch(fail: bool) -> str:
        if fail:
            raise Boom
        return "ok"

    assert fetch(False) == "ok"
    with pytest.raises(Boom):
        fetch(True)
    assert fetch.breaker.state is OPEN
    with pytest.raises(CircuitOpenError):
        fetch(False)
    clock.advance(60)
    assert fetch(False) == "ok"
    assert fetch.breaker.state is CLOSED
    fetch.breaker.disable()
    assert fetch(False) == "ok"


def test_bare_circuit_decorator_names_the_breaker_after_the_function() -> None:
    @circuit
    def lookup() -> int:
        return 1

    assert lookup() == 1
    assert (
        lookup.breaker.name
        == f"{__name__}.test_bare_circuit_decorator_names_the_breaker_after_the_function.<locals>.lookup"
    )
    assert lookup.breaker.stats().recovery_timeout == 60


def test_one_circuit_decorator_gives_each_function_its_own_breaker() -> None:
    protect = circuit(name="shared-name", failure_threshold=1)

    @protect
    def a() -> None:
        raise Boom

    @protect
    def b() -> str:
        return "b"

    with pytest.raises(Boom):
        a()
    assert a.breaker is not b.breaker
    assert (a.breaker.name, b.breaker.name) == ("shared-name", "shared-name")
    assert b() == "b"


def test_circuit_refuses_bad_options_before_decorating() -> None:
    with pytest.raises(ValueError, match="failure_threshold must be >= 1"):
        circuit(failure_threshold=0)


def test_with_block_is_the_protected_call(clock: VirtualClock) -> None:
    breaker = CircuitBreaker(failure_threshold=2, clock=clock)
    with breaker as entered:
        assert entered is breaker
    for _ in range(2):
        with pytest.raises(Boom), breaker:
            raise Boom
    ran = []
    with pytest.raises(CircuitOpenError), breaker:
        ran.append(1)
    assert ran == []
    clock.advance(60)
    with breaker:
        pass
    assert breaker.state is CLOSED
    assert breaker.stats().total_calls == 4


def test_with_block_measures_slow_bodies_and_ignores_what_it_should(clock: VirtualClock) -> None:
    breaker = CircuitBreaker(
        window_size=2, minimum_calls=2, slow_call_duration=1, ignore_on=KeyError, clock=clock
    )
    with pytest.raises(KeyError), breaker:
        raise KeyError("ignored")
    with breaker:
        clock.advance(2)
    assert breaker.stats().window_calls == 1
    with breaker:
        clock.advance(2)
    assert breaker.state is OPEN
    clock.advance(60)
    with breaker:
        pass
    assert breaker.state is CLOSED
    breaker.disable()
    with pytest.raises(Boom), breaker:
        raise Boom
    assert breaker.stats().total_failures == 0


def test_with_blocks_of_two_breakers_may_close_out_of_order(clock: VirtualClock) -> None:
    first = CircuitBreaker(name="first", failure_threshold=1, clock=clock)
    second = CircuitBreaker(name="second", failure_threshold=1, clock=clock)
    first.__enter__()
    second.__enter__()
    first.__exit__(Boom, Boom(), None)  # first's block ends first, failing
    second.__exit__(None, None, None)
    assert (first.state, second.state) == (OPEN, CLOSED)
    with pytest.raises(RuntimeError, match="without a matching __enter__"):
        second.__exit__(None, None, None)


def test_nested_with_blocks_of_one_breaker(clock: VirtualClock) -> None:
    breaker = CircuitBreaker(failure_threshold=2, clock=clock)
    with ExitStack() as stack:
        stack.enter_context(breaker)
        with pytest.raises(Boom), breaker:
            raise Boom
    assert breaker.stats().consecutive_failures == 0, "the outer block succeeded last"


# -- memory ----------------------------------------------------------------------------


def test_rejections_do_not_accumulate_memory(clock: VirtualClock) -> None:
    @circuit(failure_threshold=1, recovery_timeout=1e9, clock=clock)
    def down() -> None:
        raise Boom

    def reject_many(n: int) -> None:
        for _ in range(n):
            with suppress(CircuitOpenError):
                down()

    with pytest.raises(Boom):
        down()
    reject_many(1000)  # warm caches before measuring
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        gc_before = gc.get_count()[0]
        gc.disable()  # a reference cycle per refusal would then pile up
        try:
            reject_many(100_000)
        finally:
            gc.enable()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    growth = sum(s.size_diff for s in after.compare_to(before, "filename"))
    assert growth < 16 * 1024, f"memory grew by {growth} bytes over 100,000 rejections"
    assert gc.get_count()[0] - gc_before < 1000
    assert down.breaker.stats().total_rejections == 101_000


# -- lost races ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("steer", "expected"),
    [
        (CircuitBreaker.reset, "closed token"),
        (CircuitBreaker.disable, 0),
        (CircuitBreaker.force_open, (FORCED_OPEN, None)),
        (lambda b: b.call(boom), (OPEN, 60.0)),  # a trial failed: reopened
        (lambda b: b._trial(), (HALF_OPEN, None)),  # the last trial slot was taken
    ],
)
def test_taking_a_trial_permit_rechecks_the_state_under_the_lock(
    clock: VirtualClock, steer: Callable[[CircuitBreaker], object], expected: object
) -> None:
    # A caller saw OPEN and due without the lock; before it took the lock,
    # another thread moved the breaker on. _trial() is what it runs next.
    breaker = CircuitBreaker(failure_threshold=1, clock=clock)
    fail(breaker)
    clock.advance(60)
    with suppress(Boom):
        steer(breaker)
    outcome = breaker._trial()
    if isinstance(outcome, CircuitOpenError):
        assert (outcome.state, outcome.retry_after) == expected
    elif expected == "closed token":
        assert outcome > 0
        assert outcome == breaker._fast_token
    else:
        assert outcome == expected


def test_with_block_refused_in_open_tells_listeners(clock: VirtualClock) -> None:
    seen: list[Event] = []
    breaker = CircuitBreaker(window_size=1, minimum_calls=1, clock=clock, listeners=[seen.append])
    fail(breaker)
    clock.advance(10)
    with pytest.raises(CircuitOpenError), breaker:
        pass
    assert seen[-1] == BreakerRejected("circuit", 10.0, OPEN, 50.0)


def test_time_window_expires_bucket_by_bucket() -> None:
    window = TimeWindow(10, failure_rate=1.0, slow_call_rate=1.0, minimum_calls=100)
    window.record(FAILED, 0.2)
    window.record(FAILED | SLOW, 3.5)
    window.record(0, 9.9)
    assert window.rates(9.9)[:3] == (3, 2, 1)
    assert window.rates(10.0)[:3] == (2, 1, 1), "the bucket of [0, 1) left"
    assert window.rates(13.99)[:3] == (1, 0, 0), "the bucket of [3, 4) left"
    assert window.rates(5.0)[:3] == (1, 0, 0), "an earlier reading lands in the newest bucket"
    assert window.rates(19.95)[:3] == (0, 0, 0)


def test_short_time_windows_use_tenth_buckets() -> None:
    window = TimeWindow(0.5, failure_rate=0.5, slow_call_rate=1.0, minimum_calls=1)
    assert window.record(0, 0.0) is None
    assert window.record(FAILED, 0.26) == "failure rate 50% >= 50% over 2 calls in the last 0.5s"
    assert window.rates(0.52)[:2] == (1, 1), "the call at t = 0 left after 0.5 s"
