"""Metrics: the seed's RED metrics, resilience metrics, and the ``/metrics`` app.

Names and labels (see docs/observability.md for the OpenTelemetry mapping):

- ``http_requests_total{method,endpoint,status}`` counter;
- ``http_request_duration_seconds{method,endpoint}`` histogram, with a
  ``trace_id`` exemplar on sampled requests (shown in OpenMetrics);
- ``active_connections`` gauge: requests in flight;
- ``cairn_retry_attempts_total{policy}``, ``cairn_retry_giveups_total{policy,reason}``,
  ``cairn_breaker_state{policy,state}`` (1 for the current state),
  ``cairn_breaker_transitions_total{policy,from_state,to_state}``,
  ``cairn_breaker_rejections_total{policy}``, ``cairn_bulkhead_rejections_total{policy}``,
  ``cairn_timeouts_total{policy}``, ``cairn_hedges_total{policy}``,
  ``cairn_fallbacks_total{policy}``.

Multi-worker servers: when ``PROMETHEUS_MULTIPROC_DIR`` is set (before the
workers start), prometheus_client's multiprocess mode is used and ``/metrics``
aggregates every worker's samples, whichever worker answers the scrape.
prometheus_client keeps no exemplars in that mode.
"""

from __future__ import annotations

import abc
import math
import os
import threading
import time
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import metrics as prometheus_metrics
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.samples import Exemplar, Sample
from prometheus_client.utils import floatToGoString

__all__ = [
    "DEFAULT_BUCKETS",
    "ClientHttpMetrics",
    "HttpMetrics",
    "LeanHttpMetrics",
    "ResilienceMetrics",
    "http_metrics",
    "metrics_app",
    "multiprocess_dir",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
# Semantic conventions' fold for methods outside the standard set: keeps the
# method label bounded against junk methods.
_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)
BREAKER_STATES = ("closed", "open", "half_open", "forced_open", "disabled")


def multiprocess_dir() -> str | None:
    """prometheus_client's multiprocess directory, when the env enables it."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


_REQUESTS_DOC = "HTTP requests answered, by method, route template and status code."
_DURATION_DOC = "Time to answer an HTTP request, by method and route template."
_IN_FLIGHT_DOC = "HTTP requests being answered right now."


class HttpMetrics(abc.ABC):
    """RED metrics of an HTTP server: the middleware calls ``begin`` and ``observe``."""

    @abc.abstractmethod
    def begin(self) -> None:
        """A request started (``active_connections`` goes up)."""

    @abc.abstractmethod
    def observe(
        self,
        method: str,
        endpoint: str,
        status: int,
        seconds: float,
        trace_id: str | None,
        at: float | None = None,
    ) -> None:
        """A request was answered: count it, record its duration, and end it in flight.

        ``at`` is when (Unix seconds; now by default), for the exemplar.
        """

    @abc.abstractmethod
    def unregister(self) -> None:
        """Take the metrics out of the registry."""


def http_metrics(
    *, registry: CollectorRegistry, buckets: tuple[float, ...], exemplars: bool = True
) -> HttpMetrics:
    """The RED metrics for this process: plain numbers, or prometheus_client's in multiprocess mode."""
    if multiprocess_dir() is None:
        return LeanHttpMetrics(registry=registry, buckets=buckets, exemplars=exemplars)
    return ClientHttpMetrics(registry=registry, buckets=buckets)


class _Route:
    """One (method, endpoint): its duration histogram, and its request count per status."""

    __slots__ = (
        "counts",
        "created",
        "exemplar_at",
        "exemplar_trace",
        "exemplar_value",
        "statuses",
        "sum",
    )

    def __init__(self, size: int, created: float) -> None:
        self.counts = [0] * size
        self.sum = 0.0
        self.created = created
        # The latest exemplar per bucket, as three parallel lists (no tuple
        # per request); a bucket without one has trace None.
        self.exemplar_trace: list[str | None] = [None] * size
        self.exemplar_value = [0.0] * size
        self.exemplar_at = [0.0] * size
        # status -> [count, created]
        self.statuses: dict[int, list[float]] = {}


