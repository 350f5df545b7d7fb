"""The collector's fast path for OTLP/protobuf traces: checked at once, walked into store rows later.

:func:`parse_spans` runs in the HTTP handler: a full parse of the real
``ExportTraceServiceRequest`` (upb, C) and the span id checks, so a malformed body is
still a synchronous 400. The Python walk, which costs ten times the parse, runs in
the writer thread when the returned :class:`SpanRows` is first used.

The walk parses the body a second time, into **mirror messages**: copies of the OTLP
``ResourceSpans`` / ``Resource`` / ``ScopeSpans`` / ``Span`` / ``Event`` / ``Status``
descriptors (built from the real ones, so the wire format cannot drift) in which every
``KeyValue`` is plain ``bytes`` and every other sub-message not walked is ``bytes`` too.
Iterating raw attribute bytes makes no message wrapper per attribute, and the bytes of
one ``KeyValue`` are a key to its decoded ``(key, value)``: attributes repeat across
spans (routes, status codes, ``db.system``), so most are one dict lookup. The cache is
bounded (cleared when full) and holds only small ``KeyValue`` s. The rows are exactly
those of :func:`cairn.collector._store_rows.span_rows` over :func:`decode_spans`
(``tests/collector/test_ingest_speed.py`` checks it).
"""

from __future__ import annotations

from functools import partial
from operator import attrgetter
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory  # type: ignore[import-untyped]
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue

from cairn.collector._otlp import (
    _KINDS,
    _STATUSES,
    UNKNOWN_SERVICE,
    _id,
    _parse,
    _pb_value,
)
from cairn.collector._store_rows import SpanRow, SpanRows, resource_tail, span_blob

__all__ = ["parse_spans"]

_CACHE_ENTRIES = 1 << 16
_CACHE_KV_BYTES = 256  # bigger KeyValues (a SQL statement, a stack) are decoded every time
_PACKAGE = "cairn.collector.otlp_rows"
_MIRRORED = {
    "opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest": "Request",
    "opentelemetry.proto.trace.v1.ResourceSpans": "ResourceSpans",
    "opentelemetry.proto.resource.v1.Resource": "Resource",
    "opentelemetry.proto.trace.v1.ScopeSpans": "ScopeSpans",
    "opentelemetry.proto.trace.v1.Span": "Span",
    "opentelemetry.proto.trace.v1.Span.Event": "Event",
    "opentelemetry.proto.trace.v1.Status": "Status",
}
_F = descriptor_pb2.FieldDescriptorProto


def _mirror_request_class() -> Any:
    real = ExportTraceServiceRequest.DESCRIPTOR.file.pool
    file = descriptor_pb2.FileDescriptorProto(
        name="cairn/collector/otlp_rows.proto", package=_PACKAGE, syntax="proto3"
    )
    for full_name, name in _MIRRORED.items():
        source = descriptor_pb2.DescriptorProto()
        real.FindMessageTypeByName(full_name).CopyToProto(source)
        mirror = file.message_type.add(name=name)
        for original in source.field:
            field = mirror.field.add(
                name=original.name, number=original.number, label=original.label
            )
            target = original.type_name.lstrip(".")
            if original.type == _F.TYPE_MESSAGE and target in _MIRRORED:
                field.type = _F.TYPE_MESSAGE
                field.type_name = f".{_PACKAGE}.{_MIRRORED[target]}"
            elif original.type == _F.TYPE_MESSAGE:
                field.type = _F.TYPE_BYTES  # same wire type (length-delimited), no wrapper
            elif original.type == _F.TYPE_ENUM:
                field.type = _F.TYPE_INT32  # same wire type (varint); OTLP enums are open
            else:
                field.type = original.type
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.Request"))


_Request = _mirror_request_class()
_cache: dict[bytes, tuple[str, Any]] = {}
_cached = _cache.__getitem__


def _miss(raw: bytes) -> tuple[str, Any]:
    kv = KeyValue.FromString(raw)
    value = kv.value
    kind = value.WhichOneof("value")
    if kind == "string_value":
        pair: tuple[str, Any] = (kv.key, value.string_value)
    elif kind == "int_value":
        pair = (kv.key, value.int_value)
    else:
        pair = (kv.key, _pb_value(value))
    if len(raw) <= _CACHE_KV_BYTES:
        if len(_cache) >= _CACHE_ENTRIES:
            _cache.clear()
        _cache[raw] = pair
    return pair


def _attrs(raw: Any) -> dict[str, Any]:
    # Later duplicates of a key win, as in _otlp._pb_attrs.
    try:
        return dict(map(_cached, raw))
    except KeyError:
        return dict([_cache.get(kv) or _miss(kv) for kv in raw])


def _span_rows(body: bytes) -> list[SpanRow]:
    request = _Request.FromString(body)
    out: list[SpanRow] = []
    append = out.append
    attrs = _attrs
    for resource_spans in request.resource_spans:
        resource = attrs(resource_spans.resource.attributes)
        service = str(resource.get("service.name") or UNKNOWN_SERVICE)
        tail = resource_tail(resource)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                parent = span.parent_span_id
                status = span.status
                kind = span.kind
                code = status.code
                events = span.events
                head = (
                    _KINDS[kind] if 0 <= kind < 6 else "internal",
                    status.message,
                    attrs(span.attributes),
                    [(e.name, e.time_unix_nano, attrs(e.attributes)) for e in events]
                    if events
                    else [],
                )
                append(
                    (
                        span.trace_id.hex(),
                        span.span_id.hex(),
                        parent.hex() if parent else None,
                        service,
                        span.name,
                        span.start_time_unix_nano,
                        span.end_time_unix_nano,
                        _STATUSES[code] if 0 <= code < 3 else "unset",
                        span_blob(head, tail),
                    )
                )
    return out


_TRACE_ID = attrgetter("trace_id")
_SPAN_ID = attrgetter("span_id")


def _check_ids(spans: Any) -> None:
    # C-speed passes over the id lengths; the Python loop runs only to name the bad span.
    if {*map(len, map(_TRACE_ID, spans))} <= {16} and {*map(len, map(_SPAN_ID, spans))} <= {8}:
        return
    for span in spans:
        _id(span.trace_id, 16, "trace_id")
        _id(span.span_id, 8, "span_id")


def parse_spans(body: bytes) -> SpanRows:
    """A protobuf ``ExportTraceServiceRequest``, checked now and walked on first use.

    Raises :class:`~cairn.collector.OtlpDecodeError` (as :func:`decode_spans` would)
    for a body that does not parse or a span whose trace or span id has the wrong
    length. The returned :class:`SpanRows` knows its span count; its rows are made in
    whichever thread first reads them.
    """
    request = _parse(ExportTraceServiceRequest, body, "ExportTraceServiceRequest")
    count = 0
    for resource_spans in request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            spans = scope_spans.spans
            count += len(spans)
            _check_ids(spans)
    return SpanRows(count, partial(_span_rows, body))
