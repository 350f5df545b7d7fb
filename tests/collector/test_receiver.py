"""The collector's HTTP face on a real uvicorn server: OTLP in, refusals, overload, queries."""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2
from prometheus_client.parser import text_string_to_metric_families
from receiver_support import GatedStore, running, wait_for

from cairn.collector._server import parse_time
from cairn.collector._store import Store

PROTO = {"Content-Type": "application/x-protobuf"}
JSON = {"Content-Type": "application/json"}
_counter = iter(range(1, 1 << 30))


def _spans(n: int, *, service: str = "orders", trace: int | None = None) -> bytes:
    """A protobuf ExportTraceServiceRequest of ``n`` spans, all in one fresh trace."""
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.append(
        KeyValue(key="service.name", value=AnyValue(string_value=service))
    )
    spans = rs.scope_spans.add().spans
    trace_id = (trace or next(_counter)).to_bytes(16, "big")
    now = time.time_ns()
    for i in range(n):
        span = spans.add(trace_id=trace_id, span_id=(i + 1).to_bytes(8, "big"), name=f"op{i}")
        span.start_time_unix_nano = now
        span.end_time_unix_nano = now + 1000
        span.attributes.append(KeyValue(key="i", value=AnyValue(int_value=i)))
        if i:
            span.parent_span_id = (1).to_bytes(8, "big")
    return request.SerializeToString()


def _log_json(body: str, *, user_id: int = 123, t: int | None = None) -> bytes:
    return orjson.dumps(
        {
            "resourceLogs": [
                {
                    "resource": {
                        "attributes": [{"key": "service.name", "value": {"stringValue": "cart"}}]
                    },
                    "scopeLogs": [
                        {
                            "logRecords": [
                                {
                                    "timeUnixNano": str(t or time.time_ns()),
                                    "severityNumber": 9,
                                    "body": {"stringValue": body},
                                    "attributes": [
                                        {"key": "user_id", "value": {"intValue": str(user_id)}}
                                    ],
                                    "traceId": "4bf92f3577b34da6a3ce929d0e0e4736",
                                    "spanId": "00f067aa0ba902b7",
                                }
                            ]
                        }
                    ],
                }
            ]
        }
    )


def _trace_count(client: httpx.Client, url: str) -> int:
    return int(client.get(f"{url}/api/stats").json()["store"]["spans"])


def test_protobuf_spans_round_trip_through_the_api() -> None:
    with running() as (url, _), httpx.Client() as client:
        reply = client.post(f"{url}/v1/traces", content=_spans(3, trace=7), headers=PROTO)
        assert reply.status_code == 200, reply.text
        assert reply.headers["content-type"] == "application/x-protobuf"
        assert reply.content == b""
        trace_id = (7).to_bytes(16, "big").hex()
        wait_for(lambda: _trace_count(client, url) == 3, what="3 spans stored")
        traces = client.get(
            f"{url}/api/traces", params={"service": "orders", "since": "15m"}
        ).json()
        assert [(t["trace_id"], t["span_count"], t["root_name"]) for t in traces["traces"]] == [
            (trace_id, 3, "op0")
        ]
        trace = client.get(f"{url}/api/traces/{trace_id}").json()
        assert sorted(s["name"] for s in trace["spans"]) == ["op0", "op1", "op2"]
        assert {s["attributes"]["i"] for s in trace["spans"]} == {0, 1, 2}
        assert client.get(f"{url}/api/services").json() == {"services": ["orders"]}
        stats = client.get(f"{url}/api/stats").json()
        assert stats["accepted"] == {"spans": 3, "logs": 0, "samples": 0}
        assert stats["refused"] == {"spans": 0, "logs": 0, "samples": 0}


