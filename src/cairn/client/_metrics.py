"""Client metrics per service and instance, in Prometheus (optional).

- ``cairn_client_requests_total{service,outcome}``: calls as the caller saw
  them (``outcome``: ``2xx`` … ``5xx`` or ``error``);
- ``cairn_client_request_duration_seconds{service}``: whole calls, retries included;
- ``cairn_client_attempts_total{service,instance,outcome}``: each try on an instance;
- ``cairn_client_outstanding{service,instance}``: attempts in flight;
- ``cairn_client_ejections_total{service,instance}``: outlier ejections.

prometheus_client is needed only when metrics are asked for: by default the
client uses the registry of ``cairn.observability.setup()`` if it was called,
and records nothing otherwise.
"""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["ClientMetrics", "EndpointMetrics", "outcome_of", "resolve_metrics"]

_lock = threading.Lock()
_by_registry: dict[int, tuple[Any, ClientMetrics]] = {}


def outcome_of(status: int | None) -> str:
    """The ``outcome`` label: a status class, or ``error`` when no response came."""
    if status is None:
        return "error"
    return f"{min(max(status // 100, 1), 5)}xx"


class EndpointMetrics:
    """One instance's metric children, bound once."""

    __slots__ = ("_attempts", "_by_outcome", "_labels", "ejections", "outstanding")

    def __init__(self, metrics: ClientMetrics, service: str, instance_id: str) -> None:
        self._attempts = metrics.attempts
        self._by_outcome: dict[str, Any] = {}
        self.outstanding = metrics.outstanding.labels(service, instance_id)
        self.ejections = metrics.ejections.labels(service, instance_id)
        self._labels: tuple[str, str] = (service, instance_id)

    def attempt(self, status: int | None) -> None:
        outcome = outcome_of(status)
        child = self._by_outcome.get(outcome)
        if child is None:
            child = self._by_outcome[outcome] = self._attempts.labels(*self._labels, outcome)
        child.inc()


class ClientMetrics:
    """The client's metric families in one Prometheus registry (shared by every client there)."""

    def __init__(self, registry: Any) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.requests = Counter(
            "cairn_client_requests_total",
            "Service client calls, by service and outcome (status class or error).",
            ["service", "outcome"],
            registry=registry,
        )
        self.duration = Histogram(
            "cairn_client_request_duration_seconds",
            "Service client calls from start to answer, retries included.",
            ["service"],
            registry=registry,
        )
        self.attempts = Counter(
            "cairn_client_attempts_total",
            "Attempts sent to an instance, by service, instance and outcome.",
            ["service", "instance", "outcome"],
            registry=registry,
        )
        self.outstanding = Gauge(
            "cairn_client_outstanding",
            "Attempts in flight, by service and instance.",
            ["service", "instance"],
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.ejections = Counter(
            "cairn_client_ejections_total",
            "Outlier ejections, by service and instance.",
            ["service", "instance"],
            registry=registry,
        )
        self._calls: dict[tuple[str, str], Any] = {}
        self._durations: dict[str, Any] = {}

    def call(self, service: str, status: int | None, seconds: float) -> None:
        key = (service, outcome_of(status))
        child = self._calls.get(key)
        if child is None:
            child = self._calls[key] = self.requests.labels(*key)
        child.inc()
        histogram = self._durations.get(service)
        if histogram is None:
            histogram = self._durations[service] = self.duration.labels(service)
        histogram.observe(seconds)

    def endpoint(self, service: str, instance_id: str) -> EndpointMetrics:
        return EndpointMetrics(self, service, instance_id)


def resolve_metrics(metrics: object) -> ClientMetrics | None:
    """``None``: observability's registry if set up, else no metrics; ``False``: none;
    a ``prometheus_client.CollectorRegistry``: that one."""
    if metrics is False:
        return None
    registry: Any = metrics
    if metrics is None or metrics is True:
        try:
            from cairn.observability import current
        except ImportError:
            if metrics is True:
                raise
            return None
        handle = current()
        if handle is None:
            if metrics is True:
                raise ValueError(
                    "metrics=True needs cairn.observability.setup() first, or pass a "
                    "prometheus_client.CollectorRegistry"
                )
            return None
        registry = handle.registry
    if not hasattr(registry, "register"):
        raise ValueError(
            f"metrics must be None, True, False or a prometheus_client.CollectorRegistry, "
            f"not {metrics!r}"
        )
    with _lock:
        hit = _by_registry.get(id(registry))
        if hit is not None and hit[0] is registry:
            return hit[1]
        made = ClientMetrics(registry)
        _by_registry[id(registry)] = (registry, made)
        return made
