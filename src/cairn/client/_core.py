"""What the sync and async clients share: options, per-service state, decisions.

Nothing here sends, sleeps or awaits. A :class:`ServiceState` knows a
service's instances (from the registry's watched view), this client's
requests outstanding on each, their breakers and outlier state; it picks the
endpoint for an attempt and records how the attempt ended. The drivers in
``_async`` and ``_sync`` do the I/O around it.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import httpx

from cairn.client._balance import Balancer
from cairn.client._errors import NoHealthyInstance
from cairn.client._metrics import ClientMetrics, EndpointMetrics
from cairn.client._outlier import InstanceEjected, OutlierDetection, OutlierState
from cairn.discovery import Instance, InstanceSet
from cairn.resilience import (
    BreakerState,
    CircuitBreaker,
    CircuitOpenError,
    Clock,
    Retry,
    RetryBudget,
    TimeoutExceeded,
    WaitFunc,
    parse_retry_after,
    stop_after_attempt,
    wait_full_jitter,
)
from cairn.resilience._events import Listener, emit

__all__ = [
    "DEFAULT_BACKOFF",
    "DEFAULT_RETRY_STATUSES",
    "IDEMPOTENT_METHODS",
    "BreakerFactory",
    "InstanceStats",
    "Options",
    "ServiceState",
    "Unset",
    "default_breaker",
    "describe_empty",
]

DEFAULT_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
"""Statuses retried on another instance (idempotent calls only)."""

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
"""RFC 9110 §9.2.2: repeating them is safe, so they are retried by default."""

# The request never reached the instance: safe to send elsewhere whatever the method.
NOT_SENT: tuple[type[Exception], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    CircuitOpenError,
)
# The request may have been (partly) handled: retried for idempotent calls only.
RETRYABLE: tuple[type[Exception], ...] = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
    TimeoutExceeded,
    CircuitOpenError,
)

BreakerFactory = Callable[[str, Instance], CircuitBreaker]
"""Makes the circuit breaker of one instance: ``(service, instance) -> CircuitBreaker``."""


DEFAULT_BACKOFF = wait_full_jitter(base=0.05, cap=2.0)


class Unset(enum.Enum):
    """Marks an option not given in a call (``None`` means "no limit" for timeouts)."""

    UNSET = "unset"


UNSET = Unset.UNSET


def _server_error(response: object) -> bool:
    return isinstance(response, httpx.Response) and response.status_code >= 500


def default_breaker(clock: Clock) -> BreakerFactory:
    """Per instance: open at 50 % failures (errors, 5xx) over 30 s once 20 calls were
    seen, for 5 s (.NET's standard handler opens at 10 % over 30 s, min 100 calls,
    but per authority; one instance failing half its calls is the signal here)."""

    def make(service: str, instance: Instance) -> CircuitBreaker:
        return CircuitBreaker(
            name=f"{service}/{instance.id}",
            window_duration=30.0,
            failure_rate=0.5,
            minimum_calls=20,
            recovery_timeout=5.0,
            failure_if_result=_server_error,
            clock=clock,
        )

    return make


def _check_timeout(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 86_400:
        raise ValueError(
            f"{name} must be seconds in (0, 86400] or None for no limit, not {value!r}"
        )
    return float(value)


@dataclass(frozen=True, slots=True)
class Options:
    """Everything a call can override; the client holds the defaults."""

    attempts: int = 3
    backoff: WaitFunc = DEFAULT_BACKOFF
    total_timeout: float | None = 30.0
    attempt_timeout: float | None = 10.0
    retry_statuses: frozenset[int] = DEFAULT_RETRY_STATUSES
    max_retry_after: float = 30.0
    balancer: Balancer | None = None

    def __post_init__(self) -> None:
        if (
            isinstance(self.attempts, bool)
            or not isinstance(self.attempts, int)
            or not 1 <= self.attempts <= 100
        ):
            raise ValueError(
                f"attempts must be an int from 1 (no retry) to 100, not {self.attempts!r}"
            )
        if not callable(self.backoff):
            raise ValueError(
                f"backoff must be a wait strategy (e.g. wait_full_jitter()), not {self.backoff!r}"
            )
        object.__setattr__(
            self, "total_timeout", _check_timeout("total_timeout", self.total_timeout)
        )
        object.__setattr__(
            self, "attempt_timeout", _check_timeout("attempt_timeout", self.attempt_timeout)
        )
        statuses = frozenset(self.retry_statuses)
        if not all(isinstance(s, int) and 100 <= s <= 599 for s in statuses):
            raise ValueError(
                f"retry_statuses must be HTTP status codes, not {self.retry_statuses!r}"
            )
        object.__setattr__(self, "retry_statuses", statuses)
        if (
            not isinstance(self.max_retry_after, int | float)
            or not 0 <= self.max_retry_after <= 3600
        ):
            raise ValueError(
                f"max_retry_after must be seconds from 0 to 3600, not {self.max_retry_after!r}"
            )
        if self.balancer is not None and not isinstance(self.balancer, Balancer):
            raise ValueError(f"balancer must be a cairn.client Balancer, not {self.balancer!r}")

    def override(self, **changes: Any) -> Options:
        """These options with the given ones replaced (``UNSET`` keeps a value)."""
        given = {k: v for k, v in changes.items() if v is not UNSET}
        return replace(self, **given) if given else self


def retry_after(response: httpx.Response) -> float | None:
    """The ``Retry-After`` of a response, in seconds, or ``None``."""
    value = response.headers.get("retry-after")
    return None if value is None else parse_retry_after(value)


@dataclass(frozen=True, slots=True)
class InstanceStats:
    """A snapshot of one instance as a client sees it (``ServiceClient.stats``)."""

    instance_id: str
    address: str
    """``scheme://host:port``."""
    outstanding: int
    """This client's attempts in flight on it."""
    ejected_for: float
    """Seconds until it returns from outlier ejection (0.0: in service)."""
    ejections: int
    """Recent ejections (the next one lasts that much longer)."""
    breaker: BreakerState | None
    """Its circuit breaker's state (``None``: breakers are off)."""


