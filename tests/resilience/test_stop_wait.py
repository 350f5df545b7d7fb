"""Stop and wait strategies: each alone, combined, and against their definitions."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
import tenacity
from hypothesis import given
from hypothesis import strategies as st

from cairn.resilience._stop import (
    RetryState,
    stop_after_attempt,
    stop_after_delay,
    stop_all,
    stop_any,
    stop_never,
)
from cairn.resilience._wait import (
    DEFAULT_MAX_WAIT,
    parse_retry_after,
    wait_combine,
    wait_decorrelated_jitter,
    wait_equal_jitter,
    wait_exponential,
    wait_fixed,
    wait_full_jitter,
    wait_none,
    wait_random,
)


class FixedRandom(random.Random):
    """A generator whose ``random()`` always returns ``value``: the extremes of a jitter."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


def state(
    attempt: int = 1,
    elapsed: float = 0.0,
    previous_delay: float | None = None,
    rng: random.Random | None = None,
) -> RetryState:
    return RetryState(
        attempt=attempt,
        elapsed=elapsed,
        previous_delay=previous_delay,
        error=None,
        result=None,
        rng=random.Random(0) if rng is None else rng,
    )


# -- stop ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("limit", "attempt", "stops"), [(1, 1, True), (3, 2, False), (3, 3, True), (3, 4, True)]
)
def test_stop_after_attempt_counts_the_first_attempt(limit: int, attempt: int, stops: bool) -> None:
    assert stop_after_attempt(limit)(state(attempt=attempt)) is stops


@pytest.mark.parametrize(
    ("elapsed", "stops"), [(0.0, False), (4.999, False), (5.0, True), (7.0, True)]
)
def test_stop_after_delay_measures_from_the_first_attempt(elapsed: float, stops: bool) -> None:
    assert stop_after_delay(5)(state(elapsed=elapsed)) is stops


def test_stop_never_never_stops() -> None:
    assert stop_never(state(attempt=10**9, elapsed=1e12)) is False


@pytest.mark.parametrize(
    ("attempt", "elapsed", "any_stops", "all_stop"),
    [(1, 0.0, False, False), (3, 0.0, True, False), (1, 10.0, True, False), (3, 10.0, True, True)],
)
def test_or_is_any_and_and_is_all(
    attempt: int, elapsed: float, any_stops: bool, all_stop: bool
) -> None:
    by_attempts, by_time = stop_after_attempt(3), stop_after_delay(10)
    s = state(attempt=attempt, elapsed=elapsed)
    assert (by_attempts | by_time)(s) is any_stops
    assert (by_attempts & by_time)(s) is all_stop
    assert stop_any(by_attempts, by_time)(s) is any_stops
    assert stop_all(by_attempts, by_time)(s) is all_stop


def test_chained_combinations_stay_flat_and_mix_kinds() -> None:
    a, b, c = stop_after_attempt(2), stop_after_attempt(5), stop_after_delay(1)
    chained = a | b | c
    assert isinstance(chained, stop_any)
    assert chained.strategies == (a, b, c)
    mixed = (a | b) & c
    assert isinstance(mixed, stop_all)
    assert len(mixed.strategies) == 2  # the any-of is kept whole inside the all-of
    assert mixed(state(attempt=2, elapsed=1.0)) is True
    assert mixed(state(attempt=2, elapsed=0.5)) is False
    assert (
        repr(chained)
        == "stop_any(stop_after_attempt(2), stop_after_attempt(5), stop_after_delay(1.0))"
    )


