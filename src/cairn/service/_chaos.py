"""Fault injection inside an instance: added latency and injected error responses.

A :class:`Chaos` holds the current :class:`Fault` of one instance.
:class:`ChaosMiddleware` applies it to every request but health probes,
``/metrics`` and ``/_cairn/*``; :meth:`Chaos.handle` answers
``/_cairn/chaos`` (``GET`` the current fault, ``POST`` a new one, ``DELETE``
to restore), each call with ``Authorization: Bearer <token>``.

:class:`cairn.service.Service` turns this on when ``CAIRN_CHAOS_TOKEN`` is
set (or ``chaos_token=`` is given); ``cairn up`` sets it for every instance
and ``cairn chaos`` calls the endpoint.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import math
import os
import random
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["CHAOS_PATH", "Chaos", "ChaosMiddleware", "Fault"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CHAOS_PATH = "/_cairn/chaos"
MAX_BODY = 4096
"""Largest ``POST /_cairn/chaos`` body accepted, in bytes."""
MAX_LATENCY_MS = 600_000.0
_EXEMPT_PREFIXES = ("/health/", "/_cairn/")
_EXEMPT_PATHS = frozenset({"/metrics", "/health"})


@dataclass(frozen=True, slots=True)
class Fault:
    """What an instance does to its requests: ``latency_ms`` of delay first, then
    an error response with ``status`` for a share ``error_rate`` of them.

    ``seed`` makes the choice of failing requests repeatable (for tests).
    """

    latency_ms: float = 0.0
    error_rate: float = 0.0
    status: int = 503
    seed: int | None = None

    def __post_init__(self) -> None:
        if not _number(self.latency_ms) or not 0 <= self.latency_ms <= MAX_LATENCY_MS:
            raise ValueError(
                f"latency_ms must be a number from 0 to {MAX_LATENCY_MS:g}, not {self.latency_ms!r}"
            )
        if not _number(self.error_rate) or not 0 <= self.error_rate <= 1:
            raise ValueError(f"error_rate must be a number from 0 to 1, not {self.error_rate!r}")
        if type(self.status) is not int or not 400 <= self.status <= 599:
            raise ValueError(f"status must be an HTTP error status (400-599), not {self.status!r}")
        if self.seed is not None and type(self.seed) is not int:
            raise ValueError(f"seed must be an integer or null, not {self.seed!r}")

    @property
    def active(self) -> bool:
        """Whether it changes anything."""
        return self.latency_ms > 0 or self.error_rate > 0

    @classmethod
    def from_json(cls, data: object) -> Fault:
        """Read a JSON object ``{"latency_ms", "error_rate", "status", "seed"}`` (all optional)."""
        if not isinstance(data, dict):
            raise ValueError('the body must be a JSON object like {"latency_ms": 300}')
        unknown = sorted(set(data) - {"latency_ms", "error_rate", "status", "seed"})
        if unknown:
            raise ValueError(
                f"unknown field(s) {', '.join(unknown)}: use latency_ms, error_rate, status, seed"
            )
        return cls(**data)

    def to_json(self) -> dict[str, Any]:
        """The JSON form ``GET /_cairn/chaos`` answers."""
        return asdict(self)


def _number(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and not (isinstance(value, float) and not math.isfinite(value))
    )


def exempt(path: str) -> bool:
    """Whether faults never apply to ``path`` (health, metrics, cairn's own endpoints)."""
    return path in _EXEMPT_PATHS or path.startswith(_EXEMPT_PREFIXES)


class Chaos:
    """The fault state of one instance, guarded by ``token``.

    ``Chaos.from_env()`` is ``None`` unless ``CAIRN_CHAOS_TOKEN`` is set.
    """

    def __init__(self, token: str, *, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep):
        if not token:
            raise ValueError("the chaos token must not be empty")
        self._token = token.encode()
        self._sleep = sleep
        self.fault = Fault()
        self._random = random.Random()

    @classmethod
    def from_env(cls, token: str | None = None) -> Chaos | None:
        """``Chaos(token)``, else ``Chaos($CAIRN_CHAOS_TOKEN)``, else ``None`` (off)."""
        token = token or os.environ.get("CAIRN_CHAOS_TOKEN") or None
        return None if token is None else cls(token)

    def set(self, fault: Fault) -> None:
        """Make ``fault`` the current one (``Fault()`` restores)."""
        self._random = random.Random(fault.seed)
        self.fault = fault

    def wrap(self, app: Any) -> Any:
        """Put :class:`ChaosMiddleware` in front of ``app``'s routes.

        Inside a Starlette/FastAPI app it goes in the middleware stack (so an
        observability middleware added after it still counts injected errors);
        any other app is wrapped.
        """
        if _is_cairn_middleware(app):
            app.app = ChaosMiddleware(app.app, chaos=self)
            return app
        if hasattr(app, "add_middleware") and hasattr(app, "user_middleware"):
            app.add_middleware(ChaosMiddleware, chaos=self)
            return app
        return ChaosMiddleware(app, chaos=self)

    # -- the endpoint -------------------------------------------------------

    def authorized(self, scope: Scope) -> bool:
        """Whether the request carries ``Authorization: Bearer <token>``."""
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                scheme, _, given = bytes(value).partition(b" ")
                return scheme.lower() == b"bearer" and hmac.compare_digest(
                    given.strip(), self._token
                )
        return False

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer ``/_cairn/chaos``: GET the fault, POST a new one, DELETE to restore."""
        if scope["path"] != CHAOS_PATH:
            await _json(send, 404, {"error": f"no such endpoint; the chaos one is {CHAOS_PATH}"})
            return
        if not self.authorized(scope):
            await _json(
                send,
                401,
                {"error": "send Authorization: Bearer <token> (the run's CAIRN_CHAOS_TOKEN)"},
                extra=[(b"www-authenticate", b"Bearer")],
            )
            return
        method = scope["method"]
        if method == "GET":
            await _json(send, 200, self.fault.to_json())
        elif method == "DELETE":
            self.set(Fault())
            await _json(send, 200, self.fault.to_json())
        elif method == "POST":
            body = await _read_body(receive, MAX_BODY)
            if body is None:
                await _json(send, 413, {"error": f"the body is larger than {MAX_BODY} bytes"})
                return
            try:
                fault = Fault.from_json(json.loads(body or b"{}"))
            except (ValueError, TypeError) as exc:  # JSONDecodeError is a ValueError
                await _json(send, 400, {"error": f"bad fault: {exc}"})
                return
            self.set(fault)
            await _json(send, 200, fault.to_json())
        else:
            await _json(
                send,
                405,
                {"error": "use GET, POST or DELETE"},
                extra=[(b"allow", b"GET, POST, DELETE")],
            )

    # -- applying it ----------------------------------------------------------

    async def apply(self, scope: Scope, app: ASGIApp, receive: Receive, send: Send) -> None:
        """Run ``app`` for one request under the current fault."""
        fault = self.fault
        if not fault.active or scope["type"] != "http" or exempt(scope["path"]):
            await app(scope, receive, send)
            return
        if fault.latency_ms:
            await self._sleep(fault.latency_ms / 1000.0)
        if fault.error_rate and self._random.random() < fault.error_rate:
            _name_route(scope)
            await _json(
                send,
                fault.status,
                {"error": "injected fault (cairn chaos)", "status": fault.status},
                extra=[(b"x-cairn-chaos", b"error")],
            )
            return
        await app(scope, receive, send)


class ChaosMiddleware:
    """ASGI middleware applying ``chaos``'s current fault to each request."""

    def __init__(self, app: ASGIApp, *, chaos: Chaos) -> None:
        self.app = app
        self.chaos = chaos

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.chaos.apply(scope, self.app, receive, send)


def _is_cairn_middleware(app: object) -> bool:
    try:
        from cairn.observability import CairnMiddleware
    except ImportError:  # observability's extra is not installed: nothing wraps it
        return False
    return isinstance(app, CairnMiddleware)


def _name_route(scope: Scope) -> None:
    # An injected error never reaches the router, which is what names the
    # route for metrics and spans; look the route up so the endpoint label
    # stays the route's template, not "unmatched".
    router = getattr(scope.get("app"), "router", None)
    for route in getattr(router, "routes", ()):
        matches = getattr(route, "matches", None)
        if matches is None:
            continue
        try:
            match, _child = matches(scope)
        except Exception:  # a route that cannot judge this scope: skip it
            continue
        if getattr(match, "name", None) == "FULL":
            scope["route"] = route
            return


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _json(
    send: Send, status: int, data: object, *, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps(data).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
