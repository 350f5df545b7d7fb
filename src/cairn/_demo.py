"""``cairn demo --policies``: a flaky dependency called through retry and a circuit breaker.

The dependency ("inventory") goes through four phases — healthy, flaky, down,
back — while a client calls it through ``Pipeline(Retry, CircuitBreaker)``.
Every retry and every breaker transition is printed the moment its event is
emitted, so you watch the policies work: retries absorb the flakiness, the
breaker opens when the dependency is down and fails calls fast instead of
piling retries on it, then half-opens after its recovery timeout and closes
on a successful trial.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import click

from cairn.resilience import (
    DEFAULT_CLOCK,
    BreakerRejected,
    BreakerStateChanged,
    CircuitBreaker,
    CircuitOpenError,
    Event,
    Pipeline,
    Retry,
    RetryGaveUp,
    RetryScheduled,
    stop_after_attempt,
    wait_full_jitter,
)

__all__ = ["run_demo"]


class DependencyError(ConnectionError):
    """What the fake dependency raises when it fails."""


@dataclass(frozen=True, slots=True)
class Phase:
    title: str
    calls: int
    failure_rate: float


PHASES = (
    Phase("healthy: every call succeeds", 20, 0.0),
    Phase("flaky: 30% of calls fail — retries absorb them", 40, 0.3),
    Phase("down: every call fails — the breaker opens and fails fast", 30, 1.0),
    Phase("back: the dependency recovered — half-open trial, then closed", 20, 0.0),
)


class Dependency:
    """A stand-in for a remote service whose failure rate we control."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.failure_rate = 0.0
        self.calls = 0

    def get_item(self, item_id: int) -> dict[str, int]:
        self.calls += 1
        if self.rng.random() < self.failure_rate:
            raise DependencyError(f"inventory unavailable (item {item_id})")
        return {"item_id": item_id, "stock": 7}


def _styled_event(event: Event, start: float) -> str | None:
    at = f"{event.at - start:7.3f}s"
    if isinstance(event, RetryScheduled):
        error = f"{type(event.error).__name__}: {event.error}" if event.error else "bad result"
        return click.style(
            f"  {at}  retry    attempt {event.attempt} failed ({error}); next in {event.delay * 1000:.0f} ms",
            fg="yellow",
        )
    if isinstance(event, RetryGaveUp):
        return click.style(
            f"  {at}  retry    gave up after {event.attempts} attempt(s) ({event.reason})", fg="red"
        )
    if isinstance(event, BreakerStateChanged):
        color = {"closed": "green", "open": "red", "half_open": "cyan"}.get(
            event.to_state.value, "white"
        )
        return click.style(
            f"  {at}  breaker  {event.from_state.value.upper()} → {event.to_state.value.upper()}"
            f"  ({event.reason})",
            fg=color,
            bold=True,
        )
    return None


def run_demo(
    *,
    seed: int = 7,
    recovery_timeout: float = 1.0,
    pause: float = 0.02,
    echo: Callable[[str], None] = click.echo,
) -> Counter[str]:
    """Run the tour; returns the outcome counts (``ok``, ``failed``, ``rejected``)."""
    rng = random.Random(seed)
    dependency = Dependency(rng)
    # The default clock: real time for users, virtual time under test.
    clock = DEFAULT_CLOCK
    start = clock.monotonic()
    rejections = 0

    def show(event: Event) -> None:
        nonlocal rejections
        if isinstance(event, BreakerRejected):
            rejections += 1
            if rejections == 1:
                echo(
                    click.style(
                        f"  {event.at - start:7.3f}s  breaker  rejected a call without running it "
                        f"(next trial in {event.retry_after or 0:.2f}s); further rejections counted",
                        fg="magenta",
                    )
                )
            return
        line = _styled_event(event, start)
        if line is not None:
            echo(line)

    retry = Retry(
        name="inventory-retry",
        stop=stop_after_attempt(3),
        wait=wait_full_jitter(base=0.02, cap=0.2),
        # An open breaker already said "not now": retrying at once would only
        # add load and latency. Retry the dependency's own failures.
        retry_on=DependencyError,
        rng=random.Random(seed),
        listeners=(show,),
    )
    breaker = CircuitBreaker(
        name="inventory",
        failure_threshold=5,
        recovery_timeout=recovery_timeout,
        listeners=(show,),
    )
    policy = Pipeline(retry, breaker, name="inventory")

    echo(
        click.style(
            "cairn demo --policies — a flaky dependency behind retry + circuit breaker", bold=True
        )
    )
    echo(
        "  policy: Retry(stop_after_attempt(3), full-jitter backoff) → "
        f"CircuitBreaker(failure_threshold=5, recovery_timeout={recovery_timeout:g}s)"
    )
    totals: Counter[str] = Counter()
    for number, phase in enumerate(PHASES, start=1):
        dependency.failure_rate = phase.failure_rate
        echo("")
        echo(click.style(f"phase {number} · {phase.title}", bold=True, underline=True))
        if number == len(PHASES):
            echo(f"  waiting {recovery_timeout:g}s for the breaker's recovery timeout …")
            clock.sleep(recovery_timeout)
        outcome: Counter[str] = Counter()
        calls_before = dependency.calls
        rejections = 0
        for item_id in range(phase.calls):
            try:
                policy.call(dependency.get_item, item_id)
            except CircuitOpenError:
                outcome["rejected"] += 1
            except DependencyError:
                outcome["failed"] += 1
            else:
                outcome["ok"] += 1
            clock.sleep(pause)
        totals.update(outcome)
        echo(
            f"  → {phase.calls} calls: {outcome['ok']} ok, {outcome['failed']} failed, "
            f"{outcome['rejected']} rejected fast by the open breaker; "
            f"the dependency saw {dependency.calls - calls_before} requests; "
            f"breaker is {breaker.state.value.upper()}"
        )
    echo("")
    echo(
        click.style("done.", bold=True)
        + f" {sum(totals.values())} calls: {totals['ok']} ok, {totals['failed']} failed, "
        f"{totals['rejected']} rejected. Read docs/resilience.md to tune these policies."
    )
    return totals
