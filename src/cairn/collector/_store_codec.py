"""How records sit in the store's rows: JSON blobs for what has no column of its own."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import orjson

from cairn.collector._records import LogRecord, SpanEvent, SpanRecord
from cairn.collector._store_model import TraceSummary

__all__ = ["ascii_lower", "dumps", "loads", "log_from_row", "span_from_row", "summarise"]

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def ascii_lower(text: str) -> str:
    """``text`` as SQLite's ``lower()`` gives it (ASCII letters only)."""
    return text.translate(_ASCII_LOWER)


def dumps(value: Any) -> bytes:
    try:
        blob = orjson.dumps(value)
    except TypeError:  # bytes, huge ints, …: stored as their text, never lost
        return json.dumps(value, default=str).encode()
    # orjson writes nan and ±inf as null; the stdlib keeps them (as NaN, Infinity).
    return json.dumps(value, default=str).encode() if b"null" in blob else blob


def loads(blob: bytes) -> Any:
    try:
        return orjson.loads(blob)
    except orjson.JSONDecodeError:
        return json.loads(blob)


def log_from_row(row: Sequence[Any]) -> LogRecord:
    _, time_ns, service, level, body, trace_id, blob = row
    span_id, attributes, resource = loads(blob)
    return LogRecord(time_ns, service, level, body, trace_id, span_id, attributes, resource)


def span_from_row(row: Sequence[Any]) -> SpanRecord:
    _, trace_id, span_id, parent, service, name, start_ns, end_ns, status, blob = row
    kind, message, attributes, events, resource = loads(blob)
    return SpanRecord(
        trace_id,
        span_id,
        parent,
        name,
        service,
        start_ns,
        end_ns,
        kind,
        status,
        message,
        attributes,
        [SpanEvent(n, t, a) for n, t, a in events],
        resource,
    )


def summarise(trace_id: str, spans: list[SpanRecord]) -> TraceSummary:
    ids = {span.span_id for span in spans}
    roots = [s for s in spans if not s.parent_span_id or s.parent_span_id not in ids]
    root = min(roots or spans, key=lambda s: (s.start_ns, s.span_id))
    start = min(s.start_ns for s in spans)
    return TraceSummary(
        trace_id=trace_id,
        root_service=root.service,
        root_name=root.name,
        start_ns=start,
        duration_ns=max(s.end_ns for s in spans) - start,
        span_count=len(spans),
        error_count=sum(1 for s in spans if s.status == "error"),
        services=sorted({s.service for s in spans}),
    )
