"""Settings and per-service state shared by the async and the sync client."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from cairn.client._balance import Balancer, RoundRobin
from cairn.client._core import (
    DEFAULT_BACKOFF,
    DEFAULT_RETRY_STATUSES,
    UNSET,
    BreakerFactory,
    InstanceStats,
    Options,
    ServiceState,
    Unset,
    default_breaker,
)
from cairn.client._metrics import resolve_metrics
from cairn.client._outlier import OutlierDetection
from cairn.resilience import DEFAULT_CLOCK, Clock, RetryBudget, WaitFunc
from cairn.resilience._events import Listener

__all__ = ["PER_SERVICE", "ClientBase"]


class _PerService:
    def __repr__(self) -> str:
        return "PER_SERVICE"


PER_SERVICE: Any = _PerService()
"""The default ``budget``: one :class:`RetryBudget` (20 % + 10/s) per service."""

_DEFAULT_OUTLIERS = OutlierDetection()


class ClientBase:
    """Validates the settings both clients take and keeps one state per service."""

    def __init__(
        self,
        *,
        scheme: str = "http",
        balancer: Balancer | None = None,
        attempts: int = 3,
        backoff: WaitFunc = DEFAULT_BACKOFF,
        budget: RetryBudget | None = PER_SERVICE,
        total_timeout: float | None = 30.0,
        attempt_timeout: float | None = 10.0,
        connect_timeout: float = 1.0,
        retry_statuses: Iterable[int] = DEFAULT_RETRY_STATUSES,
        max_retry_after: float = 30.0,
        breaker: BreakerFactory | Unset | None = UNSET,
        outliers: OutlierDetection | None = _DEFAULT_OUTLIERS,
        metrics: object = None,
        clock: Clock = DEFAULT_CLOCK,
        listeners: Iterable[Listener] = (),
    ) -> None:
        if scheme not in ("http", "https"):
            raise ValueError(f"scheme must be 'http' or 'https', not {scheme!r}")
        if budget is not PER_SERVICE and budget is not None and not isinstance(budget, RetryBudget):
            raise ValueError(f"budget must be a RetryBudget or None (no budget), not {budget!r}")
        if outliers is not None and not isinstance(outliers, OutlierDetection):
            raise ValueError(
                f"outliers must be an OutlierDetection or None (off), not {outliers!r}"
            )
        if breaker is not UNSET and breaker is not None and not callable(breaker):
            raise ValueError(
                "breaker must be a function (service, instance) -> CircuitBreaker, or None (off), "
                f"not {breaker!r}"
            )
        if not isinstance(connect_timeout, int | float) or not 0 < connect_timeout <= 600:
            raise ValueError(
                f"connect_timeout must be seconds in (0, 600], not {connect_timeout!r}"
            )
        if not isinstance(clock, Clock):
            raise ValueError(f"clock must be a cairn.resilience.Clock, not {clock!r}")
        listeners = tuple(listeners)
        if not all(callable(listener) for listener in listeners):
            raise ValueError(f"listeners must be callables taking an event, not {listeners!r}")
        self._options = Options(
            attempts=attempts,
            backoff=backoff,
            total_timeout=total_timeout,
            attempt_timeout=attempt_timeout,
            retry_statuses=frozenset(retry_statuses),
            max_retry_after=max_retry_after,
        )
        self.scheme = scheme
        self.connect_timeout = float(connect_timeout)
        self._balancer = RoundRobin() if balancer is None else balancer
        if not isinstance(self._balancer, Balancer):
            raise ValueError(f"balancer must be a cairn.client Balancer, not {balancer!r}")
        self._budget = budget
        self._breaker: BreakerFactory | None = (
            default_breaker(clock) if breaker is UNSET else breaker
        )
        self._outliers = outliers
        self._metrics = resolve_metrics(metrics)
        self._clock = clock
        self._listeners = listeners
        self._states: dict[str, ServiceState] = {}

    @property
    def defaults(self) -> Options:
        """The defaults every call starts from."""
        return self._options

    def _state(self, service: str) -> ServiceState:
        state = self._states.get(service)
        if state is None:
            budget = self._budget
            if budget is PER_SERVICE:
                budget = RetryBudget(clock=self._clock)
            state = self._states[service] = ServiceState(
                service,
                scheme=self.scheme,
                balancer=self._balancer,
                breaker=self._breaker,
                outliers=self._outliers,
                metrics=self._metrics,
                budget=budget,
                clock=self._clock,
                listeners=self._listeners,
            )
        return state

    def stats(self, service: str) -> tuple[InstanceStats, ...]:
        """What this client knows of each instance of ``service`` it has seen."""
        state = self._states.get(service)
        return () if state is None else state.stats()

    def _call_options(
        self,
        attempts: int | Unset,
        backoff: WaitFunc | Unset,
        total_timeout: float | Unset | None,
        attempt_timeout: float | Unset | None,
        retry_statuses: Iterable[int] | Unset,
        balancer: Balancer | Unset,
    ) -> Options:
        if (
            attempts is UNSET
            and backoff is UNSET
            and total_timeout is UNSET
            and attempt_timeout is UNSET
            and retry_statuses is UNSET
            and balancer is UNSET
        ):
            return self._options
        return self._options.override(
            attempts=attempts,
            backoff=backoff,
            total_timeout=total_timeout,
            attempt_timeout=attempt_timeout,
            retry_statuses=retry_statuses if retry_statuses is UNSET else frozenset(retry_statuses),
            balancer=balancer,
        )


def check_request_kwargs(kwargs: dict[str, Any]) -> None:
    """Refuse httpx's ``timeout=``: the client's timeouts are per attempt and per call."""
    if "timeout" in kwargs:
        raise TypeError(
            "ServiceClient requests take total_timeout= and attempt_timeout=, not timeout="
        )
