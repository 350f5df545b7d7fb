"""``cairn logs|traces|trace|metrics`` against a real HTTP server on 127.0.0.1.

The server is a small Starlette app answering the collector's query API (the
contract's JSON) from records built here, so the commands' HTTP, option handling,
output and exit codes are exercised end to end.
"""

from __future__ import annotations

import datetime
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import uvicorn
from click.testing import CliRunner, Result
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from cairn.collector import QueryError, parse_query
from cairn.collector._client import (
    CollectorClient,
    CollectorUnavailable,
    resolve_collector_url,
)
from cairn.collector._query_cli import (
    logs_command,
    metrics_command,
    trace_command,
    traces_command,
)
from cairn.collector._records import LogRecord, SpanEvent, SpanRecord

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
OTHER = "4bf92f00000000000000000000000001"
T0 = 1_700_000_000_000_000_000
MS = 1_000_000


def _span(trace: str, sid: str, parent: str | None, name: str, start: int, ms: int, service: str = "orders", **kw: Any) -> SpanRecord:  # fmt: skip
    s = T0 + start * MS
    return SpanRecord(trace, sid * 16, parent and parent * 16, name, service, s, s + ms * MS, **kw)


SPANS = [
    _span(TRACE, "a", None, "GET /orders/123", 0, 152, kind="server"),
    _span(TRACE, "b", "a", "db.query", 1, 50),
    _span(TRACE, "c", "a", "inventory.check", 52, 100,
          events=[SpanEvent("retry.scheduled", T0 + 64 * MS, {"cairn.attempt": 2})]),
    _span(TRACE, "d", "c", "GET /inventory/items", 60, 80, "inventory", status="error", status_message="boom"),
    _span(OTHER, "e", None, "GET /health", 500, 1),
]  # fmt: skip
LOGS = [
    LogRecord(T0 + 2 * MS, "orders", "info", "purchase_completed", TRACE, "a" * 16, {"user_id": 123}),
    LogRecord(T0 + 70 * MS, "inventory", "error", "lookup failed", TRACE, "d" * 16, {"sku": "B-1"}),
    LogRecord(T0 + 900 * MS, "orders", "info", "purchase_completed", None, None, {"user_id": 7}),
]  # fmt: skip
METRICS: dict[str, dict[str, Any]] = {
    "http_server_duration_seconds": {
        "kind": "histogram",
        "series": [
            {
                "labels": {"route": "/orders"},
                "latest": None,
                "rate": 2.5,
                "quantiles": {"p50": 0.012, "p90": 0.05, "p99": 0.25},
            },
        ],
    },
    "orders_total": {
        "kind": "counter",
        "series": [
            {"labels": {"service": "orders"}, "latest": 40.0, "rate": 0.5, "quantiles": None}
        ],
    },
}


