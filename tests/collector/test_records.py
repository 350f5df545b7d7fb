"""The collector's records: what queries see, and the HTTP API's JSON shape."""

from __future__ import annotations

from cairn.collector import parse_query
from cairn.collector._records import LogRecord, Sample, SpanEvent, SpanRecord, iso

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def _span() -> SpanRecord:
    return SpanRecord(
        trace_id=TRACE,
        span_id="00f067aa0ba902b7",
        parent_span_id=None,
        name="GET /orders/{order_id}",
        service="orders",
        start_ns=1_700_000_000_000_000_000,
        end_ns=1_700_000_000_152_000_000,
        kind="server",
        status="error",
        status_message="boom",
        attributes={"http.route": "/orders/{order_id}", "http.response.status_code": 500},
        events=[SpanEvent("retry", 1_700_000_000_010_000_000, {"attempt": 2})],
        resource={"service.name": "orders"},
    )


def test_iso_prints_utc_with_microseconds() -> None:
    assert iso(1_700_000_000_123_456_789) == "2023-11-14T22:13:20.123456Z"


def test_span_document_answers_queries_on_attributes_and_own_fields() -> None:
    doc = _span().document()
    assert doc["duration_ms"] == 152.0
    assert doc["events"] == ["retry"]
    for text, expected in [
        ("service:orders AND status:error", True),
        ("http.route:/orders/*", True),
        ("duration_ms:>100", True),
        ("duration_ms:>200", False),
        ("events:retry", True),
        ("operation:db.query", False),
    ]:
        assert parse_query(text).matches(doc) is expected, text


def test_log_document_has_the_body_as_event_and_attributes_at_the_top() -> None:
    record = LogRecord(
        time_ns=1_700_000_000_000_000_000,
        service="orders",
        level="info",
        body="purchase_completed",
        trace_id=TRACE,
        span_id="00f067aa0ba902b7",
        attributes={"user_id": 123, "price": 9.5, "currency": "BRL"},
    )
    query = parse_query("user_id:123 AND event:purchase_completed")
    assert query.matches(record.document())
    assert not query.matches(LogRecord(0, "orders", "info", "purchase_completed").document())


def test_json_round_trips() -> None:
    span = _span()
    assert SpanRecord.from_json(span.to_json()) == span
    assert span.to_json()["duration_ns"] == 152_000_000
    log = LogRecord(5, "users", "warning", "slow", None, None, {"ms": 3}, {"a": "b"})
    assert LogRecord.from_json(log.to_json()) == log
    assert Sample("up", {"instance": "a"}, 1, 1.0, "gauge").to_json()["family"] == "up"
