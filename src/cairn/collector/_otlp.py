"""OTLP export requests (protobuf or OTLP/JSON) decoded into the collector's records.

Protobuf requests are parsed by the upb-backed ``opentelemetry-proto`` messages and
walked directly (no ``MessageToDict``: it costs more than the parse). OTLP/JSON follows
the OTLP specification: lowerCamelCase keys, trace and span ids as hex, 64-bit integers
as strings (numbers accepted too), enums as integers.

Metrics become Prometheus-model :class:`Sample` s: a monotonic sum is a ``counter``
(named ``<name>_total``), a non-monotonic sum or a gauge a ``gauge``, a histogram its
cumulative ``_bucket`` (``le``) / ``_sum`` / ``_count`` series, a summary its
``quantile`` / ``_sum`` / ``_count`` series, an exponential histogram only ``_sum`` and
``_count``. Names are made Prometheus-safe (``http.server.duration`` →
``http_server_duration``); every sample carries the resource's ``service`` (and
``instance`` from ``service.instance.id`` when present). **Delta temporality is
rejected** (:class:`OtlpDecodeError`, a 400): summing deltas needs per-series state
the collector does not keep; configure the exporter for cumulative temporality (the
default of the OpenTelemetry SDKs).
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import orjson
from google.protobuf.message import DecodeError  # type: ignore[import-untyped]
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from prometheus_client.utils import floatToGoString as _untyped_go_float

from cairn.collector._records import Exemplar, LogRecord, Sample, SpanEvent, SpanRecord

__all__ = [
    "OtlpDecodeError",
    "decode_logs",
    "decode_metrics",
    "decode_spans",
]

UNKNOWN_SERVICE = "unknown_service"
_KINDS = ("internal", "internal", "server", "client", "producer", "consumer")
_STATUSES = ("unset", "ok", "error")
_KIND_NAMES = {f"SPAN_KIND_{k.upper()}": i for i, k in enumerate(_KINDS) if i}
_STATUS_NAMES = {f"STATUS_CODE_{s.upper()}": i for i, s in enumerate(_STATUSES)}
# OTLP severity numbers come in groups of four (TRACE..TRACE4, DEBUG.., ...).
_LEVELS = ("trace", "debug", "info", "warning", "error", "critical")
_LEVEL_TEXT = {"warn": "warning", "fatal": "critical", "err": "error", "information": "info"}
_DELTA, _CUMULATIVE = 1, 2
_UNSAFE = re.compile(r"[^a-zA-Z0-9_:]")
_HEX32 = re.compile(r"[0-9a-f]{32}")
_HEX16 = re.compile(r"[0-9a-f]{16}")
# Prometheus's own formatting of `le` / `quantile` values, as a scrape would show them.
_go_float: Callable[[float], str] = _untyped_go_float


class OtlpDecodeError(ValueError):
    """The request body is not a valid OTLP export request; the message says what was wrong."""


def _level(number: int, text: str) -> str:
    if 1 <= number <= 24:
        return _LEVELS[(number - 1) // 4]
    lowered = text.lower()
    if lowered in _LEVELS:
        return lowered
    return _LEVEL_TEXT.get(lowered, "info")


def _metric_name(name: str) -> str:
    safe = _UNSAFE.sub("_", name)
    if not safe or safe[0].isdigit():
        safe = "_" + safe
    return safe


# --- protobuf --------------------------------------------------------------------------------


def _pb_value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "int_value":
        return value.int_value
    if kind == "double_value":
        return value.double_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "array_value":
        return [_pb_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _pb_value(kv.value) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    return None


def _pb_attrs(attributes: Iterable[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in attributes:
        value = kv.value
        kind = value.WhichOneof("value")
        # The common scalar cases inline: this runs for every attribute of every span.
        if kind == "string_value":
            out[kv.key] = value.string_value
        elif kind == "int_value":
            out[kv.key] = value.int_value
        else:
            out[kv.key] = _pb_value(value)
    return out


def _parse(message: Any, body: bytes, what: str) -> Any:
    try:
        return message.FromString(body)
    except DecodeError as exc:
        raise OtlpDecodeError(f"malformed {what} (protobuf): {exc}") from None


def _id(raw: bytes, size: int, what: str) -> str:
    if len(raw) != size:
        raise OtlpDecodeError(f"{what} must be {size} bytes, got {len(raw)}")
    return raw.hex()


def _pb_spans(body: bytes) -> list[SpanRecord]:
    request = _parse(ExportTraceServiceRequest, body, "ExportTraceServiceRequest")
    out: list[SpanRecord] = []
    append = out.append
    for resource_spans in request.resource_spans:
        resource = _pb_attrs(resource_spans.resource.attributes)
        service = str(resource.get("service.name") or UNKNOWN_SERVICE)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                trace_id = span.trace_id
                if len(trace_id) != 16:
                    _id(trace_id, 16, "trace_id")
                parent = span.parent_span_id
                status = span.status
                kind = span.kind
                code = status.code
                events = span.events
                append(
                    SpanRecord(
                        trace_id.hex(),
                        _id(span.span_id, 8, "span_id"),
                        parent.hex() if parent else None,
                        span.name,
                        service,
                        span.start_time_unix_nano,
                        span.end_time_unix_nano,
                        _KINDS[kind] if 0 <= kind < 6 else "internal",
                        _STATUSES[code] if 0 <= code < 3 else "unset",
                        status.message,
                        _pb_attrs(span.attributes),
                        [
                            SpanEvent(e.name, e.time_unix_nano, _pb_attrs(e.attributes))
                            for e in events
                        ]
                        if events
                        else [],
                        resource,
                    )
                )
    return out


def _pb_logs(body: bytes) -> list[LogRecord]:
    request = _parse(ExportLogsServiceRequest, body, "ExportLogsServiceRequest")
    out: list[LogRecord] = []
    for resource_logs in request.resource_logs:
        resource = _pb_attrs(resource_logs.resource.attributes)
        service = str(resource.get("service.name") or UNKNOWN_SERVICE)
        for scope_logs in resource_logs.scope_logs:
            for log in scope_logs.log_records:
                trace_id = log.trace_id
                span_id = log.span_id
                out.append(
                    LogRecord(
                        log.time_unix_nano or log.observed_time_unix_nano,
                        service,
                        _level(log.severity_number, log.severity_text),
                        _body(_pb_value(log.body)),
                        _id(trace_id, 16, "trace_id") if trace_id else None,
                        _id(span_id, 8, "span_id") if span_id else None,
                        _pb_attrs(log.attributes),
                        resource,
                    )
                )
    return out


def _body(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


# --- metrics (shared by both encodings, over a neutral view) ----------------------------------


class _Points:
    """Builds samples for one resource: its labels, and the delta check."""

    __slots__ = ("base", "out")

    def __init__(self, resource: Mapping[str, Any], out: list[Sample]) -> None:
        self.base: dict[str, str] = {
            "service": str(resource.get("service.name") or UNKNOWN_SERVICE)
        }
        if "service.instance.id" in resource:
            self.base["instance"] = str(resource["service.instance.id"])
        self.out = out

    def labels(self, attributes: Mapping[str, Any]) -> dict[str, str]:
        labels = {
            _metric_name(k): v if isinstance(v, str) else _label(v) for k, v in attributes.items()
        }
        labels.update(self.base)
        return labels

    def add(
        self,
        name: str,
        labels: dict[str, str],
        t: int,
        v: float,
        kind: str,
        family: str,
        exemplar: Exemplar | None = None,
    ) -> None:
        self.out.append(Sample(name, labels, t, v, kind, family, exemplar))


def _label(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return orjson.dumps(value).decode()


def _check_temporality(temporality: int, name: str) -> None:
    if temporality == _DELTA:
        raise OtlpDecodeError(
            f"metric {name!r} uses delta temporality, which the collector does not accept: "
            "configure the exporter for cumulative temporality "
            "(OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE=cumulative)"
        )


def _histogram(
    points: _Points,
    family: str,
    labels: dict[str, str],
    t: int,
    count: float,
    total: float,
    bounds: Iterable[float],
    counts: Iterable[float],
    exemplars: Sequence[Exemplar] = (),
) -> None:
    running = 0.0
    bounds = list(bounds)
    counts = list(counts)
    if counts and len(counts) != len(bounds) + 1:
        raise OtlpDecodeError(
            f"histogram {family!r}: {len(counts)} bucket counts for {len(bounds)} bounds "
            "(there must be one more count than bounds)"
        )
    # As in OpenMetrics: each exemplar goes on the bucket its value falls in (the
    # newest when several do).
    by_bucket: dict[int, Exemplar] = {}
    for ex in exemplars:
        at = next((i for i, b in enumerate(bounds) if ex.value <= b), len(bounds))
        if at not in by_bucket or by_bucket[at].time_ns < ex.time_ns:
            by_bucket[at] = ex
    for i, (bound, n) in enumerate(zip([*bounds, math.inf], counts, strict=False)):
        running += n
        points.add(
            family + "_bucket",
            {**labels, "le": _go_float(bound)},
            t,
            running,
            "histogram",
            family,
            by_bucket.get(i),
        )
    points.add(family + "_sum", labels, t, total, "histogram", family)
    points.add(family + "_count", labels, t, count, "histogram", family)


def _pb_exemplars(items: Iterable[Any]) -> list[Exemplar]:
    # An exemplar with no (or a malformed) trace id says nothing we keep: skipped.
    out = []
    for e in items:
        if len(e.trace_id) == 16 and any(e.trace_id):
            span = e.span_id.hex() if len(e.span_id) == 8 else None
            out.append(Exemplar(e.trace_id.hex(), _number(e), e.time_unix_nano, span))
    return out


def _pb_metrics(body: bytes) -> list[Sample]:
    request = _parse(ExportMetricsServiceRequest, body, "ExportMetricsServiceRequest")
    out: list[Sample] = []
    for resource_metrics in request.resource_metrics:
        points = _Points(_pb_attrs(resource_metrics.resource.attributes), out)
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                _pb_metric(points, metric)
    return out


def _number(point: Any) -> float:
    return float(point.as_int) if point.WhichOneof("value") == "as_int" else point.as_double


def _pb_metric(points: _Points, metric: Any) -> None:
    family = _metric_name(metric.name)
    data = metric.WhichOneof("data")
    if data == "sum" or data == "gauge":
        kind, name = "gauge", family
        if data == "sum":
            _check_temporality(metric.sum.aggregation_temporality, metric.name)
            if metric.sum.is_monotonic:
                kind = "counter"
                # a counter is known by its Prometheus name, ``<name>_total``
                name = family = family.removesuffix("_total") + "_total"
        for p in getattr(metric, data).data_points:
            points.add(
                name,
                points.labels(_pb_attrs(p.attributes)),
                p.time_unix_nano,
                _number(p),
                kind,
                family,
            )
    elif data == "histogram":
        _check_temporality(metric.histogram.aggregation_temporality, metric.name)
        for p in metric.histogram.data_points:
            labels = points.labels(_pb_attrs(p.attributes))
            _histogram(
                points,
                family,
                labels,
                p.time_unix_nano,
                p.count,
                p.sum,
                p.explicit_bounds,
                p.bucket_counts,
                _pb_exemplars(p.exemplars),
            )
    elif data == "exponential_histogram":
        _check_temporality(metric.exponential_histogram.aggregation_temporality, metric.name)
        for p in metric.exponential_histogram.data_points:
            labels = points.labels(_pb_attrs(p.attributes))
            points.add(family + "_sum", labels, p.time_unix_nano, p.sum, "histogram", family)
            points.add(family + "_count", labels, p.time_unix_nano, p.count, "histogram", family)
    elif data == "summary":
        for p in metric.summary.data_points:
            labels = points.labels(_pb_attrs(p.attributes))
            for q in p.quantile_values:
                points.add(
                    family,
                    {**labels, "quantile": _go_float(q.quantile)},
                    p.time_unix_nano,
                    q.value,
                    "summary",
                    family,
                )
            points.add(family + "_sum", labels, p.time_unix_nano, p.sum, "summary", family)
            points.add(family + "_count", labels, p.time_unix_nano, p.count, "summary", family)


# --- OTLP/JSON -------------------------------------------------------------------------------


def _j_int(value: Any) -> int:
    # int64 fields are strings in OTLP/JSON; numbers are accepted too.
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int | str | float):
        raise TypeError(f"expected an integer or a decimal string, not {value!r}")
    return int(value)


def _j_value(value: Mapping[str, Any] | None) -> Any:
    if not value:
        return None
    if "stringValue" in value:
        return str(value["stringValue"])
    if "intValue" in value:
        return _j_int(value["intValue"])
    if "doubleValue" in value:
        return float(value["doubleValue"])
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "arrayValue" in value:
        return [_j_value(v) for v in (value["arrayValue"] or {}).get("values") or ()]
    if "kvlistValue" in value:
        return _j_attrs((value["kvlistValue"] or {}).get("values"))
    if "bytesValue" in value:
        return str(value["bytesValue"])
    return None


def _j_attrs(attributes: Iterable[Mapping[str, Any]] | None) -> dict[str, Any]:
    return {str(kv["key"]): _j_value(kv.get("value")) for kv in attributes or ()}


def _j_id(value: Any, size: int, what: str, *, required: bool) -> str | None:
    if not value:
        if required:
            raise OtlpDecodeError(f"{what} is missing")
        return None
    text = str(value).lower()
    if len(text) != size * 2 or not all(c in "0123456789abcdef" for c in text):
        raise OtlpDecodeError(f"{what} must be {size * 2} hex digits in OTLP/JSON, got {value!r}")
    return text


def _j_enum(value: Any, names: Mapping[str, int]) -> int:
    if isinstance(value, str) and not value.isdigit():
        return names.get(value, 0)
    return _j_int(value)


def _j_resource(item: Mapping[str, Any]) -> dict[str, Any]:
    return _j_attrs((item.get("resource") or {}).get("attributes"))


def _j_spans(data: Mapping[str, Any]) -> list[SpanRecord]:
    out: list[SpanRecord] = []
    for resource_spans in data.get("resourceSpans") or ():
        resource = _j_resource(resource_spans)
        service = str(resource.get("service.name") or UNKNOWN_SERVICE)
        for scope_spans in resource_spans.get("scopeSpans") or ():
            for span in scope_spans.get("spans") or ():
                status = span.get("status") or {}
                kind = _j_enum(span.get("kind"), _KIND_NAMES)
                code = _j_enum(status.get("code"), _STATUS_NAMES)
                out.append(
                    SpanRecord(
                        _j_id(span.get("traceId"), 16, "traceId", required=True) or "",
                        _j_id(span.get("spanId"), 8, "spanId", required=True) or "",
                        _j_id(span.get("parentSpanId"), 8, "parentSpanId", required=False),
                        str(span.get("name", "")),
                        service,
                        _j_int(span.get("startTimeUnixNano")),
                        _j_int(span.get("endTimeUnixNano")),
                        _KINDS[kind] if 0 <= kind < 6 else "internal",
                        _STATUSES[code] if 0 <= code < 3 else "unset",
                        str(status.get("message") or ""),
                        _j_attrs(span.get("attributes")),
                        [
                            SpanEvent(
                                str(e.get("name", "")),
                                _j_int(e.get("timeUnixNano")),
                                _j_attrs(e.get("attributes")),
                            )
                            for e in span.get("events") or ()
                        ],
                        resource,
                    )
                )
    return out


def _j_logs(data: Mapping[str, Any]) -> list[LogRecord]:
    out: list[LogRecord] = []
    for resource_logs in data.get("resourceLogs") or ():
        resource = _j_resource(resource_logs)
        service = str(resource.get("service.name") or UNKNOWN_SERVICE)
        for scope_logs in resource_logs.get("scopeLogs") or ():
            out.extend(
                LogRecord(
                    _j_int(log.get("timeUnixNano")) or _j_int(log.get("observedTimeUnixNano")),
                    service,
                    _level(
                        _j_enum(log.get("severityNumber"), {}),
                        str(log.get("severityText") or ""),
                    ),
                    _body(_j_value(log.get("body"))),
                    _j_id(log.get("traceId"), 16, "traceId", required=False),
                    _j_id(log.get("spanId"), 8, "spanId", required=False),
                    _j_attrs(log.get("attributes")),
                    resource,
                )
                for log in scope_logs.get("logRecords") or ()
            )
    return out


def _j_number(point: Mapping[str, Any]) -> float:
    if "asInt" in point:
        return float(_j_int(point["asInt"]))
    return float(point.get("asDouble") or 0.0)


def _j_exemplars(items: Iterable[Mapping[str, Any]] | None) -> list[Exemplar]:
    out = []
    for e in items or ():
        trace = str(e.get("traceId") or "").lower()
        if not _HEX32.fullmatch(trace) or trace == "0" * 32:
            continue
        span = str(e.get("spanId") or "").lower()
        at = _j_int(e.get("timeUnixNano"))
        out.append(Exemplar(trace, _j_number(e), at, span if _HEX16.fullmatch(span) else None))
    return out


def _j_metrics(data: Mapping[str, Any]) -> list[Sample]:
    out: list[Sample] = []
    for resource_metrics in data.get("resourceMetrics") or ():
        points = _Points(_j_resource(resource_metrics), out)
        for scope_metrics in resource_metrics.get("scopeMetrics") or ():
            for metric in scope_metrics.get("metrics") or ():
                _j_metric(points, metric)
    return out


def _j_metric(points: _Points, metric: Mapping[str, Any]) -> None:
    raw_name = str(metric.get("name", ""))
    family = _metric_name(raw_name)
    temporality = {"AGGREGATION_TEMPORALITY_DELTA": 1, "AGGREGATION_TEMPORALITY_CUMULATIVE": 2}
    for data in ("sum", "gauge"):
        if data in metric:
            body = metric[data] or {}
            kind, name = "gauge", family
            if data == "sum":
                _check_temporality(
                    _j_enum(body.get("aggregationTemporality"), temporality), raw_name
                )
                if body.get("isMonotonic"):
                    kind = "counter"
                    name = family = family.removesuffix("_total") + "_total"
            for p in body.get("dataPoints") or ():
                labels = points.labels(_j_attrs(p.get("attributes")))
                points.add(name, labels, _j_int(p.get("timeUnixNano")), _j_number(p), kind, family)
            return
    if "histogram" in metric:
        body = metric["histogram"] or {}
        _check_temporality(_j_enum(body.get("aggregationTemporality"), temporality), raw_name)
        for p in body.get("dataPoints") or ():
            _histogram(
                points,
                family,
                points.labels(_j_attrs(p.get("attributes"))),
                _j_int(p.get("timeUnixNano")),
                _j_int(p.get("count")),
                float(p.get("sum") or 0.0),
                [float(b) for b in p.get("explicitBounds") or ()],
                [_j_int(c) for c in p.get("bucketCounts") or ()],
                _j_exemplars(p.get("exemplars")),
            )
    elif "exponentialHistogram" in metric:
        body = metric["exponentialHistogram"] or {}
        _check_temporality(_j_enum(body.get("aggregationTemporality"), temporality), raw_name)
        for p in body.get("dataPoints") or ():
            labels = points.labels(_j_attrs(p.get("attributes")))
            t = _j_int(p.get("timeUnixNano"))
            points.add(family + "_sum", labels, t, float(p.get("sum") or 0.0), "histogram", family)
            points.add(family + "_count", labels, t, _j_int(p.get("count")), "histogram", family)
    elif "summary" in metric:
        for p in (metric["summary"] or {}).get("dataPoints") or ():
            labels = points.labels(_j_attrs(p.get("attributes")))
            t = _j_int(p.get("timeUnixNano"))
            for q in p.get("quantileValues") or ():
                quantile = _go_float(float(q.get("quantile") or 0.0))
                points.add(
                    family,
                    {**labels, "quantile": quantile},
                    t,
                    float(q.get("value") or 0.0),
                    "summary",
                    family,
                )
            points.add(family + "_sum", labels, t, float(p.get("sum") or 0.0), "summary", family)
            points.add(family + "_count", labels, t, _j_int(p.get("count")), "summary", family)


def _from_json(body: bytes, walk: Callable[[Mapping[str, Any]], list[Any]], what: str) -> list[Any]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise OtlpDecodeError(f"malformed {what} (JSON): {exc}") from None
    if not isinstance(data, dict):
        raise OtlpDecodeError(f"malformed {what} (JSON): the body must be an object")
    try:
        return walk(data)
    except OtlpDecodeError:
        raise
    except (AttributeError, KeyError, TypeError, ValueError, OverflowError) as exc:
        raise OtlpDecodeError(
            f"malformed {what} (OTLP/JSON): {type(exc).__name__}: {exc}"
        ) from None


# --- the public door -------------------------------------------------------------------------


def decode_spans(body: bytes, *, json: bool = False) -> list[SpanRecord]:
    """The spans of an ``ExportTraceServiceRequest`` (protobuf, or OTLP/JSON with ``json``).

    Raises :class:`OtlpDecodeError` saying what was wrong.
    """
    if json:
        return _from_json(body, _j_spans, "ExportTraceServiceRequest")
    return _pb_spans(body)


def decode_logs(body: bytes, *, json: bool = False) -> list[LogRecord]:
    """The log records of an ``ExportLogsServiceRequest``; non-string bodies become JSON text."""
    if json:
        return _from_json(body, _j_logs, "ExportLogsServiceRequest")
    return _pb_logs(body)


def decode_metrics(body: bytes, *, json: bool = False) -> list[Sample]:
    """The samples of an ``ExportMetricsServiceRequest`` (see the module docstring for the mapping)."""
    if json:
        return _from_json(body, _j_metrics, "ExportMetricsServiceRequest")
    return _pb_metrics(body)
