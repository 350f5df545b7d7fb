"""In-process fixtures for the client's unit tests: a registry in memory and a scripted HTTP side."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from cairn.discovery import Instance, SQLiteRegistry
from cairn.resilience._clock import Clock

Behaviour = Callable[[httpx.Request], httpx.Response]


def ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, text=str(request.url.port))


def status(code: int, **headers: str) -> Behaviour:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(code, headers=headers, text=str(request.url.port))

    return answer


def refuse(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


def drop(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadError("connection reset after the request was sent", request=request)


@dataclass
class Scripted:
    """Per port: what the "instance" answers; ``calls`` lists (method, port) of every attempt."""

    behaviour: dict[int, Behaviour] = field(default_factory=dict)
    calls: list[tuple[str, int]] = field(default_factory=list)

    def handle(self, request: httpx.Request) -> httpx.Response:
        port = int(request.url.port or 80)
        self.calls.append((request.method, port))
        return self.behaviour.get(port, ok)(request)

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self.handle))

    def sync_http(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self.handle))

    def ports(self) -> list[int]:
        return [port for _, port in self.calls]


def instance(n: int, service: str = "svc", **meta: str) -> Instance:
    """Instance ``svc-n`` at 127.0.0.1:(9000 + n), always passing (no check)."""
    return Instance(service, f"{service}-{n}", "127.0.0.1", 9000 + n, meta=meta)


async def registry_with(*instances: Instance, clock: Clock | None = None) -> SQLiteRegistry:
    """An in-memory registry holding ``instances``, its view of their service already watched."""
    registry = SQLiteRegistry(":memory:", clock=clock)
    for item in instances:
        await registry.register(item)
    for service in {i.service for i in instances}:
        await registry.instances(service)
    return registry
