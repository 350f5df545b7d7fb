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

import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder

__all__ = ["DEFAULT_BUCKETS", "HttpMetrics", "ResilienceMetrics", "metrics_app", "multiprocess_dir"]

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


class HttpMetrics:
    """RED metrics of an HTTP server, with children bound once per label set."""

    def __init__(
        self,
        *,
        registry: CollectorRegistry,
        buckets: tuple[float, ...],
        exemplars: bool,
    ) -> None:
        self._registry = registry
        self.requests = Counter(
            "http_requests_total",
            "HTTP requests answered, by method, route template and status code.",
            ["method", "endpoint", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by method and route template.",
            ["method", "endpoint"],
            buckets=buckets,
            registry=registry,
        )
        self.in_flight = Gauge(
            "active_connections",
            "HTTP requests being answered right now.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.exemplars = exemplars
        self._counters: dict[tuple[str, str, int], Any] = {}
        self._histograms: dict[tuple[str, str], Any] = {}

    def observe(
        self, method: str, endpoint: str, status: int, seconds: float, trace_id: str | None
    ) -> None:
        """Count one answered request and record its duration."""
        key = (method, endpoint, status)
        counter = self._counters.get(key)
        if counter is None:
            if method not in _METHODS:
                method = "_OTHER"
            counter = self._counters[key] = self.requests.labels(method, endpoint, str(status))
        counter.inc()
        hkey = (method, endpoint)
        histogram = self._histograms.get(hkey)
        if histogram is None:
            label = method if method in _METHODS else "_OTHER"
            histogram = self._histograms[hkey] = self.duration.labels(label, endpoint)
        if trace_id is not None and self.exemplars:
            histogram.observe(seconds, {"trace_id": trace_id})
        else:
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
