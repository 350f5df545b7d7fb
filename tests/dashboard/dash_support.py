"""Real servers for the dashboard tests: a registry, a collector stand-in, the dashboard.

The collector stand-in serves the collector contract's JSON (``/api/...``) from records
built here, answering queries with the real query language (``parse_query``), so the
dashboard and the page are exercised end to end over HTTP.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from cairn.collector import QueryError, parse_query
from cairn.collector._records import LogRecord, SpanEvent, SpanRecord
from cairn.discovery._server import create_app as registry_app
from cairn.discovery._sqlite import SQLiteRegistry

T = TypeVar("T")
NOW = time.time_ns()
MS = 1_000_000
BUY_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SLOW_TRACE = "0af7651916cd43dd8448eb211c80319c"


def wait_for(condition: Callable[[], T], *, timeout: float = 20.0, what: str = "") -> T:
    """Poll ``condition`` until it returns something truthy, or fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(0.02)  # the polling interval of the condition, not a settle delay


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Served:
    """An ASGI app served by uvicorn on 127.0.0.1 in a background thread."""

    def __init__(self, app: Any) -> None:
        config = uvicorn.Config(
            app, host="127.0.0.1", port=0, log_level="error", timeout_graceful_shutdown=2
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Served:
        self.thread.start()
        wait_for(lambda: self.server.started, what="uvicorn to start")
        return self

    @property
    def url(self) -> str:
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


# -- the shop's telemetry ----------------------------------------------------


def _span(
    trace: str,
    sid: str,
    parent: str | None,
    name: str,
    service: str,
    start: int,
    ms: float,
    **kw: Any,
) -> SpanRecord:
    return SpanRecord(trace, sid, parent, name, service, start, start + int(ms * MS), **kw)


def shop_spans() -> list[SpanRecord]:
    """A purchase through frontend → orders → inventory, and a slow failed one."""
    t = NOW - 60_000 * MS
    buy = [
        _span(
            BUY_TRACE,
            "a" * 16,
            None,
            "POST /buy",
            "frontend",
            t,
            120,
            kind="server",
            attributes={"http.route": "/buy", "user_id": 123},
        ),
        _span(
            BUY_TRACE,
            "b" * 16,
            "a" * 16,
            "POST /orders",
            "orders",
            t + 5 * MS,
            100,
            kind="server",
            attributes={"http.route": "/orders"},
            events=[SpanEvent("retry", t + 40 * MS, {"attempt": 2, "wait_s": 0.05})],
        ),
        _span(
            BUY_TRACE,
            "c" * 16,
            "b" * 16,
            "db.query",
            "orders",
            t + 10 * MS,
            20,
            attributes={"db.statement": "SELECT * FROM orders WHERE id = ?"},
        ),
        # In parallel with db.query, and shorter: not on the critical path.
        _span(BUY_TRACE, "f" * 16, "b" * 16, "cache.get", "orders", t + 12 * MS, 8),
        _span(
            BUY_TRACE,
            "d" * 16,
            "b" * 16,
            "inventory.check",
            "inventory",
            t + 35 * MS,
            60,
            kind="client",
            attributes={"sku": "<b>sku-1</b>"},
            events=[
                SpanEvent(
                    "breaker.transition", t + 90 * MS, {"from_state": "closed", "to_state": "open"}
                )
            ],
        ),
    ]
    slow = [
        _span(
            SLOW_TRACE,
            "e" * 16,
            None,
            "GET /catalog",
            "frontend",
            t + 2000 * MS,
            900,
            kind="server",
            status="error",
            status_message="upstream 503",
            attributes={"http.route": "/catalog"},
        ),
    ]
    return buy + slow


def shop_logs() -> list[LogRecord]:
    t = NOW - 59_000 * MS
    return [
        LogRecord(
            t,
            "orders",
            "info",
            "purchase_completed",
            trace_id=BUY_TRACE,
            span_id="b" * 16,
            attributes={"user_id": 123, "order": {"id": 7, "total": 19.5}},
        ),
        LogRecord(
            t + 1 * MS,
            "frontend",
            "error",
            "<script>alert('pwned')</script>",
            attributes={"note": "<img src=x onerror=alert(2)>"},
        ),
        LogRecord(t + 2 * MS, "inventory", "warning", "stock_low", attributes={"sku": "sku-1"}),
    ]


def shop_metrics() -> dict[str, tuple[str, list[dict[str, Any]]]]:
    """Raw series per metric family: (kind, [{labels, rate, latest, quantiles}])."""
    req = [
        {
            "labels": {
                "service": "orders",
                "instance": "orders-1",
                "endpoint": "/orders",
                "status": "200",
                "method": "POST",
            },
            "rate": 9.0,
        },
        {
            "labels": {
                "service": "orders",
                "instance": "orders-1",
                "endpoint": "/orders",
                "status": "503",
                "method": "POST",
            },
            "rate": 1.0,
        },
        {
            "labels": {
                "service": "inventory",
                "instance": "inventory-1",
                "endpoint": "/check",
                "status": "200",
                "method": "GET",
            },
            "rate": 5.0,
        },
    ]
    dur = [
        {
            "labels": {"service": "orders", "instance": "orders-1", "endpoint": "/orders"},
            "rate": 10.0,
            "quantiles": {"p50": 0.02, "p90": 0.05, "p99": 0.25},
        },
        {
            "labels": {"service": "inventory", "instance": "inventory-1", "endpoint": "/check"},
            "rate": 5.0,
            "quantiles": {"p50": 0.004, "p90": 0.008, "p99": 0.012},
        },
    ]
    brk = [
        {
            "labels": {
                "service": "orders",
                "instance": "orders-1",
                "policy": "inventory/inventory-1",
                "state": s,
            },
            "latest": 1.0 if s == "open" else 0.0,
        }
        for s in ("closed", "open", "half_open")
    ]
    return {
        "http_requests_total": ("counter", req),
        "http_request_duration_seconds": ("histogram", dur),
        "cairn_breaker_state": ("gauge", brk),
    }


# -- the collector stand-in ---------------------------------------------------


def _bad(exc: QueryError) -> JSONResponse:
    return JSONResponse({"error": exc.message, "column": exc.column}, status_code=400)


def _group(series: list[dict[str, Any]], by: list[str]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, ...], dict[str, Any]] = {}
    for item in series:
        key = tuple(item["labels"].get(k, "") for k in by)
        row = groups.setdefault(
            key,
            {
                "labels": dict(zip(by, key, strict=True)),
                "latest": None,
                "rate": None,
                "quantiles": None,
            },
        )
        if item.get("rate") is not None:
            row["rate"] = (row["rate"] or 0.0) + item["rate"]
        if item.get("latest") is not None:
            row["latest"] = (row["latest"] or 0.0) + item["latest"]
        if item.get("quantiles"):
            row["quantiles"] = item["quantiles"]
    return list(groups.values())