def test_plain_functions_combine_from_either_side() -> None:
    def after_ten(s: RetryState) -> bool:
        return s.attempt >= 10

    left = after_ten | stop_after_delay(1)
    right = stop_after_delay(1) & after_ten
    assert isinstance(left, stop_any)
    assert isinstance(right, stop_all)
    assert isinstance(after_ten & stop_never, stop_all)
    assert left(state(attempt=10)) is True
    assert right(state(attempt=10)) is False


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda: stop_after_attempt(0), ValueError, "must be >= 1"),
        (lambda: stop_after_attempt(-2), ValueError, "must be >= 1"),
        (lambda: stop_after_attempt(2.5), TypeError, "takes an int"),  # type: ignore[arg-type]
        (lambda: stop_after_attempt(True), TypeError, "takes an int"),
        (lambda: stop_after_delay(-1), ValueError, ">= 0"),
        (lambda: stop_after_delay(math.nan), ValueError, "finite"),
        (lambda: stop_after_delay(math.inf), ValueError, "finite"),
        (lambda: stop_after_delay("5"), TypeError, "number of seconds"),  # type: ignore[arg-type]
        (lambda: stop_any(), ValueError, "at least one"),
        (lambda: stop_all(stop_never, 3), TypeError, "takes stop strategies"),  # type: ignore[arg-type]
    ],
)
def test_stop_configuration_is_checked(
    make: Callable[[], object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        make()


# -- wait: fixed and random ------------------------------------------------------


def test_wait_none_and_fixed() -> None:
    assert wait_none()(state(attempt=7)) == 0.0
    assert wait_fixed(2.5)(state(attempt=1)) == 2.5
    assert wait_fixed(2.5)(state(attempt=9)) == 2.5
    assert repr(wait_fixed(2)) == "wait_fixed(2.0)"
    assert repr(wait_none()) == "wait_none()"


@given(
    low=st.floats(0, 100),
    span=st.floats(0, 100),
    seed=st.integers(0, 2**32),
)
def test_wait_random_stays_within_its_bounds(low: float, span: float, seed: int) -> None:
    wait = wait_random(low, low + span)
    delay = wait(state(rng=random.Random(seed)))
    assert wait.min <= delay <= wait.max


def test_wait_random_draws_from_the_injected_generator() -> None:
    wait = wait_random(1.0, 3.0)
    assert wait(state(rng=FixedRandom(0.0))) == 1.0
    assert wait(state(rng=FixedRandom(0.5))) == 2.0
    draws = [wait(state(rng=random.Random(42))) for _ in range(3)]
    assert draws[0] == draws[1] == draws[2]  # same seed, same delay: no hidden state


# -- wait: exponential -----------------------------------------------------------


def test_wait_exponential_defaults_double_from_one_second_up_to_the_cap() -> None:
    wait = wait_exponential()
    assert [wait(state(attempt=n)) for n in range(1, 9)] == [
        1,
        2,
        4,
        8,
        16,
        32,
        DEFAULT_MAX_WAIT,
        DEFAULT_MAX_WAIT,
    ]


def test_wait_exponential_clamps_to_min_and_max() -> None:
    wait = wait_exponential(multiplier=0.1, min=0.5, max=3)
    assert [wait(state(attempt=n)) for n in range(1, 8)] == [0.5, 0.5, 0.5, 0.8, 1.6, 3.0, 3.0]


@given(
    multiplier=st.floats(0, 100, allow_subnormal=False),
    low=st.floats(0, 50),
    extra=st.floats(0, 1000),
    exp_base=st.sampled_from([1, 1.5, 2, 3, 10]),
    attempt=st.integers(1, 3000),
)
def test_wait_exponential_is_tenacitys_formula(
    multiplier: float, low: float, extra: float, exp_base: float, attempt: int
) -> None:
    ours = wait_exponential(multiplier=multiplier, min=low, max=low + extra, exp_base=exp_base)
    theirs = tenacity.wait_exponential(
        multiplier=multiplier, min=low, max=low + extra, exp_base=exp_base
    )
    expected = theirs(SimpleNamespace(attempt_number=attempt))  # type: ignore[arg-type]
    assert ours(state(attempt=attempt)) == pytest.approx(expected, rel=1e-12)
    assert low <= ours(state(attempt=attempt)) <= low + extra


def test_wait_exponential_survives_huge_attempt_numbers() -> None:
    assert wait_exponential(multiplier=0.5, max=7)(state(attempt=100_000)) == 7.0
    assert (
        wait_exponential(multiplier=1e-300, max=7, exp_base=1.0001)(state(attempt=10_000_000))
        == 7.0
    )


def test_wait_exponential_reports_overflow_as_the_cap_like_tenacity() -> None:
    # With a zero multiplier the shortcut does not apply and the float power overflows.
    assert wait_exponential(multiplier=0, max=4, exp_base=1.5)(state(attempt=5000)) == 4.0


# -- wait: jitter (AWS definitions) -------------------------------------------------


@given(
    base=st.floats(0.001, 10),
    cap=st.floats(0, 100),
    attempt=st.integers(1, 200),
    seed=st.integers(0, 2**32),
)
def test_full_and_equal_jitter_stay_within_their_ranges(
    base: float, cap: float, attempt: int, seed: int
) -> None:
    cap = max(cap, base)
    ceiling = min(cap, base * 2.0 ** min(attempt - 1, 2000))
    full = wait_full_jitter(base=base, cap=cap)(state(attempt=attempt, rng=random.Random(seed)))
    equal = wait_equal_jitter(base=base, cap=cap)(state(attempt=attempt, rng=random.Random(seed)))
    assert 0 <= full <= ceiling * (1 + 1e-12)
    assert ceiling / 2 * (1 - 1e-12) <= equal <= ceiling * (1 + 1e-12)


@pytest.mark.parametrize(
    ("draw", "attempt", "full", "equal"),
    [(0.0, 3, 0.0, 2.0), (0.5, 3, 2.0, 3.0), (0.5, 10, 5.0, 7.5)],
)
def test_full_and_equal_jitter_follow_the_definitions_exactly(
    draw: float, attempt: int, full: float, equal: float
) -> None:
    s = state(attempt=attempt, rng=FixedRandom(draw))
    assert wait_full_jitter(base=1, cap=10)(s) == full
    assert wait_equal_jitter(base=1, cap=10)(s) == equal


@given(
    base=st.floats(0.001, 10),
    cap=st.floats(0, 100),
    previous=st.none() | st.floats(0, 200),
    seed=st.integers(0, 2**32),
)
def test_decorrelated_jitter_stays_between_base_and_three_times_the_previous_delay(
    base: float, cap: float, previous: float | None, seed: int
) -> None:
    cap = max(cap, base)
    delay = wait_decorrelated_jitter(base=base, cap=cap)(
        state(previous_delay=previous, rng=random.Random(seed))
    )
    upper = max(base, 3 * (base if previous is None else previous))
    assert min(base, cap) <= delay <= min(cap, upper) * (1 + 1e-12)


def test_decorrelated_jitter_reads_the_previous_delay_from_the_state_only() -> None:
    wait = wait_decorrelated_jitter(base=1, cap=100)
    top = FixedRandom(1.0)
    assert wait(state(previous_delay=None, rng=top)) == 3.0  # starts from base
    assert wait(state(previous_delay=10.0, rng=top)) == 30.0
    # The same shared object, asked for another call in between, is not disturbed.
    assert wait(state(previous_delay=None, rng=top)) == 3.0
    assert wait(state(previous_delay=50.0, rng=top)) == 100.0  # capped
    assert wait(state(previous_delay=0.1, rng=top)) == 1.0  # never below base


# -- wait: combinations ----------------------------------------------------------


def test_waits_add_up_and_flatten() -> None:
    total = wait_fixed(1) + wait_fixed(2) + wait_exponential()
    assert isinstance(total, wait_combine)
    assert len(total.strategies) == 3
    assert total(state(attempt=3)) == 1 + 2 + 4
    assert repr(wait_fixed(1) + wait_none()) == "wait_fixed(1.0) + wait_none()"


def test_waits_work_with_sum_and_plain_functions() -> None:
    assert sum([wait_fixed(1), wait_fixed(0.5)])(state()) == 1.5  # type: ignore[operator]

    def two(s: RetryState) -> float:
        return 2.0

    assert (two + wait_fixed(1))(state()) == 3.0
    assert (wait_fixed(1) + two)(state()) == 3.0
    with pytest.raises(TypeError):
        _ = 1 + wait_fixed(1)


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda: wait_fixed(-1), ValueError, ">= 0"),
        (lambda: wait_fixed(math.inf), ValueError, "finite"),
        (lambda: wait_fixed(None), TypeError, "number of seconds"),  # type: ignore[arg-type]
        (
            lambda: wait_random(2, 1),
            ValueError,
            r"wait_random\(min\) \(2.0\) must not exceed max \(1.0\)",
        ),
        (lambda: wait_random(-1, 1), ValueError, ">= 0"),
        (lambda: wait_exponential(min=5, max=1), ValueError, "must not exceed max"),
        (lambda: wait_exponential(multiplier=-1), ValueError, "multiplier"),
        (
            lambda: wait_exponential(exp_base=0.5),
            ValueError,
            "exp_base must be a finite number >= 1",
        ),
        (lambda: wait_exponential(exp_base=math.nan), ValueError, "exp_base"),
        (lambda: wait_exponential(exp_base="2"), TypeError, "exp_base must be a number"),  # type: ignore[arg-type]
        (lambda: wait_full_jitter(base=0), ValueError, "> 0"),
        (lambda: wait_equal_jitter(base=5, cap=1), ValueError, "must not exceed cap"),
        (lambda: wait_decorrelated_jitter(cap=-1), ValueError, ">= 0"),
        (lambda: wait_combine(), ValueError, "at least one"),
        (lambda: wait_combine(wait_none(), 3), TypeError, "takes wait strategies"),  # type: ignore[arg-type]
    ],
)
def test_wait_configuration_is_checked(
    make: Callable[[], object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        make()


def test_reprs_show_the_configuration() -> None:
    assert (
        repr(wait_exponential(multiplier=2, max=5))
        == "wait_exponential(multiplier=2.0, min=0.0, max=5.0, exp_base=2)"
    )
    assert (
        repr(wait_full_jitter(base=0.1, cap=5)) == "wait_full_jitter(base=0.1, cap=5.0, exp_base=2)"
    )
    assert (
        repr(wait_decorrelated_jitter(base=1, cap=2))
        == "wait_decorrelated_jitter(base=1.0, cap=2.0)"
    )
    assert repr(wait_random(0, 1)) == "wait_random(0.0, 1.0)"
    assert repr(stop_never) == "stop_never"
    assert repr(stop_after_attempt(3) & stop_never) == "stop_all(stop_after_attempt(3), stop_never)"


# -- Retry-After ------------------------------------------------------------------

NOW = datetime(1994, 11, 6, 8, 49, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("0", 0.0),
        ("120", 120.0),
        (" 7\t", 7.0),
        ("Sun, 06 Nov 1994 08:49:37 GMT", 37.0),  # IMF-fixdate
        ("Sunday, 06-Nov-94 08:49:37 GMT", 37.0),  # obsolete RFC 850
        ("Sun Nov  6 08:49:37 1994", 37.0),  # obsolete asctime
        ("Sun Nov 16 08:49:00 1994", 10 * 86400.0),
        ("Sat, 05 Nov 1994 08:49:37 GMT", 0.0),  # in the past: retry now
    ],
)
def test_parse_retry_after_reads_seconds_and_the_three_date_forms(
    value: str, seconds: float
) -> None:
    assert parse_retry_after(value, now=NOW) == seconds


@pytest.mark.parametrize(
    "value",
    [
        "",
        "-1",
        "+5",
        "1.5",
        "1e3",
        "soon",
        "5 seconds",
        "sun, 06 Nov 1994 08:49:37 GMT",  # the grammar is case-sensitive
        "Sun, 06 Nov 1994 08:49:37 UTC",
        "Sun, 6 Nov 1994 08:49:37 GMT",  # IMF-fixdate has two-digit days
        "Sun, 30 Feb 1994 08:49:37 GMT",  # no such day
        "Sun, 06 Nov 1994 24:00:00 GMT",
        "Sun, 06 Nov 1994 08:49:37 GMT trailing",
        "9" * 400,  # would overflow a float
        "١٢",  # Arabic-Indic digits are digits to str.isdigit, not to HTTP
    ],
)
def test_parse_retry_after_rejects_anything_malformed(value: str) -> None:
    assert parse_retry_after(value, now=NOW) is None


def test_parse_retry_after_defaults_now_to_the_current_utc_time() -> None:
    future = datetime.now(UTC) + timedelta(days=2)
    seconds = parse_retry_after(future.strftime("%a, %d %b %Y %H:%M:%S GMT"))
    assert seconds is not None
    assert 2 * 86400 - 60 < seconds <= 2 * 86400


def test_parse_retry_after_takes_a_naive_now_as_utc() -> None:
    naive = NOW.replace(tzinfo=None)
    assert parse_retry_after("Sun, 06 Nov 1994 08:50:00 GMT", now=naive) == 60.0


@pytest.mark.parametrize(
    ("now_year", "two_digits", "year"),
    [(1994, "95", 1995), (2030, "80", 2080), (2030, "81", 1981), (2099, "01", 2101)],
)
def test_rfc850_two_digit_years_are_never_more_than_fifty_years_ahead(
    now_year: int, two_digits: str, year: int
) -> None:
    now = datetime(now_year, 1, 1, tzinfo=UTC)
    seconds = parse_retry_after(f"Sunday, 01-Jan-{two_digits} 00:00:00 GMT", now=now)
    expected = max(0.0, (datetime(year, 1, 1, tzinfo=UTC) - now).total_seconds())
    assert seconds == expected
