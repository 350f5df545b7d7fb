"""The dashboard's ASGI app: one HTML page, its static assets, and JSON under ``/api``.

The page (``static/index.html`` + ``app.js``) is a small hand-written single-page app; it
asks only this app, which asks the collector and the registry server-side
(:mod:`cairn.dashboard._sources`). Every list endpoint caps how much it returns, so a
page's first render costs the same with a million stored records as with ten.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from cairn._version import __version__
from cairn.dashboard._lab import resolve_file, scan_runs
from cairn.dashboard._overview import HealthHistory, build_overview
from cairn.dashboard._security import Guard
from cairn.dashboard._sources import Upstream, UpstreamError

__all__ = ["STATIC", "DashboardConfig", "create_app"]

STATIC = Path(__file__).parent / "static"
"""The page's assets, shipped inside the package."""

MAX_LOGS = 1000
MAX_TRACES = 500
MAX_EXEMPLARS = 200
EXEMPLAR_METRIC = "http_request_duration_seconds"
_LOG_PARAMS = ("q", "since", "until")
_TRACE_PARAMS = ("service", "operation", "min_duration_ms", "status", "q", "since", "until")

Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class DashboardConfig:
    """What the dashboard reads and how it guards itself.

    ``registry=None`` runs without a registry (the registry page says so); ``token``
    requires it on every request; ``hosts`` are extra names the ``Host`` header may
    carry besides the loopback ones (``None``: any); ``poll_interval`` is how often
    the registry is polled for the health history.
    """

    collector: str = "http://127.0.0.1:4318"
    registry: str | None = "http://127.0.0.1:8500"
    lab_dir: Path = field(default_factory=lambda: Path("lab-report"))
    token: str | None = None
    hosts: tuple[str, ...] | None = ()
    poll_interval: float = 2.0
    upstream_timeout: float = 5.0

    def __post_init__(self) -> None:
        for name in ("collector", "registry"):
            url = getattr(self, name)
            if url is not None and not url.startswith(("http://", "https://")):
                raise ValueError(f"--{name} must be an http:// or https:// URL, not {url!r}")
        if not 0.01 <= self.poll_interval <= 3600:
            raise ValueError(f"poll_interval must be 0.01..3600 seconds, not {self.poll_interval}")


def _params(request: Request, names: tuple[str, ...], *, limit: int, cap: int) -> dict[str, str]:
    out = {n: request.query_params[n] for n in names if request.query_params.get(n)}
    try:
        wanted = int(request.query_params.get("limit") or limit)
    except ValueError:
        wanted = limit
    out["limit"] = str(max(1, min(wanted, cap)))
    return out


def _guarded(handler: Handler) -> Handler:
    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except UpstreamError as exc:
            return JSONResponse(exc.body, status_code=exc.status)

    return endpoint