def shop_exemplars() -> list[dict[str, Any]]:
    """Stored exemplars of the latency histogram: two for orders (none for frontend, whose
    dots are then the slowest traces), newest first, as the collector answers them."""
    labels = {"service": "orders", "instance": "orders-1", "endpoint": "/orders",
              "method": "POST", "le": "0.1"}  # fmt: skip
    return [
        {"name": "http_request_duration_seconds_bucket", "labels": labels,
         "time_ns": NOW - 20_000 * MS, "value": 0.042, "trace_id": BUY_TRACE, "span_id": "b" * 16},
        {"name": "http_request_duration_seconds_bucket", "labels": {**labels, "le": "+Inf"},
         "time_ns": NOW - 40_000 * MS, "value": 0.35, "trace_id": SLOW_TRACE, "span_id": None},
    ]  # fmt: skip


def fake_collector(
    spans: list[SpanRecord] | None = None,
    logs: list[LogRecord] | None = None,
    metrics: dict[str, tuple[str, list[dict[str, Any]]]] | None = None,
    exemplars: list[dict[str, Any]] | None = None,
) -> Starlette:
    """The collector's query API over fixed records (contract shapes, real query language)."""
    spans = shop_spans() if spans is None else spans
    logs = shop_logs() if logs is None else logs
    metrics = shop_metrics() if metrics is None else metrics
    stored_exemplars = shop_exemplars() if exemplars is None else exemplars
    seen: list[dict[str, str]] = []  # query parameters received, for assertions

    def summary(trace_id: str) -> dict[str, Any]:
        mine = [s for s in spans if s.trace_id == trace_id]
        root = next((s for s in mine if s.parent_span_id is None), mine[0])
        start = min(s.start_ns for s in mine)
        return {
            "trace_id": trace_id,
            "root_service": root.service,
            "root_name": root.name,
            "start_ns": start,
            "duration_ns": max(s.end_ns for s in mine) - start,
            "span_count": len(mine),
            "error_count": sum(s.status == "error" for s in mine),
            "services": sorted({s.service for s in mine}),
        }

    async def api_logs(request: Request) -> JSONResponse:
        seen.append(dict(request.query_params))
        try:
            query = parse_query(request.query_params.get("q", ""))
        except QueryError as exc:
            return _bad(exc)
        limit = int(request.query_params.get("limit", "100"))
        hits = [r for r in sorted(logs, key=lambda r: -r.time_ns) if query.matches(r.document())]
        return JSONResponse({"records": [r.to_json() for r in hits[:limit]]})

    async def api_traces(request: Request) -> JSONResponse:
        seen.append(dict(request.query_params))
        p = request.query_params
        try:
            query = parse_query(p.get("q", ""))
        except QueryError as exc:
            return _bad(exc)
        ids: list[str] = []
        for s in spans:
            if (
                (not p.get("service") or s.service == p["service"])
                and (not p.get("operation") or s.name == p["operation"])
                and (not p.get("status") or s.status == p["status"])
                and query.matches(s.document())
                and s.trace_id not in ids
            ):
                ids.append(s.trace_id)
        found = [summary(i) for i in ids]
        if p.get("min_duration_ms"):
            found = [t for t in found if t["duration_ns"] >= float(p["min_duration_ms"]) * MS]
        found.sort(key=lambda t: -t["start_ns"])
        return JSONResponse({"traces": found[: int(p.get("limit", "50"))]})

    async def api_trace(request: Request) -> JSONResponse:
        tid = request.path_params["trace_id"]
        mine = [s.to_json() for s in spans if s.trace_id == tid]
        if not mine:
            return JSONResponse({"error": f"no trace {tid}"}, status_code=404)
        return JSONResponse(
            {
                "trace_id": tid,
                "spans": mine,
                "logs": [r.to_json() for r in logs if r.trace_id == tid],
            }
        )

    async def api_metrics(request: Request) -> JSONResponse:
        return JSONResponse(
            {"metrics": [{"name": n, "kind": k, "series": len(s)} for n, (k, s) in metrics.items()]}
        )

    async def api_metric(request: Request) -> JSONResponse:
        name = request.path_params["name"]
        if name not in metrics:
            return JSONResponse({"error": f"no metric {name}"}, status_code=404)
        kind, series = metrics[name]
        by = [b for b in request.query_params.get("by", "").split(",") if b]
        return JSONResponse({"name": name, "kind": kind, "series": _group(series, by)})

    async def api_range(request: Request) -> JSONResponse:
        name = request.path_params["name"]
        if name not in metrics:
            return JSONResponse({"error": f"no metric {name}"}, status_code=404)
        by = [b for b in request.query_params.get("by", "").split(",") if b]
        stat = request.query_params.get("stat", "rate")
        step = int(float(request.query_params.get("step", "15")) * 1e9)
        out = []
        for row in _group(metrics[name][1], by):
            if stat == "rate":
                value = row["rate"]
            elif stat in ("p50", "p90", "p99"):
                value = (row["quantiles"] or {}).get(stat)
            else:
                value = row["latest"]
            if value is None:
                continue
            points = [[NOW - i * step, value * (1 + 0.1 * (i % 3))] for i in range(30, -1, -1)]
            out.append({"labels": row["labels"], "points": points})
        return JSONResponse({"name": name, "series": out})

    async def api_exemplars(request: Request) -> JSONResponse:
        seen.append(dict(request.query_params))
        name = request.path_params["name"]
        if name != "http_request_duration_seconds":
            return JSONResponse({"error": f"no metric {name!r} with exemplars"}, status_code=404)
        service = request.query_params.get("service")
        found = [e for e in stored_exemplars if not service or e["labels"]["service"] == service]
        limit = int(request.query_params.get("limit") or 200)
        return JSONResponse({"name": name, "kind": "histogram", "exemplars": found[:limit]})

    async def api_services(request: Request) -> JSONResponse:
        names = {s.service for s in spans} | {r.service for r in logs}
        return JSONResponse({"services": sorted(names)})

    async def api_stats(request: Request) -> JSONResponse:
        return JSONResponse({"accepted": {"spans": len(spans), "logs": len(logs), "samples": 0}})

    app = Starlette(
        routes=[
            Route("/api/logs", api_logs),
            Route("/api/traces", api_traces),
            Route("/api/traces/{trace_id}", api_trace),
            Route("/api/metrics", api_metrics),
            Route("/api/metrics/{name}/range", api_range),
            Route("/api/metrics/{name}/exemplars", api_exemplars),
            Route("/api/metrics/{name}", api_metric),
            Route("/api/services", api_services),
            Route("/api/stats", api_stats),
        ]
    )
    app.state.seen = seen
    return app


