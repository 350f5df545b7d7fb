"""The supervisor's control API: status, kill/start an instance, shut down.

Served on 127.0.0.1 at a free port; every call needs ``Authorization: Bearer
<token>`` (the token is in ``run.json``, mode 0600). No endpoint reads a
body, and a request announcing one over 64 KiB is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cairn.platform._errors import PlatformError

if TYPE_CHECKING:
    from cairn.platform._supervisor import Supervisor

__all__ = ["ControlServer", "create_control_app"]

MAX_BODY = 64 * 1024

Handler = Callable[[Request], Awaitable[Response]]


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def create_control_app(supervisor: Supervisor) -> Starlette:
    """The control API of ``supervisor`` as an ASGI app."""
    expected = f"Bearer {supervisor.token}".encode()

    def guarded(handler: Handler) -> Handler:
        async def endpoint(request: Request) -> Response:
            given = request.headers.get("authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                return _error(
                    401, "missing or wrong token: send Authorization: Bearer <token from run.json>"
                )
            length = request.headers.get("content-length")
            if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
                return _error(413, f"request body over {MAX_BODY} bytes")
            return await handler(request)

        return endpoint

    async def status(request: Request) -> Response:
        return JSONResponse({"instances": [r.to_json() for r in supervisor.snapshot()]})

    async def kill(request: Request) -> Response:
        try:
            record = await supervisor.kill_instance(request.path_params["instance_id"])
        except KeyError as exc:
            return _error(404, str(exc.args[0]))
        return JSONResponse({"instance": record.to_json()})

    async def start(request: Request) -> Response:
        try:
            record = await supervisor.start_instance(request.path_params["instance_id"])
        except KeyError as exc:
            return _error(404, str(exc.args[0]))
        except PlatformError as exc:
            return _error(409, str(exc))
        return JSONResponse({"instance": record.to_json()}, status_code=202)

    async def shutdown(request: Request) -> Response:
        supervisor.request_stop()
        return JSONResponse({"stopping": True}, status_code=202)

    return Starlette(
        routes=[
            Route("/status", guarded(status), methods=["GET"]),
            Route("/instances/{instance_id}/kill", guarded(kill), methods=["POST"]),
            Route("/instances/{instance_id}/start", guarded(start), methods=["POST"]),
            Route("/shutdown", guarded(shutdown), methods=["POST"]),
        ]
    )


class ControlServer:
    """Serves :func:`create_control_app` with uvicorn inside the supervisor's event loop."""

    def __init__(self, supervisor: Supervisor, *, port: int = 0) -> None:
        import uvicorn

        class _Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                yield  # signals belong to `cairn up`, which stops the children in order

        config = uvicorn.Config(
            create_control_app(supervisor),
            host="127.0.0.1",
            port=port,
            lifespan="off",
            log_level="warning",
            access_log=False,
            log_config=None,
        )
        self._server = _Server(config)
        self._task: asyncio.Task[Any] | None = None

    async def start(self) -> str:
        """Start serving; the base URL."""
        self._task = asyncio.get_running_loop().create_task(
            self._server.serve(), name="cairn-control"
        )
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise PlatformError("the control API did not start")
            await asyncio.sleep(0.01)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        """Stop serving."""
        self._server.should_exit = True
        if self._task is not None:
            await self._task
