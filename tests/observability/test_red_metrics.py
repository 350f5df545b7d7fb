"""cairn's own RED metric storage exposes exactly what prometheus_client's metrics would."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client import metrics as prometheus_metrics
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.parser import text_string_to_metric_families

from cairn.observability._metrics import (
    DEFAULT_BUCKETS,
    ClientHttpMetrics,
    HttpMetrics,
    LeanHttpMetrics,
)

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"

# (method, endpoint, status, seconds, trace id) — every bucket edge, +Inf,
# a junk method, a repeated series, an unsampled request.
REQUESTS = [
    ("GET", "/orders/{order_id}", 200, 0.003, TRACE),
    ("GET", "/orders/{order_id}", 200, 0.005, None),  # exactly on a bound: that bucket
    ("GET", "/orders/{order_id}", 404, 0.0051, TRACE),
    ("POST", "/orders", 201, 0.25, TRACE),
    ("POST", "/orders", 500, 11.0, TRACE),  # past the last bound: +Inf only
    ("BREW", "unmatched", 405, 0.001, None),
    ("SPAM", "unmatched", 405, 0.002, None),  # folds with BREW into _OTHER
]


def feed(metrics: HttpMetrics) -> None:
    for method, endpoint, status, seconds, trace_id in REQUESTS:
        metrics.begin()
        metrics.observe(method, endpoint, status, seconds, trace_id)
    metrics.begin()  # one still in flight


def samples(registry: CollectorRegistry) -> set[tuple[str, tuple[tuple[str, str], ...], float]]:
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items())), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if not s.name.endswith("_created")
    }


def test_same_series_and_values_as_prometheus_client() -> None:
    lean_registry, client_registry = CollectorRegistry(), CollectorRegistry()
    feed(LeanHttpMetrics(registry=lean_registry, buckets=DEFAULT_BUCKETS))
    feed(ClientHttpMetrics(registry=client_registry, buckets=DEFAULT_BUCKETS))
    ours = samples(lean_registry)
    assert ours == samples(client_registry)
    assert ("active_connections", (), 1.0) in ours
    other = (("endpoint", "unmatched"), ("method", "_OTHER"), ("status", "405"))
    assert ("http_requests_total", other, 2.0) in ours
    # The _created series are there too, one per series, as prometheus_client writes them.
    text = generate_latest(lean_registry).decode()
    assert text.count("http_requests_created{") == 5
    assert text.count("http_request_duration_seconds_created{") == 3


def test_openmetrics_carries_the_latest_trace_id_per_bucket() -> None:
    registry = CollectorRegistry()
    metrics = LeanHttpMetrics(registry=registry, buckets=(0.1, 1.0))
    metrics.observe("GET", "/a", 200, 0.05, "a" * 32)
    metrics.observe("GET", "/a", 200, 0.07, "b" * 32)
    metrics.observe("GET", "/a", 200, 0.5, None)
    metrics.observe("GET", "/a", 200, 3.0, "c" * 32, 1_800_000_000.25)  # when, given
    text = openmetrics_latest(registry).decode()
    lines = {line.split(" ")[0]: line for line in text.splitlines()}
    assert (
        f'# {{trace_id="{"b" * 32}"}} 0.07'
        in lines['http_request_duration_seconds_bucket{endpoint="/a",le="0.1",method="GET"}']
    )
    assert (
        "#"
        not in lines['http_request_duration_seconds_bucket{endpoint="/a",le="1.0",method="GET"}']
    )
    assert (
        f'# {{trace_id="{"c" * 32}"}} 3.0 1800000000.25'
        in lines['http_request_duration_seconds_bucket{endpoint="/a",le="+Inf",method="GET"}']
    )
    assert text.endswith("# EOF\n")


def test_exemplars_can_be_turned_off() -> None:
    registry = CollectorRegistry()
    LeanHttpMetrics(registry=registry, buckets=(0.1,), exemplars=False).observe(
        "GET", "/a", 200, 0.05, TRACE
    )
    assert "trace_id" not in openmetrics_latest(registry).decode()


@pytest.fixture
def created_off() -> Iterator[None]:
    prometheus_metrics.disable_created_metrics()  # type: ignore[no-untyped-call]
    try:
        yield
    finally:
        prometheus_metrics.enable_created_metrics()  # type: ignore[no-untyped-call]


def test_follows_prometheus_client_when_created_series_are_off(created_off: None) -> None:
    registry = CollectorRegistry()
    LeanHttpMetrics(registry=registry, buckets=(0.1,)).observe("GET", "/a", 200, 0.05, None)
    text = generate_latest(registry).decode()
    assert "_created" not in text
    assert 'http_requests_total{endpoint="/a",method="GET",status="200"} 1.0' in text


@pytest.mark.parametrize("buckets", [(), (math.inf,), (0.1, 0.1)])
def test_bad_buckets_are_refused(buckets: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="buckets must be distinct"):
        LeanHttpMetrics(registry=CollectorRegistry(), buckets=buckets)


def test_unregister_frees_the_names() -> None:
    registry = CollectorRegistry()
    LeanHttpMetrics(registry=registry, buckets=(0.1,)).unregister()
    LeanHttpMetrics(registry=registry, buckets=(0.1,))  # would clash if still registered
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        LeanHttpMetrics(registry=registry, buckets=(0.1,))


def test_threads_lose_no_count() -> None:
    registry = CollectorRegistry()
    metrics = LeanHttpMetrics(registry=registry, buckets=(0.1,))

    def hammer() -> None:
        for _ in range(20_000):
            metrics.begin()
            metrics.observe("GET", "/a", 200, 0.05, None)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    labels = {"method": "GET", "endpoint": "/a", "status": "200"}
    assert registry.get_sample_value("http_requests_total", labels) == 80_000
    assert registry.get_sample_value("active_connections") == 0
