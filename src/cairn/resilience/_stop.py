"""When a retry stops: small strategy objects that combine with ``|`` and ``&``.

A stop strategy is asked once per failed attempt, with a :class:`RetryState`,
whether to give up. Strategies hold configuration only; everything that
changes during one call lives in the state record, so one strategy object is
safely shared by every caller and thread.

>>> stop = stop_after_attempt(5) | stop_after_delay(30.0)
"""

from __future__ import annotations

import math
import random
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "RetryState",
    "StopFunc",
    "StopStrategy",
    "stop_after_attempt",
    "stop_after_delay",
    "stop_all",
    "stop_any",
    "stop_never",
]


@dataclass(frozen=True, slots=True, eq=False)
class RetryState:
    """What stop and wait strategies know about the attempt that just failed.

    One record is made per failed attempt (never on the success path) and
    handed to the stop strategy, then to the wait strategy.
    """

    attempt: int
    """The number of the attempt that just finished; 1 is the first."""
    elapsed: float
    """Seconds since the first attempt started."""
    previous_delay: float | None
    """The wait before this attempt, or ``None`` after the first attempt."""
    error: BaseException | None
    """The attempt's exception, or ``None`` when its result was retryable."""
    result: object
    """The attempt's result when it returned one that was retryable, else ``None``."""
    rng: random.Random
    """The policy's source of randomness, for jittered waits."""


StopFunc = Callable[[RetryState], bool]
"""Anything that can stop a retry: a :class:`StopStrategy` or a plain function."""


def _check_seconds(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value!r}")
    return float(value)


class StopStrategy(ABC):
    """Decides from a :class:`RetryState` whether to stop retrying.

    ``a | b`` stops when either does; ``a & b`` only when both do.
    """

    __slots__ = ()

    @abstractmethod
    def __call__(self, state: RetryState) -> bool:
        """``True`` to give up after the attempt described by ``state``."""

    def __or__(self, other: StopFunc) -> stop_any:
        return stop_any(self, other)

    def __ror__(self, other: StopFunc) -> stop_any:
        return stop_any(other, self)

    def __and__(self, other: StopFunc) -> stop_all:
        return stop_all(self, other)

    def __rand__(self, other: StopFunc) -> stop_all:
        return stop_all(other, self)


class stop_after_attempt(StopStrategy):  # lowercase: tenacity's spelling
    """Give up once ``attempts`` attempts have been made (the first one counts)."""

    __slots__ = ("attempts",)

    def __init__(self, attempts: int) -> None:
        if isinstance(attempts, bool) or not isinstance(attempts, int):
            raise TypeError(f"stop_after_attempt() takes an int, not {type(attempts).__name__}")
        if attempts < 1:
            raise ValueError(
                f"stop_after_attempt({attempts!r}): the number of attempts must be >= 1 "
                "(1 means no retry at all)"
            )
        self.attempts = attempts

    def __call__(self, state: RetryState) -> bool:
        return state.attempt >= self.attempts

    def __repr__(self) -> str:
        return f"stop_after_attempt({self.attempts})"


class stop_after_delay(StopStrategy):
    """Give up once ``seconds`` have passed since the first attempt started.

    It is checked after each failed attempt, so it never cuts an attempt
    short; to bound the waits as well, give the retry a ``deadline``.
    """

    __slots__ = ("seconds",)

    def __init__(self, seconds: float) -> None:
        self.seconds = _check_seconds("stop_after_delay(seconds)", seconds)

    def __call__(self, state: RetryState) -> bool:
        return state.elapsed >= self.seconds

    def __repr__(self) -> str:
        return f"stop_after_delay({self.seconds!r})"


class _StopNever(StopStrategy):
    __slots__ = ()

    def __call__(self, state: RetryState) -> bool:
        return False

    def __repr__(self) -> str:
        return "stop_never"


stop_never: StopStrategy = _StopNever()
"""Never give up on its own (bound the retry some other way: a deadline, a budget)."""


def _flatten(
    kind: type[_StopCombination], strategies: tuple[StopFunc, ...]
) -> tuple[StopFunc, ...]:
    flat: list[StopFunc] = []
    for strategy in strategies:
        if not callable(strategy):
            raise TypeError(f"{kind.__name__}() takes stop strategies, got {strategy!r}")
        # (a | b) | c is kept as one flat any-of, so long chains stay cheap.
        flat.extend(strategy.strategies if isinstance(strategy, kind) else (strategy,))
    if not flat:
        raise ValueError(f"{kind.__name__}() needs at least one stop strategy")
    return tuple(flat)


class _StopCombination(StopStrategy):
    __slots__ = ("strategies",)

    strategies: tuple[StopFunc, ...]

    def __init__(self, *strategies: StopFunc) -> None:
        self.strategies = _flatten(type(self), strategies)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(map(repr, self.strategies))})"


class stop_any(_StopCombination):
    """Give up when any of the strategies says so (what ``a | b`` builds)."""

    __slots__ = ()

    def __call__(self, state: RetryState) -> bool:
        return any(strategy(state) for strategy in self.strategies)


class stop_all(_StopCombination):
    """Give up only when all of the strategies say so (what ``a & b`` builds)."""

    __slots__ = ()

    def __call__(self, state: RetryState) -> bool:
        return all(strategy(state) for strategy in self.strategies)
