"""The Retry policy, sync: what is retried, when it stops, what the caller gets."""

from __future__ import annotations

import inspect
import math
import random
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cairn.resilience._retry as retry_module
from cairn.resilience import RetryError, RetryGaveUp, RetryScheduled
from cairn.resilience._budget import RetryBudget
from cairn.resilience._deadline import deadline_scope
from cairn.resilience._events import Event
from cairn.resilience._retry import Attempt, Retry, retry
from cairn.resilience._stop import RetryState, stop_after_attempt, stop_after_delay, stop_never
from cairn.resilience._wait import wait_fixed, wait_none
from cairn.testing import VirtualClock, capture_events


class Flaky:
    """Fails with the given errors in turn, then returns ``result``."""

    def __init__(self, *errors: BaseException, result: object = "ok") -> None:
        self.errors = list(errors)
        self.result = result
        self.calls = 0

    def __call__(self, *args: object, **kwargs: object) -> object:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return self.result


class ZeroRandom(random.Random):
    def random(self) -> float:
        return 0.0


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


# -- what is retried -----------------------------------------------------------


def test_retries_until_success_and_passes_arguments(clock: VirtualClock) -> None:
    seen: list[tuple[object, ...]] = []

    def fn(a: int, *, b: int) -> int:
        seen.append((a, b))
        if len(seen) < 3:
            raise OSError("flaky")
        return a + b

    assert policy(clock).call(fn, 2, b=3) == 5
    assert seen == [(2, 3)] * 3
    assert clock.sleeps == [1.0, 1.0]


def test_success_at_once_emits_nothing_and_never_sleeps(
    clock: VirtualClock, events: list[Event]
) -> None:
    assert policy(clock).call(Flaky()) == "ok"
    assert events == []
    assert clock.sleeps == []


def test_a_non_retryable_error_propagates_at_once(clock: VirtualClock, events: list[Event]) -> None:
    error = KeyError("not transient")
    fn = Flaky(OSError("transient"), error)
    with pytest.raises(KeyError) as caught:
        policy(clock, retry_on=(OSError,)).call(fn)
    assert caught.value is error
    assert fn.calls == 2
    assert clock.sleeps == [1.0]
    assert [type(e) for e in events] == [RetryScheduled]  # no give-up: it was not retried


def test_retry_on_a_single_type_includes_subclasses(clock: VirtualClock) -> None:
    fn = Flaky(ConnectionResetError(), TimeoutError())
    assert policy(clock, retry_on=OSError).call(fn) == "ok"
    assert fn.calls == 3


def test_retry_on_a_predicate_sees_the_exception(clock: VirtualClock) -> None:
    seen: list[BaseException] = []

    def transient(exc: Exception) -> bool:
        seen.append(exc)
        return "transient" in str(exc)

    first, second = ValueError("transient"), ValueError("permanent")
    with pytest.raises(ValueError, match="permanent"):
        policy(clock, retry_on=transient).call(Flaky(first, second))
    assert seen == [first, second]


@pytest.mark.parametrize("error", [KeyboardInterrupt(), SystemExit(3), GeneratorExit()])
def test_base_exceptions_are_never_retried(clock: VirtualClock, error: BaseException) -> None:
    fn = Flaky(error)
    with pytest.raises(type(error)):
        policy(clock, retry_on=lambda exc: True).call(fn)
    assert fn.calls == 1


def test_retry_if_result_retries_unwanted_results(clock: VirtualClock) -> None:
    results = iter([None, None, 42])
    fn = policy(clock, retry_if_result=lambda r: r is None)
    assert fn.call(lambda: next(results)) == 42
    assert clock.sleeps == [1.0, 1.0]


def test_retry_if_result_leaves_wanted_results_alone(clock: VirtualClock) -> None:
    assert policy(clock, retry_if_result=lambda r: r is None).call(Flaky(result=7)) == 7
    assert clock.sleeps == []


def test_errors_and_results_mix_in_one_call(clock: VirtualClock) -> None:
    outcomes: list[object] = [OSError(), None, "done"]

    def fn() -> object:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    assert policy(clock, retry_if_result=lambda r: r is None).call(fn) == "done"


