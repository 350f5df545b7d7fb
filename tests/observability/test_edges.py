"""Edges: unsampled requests, odd methods, text streams, multiprocess scrapes."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import pytest
from obs_support import Setup
from opentelemetry import trace
from prometheus_client import CollectorRegistry
from starlette.responses import PlainTextResponse

import cairn.observability as obs
from cairn.observability import _runtime
from cairn.observability._testing import capture_logs, capture_metrics, capture_spans


async def _plain(scope: dict[str, object], receive: object, send: object) -> None:
    await PlainTextResponse("ok")(scope, receive, send)  # type: ignore[arg-type]


async def test_unsampled_requests_still_log_ids_but_export_nothing() -> None:
    stream = io.StringIO()  # a text stream works too
    obs.setup(
        service="s",
        sample_ratio=0.0,
        traces="none",
        registry=CollectorRegistry(),
        log_stream=stream,
    )
    try:
        app = obs.instrument(_plain)  # not Starlette: wrapped
        assert isinstance(app, obs.CairnMiddleware)
        transport = httpx.ASGITransport(app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            with capture_spans() as spans, capture_logs() as lines, capture_metrics() as metrics:
                await client.get(
                    "/anything",
                    headers={
                        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
                        "tracestate": "v=1",
                    },
                )
                await client.request("BREW", "/pot")
        assert spans == []
        assert lines[0]["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
        assert (
            metrics.delta(
                "http_requests_total", method="_OTHER", endpoint="unmatched", status="200"
            )
            == 1
        )
        assert (
            metrics.delta(
                "http_request_duration_seconds_count", method="_OTHER", endpoint="unmatched"
            )
            == 1
        )
        assert '"event":"request"' in stream.getvalue()
    finally:
        obs.shutdown()


async def test_duplicate_traceparent_starts_a_new_trace(observed: Setup) -> None:
    header = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    app = obs.CairnMiddleware(_plain)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c:
        with capture_spans() as spans:
            await c.get("/", headers=[("traceparent", header), ("traceparent", header)])
    assert spans[0].parent is None
    assert spans[0].context.trace_id != int(header[3:35], 16)


def test_handle_flushes_and_resource_has_environment() -> None:
    handle = obs.setup(
        service="s",
        environment="staging",
        traces="none",
        registry=CollectorRegistry(),
        log_stream=io.BytesIO(),
    )
    try:
        tracer = trace.get_tracer("t")
        span = tracer.start_span("manual")
        span.end()
        assert handle.force_flush(timeout=5)
        assert (
            handle.tracer_provider.resource.attributes["deployment.environment.name"] == "staging"
        )
    finally:
        obs.shutdown()


def test_capture_metrics_needs_setup() -> None:
    with pytest.raises(RuntimeError, match="setup"), capture_metrics():
        pass


def test_helpers_do_nothing_while_not_set_up(observed: Setup) -> None:
    from cairn.observability import _httpx

    runtime = _runtime.RUNTIME
    _runtime.install(None)
    try:
        assert _httpx._start(httpx.Request("GET", "http://127.0.0.1/")) is None
    finally:
        _runtime.install(runtime)


def test_exceptions_with_extra_attributes(observed: Setup) -> None:
    with capture_spans() as spans, obs.span("s") as span:
        span.record_exception(ValueError("x"), attributes={"retry": 2})
    assert spans[0].events[0].attributes["retry"] == 2


async def test_multiprocess_scrape_merges_the_directory(
    observed: Setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    app = obs.metrics_app(observed.registry)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c:
        body = (await c.get("/")).text
    # This process wrote no multiprocess files: the merged view is empty, and
    # in particular not this process's own registry.
    assert "active_connections" not in body
