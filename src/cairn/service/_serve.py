"""``serve()``: run a :class:`Service` under uvicorn, registered at the port it bound."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from cairn.service._service import ASGIApp, Service

__all__ = ["run", "serve"]


def _server_class() -> Any:
    try:
        import uvicorn
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "cairn.service.serve needs uvicorn: pip install 'cairn[discovery]'"
        ) from exc

    class _Server(uvicorn.Server):
        service: Service

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.should_exit or not self.servers:
                return
            # Registered only now: with port=0 the port is known once bound.
            port = int(self.servers[0].sockets[0].getsockname()[1])
            await self.service.register(port)

    return _Server


async def serve(
    app: ASGIApp | Service,
    *,
    name: str | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    drain_timeout: float = 10.0,
    log_level: str = "warning",
    **service: Any,
) -> None:
    """Serve ``app`` with uvicorn on ``host:port`` (0: any free port) as service ``name``.

    ``app`` is wrapped in a :class:`Service` (``service`` are its settings:
    ``registry``, ``ttl``, ``drain_delay``, ``tags``, ``meta`` …) unless it is
    one. The instance registers once the socket is bound, so ``port=0``
    registers the real port; the address is ``host`` unless ``address=`` says
    otherwise (required when binding every interface). On SIGTERM the
    service drains (see :class:`Service`) and in-flight requests get up to
    ``drain_timeout`` seconds to finish.
    """
    if not isinstance(app, Service):
        if name is None:
            raise ValueError("serve() needs name= (the service name clients resolve)")
        if "address" not in service:
            if host in ("0.0.0.0", "::", ""):
                raise ValueError(
                    f"host={host!r} binds every interface: pass address= (where clients reach it)"
                )
            service["address"] = host
        app = Service(app, name=name, **service)
    elif service or name is not None:
        raise ValueError("app is a Service already: give its settings to Service(), not serve()")
    if not 0 <= port < 65536:
        raise ValueError(f"port must be from 0 (any free port) to 65535, not {port!r}")
    if not 0 < drain_timeout <= 3600:
        raise ValueError(f"drain_timeout must be seconds in (0, 3600], not {drain_timeout!r}")
    import uvicorn

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        lifespan="on",
        timeout_graceful_shutdown=int(max(1, round(drain_timeout))),
        log_level=log_level,
        access_log=False,
        # cairn.observability routes uvicorn's logs itself; uvicorn's dictConfig would undo it.
        log_config=None,
    )
    server = _server_class()(config)
    server.service = app
    await server.serve()


def run(app: ASGIApp | Service, **options: Any) -> None:
    """Blocking :func:`serve` (``asyncio.run``), for a ``__main__``."""
    asyncio.run(serve(app, **options))