# -- what the caller gets when it gives up ---------------------------------------


def test_reraise_raises_the_last_error_itself_without_chaining_the_earlier_ones(
    clock: VirtualClock,
) -> None:
    errors = [OSError("one"), OSError("two"), OSError("three")]
    with pytest.raises(OSError) as caught:
        policy(clock).call(Flaky(*errors))
    assert caught.value is errors[-1]
    assert caught.value.__context__ is None
    assert caught.value.__cause__ is None


def test_without_reraise_a_retry_error_holds_and_chains_the_last_error(clock: VirtualClock) -> None:
    errors = [OSError("one"), OSError("two"), OSError("three")]
    with pytest.raises(RetryError) as caught:
        policy(clock, reraise=False, name="db").call(Flaky(*errors))
    error = caught.value
    assert error.__cause__ is errors[-1]
    assert (error.name, error.attempts, error.reason, error.last_error) == (
        "db",
        3,
        "stop",
        errors[-1],
    )
    assert "gave up after 3 attempt(s) (stop); last error: OSError: three" in str(error)


def test_without_reraise_a_non_retryable_error_still_propagates_unwrapped(
    clock: VirtualClock,
) -> None:
    with pytest.raises(KeyError):
        policy(clock, reraise=False, retry_on=OSError).call(Flaky(KeyError()))


def test_result_give_up_returns_the_last_result_by_default(
    clock: VirtualClock, events: list[Event]
) -> None:
    results = iter(["busy-1", "busy-2", "busy-3", "never"])
    got = policy(clock, retry_if_result=lambda r: r.startswith("busy")).call(lambda: next(results))
    assert got == "busy-3"
    gave_up = events[-1]
    assert isinstance(gave_up, RetryGaveUp)
    assert (gave_up.reason, gave_up.attempts, gave_up.error) == ("stop", 3, None)


def test_result_give_up_without_reraise_raises_retry_error_with_the_result(
    clock: VirtualClock,
) -> None:
    with pytest.raises(RetryError) as caught:
        policy(clock, retry_if_result=lambda r: True, reraise=False).call(lambda: "busy")
    assert caught.value.last_result == "busy"
    assert caught.value.last_error is None
    assert caught.value.__cause__ is None
    assert "last result: 'busy'" in str(caught.value)


# -- stop, wait, hint ----------------------------------------------------------------


def test_stop_after_delay_counts_the_time_spent_in_attempts(clock: VirtualClock) -> None:
    def slow_failure() -> None:
        clock.advance(4)
        raise OSError

    with pytest.raises(OSError):
        policy(clock, stop=stop_after_delay(10), wait=wait_fixed(1)).call(slow_failure)
    # Attempts end at 4, 9, 14: the third is past 10 s, so two waits.
    assert clock.sleeps == [1.0, 1.0]
    assert clock.monotonic() == 14.0


def test_strategies_see_the_attempt_record(clock: VirtualClock) -> None:
    seen: list[RetryState] = []

    def wait(state: RetryState) -> float:
        seen.append(state)
        return 0.5 * state.attempt

    errors = [OSError("a"), OSError("b")]
    policy(clock, wait=wait).call(Flaky(*errors))
    assert [(s.attempt, s.elapsed, s.previous_delay, s.error) for s in seen] == [
        (1, 0.0, None, errors[0]),
        (2, 0.5, 0.5, errors[1]),
    ]
    assert clock.sleeps == [0.5, 1.0]


def test_a_zero_wait_retries_without_sleeping(clock: VirtualClock) -> None:
    assert policy(clock, wait=wait_none()).call(Flaky(OSError(), OSError())) == "ok"
    assert clock.sleeps == []


@pytest.mark.parametrize("bad", [-3.0, math.nan])
def test_a_negative_or_nan_wait_counts_as_zero(
    clock: VirtualClock, bad: float, events: list[Event]
) -> None:
    assert policy(clock, wait=lambda s: bad).call(Flaky(OSError())) == "ok"
    assert clock.sleeps == []
    assert isinstance(events[0], RetryScheduled)
    assert events[0].delay == 0.0