def test_json_and_gzip_logs_are_queryable() -> None:
    with running() as (url, _), httpx.Client() as client:
        reply = client.post(f"{url}/v1/logs", content=_log_json("purchase_completed"), headers=JSON)
        assert reply.status_code == 200
        assert reply.json() == {}
        zipped = gzip.compress(_log_json("cart_viewed", user_id=7))
        reply = client.post(
            f"{url}/v1/logs", content=zipped, headers={**JSON, "Content-Encoding": "gzip"}
        )
        assert reply.status_code == 200
        wait_for(lambda: client.get(f"{url}/api/stats").json()["store"]["logs"] == 2)
        hits = client.get(
            f"{url}/api/logs", params={"q": "user_id:123 AND event:purchase_completed"}
        ).json()
        [record] = hits["records"]
        assert record["body"] == "purchase_completed"
        assert record["level"] == "info"
        assert record["service"] == "cart"
        assert record["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
        assert len(client.get(f"{url}/api/logs", params={"since": "15m"}).json()["records"]) == 2
        future = "2999-01-01T00:00:00Z"
        assert client.get(f"{url}/api/logs", params={"since": future}).json() == {"records": []}


def _gzip_bomb(size: int) -> bytes:
    return gzip.compress(b"\0" * size, compresslevel=9)


@pytest.mark.parametrize(
    ("path", "body", "headers", "status", "message"),
    [
        ("/v1/traces", b"\xff\xff\xff\xff", PROTO, 400, "malformed ExportTraceServiceRequest"),
        ("/v1/logs", b"{nope", JSON, 400, "malformed ExportLogsServiceRequest"),
        ("/v1/metrics", b"[]", JSON, 400, "must be an object"),
        ("/v1/traces", b"x", {"Content-Type": "text/plain"}, 415, "application/x-protobuf"),
        ("/v1/traces", b"x", {}, 415, "not OTLP"),
        ("/v1/traces", b"x", {**PROTO, "Content-Encoding": "br"}, 415, "Content-Encoding"),
        ("/v1/traces", b"\0" * (64 * 1024 + 1), PROTO, 413, "over the limit"),
        (
            "/v1/traces",
            _gzip_bomb(10 << 20),
            {**PROTO, "Content-Encoding": "gzip"},
            413,
            "decompressed",
        ),
        ("/v1/traces", b"not gzip", {**PROTO, "Content-Encoding": "gzip"}, 400, "not gzip"),
        (
            "/v1/traces",
            gzip.compress(_spans(2))[:-12],
            {**PROTO, "Content-Encoding": "gzip"},
            400,
            "truncated",
        ),
    ],
)
def test_bad_requests_are_refused_and_harm_nothing(
    path: str, body: bytes, headers: dict[str, str], status: int, message: str
) -> None:
    with running(max_body_bytes=64 * 1024) as (url, _), httpx.Client() as client:
        reply = client.post(f"{url}{path}", content=body, headers=headers)
        assert reply.status_code == status, reply.text
        assert message in reply.json()["error"]
        assert client.post(f"{url}/v1/traces", content=_spans(2), headers=PROTO).status_code == 200
        wait_for(lambda: _trace_count(client, url) == 2, what="the good batch stored")
        assert client.get(f"{url}/api/stats").json()["refused_requests"] == {str(status): 1}


def _post_until_refused(client: httpx.Client, url: str, body: bytes) -> tuple[int, httpx.Response]:
    for accepted in range(50):
        reply = client.post(f"{url}/v1/traces", content=body, headers=PROTO)
        if reply.status_code != 200:
            return accepted, reply
    raise AssertionError("never refused")


def _refused_metric(text: str, code: str) -> float:
    for family in text_string_to_metric_families(text):
        if family.name == "cairn_collector_refused_records":
            return sum(
                s.value
                for s in family.samples
                if s.labels.get("code") == code and s.name.endswith("_total")
            )
    return 0.0


def test_overload_refuses_with_retry_after_and_loses_nothing_accepted() -> None:
    store = GatedStore()
    store.gate.clear()
    with running(store, queue_records=100, retry_after_s=2) as (url, _), httpx.Client() as client:
        batch = _spans(40)
        accepted, reply = _post_until_refused(client, url, batch)
        assert reply.status_code == 429
        assert reply.headers["Retry-After"] == "2"
        assert "queue is full" in reply.json()["error"]
        more = [
            client.post(f"{url}/v1/traces", content=batch, headers=PROTO).status_code
            for _ in range(3)
        ]
        assert more == [429, 429, 429]
        stats = client.get(f"{url}/api/stats").json()
        assert stats["accepted"]["spans"] == 40 * accepted
        assert stats["refused"]["spans"] == 40 * 4
        assert _refused_metric(client.get(f"{url}/metrics").text, "429") == 40 * 4
        store.gate.set()
        wait_for(
            lambda: _trace_count(client, url) == 40 * accepted, what="every accepted span stored"
        )
        assert client.post(f"{url}/v1/traces", content=batch, headers=PROTO).status_code == 200


def test_a_failing_store_gets_503_then_recovers_without_losing_accepted() -> None:
    store = GatedStore()
    store.failing.set()
    with running(store, retry_after_s=3) as (url, collector), httpx.Client() as client:
        assert client.post(f"{url}/v1/traces", content=_spans(5), headers=PROTO).status_code == 200
        wait_for(lambda: collector.writer.failing, what="the writer to see the failure")
        reply = client.post(f"{url}/v1/traces", content=_spans(5), headers=PROTO)
        assert reply.status_code == 503
        assert reply.headers["Retry-After"] == "3"
        assert "unable to write" in reply.json()["error"]
        stats = client.get(f"{url}/api/stats").json()
        assert stats["store_failing"]
        assert "disk on fire" in stats["store_error"]
        assert _refused_metric(client.get(f"{url}/metrics").text, "503") == 5
        store.failing.clear()
        wait_for(lambda: _trace_count(client, url) == 5, what="the retried batch stored")
        assert client.post(f"{url}/v1/traces", content=_spans(5), headers=PROTO).status_code == 200
        wait_for(lambda: _trace_count(client, url) == 10)


def test_shutdown_drains_the_queue_and_refuses_new_data() -> None:
    store = GatedStore()
    store.gate.clear()
    with running(store) as (url, collector), httpx.Client() as client:
        for _ in range(3):
            assert (
                client.post(f"{url}/v1/traces", content=_spans(10), headers=PROTO).status_code
                == 200
            )
        stopper = threading.Thread(target=collector.stop)
        stopper.start()
        wait_for(lambda: collector.queue._closed, what="the queue to close")
        reply = client.post(f"{url}/v1/traces", content=_spans(10), headers=PROTO)
        assert reply.status_code == 503
        assert "shutting down" in reply.json()["error"]
        store.gate.set()
        stopper.join(30)
        assert not stopper.is_alive()
        assert store.stats().spans == 30


def test_query_errors_are_400_with_column_and_unknowns_404() -> None:
    with running() as (url, _), httpx.Client() as client:
        reply = client.get(f"{url}/api/logs", params={"q": "user_id:123 AND"})
        assert reply.status_code == 400
        body = reply.json()
        assert isinstance(body["column"], int)
        assert body["column"] > 1
        assert body["error"]
        for path, params, message in [
            ("/api/logs", {"since": "yesterday"}, "since='yesterday'"),
            ("/api/logs", {"limit": "0"}, "limit=0"),
            ("/api/traces", {"min_duration_ms": "slow"}, "min_duration_ms"),
            ("/api/traces/nothex", {}, "32 hex digits"),
            ("/api/metrics/x/range", {"stat": "mean"}, "stat='mean'"),
            ("/api/metrics/x/range", {"step": "-1"}, "step="),
        ]:
            reply = client.get(f"{url}{path}", params=params)
            assert reply.status_code == 400, (path, reply.text)
            assert message in reply.json()["error"], (path, reply.text)
        reply = client.get(f"{url}/api/traces/{'ab' * 16}")
        assert reply.status_code == 404
        assert "no trace" in reply.json()["error"]
        assert client.get(f"{url}/api/metrics/nothing").status_code == 404


def _counter_request(value: int, t: int) -> bytes:
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    rm.resource.attributes.append(
        KeyValue(key="service.name", value=AnyValue(string_value="orders"))
    )
    metric = rm.scope_metrics.add().metrics.add(name="http_requests")
    metric.sum.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
    metric.sum.is_monotonic = True
    for route in ("/a", "/b"):
        point = metric.sum.data_points.add(as_int=value, time_unix_nano=t)
        point.attributes.append(KeyValue(key="route", value=AnyValue(string_value=route)))
    return request.SerializeToString()


def test_metrics_are_listed_summarised_and_ranged() -> None:
    now = time.time_ns()
    with running() as (url, _), httpx.Client() as client:
        for value, t in [(10, now - 60_000_000_000), (70, now)]:
            reply = client.post(
                f"{url}/v1/metrics", content=_counter_request(value, t), headers=PROTO
            )
            assert reply.status_code == 200
        wait_for(lambda: client.get(f"{url}/api/stats").json()["store"]["samples"] == 4)
        metrics = client.get(f"{url}/api/metrics").json()["metrics"]
        assert {"name": "http_requests_total", "kind": "counter", "series": 2} in metrics
        summary = client.get(
            f"{url}/api/metrics/http_requests_total", params={"by": "route", "since": "5m"}
        ).json()
        assert summary["kind"] == "counter"
        rates = {s["labels"]["route"]: s["rate"] for s in summary["series"]}
        assert rates == {"/a": pytest.approx(1.0), "/b": pytest.approx(1.0)}
        ranged = client.get(
            f"{url}/api/metrics/http_requests_total/range", params={"since": "5m", "step": "30"}
        ).json()
        assert ranged["name"] == "http_requests_total"
        assert ranged["series"]
        assert all(
            isinstance(p, list) and len(p) == 2 for s in ranged["series"] for p in s["points"]
        )
        text = client.get(f"{url}/metrics").text
        accepted = {
            s.labels["signal"]: s.value
            for f in text_string_to_metric_families(text)
            if f.name == "cairn_collector_accepted_records"
            for s in f.samples
            if s.name.endswith("_total")
        }
        assert accepted == {"spans": 0, "logs": 0, "samples": 4}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("15m", 1_000_000 - 900 * 10**9),
        ("30s", 1_000_000 - 30 * 10**9),
        ("2h", 1_000_000 - 7200 * 10**9),
        ("1970-01-01T00:00:01Z", 10**9),
        ("1970-01-01T00:00:01.5", 1_500_000_000),
        ("", None),
    ],
)
def test_parse_time(text: str, expected: Any) -> None:
    assert parse_time(text, now_ns=1_000_000) == expected


CLI = "from cairn.collector._serve_cli import collector_command; collector_command()"


def test_cli_serves_prints_its_url_and_drains_on_sigterm(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "CAIRN_"))}
    data = tmp_path / "data"
    proc = subprocess.Popen(
        [sys.executable, "-c", CLI, "--port", "0", "--data", str(data), "--retention", "1d"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("cairn collector listening on http://127.0.0.1:"), line
        url = line.split()[4]
        with httpx.Client() as client:
            reply = client.post(f"{url}/v1/traces", content=_spans(4), headers=PROTO)
            assert reply.status_code == 200
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    store = Store(data / "collector.db")
    try:
        assert store.stats().spans == 4
    finally:
        store.close()


def test_cli_refuses_bad_sizes_and_durations() -> None:
    from click.testing import CliRunner

    from cairn.collector._serve_cli import collector_command

    result = CliRunner().invoke(collector_command, ["--max-size", "lots"])
    assert result.exit_code == 2
    assert "not a positive size" in result.output
    result = CliRunner().invoke(collector_command, ["--retention", "-1d"])
    assert result.exit_code == 2
    assert "not a positive duration" in result.output
