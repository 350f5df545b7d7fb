"""Metric arithmetic against hand-computed values, and the store's metric reads."""

from __future__ import annotations

import math

import pytest

from cairn.collector._records import Sample
from cairn.collector._store import Store
from cairn.collector._store_metrics import (
    histogram_quantile,
    increase,
    latest,
    rate,
    step_increase,
)

SEC = 1_000_000_000
INF = math.inf


def test_counter_increase_counts_through_resets() -> None:
    # 10 → 15 (+5), reset to 3 (+3), → 7 (+4): 12 over 30 s.
    points = [(0, 10.0), (10 * SEC, 15.0), (20 * SEC, 3.0), (30 * SEC, 7.0)]
    assert increase(points) == 12.0
    assert rate(points) == pytest.approx(0.4)
    assert rate(points[:1]) is None
    assert latest(points) == 7.0
    assert latest(points, 25 * SEC) == 3.0
    assert latest(points, 25 * SEC, lookback_ns=4 * SEC) is None
    assert latest(points, -1) is None
    # (10 s, 20 s]: the reset at 20 s counts 3; (20 s, 40 s]: 4.
    assert step_increase(points, 10 * SEC, 20 * SEC) == 3.0
    assert step_increase(points, 20 * SEC, 40 * SEC) == 4.0
    assert step_increase(points, 40 * SEC, 50 * SEC) is None


def test_histogram_quantile_interpolates_like_prometheus() -> None:
    buckets = [(0.1, 10.0), (0.5, 30.0), (1.0, 40.0), (INF, 40.0)]
    # p50: rank 20, in (0.1, 0.5] holding 20: 0.1 + 0.4 * (10 / 20) = 0.3.
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.3)
    # p90: rank 36, in (0.5, 1.0] holding 10: 0.5 + 0.5 * (6 / 10) = 0.8.
    assert histogram_quantile(0.9, buckets) == pytest.approx(0.8)
    # p10: rank 4 in the first bucket, which starts at 0: 0.1 * 4 / 10 = 0.04.
    assert histogram_quantile(0.1, buckets) == pytest.approx(0.04)
    # A rank in +Inf answers the highest finite bound.
    assert histogram_quantile(0.99, [(1.0, 5.0), (INF, 10.0)]) == 1.0
    # Non-monotonic counts are raised to their running maximum.
    assert histogram_quantile(0.5, [(1.0, 10.0), (2.0, 5.0), (INF, 10.0)]) == pytest.approx(0.5)
    assert histogram_quantile(0.5, [(1.0, 0.0), (INF, 0.0)]) is None
    assert histogram_quantile(0.5, [(1.0, 3.0), (2.0, 4.0)]) is None
    assert histogram_quantile(0.5, [(INF, 4.0)]) is None
    assert histogram_quantile(0.5, [(-1.0, 4.0), (INF, 4.0)]) == -1.0
    assert histogram_quantile(1.5, buckets) == INF
    assert histogram_quantile(-0.5, buckets) == -INF


def _histogram(store: Store, route: str, t_s: int, counts: list[float]) -> None:
    bounds = ["0.1", "0.5", "+Inf"]
    labels = {"route": route, "service": "api"}
    samples = [
        Sample("latency_bucket", {**labels, "le": le}, t_s * SEC, c, "histogram", "latency")
        for le, c in zip(bounds, counts, strict=True)
    ]
    samples.append(Sample("latency_count", labels, t_s * SEC, counts[-1], "histogram", "latency"))
    samples.append(Sample("latency_sum", labels, t_s * SEC, counts[-1] / 4, "histogram", "latency"))
    store.add_samples(samples)


@pytest.fixture
def store() -> Store:
    store = Store(None)
    for t, value in [(0, 100.0), (10, 150.0), (20, 20.0), (30, 60.0)]:  # a reset at 20 s
        store.add_samples(
            [
                Sample("requests_total", {"route": "/a", "code": "200"}, t * SEC, value, "counter", "requests"),
                Sample("requests_total", {"route": "/a", "code": "500"}, t * SEC, t / 10, "counter", "requests"),
                Sample("queue_depth", {"queue": "q1"}, t * SEC, 5.0 + t, "gauge"),
            ]
        )  # fmt: skip
    _histogram(store, "/a", 0, [0, 0, 0])
    _histogram(store, "/a", 30, [10, 30, 40])
    _histogram(store, "/b", 0, [0, 0, 0])
    _histogram(store, "/b", 30, [40, 40, 40])
    return store