def test_the_injected_rng_makes_jitter_reproducible() -> None:
    def sleeps(seed: int) -> list[float]:
        clock = VirtualClock()
        retrying = Retry(stop=stop_after_attempt(4), clock=clock, rng=random.Random(seed))
        with pytest.raises(OSError):
            retrying.call(Flaky(*[OSError()] * 4))
        return clock.sleeps

    assert sleeps(7) == sleeps(7)
    assert sleeps(7) != sleeps(8)


def test_defaults_are_three_attempts_with_small_full_jitter(clock: VirtualClock) -> None:
    fn = Flaky(*[OSError()] * 5)
    with pytest.raises(OSError):
        Retry(clock=clock).call(fn)
    assert fn.calls == 3
    assert len(clock.sleeps) == 2
    assert 0 <= clock.sleeps[0] <= 0.1
    assert 0 <= clock.sleeps[1] <= 0.2


def test_hint_replaces_the_computed_wait(clock: VirtualClock) -> None:
    hinted: list[object] = []

    def hint(outcome: object) -> float | None:
        hinted.append(outcome)
        return 7.0 if isinstance(outcome, OSError) else None

    fn = Flaky(OSError("429"), ValueError("no hint"))
    assert policy(clock, hint=hint, wait=wait_fixed(1)).call(fn) == "ok"
    assert clock.sleeps == [7.0, 1.0]
    assert [type(h) for h in hinted] == [OSError, ValueError]


def test_hint_also_sees_retryable_results(clock: VirtualClock) -> None:
    results = iter([{"retry_after": 3}, {"ok": True}])
    retrying = policy(
        clock,
        retry_if_result=lambda r: "retry_after" in r,
        hint=lambda r: r["retry_after"],
    )
    assert retrying.call(lambda: next(results)) == {"ok": True}
    assert clock.sleeps == [3]


def test_hint_is_still_bounded_by_the_deadline(clock: VirtualClock, events: list[Event]) -> None:
    with pytest.raises(OSError):
        policy(clock, hint=lambda exc: 3600.0, deadline=60).call(Flaky(OSError()))
    assert clock.sleeps == []
    assert isinstance(events[-1], RetryGaveUp)
    assert events[-1].reason == "deadline"


# -- deadline -----------------------------------------------------------------------


@settings(max_examples=150)
@given(
    waits=st.lists(st.floats(0, 50), min_size=1, max_size=12),
    durations=st.lists(st.floats(0, 20), min_size=13, max_size=13),
    deadline=st.floats(0.001, 200),
)
def test_no_wait_ever_ends_past_the_deadline(
    waits: list[float], durations: list[float], deadline: float
) -> None:
    clock = VirtualClock(start=1000.0)
    schedule = iter(waits)
    spent = iter(durations)

    def fn() -> None:
        clock.advance(next(spent))
        raise OSError

    retrying = Retry(
        stop=stop_after_attempt(len(waits) + 1),
        wait=lambda s: next(schedule),
        deadline=deadline,
        clock=clock,
    )
    with capture_events() as events, pytest.raises(OSError):
        retrying.call(fn)
    assert sum(clock.sleeps) <= deadline
    # Each wait ends by the deadline, counted from the start of the first attempt.
    for event in events:
        if isinstance(event, RetryScheduled):
            assert event.at + event.delay <= 1000.0 + deadline
    gave_up = events[-1]
    assert isinstance(gave_up, RetryGaveUp)
    assert gave_up.reason in {"stop", "deadline"}


def test_a_wait_that_would_cross_the_deadline_gives_up_at_once(
    clock: VirtualClock, events: list[Event]
) -> None:
    retrying = policy(clock, stop=stop_never, wait=wait_fixed(4), deadline=10)
    fn = Flaky(*[OSError()] * 10)
    with pytest.raises(OSError):
        retrying.call(fn)
    assert clock.sleeps == [4.0, 4.0]  # a third wait would end at 12
    assert fn.calls == 3
    assert isinstance(events[-1], RetryGaveUp)
    assert (events[-1].reason, events[-1].attempts, events[-1].at) == ("deadline", 3, 8.0)


