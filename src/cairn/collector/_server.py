"""The collector's HTTP face: OTLP/HTTP in, the JSON query API out (Starlette).

::

    store = Store(".cairn/collector/collector.db")
    collector = Collector(store, registry="sqlite:///.cairn/registry.db")
    # serve collector.app with uvicorn (its lifespan starts the writer and the scraper),
    # or: with serve_in_thread(collector) as url: ...

OTLP: ``POST /v1/{traces,logs,metrics}``, protobuf or JSON, optionally gzip. The body
is limited (``max_body_bytes``, also after decompression: a gzip bomb gets 413), checked
at once (400 names what was wrong) and offered to the ingest queue: full → 429, store
failing or shutting down → 503, both with ``Retry-After``. Protobuf spans are parsed and
checked here but walked into store rows by the writer thread (``_otlp_rows``); logs,
metrics and OTLP/JSON are decoded here. Queries run in worker threads.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import re
import threading
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from functools import partial
from typing import Any

import anyio.to_thread
import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cairn.collector._ingest import SIGNALS, IngestQueue, Writer
from cairn.collector._otlp import OtlpDecodeError, decode_logs, decode_metrics, decode_spans
from cairn.collector._otlp_rows import parse_spans
from cairn.collector._query_eval import Query
from cairn.collector._query_parse import QueryError, parse_query
from cairn.collector._scrape import Scraper
from cairn.collector._store import Store

__all__ = ["Collector", "parse_time", "serve_in_thread"]

# (signal, JSON?) → decoder. Protobuf spans are only checked here (see _otlp_rows).
_DECODERS: dict[tuple[str, bool], Callable[[bytes], Sequence[Any]]] = {
    ("spans", False): parse_spans,
    ("spans", True): partial(decode_spans, json=True),
    ("logs", False): decode_logs,
    ("logs", True): partial(decode_logs, json=True),
    ("samples", False): decode_metrics,
    ("samples", True): partial(decode_metrics, json=True),
}
_OK_JSON = b"{}"  # an empty Export*ServiceResponse, in either encoding
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")
_UNITS = {"ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_STATS = frozenset({"rate", "latest", "p50", "p90", "p99"})
_INLINE_DECODE = 256 * 1024  # bigger bodies are decoded in a worker thread


class _Refusal(Exception):
    def __init__(self, status: int, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


def parse_time(text: str | None, *, now_ns: int | None = None, what: str = "since") -> int | None:
    """``15m`` / ``2h`` / ``30s`` / ``7d`` (that long ago) or an ISO 8601 time → Unix ns.

    Empty → ``None``. A naive ISO time is UTC. Raises ``ValueError`` naming ``what``."""
    if text is None or not text.strip():
        return None
    now = time.time_ns() if now_ns is None else now_ns
    match = _DURATION.match(text)
    if match:
        return now - int(float(match[1]) * _UNITS[match[2]] * 1e9)
    try:
        moment = _dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{what}={text!r} is neither a duration (15m, 2h, 30s, 7d) nor an ISO 8601 time"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_dt.UTC)
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not an integer") from None
    if not low <= value <= high:
        raise ValueError(f"{name}={value} must be from {low} to {high}")
    return value


class Collector:
    """The receiver, the writer thread and the scraper around one :class:`Store`.

    ``app`` is the ASGI application; its lifespan starts and stops the rest (or call
    :meth:`start` / :meth:`stop`). Settings (keyword-only): ``max_body_bytes`` (per
    request, compressed and decompressed, default 8 MiB), ``queue_records`` (records
    accepted but not yet written, default 200,000), ``batch_records`` (per store write),
    ``linger_s`` (how long the writer waits to fill a small batch, default 0.1 s),
    ``retry_after_s`` (the ``Retry-After`` of 429/503), ``retention_interval_s``,
    ``registry`` (a registry URL or ``cairn.discovery.Registry`` to scrape; ``None``:
    no scraping), ``scrape_interval_s``, ``scrape_timeout_s``. The store stays the
    caller's: :meth:`stop` does not close it.
    """

    def __init__(
        self,
        store: Store,
        *,
        max_body_bytes: int = 8 << 20,
        queue_records: int = 200_000,
        batch_records: int = 20_000,
        linger_s: float = 0.1,
        retry_after_s: int = 1,
        retention_interval_s: float = 60.0,
        drain_timeout_s: float = 30.0,
        registry: Any = None,
        scrape_interval_s: float = 15.0,
        scrape_timeout_s: float = 5.0,
    ) -> None:
        if max_body_bytes <= 0:
            raise ValueError(f"max_body_bytes must be positive, not {max_body_bytes}")
        if retry_after_s < 0:
            raise ValueError(f"retry_after_s must be >= 0, not {retry_after_s}")
        self.store = store
        self.max_body_bytes = max_body_bytes
        self.retry_after_s = retry_after_s
        self.queue = IngestQueue(queue_records)
        self.writer = Writer(
            store,
            self.queue,
            batch_records=batch_records,
            linger_s=linger_s,
            retention_interval_s=retention_interval_s,
            drain_timeout_s=drain_timeout_s,
        )
        self.scraper: Scraper | None = None
        if registry is not None:
            self.scraper = Scraper(
                registry, self.submit, interval_s=scrape_interval_s, timeout_s=scrape_timeout_s
            )
        self.accepted = dict.fromkeys(SIGNALS, 0)
        self.refused = dict.fromkeys(SIGNALS, 0)
        self.refused_requests: dict[str, int] = {}
        self._lock = threading.Lock()
        self._closing = False
        self._started = False
        self.metrics_registry = CollectorRegistry(auto_describe=True)
        self._m_accepted = Counter(
            "cairn_collector_accepted_records", "Records accepted (enqueued), by signal.",
            ["signal"], registry=self.metrics_registry,
        )  # fmt: skip
        self._m_refused = Counter(
            "cairn_collector_refused_records",
            "Decoded records refused for overload (429) or unavailability (503), by signal.",
            ["signal", "code"], registry=self.metrics_registry,
        )  # fmt: skip
        self._m_requests = Counter(
            "cairn_collector_refused_requests",
            "OTLP requests refused, by signal and HTTP status.",
            ["signal", "code"], registry=self.metrics_registry,
        )  # fmt: skip
        queued = Gauge(
            "cairn_collector_queued_records", "Records accepted and not yet written.",
            registry=self.metrics_registry,
        )  # fmt: skip
        queued.set_function(lambda: self.queue.records)
        for signal in SIGNALS:
            self._m_accepted.labels(signal)
        self.app = self._build_app()

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        """Start the writer thread (idempotent)."""
        self._started = True
        self.writer.start()

    def stop(self) -> None:
        """Refuse new data (503), write everything accepted, stop the writer."""
        self._closing = True
        self.writer.stop()

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        self.start()
        async with contextlib.AsyncExitStack() as stack:
            if self.scraper is not None:
                await stack.enter_async_context(self.scraper.running())
            try:
                yield
            finally:
                await stack.aclose()
                await anyio.to_thread.run_sync(self.stop)

    # -- the write path -----------------------------------------------------------------

    def submit(self, signal: str, records: Sequence[Any]) -> str | None:
        """Offer decoded records; ``None`` when accepted, else why not (``full``,
        ``closed``, ``failing``). Counts both."""
        if self._closing:
            verdict: str | None = "closed"
        elif self.writer.failing:
            verdict = "failing"
        else:
            verdict = self.queue.offer(signal, records) if records else None
        with self._lock:
            if verdict is None:
                self.accepted[signal] += len(records)
            else:
                self.refused[signal] += len(records)
        if verdict is None:
            self._m_accepted.labels(signal).inc(len(records))
        else:
            code = "429" if verdict == "full" else "503"
            self._m_refused.labels(signal, code).inc(len(records))
        return verdict

    def _count_refusal(self, signal: str, status: int) -> None:
        key = str(status)
        with self._lock:
            self.refused_requests[key] = self.refused_requests.get(key, 0) + 1
        self._m_requests.labels(signal, key).inc()

    async def _read_body(self, request: Request) -> bytes:
        limit = self.max_body_bytes
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            raise _Refusal(413, f"request body of {length} bytes is over the limit of {limit}")
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _Refusal(413, f"request body is over the limit of {limit} bytes")
            chunks.append(chunk)
        body = b"".join(chunks)
        encoding = request.headers.get("content-encoding", "identity").strip().lower()
        if encoding == "gzip":
            inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
            try:
                body = inflater.decompress(body, limit + 1)
            except zlib.error as exc:
                raise _Refusal(
                    400, f"Content-Encoding: gzip, but the body is not gzip: {exc}"
                ) from None
            if len(body) > limit or inflater.unconsumed_tail:
                raise _Refusal(413, f"decompressed request body is over the limit of {limit} bytes")
            if not inflater.eof:
                raise _Refusal(400, "Content-Encoding: gzip, but the gzip stream is truncated")
        elif encoding not in ("identity", ""):
            raise _Refusal(
                415, f"Content-Encoding {encoding!r} is not supported: send gzip or none"
            )
        return body

    async def _receive(self, signal: str, request: Request) -> Response:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        try:
            if content_type == "application/x-protobuf":
                json = False
            elif content_type == "application/json":
                json = True
            else:
                raise _Refusal(
                    415,
                    f"Content-Type {content_type or '(none)'!r} is not OTLP: "
                    "send application/x-protobuf or application/json",
                )
            body = await self._read_body(request)
            decode = _DECODERS[signal, json]
            try:
                if len(body) > _INLINE_DECODE:
                    records = await anyio.to_thread.run_sync(decode, body)
                else:
                    records = decode(body)
            except OtlpDecodeError as exc:
                raise _Refusal(400, str(exc)) from None
            verdict = self.submit(signal, records)
            if verdict == "full":
                raise _Refusal(
                    429, "the collector's ingest queue is full: retry later",
                    retry_after=self.retry_after_s,
                )  # fmt: skip
            if verdict is not None:
                why = "shutting down" if verdict == "closed" else "unable to write to its store"
                raise _Refusal(
                    503, f"the collector is {why}: retry later", retry_after=self.retry_after_s
                )
        except _Refusal as refusal:
            self._count_refusal(signal, refusal.status)
            headers = {}
            if refusal.retry_after is not None:
                headers["Retry-After"] = str(refusal.retry_after)
            return JSONResponse(
                {"error": refusal.message}, status_code=refusal.status, headers=headers
            )
        if json:
            return Response(_OK_JSON, media_type="application/json")
        return Response(b"", media_type="application/x-protobuf")

    # -- queries --------------------------------------------------------------------------

    async def _query(
        self, request: Request, handler: Callable[[], Awaitable[Response]]
    ) -> Response:
        del request
        try:
            return await handler()
        except QueryError as exc:
            return _error(400, exc.message, column=exc.column, query=exc.query)
        except ValueError as exc:
            return _error(400, str(exc))

    @staticmethod
    def _q(request: Request) -> Query | None:
        text = request.query_params.get("q")
        return parse_query(text) if text and text.strip() else None

    async def _logs(self, request: Request) -> Response:
        async def run() -> Response:
            p = request.query_params
            call = partial(
                self.store.search_logs, self._q(request),
                since_ns=parse_time(p.get("since")), until_ns=parse_time(p.get("until"), what="until"),
                limit=_int_param(request, "limit", 100, 1, 10_000),
            )  # fmt: skip
            records = await anyio.to_thread.run_sync(call)
            return _json({"records": [r.to_json() for r in records]})

        return await self._query(request, run)

    async def _traces(self, request: Request) -> Response:
        async def run() -> Response:
            p = request.query_params
            min_ms = p.get("min_duration_ms")
            try:
                min_ns = int(float(min_ms) * 1e6) if min_ms else None
            except ValueError:
                raise ValueError(f"min_duration_ms={min_ms!r} is not a number") from None
            call = partial(
                self.store.find_traces, service=p.get("service") or None,
                operation=p.get("operation") or None, min_duration_ns=min_ns,
                status=p.get("status") or None, query=self._q(request),
                since_ns=parse_time(p.get("since")), until_ns=parse_time(p.get("until"), what="until"),
                limit=_int_param(request, "limit", 50, 1, 10_000),
            )  # fmt: skip
            traces = await anyio.to_thread.run_sync(call)
            return _json({"traces": [t.to_json() for t in traces]})

        return await self._query(request, run)

    async def _trace(self, request: Request) -> Response:
        trace_id = str(request.path_params["trace_id"]).lower()
        if not re.fullmatch(r"[0-9a-f]{32}", trace_id):
            return _error(400, f"trace id {trace_id!r} must be 32 hex digits")
        trace = await anyio.to_thread.run_sync(self.store.get_trace, trace_id)
        if trace is None:
            return _error(
                404, f"no trace {trace_id} in the store (never received, or past retention)"
            )
        return _json(trace.to_json())

    async def _metrics_list(self, request: Request) -> Response:
        infos = await anyio.to_thread.run_sync(self.store.metric_names)
        return _json({"metrics": [i.to_json() for i in infos]})

    async def _kind(self, name: str) -> str | None:
        infos = await anyio.to_thread.run_sync(self.store.metric_names)
        return next((i.kind for i in infos if i.name == name), None)

    @staticmethod
    def _by(request: Request) -> tuple[str, ...]:
        return tuple(b.strip() for b in request.query_params.get("by", "").split(",") if b.strip())

    async def _metric(self, request: Request) -> Response:
        async def run() -> Response:
            name = str(request.path_params["name"])
            since = parse_time(request.query_params.get("since") or "5m")
            kind = await self._kind(name)
            if kind is None:
                return _error(404, f"no metric {name!r}: GET /api/metrics lists the known ones")
            call = partial(self.store.metric_summary, name, by=self._by(request), since_ns=since)
            series = await anyio.to_thread.run_sync(call)
            return _json({"name": name, "kind": kind, "series": [s.to_json() for s in series]})

        return await self._query(request, run)

    async def _metric_range(self, request: Request) -> Response:
        async def run() -> Response:
            p = request.query_params
            name = str(request.path_params["name"])
            stat = p.get("stat") or "rate"
            if stat not in _STATS:
                raise ValueError(f"stat={stat!r} must be one of {', '.join(sorted(_STATS))}")
            try:
                step = float(p.get("step") or 15)
            except ValueError:
                raise ValueError(f"step={p.get('step')!r} is not a number of seconds") from None
            if not 0 < step <= 86400:
                raise ValueError(f"step={step} must be seconds in (0, 86400]")
            since = parse_time(p.get("since") or "1h") or 0
            until = parse_time(p.get("until"), what="until")
            if until is not None and until <= since:
                raise ValueError("until must be later than since")
            if ((until or time.time_ns()) - since) / (step * 1e9) > 11_000:
                raise ValueError("too many steps (over 11,000): raise step or narrow since/until")
            kind = await self._kind(name)
            call = partial(
                self.store.metric_range, name, by=self._by(request), since_ns=since,
                until_ns=until, step_s=step, stat=stat,
            )  # fmt: skip
            series = await anyio.to_thread.run_sync(call)
            return _json({"name": name, "kind": kind, "series": [s.to_json() for s in series]})

        return await self._query(request, run)

    async def _metric_exemplars(self, request: Request) -> Response:
        async def run() -> Response:
            p = request.query_params
            name = str(request.path_params["name"])
            kind = await self._kind(name)  # None for a series name (``x_bucket``)
            call = partial(
                self.store.exemplars, name, service=p.get("service") or None,
                since_ns=parse_time(p.get("since") or "1h"),
                until_ns=parse_time(p.get("until"), what="until"),
                limit=_int_param(request, "limit", 200, 1, 10_000),
            )  # fmt: skip
            found = await anyio.to_thread.run_sync(call)
            if kind is None and not found:
                return _error(
                    404, f"no metric {name!r} with exemplars: GET /api/metrics lists the known ones"
                )
            return _json({"name": name, "kind": kind, "exemplars": [e.to_json() for e in found]})

        return await self._query(request, run)

    async def _services(self, request: Request) -> Response:
        return _json({"services": await anyio.to_thread.run_sync(self.store.services)})

    def stats_json(self) -> dict[str, Any]:
        """What ``/api/stats`` answers, without the store part."""
        with self._lock:
            accepted = dict(self.accepted)
            refused = dict(self.refused)
            requests = dict(self.refused_requests)
        return {
            "accepted": accepted,
            "refused": refused,
            "refused_requests": requests,
            "written": dict(self.writer.written),
            "lost": dict(self.writer.lost),
            "queue": {"records": self.queue.records, "capacity": self.queue.capacity},
            "store_failing": self.writer.failing,
            "store_error": self.writer.last_error,
            "scrape_targets": self.scraper.targets() if self.scraper else [],
        }

    async def _stats(self, request: Request) -> Response:
        store = await anyio.to_thread.run_sync(self.store.stats)
        return _json({**self.stats_json(), "store": store.to_json()})

    async def _prometheus(self, request: Request) -> Response:
        return Response(
            generate_latest(self.metrics_registry),
            media_type="text/plain; version=0.0.4; charset=utf-8",
        )

    def _build_app(self) -> Starlette:
        def otlp(signal: str) -> Callable[[Request], Awaitable[Response]]:
            return partial(self._receive, signal)

        routes = [
            Route("/v1/traces", otlp("spans"), methods=["POST"]),
            Route("/v1/logs", otlp("logs"), methods=["POST"]),
            Route("/v1/metrics", otlp("samples"), methods=["POST"]),
            Route("/api/logs", self._logs),
            Route("/api/traces", self._traces),
            Route("/api/traces/{trace_id}", self._trace),
            Route("/api/metrics", self._metrics_list),
            Route("/api/metrics/{name}", self._metric),
            Route("/api/metrics/{name}/range", self._metric_range),
            Route("/api/metrics/{name}/exemplars", self._metric_exemplars),
            Route("/api/services", self._services),
            Route("/api/stats", self._stats),
            Route("/metrics", self._prometheus),
        ]
        return Starlette(routes=routes, lifespan=self._lifespan)


def _json(data: Any) -> Response:
    return Response(
        orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS), media_type="application/json"
    )


@contextlib.contextmanager
def serve_in_thread(
    collector: Collector, *, host: str = "127.0.0.1", port: int = 0, timeout: float = 30.0
) -> Iterator[str]:
    """Serve ``collector.app`` with uvicorn in a background thread; yields its base URL.

    For tests, benchmarks and embedding; on exit the server shuts down (draining the
    ingest queue through the app's lifespan)."""
    import uvicorn

    config = uvicorn.Config(
        collector.app, host=host, port=port, lifespan="on", log_config=None,
        access_log=False, log_level="warning",
    )  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="cairn-collector-http", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"the collector did not start on {host}:{port} within {timeout}s")
        time.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()
    try:
        yield f"http://{host}:{bound[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout)