class LeanHttpMetrics(HttpMetrics, Collector):
    """The RED metrics as plain numbers under one lock, exposed as metric families at scrape.

    prometheus_client's children cost 5 lock round trips, label and exemplar
    validation per request — about a quarter of the middleware's cost,
    measured. This keeps the same series (names, labels, buckets, ``_created``,
    one ``trace_id`` exemplar per bucket, the latest) as two dict lookups, a
    bisect and a few additions under a single lock.
    """

    def __init__(
        self, *, registry: CollectorRegistry, buckets: tuple[float, ...], exemplars: bool = True
    ) -> None:
        bounds = sorted(float(b) for b in buckets if b != math.inf)
        if not bounds or len(set(bounds)) != len(bounds):
            raise ValueError(f"buckets must be distinct numbers, at least one finite: {buckets!r}")
        self._bounds = tuple(bounds)
        self._le = tuple(floatToGoString(b) for b in (*bounds, math.inf))  # type: ignore[no-untyped-call]
        self._exemplars = exemplars
        self._lock = threading.Lock()
        self._in_flight = 0
        self._routes: dict[tuple[str, str], _Route] = {}
        self._registry = registry
        registry.register(self)

    def begin(self) -> None:
        with self._lock:
            self._in_flight += 1

    def observe(
        self,
        method: str,
        endpoint: str,
        status: int,
        seconds: float,
        trace_id: str | None,
        at: float | None = None,
    ) -> None:
        if method not in _METHODS:
            method = "_OTHER"
        key = (method, endpoint)
        i = bisect_left(self._bounds, seconds)
        with self._lock:
            self._in_flight -= 1
            route = self._routes.get(key)
            if route is None:
                route = self._routes[key] = _Route(len(self._le), time.time())
            count = route.statuses.get(status)
            if count is None:
                count = route.statuses[status] = [0, time.time()]
            count[0] += 1
            route.counts[i] += 1
            route.sum += seconds
            if trace_id is not None and self._exemplars:
                route.exemplar_trace[i] = trace_id
                route.exemplar_value[i] = seconds
                route.exemplar_at[i] = time.time() if at is None else at

    def describe(self) -> list[Metric]:
        return [
            CounterMetricFamily(
                "http_requests", _REQUESTS_DOC, labels=("method", "endpoint", "status")
            ),
            HistogramMetricFamily(
                "http_request_duration_seconds", _DURATION_DOC, labels=("method", "endpoint")
            ),
            GaugeMetricFamily("active_connections", _IN_FLIGHT_DOC),
        ]

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            routes = [
                (
                    key,
                    [(status, int(count[0]), count[1]) for status, count in r.statuses.items()],
                    list(r.counts),
                    r.sum,
                    r.created,
                    list(zip(r.exemplar_trace, r.exemplar_value, r.exemplar_at, strict=True)),
                )
                for key, r in self._routes.items()
            ]
            in_flight = self._in_flight
        created = _created_series()
        counter = CounterMetricFamily(
            "http_requests", _REQUESTS_DOC, labels=("method", "endpoint", "status")
        )
        histogram = HistogramMetricFamily(
            "http_request_duration_seconds", _DURATION_DOC, labels=("method", "endpoint")
        )
        for (method, endpoint), statuses, counts, total, since, exemplars in routes:
            for status, value, first in statuses:
                counter.add_metric(
                    (method, endpoint, str(status)), value, created=first if created else None
                )
            buckets: list[tuple[str, float] | tuple[str, float, Exemplar]] = []
            cumulative = 0
            for le, n, (trace_id, seconds, at) in zip(self._le, counts, exemplars, strict=True):
                cumulative += n
                if trace_id is None:
                    buckets.append((le, cumulative))
                else:
                    buckets.append((le, cumulative, Exemplar({"trace_id": trace_id}, seconds, at)))
            histogram.add_metric((method, endpoint), buckets, total)
            if created:
                histogram.samples.append(
                    Sample(
                        "http_request_duration_seconds_created",
                        {"method": method, "endpoint": endpoint},
                        since,
                    )
                )
        yield counter
        yield histogram
        yield GaugeMetricFamily("active_connections", _IN_FLIGHT_DOC, value=in_flight)

    def unregister(self) -> None:
        self._registry.unregister(self)


def _created_series() -> bool:
    # prometheus_client.disable_created_metrics() turns the _created series
    # off for its own metrics; these follow it.
    return bool(getattr(prometheus_metrics, "_use_created", True))