def test_a_wait_ending_exactly_on_the_deadline_is_allowed(clock: VirtualClock) -> None:
    fn = Flaky(*[OSError()] * 2)
    policy(clock, stop=stop_never, wait=wait_fixed(5), deadline=10).call(fn)
    assert clock.sleeps == [5.0, 5.0]


def test_the_inherited_deadline_bounds_the_waits(clock: VirtualClock, events: list[Event]) -> None:
    retrying = policy(clock, stop=stop_never, wait=wait_fixed(1))
    with deadline_scope(clock.monotonic() + 2.5), pytest.raises(OSError):
        retrying.call(Flaky(*[OSError()] * 10))
    assert clock.sleeps == [1.0, 1.0]
    assert isinstance(events[-1], RetryGaveUp)
    assert events[-1].reason == "deadline"


@pytest.mark.parametrize(("own", "inherited", "waits"), [(2.5, 10.0, 2), (10.0, 3.5, 3)])
def test_the_earlier_of_own_and_inherited_deadline_wins(
    clock: VirtualClock, own: float, inherited: float, waits: int
) -> None:
    retrying = policy(clock, stop=stop_never, wait=wait_fixed(1), deadline=own)
    with deadline_scope(inherited), pytest.raises(OSError):
        retrying.call(Flaky(*[OSError()] * 20))
    assert len(clock.sleeps) == waits


def test_an_inherited_deadline_already_past_gives_up_without_waiting(clock: VirtualClock) -> None:
    clock.advance(5)
    with deadline_scope(4.0), pytest.raises(OSError):
        policy(clock, wait=wait_none()).call(Flaky(OSError()))
    assert clock.sleeps == []


# -- budget -------------------------------------------------------------------------


def test_a_refusing_budget_gives_up_with_reason_budget(
    clock: VirtualClock, events: list[Event]
) -> None:
    budget = RetryBudget(ratio=0.0, min_per_second=0.1, ttl=10, clock=clock)  # one retry per 10 s
    retrying = policy(clock, budget=budget, stop=stop_never, reraise=False)
    with pytest.raises(RetryError) as caught:
        retrying.call(Flaky(*[OSError()] * 10))
    assert (caught.value.reason, caught.value.attempts) == ("budget", 2)
    assert clock.sleeps == [1.0]
    assert budget.stats().retries == 1
    assert budget.stats().refused == 1
    assert budget.stats().calls == 1


def test_every_call_deposits_into_the_budget(clock: VirtualClock) -> None:
    budget = RetryBudget(clock=clock)
    retrying = policy(clock, budget=budget)
    for _ in range(5):
        retrying.call(Flaky())
    assert budget.stats().calls == 5
    assert budget.stats().retries == 0


# -- events -------------------------------------------------------------------------


def test_events_carry_policy_time_attempt_delay_and_error(clock: VirtualClock) -> None:
    local: list[Event] = []
    errors = [OSError("a"), OSError("b"), OSError("c")]
    retrying = policy(clock, name="payments", wait=wait_fixed(2), listeners=(local.append,))
    with capture_events() as events, pytest.raises(OSError):
        retrying.call(Flaky(*errors))
    assert events == local
    assert events == [
        RetryScheduled(policy="payments", at=0.0, attempt=1, delay=2.0, error=errors[0]),
        RetryScheduled(policy="payments", at=2.0, attempt=2, delay=2.0, error=errors[1]),
        RetryGaveUp(policy="payments", at=4.0, attempts=3, reason="stop", error=errors[2]),
    ]


def test_a_retried_result_is_reported_without_an_error(
    clock: VirtualClock, events: list[Event]
) -> None:
    results = iter([0, 1])
    policy(clock, retry_if_result=lambda r: r == 0).call(lambda: next(results))
    assert events == [RetryScheduled(policy="retry", at=0.0, attempt=1, delay=1.0, error=None)]


