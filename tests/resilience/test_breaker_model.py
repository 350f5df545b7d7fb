"""The breaker against a small, obviously correct model, under random histories.

Calls may overlap: a pending call is a coroutine driven by hand (``send``),
suspended inside the protected function, so a history can hold several trial
calls at once, or a call that ends after the state moved on.
"""

from __future__ import annotations

from collections.abc import Coroutine, Generator
from dataclasses import dataclass, field
from typing import Any
from unittest.mock import patch

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from cairn.resilience import _breaker
from cairn.resilience._breaker import CircuitBreaker
from cairn.resilience._errors import CircuitOpenError
from cairn.resilience._events import BreakerState
from cairn.testing import VirtualClock

CLOSED = BreakerState.CLOSED
OPEN = BreakerState.OPEN
HALF_OPEN = BreakerState.HALF_OPEN
FORCED_OPEN = BreakerState.FORCED_OPEN
DISABLED = BreakerState.DISABLED

SUCCESS, FAILURE, IGNORED, INTERRUPTED = "success", "failure", "ignored", "interrupted"
OUTCOMES = st.sampled_from([SUCCESS, SUCCESS, FAILURE, FAILURE, IGNORED, INTERRUPTED])


class Boom(Exception):
    pass


class Interrupt(BaseException):
    """Like a cancellation: never a failure."""


@dataclass
class Config:
    threshold: int | None
    window: int | None
    rate: float
    minimum: int
    base: float
    multiplier: float
    cap: float
    permits: int
    successes: int


@st.composite
def configs(draw: st.DrawFn) -> Config:
    windowed = draw(st.booleans())
    window = draw(st.integers(1, 6)) if windowed else None
    base = draw(st.sampled_from([1.0, 5.0, 10.0]))
    return Config(
        threshold=None if windowed else draw(st.integers(1, 4)),
        window=window,
        rate=draw(st.sampled_from([0.25, 0.5, 1.0])),
        minimum=draw(st.integers(1, window)) if window else 1,
        base=base,
        multiplier=draw(st.sampled_from([1.0, 2.0])),
        cap=base * draw(st.sampled_from([1, 4])),
        permits=draw(st.integers(1, 3)),
        successes=draw(st.integers(1, 2)),
    )


@dataclass
class Model:
    """The breaker's rules, written plainly: lists instead of rings, no speed."""

    config: Config
    state: BreakerState = CLOSED
    period: int = 0
    failures: int = 0
    window: list[bool] = field(default_factory=list)
    open_until: float = 0.0
    timeout: float = 0.0
    streak: int = 0
    trials: int = 0
    trial_successes: int = 0
    calls: int = 0
    failed: int = 0
    refusals: int = 0

    def __post_init__(self) -> None:
        self.timeout = self.config.base

    def move(self, state: BreakerState) -> None:
        self.state = state
        self.period += 1
        self.trials = self.trial_successes = 0

    def open(self, now: float) -> None:
        self.streak += 1
        if self.streak > 1:
            self.timeout = min(self.timeout * self.config.multiplier, self.config.cap)
        self.open_until = now + self.timeout
        self.move(OPEN)

    def forget(self) -> None:
        self.failures = 0
        self.window = []
        self.streak = 0
        self.timeout = self.config.base

    def admit(self, now: float) -> tuple[BreakerState, int] | tuple[str, float | None]:
        """A ticket (the state and period it was admitted in), or a refusal."""
        if self.state is DISABLED:
            return (DISABLED, self.period)
        if self.state is CLOSED:
            self.calls += 1
            return (CLOSED, self.period)
        if self.state is OPEN:
            if now < self.open_until:
                self.refusals += 1
                return ("refused", self.open_until - now)
            self.move(HALF_OPEN)
        if self.state is HALF_OPEN and self.trials < self.config.permits:
            self.trials += 1
            self.calls += 1
            return (HALF_OPEN, self.period)
        self.refusals += 1
        return ("refused", None)

    def settle(self, ticket: tuple[BreakerState, int], outcome: str, now: float) -> None:
        kind, period = ticket
        if kind is DISABLED:
            return
        if outcome == FAILURE:
            self.failed += 1
        if period != self.period:
            return  # admitted in an earlier period: only the totals see it
        neither = outcome in (IGNORED, INTERRUPTED)
        if kind is CLOSED and not neither:
            failed = outcome == FAILURE
            self.failures = self.failures + 1 if failed else 0
            if self.config.window is not None:
                self.window = [*self.window, failed][-self.config.window :]
                n = len(self.window)
                if n >= self.config.minimum and self.window.count(True) / n >= self.config.rate:
                    self.open(now)
            elif self.config.threshold is not None and self.failures >= self.config.threshold:
                self.open(now)
        elif kind is HALF_OPEN:
            self.trials -= 1
            if outcome == FAILURE:
                self.open(now)
            elif outcome == SUCCESS:
                self.trial_successes += 1
                if self.trial_successes >= self.config.successes:
                    self.forget()
                    self.move(CLOSED)


class _Gate:
    """Suspends the protected coroutine once, until the test resumes it."""

    def __await__(self) -> Generator[None, None, None]:
        yield


@dataclass
class Pending:
    coroutine: Coroutine[Any, Any, str]
    ticket: tuple[BreakerState, int]
    outcome: list[str]


class BreakerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = VirtualClock()
        self.pending: list[Pending] = []

    # Either form of the decorator (C where built, and pure Python) must agree.
    @initialize(config=configs(), in_c=st.booleans())
    def build(self, config: Config, in_c: bool) -> None:
        self.model = Model(config)
        if config.window is None:
            detection: dict[str, Any] = {"failure_threshold": config.threshold}
        else:
            detection = {
                "window_size": config.window,
                "failure_rate": config.rate,
                "minimum_calls": config.minimum,
            }
        self.breaker = CircuitBreaker(
            **detection,
            recovery_timeout=config.base,
            recovery_multiplier=config.multiplier,
            max_recovery_timeout=config.cap,
            half_open_max_calls=config.permits,
            success_threshold=config.successes,
            ignore_on=KeyError,
            clock=self.clock,
        )
        with patch.object(_breaker, "_speedups", _breaker._speedups if in_c else None):
            self.protected = self.breaker(self.body)
            self.aprotected = self.breaker(self.suspended_body)

    @staticmethod
    def body(outcome: str) -> str:
        if outcome == FAILURE:
            raise Boom
        if outcome == IGNORED:
            raise KeyError("ignored")
        if outcome == INTERRUPTED:
            raise Interrupt
        return "ok"

    async def suspended_body(self, box: list[str]) -> str:
        await _Gate()
        return self.body(box[0])

    def check_refusal(self, error: CircuitOpenError, expected: tuple[str, float | None]) -> None:
        assert error.retry_after == expected[1]
        assert error.state is self.model.state

    @rule(outcome=OUTCOMES, decorated=st.booleans())
    def call(self, outcome: str, decorated: bool) -> None:
        now = self.clock.monotonic()
        ticket = self.model.admit(now)
        run = self.protected if decorated else (lambda o: self.breaker.call(self.body, o))
        try:
            result = run(outcome)
        except CircuitOpenError as error:
            assert ticket[0] == "refused", f"refused, but the model admits ({ticket})"
            self.check_refusal(error, ticket)  # type: ignore[arg-type]
            return
        except (Boom, KeyError, Interrupt):
            assert outcome != SUCCESS
        else:
            assert (outcome, result) == (SUCCESS, "ok")
        assert ticket[0] != "refused", "admitted, but the model refuses"
        self.model.settle(ticket, outcome, now)  # type: ignore[arg-type]

    @rule(decorated=st.booleans())
    def start(self, decorated: bool) -> None:
        box: list[str] = []
        # Made before the model decides: a protected coroutine decides when it starts.
        coroutine = (
            self.aprotected(box) if decorated else self.breaker.acall(self.suspended_body, box)
        )
        now = self.clock.monotonic()
        ticket = self.model.admit(now)
        try:
            coroutine.send(None)
        except CircuitOpenError as error:
            assert ticket[0] == "refused", f"refused, but the model admits ({ticket})"
            self.check_refusal(error, ticket)  # type: ignore[arg-type]
            return
        assert ticket[0] != "refused", "admitted, but the model refuses"
        self.pending.append(Pending(coroutine, ticket, box))  # type: ignore[arg-type]

    @precondition(lambda self: self.pending)
    @rule(which=st.integers(0, 10), outcome=OUTCOMES)
    def finish(self, which: int, outcome: str) -> None:
        call = self.pending.pop(which % len(self.pending))
        call.outcome.append(outcome)
        result: str | None = None
        try:
            call.coroutine.send(None)
        except StopIteration as stop:
            result = stop.value
        except (Boom, KeyError, Interrupt):
            pass
        else:
            raise AssertionError("the protected coroutine should have ended")
        assert (result == "ok") == (outcome == SUCCESS)
        self.model.settle(call.ticket, outcome, self.clock.monotonic())

    @rule(seconds=st.sampled_from([0.5, 1.0, 2.5, 5.0, 10.0, 40.0]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule()
    def force_open(self) -> None:
        self.breaker.force_open()
        if self.model.state is not FORCED_OPEN:
            self.model.move(FORCED_OPEN)

    @rule()
    def disable(self) -> None:
        self.breaker.disable()
        if self.model.state is not DISABLED:
            self.model.move(DISABLED)

    @rule()
    def reset(self) -> None:
        self.breaker.reset()
        self.model.forget()
        if self.model.state is not CLOSED:
            self.model.move(CLOSED)

    @invariant()
    def agrees_with_the_model(self) -> None:
        if not hasattr(self, "model"):
            return
        model, stats = self.model, self.breaker.stats()
        assert stats.state is model.state
        assert stats.consecutive_failures == model.failures
        assert stats.recovery_timeout == model.timeout
        assert (stats.total_calls, stats.total_failures, stats.total_rejections) == (
            model.calls,
            model.failed,
            model.refusals,
        )
        if model.config.window is not None:
            assert (stats.window_calls, stats.window_failures) == (
                len(model.window),
                model.window.count(True),
            )
        if model.state is OPEN:
            assert stats.retry_after == max(0.0, model.open_until - self.clock.monotonic())

    def teardown(self) -> None:
        for call in self.pending:
            call.coroutine.close()


BreakerMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=50, deadline=None)
test_breaker_agrees_with_its_model = BreakerMachine.TestCase
