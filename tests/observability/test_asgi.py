"""The middleware on a real FastAPI app (in process), and the /metrics endpoint."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI, HTTPException, Response
from obs_support import Setup
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

import cairn.observability as obs
from cairn.observability._testing import capture_logs, capture_metrics, capture_spans

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def make_app() -> FastAPI:
    app = FastAPI()
    tracer = trace.get_tracer("orders")

    @app.get("/orders/{order_id}")
    async def get_order(order_id: int) -> dict[str, int]:
        with tracer.start_as_current_span("db.query"):
            pass
        return {"order_id": order_id}

    @app.get("/fail")
    async def fail() -> None:
        raise RuntimeError("database on fire")

    @app.get("/teapot")
    async def teapot() -> None:
        raise HTTPException(status_code=503, detail="busy")

    @app.get("/healthz")
    async def healthz() -> Response:
        return Response("ok")

    return obs.instrument(app)


@pytest.fixture
async def client(observed: Setup) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(make_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


async def test_server_span_named_by_route_template(client: httpx.AsyncClient) -> None:
    with capture_spans() as spans, capture_logs() as lines:
        response = await client.get("/orders/7", headers={"traceparent": TRACEPARENT})
    assert response.json() == {"order_id": 7}
    db, server = spans  # FastAPI's own request span is off: exactly two spans
    assert server.name == "GET /orders/{order_id}"
    assert server.kind is SpanKind.SERVER
    assert server.context.trace_id == int(TRACEPARENT[3:35], 16)
    assert server.parent.span_id == int(TRACEPARENT[36:52], 16)
    assert server.parent.is_remote
    assert db.parent.span_id == server.context.span_id
    assert server.attributes["http.route"] == "/orders/{order_id}"
    assert server.attributes["http.response.status_code"] == 200
    assert server.attributes["url.path"] == "/orders/7"
    request_lines = [line for line in lines if line["event"] == "request"]
    assert len(request_lines) == 1
    line = request_lines[0]
    assert (line["route"], line["path"], line["status"], line["method"]) == (
        "/orders/{order_id}",
        "/orders/7",
        200,
        "GET",
    )
    assert line["trace_id"] == TRACEPARENT[3:35]
    assert line["span_id"] == f"{server.context.span_id:016x}"


async def test_red_metrics_with_bounded_labels(client: httpx.AsyncClient) -> None:
    with capture_metrics() as metrics:
        for order in (1, 2, 3):
            await client.get(f"/orders/{order}")
        await client.get("/no/such/path/1")
        await client.get("/no/such/path/2")
        await client.get("/healthz")
    labels = {"method": "GET", "endpoint": "/orders/{order_id}", "status": "200"}
    assert metrics.delta("http_requests_total", **labels) == 3
    assert (
        metrics.delta("http_requests_total", method="GET", endpoint="unmatched", status="404") == 2
    )
    assert (
        metrics.delta(
            "http_request_duration_seconds_count", method="GET", endpoint="/orders/{order_id}"
        )
        == 3
    )
    assert metrics.value("active_connections") == 0
    endpoints = {
        sample.labels.get("endpoint")
        for metric in metrics.registry.collect()
        for sample in metric.samples
        if sample.name == "http_requests_total"
    }
    assert endpoints == {"/orders/{order_id}", "unmatched"}  # no raw paths, no /healthz


async def test_errors_are_recorded(client: httpx.AsyncClient) -> None:
    with capture_spans() as spans, capture_logs() as lines, capture_metrics() as metrics:
        assert (await client.get("/fail")).status_code == 500
        assert (await client.get("/teapot")).status_code == 503
    failed, unavailable = (s for s in spans if s.kind is SpanKind.SERVER)
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.attributes["error.type"] == "RuntimeError"
    assert failed.events[0].attributes["exception.message"] == "database on fire"
    assert unavailable.status.status_code is StatusCode.ERROR
    assert unavailable.attributes["http.response.status_code"] == 503
    fail_line, teapot_line = (line for line in lines if line["event"] == "request")
    assert fail_line["level"] == "error"
    assert fail_line["exception"][0]["exc_type"] == "RuntimeError"
    assert teapot_line["level"] == "error"
    assert metrics.delta("http_requests_total", method="GET", endpoint="/fail", status="500") == 1


async def test_in_flight_gauge_counts_running_requests(observed: Setup) -> None:
    seen: list[float | None] = []

    async def endpoint(request: object) -> PlainTextResponse:
        seen.append(observed.sample("active_connections"))
        return PlainTextResponse("ok")

    app = obs.instrument(Starlette(routes=[Route("/x", endpoint)]))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c:
        await c.get("/x")
    assert seen == [1.0]
    assert observed.sample("active_connections") == 0.0


async def test_mounted_routes_get_their_full_template(observed: Setup) -> None:
    async def item(request: object) -> PlainTextResponse:
        return PlainTextResponse("ok")

    inner = Starlette(routes=[Route("/items/{item_id:int}", item)])
    app = obs.CairnMiddleware(Starlette(routes=[Mount("/inventory", app=inner)]))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c:
        with capture_spans() as spans:
            assert (await c.get("/inventory/items/3")).status_code == 200
    assert spans[0].name == "GET /inventory/items/{item_id}"


async def test_before_setup_and_other_scopes_pass_through() -> None:
    calls: list[str] = []

    async def app(scope: dict[str, object], receive: object, send: object) -> None:
        calls.append(str(scope["type"]))

    middleware = obs.CairnMiddleware(app)
    await middleware({"type": "http", "path": "/"}, None, None)  # type: ignore[arg-type]
    await middleware({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
    assert calls == ["http", "lifespan"]
    with pytest.raises(ValueError, match="metrics_path"):
        obs.CairnMiddleware(app, metrics_path="metrics")


async def test_baggage_is_extracted(observed: Setup) -> None:
    from opentelemetry import baggage

    got: list[object] = []

    async def endpoint(request: object) -> PlainTextResponse:
        got.append(baggage.get_baggage("tenant"))
        return PlainTextResponse("ok")

    app = obs.instrument(Starlette(routes=[Route("/b", endpoint)]))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c:
        await c.get("/b", headers={"baggage": "tenant=acme"})
    assert got == ["acme"]


@pytest.mark.parametrize(
    ("accept", "content_type"),
    [
        ("", "text/plain; version=0.0.4; charset=utf-8"),
        ("application/openmetrics-text; version=1.0.0", "application/openmetrics-text"),
    ],
)
async def test_metrics_endpoint_negotiates_and_passes_promtool(
    client: httpx.AsyncClient, accept: str, content_type: str
) -> None:
    await client.get("/orders/1", headers={"traceparent": TRACEPARENT})
    response = await client.get("/metrics", headers={"accept": accept} if accept else {})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(content_type)
    body = response.text
    assert (
        'http_requests_total{endpoint="/orders/{order_id}",method="GET",status="200"} 1.0' in body
    )
    if "openmetrics" in content_type:
        assert f'# {{trace_id="{TRACEPARENT[3:35]}"}}' in body  # the exemplar
        assert body.endswith("# EOF\n")
    else:
        assert "trace_id" not in body
    if "openmetrics" in content_type:
        # promtool 2.42's `check metrics` reads only the Prometheus text
        # format (it fails on the first exemplar); OpenMetrics is checked with
        # prometheus_client's strict OpenMetrics parser instead.
        families = {f.name: f for f in text_string_to_metric_families(body)}
        (exemplar,) = [
            s.exemplar for s in families["http_request_duration_seconds"].samples if s.exemplar
        ]
        assert exemplar.labels == {"trace_id": TRACEPARENT[3:35]}
        return
    await asyncio.to_thread(_promtool_check, body)


def _promtool_check(body: str) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package 'prometheus')")
    check = subprocess.run(
        [promtool, "check", "metrics"], input=body, capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stdout + check.stderr


async def test_standalone_metrics_app(observed: Setup) -> None:
    app = obs.metrics_app(observed.registry)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c:
        body = (await c.get("/")).text
    assert "# TYPE active_connections gauge" in body
    await app({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