def _error(message: str, status: int, column: int | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": message}
    if column is not None:
        body["column"] = column
    return JSONResponse(body, status_code=status)


def _query(request: Request) -> Any:
    text = request.query_params.get("q", "")
    if text.startswith("unsupported"):  # a refusal only the server makes
        raise QueryError("field not indexed", query=text, column=1)
    return parse_query(text)


def _summaries(spans: list[SpanRecord]) -> list[dict[str, Any]]:
    by_trace: dict[str, list[SpanRecord]] = {}
    for s in spans:
        by_trace.setdefault(s.trace_id, []).append(s)
    out = []
    for trace_id, group in by_trace.items():
        root = min(group, key=lambda s: (s.parent_span_id is not None, s.start_ns))
        start = min(s.start_ns for s in group)
        out.append(
            {
                "trace_id": trace_id,
                "root_service": root.service,
                "root_name": root.name,
                "start_ns": start,
                "duration_ns": max(s.end_ns for s in group) - start,
                "span_count": len(group),
                "error_count": sum(s.status == "error" for s in group),
                "services": sorted({s.service for s in group}),
            }
        )
    return sorted(out, key=lambda t: -t["start_ns"])


class FakeCollector:
    """The query API over fixed records; remembers each request's parameters."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []

    def _seen(self, request: Request) -> None:
        self.requests.append((request.url.path, dict(request.query_params)))

    async def logs(self, request: Request) -> JSONResponse:
        self._seen(request)
        try:
            query = _query(request)
        except QueryError as exc:
            return _error(exc.reason, 400, exc.column)
        hits = sorted((r for r in LOGS if query.matches(r.document())), key=lambda r: -r.time_ns)
        limit = int(request.query_params.get("limit", "100"))
        return JSONResponse({"records": [r.to_json() for r in hits[:limit]]})

    async def traces(self, request: Request) -> JSONResponse:
        self._seen(request)
        p = request.query_params
        try:
            query = _query(request)
        except QueryError as exc:
            return _error(exc.reason, 400, exc.column)
        matching = {
            s.trace_id
            for s in SPANS
            if query.matches(s.document())
            and p.get("service", s.service) == s.service
            and p.get("operation", s.name) == s.name
            and p.get("status", s.status) == s.status
            and s.duration_ns / 1e6 >= float(p.get("min_duration_ms", "0"))
        }
        found = _summaries([s for s in SPANS if s.trace_id in matching])
        return JSONResponse({"traces": found[: int(p.get("limit", "50"))]})

    async def trace(self, request: Request) -> JSONResponse:
        self._seen(request)
        tid = request.path_params["trace_id"]
        spans = [s.to_json() for s in SPANS if s.trace_id == tid]
        logs = [r.to_json() for r in LOGS if r.trace_id == tid]
        if not spans and not logs:
            return _error(f"no trace {tid}", 404)
        return JSONResponse({"trace_id": tid, "spans": spans, "logs": logs})

    async def metrics(self, request: Request) -> JSONResponse:
        self._seen(request)
        return JSONResponse(
            {"metrics": [{"name": n, "kind": m["kind"], "series": len(m["series"])} for n, m in METRICS.items()]}
        )  # fmt: skip

    async def metric(self, request: Request) -> JSONResponse:
        self._seen(request)
        name = request.path_params["name"]
        if name not in METRICS:
            return _error(f"no metric {name}", 404)
        return JSONResponse({"name": name, **METRICS[name]})

    async def metric_range(self, request: Request) -> JSONResponse:
        self._seen(request)
        points = [[T0, 1.0], [T0 + 15_000 * MS, 1.5]]
        return JSONResponse({"name": request.path_params["name"], "series": [{"labels": {"route": "/orders"}, "points": points}]})  # fmt: skip

    async def plain(self, request: Request) -> PlainTextResponse:
        return PlainTextResponse("hello")

    async def services(self, request: Request) -> JSONResponse:
        return JSONResponse({"services": ["inventory", "orders"]})

    async def broken(self, request: Request) -> JSONResponse:
        return _error("store is closed", 500)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/api/logs", self.logs),
                Route("/api/traces", self.traces),
                Route("/api/traces/{trace_id}", self.trace),
                Route("/api/metrics", self.metrics),
                Route("/api/metrics/{name}", self.metric),
                Route("/api/metrics/{name}/range", self.metric_range),
                Route("/plain", self.plain),
                Route("/api/services", self.services),
                Route("/api/stats", self.broken),
            ]
        )


def _wait_for(condition: Callable[[], object], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)  # polling interval of the condition


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, FakeCollector]]:
    fake = FakeCollector()
    config = uvicorn.Config(fake.app(), host="127.0.0.1", port=0, log_level="error", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    _wait_for(lambda: server.started, "the fake collector to start")
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", fake
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def url(served: tuple[str, FakeCollector]) -> str:
    served[1].requests.clear()
    return served[0]


@pytest.fixture
def fake(served: tuple[str, FakeCollector]) -> FakeCollector:
    return served[1]


def run(command: Any, *args: str) -> Result:
    env = {"COLUMNS": "200", "NO_COLOR": "1", "CAIRN_COLLECTOR": None}
    return CliRunner().invoke(command, list(args), env=env, catch_exceptions=False)


# --- cairn logs -------------------------------------------------------------------------
def test_logs_finds_the_seed_query_oldest_first(url: str, fake: FakeCollector) -> None:
    result = run(logs_command, "event:purchase_completed", "AND", "user_id:123", "--collector", url)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "TIME                     SERVICE  LEVEL  MESSAGE",
        "2023-11-14 22:13:20.002  orders   info   purchase_completed  user_id=123",
    ]
    path, params = fake.requests[-1]
    assert path == "/api/logs"
    assert params == {
        "q": "event:purchase_completed AND user_id:123",
        "since": "15m",
        "limit": "100",
    }


def test_logs_without_a_query_lists_all_and_says_when_the_limit_cut(url: str) -> None:
    result = run(logs_command, "--limit", "2", "--collector", url)
    assert result.exit_code == 0
    body = result.stdout.splitlines()[1:]
    assert [line.split("  ")[0] for line in body] == [
        "2023-11-14 22:13:20.070",
        "2023-11-14 22:13:20.900",
    ]
    assert "the newest 2" in result.stderr


def test_logs_with_no_hits_exit_zero_and_say_so(url: str) -> None:
    result = run(logs_command, "user_id:999", "--collector", url)
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "no matches" in result.stderr


def test_a_bad_query_is_shown_with_a_caret_and_never_sent(url: str, fake: FakeCollector) -> None:
    result = run(logs_command, "user_id:(1 OR", "--collector", url)
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert lines[0].startswith("error: invalid query:")
    assert lines[1] == "  user_id:(1 OR"
    assert lines[2].index("^") == 2 + len("user_id:(1 OR")
    assert fake.requests == []


def test_a_query_the_collector_refuses_points_at_its_column(url: str) -> None:
    result = run(logs_command, "unsupported:x", "--collector", url)
    assert result.exit_code == 2
    assert "the collector refused the query: field not indexed at column 1" in result.stderr
    assert "  unsupported:x\n  ^" in result.stderr


def test_logs_json_is_the_api_document(url: str) -> None:
    result = run(logs_command, "level:error", "--json", "--collector", url)
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {"records": [LOGS[1].to_json()]}


def test_since_forms(url: str, fake: FakeCollector) -> None:
    assert run(logs_command, "--since", "2h", "--collector", url).exit_code == 0
    assert fake.requests[-1][1]["since"] == "2h"
    before = time.time_ns()
    assert run(logs_command, "--since", "1.5h", "--until", "2026-01-02T03:04:05Z", "--collector", url).exit_code == 0  # fmt: skip
    params = fake.requests[-1][1]
    assert params["until"] == "2026-01-02T03:04:05Z"
    sent = datetime.datetime.fromisoformat(params["since"]).timestamp()
    assert before / 1e9 - 5400 - 1 <= sent <= time.time() - 5400 + 1
    bad = run(logs_command, "--since", "yesterday", "--collector", url)
    assert bad.exit_code == 2
    assert "neither a duration" in bad.output


# --- cairn traces -----------------------------------------------------------------------
def test_traces_lists_with_filters(url: str, fake: FakeCollector) -> None:
    result = run(
        traces_command, "--service", "inventory", "--min-duration", "75ms", "--status", "error",
        "-q", "name:GET*", "--collector", url,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["TRACE", "START", "DURATION", "ROOT", "SPANS", "ERRORS", "SERVICES"]
    assert lines[1].split() == [
        TRACE, "2023-11-14", "22:13:20.000", "152ms", "orders:", "GET", "/orders/123", "4", "1", "inventory,orders"
    ]  # fmt: skip
    assert len(lines) == 2
    assert fake.requests[-1][1] == {
        "service": "inventory", "min_duration_ms": "75", "status": "error", "q": "name:GET*",
        "since": "1h", "limit": "20",
    }  # fmt: skip


def test_traces_bad_min_duration_is_a_usage_error(url: str) -> None:
    result = run(traces_command, "--min-duration", "100", "--collector", url)
    assert result.exit_code == 2
    assert "not a duration" in result.output


def test_traces_no_matches(url: str) -> None:
    result = run(traces_command, "--operation", "nope", "--collector", url)
    assert (result.exit_code, result.stdout) == (0, "")
    assert "no matches" in result.stderr


# --- cairn trace ------------------------------------------------------------------------
def test_trace_prints_the_seed_tree_and_its_logs(url: str) -> None:
    result = run(trace_command, TRACE, "--collector", url)
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"trace {TRACE} · 4 spans · 2 services · 152ms · 1 error · 2023-11-14 22:13:20.000 UTC\n"
        "\n"
        "GET /orders/123 (152ms)  orders\n"
        "  ├─ db.query (50ms)  orders\n"
        "  └─ inventory.check (100ms)  orders\n"
        "     │ · retry.scheduled attempt=2 +12ms\n"
        "     └─ GET /inventory/items (80ms)  inventory  ✗ error: boom\n"
        "\n"
        "logs (2)\n"
        "TIME          SERVICE    LEVEL  MESSAGE\n"
        "22:13:20.002  orders     info   purchase_completed  user_id=123\n"
        "22:13:20.070  inventory  error  lookup failed  sku=B-1\n"
    )


def test_trace_ascii_and_json(url: str) -> None:
    text = run(trace_command, TRACE, "--ascii", "--collector", url).stdout
    assert "  `- inventory.check (100ms)  orders" in text
    assert "x error: boom" in text
    document = json.loads(run(trace_command, TRACE, "--json", "--collector", url).stdout)
    assert document["trace_id"] == TRACE
    assert [SpanRecord.from_json(s) for s in document["spans"]] == SPANS[:4]


def test_trace_by_a_unique_prefix(url: str, fake: FakeCollector) -> None:
    result = run(trace_command, TRACE[:10].upper(), "--collector", url)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"trace {TRACE} ")
    assert fake.requests[0] == ("/api/traces", {"q": f"trace_id:{TRACE[:10]}*", "since": "7d", "limit": "3"})  # fmt: skip


def test_trace_ambiguous_unknown_and_malformed_ids(url: str) -> None:
    ambiguous = run(trace_command, "4bf92f", "--collector", url)
    assert ambiguous.exit_code == 2
    assert "several trace ids" in ambiguous.stderr
    unknown = run(trace_command, "0" * 32, "--collector", url)
    assert unknown.exit_code == 1
    assert f"no trace {'0' * 32}" in unknown.stderr
    missing_prefix = run(trace_command, "abcdef", "--collector", url)
    assert missing_prefix.exit_code == 1
    malformed = run(trace_command, "not-a-trace", "--collector", url)
    assert malformed.exit_code == 2
    assert "32 hex digits" in malformed.output


# --- cairn metrics ----------------------------------------------------------------------
def test_metrics_lists_names(url: str) -> None:
    result = run(metrics_command, "--collector", url)
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        "NAME                          KIND       SERIES",
        "http_server_duration_seconds  histogram       1",
        "orders_total                  counter         1",
    ]


def test_metrics_summary_of_one_histogram(url: str, fake: FakeCollector) -> None:
    result = run(
        metrics_command, "http_server_duration_seconds", "--by", "route", "--by", "method,route",
        "--since", "10m", "--collector", url,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "http_server_duration_seconds (histogram)",
        "ROUTE     P50   P90    P99  RATE/S",
        "/orders  12ms  50ms  250ms     2.5",
    ]
    assert fake.requests[-1] == (
        "/api/metrics/http_server_duration_seconds",
        {"by": "route,method", "since": "10m"},
    )


def test_metrics_counter_json_and_unknown(url: str) -> None:
    counter = run(metrics_command, "orders_total", "--collector", url)
    assert counter.stdout.splitlines()[1:] == ["SERVICE  RATE/S", "orders      0.5"]
    document = json.loads(run(metrics_command, "orders_total", "--json", "--collector", url).stdout)
    assert document == {"name": "orders_total", **METRICS["orders_total"]}
    unknown = run(metrics_command, "nope", "--collector", url)
    assert unknown.exit_code == 1
    assert "no metric 'nope'" in unknown.stderr
    assert run(metrics_command, "--by", "x", "--collector", url).exit_code == 2


# --- reaching the collector -------------------------------------------------------------
def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("command", [logs_command, traces_command, metrics_command])
def test_no_collector_exits_3_and_says_how_to_start_one(command: Any) -> None:
    result = run(command, "--collector", f"127.0.0.1:{_closed_port()}")
    assert result.exit_code == 3
    assert "error: no collector at http://127.0.0.1:" in result.stderr
    assert "`cairn collector` or `cairn up`, or pass --collector" in result.stderr


def test_a_bad_collector_url_is_a_usage_error() -> None:
    result = run(logs_command, "--collector", "ftp://x")
    assert result.exit_code == 2
    assert "not a collector URL" in result.output


def test_the_environment_names_the_collector(url: str, fake: FakeCollector) -> None:
    result = CliRunner().invoke(metrics_command, [], env={"CAIRN_COLLECTOR": url + "/"})
    assert result.exit_code == 0
    assert fake.requests[-1][0] == "/api/metrics"


def test_url_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CAIRN_COLLECTOR", raising=False)
    assert resolve_collector_url() == "http://127.0.0.1:4318"
    monkeypatch.setenv("CAIRN_COLLECTOR", "collector.local:9000")
    assert resolve_collector_url() == "http://collector.local:9000"
    assert resolve_collector_url("https://c.example/") == "https://c.example"


# --- the client as a library ------------------------------------------------------------
def test_client_returns_records(url: str) -> None:
    with CollectorClient(url) as client:
        assert client.logs("sku:B-1") == [LOGS[1]]
        assert [t.trace_id for t in client.traces(status="error")] == [TRACE]
        detail = client.trace(TRACE)
        assert detail is not None
        assert (detail.spans, detail.logs) == (SPANS[:4], LOGS[:2])
        assert client.trace("0" * 32) is None
        assert [m.name for m in client.metrics()] == list(METRICS)
        found = client.metric("orders_total", by=["service"])
        assert found is not None
        assert found[0] == "counter"
        assert found[1][0].rate == 0.5
        assert client.metric("nope") is None
        assert client.services() == ["inventory", "orders"]
        with pytest.raises(QueryError) as refused:
            client.logs("unsupported:1")
        assert refused.value.column == 1


def test_client_errors_carry_context(url: str) -> None:
    from cairn.collector._client import CollectorRefused

    with CollectorClient(url) as client, pytest.raises(CollectorRefused) as refused:
        client.stats()
    assert (refused.value.status, refused.value.reason) == (500, "store is closed")
    dead = f"http://127.0.0.1:{_closed_port()}"
    with CollectorClient(dead) as client, pytest.raises(CollectorUnavailable) as unavailable:
        client.services()
    assert unavailable.value.url == dead


def test_client_metric_range_and_a_server_that_is_not_a_collector(
    url: str, fake: FakeCollector
) -> None:
    from cairn.collector._client import CollectorRefused

    with CollectorClient(url) as client:
        (series,) = client.metric_range(
            "orders_total", by=["route"], since="30m", step=15, stat="p99"
        )
        assert series.labels == {"route": "/orders"}
        assert series.points == [(T0, 1.0), (T0 + 15_000 * MS, 1.5)]
        assert fake.requests[-1] == (
            "/api/metrics/orders_total/range",
            {"by": "route", "since": "30m", "step": "15", "stat": "p99"},
        )
        with pytest.raises(CollectorRefused, match="not JSON; is this a cairn collector"):
            client.get_json("/plain")


# --- against the real collector (Store + HTTP server) --------------------------------------
@pytest.fixture(scope="module")
def real_collector() -> Iterator[str]:
    from cairn.collector._records import Sample
    from cairn.collector._server import Collector, serve_in_thread
    from cairn.collector._store import Store

    now = time.time_ns()
    base = now - 60_000 * MS  # inside every default window
    shift = base - T0
    store = Store(None)
    store.add_spans(
        [SpanRecord.from_json({**s.to_json(), "start_ns": s.start_ns + shift, "end_ns": s.end_ns + shift,
                               "events": [{**e.to_json(), "time_ns": e.time_ns + shift} for e in s.events]})
         for s in SPANS]
    )  # fmt: skip
    store.add_logs(
        [LogRecord.from_json({**r.to_json(), "time_ns": r.time_ns + shift}) for r in LOGS]
    )
    labels = {"service": "orders"}
    store.add_samples(
        [
            Sample("orders_total", labels, now - 40_000 * MS, 10.0, "counter", "orders_total"),
            Sample("orders_total", labels, now - 10_000 * MS, 40.0, "counter", "orders_total"),
        ]
    )
    # A histogram: 30 requests in 30 s, 20 of them within 50 ms, all within 250 ms.
    samples = []
    for at, scale in ((now - 40_000 * MS, 0), (now - 10_000 * MS, 1)):
        for le, count in (("0.05", 20), ("0.25", 30), ("+Inf", 30)):
            samples.append(
                Sample(
                    "http_seconds_bucket",
                    {**labels, "le": le},
                    at,
                    count * scale,
                    "histogram",
                    "http_seconds",
                )
            )
        samples.append(
            Sample("http_seconds_count", labels, at, 30 * scale, "histogram", "http_seconds")
        )
        samples.append(
            Sample("http_seconds_sum", labels, at, 1.5 * scale, "histogram", "http_seconds")
        )
    store.add_samples(samples)
    try:
        with serve_in_thread(Collector(store)) as url:
            yield url
    finally:
        store.close()


def test_real_collector_logs_traces_trace_metrics(real_collector: str) -> None:
    url = real_collector
    logs = run(logs_command, "user_id:123 AND event:purchase_completed", "--collector", url)
    assert logs.exit_code == 0, logs.output
    assert [line.split()[2:] for line in logs.stdout.splitlines()[1:]] == [
        ["orders", "info", "purchase_completed", "user_id=123"]
    ]
    bad = run(logs_command, "--since", "1.5h", "--limit", "1", "--json", "--collector", url)
    assert bad.exit_code == 0, bad.output
    assert [r["body"] for r in json.loads(bad.stdout)["records"]] == ["purchase_completed"]

    traces = run(
        traces_command, "--service", "inventory", "--min-duration", "75ms", "--collector", url
    )
    assert traces.exit_code == 0, traces.output
    rows = traces.stdout.splitlines()[1:]
    assert [row.split()[0] for row in rows] == [TRACE]
    assert rows[0].split()[3:] == [
        "152ms",
        "orders:",
        "GET",
        "/orders/123",
        "4",
        "1",
        "inventory,orders",
    ]

    tree = run(trace_command, TRACE[:8], "--collector", url)
    assert tree.exit_code == 0, tree.output
    assert tree.stdout.splitlines()[2:7] == [
        "GET /orders/123 (152ms)  orders",
        "  ├─ db.query (50ms)  orders",
        "  └─ inventory.check (100ms)  orders",
        "     │ · retry.scheduled attempt=2 +12ms",
        "     └─ GET /inventory/items (80ms)  inventory  ✗ error: boom",
    ]
    assert run(trace_command, "f" * 32, "--collector", url).exit_code == 1

    names = run(metrics_command, "--collector", url)
    assert names.stdout.splitlines()[1:] == [
        "http_seconds  histogram       1",
        "orders_total  counter         1",
    ]
    counter = run(
        metrics_command, "orders_total", "--by", "service", "--since", "5m", "--collector", url
    )
    assert counter.exit_code == 0, counter.output
    assert counter.stdout.splitlines()[1:] == ["SERVICE  RATE/S", "orders        1"]
    histogram = run(metrics_command, "http_seconds", "--collector", url)
    assert histogram.exit_code == 0, histogram.output
    # Prometheus's histogram_quantile: p50 is the 15th of 30, 3/4 into the first bucket.
    assert [line.split() for line in histogram.stdout.splitlines()[1:]] == [
        ["SERVICE", "P50", "P90", "P99", "RATE/S"],
        ["orders", "37.5ms", "190ms", "244ms", "1"],
    ]
    assert run(metrics_command, "nope_total", "--collector", url).exit_code == 1
    query_error = run(logs_command, "--collector", url, "--", "user_id:>")
    assert query_error.exit_code == 2
