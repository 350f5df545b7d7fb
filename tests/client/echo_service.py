"""A tiny service for the multi-process tests: ``python echo_service.py REGISTRY ID [TTL]``.

Answers ``GET /who`` with its instance id (so a client can count who served
what) and ``GET /slow?ms=N`` after N milliseconds; runs under
``cairn.service.serve`` on a free port of 127.0.0.1 and prints ``ready`` once
it is registered.
"""

from __future__ import annotations

import asyncio
import sys

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from cairn.service import Service, serve


def build(instance_id: str) -> Starlette:
    async def who(request: Request) -> PlainTextResponse:
        return PlainTextResponse(instance_id)

    async def slow(request: Request) -> PlainTextResponse:
        await asyncio.sleep(
            int(request.query_params.get("ms", "50")) / 1000
        )  # the work being served
        return PlainTextResponse(instance_id)

    return Starlette(routes=[Route("/who", who), Route("/slow", slow)])


async def main(registry: str, instance_id: str, ttl: float, drain_delay: float) -> None:
    service = Service(
        build(instance_id),
        name="echo",
        registry=registry,
        instance_id=instance_id,
        ttl=ttl,
        drain_delay=drain_delay,
        observability={"service": "echo", "instance_id": instance_id, "traces": "none"},
    )
    original = service.register

    async def register(port: int | None = None) -> None:
        await original(port)
        print("ready", service.instance.port, flush=True)

    service.register = register  # type: ignore[method-assign]
    await serve(service, drain_timeout=5.0)


if __name__ == "__main__":
    asyncio.run(
        main(
            sys.argv[1],
            sys.argv[2],
            float(sys.argv[3]) if len(sys.argv) > 3 else 1.0,
            float(sys.argv[4]) if len(sys.argv) > 4 else 0.3,
        )
    )