class _Api:
    def __init__(self, config: DashboardConfig, up: Upstream, history: HealthHistory) -> None:
        self.config = config
        self.up = up
        self.history = history

    async def config_json(self, request: Request) -> Response:
        return JSONResponse(
            {
                "version": __version__,
                "collector": self.config.collector,
                "registry": self.config.registry,
                "lab_dir": str(self.config.lab_dir),
            }
        )

    async def overview(self, request: Request) -> Response:
        since = request.query_params.get("since") or "1m"
        return JSONResponse(await build_overview(self.up, self.history, since=since))

    async def logs(self, request: Request) -> Response:
        params = _params(request, _LOG_PARAMS, limit=200, cap=MAX_LOGS)
        return JSONResponse(await self.up.collector_get("/api/logs", params))

    async def traces(self, request: Request) -> Response:
        params = _params(request, _TRACE_PARAMS, limit=100, cap=MAX_TRACES)
        return JSONResponse(await self.up.collector_get("/api/traces", params))

    async def trace(self, request: Request) -> Response:
        trace_id = request.path_params["trace_id"]
        if not trace_id.isalnum() or len(trace_id) > 64:
            return JSONResponse({"error": f"not a trace id: {trace_id!r}"}, status_code=400)
        return JSONResponse(await self.up.collector_get(f"/api/traces/{trace_id}"))

    async def metrics(self, request: Request) -> Response:
        return JSONResponse(await self.up.collector_get("/api/metrics"))

    async def metric(self, request: Request) -> Response:
        name = quote(request.path_params["name"], safe="")
        params = {k: v for k in ("by", "since") if (v := request.query_params.get(k))}
        return JSONResponse(await self.up.collector_get(f"/api/metrics/{name}", params))

    async def metric_range(self, request: Request) -> Response:
        name = quote(request.path_params["name"], safe="")
        keys = ("by", "since", "until", "step", "stat")
        params = {k: v for k in keys if (v := request.query_params.get(k))}
        return JSONResponse(await self.up.collector_get(f"/api/metrics/{name}/range", params))

    async def exemplars(self, request: Request) -> Response:
        """The dots on the metric page's latency chart: the collector's exemplars of
        ``http_request_duration_seconds`` for the service (each a request's duration
        and its trace), newest first.

        Only when the collector has none in the window (a target that does not speak
        OpenMetrics, or sampled no request) do the slowest traces stand in; ``source``
        says which (``"exemplars"`` or ``"slowest traces"``). Each item: ``time_ns``,
        ``value`` (seconds), ``trace_id``, ``span_id``, ``labels``, ``name`` (what the
        dot's tooltip calls it).
        """
        service = request.query_params.get("service", "")
        endpoint = request.query_params.get("endpoint", "")
        since = request.query_params.get("since") or "1h"
        found = await self.up.exemplars(
            EXEMPLAR_METRIC, service=service or None, since=since, limit=MAX_EXEMPLARS
        )
        if endpoint:
            found = [e for e in found if (e.get("labels") or {}).get("endpoint") == endpoint]
        if found:
            dots = [
                {
                    "time_ns": e.get("time_ns"),
                    "value": e.get("value"),
                    "trace_id": e.get("trace_id"),
                    "span_id": e.get("span_id"),
                    "labels": e.get("labels") or {},
                    "name": (e.get("labels") or {}).get("endpoint") or e.get("name", ""),
                }
                for e in found
            ]
            return JSONResponse({"exemplars": dots, "traces": [], "source": "exemplars"})
        params = {"since": since, "limit": "200"}
        if service:
            params["service"] = service
        if endpoint:
            params["q"] = 'http.route:"{}"'.format(
                endpoint.replace("\\", "\\\\").replace('"', '\\"')
            )
        traces = (await self.up.collector_get("/api/traces", params)).get("traces", [])
        traces.sort(key=lambda t: int(t.get("duration_ns", 0)), reverse=True)
        slowest = traces[:20]
        dots = [
            {
                "time_ns": t.get("start_ns"),
                "value": int(t.get("duration_ns", 0)) / 1e9,
                "trace_id": t.get("trace_id"),
                "span_id": None,
                "labels": {"service": t.get("root_service", service)},
                "name": t.get("root_name", ""),
            }
            for t in slowest
        ]
        return JSONResponse({"exemplars": dots, "traces": slowest, "source": "slowest traces"})

    async def services(self, request: Request) -> Response:
        return JSONResponse(await self.up.collector_get("/api/services"))

    async def stats(self, request: Request) -> Response:
        return JSONResponse(await self.up.collector_get("/api/stats"))

    async def registry(self, request: Request) -> Response:
        if self.up.registry is None:
            return JSONResponse(
                {"backend": None, "instances": [], "history": [], "error": "no registry configured"}
            )
        backend = await self.up.backend()
        try:
            instances = await self.up.instances()
            self.history.observe(instances)
            error = None
        except UpstreamError as exc:
            instances, error = [], exc.message
        return JSONResponse(
            {
                "backend": backend,
                "instances": instances,
                "history": list(self.history.changes)[-500:][::-1],
                "error": error,
            }
        )

    async def lab(self, request: Request) -> Response:
        runs = await asyncio.to_thread(scan_runs, self.config.lab_dir)
        return JSONResponse({"lab_dir": str(self.config.lab_dir), "runs": runs})

    async def lab_file(self, request: Request) -> Response:
        target = resolve_file(self.config.lab_dir, request.path_params["path"])
        if target is None:
            return JSONResponse({"error": "no such lab file"}, status_code=404)
        return FileResponse(target)


async def _index(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", headers={"cache-control": "no-store"})


def create_app(config: DashboardConfig | None = None) -> Guard:
    """The dashboard as an ASGI app, wrapped in its security guard."""
    config = config or DashboardConfig()
    up = Upstream(
        collector=config.collector, registry=config.registry, timeout=config.upstream_timeout
    )
    history = HealthHistory()
    api = _Api(config, up, history)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        watcher = None
        if config.registry is not None:
            watcher = asyncio.create_task(history.watch(up, interval=config.poll_interval))
        try:
            yield
        finally:
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            await up.aclose()

    def get(path: str, handler: Handler) -> Route:
        return Route(path, _guarded(handler), methods=["GET"])

    routes = [
        Route("/", _index, methods=["GET"]),
        get("/api/config", api.config_json),
        get("/api/overview", api.overview),
        get("/api/logs", api.logs),
        get("/api/traces", api.traces),
        get("/api/traces/{trace_id}", api.trace),
        get("/api/metrics", api.metrics),
        get("/api/metrics/{name}/range", api.metric_range),
        get("/api/metrics/{name}", api.metric),
        get("/api/exemplars", api.exemplars),
        get("/api/services", api.services),
        get("/api/stats", api.stats),
        get("/api/registry", api.registry),
        get("/api/lab", api.lab),
        get("/lab/files/{path:path}", api.lab_file),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.history = history
    return Guard(app, token=config.token, hosts=config.hosts)
