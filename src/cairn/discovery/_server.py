"""cairn's registry server: the Consul HTTP endpoints services use, over the embedded registry.

A Starlette app: the seed's ``consul.Consul()`` code (py-consul) works
against it unchanged but for host and port, and so does cairn's own Consul
backend. It also serves Prometheus HTTP service discovery
(``GET /v1/prometheus/sd``), so a Prometheus finds every instance's
``/metrics``.

When started with a token, every write (PUT, POST, DELETE) needs it, as
Consul's ``X-Consul-Token`` header or a ``?token=`` parameter; a wrong or
missing token gets 403 and changes nothing. Reads stay open.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from cairn.discovery._consul_json import (
    health_entry,
    instance_from_register,
    node_json,
    service_json,
)
from cairn.discovery._errors import UnknownInstance
from cairn.discovery._health import parse_duration
from cairn.discovery._model import Entry, Health, TTLCheck
from cairn.discovery._sqlite import SQLiteRegistry

__all__ = ["MAX_BODY", "RegistryServer", "create_app"]

MAX_BODY = 64 * 1024
"""Largest request body accepted (a service definition is a few hundred bytes)."""

_MAX_WAIT = 600.0
_DEFAULT_WAIT = 300.0
_WRITES = frozenset({"PUT", "POST", "DELETE", "PATCH"})
_LABEL = re.compile(r"[^a-zA-Z0-9_]")

Handler = Callable[[Request], Awaitable[Response]]


class _BadRequest(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _flag(request: Request, name: str) -> bool:
    if name not in request.query_params:
        return False
    return request.query_params[name].lower() not in ("0", "false")


class RegistryServer:
    """The state behind the app: the store, the token, the custom check ids."""

    def __init__(
        self, registry: SQLiteRegistry, *, token: str | None = None, node_address: str = "127.0.0.1"
    ) -> None:
        if token is not None and not token:
            raise ValueError("token must be a non-empty string, or None for no token")
        self.registry = registry
        self.token = token
        self.node_address = node_address
        # Custom CheckIDs (Consul lets a client name its check); kept in memory.
        self._aliases: dict[str, str] = {}
        self._custom: dict[str, str] = {}

    # -- plumbing ----------------------------------------------------------

    def allowed(self, request: Request) -> bool:
        if self.token is None or request.method not in _WRITES:
            return True
        given = request.headers.get("x-consul-token") or request.query_params.get("token") or ""
        bearer = request.headers.get("authorization", "")
        if not given and bearer.lower().startswith("bearer "):
            given = bearer[7:].strip()
        return hmac.compare_digest(given.encode(), self.token.encode())

    async def body(self, request: Request) -> Any:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
            raise _BadRequest(413, f"request body larger than {MAX_BODY} bytes")
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY:
                raise _BadRequest(413, f"request body larger than {MAX_BODY} bytes")
            chunks.append(chunk)
        raw = b"".join(chunks)
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise _BadRequest(400, f"Request decode failed: {exc}") from exc

    def _resolve_check(self, check: str) -> str:
        if check in self._aliases:
            return self._aliases[check]
        return check.removeprefix("service:")

    def _headers(self, index: int) -> dict[str, str]:
        return {
            "X-Consul-Index": str(max(index, 1)),
            "X-Consul-KnownLeader": "true",
            "X-Consul-LastContact": "0",
        }

    # -- writes ------------------------------------------------------------

    async def register(self, request: Request) -> Response:
        body = await self.body(request)
        try:
            instance, status, custom = instance_from_register(
                body, default_address=self.node_address
            )
        except (ValueError, TypeError) as exc:
            raise _BadRequest(400, f"Invalid service definition: {exc}") from exc
        await self.registry.register(instance)
        self._drop_alias(instance.id)
        if custom:
            self._aliases[custom] = instance.id
            self._custom[instance.id] = custom
        if (
            status is not None
            and status is not Health.PASSING
            and isinstance(instance.check, TTLCheck)
        ):
            # Consul starts a check critical unless told otherwise.
            await self.registry.heartbeat(instance.id, health=status)
        return PlainTextResponse("")

    def _drop_alias(self, instance_id: str) -> None:
        custom = self._custom.pop(instance_id, None)
        if custom is not None:
            self._aliases.pop(custom, None)

    async def deregister(self, request: Request) -> Response:
        instance_id = request.path_params["id"]
        removed = await self.registry.deregister(instance_id)
        self._drop_alias(instance_id)
        if not removed:
            return PlainTextResponse(f'Unknown service ID "{instance_id}"', status_code=404)
        return PlainTextResponse("")

    async def update_check(self, request: Request) -> Response:
        verb = request.path_params["verb"]
        note = request.query_params.get("note", "")
        if verb == "update":
            body = await self.body(request) or {}
            folded = {str(k).lower(): v for k, v in body.items()} if isinstance(body, dict) else {}
            verb = str(folded.get("status", "")).lower()
            note = str(folded.get("output", ""))
        health = {
            "pass": Health.PASSING,
            "passing": Health.PASSING,
            "warn": Health.WARNING,
            "warning": Health.WARNING,
            "fail": Health.CRITICAL,
            "critical": Health.CRITICAL,
        }.get(verb)
        if health is None:
            raise _BadRequest(400, f"Invalid check status: {verb!r}")
        check = request.path_params["check"]
        try:
            await self.registry.heartbeat(self._resolve_check(check), health=health, output=note)
        except UnknownInstance:
            return PlainTextResponse(f'Unknown check ID "{check}"', status_code=404)
        except ValueError:
            return PlainTextResponse(
                f'CheckID "{check}" does not have associated TTL', status_code=500
            )
        return PlainTextResponse("")

    # -- reads -------------------------------------------------------------

    async def _blocking(self, request: Request, service: str) -> tuple[int, tuple[Entry, ...]]:
        index_text = request.query_params.get("index")
        try:
            index = int(index_text) if index_text else 0
            wait = (
                parse_duration(request.query_params.get("wait") or f"{_DEFAULT_WAIT}s")
                if index
                else 0.0
            )
        except ValueError as exc:
            raise _BadRequest(400, f"Invalid index or wait: {exc}") from exc
        wait = min(max(wait, 0.0), _MAX_WAIT)
        if not index:
            return await self.registry.query(service, index=0, wait=0.0)
        # A client that hangs up should not hold a task for minutes.
        query = asyncio.ensure_future(self.registry.query(service, index=index, wait=wait))
        gone = asyncio.ensure_future(_disconnected(request))
        try:
            await asyncio.wait((query, gone), return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            if not query.done():
                query.cancel()
                # cancel() only asks; wait for the task to finish (an outer
                # cancellation still propagates from here).
                await asyncio.wait((query,))
        if query.cancelled():
            raise _BadRequest(499, "client closed the request")
        return query.result()

    def _select(self, request: Request, entries: tuple[Entry, ...]) -> list[Entry]:
        tags = request.query_params.getlist("tag")
        passing = _flag(request, "passing")
        return [
            e
            for e in entries
            if (not passing or e.health is Health.PASSING)
            and all(t in e.instance.tags for t in tags)
        ]

    async def health_service(self, request: Request) -> Response:
        index, entries = await self._blocking(request, request.path_params["name"])
        body = [
            health_entry(
                e,
                node_address=self.node_address,
                custom_check=self._custom.get(e.instance.id),
                index=index,
            )
            for e in self._select(request, entries)
        ]
        return JSONResponse(body, headers=self._headers(index))

    async def health_checks(self, request: Request) -> Response:
        index, entries = await self._blocking(request, request.path_params["name"])
        body = [
            c
            for e in entries
            for c in health_entry(
                e,
                node_address=self.node_address,
                custom_check=self._custom.get(e.instance.id),
                index=index,
            )["Checks"][1:]
        ]
        return JSONResponse(body, headers=self._headers(index))

    async def catalog_service(self, request: Request) -> Response:
        index, entries = await self._blocking(request, request.path_params["name"])
        node = node_json(self.node_address)
        body = []
        for e in self._select(request, entries):
            item = {
                "ID": node["ID"],
                "Node": node["Node"],
                "Address": node["Address"],
                "Datacenter": "dc1",
                "TaggedAddresses": node["TaggedAddresses"],
                "NodeMeta": {},
            }
            item.update({f"Service{k}": v for k, v in service_json(e.instance).items()})
            body.append(item)
        return JSONResponse(body, headers=self._headers(index))

    async def catalog_services(self, request: Request) -> Response:
        entries = self.registry.all_entries()
        body: dict[str, list[str]] = {}
        for e in entries:
            tags = body.setdefault(e.instance.service, [])
            tags.extend(t for t in e.instance.tags if t not in tags)
        return JSONResponse(body, headers=self._headers(self.registry.index))

    async def agent_services(self, request: Request) -> Response:
        body = {e.instance.id: service_json(e.instance) for e in self.registry.all_entries()}
        return JSONResponse(body)

    async def agent_service(self, request: Request) -> Response:
        entry = self.registry.find(request.path_params["id"])
        if entry is None:
            return PlainTextResponse("unknown service ID", status_code=404)
        return JSONResponse(service_json(entry.instance))

    async def agent_checks(self, request: Request) -> Response:
        body = {}
        for e in self.registry.all_entries():
            if e.instance.check is None:
                continue
            item = health_entry(
                e,
                node_address=self.node_address,
                custom_check=self._custom.get(e.instance.id),
                index=1,
            )["Checks"][1]
            body[item["CheckID"]] = item
        return JSONResponse(body)

    async def leader(self, request: Request) -> Response:
        return JSONResponse(f"{self.node_address}:8300")

    async def prometheus_sd(self, request: Request) -> Response:
        """Prometheus HTTP SD: one target group per instance (``?service=``, ``?passing``)."""
        wanted = request.query_params.getlist("service")
        passing = _flag(request, "passing")
        groups = []
        for e in self.registry.all_entries():
            instance = e.instance
            if (wanted and instance.service not in wanted) or (
                passing and e.health is not Health.PASSING
            ):
                continue
            labels = {
                "service": instance.service,
                "instance_id": instance.id,
                "__meta_cairn_service": instance.service,
                "__meta_cairn_instance_id": instance.id,
                "__meta_cairn_health": e.health.value,
                "__meta_cairn_tags": "," + ",".join(instance.tags) + ",",
                "__metrics_path__": instance.meta.get("metrics_path", "/metrics"),
            }
            for key, value in instance.meta.items():
                labels[f"__meta_cairn_meta_{_LABEL.sub('_', key)}"] = value
            groups.append({"targets": [instance.host_port], "labels": labels})
        return JSONResponse(groups)


def create_app(
    registry: SQLiteRegistry, *, token: str | None = None, node_address: str = "127.0.0.1"
) -> Starlette:
    """The registry server's ASGI app over ``registry`` (closed when the app shuts down)."""
    state = RegistryServer(registry, token=token, node_address=node_address)

    def guarded(handler: Handler) -> Handler:
        async def endpoint(request: Request) -> Response:
            if not state.allowed(request):
                return PlainTextResponse(
                    "Permission denied: token with write access required", status_code=403
                )
            try:
                return await handler(request)
            except _BadRequest as exc:
                return PlainTextResponse(exc.text, status_code=exc.status)

        return endpoint

    routes = [
        Route("/v1/agent/service/register", guarded(state.register), methods=["PUT"]),
        Route("/v1/agent/service/deregister/{id}", guarded(state.deregister), methods=["PUT"]),
        Route(
            "/v1/agent/check/{verb:str}/{check:path}", guarded(state.update_check), methods=["PUT"]
        ),
        Route("/v1/agent/services", guarded(state.agent_services), methods=["GET"]),
        Route("/v1/agent/service/{id}", guarded(state.agent_service), methods=["GET"]),
        Route("/v1/agent/checks", guarded(state.agent_checks), methods=["GET"]),
        Route("/v1/health/service/{name}", guarded(state.health_service), methods=["GET"]),
        Route("/v1/health/checks/{name}", guarded(state.health_checks), methods=["GET"]),
        Route("/v1/catalog/services", guarded(state.catalog_services), methods=["GET"]),
        Route("/v1/catalog/service/{name}", guarded(state.catalog_service), methods=["GET"]),
        Route("/v1/status/leader", guarded(state.leader), methods=["GET"]),
        Route("/v1/prometheus/sd", guarded(state.prometheus_sd), methods=["GET"]),
    ]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await registry.aclose()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.registry_server = state
    return app