def test_metric_names_and_services(store: Store) -> None:
    names = {(m.name, m.kind, m.series) for m in store.metric_names()}
    assert names == {
        ("requests", "counter", 2),
        ("queue_depth", "gauge", 1),
        ("latency", "histogram", 2),
    }
    assert store.metric_names()[0].to_json() == {
        "name": "latency",
        "kind": "histogram",
        "series": 2,
    }
    assert store.services() == ["api"]
    assert store.stats().samples == 4 * 3 + 4 * 5


def test_metric_summary(store: Store) -> None:
    by_code = {s.labels["code"]: s for s in store.metric_summary("requests")}
    # 200: +50, reset +20, +40 = 110 over 30 s; 500: 0 → 3 over 30 s.
    assert by_code["200"].rate == pytest.approx(110 / 30)
    assert by_code["500"].rate == pytest.approx(0.1)
    assert by_code["200"].latest == 60.0
    (total,) = store.metric_summary("requests", by=["route"])
    assert total.labels == {"route": "/a"}
    assert total.rate == pytest.approx(113 / 30)
    # Since 15 s only points at 20 s and 30 s count: 200 rose 40 in 10 s.
    since = {s.labels["code"]: s.rate for s in store.metric_summary("requests", since_ns=15 * SEC)}
    assert since["200"] == pytest.approx(4.0)
    (gauge,) = store.metric_summary("queue_depth")
    assert (gauge.latest, gauge.rate, gauge.quantiles) == (35.0, None, None)
    routes = {s.labels["route"]: s for s in store.metric_summary("latency")}
    assert routes["/a"].rate == pytest.approx(40 / 30)
    assert routes["/a"].quantiles == pytest.approx({"p50": 0.3, "p90": 0.5, "p99": 0.5})
    assert routes["/b"].quantiles == pytest.approx({"p50": 0.05, "p90": 0.09, "p99": 0.099})
    (both,) = store.metric_summary("latency", by=["service"])
    # Buckets summed: 0.1 → 50, 0.5 → 70, +Inf → 80. p50 rank 40 in (0, 0.1]: 0.08.
    assert both.quantiles is not None
    assert both.quantiles["p50"] == pytest.approx(0.08)
    assert both.to_json()["labels"] == {"service": "api"}
    assert store.metric_summary("nothing") == []


def test_metric_range(store: Store) -> None:
    (series,) = store.metric_range("requests", by=["route"], since_ns=0, until_ns=30 * SEC,
                                   step_s=10, stat="rate")  # fmt: skip
    # Per 10 s step: 200 → +50, +20 (reset), +40; 500 → +1 each.
    assert series.points == [(10 * SEC, 5.1), (20 * SEC, 2.1), (30 * SEC, 4.1)]
    (gauge,) = store.metric_range(
        "queue_depth", since_ns=0, until_ns=30 * SEC, step_s=15, stat="latest"
    )
    assert gauge.points == [(15 * SEC, 15.0), (30 * SEC, 35.0)]
    quantiles = store.metric_range("latency", by=["route"], since_ns=0, until_ns=30 * SEC,
                                   step_s=30, stat="p50")  # fmt: skip
    assert [(s.labels, s.points) for s in quantiles] == [
        ({"route": "/a"}, [(30 * SEC, pytest.approx(0.3))]),
        ({"route": "/b"}, [(30 * SEC, pytest.approx(0.05))]),
    ]
    assert quantiles[0].to_json()["points"][0][0] == 30 * SEC
    with pytest.raises(ValueError, match="unknown stat 'p75'"):
        store.metric_range("requests", since_ns=0, until_ns=SEC, stat="p75")
    with pytest.raises(ValueError, match="needs a histogram"):
        store.metric_range("requests", since_ns=0, until_ns=SEC, stat="p99")
    with pytest.raises(ValueError, match="at most"):
        store.metric_range("requests", since_ns=0, until_ns=10**9 * SEC, step_s=1)
    with pytest.raises(ValueError, match="positive"):
        store.metric_range("requests", since_ns=0, until_ns=SEC, step_s=0)
