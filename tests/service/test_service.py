"""The service lifecycle in process: lifespan, health endpoints, heartbeats, the SIGTERM drain."""

from __future__ import annotations

import asyncio
import io
import signal
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import cairn.observability as obs
from cairn.discovery import Instance, SQLiteRegistry
from cairn.service import Service, serve
from cairn.testing import VirtualClock


def _app() -> Starlette:
    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse("hello")

    return Starlette(routes=[Route("/hello", hello)])


class Lifespan:
    """Drives an ASGI app's lifespan the way a server does."""

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    async def startup(self) -> dict[str, Any]:
        self.task = asyncio.create_task(
            self.app(
                {"type": "lifespan", "asgi": {"version": "3.0"}}, self.inbox.get, self.outbox.put
            )
        )
        await self.inbox.put({"type": "lifespan.startup"})
        return await asyncio.wait_for(self.outbox.get(), 10)

    async def shutdown(self) -> dict[str, Any]:
        await self.inbox.put({"type": "lifespan.shutdown"})
        message = await asyncio.wait_for(self.outbox.get(), 10)
        assert self.task is not None
        await asyncio.wait_for(self.task, 10)
        return message


def _http(service: Service) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=service), base_url="http://test")


async def test_lifespan_registers_serves_health_and_deregisters() -> None:
    registry = SQLiteRegistry(":memory:")
    service = Service(
        _app(),
        name="inventory",
        registry=registry,
        port=8123,
        observability=False,
        handle_signals=False,
        tags=("v2",),
        meta={"zone": "a"},
    )
    lifespan = Lifespan(service)
    async with _http(service) as http:
        assert (await http.get("/health/ready")).json() == {"status": "starting"}
        assert await lifespan.startup() == {"type": "lifespan.startup.complete"}
        view = await registry.instances("inventory")
        assert view.ids == (service.id,)
        assert view[0].port == 8123
        assert view[0].tags == ("v2",)
        assert service.id.startswith("inventory-")
        ready = await http.get("/health/ready")
        assert ready.status_code == 200
        assert ready.json() == {"status": "ready"}
        assert (await http.get("/health/live")).json() == {"status": "live"}
        assert (await http.get("/hello")).text == "hello"
        assert service.in_flight == 0
        assert await lifespan.shutdown() == {"type": "lifespan.shutdown.complete"}
        assert (await registry.fetch("inventory", passing=False)).ids == ()
        assert (await http.get("/health/ready")).status_code == 503
    await registry.aclose()


async def test_heartbeats_keep_it_passing_and_bring_it_back_after_a_reap() -> None:
    clock = VirtualClock()
    registry = SQLiteRegistry(":memory:", clock=clock)
    service = Service(
        _app(),
        name="inv",
        registry=registry,
        port=8000,
        ttl=3.0,
        observability=False,
        handle_signals=False,
        clock=clock,
        instance_id="inv-1",
    )
    await service.start()
    for _ in range(5):
        await clock.asleep(2.0)  # heartbeats every second run meanwhile
        assert (await registry.fetch("inv")).ids == ("inv-1",)
    await registry.deregister("inv-1")  # reaped behind its back
    await clock.asleep(1.5)
    assert (await registry.fetch("inv")).ids == ("inv-1",)  # re-registered by the heartbeat
    await service.stop()
    await service.stop()  # idempotent
    assert (await registry.fetch("inv", passing=False)).ids == ()
    await registry.aclose()


async def test_sigterm_deregisters_drains_then_passes_the_signal_on() -> None:
    clock = VirtualClock()
    registry = SQLiteRegistry(":memory:", clock=clock)
    service = Service(
        _app(),
        name="inv",
        registry=registry,
        port=8000,
        drain_delay=2.0,
        observability=False,
        handle_signals=False,
        clock=clock,
    )
    await service.start()
    passed_on = asyncio.Event()
    received: list[int] = []

    def previous(signum: int, frame: object) -> None:
        received.append(signum)
        passed_on.set()

    loop = asyncio.get_running_loop()
    start = clock.monotonic()
    async with _http(service) as http:
        service._on_signal(loop, signal.SIGTERM, None, previous)
        await asyncio.sleep(0)  # let the scheduled drain begin
        await asyncio.wait_for(_until(lambda: service.draining), 5)
        assert (await http.get("/health/ready")).json() == {"status": "draining"}
        assert (await http.get("/hello")).text == "hello"  # still serving while it drains
        await asyncio.wait_for(passed_on.wait(), 5)
    assert received == [signal.SIGTERM]
    assert clock.monotonic() - start >= 2.0  # drain_delay, in virtual time
    assert (await registry.fetch("inv", passing=False)).ids == ()
    service._on_signal(loop, signal.SIGINT, None, previous)  # a second signal: passed on at once
    assert received == [signal.SIGTERM, signal.SIGINT]
    await service.stop()
    await registry.aclose()


