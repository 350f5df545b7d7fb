"""Fault injection through ``/_cairn/chaos``, on a real uvicorn server started by ``serve()``."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import cairn.observability as obs
import cairn.service._serve as serve_module
from cairn.service import Service, serve
from cairn.service._chaos import MAX_BODY, Chaos, Fault

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _fastapi() -> FastAPI:
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"item_id": item_id}

    return app


def _starlette() -> Starlette:
    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse("hello")

    return Starlette(routes=[Route("/items/{item_id}", hello)])


@dataclass
class Running:
    service: Service
    http: httpx.AsyncClient
    metrics: CollectorRegistry


async def _wait_for(predicate: Any, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def _running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, app: Any, **settings: Any
) -> AsyncIterator[Running]:
    servers: list[Any] = []
    original = serve_module._server_class

    def capturing() -> Any:
        cls = original()

        class Captured(cls):  # type: ignore[misc,valid-type]
            def __init__(self, config: Any) -> None:
                super().__init__(config)
                servers.append(self)

        return Captured

    monkeypatch.setattr(serve_module, "_server_class", capturing)
    metrics = CollectorRegistry()
    observability: Any = {
        "traces": "none",
        "logs_export": "none",
        "registry": metrics,
        "log_stream": io.StringIO(),
    }
    service = Service(
        app,
        name="inv",
        registry=f"sqlite:///{tmp_path / 'registry.db'}",
        handle_signals=False,
        observability=observability,
        drain_delay=0,
        **settings,
    )
    task = asyncio.create_task(serve(service, drain_timeout=2))
    try:
        await _wait_for(lambda: service.registered or task.done(), "the service to register")
        if task.done():
            task.result()
        url = f"http://127.0.0.1:{service.instance.port}"
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            yield Running(service, http, metrics)
    finally:
        for server in servers:
            server.should_exit = True
        await asyncio.wait_for(task, 15)
        obs.shutdown()


@pytest.fixture
async def fastapi_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Running]:
    monkeypatch.setenv("CAIRN_CHAOS_TOKEN", TOKEN)
    async for running in _running(tmp_path, monkeypatch, _fastapi()):
        yield running


async def test_no_token_no_chaos(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CAIRN_CHAOS_TOKEN", raising=False)
    async for running in _running(tmp_path, monkeypatch, _fastapi()):
        assert running.service.chaos is None
        response = await running.http.post("/_cairn/chaos", json={"error_rate": 1}, headers=AUTH)
        assert response.status_code == 404  # the app's own 404: nothing listens there
        assert (await running.http.get("/items/1")).status_code == 200


async def test_token_is_required(fastapi_service: Running) -> None:
    http = fastapi_service.http
    assert (await http.get("/_cairn/chaos")).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    response = await http.post("/_cairn/chaos", json={"error_rate": 1}, headers=wrong)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "Authorization: Bearer" in response.json()["error"]
    basic = {"Authorization": f"Basic {TOKEN}"}
    assert (await http.delete("/_cairn/chaos", headers=basic)).status_code == 401
    assert (await http.get("/items/3")).status_code == 200  # nothing was changed
    current = await http.get("/_cairn/chaos", headers=AUTH)
    assert current.json() == {"latency_ms": 0.0, "error_rate": 0.0, "status": 503, "seed": None}


async def test_errors_apply_to_routes_not_to_health_or_metrics(fastapi_service: Running) -> None:
    http = fastapi_service.http
    response = await http.post(
        "/_cairn/chaos", json={"error_rate": 1.0, "status": 502}, headers=AUTH
    )
    assert response.status_code == 200
    assert response.json()["error_rate"] == 1.0
    for item in range(5):
        failed = await http.get(f"/items/{item}")
        assert failed.status_code == 502
        assert failed.headers["x-cairn-chaos"] == "error"
    assert (await http.get("/health/live")).status_code == 200
    assert (await http.get("/health/ready")).status_code == 200
    metrics = await http.get("/metrics")
    assert metrics.status_code == 200
    # Injected errors are counted under the route's template, not "unmatched".
    count = fastapi_service.metrics.get_sample_value(
        "http_requests_total", {"method": "GET", "endpoint": "/items/{item_id}", "status": "502"}
    )
    assert count == 5
    assert (await http.get("/_cairn/chaos", headers=AUTH)).json()["status"] == 502

    restored = await http.delete("/_cairn/chaos", headers=AUTH)
    assert restored.json()["error_rate"] == 0.0
    ok = await http.get("/items/9")
    assert ok.status_code == 200
    assert ok.json() == {"item_id": 9}


async def test_error_rate_with_a_seed_is_partial_and_repeatable(fastapi_service: Running) -> None:
    http = fastapi_service.http

    async def statuses() -> list[int]:
        fault = {"error_rate": 0.5, "seed": 7}
        assert (await http.post("/_cairn/chaos", json=fault, headers=AUTH)).status_code == 200
        return [(await http.get("/items/1")).status_code for _ in range(40)]

    first = await statuses()
    assert set(first) == {200, 503}
    assert 5 <= first.count(503) <= 35
    assert await statuses() == first  # the same seed fails the same requests


async def test_latency_delays_routes_only(fastapi_service: Running) -> None:
    http = fastapi_service.http
    await http.post("/_cairn/chaos", json={"latency_ms": 300}, headers=AUTH)
    start = time.monotonic()
    response = await http.get("/items/2")
    assert response.status_code == 200
    assert time.monotonic() - start >= 0.3
    # A health probe is not delayed: it answers long before the 300 ms would pass,
    # even on a loaded machine (asserted as "less than the added latency" x 10 probes).
    start = time.monotonic()
    for _ in range(10):
        assert (await http.get("/health/ready")).status_code == 200
    assert time.monotonic() - start < 3.0
    await http.delete("/_cairn/chaos", headers=AUTH)
    assert (await http.get("/_cairn/chaos", headers=AUTH)).json()["latency_ms"] == 0


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b'{"error_rate": 2}', 400, "error_rate must be"),
        (b'{"latency_ms": -1}', 400, "latency_ms must be"),
        (b'{"status": 200}', 400, "status must be"),
        (b'{"latency": 5}', 400, "unknown field"),
        (b"[1]", 400, "JSON object"),
        (b"not json", 400, "bad fault"),
        (b'{"seed": "x"}', 400, "seed must be"),
        (b'{"latency_ms": 1, "pad": "' + b"x" * MAX_BODY + b'"}', 413, "larger than"),
    ],
)
async def test_bad_faults_are_refused(
    fastapi_service: Running, body: bytes, status: int, message: str
) -> None:
    response = await fastapi_service.http.post("/_cairn/chaos", content=body, headers=AUTH)
    assert response.status_code == status
    assert message in response.json()["error"]
    assert not fastapi_service.service.chaos or not fastapi_service.service.chaos.fault.active


async def test_other_methods_and_paths(fastapi_service: Running) -> None:
    http = fastapi_service.http
    assert (await http.put("/_cairn/chaos", headers=AUTH)).status_code == 405
    assert (await http.get("/_cairn/other", headers=AUTH)).status_code == 404


async def test_raw_starlette_app_with_token_argument(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CAIRN_CHAOS_TOKEN", raising=False)
    async for running in _running(tmp_path, monkeypatch, _starlette(), chaos_token="abc"):
        http = running.http
        headers = {"Authorization": "Bearer abc"}
        assert (await http.get("/items/1")).text == "hello"
        await http.post("/_cairn/chaos", json={"error_rate": 1, "status": 500}, headers=headers)
        assert (await http.get("/items/1")).status_code == 500
        assert (await http.get("/metrics")).status_code == 200
        await http.delete("/_cairn/chaos", headers=headers)
        assert (await http.get("/items/1")).status_code == 200


def test_fault_and_chaos_values(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not Fault().active
    assert Fault(latency_ms=1).active
    assert Fault.from_json({"error_rate": 0.25}).error_rate == 0.25
    with pytest.raises(ValueError, match="latency_ms"):
        Fault(latency_ms=float("nan"))
    with pytest.raises(ValueError, match="status"):
        Fault(status=True)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty"):
        Chaos("")
    monkeypatch.delenv("CAIRN_CHAOS_TOKEN", raising=False)
    assert Chaos.from_env(None) is None
    assert Chaos.from_env("t") is not None
    monkeypatch.setenv("CAIRN_CHAOS_TOKEN", "from-env")
    chaos = Chaos.from_env(None)
    assert chaos is not None
    assert chaos.authorized({"headers": [(b"authorization", b"Bearer from-env")]})


async def test_middleware_on_a_raw_asgi_app_with_a_fake_sleep() -> None:
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    chaos = Chaos("t", sleep=fake_sleep)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    wrapped = chaos.wrap(app)
    chaos.set(Fault(latency_ms=250))
    transport = httpx.ASGITransport(app=wrapped)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        assert (await http.get("/x")).status_code == 204
        assert (await http.get("/health/live")).status_code == 204
        assert (await http.get("/metrics")).status_code == 204
    assert slept == [0.25]  # only /x was delayed