class Endpoint:
    """One instance as this client sees it."""

    __slots__ = ("base", "breaker", "instance", "metrics", "outlier")

    def __init__(
        self,
        instance: Instance,
        *,
        scheme: str,
        breaker: CircuitBreaker | None,
        metrics: EndpointMetrics | None,
    ) -> None:
        self.instance = instance
        self.base = f"{scheme}://{instance.host_port}"
        self.breaker = breaker
        self.metrics = metrics
        self.outlier = OutlierState()

    def refusing(self) -> bool:
        """Whether its breaker would refuse a call now (OPEN and not yet due a trial)."""
        breaker = self.breaker
        if breaker is None:
            return False
        state = breaker.state
        if state is BreakerState.FORCED_OPEN:
            return True
        if state is BreakerState.OPEN:
            return bool(breaker.stats().retry_after)
        return False


def describe_empty(view: InstanceSet, tags: Iterable[str]) -> str:
    """What the registry said, for :class:`NoHealthyInstance`."""
    text = f"{view.healthy} of {view.registered} instances passing"
    if view.protected:
        text += "; protection threshold engaged"
    wanted = tuple(tags)
    if wanted and view.healthy:
        text += f"; none of them carries every tag of {wanted!r}"
    return text


class ServiceState:
    """One service's instances, load, breakers and outliers, for one client."""

    def __init__(
        self,
        name: str,
        *,
        scheme: str,
        balancer: Balancer,
        breaker: BreakerFactory | None,
        outliers: OutlierDetection | None,
        metrics: ClientMetrics | None,
        budget: RetryBudget | None,
        clock: Clock,
        listeners: tuple[Listener, ...],
    ) -> None:
        self.name = name
        self._scheme = scheme
        self._balancers: dict[int, Balancer] = {id(balancer): balancer.fork()}
        self._default_balancer = id(balancer)
        self._breaker = breaker
        self._outliers = outliers
        self._metrics = metrics
        self.budget = budget
        self.clock = clock
        self._listeners = listeners
        self.endpoints: dict[str, Endpoint] = {}
        self.outstanding: dict[str, int] = {}
        self.ejected: dict[str, float] = {}
        # Set by any failed attempt, cleared once no instance is ejected or
        # refused: until something fails, picking skips the filtering.
        self.suspect = False
        self._views: dict[Any, tuple[InstanceSet, tuple[Instance, ...]]] = {}
        self._retries: dict[tuple[Options, bool], Retry] = {}

    # -- policies ---------------------------------------------------------

    def retry(self, options: Options, idempotent: bool) -> Retry:
        """The retry policy for calls with these options (built once per option set)."""
        key = (options, idempotent)
        policy = self._retries.get(key)
        if policy is None:
            statuses = options.retry_statuses
            limit = options.max_retry_after

            def again(response: object) -> bool:
                if not isinstance(response, httpx.Response) or response.status_code not in statuses:
                    return False
                wait = retry_after(response)
                # A server asking for longer than we would wait gets its answer back.
                return wait is None or wait <= limit

            def hint(outcome: object) -> float | None:
                return retry_after(outcome) if isinstance(outcome, httpx.Response) else None

            safe = RETRYABLE if idempotent else NOT_SENT
            policy = Retry(
                stop=stop_after_attempt(options.attempts),
                wait=options.backoff,
                retry_on=safe,
                retry_if_result=again if idempotent else None,
                hint=hint if idempotent else None,
                budget=self.budget,
                name=self.name,
                clock=self.clock,
            )
            if len(self._retries) > 64:  # per-call overrides must not grow it forever
                self._retries.clear()
            self._retries[key] = policy
        return policy

    def balancer(self, options: Options) -> Balancer:
        chosen = options.balancer
        key = self._default_balancer if chosen is None else id(chosen)
        balancer = self._balancers.get(key)
        if balancer is None:
            assert chosen is not None
            if len(self._balancers) > 64:
                self._balancers = {self._default_balancer: self._balancers[self._default_balancer]}
            balancer = self._balancers[key] = chosen.fork()
        return balancer

    # -- picking ----------------------------------------------------------

    def instances(self, view: InstanceSet, tags: Any) -> tuple[Instance, ...]:
        """The instances of ``view`` as a tuple, refreshing endpoints when it changed."""
        hit = self._views.get(tags)
        if hit is not None and hit[0] is view:
            return hit[1]
        items = tuple(view)
        self._views[tags] = (view, items)
        endpoints = self.endpoints
        for instance in items:
            known = endpoints.get(instance.id)
            if known is None or known.instance != instance:
                endpoints[instance.id] = self._endpoint(instance)
                self.ejected.pop(instance.id, None)
        if len(endpoints) > 2 * len(items) + 16:
            live = {i.id for _, seen in self._views.values() for i in seen}
            for key in [k for k in endpoints if k not in live]:
                del endpoints[key]
                self.outstanding.pop(key, None)
                self.ejected.pop(key, None)
        return items

    def _endpoint(self, instance: Instance) -> Endpoint:
        return Endpoint(
            instance,
            scheme=self._scheme,
            breaker=None if self._breaker is None else self._breaker(self.name, instance),
            metrics=None
            if self._metrics is None
            else self._metrics.endpoint(self.name, instance.id),
        )

    def pick(
        self,
        view: InstanceSet,
        tags: Any,
        options: Options,
        tried: set[str] | None,
    ) -> Endpoint:
        """The endpoint for the next attempt, or :class:`NoHealthyInstance`."""
        items = self.instances(view, tags)
        if not items:
            raise NoHealthyInstance(self.name, describe_empty(view, tags))
        candidates: Sequence[Instance] = items
        if self.suspect or tried:
            candidates = self._candidates(items, tried)
        chosen = self.balancer(options).pick(candidates, self.outstanding)
        return self.endpoints[chosen.id]

    def _candidates(
        self, items: tuple[Instance, ...], tried: set[str] | None
    ) -> Sequence[Instance]:
        endpoints = self.endpoints
        if self.ejected:
            now = self.clock.monotonic()
            for key in [k for k, until in self.ejected.items() if until <= now]:
                del self.ejected[key]
        ejected = self.ejected
        healthy: Sequence[Instance] = items
        if ejected or self._breaker is not None:
            healthy = [i for i in items if i.id not in ejected and not endpoints[i.id].refusing()]
            if not healthy:
                healthy = items  # panic: everything is out, so try them anyway
        if tried:
            fresh = [i for i in healthy if i.id not in tried]
            if fresh:
                return fresh
        return healthy

    # -- accounting -------------------------------------------------------

    def begin(self, endpoint: Endpoint) -> None:
        """An attempt starts on ``endpoint``."""
        key = endpoint.instance.id
        self.outstanding[key] = self.outstanding.get(key, 0) + 1
        if endpoint.metrics is not None:
            endpoint.metrics.outstanding.inc()

    def end(self, endpoint: Endpoint, status: int | None, error: BaseException | None) -> bool:
        """The attempt ended with ``status`` or ``error``; returns whether it failed
        (a connection error, a timeout or a 5xx), which feeds outlier ejection."""
        key = endpoint.instance.id
        left = self.outstanding.get(key, 1) - 1
        if left > 0:
            self.outstanding[key] = left
        else:
            self.outstanding.pop(key, None)
        metrics = endpoint.metrics
        if metrics is not None:
            metrics.outstanding.dec()
            metrics.attempt(status)
        if isinstance(error, CircuitOpenError):
            self.suspect = True
            return True  # refused here, not an answer from the instance: no evidence either way
        failed = (status is None and isinstance(error, Exception)) or (
            status is not None and status >= 500
        )
        detector = self._outliers
        if failed:
            self.suspect = True
        if detector is None or (status is None and not isinstance(error, Exception)):
            return failed  # cancelled: says nothing about the instance
        if not failed:
            detector.record_success(endpoint.outlier)
            return False
        now = self.clock.monotonic()
        ejected = sum(1 for until in self.ejected.values() if until > now)
        total = max(len(items) for _, items in self._views.values()) if self._views else 1
        until = detector.record_failure(endpoint.outlier, now=now, ejected=ejected, instances=total)
        if until is not None:
            self.ejected[key] = until
            if metrics is not None:
                metrics.ejections.inc()
            emit(
                InstanceEjected(
                    policy=self.name,
                    at=now,
                    instance_id=key,
                    until=until,
                    ejections=endpoint.outlier.ejections,
                    failures=detector.consecutive_failures,
                ),
                self._listeners,
            )
        return True

    def stats(self) -> tuple[InstanceStats, ...]:
        """A snapshot of every instance this client has seen, sorted by id."""
        now = self.clock.monotonic()
        return tuple(
            InstanceStats(
                instance_id=key,
                address=e.base,
                outstanding=self.outstanding.get(key, 0),
                ejected_for=max(0.0, self.ejected.get(key, -math.inf) - now),
                ejections=e.outlier.ejections,
                breaker=None if e.breaker is None else e.breaker.state,
            )
            for key, e in sorted(self.endpoints.items())
        )
