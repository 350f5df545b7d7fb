"""The sync client: same pipeline, blocking I/O, the registry's watch on a thread of its own."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from client_support import Scripted, drop, instance, refuse, status

from cairn.client import NoHealthyInstance, RoundRobin, SyncServiceClient
from cairn.discovery import SQLiteRegistry
from cairn.resilience import TimeoutExceeded
from cairn.testing import VirtualClock


def _registry(tmp_path: object, *n: int) -> str:
    url = f"sqlite:///{tmp_path}/registry.db?poll=0.02"

    async def fill() -> None:
        registry = SQLiteRegistry(f"{tmp_path}/registry.db")
        for i in n:
            await registry.register(instance(i))
        await registry.aclose()

    asyncio.run(fill())
    return url


def test_sync_client_retries_on_another_instance(tmp_path: object) -> None:
    url = _registry(tmp_path, 1, 2)
    script = Scripted({9001: refuse})
    clock = VirtualClock()
    with SyncServiceClient(
        url, http=script.sync_http(), clock=clock, balancer=RoundRobin()
    ) as client:
        for _ in range(4):
            assert client.get("svc", "/").text == "9002"
        assert 9001 in script.ports()
        script.behaviour = {9001: drop, 9002: drop}
        script.calls.clear()
        with pytest.raises(httpx.ReadError):
            client.post("svc", "/")
        assert len(script.calls) == 1  # may have been handled: not repeated
        script.behaviour = {9001: status(503), 9002: status(503)}
        script.calls.clear()
        assert client.put("svc", "/", attempts=2).status_code == 503
        assert len(script.calls) == 2
        for verb in ("head", "options", "patch", "delete"):
            getattr(client, verb)("svc", "/", attempts=1)
        with pytest.raises(NoHealthyInstance, match="0 of 0"):
            client.get("nothing", "/")
        with pytest.raises(TypeError, match="total_timeout"):
            client.get("svc", "/", timeout=1)
    with pytest.raises(RuntimeError, match="closed"):
        client.get("other", "/")
    client.close()  # twice is fine


def test_sync_client_sees_registry_changes(tmp_path: object) -> None:
    url = _registry(tmp_path, 1)
    script = Scripted()
    with SyncServiceClient(url, http=script.sync_http()) as client:
        assert client.get("svc", "/").text == "9001"

        async def add() -> None:
            registry = SQLiteRegistry(f"{tmp_path}/registry.db")
            await registry.register(instance(2))
            await registry.deregister("svc-1")
            await registry.aclose()

        asyncio.run(add())
        deadline = 200
        while client.get("svc", "/").text != "9002" and deadline:
            deadline -= 1
            client._loop.run(asyncio.sleep(0.01), 1.0)  # poll the condition, bounded
        assert deadline, "the client never saw the new instance"


def test_sync_total_timeout(tmp_path: object) -> None:
    url = _registry(tmp_path, 1)

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    clock = VirtualClock()
    http = httpx.Client(transport=httpx.MockTransport(slow))
    with SyncServiceClient(url, http=http, clock=clock, total_timeout=2.0) as client:
        clock.advance(0.0)
        with pytest.raises(httpx.ReadTimeout):
            client.get("svc", "/", attempts=1)
        original = client._attempts

        def overrun(*args: object) -> httpx.Response:
            clock.advance(5.0)
            return original(*args)  # type: ignore[arg-type]

        client._attempts = overrun  # type: ignore[method-assign]
        with pytest.raises(TimeoutExceeded, match=r"svc\.total"):
            client.get("svc", "/")
    http.close()