# -- configuration ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        (
            {"deadline": 0},
            ValueError,
            r"deadline=0\): the deadline must be a finite number of seconds > 0",
        ),
        ({"deadline": -1.0}, ValueError, "finite number of seconds > 0"),
        ({"deadline": math.inf}, ValueError, "finite number of seconds > 0"),
        ({"deadline": True}, TypeError, "takes seconds or None"),
        ({"deadline": "5"}, TypeError, "takes seconds or None"),
        ({"retry_on": ()}, ValueError, "retries nothing"),
        ({"retry_on": KeyboardInterrupt}, ValueError, "only Exception subclasses can be retried"),
        ({"retry_on": (OSError, BaseException)}, ValueError, "only Exception subclasses"),
        ({"retry_on": (OSError, "ValueError")}, TypeError, "exception types or a predicate"),
        ({"retry_on": int}, TypeError, "exception types or a predicate"),
        ({"retry_on": 3}, TypeError, "exception types or a predicate"),
        ({"stop": 3}, TypeError, r"Retry\(stop=\) takes a strategy"),
        ({"wait": 1.0}, TypeError, r"Retry\(wait=\) takes a strategy"),
        ({"hint": 5}, TypeError, r"Retry\(hint=\) takes a function or None"),
        ({"retry_if_result": True}, TypeError, "retry_if_result"),
        ({"budget": 0.2}, TypeError, "takes a RetryBudget"),
        ({"name": ""}, ValueError, "non-empty name"),
        ({"clock": object()}, TypeError, "takes a Clock"),
        ({"rng": 42}, TypeError, r"takes a random.Random"),
        ({"listeners": [print]}, TypeError, "tuple of callables"),
        ({"listeners": (None,)}, TypeError, "tuple of callables"),
    ],
)
def test_bad_configuration_is_refused_with_a_clear_message(
    options: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        Retry(**options)  # type: ignore[arg-type]
    with pytest.raises(error, match=message):
        retry(**options)  # type: ignore[call-overload]


def test_repr_names_the_policy() -> None:
    assert repr(Retry(name="db", stop=stop_after_attempt(2), wait=wait_none())) == (
        "Retry(name='db', stop=stop_after_attempt(2), wait=wait_none())"
    )


# -- the decorator ----------------------------------------------------------------


def test_bare_decorator_uses_the_defaults_and_the_functions_name(
    monkeypatch: pytest.MonkeyPatch, events: list[Event]
) -> None:
    # The bare form sleeps on the system clock: draw zero jitter so it never waits.
    monkeypatch.setattr(retry_module, "_DEFAULT_RNG", ZeroRandom())
    calls = 0

    @retry
    def fetch() -> str:
        nonlocal calls
        calls += 1
        raise OSError(calls)

    with pytest.raises(OSError, match="3"):
        fetch()
    assert calls == 3  # the default stop
    assert {e.policy for e in events} == {fetch.__qualname__}
    assert [e.delay for e in events if isinstance(e, RetryScheduled)] == [0.0, 0.0]


def test_decorator_preserves_metadata() -> None:
    def original(a: int, b: str = "x", *, c: float) -> str:
        """Docs."""
        return f"{a}{b}{c}"

    wrapped = retry(stop=stop_after_attempt(2))(original)
    assert wrapped.__name__ == "original"
    assert wrapped.__doc__ == "Docs."
    assert wrapped.__wrapped__ is original  # type: ignore[attr-defined]
    assert inspect.signature(wrapped) == inspect.signature(original)
    assert wrapped(1, c=2.0) == "1x2.0"


def test_decorator_works_on_methods(clock: VirtualClock, events: list[Event]) -> None:
    class Client:
        def __init__(self) -> None:
            self.calls = 0

        @retry(stop=stop_after_attempt(3), wait=wait_fixed(1), clock=clock)
        def get(self, path: str) -> str:
            self.calls += 1
            if self.calls < 2:
                raise OSError
            return f"GET {path}"

    client = Client()
    assert client.get("/x") == "GET /x"
    assert client.calls == 2
    assert events[0].policy.endswith("Client.get")


def test_an_explicit_name_wins_over_the_functions(clock: VirtualClock, events: list[Event]) -> None:
    @retry(name="named", wait=wait_none(), clock=clock)
    def fn() -> None:
        raise OSError

    with pytest.raises(OSError):
        fn()
    assert {e.policy for e in events} == {"named"}


def test_one_retry_decorator_can_wrap_several_functions(
    clock: VirtualClock, events: list[Event]
) -> None:
    decorate = retry(stop=stop_after_attempt(2), wait=wait_none(), clock=clock)

    def one() -> None:
        raise OSError

    def two() -> None:
        raise OSError

    for fn in (decorate(one), decorate(two)):
        with pytest.raises(OSError):
            fn()
    assert [e.policy.rsplit(".", 1)[-1] for e in events if isinstance(e, RetryGaveUp)] == [
        "one",
        "two",
    ]


# -- attempts() ---------------------------------------------------------------------


def run_attempts(retrying: Retry, fn: Callable[[], object]) -> tuple[list[int], object]:
    numbers: list[int] = []
    result: object = None
    for attempt in retrying.attempts():
        assert isinstance(attempt, Attempt)
        with attempt:
            numbers.append(attempt.number)
            result = fn()
    return numbers, result


def test_attempts_loop_retries_then_ends_after_a_success(clock: VirtualClock) -> None:
    numbers, result = run_attempts(policy(clock), Flaky(OSError(), OSError()))
    assert (numbers, result) == ([1, 2, 3], "ok")
    assert clock.sleeps == [1.0, 1.0]


def test_attempts_loop_reraises_when_it_gives_up(clock: VirtualClock, events: list[Event]) -> None:
    errors = [OSError("1"), OSError("2"), OSError("3")]
    with pytest.raises(OSError) as caught:
        run_attempts(policy(clock), Flaky(*errors))
    assert caught.value is errors[-1]
    assert isinstance(events[-1], RetryGaveUp)
    assert events[-1].attempts == 3


def test_attempts_loop_without_reraise_raises_retry_error(clock: VirtualClock) -> None:
    last = OSError("3")
    with pytest.raises(RetryError) as caught:
        run_attempts(policy(clock, reraise=False), Flaky(OSError(), OSError(), last))
    assert caught.value.__cause__ is last
    assert caught.value.attempts == 3


def test_attempts_loop_lets_non_retryable_and_base_exceptions_through(clock: VirtualClock) -> None:
    with pytest.raises(KeyError):
        run_attempts(policy(clock, retry_on=OSError), Flaky(KeyError()))
    fn = Flaky(KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        run_attempts(policy(clock), fn)
    assert fn.calls == 1


def test_attempts_loop_retries_results_handed_over(clock: VirtualClock) -> None:
    results = iter([None, None, "x"])
    seen: list[object] = []
    for attempt in policy(clock, retry_if_result=lambda r: r is None).attempts():
        with attempt:
            value = next(results)
            attempt.set_result(value)
            seen.append(value)
    assert seen == [None, None, "x"]
    assert clock.sleeps == [1.0, 1.0]


def test_attempts_loop_result_give_up(clock: VirtualClock) -> None:
    count = 0
    for attempt in policy(clock, retry_if_result=lambda r: True).attempts():
        with attempt:
            count += 1
            attempt.set_result("busy")
    assert count == 3  # gave up; by default the caller keeps the last result

    def busy_forever() -> None:
        for attempt in policy(clock, retry_if_result=lambda r: True, reraise=False).attempts():
            with attempt:
                attempt.set_result("busy")

    with pytest.raises(RetryError) as caught:
        busy_forever()
    assert caught.value.last_result == "busy"


def test_attempts_loop_deposits_into_the_budget(clock: VirtualClock) -> None:
    budget = RetryBudget(clock=clock)
    numbers, _ = run_attempts(policy(clock, budget=budget), Flaky(OSError()))
    assert numbers == [1, 2]
    assert (budget.stats().calls, budget.stats().retries) == (1, 1)


def test_attempts_loop_ends_when_an_attempt_is_not_entered(clock: VirtualClock) -> None:
    attempts = list(policy(clock).attempts())
    assert len(attempts) == 1
    assert repr(attempts[0]) == "<Attempt 1 of 'retry'>"
