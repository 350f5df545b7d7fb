"""Lean spans: W3C parsing, sampling, nesting with SDK spans, the helpers."""

from __future__ import annotations

import asyncio
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from obs_support import Setup
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.trace.status import Status

import cairn.observability as obs
from cairn.observability._span import LeanSpan, LeanTracer
from cairn.observability._testing import capture_spans

ids = st.integers(min_value=1, max_value=2**128 - 1)
span_ids = st.integers(min_value=1, max_value=2**64 - 1)


@given(ids, span_ids, st.booleans())
def test_traceparent_round_trips(trace_id: int, span_id: int, sampled: bool) -> None:
    header = f"00-{trace_id:032x}-{span_id:016x}-{int(sampled):02x}"
    context = obs.parse_traceparent(header)
    assert context is not None
    assert (context.trace_id, context.span_id, bool(context.trace_flags.sampled)) == (
        trace_id,
        span_id,
        sampled,
    )
    assert context.is_remote
    assert obs.format_traceparent(context) == header


@pytest.mark.parametrize(
    "header",
    [
        "00-0af7651916cd43dd8448eb211c80319C-b7ad6b7169203331-01",  # uppercase
        "00-+af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",  # int() accepts a sign
        "00-0af7651916cd43dd_448eb211c80319c-b7ad6b7169203331-01",  # ... and underscores
        "00- af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",  # ... and spaces
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",  # zero trace id
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",  # zero span id
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",  # forbidden version
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x",  # v00 has 4 fields
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
        "",
    ],
)
def test_traceparent_is_parsed_strictly(header: str) -> None:
    assert obs.parse_traceparent(header) is None


def test_future_versions_and_tracestate_are_accepted() -> None:
    context = obs.parse_traceparent(
        "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-03-future", "vendor=abc"
    )
    assert context is not None
    assert context.trace_flags == 1  # unknown flag bits are dropped
    assert context.trace_state.get("vendor") == "abc"


def test_sampling_follows_the_parent_and_the_ratio() -> None:
    ended: list[LeanSpan] = []
    never = LeanTracer(ratio=0.0, finish=ended.append)
    always = LeanTracer(ratio=1.0, finish=ended.append)
    root = never.start("root")
    assert not root.is_recording()
    assert root.get_span_context().is_valid  # ids still propagate
    sampled_parent = obs.parse_traceparent(f"00-{1:032x}-{2:016x}-01")
    unsampled_parent = obs.parse_traceparent(f"00-{1:032x}-{2:016x}-00")
    child = never.start("child", parent=sampled_parent)
    assert child.is_recording()
    assert child.get_span_context().trace_id == 1
    assert not always.start("child", parent=unsampled_parent).is_recording()
    child.end()
    child.end()  # once only
    assert ended == [child]
    with pytest.raises(ValueError, match="sample_ratio"):
        LeanTracer(ratio=2.0, finish=ended.append)


def test_ratio_keeps_about_that_share() -> None:
    tracer = LeanTracer(ratio=0.25, finish=lambda span: None)
    kept = sum(tracer.start("s").is_recording() for _ in range(4000))
    assert 800 < kept < 1200  # binomial(4000, .25): sd ~ 27


def test_sdk_spans_nest_under_lean_spans_and_back(observed: Setup) -> None:
    tracer = trace.get_tracer("user")
    with (
        capture_spans() as spans,
        obs.span("outer", step=1) as outer,
        tracer.start_as_current_span("db.query") as db,
        obs.span("inner"),
    ):
        assert not spans
    inner, db_span, outer_span = spans
    assert [s.name for s in spans] == ["inner", "db.query", "outer"]
    assert db_span.parent.span_id == outer.get_span_context().span_id
    assert inner.parent.span_id == db.get_span_context().span_id
    assert outer_span.parent is None
    assert {s.context.trace_id for s in spans} == {outer.get_span_context().trace_id}
    assert outer_span.attributes["step"] == 1
    assert outer_span.resource.attributes["service.name"] == "orders"
    assert outer_span.instrumentation_scope.name == "cairn.observability"


def test_span_records_errors_and_the_api_surface(observed: Setup) -> None:
    with capture_spans() as spans, pytest.raises(ZeroDivisionError), obs.span("failing") as span:  # noqa: PT012
        span.set_attributes({"a": 1, "b": "x"})
        span.add_link(trace.SpanContext(5, 6, False))
        span.add_link(trace.INVALID_SPAN_CONTEXT)
        span.update_name("renamed")
        span.set_status(StatusCode.UNSET)
        1 / 0  # noqa: B018
    (failed,) = spans
    assert failed.name == "renamed"
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.attributes["b"] == "x"
    assert [link.context.span_id for link in failed.links] == [6]
    (event,) = failed.events
    assert event.name == "exception"
    assert event.attributes["exception.type"] == "ZeroDivisionError"
    assert "1 / 0" in event.attributes["exception.stacktrace"]
    # Once ended, a span ignores changes.
    span.set_attribute("late", 1)
    span.add_event("late")
    span.add_link(trace.SpanContext(7, 8, False))
    span.update_name("late")
    span.set_status(Status(StatusCode.OK))
    assert not span.is_recording()
    assert failed.name == "renamed"
    assert "LeanSpan('renamed'" in repr(span)


def test_ok_status_is_final(observed: Setup) -> None:
    with capture_spans() as spans, obs.span("s") as span:
        span.set_status(StatusCode.OK)
        span.set_status(StatusCode.ERROR, "ignored")
    assert spans[0].status.status_code is StatusCode.OK
    assert isinstance(span, LeanSpan)
    assert span.name == "s"


async def test_traced_decorator_sync_and_async(observed: Setup) -> None:
    @obs.traced()
    def compute(x: int) -> int:
        return x * 2

    @obs.traced("fetch", kind="io")
    async def fetch(x: int) -> int:
        await asyncio.sleep(0)
        return x + 1

    with capture_spans() as spans:
        assert compute(2) == 4
        assert await fetch(2) == 3
    assert [s.name for s in spans] == [
        "test_traced_decorator_sync_and_async.<locals>.compute",
        "fetch",
    ]
    assert spans[1].attributes["kind"] == "io"
    assert spans[0].kind is SpanKind.INTERNAL


def test_helpers_are_no_ops_before_setup() -> None:
    with obs.span("nothing") as span:
        assert not span.is_recording()


def test_a_lean_span_builds_its_context_only_when_asked_and_exports_as_sdk_spans_do(
    observed: Setup,
) -> None:
    with capture_spans() as spans, obs.span("lonely") as span:
        assert isinstance(span, LeanSpan)
        assert span._context is None  # nobody needed it yet
    (ended,) = spans
    assert ended is span
    assert isinstance(ended, ReadableSpan)
    # Exporters read .context (or to_json's field): both build it, once.
    as_json = json.loads(ended.to_json())
    assert as_json["context"]["trace_id"] == f"0x{span.trace_id_hex}"
    assert as_json["context"]["span_id"] == f"0x{span.span_id_hex}"
    assert ended.context is span.get_span_context()
    request = encode_spans([ended])
    (encoded,) = request.resource_spans[0].scope_spans[0].spans
    assert encoded.trace_id.hex() == span.trace_id_hex
    assert encoded.span_id.hex() == span.span_id_hex
    assert encoded.name == "lonely"
    assert encoded.end_time_unix_nano >= encoded.start_time_unix_nano > 0