async def _until(condition: Callable[[], bool]) -> None:
    while not condition():  # noqa: ASYNC110 - a condition polled under the caller's deadline
        await asyncio.sleep(0.001)


async def test_signal_handlers_are_installed_and_restored() -> None:
    registry = SQLiteRegistry(":memory:")
    before = signal.getsignal(signal.SIGTERM)
    service = Service(_app(), name="inv", registry=registry, port=8000, observability=False)
    await service.start()
    assert signal.getsignal(signal.SIGTERM) is not before
    await service.stop()
    assert signal.getsignal(signal.SIGTERM) == before
    await registry.aclose()


async def test_an_app_without_lifespan_still_gets_the_service_lifespan() -> None:
    async def bare(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise RuntimeError("lifespan not supported")
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    registry = SQLiteRegistry(":memory:")
    service = Service(
        bare, name="bare", registry=registry, port=8000, observability=False, handle_signals=False
    )
    lifespan = Lifespan(service)
    assert await lifespan.startup() == {"type": "lifespan.startup.complete"}
    assert len(await registry.instances("bare")) == 1
    async with _http(service) as http:
        assert (await http.get("/x")).status_code == 204
    assert await lifespan.shutdown() == {"type": "lifespan.shutdown.complete"}
    await registry.aclose()


async def test_a_failed_registration_fails_the_startup() -> None:
    registry = SQLiteRegistry(":memory:")
    await registry.aclose()  # closed: registering works, watching does not; use a broken one

    class Broken(SQLiteRegistry):
        async def register(self, instance: Instance) -> None:
            raise ConnectionError("registry down")

    broken = Broken(":memory:")
    service = Service(
        _app(), name="inv", registry=broken, port=8000, observability=False, handle_signals=False
    )
    lifespan = Lifespan(service)
    message = await lifespan.startup()
    assert message["type"] == "lifespan.startup.failed"
    assert "registry down" in message["message"]
    await lifespan.inbox.put({"type": "lifespan.shutdown"})
    await asyncio.wait_for(lifespan.outbox.get(), 10)
    await broken.aclose()


async def test_the_port_must_be_known_to_register() -> None:
    service = Service(
        _app(), name="inv", registry="sqlite://", observability=False, handle_signals=False
    )
    await service.start()
    with pytest.raises(ValueError, match="port"):
        await service.register()
    await service.register(8124)  # what serve() does once uvicorn bound
    assert service.instance.port == 8124
    assert service.ready
    assert service.registry is not None
    assert (await service.registry.instances("inv")).ids == (service.id,)
    await service.stop()
    assert service.registry is None  # it made the registry, so it closed it


async def test_observability_is_set_up_and_metrics_served() -> None:
    obs.shutdown()
    metrics = CollectorRegistry()
    registry = SQLiteRegistry(":memory:")
    service = Service(
        _app(),
        name="inv",
        registry=registry,
        port=8000,
        handle_signals=False,
        observability={
            "traces": "none",
            "registry": metrics,
            "log_stream": io.StringIO(),
            "logs_export": "none",
        },
    )
    try:
        await service.start()
        handle = obs.current()
        assert handle is not None
        assert handle.service == "inv"
        assert handle.instance_id == service.id
        async with _http(service) as http:
            await http.get("/hello")
            await http.get("/health/ready")
            body = (await http.get("/metrics")).text
        assert 'http_requests_total{endpoint="/hello",method="GET",status="200"} 1.0' in body
        assert "/health" not in body  # health probes are not counted as traffic
        instrumented = obs.instrument(_app())
        again = Service(instrumented, name="inv2", port=8001, registry=registry)
        assert again.app is instrumented  # one middleware, not two: no request traced twice
        assert len(instrumented.user_middleware) == 1
        await service.stop()
    finally:
        obs.shutdown()
        await registry.aclose()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"ttl": 0}, "ttl"),
        ({"drain_delay": -1}, "drain_delay"),
        ({"drain_delay": "1"}, "drain_delay"),
        ({"registry": 3}, "registry"),
        ({"name": "a b"}, "service"),
        ({"port": 70000}, "port"),
    ],
)
def test_bad_settings_are_refused(settings: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {"name": "inv", "observability": False, **settings}
    with pytest.raises(ValueError, match=message):
        Service(_app(), **arguments)


@pytest.mark.parametrize(
    ("app", "options", "message"),
    [
        (_app(), {}, "name="),
        (_app(), {"name": "inv", "host": "0.0.0.0"}, "address="),
        (_app(), {"name": "inv", "port": -1}, "port"),
        (_app(), {"name": "inv", "drain_timeout": 0}, "drain_timeout"),
        (Service(_app(), name="inv", observability=False), {"ttl": 3}, "Service()"),
    ],
)
async def test_serve_refuses_bad_arguments(app: Any, options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        await serve(app, **options)
