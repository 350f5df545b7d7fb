"""Exemplars: scraped from OpenMetrics (or decoded from OTLP), stored, and served.

The end-to-end test runs a real cairn service in a subprocess, sends it requests under
trace ids of our own (``traceparent``), and asks a real collector scraping it which
traces its latency histogram's exemplars point to.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.metrics.v1 import metrics_pb2
from prometheus_client import CollectorRegistry, Counter, Enum, Gauge, Histogram, Info, Summary
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as _untyped_openmetrics
from receiver_support import running, wait_for

from cairn.collector._otlp import decode_metrics
from cairn.collector._records import Exemplar, Sample
from cairn.collector._scrape import parse_metrics, parse_openmetrics, parse_prometheus
from cairn.collector._store import Store
from cairn.discovery import Instance, connect

generate_openmetrics: Callable[[CollectorRegistry], bytes] = _untyped_openmetrics
SEC = 1_000_000_000
TRACE_A = "0af7651916cd43dd8448eb211c80319c"
TRACE_B = "4bf92f3577b34da6a3ce929d0e0e4736"
SERVICE = """
import sys
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from cairn.service import run

async def hello(request):
    return PlainTextResponse("hi")

name, instance, registry = sys.argv[1:4]
app = Starlette(routes=[Route("/hello", hello)])
run(app, name=name, instance_id=instance, registry=registry, port=0, ttl=5, drain_delay=0)
"""


def _plain(samples: list[Sample]) -> list[tuple[Any, ...]]:
    return [(s.name, s.labels, s.time_ns, s.value, s.kind, s.family) for s in samples]


def _registry() -> CollectorRegistry:
    """One metric of every kind prometheus_client has, with one exemplar."""
    registry = CollectorRegistry()
    Counter("http_requests_total", "c", ["method"], registry=registry).labels("GET").inc(3)
    Counter("plain", "c", registry=registry).inc()
    Gauge("temp", "g", ["service"], registry=registry).labels("inner").set(2.5)
    latency = Histogram(
        "http_request_duration_seconds", "h", ["endpoint"], buckets=(0.1, 1.0), registry=registry
    )
    latency.labels("/a").observe(0.05, {"trace_id": TRACE_A, "span_id": "b7ad6b7169203331"})
    latency.labels("/a").observe(0.5)
    Summary("lat", "s", registry=registry).observe(1.0)
    Info("build", "i", registry=registry).info({"version": "1.2"})
    Enum("state", "e", states=["up", "down"], registry=registry)
    return registry


# -- parsing ---------------------------------------------------------------------------


def test_openmetrics_and_text_parse_to_the_same_samples() -> None:
    registry = _registry()
    text = generate_latest(registry).decode()
    om = generate_openmetrics(registry).decode()
    from_text = parse_prometheus(text, service="svc", instance="svc-1", time_ns=5)
    from_om = parse_openmetrics(om, service="svc", instance="svc-1", time_ns=5)
    assert _plain(from_om) == _plain(from_text)
    names = {s.family for s in from_om}
    assert {"http_requests_total", "plain_total", "build_info", "state", "lat"} <= names
    assert all(s.exemplar is None for s in from_text)
    [carrier] = [s for s in from_om if s.exemplar is not None]
    assert carrier.name == "http_request_duration_seconds_bucket"
    assert carrier.labels["le"] == "0.1"
    assert carrier.exemplar is not None
    assert carrier.exemplar.trace_id == TRACE_A
    assert carrier.exemplar.span_id == "b7ad6b7169203331"
    assert carrier.exemplar.value == pytest.approx(0.05)
    assert carrier.exemplar.time_ns > 1_600_000_000 * SEC  # its own timestamp, not the scrape's


def test_parse_metrics_chooses_the_parser_by_content_type() -> None:
    registry = _registry()
    om = generate_openmetrics(registry).decode()
    text = generate_latest(registry).decode()
    ct = "application/openmetrics-text; version=1.0.0; charset=utf-8"
    got = parse_metrics(om, ct, service="s", instance="i", time_ns=1)
    assert any(s.exemplar for s in got)
    plain = parse_metrics(text, "text/plain; version=0.0.4", service="s", instance="i", time_ns=1)
    assert _plain(plain) == _plain(got)
    with pytest.raises(ValueError):
        parse_metrics(text, ct, service="s", instance="i")  # text is not OpenMetrics (no EOF)


def test_exemplars_without_a_usable_trace_id_are_dropped() -> None:
    om = (
        "# TYPE lat histogram\n"
        'lat_bucket{le="0.1"} 1 # {trace_id="not-hex"} 0.05 1700000000.5\n'
        'lat_bucket{le="1.0"} 2 # {trace_id="' + "0" * 32 + '"} 0.5\n'
        'lat_bucket{le="+Inf"} 3 # {trace_id="' + TRACE_B.upper() + '",span_id="xyz"} 2\n'
        "lat_count 3\nlat_sum 2.55\n# EOF\n"
    )
    samples = parse_openmetrics(om, service="s", instance="i", time_ns=77)
    assert [s.exemplar for s in samples if s.exemplar] == [Exemplar(TRACE_B, 2.0, 77, None)]


# -- the store -------------------------------------------------------------------------


def _scrape(t_s: float, trace: str | None, value: float, *, service: str = "svc") -> list[Sample]:
    labels = {"service": service, "instance": f"{service}-1", "endpoint": "/a"}
    exemplar = None if trace is None else Exemplar(trace, value, int(t_s * SEC))
    return [
        Sample("lat_bucket", {**labels, "le": "0.1"}, int(t_s * SEC), 1, "histogram", "lat",
               exemplar),
        Sample("lat_count", labels, int(t_s * SEC), 1, "histogram", "lat"),
    ]  # fmt: skip


def test_store_keeps_each_exemplar_once_newest_first() -> None:
    store = Store(None)
    try:
        store.add_samples(_scrape(100, TRACE_A, 0.05))
        store.add_samples(_scrape(115, TRACE_A, 0.05))  # the same exemplar, scraped again
        store.add_samples(_scrape(130, TRACE_B, 0.07))
        store.add_samples(_scrape(131, "c" * 32, 0.08, service="other"))
        found = store.exemplars("lat", service="svc")
        assert [(e.trace_id, e.time_ns, e.value) for e in found] == [
            (TRACE_B, 130 * SEC, 0.07),
            (TRACE_A, 100 * SEC, 0.05),
        ]
        assert found[0].labels["le"] == "0.1"
        assert found[0].name == "lat_bucket"
        assert [e.trace_id for e in store.exemplars("lat_bucket")] == ["c" * 32, TRACE_B, TRACE_A]
        assert [e.trace_id for e in store.exemplars("lat", since_ns=120 * SEC)] == [
            "c" * 32,
            TRACE_B,
        ]
        assert len(store.exemplars("lat", limit=1)) == 1
        assert store.exemplars("nope") == []
        assert store.stats().exemplars == 3  # the one scraped twice is kept once
        assert found[0].to_json() == {
            "name": "lat_bucket", "labels": found[0].labels, "time_ns": 130 * SEC,
            "value": 0.07, "trace_id": TRACE_B, "span_id": None,
        }  # fmt: skip
    finally:
        store.close()


def test_exemplar_retention_by_age_and_by_count(tmp_path: Path) -> None:
    store = Store(tmp_path / "c.db", max_age_s=3600, max_exemplars=3)
    try:
        for i in range(5):
            store.add_samples(_scrape(1000 + i, f"{i + 1:032x}", 0.01 * (i + 1)))
        store.enforce_retention(now_ns=1000 * SEC)
        assert [e.trace_id for e in store.exemplars("lat")] == [f"{i:032x}" for i in (5, 4, 3)]
        store.enforce_retention(now_ns=(1003 + 3600) * SEC + 1)
        assert [e.trace_id for e in store.exemplars("lat")] == [f"{5:032x}"]
        assert store.stats().exemplars == 1
    finally:
        store.close()


def test_store_bounds_exemplars_between_retention_runs() -> None:
    store = Store(None, max_exemplars=16)
    try:
        for i in range(40):
            store.add_samples(_scrape(1000 + i, f"{i + 1:032x}", 0.001 * i))
        assert len(store.exemplars("lat", limit=1000)) <= 16 + 16 // 8 + 1
    finally:
        store.close()


# -- OTLP --------------------------------------------------------------------------------


def test_otlp_histogram_exemplars_land_on_their_buckets() -> None:
    point = {
        "timeUnixNano": str(50 * SEC), "count": "3", "sum": 1.2,
        "explicitBounds": [0.1, 1.0], "bucketCounts": ["1", "1", "1"],
        "exemplars": [
            {"timeUnixNano": str(49 * SEC), "asDouble": 0.05, "traceId": TRACE_A,
             "spanId": "b7ad6b7169203331"},
            {"timeUnixNano": str(48 * SEC), "asDouble": 0.5, "traceId": ""},
            {"timeUnixNano": str(47 * SEC), "asDouble": 3.0, "traceId": TRACE_B},
        ],
    }  # fmt: skip
    body = {"resourceMetrics": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "api"}}]},
        "scopeMetrics": [{"metrics": [{"name": "lat", "histogram": {
            "aggregationTemporality": 2, "dataPoints": [point]}}]}],
    }]}  # fmt: skip
    samples = decode_metrics(orjson.dumps(body), json=True)
    got = {s.labels.get("le"): s.exemplar for s in samples if s.name == "lat_bucket"}
    assert got == {
        "0.1": Exemplar(TRACE_A, 0.05, 49 * SEC, "b7ad6b7169203331"),
        "1.0": None,
        "+Inf": Exemplar(TRACE_B, 3.0, 47 * SEC, None),
    }

    request = ExportMetricsServiceRequest()
    metric = request.resource_metrics.add().scope_metrics.add().metrics.add()
    metric.name = "lat"
    metric.histogram.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
    p = metric.histogram.data_points.add()
    p.time_unix_nano, p.count, p.sum = 50 * SEC, 1, 0.5
    p.explicit_bounds.extend([0.1, 1.0])
    p.bucket_counts.extend([0, 1, 0])
    ex = p.exemplars.add()
    ex.time_unix_nano, ex.as_double = 49 * SEC, 0.5
    ex.trace_id = bytes.fromhex(TRACE_B)
    [carrier] = [s for s in decode_metrics(request.SerializeToString()) if s.exemplar]
    assert carrier.labels["le"] == "1.0"
    assert carrier.exemplar == Exemplar(TRACE_B, 0.5, 49 * SEC, None)


# -- end to end: a real service scraped by a real collector ----------------------------------


@pytest.fixture
def registry_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'registry.db'}?poll=0.05"


@pytest.fixture
def service_port(registry_url: str, tmp_path: Path) -> Iterator[int]:
    """A real cairn service (``shop-1``) in a subprocess; yields its port."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "CAIRN_"))}
    log_path = tmp_path / "service.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", SERVICE, "shop", "shop-1", registry_url],
            env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=log,
        )  # fmt: skip
    try:

        async def port() -> int | None:
            async with connect(registry_url) as registry:
                found = await registry.fetch("shop")
                return found[0].port if found else None

        def registered() -> int | None:
            if proc.poll() is not None:
                raise AssertionError(f"the service exited: {log_path.read_text()}")
            return asyncio.run(port())

        port_found = wait_for(registered, timeout=60, what="the service registered")
        assert port_found is not None
        yield port_found
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


