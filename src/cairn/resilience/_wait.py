"""How long a retry waits: small strategy objects that add up with ``+``.

A wait strategy turns the :class:`~cairn.resilience.RetryState` of the attempt
that just failed into a delay in seconds. Randomness comes from the state's
``rng`` (the policy's injectable :class:`random.Random`), and the only per-call
memory a strategy may need, the previous delay, comes from the state too: a
strategy object holds configuration only and is shared by every caller.

The exponential strategies number attempts like tenacity: after the first
failure (``attempt == 1``) the exponent is 0. The jittered ones follow the
definitions of the AWS Architecture Blog post "Exponential Backoff And
Jitter" (Marc Brooker, 2015).

>>> wait = wait_exponential(multiplier=0.5, max=10.0) + wait_random(0.0, 0.25)
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import UTC, datetime

from cairn.resilience._stop import RetryState

__all__ = [
    "DEFAULT_MAX_WAIT",
    "WaitFunc",
    "WaitStrategy",
    "parse_retry_after",
    "wait_combine",
    "wait_decorrelated_jitter",
    "wait_equal_jitter",
    "wait_exponential",
    "wait_fixed",
    "wait_full_jitter",
    "wait_none",
    "wait_random",
]

DEFAULT_MAX_WAIT = 60.0
"""The cap of the exponential strategies unless told otherwise: a retry that
would wait longer than a minute between attempts is better off failing."""

WaitFunc = Callable[[RetryState], float]
"""Anything that can pace a retry: a :class:`WaitStrategy` or a plain function."""


def _seconds(name: str, value: float, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{name} must be a finite number of seconds {bound}, got {value!r}")
    return float(value)


def _ordered(low_name: str, low: float, high_name: str, high: float) -> None:
    if low > high:
        raise ValueError(f"{low_name} ({low!r}) must not exceed {high_name} ({high!r})")


def _exp_base(exp_base: float) -> float:
    if isinstance(exp_base, bool) or not isinstance(exp_base, int | float):
        raise TypeError(f"exp_base must be a number, not {type(exp_base).__name__}")
    if not math.isfinite(exp_base) or exp_base < 1:
        raise ValueError(f"exp_base must be a finite number >= 1 (2 doubles), got {exp_base!r}")
    return exp_base


class WaitStrategy(ABC):
    """Turns a :class:`RetryState` into seconds to wait; ``a + b`` adds two up."""

    __slots__ = ()

    @abstractmethod
    def __call__(self, state: RetryState) -> float:
        """Seconds to wait before the attempt after ``state.attempt``."""

    def __add__(self, other: WaitFunc) -> wait_combine:
        return wait_combine(self, other)

    def __radd__(self, other: WaitFunc | int) -> WaitStrategy:
        # sum() starts from 0: let sum([wait_a, wait_b]) work.
        if isinstance(other, int) and other == 0:
            return self
        if isinstance(other, int):
            return NotImplemented
        return wait_combine(other, self)


class wait_none(WaitStrategy):  # lowercase: tenacity's spelling
    """Retry at once."""

    __slots__ = ()

    def __call__(self, state: RetryState) -> float:
        return 0.0

    def __repr__(self) -> str:
        return "wait_none()"


class wait_fixed(WaitStrategy):
    """Wait the same ``seconds`` before every retry."""

    __slots__ = ("seconds",)

    def __init__(self, seconds: float) -> None:
        self.seconds = _seconds("wait_fixed(seconds)", seconds)

    def __call__(self, state: RetryState) -> float:
        return self.seconds

    def __repr__(self) -> str:
        return f"wait_fixed({self.seconds!r})"


class wait_random(WaitStrategy):
    """Wait a uniformly random time between ``min`` and ``max`` seconds."""

    __slots__ = ("max", "min")

    def __init__(self, min: float = 0.0, max: float = 1.0) -> None:
        self.min = _seconds("wait_random(min)", min)
        self.max = _seconds("wait_random(max)", max)
        _ordered("wait_random(min)", self.min, "max", self.max)

    def __call__(self, state: RetryState) -> float:
        return self.min + state.rng.random() * (self.max - self.min)

    def __repr__(self) -> str:
        return f"wait_random({self.min!r}, {self.max!r})"


def _exponential(multiplier: float, exp_base: float, attempt: int, cap: float) -> float:
    """``multiplier * exp_base ** (attempt - 1)``, capped, without overflowing."""
    exponent = attempt - 1
    if (
        multiplier > 0
        and cap > 0
        and exp_base > 1
        and exponent > math.log(cap, exp_base) - math.log(multiplier, exp_base)
    ):
        # Past the cap already: skip building a huge power (stop_never retries forever).
        return cap
    try:
        return min(multiplier * exp_base**exponent, cap)
    except OverflowError:
        return cap


class wait_exponential(WaitStrategy):
    """Wait ``multiplier * exp_base ** (attempt - 1)`` seconds, clamped to ``[min, max]``.

    This is tenacity's formula exactly: with the defaults the waits after the
    first, second, third failure are 1, 2, 4 seconds. No jitter: prefer
    :class:`wait_full_jitter` when many clients retry against one server.
    """

    __slots__ = ("exp_base", "max", "min", "multiplier")

    def __init__(
        self,
        multiplier: float = 1.0,
        min: float = 0.0,  # tenacity's names, shadowing included
        max: float = DEFAULT_MAX_WAIT,
        exp_base: float = 2,
    ) -> None:
        self.multiplier = _seconds("wait_exponential(multiplier)", multiplier)
        self.min = _seconds("wait_exponential(min)", min)
        self.max = _seconds("wait_exponential(max)", max)
        _ordered("wait_exponential(min)", self.min, "max", self.max)
        self.exp_base = _exp_base(exp_base)

    def __call__(self, state: RetryState) -> float:
        return float(
            max(self.min, _exponential(self.multiplier, self.exp_base, state.attempt, self.max))
        )

    def __repr__(self) -> str:
        return (
            f"wait_exponential(multiplier={self.multiplier!r}, min={self.min!r}, "
            f"max={self.max!r}, exp_base={self.exp_base!r})"
        )


class _Jitter(WaitStrategy):
    __slots__ = ("base", "cap", "exp_base")

    def __init__(
        self, *, base: float = 1.0, cap: float = DEFAULT_MAX_WAIT, exp_base: float = 2
    ) -> None:
        name = type(self).__name__
        self.base = _seconds(f"{name}(base)", base, positive=True)
        self.cap = _seconds(f"{name}(cap)", cap)
        _ordered(f"{name}(base)", self.base, "cap", self.cap)
        self.exp_base = _exp_base(exp_base)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base={self.base!r}, cap={self.cap!r}, exp_base={self.exp_base!r})"


class wait_full_jitter(_Jitter):
    """AWS "Full Jitter": ``uniform(0, min(cap, base * exp_base ** (attempt - 1)))``.

    The best spread when many clients compete for one server; a wait may be
    close to zero.
    """

    __slots__ = ()

    def __call__(self, state: RetryState) -> float:
        return state.rng.random() * _exponential(self.base, self.exp_base, state.attempt, self.cap)


class wait_equal_jitter(_Jitter):
    """AWS "Equal Jitter": half the capped exponential delay, plus a random half.

    Never waits less than ``min(cap, base * exp_base ** (attempt - 1)) / 2``.
    """

    __slots__ = ()

    def __call__(self, state: RetryState) -> float:
        half = _exponential(self.base, self.exp_base, state.attempt, self.cap) / 2
        return half + state.rng.random() * half


class wait_decorrelated_jitter(_Jitter):
    """AWS "Decorrelated Jitter": ``min(cap, uniform(base, previous_delay * 3))``.

    The previous delay comes from the :class:`RetryState` (``base`` before the
    first retry), never from this shared object. ``exp_base`` is not used.
    """

    __slots__ = ()

    def __init__(self, *, base: float = 1.0, cap: float = DEFAULT_MAX_WAIT) -> None:
        super().__init__(base=base, cap=cap)

    def __call__(self, state: RetryState) -> float:
        previous = self.base if state.previous_delay is None else state.previous_delay
        high = max(self.base, previous * 3)
        return min(self.cap, self.base + state.rng.random() * (high - self.base))

    def __repr__(self) -> str:
        return f"wait_decorrelated_jitter(base={self.base!r}, cap={self.cap!r})"


class wait_combine(WaitStrategy):
    """The sum of several waits (what ``a + b`` builds)."""

    __slots__ = ("strategies",)

    def __init__(self, *strategies: WaitFunc) -> None:
        flat: list[WaitFunc] = []
        for strategy in strategies:
            if not callable(strategy):
                raise TypeError(f"wait_combine() takes wait strategies, got {strategy!r}")
            flat.extend(strategy.strategies if isinstance(strategy, wait_combine) else (strategy,))
        if not flat:
            raise ValueError("wait_combine() needs at least one wait strategy")
        self.strategies: tuple[WaitFunc, ...] = tuple(flat)

    def __call__(self, state: RetryState) -> float:
        return sum(strategy(state) for strategy in self.strategies)

    def __repr__(self) -> str:
        return " + ".join(map(repr, self.strategies))


# -- Retry-After ---------------------------------------------------------------

_MONTHS = {
    name: number
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}
_DAY = "(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_LONG_DAY = "(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)"
_MON = "(?P<mon>Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
_TIME = r"(?P<h>\d\d):(?P<m>\d\d):(?P<s>\d\d)"
# RFC 9110 §5.6.7: senders use IMF-fixdate; recipients also accept the two
# obsolete forms. The patterns are ASCII and case-sensitive, as the grammar is,
# and never consult the locale (strptime's %a/%b would).
_HTTP_DATES = (
    re.compile(rf"{_DAY}, (?P<d>\d\d) {_MON} (?P<y>\d{{4}}) {_TIME} GMT", re.ASCII),
    re.compile(rf"{_LONG_DAY}, (?P<d>\d\d)-{_MON}-(?P<y>\d\d) {_TIME} GMT", re.ASCII),
    re.compile(rf"{_DAY} {_MON} (?P<d>[ \d]\d) {_TIME} (?P<y>\d{{4}})", re.ASCII),
)
_DELTA_SECONDS = re.compile(r"\d+", re.ASCII)


def _http_date(value: str, now: datetime) -> datetime | None:
    for pattern in _HTTP_DATES:
        match = pattern.fullmatch(value)
        if match is None:
            continue
        year = int(match["y"])
        if len(match["y"]) == 2:
            # RFC 9110: a two-digit year more than 50 years ahead is in the past century.
            year += now.year // 100 * 100
            if year > now.year + 50:
                year -= 100
            elif year + 100 <= now.year + 50:
                year += 100
        try:
            return datetime(
                year,
                _MONTHS[match["mon"]],
                int(match["d"]),
                int(match["h"]),
                int(match["m"]),
                int(match["s"]),
                tzinfo=UTC,
            )
        except ValueError:  # 31 Feb, 25:00:00, …
            return None
    return None


def parse_retry_after(value: str, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from an HTTP ``Retry-After`` header value, or ``None``.

    Accepts delta-seconds (``"120"``) or an HTTP-date (``"Sun, 06 Nov 1994
    08:49:37 GMT"`` and the two obsolete forms RFC 9110 requires recipients to
    read). Anything else, a negative or fractional number included, gives
    ``None``: a malformed hint must not decide how long a client waits. A date
    in the past gives ``0.0``. ``now`` (default: the current UTC time; a naive
    datetime is taken as UTC) is what an HTTP-date is measured from.
    """
    text = value.strip(" \t")
    if _DELTA_SECONDS.fullmatch(text):
        if len(text) > 300:  # float() would overflow; no server means it
            return None
        return float(int(text))
    if now is None:
        now = datetime.now(UTC)
    elif now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    when = _http_date(text, now)
    if when is None:
        return None
    return max(0.0, (when - now).total_seconds())
