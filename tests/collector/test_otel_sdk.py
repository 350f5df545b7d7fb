"""The real OpenTelemetry Python SDK exporters against a running collector."""

from __future__ import annotations

import httpx
import pytest
from opentelemetry._logs import LogRecord as ApiLogRecord
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode
from receiver_support import running, wait_for

RESOURCE = Resource.create({"service.name": "checkout", "service.instance.id": "checkout-1"})


@pytest.mark.parametrize("compression", [Compression.NoCompression, Compression.Gzip])
def test_sdk_traces_and_logs_come_back_intact(compression: Compression) -> None:
    with running() as (url, _), httpx.Client() as client:
        tracer_provider = TracerProvider(resource=RESOURCE)
        tracer_provider.add_span_processor(
            BatchSpanProcessor(
                OTLPSpanExporter(endpoint=f"{url}/v1/traces", compression=compression)
            )
        )
        logger_provider = LoggerProvider(resource=RESOURCE)
        logger_provider.add_log_record_processor(
            BatchLogRecordProcessor(
                OTLPLogExporter(endpoint=f"{url}/v1/logs", compression=compression)
            )
        )
        tracer = tracer_provider.get_tracer("test")
        logger = logger_provider.get_logger("test")
        with tracer.start_as_current_span("POST /checkout", kind=SpanKind.SERVER) as root:
            root.set_attribute("user_id", 123)
            root.set_attribute("cart.items", ["book", "pen"])
            root.add_event("retry", {"attempt": 2})
            with tracer.start_as_current_span("charge card", kind=SpanKind.CLIENT) as child:
                child.set_status(Status(StatusCode.ERROR, "card declined"))
                context = child.get_span_context()
                logger.emit(
                    ApiLogRecord(
                        severity_number=SeverityNumber.ERROR,
                        severity_text="ERROR",
                        body="payment_failed",
                        attributes={"user_id": 123, "amount": 9.5},
                        trace_id=context.trace_id,
                        span_id=context.span_id,
                        trace_flags=context.trace_flags,
                    )
                )
        tracer_provider.force_flush()
        logger_provider.force_flush()
        trace_id = format(context.trace_id, "032x")

        def stored() -> dict | None:
            reply = client.get(f"{url}/api/traces/{trace_id}")
            body = reply.json() if reply.status_code == 200 else None
            return body if body and len(body["spans"]) == 2 and body["logs"] else None

        trace = wait_for(stored, what="the trace and its log")
        spans = {s["name"]: s for s in trace["spans"]}
        root_json, child_json = spans["POST /checkout"], spans["charge card"]
        assert root_json["service"] == "checkout"
        assert root_json["kind"] == "server"
        assert root_json["attributes"] == {"user_id": 123, "cart.items": ["book", "pen"]}
        assert [(e["name"], e["attributes"]) for e in root_json["events"]] == [
            ("retry", {"attempt": 2})
        ]
        assert child_json["parent_span_id"] == root_json["span_id"]
        assert root_json["parent_span_id"] is None
        assert (child_json["status"], child_json["status_message"]) == ("error", "card declined")
        assert root_json["resource"]["service.instance.id"] == "checkout-1"
        [log] = trace["logs"]
        assert (log["level"], log["body"], log["service"]) == (
            "error",
            "payment_failed",
            "checkout",
        )
        assert log["attributes"] == {"user_id": 123, "amount": 9.5}
        assert log["span_id"] == child_json["span_id"]
        hits = client.get(f"{url}/api/logs", params={"q": "user_id:123 AND level:error"}).json()
        assert [r["body"] for r in hits["records"]] == ["payment_failed"]
        errors = client.get(
            f"{url}/api/traces", params={"status": "error", "service": "checkout"}
        ).json()
        assert [t["trace_id"] for t in errors["traces"]] == [trace_id]
        tracer_provider.shutdown()
        logger_provider.shutdown()


def test_sdk_metrics_arrive_as_prometheus_series() -> None:
    with running() as (url, _), httpx.Client() as client:
        reader = PeriodicExportingMetricReader(
            OTLPMetricExporter(endpoint=f"{url}/v1/metrics"), export_interval_millis=3_600_000
        )
        provider = MeterProvider(resource=RESOURCE, metric_readers=[reader])
        meter = provider.get_meter("test")
        requests = meter.create_counter("http.requests")
        latency = meter.create_histogram("http.latency", unit="s")
        for route, seconds in [("/a", 0.02), ("/a", 0.3), ("/b", 2.0)]:
            requests.add(1, {"route": route})
            latency.record(seconds, {"route": route})
        provider.force_flush()
        wait_for(lambda: client.get(f"{url}/api/stats").json()["store"]["samples"] > 0)
        metrics = {m["name"]: m for m in client.get(f"{url}/api/metrics").json()["metrics"]}
        assert metrics["http_requests_total"]["kind"] == "counter"
        assert metrics["http_requests_total"]["series"] == 2
        assert metrics["http_latency"]["kind"] == "histogram"
        summary = client.get(f"{url}/api/metrics/http_latency", params={"by": "route"}).json()
        assert {s["labels"]["route"] for s in summary["series"]} == {"/a", "/b"}
        services = client.get(f"{url}/api/services").json()["services"]
        assert services == ["checkout"]
        provider.shutdown()