# -- the registry -----------------------------------------------------------


def register(
    registry_url: str,
    service: str,
    iid: str,
    port: int,
    *,
    version: str = "1.0.0",
    status: str = "passing",
) -> None:
    body = {
        "Name": service,
        "ID": iid,
        "Address": "127.0.0.1",
        "Port": port,
        "Tags": ["shop", f"v{version}"],
        "Meta": {"version": version, "zone": "local"},
        "Check": {"TTL": "300s", "Status": status},
    }
    httpx.put(f"{registry_url}/v1/agent/service/register", json=body).raise_for_status()


def set_health(registry_url: str, iid: str, verb: str) -> None:
    httpx.put(f"{registry_url}/v1/agent/check/{verb}/service:{iid}").raise_for_status()


@contextmanager
def shop_registry() -> Iterator[Served]:
    """cairn's real registry server with orders-1, inventory-1 and inventory-2."""
    with Served(registry_app(SQLiteRegistry(":memory:", poll_interval=0.02))) as server:
        register(server.url, "orders", "orders-1", 9101, version="2.1.0")
        register(server.url, "inventory", "inventory-1", 9201)
        register(server.url, "inventory", "inventory-2", 9202)
        yield server


@contextmanager
def real_collector() -> Iterator[str]:
    """H2's collector (in-memory store) holding the shop's spans and logs; yields its URL."""
    from cairn.collector._server import Collector, serve_in_thread
    from cairn.collector._store import Store

    store = Store(None)
    store.add_spans(shop_spans())
    store.add_logs(shop_logs())
    try:
        with serve_in_thread(Collector(store)) as url:
            yield url
    finally:
        store.close()