class ClientHttpMetrics(HttpMetrics):
    """The RED metrics as prometheus_client metrics: for its multiprocess mode, which shares them."""

    def __init__(self, *, registry: CollectorRegistry, buckets: tuple[float, ...]) -> None:
        self._registry = registry
        self.requests = Counter(
            "http_requests_total",
            _REQUESTS_DOC,
            ["method", "endpoint", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "http_request_duration_seconds",
            _DURATION_DOC,
            ["method", "endpoint"],
            buckets=buckets,
            registry=registry,
        )
        self.in_flight = Gauge(
            "active_connections",
            _IN_FLIGHT_DOC,
            registry=registry,
            multiprocess_mode="livesum",
        )
        self._counters: dict[tuple[str, str, int], Any] = {}
        self._histograms: dict[tuple[str, str], Any] = {}

    def begin(self) -> None:
        self.in_flight.inc()

    def observe(
        self,
        method: str,
        endpoint: str,
        status: int,
        seconds: float,
        trace_id: str | None,
        at: float | None = None,
    ) -> None:
        # prometheus_client keeps no exemplars in multiprocess mode: trace_id
        # and at are unused.
        self.in_flight.dec()
        if method not in _METHODS:
            method = "_OTHER"
        key = (method, endpoint, status)
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = self.requests.labels(method, endpoint, str(status))
        counter.inc()
        hkey = (method, endpoint)
        histogram = self._histograms.get(hkey)
        if histogram is None:
            histogram = self._histograms[hkey] = self.duration.labels(method, endpoint)
        histogram.observe(seconds)

    def unregister(self) -> None:
        for metric in (self.requests, self.duration, self.in_flight):
            self._registry.unregister(metric)


class ResilienceMetrics:
    """Counters and gauges fed by resilience events, labelled by policy name."""

    def __init__(self, *, registry: CollectorRegistry) -> None:
        self._registry = registry
        self.retry_attempts = Counter(
            "cairn_retry_attempts_total",
            "Retries scheduled after a failed attempt.",
            ["policy"],
            registry=registry,
        )
        self.retry_giveups = Counter(
            "cairn_retry_giveups_total",
            "Retry policies that stopped trying, by reason (stop, deadline, budget).",
            ["policy", "reason"],
            registry=registry,
        )
        self.breaker_state = Gauge(
            "cairn_breaker_state",
            "1 for the circuit breaker's current state, 0 for the others.",
            ["policy", "state"],
            registry=registry,
            multiprocess_mode="liveall",
        )
        self.breaker_transitions = Counter(
            "cairn_breaker_transitions_total",
            "Circuit breaker state changes.",
            ["policy", "from_state", "to_state"],
            registry=registry,
        )
        self.breaker_rejections = Counter(
            "cairn_breaker_rejections_total",
            "Calls refused by an open circuit breaker.",
            ["policy"],
            registry=registry,
        )
        self.bulkhead_rejections = Counter(
            "cairn_bulkhead_rejections_total",
            "Calls refused by a full bulkhead.",
            ["policy"],
            registry=registry,
        )
        self.timeouts = Counter(
            "cairn_timeouts_total",
            "Calls that overran their timeout.",
            ["policy"],
            registry=registry,
        )
        self.hedges = Counter(
            "cairn_hedges_total", "Hedged attempts launched.", ["policy"], registry=registry
        )
        self.fallbacks = Counter(
            "cairn_fallbacks_total",
            "Failures replaced by a fallback.",
            ["policy"],
            registry=registry,
        )

    def set_breaker_state(self, policy: str, state: str) -> None:
        for candidate in BREAKER_STATES:
            self.breaker_state.labels(policy, candidate).set(1 if candidate == state else 0)

    def unregister(self) -> None:
        for metric in (
            self.retry_attempts,
            self.retry_giveups,
            self.breaker_state,
            self.breaker_transitions,
            self.breaker_rejections,
            self.bulkhead_rejections,
            self.timeouts,
            self.hedges,
            self.fallbacks,
        ):
            self._registry.unregister(metric)


def _collecting_registry(registry: CollectorRegistry) -> CollectorRegistry:
    if multiprocess_dir() is None:
        return registry
    from prometheus_client import multiprocess

    # Each scrape reads every worker's files afresh (prometheus_client's recipe).
    merged = CollectorRegistry()
    multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
    return merged


def metrics_app(registry: CollectorRegistry | None = None) -> ASGIApp:
    """An ASGI app answering Prometheus scrapes for ``registry``.

    Content negotiation as Prometheus does it: ``Accept:
    application/openmetrics-text`` gets OpenMetrics (with exemplars), anything
    else the Prometheus text format 0.0.4. ``registry`` defaults to
    prometheus_client's global one; in multiprocess mode every worker's
    samples are merged.
    """
    if registry is None:
        from prometheus_client import REGISTRY

        registry = REGISTRY
    target = registry

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        accept = ""
        for name, value in scope.get("headers", ()):
            if name == b"accept":
                accept = value.decode("latin-1")
                break
        encoder, content_type = choose_encoder(accept)
        body = encoder(_collecting_registry(target))
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", content_type.encode("latin-1")),
                    (b"content-length", str(len(body)).encode("latin-1")),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return app
