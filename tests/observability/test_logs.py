"""Logs: one JSON object a line, correlated with the current span."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import re

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st
from obs_support import Setup
from opentelemetry import trace
from prometheus_client import CollectorRegistry

import cairn.observability as obs
from cairn.observability import _logs
from cairn.observability._logs import emit
from cairn.observability._span import LeanSpan
from cairn.observability._testing import capture_logs


def test_purchase_completed_is_one_queryable_json_object(observed: Setup) -> None:
    log = obs.get_logger()
    log.info("purchase_completed", user_id=42, item_id="sku-1", price=19.99, currency="USD")
    (line,) = observed.lines()
    assert line["event"] == "purchase_completed"
    assert (line["user_id"], line["item_id"], line["price"], line["currency"]) == (
        42,
        "sku-1",
        19.99,
        "USD",
    )
    assert line["level"] == "info"
    assert line["service"] == "orders"
    assert "trace_id" not in line  # no span, no ids
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", line["timestamp"])
    stamp = dt.datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00"))
    assert abs((dt.datetime.now(dt.UTC) - stamp).total_seconds()) < 60


def test_lines_inside_spans_carry_otel_formatted_ids(observed: Setup) -> None:
    tracer = trace.get_tracer("test")
    log = obs.get_logger("db")
    with obs.span("lean") as lean:
        log.info("in_lean")
        with tracer.start_as_current_span("sdk") as sdk:
            log.warning("in_sdk")
    lean_ctx, sdk_ctx = lean.get_span_context(), sdk.get_span_context()
    first, second = observed.lines()
    assert first["trace_id"] == trace.format_trace_id(lean_ctx.trace_id)
    assert first["span_id"] == trace.format_span_id(lean_ctx.span_id)
    assert second["trace_id"] == first["trace_id"]
    assert second["span_id"] == trace.format_span_id(sdk_ctx.span_id)
    assert second["level"] == "warning"
    for line in (first, second):
        assert re.fullmatch(r"[0-9a-f]{32}", line["trace_id"])
        assert re.fullmatch(r"[0-9a-f]{16}", line["span_id"])


def test_exceptions_are_structured(observed: Setup) -> None:
    log = obs.get_logger()
    try:
        {}["missing"]
    except KeyError:
        log.exception("lookup_failed", key="missing")
    (line,) = observed.lines()
    assert line["level"] == "error"
    (exc,) = line["exception"]
    assert exc["exc_type"] == "KeyError"
    assert exc["exc_value"] == "'missing'"
    assert exc["frames"][-1]["name"] == "test_exceptions_are_structured"


def test_stdlib_logging_goes_through_the_same_pipeline(observed: Setup) -> None:
    with obs.span("work"):
        logging.getLogger("uvicorn.error").info("Started server process [%d]", 7)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("app").exception("failed")
    first, second = observed.lines()
    assert first["event"] == "Started server process [7]"
    assert first["logger"] == "uvicorn.error"
    assert first["service"] == "orders"
    assert len(first["trace_id"]) == 32
    assert second["level"] == "error"
    assert second["exception"][0]["exc_type"] == "RuntimeError"


def test_contextvars_are_merged(observed: Setup) -> None:
    structlog.contextvars.bind_contextvars(request_id="r-1")
    try:
        obs.get_logger().info("hello")
        logging.getLogger("x").warning("hi")
    finally:
        structlog.contextvars.clear_contextvars()
    assert [line["request_id"] for line in observed.lines()] == ["r-1", "r-1"]


def test_level_filter_and_fast_path(observed: Setup) -> None:
    emit("debug", {"event": "kept"})
    with capture_logs() as captured:
        emit("info", {"event": "seen", "value": object()})
    assert [line["event"] for line in observed.lines()] == ["kept", "seen"]
    assert captured[0]["event"] == "seen"
    assert observed.lines()[1]["value"].startswith("<object")


def test_nothing_is_written_before_setup() -> None:
    emit("error", {"event": "dropped"})  # must not raise


@settings(max_examples=50, deadline=None)
@given(st.dictionaries(st.from_regex(r"[a-z]{1,8}", fullmatch=True), st.integers() | st.text()))
def test_any_fields_round_trip(fields: dict[str, object]) -> None:
    # Hypothesis found that orjson refuses integers beyond 64 bits.
    stream = io.BytesIO()
    obs.setup(service="s", log_stream=stream, traces="none", registry=CollectorRegistry())
    try:
        fields = {
            k: v for k, v in fields.items() if k not in {"event", "timestamp", "level", "service"}
        }
        obs.get_logger().info("e", **fields)
    finally:
        obs.shutdown()
    # Read back with the stdlib: orjson itself parses integers beyond 64 bits
    # as floats, which would blame the writer for the reader's rounding.
    (line,) = [json.loads(x) for x in stream.getvalue().splitlines()]
    for key, value in fields.items():
        assert line[key] == value


def test_httpx_request_lines_are_left_to_client_spans() -> None:
    stream = io.BytesIO()
    chatty = logging.getLogger("httpx")
    before = chatty.level
    obs.setup(
        service="orders",
        log_stream=stream,
        traces="none",
        registry=CollectorRegistry(),
        log_level="info",
    )
    try:
        chatty.info('HTTP Request: GET http://127.0.0.1:1/x "HTTP/1.1 200 OK"')
        chatty.warning("connection pool full")
        logging.getLogger("app").info("kept too")
    finally:
        obs.shutdown()
    events = [json.loads(line)["event"] for line in stream.getvalue().splitlines()]
    assert events == ["connection pool full", "kept too"]
    assert chatty.level == before


@pytest.mark.parametrize("bound", [False, True])
def test_request_line_is_the_same_with_or_without_bound_context(
    observed: Setup, monkeypatch: pytest.MonkeyPatch, bound: bool
) -> None:
    # With nothing ever bound the line is built in one step; once structlog
    # has context variables, through the general path that merges them.
    monkeypatch.setattr(_logs, "_BOUND_VARS", {"structlog_x": object()} if bound else {})
    with obs.span("GET") as span:
        assert isinstance(span, LeanSpan)
        _logs.request_line("info", span, "GET", "/a/{id}", "/a/1", 200, 1.5)
        _logs.request_line("error", span, "GET", "/a/{id}", "/a/2", 503, 2.0, 1_800_000_000.25)
    (ok, failed) = observed.lines()
    assert ok.pop("timestamp").endswith("Z")
    assert failed.pop("timestamp") == "2027-01-15T08:00:00.250000Z"  # the time given
    assert ok == {
        "event": "request",
        "method": "GET",
        "route": "/a/{id}",
        "path": "/a/1",
        "status": 200,
        "duration_ms": 1.5,
        "level": "info",
        "service": "orders",
        "trace_id": span.trace_id_hex,
        "span_id": span.span_id_hex,
    }
    assert (failed["level"], failed["status"]) == ("error", 503)