async def _register_text_target(registry_url: str, port: int) -> None:
    # The collector's own /metrics speaks only the text format: the fallback path.
    async with connect(registry_url) as registry:
        await registry.register(Instance("self", "self-1", "127.0.0.1", port))


def test_scraped_exemplars_point_to_the_requests_traces(
    service_port: int, registry_url: str
) -> None:
    traces = [f"{i:08x}" + "5eed" * 6 for i in range(1, 4)]
    with httpx.Client() as client:
        for trace in traces:
            # sampled (flag 01), so the server span joins our trace and the exemplar names it
            header = f"00-{trace}-b7ad6b7169203331-01"
            reply = client.get(
                f"http://127.0.0.1:{service_port}/hello", headers={"traceparent": header}
            )
            assert reply.status_code == 200
    with (
        running(registry=registry_url, scrape_interval_s=0.2) as (url, collector),
        httpx.Client() as client,
    ):
        asyncio.run(_register_text_target(registry_url, int(url.rsplit(":", 1)[1])))
        api = f"{url}/api/metrics/http_request_duration_seconds/exemplars"

        def exemplars() -> list[dict[str, Any]] | None:
            reply = client.get(api, params={"service": "shop", "since": "15m"})
            found = reply.json()["exemplars"] if reply.status_code == 200 else []
            return found if {e["trace_id"] for e in found} >= {traces[-1]} else None

        found = wait_for(exemplars, timeout=30, what="exemplars scraped from the service")
        assert found is not None
        # prometheus_client keeps the newest exemplar per bucket: every request here
        # lands in the same (lowest) bucket, so the last trace is the one kept.
        assert all(e["trace_id"] in traces for e in found)
        newest = found[0]
        assert newest["labels"]["service"] == "shop"
        assert newest["labels"]["instance"] == "shop-1"
        assert newest["labels"]["endpoint"] == "/hello"
        assert "le" in newest["labels"]
        assert 0 < newest["value"] < 5
        assert [e["time_ns"] for e in found] == sorted((e["time_ns"] for e in found), reverse=True)

        # Scraped again and again, the same exemplar is stored once.
        scraper = collector.scraper
        assert scraper is not None
        later = scraper.rounds + 3
        wait_for(lambda: scraper.rounds >= later, timeout=30, what="3 more rounds")
        again = client.get(api, params={"service": "shop"}).json()["exemplars"]
        keys = [(e["trace_id"], e["value"], e["labels"]["le"]) for e in again]
        assert len(keys) == len(set(keys))

        # The text-only target (the collector itself) is scraped all the same.
        def self_scraped() -> bool:
            reply = client.get(
                f"{url}/api/metrics/cairn_collector_accepted_records_total",
                params={"by": "service"},
            )
            return reply.status_code == 200 and any(
                s["labels"].get("service") == "self" for s in reply.json()["series"]
            )

        wait_for(self_scraped, timeout=30, what="the text-format target scraped")
        targets = client.get(f"{url}/api/stats").json()["scrape_targets"]
        assert {t["instance"]: t["error"] for t in targets} == {"shop-1": None, "self-1": None}

        by_series = client.get(f"{url}/api/metrics/http_request_duration_seconds_bucket/exemplars")
        assert by_series.status_code == 200
        assert by_series.json()["exemplars"]
        assert client.get(f"{url}/api/metrics/nope/exemplars").status_code == 404
        bad = client.get(api, params={"since": "yesterday"})
        assert bad.status_code == 400
        assert "since" in bad.json()["error"]
        assert client.get(api, params={"limit": "0"}).status_code == 400
