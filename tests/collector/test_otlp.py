"""OTLP decoding: protobuf from the real SDK encoders, OTLP/JSON, metrics, malformed input."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest
from google.protobuf.json_format import MessageToDict
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from cairn.collector._otlp import OtlpDecodeError, decode_logs, decode_metrics, decode_spans

RESOURCE = Resource.create({"service.name": "orders", "service.instance.id": "orders-1"})


def _sdk_spans() -> bytes:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("GET /orders", kind=SpanKind.SERVER) as root:
        root.set_attribute("http.status_code", 500)
        root.set_attribute("ratio", 0.5)
        root.set_attribute("cached", True)
        root.set_attribute("tags", ["a", "b"])
        root.add_event("retry", {"attempt": 2})
        with tracer.start_as_current_span("db", kind=SpanKind.CLIENT) as child:
            child.set_status(Status(StatusCode.ERROR, "timeout"))
    provider.shutdown()
    return encode_spans(exporter.get_finished_spans()).SerializeToString()


def _to_json(
    message: Any, id_paths: tuple[str, ...] = ("traceId", "spanId", "parentSpanId")
) -> bytes:
    """OTLP/JSON as the spec wants it: MessageToDict gives base64 ids, OTLP wants hex."""

    def fix(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                k: base64.b64decode(v).hex() if k in id_paths and isinstance(v, str) else fix(v)
                for k, v in node.items()
            }
        if isinstance(node, list):
            return [fix(v) for v in node]
        return node

    return orjson.dumps(fix(MessageToDict(message)))


def test_sdk_spans_decode_with_parents_events_status_and_attribute_types() -> None:
    spans = decode_spans(_sdk_spans())
    by_name = {s.name: s for s in spans}
    root, child = by_name["GET /orders"], by_name["db"]
    assert root.service == "orders"
    assert root.kind == "server"
    assert root.parent_span_id is None
    assert child.parent_span_id == root.span_id
    assert child.trace_id == root.trace_id
    assert len(root.trace_id) == 32
    assert len(root.span_id) == 16
    assert child.kind == "client"
    assert child.status == "error"
    assert child.status_message == "timeout"
    assert root.attributes == {
        "http.status_code": 500,
        "ratio": 0.5,
        "cached": True,
        "tags": ["a", "b"],
    }
    assert [(e.name, e.attributes) for e in root.events] == [("retry", {"attempt": 2})]
    assert root.resource["service.instance.id"] == "orders-1"
    assert root.end_ns >= child.end_ns >= child.start_ns >= root.start_ns > 0


def test_json_spans_decode_like_protobuf() -> None:
    body = _sdk_spans()
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    as_json = _to_json(ExportTraceServiceRequest.FromString(body))
    assert b'"startTimeUnixNano":"' in as_json  # int64 as strings, as the spec says
    assert decode_spans(as_json, json=True) == decode_spans(body)


def test_sdk_logs_decode_with_severity_body_and_trace_context() -> None:
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=RESOURCE)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = provider.get_logger("test")
    from opentelemetry._logs import LogRecord as ApiLogRecord
    from opentelemetry._logs import SeverityNumber

    for number, text, body in [
        (SeverityNumber.WARN, "WARN", "disk low"),
        (SeverityNumber.FATAL, "FATAL", {"event": "crash", "code": 3}),
        (SeverityNumber.UNSPECIFIED, "ERROR", "no number"),
    ]:
        logger.emit(
            ApiLogRecord(
                timestamp=1_700_000_000_000_000_000,
                severity_number=number,
                severity_text=text,
                body=body,
                attributes={"user_id": 123},
            )
        )
    provider.shutdown()
    body = encode_logs(exporter.get_finished_logs()).SerializeToString()
    logs = decode_logs(body)
    assert [(r.level, r.body) for r in logs] == [
        ("warning", "disk low"),
        ("critical", '{"event":"crash","code":3}'),
        ("error", "no number"),
    ]
    assert all(r.service == "orders" and r.attributes == {"user_id": 123} for r in logs)
    assert logs[0].time_ns == 1_700_000_000_000_000_000
    assert logs[0].trace_id is None

    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    assert decode_logs(_to_json(ExportLogsServiceRequest.FromString(body)), json=True) == logs


def _kv(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _metrics_request(*metrics: metrics_pb2.Metric) -> ExportMetricsServiceRequest:
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    rm.resource.attributes.append(_kv("service.name", "orders"))
    rm.scope_metrics.add().metrics.extend(metrics)
    return request


CUMULATIVE = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE


def test_metrics_map_to_prometheus_samples() -> None:
    t = 1_700_000_000_000_000_000
    counter = metrics_pb2.Metric(
        name="http.requests",
        sum=metrics_pb2.Sum(
            aggregation_temporality=CUMULATIVE,
            is_monotonic=True,
            data_points=[
                metrics_pb2.NumberDataPoint(
                    as_int=7, time_unix_nano=t, attributes=[_kv("route", "/a")]
                )
            ],
        ),
    )
    gauge = metrics_pb2.Metric(
        name="queue_depth",
        gauge=metrics_pb2.Gauge(
            data_points=[metrics_pb2.NumberDataPoint(as_double=2.5, time_unix_nano=t)]
        ),
    )
    histogram = metrics_pb2.Metric(
        name="latency",
        histogram=metrics_pb2.Histogram(
            aggregation_temporality=CUMULATIVE,
            data_points=[
                metrics_pb2.HistogramDataPoint(
                    time_unix_nano=t,
                    count=6,
                    sum=3.5,
                    explicit_bounds=[0.1, 1.0],
                    bucket_counts=[1, 2, 3],
                )
            ],
        ),
    )
    request = _metrics_request(counter, gauge, histogram)
    samples = decode_metrics(request.SerializeToString())
    got = {(s.name, tuple(sorted(s.labels.items())), s.kind, s.family): s.value for s in samples}
    svc = ("service", "orders")
    assert got == {
        ("http_requests_total", (("route", "/a"), svc), "counter", "http_requests_total"): 7.0,
        ("queue_depth", (svc,), "gauge", "queue_depth"): 2.5,
        ("latency_bucket", (("le", "0.1"), svc), "histogram", "latency"): 1.0,
        ("latency_bucket", (("le", "1.0"), svc), "histogram", "latency"): 3.0,
        ("latency_bucket", (("le", "+Inf"), svc), "histogram", "latency"): 6.0,
        ("latency_sum", (svc,), "histogram", "latency"): 3.5,
        ("latency_count", (svc,), "histogram", "latency"): 6.0,
    }
    assert all(s.time_ns == t for s in samples)
    as_json = _to_json(request)
    assert decode_metrics(as_json, json=True) == samples


def test_delta_temporality_is_refused_with_what_to_do() -> None:
    delta = metrics_pb2.Metric(
        name="hits",
        sum=metrics_pb2.Sum(
            aggregation_temporality=metrics_pb2.AGGREGATION_TEMPORALITY_DELTA,
            is_monotonic=True,
            data_points=[metrics_pb2.NumberDataPoint(as_int=1)],
        ),
    )
    request = _metrics_request(delta)
    for body, json in [(request.SerializeToString(), False), (_to_json(request), True)]:
        with pytest.raises(OtlpDecodeError, match=r"delta temporality.*cumulative"):
            decode_metrics(body, json=json)


def test_summary_and_exponential_histogram() -> None:
    summary = metrics_pb2.Metric(
        name="rpc",
        summary=metrics_pb2.Summary(
            data_points=[
                metrics_pb2.SummaryDataPoint(
                    count=4,
                    sum=2.0,
                    quantile_values=[
                        metrics_pb2.SummaryDataPoint.ValueAtQuantile(quantile=0.5, value=0.4)
                    ],
                )
            ]
        ),
    )
    expo = metrics_pb2.Metric(
        name="size",
        exponential_histogram=metrics_pb2.ExponentialHistogram(
            aggregation_temporality=CUMULATIVE,
            data_points=[metrics_pb2.ExponentialHistogramDataPoint(count=3, sum=9.0)],
        ),
    )
    samples = decode_metrics(_metrics_request(summary, expo).SerializeToString())
    assert [(s.name, s.labels.get("quantile"), s.value, s.kind) for s in samples] == [
        ("rpc", "0.5", 0.4, "summary"),
        ("rpc_sum", None, 2.0, "summary"),
        ("rpc_count", None, 4.0, "summary"),
        ("size_sum", None, 9.0, "histogram"),
        ("size_count", None, 3.0, "histogram"),
    ]


@pytest.mark.parametrize(
    ("body", "json", "message"),
    [
        (b"\xff\xff\xff\xff", False, "malformed ExportTraceServiceRequest \\(protobuf\\)"),
        (b"{not json", True, "malformed ExportTraceServiceRequest \\(JSON\\)"),
        (b"[1, 2]", True, "must be an object"),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"spanId": "00f067aa0ba902b7"}]}]}]}',
            True,
            "traceId is missing",
        ),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "xyz", "spanId": "00f067aa0ba902b7"}]}]}]}',
            True,
            "32 hex digits",
        ),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "4bf92f3577b34da6a3ce929d0e0e4736", "spanId": "00f067aa0ba902b7", "startTimeUnixNano": "soon"}]}]}]}',
            True,
            "OTLP/JSON",
        ),
        (b'{"resourceSpans": 5}', True, "OTLP/JSON"),
    ],
)
def test_malformed_input_says_what_was_wrong(body: bytes, json: bool, message: str) -> None:
    with pytest.raises(OtlpDecodeError, match=message):
        decode_spans(body, json=json)


def test_protobuf_span_with_a_short_trace_id_is_refused() -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add()
    span.trace_id = b"\x01" * 8
    span.span_id = b"\x02" * 8
    with pytest.raises(OtlpDecodeError, match="trace_id must be 16 bytes"):
        decode_spans(request.SerializeToString())


def test_empty_request_is_no_records() -> None:
    assert decode_spans(b"") == []
    assert decode_logs(b"{}", json=True) == []
