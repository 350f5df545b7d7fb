"""Outlier ejection: stop sending to an instance that keeps failing, before the registry notices.

Envoy's consecutive-errors detector, driven by this client's own attempts:
``consecutive_failures`` connection errors, timeouts or 5xx answers in a row
eject an instance for ``base_ejection`` seconds times the number of times it
was ejected recently (capped at ``max_ejection``); each ``base_ejection``
seconds spent back in service forgets one past ejection. At most
``max_ejected_fraction`` of a service's instances are ejected at once (at
least one may always be), and when every candidate is ejected the client
tries them anyway (Envoy's panic mode): ejection must never turn a degraded
service into an unavailable one.

The logic is a state machine that reads no clock and never waits: it is told
the time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from cairn.resilience import Event

__all__ = ["InstanceEjected", "OutlierDetection", "OutlierState"]


@dataclass(frozen=True, slots=True)
class InstanceEjected(Event):
    """The client stopped sending to ``instance_id`` of service ``policy`` until ``until``.

    ``ejections`` counts recent ejections (the period grows with it);
    ``failures`` is the run of consecutive failures that tripped it.
    """

    instance_id: str
    until: float
    ejections: int
    failures: int


class OutlierState:
    """One instance's run of failures and ejection history (owned by the client)."""

    __slots__ = ("ejected_until", "ejections", "failures")

    def __init__(self) -> None:
        self.failures = 0
        self.ejections = 0
        self.ejected_until = -math.inf

    def ejected(self, now: float) -> bool:
        """Whether the instance is out of service at ``now``."""
        return now < self.ejected_until


class OutlierDetection:
    """When to eject an instance, and for how long (keyword-only settings).

    - ``consecutive_failures``: failures in a row that eject (5, as Envoy);
    - ``base_ejection``: seconds of the first ejection (10); the n-th recent
      one lasts n times as long, up to ``max_ejection`` (300);
    - ``max_ejected_fraction``: share of a service's instances that may be out
      at once (0.5; at least one may always be ejected).
    """

    __slots__ = ("base_ejection", "consecutive_failures", "max_ejected_fraction", "max_ejection")

    def __init__(
        self,
        *,
        consecutive_failures: int = 5,
        base_ejection: float = 10.0,
        max_ejection: float = 300.0,
        max_ejected_fraction: float = 0.5,
    ) -> None:
        if (
            isinstance(consecutive_failures, bool)
            or not isinstance(consecutive_failures, int)
            or not 1 <= consecutive_failures <= 1000
        ):
            raise ValueError(
                f"consecutive_failures must be an int from 1 to 1000, not {consecutive_failures!r}"
            )
        for name, value in (("base_ejection", base_ejection), ("max_ejection", max_ejection)):
            if not isinstance(value, int | float) or not 0.001 <= value <= 86_400:
                raise ValueError(f"{name} must be between 0.001 and 86400 seconds, not {value!r}")
        if max_ejection < base_ejection:
            raise ValueError(
                f"max_ejection ({max_ejection!r}) must be >= base_ejection ({base_ejection!r})"
            )
        if not isinstance(max_ejected_fraction, int | float) or not 0 <= max_ejected_fraction <= 1:
            raise ValueError(
                f"max_ejected_fraction must be a fraction from 0 to 1, not {max_ejected_fraction!r}"
            )
        self.consecutive_failures = consecutive_failures
        self.base_ejection = float(base_ejection)
        self.max_ejection = float(max_ejection)
        self.max_ejected_fraction = float(max_ejected_fraction)

    def __repr__(self) -> str:
        return (
            f"OutlierDetection(consecutive_failures={self.consecutive_failures}, "
            f"base_ejection={self.base_ejection}, max_ejection={self.max_ejection}, "
            f"max_ejected_fraction={self.max_ejected_fraction})"
        )

    def allowed(self, instances: int) -> int:
        """How many of ``instances`` may be ejected at once."""
        return max(1, math.floor(self.max_ejected_fraction * instances))

    def record_success(self, state: OutlierState) -> None:
        """An attempt on the instance succeeded: its run of failures ends."""
        state.failures = 0

    def record_failure(
        self, state: OutlierState, *, now: float, ejected: int, instances: int
    ) -> float | None:
        """An attempt failed at ``now``; ``ejected`` of ``instances`` are out already.

        Returns the time the instance returns if this failure ejected it, else ``None``.
        """
        if state.ejected(now):
            return None  # tried anyway (panic mode): the ejection already says enough
        state.failures += 1
        if state.failures < self.consecutive_failures:
            return None
        if ejected >= self.allowed(instances):
            return None
        if state.ejections and state.ejected_until > -math.inf:
            # Time back in service pays past ejections off, one per base period.
            served = max(0.0, now - state.ejected_until)
            state.ejections = max(0, state.ejections - int(served // self.base_ejection))
        state.ejections += 1
        period = min(self.base_ejection * state.ejections, self.max_ejection)
        state.ejected_until = now + period
        state.failures = 0
        return state.ejected_until
