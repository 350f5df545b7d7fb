"""What the three pillars cost a trivial FastAPI endpoint: bare vs stock stack vs cairn.

Run: ``.venv/bin/python bench/observability.py [--quick]``.

Server side: each variant is a FastAPI app with one trivial endpoint
(``GET /items/{item_id}``), served by uvicorn in a fresh subprocess each round:

- ``bare``: no instrumentation;
- ``stock``: opentelemetry-instrumentation-fastapi (SDK tracer provider, batch
  processor) + prometheus-fastapi-instrumentator + a structlog JSON request log
  line from a pure-ASGI middleware;
- ``cairn``: ``cairn.observability.setup()`` + ``instrument(app)``, all three
  pillars on, 100% sampling. ``BENCH_OFF=logs``, ``traces`` or ``logs,traces``
  turns the request log line and/or tracing off in this variant, to see what
  each pillar costs.

Spans go to an exporter that drops them and logs go to /dev/null in both
instrumented variants, so the network is not measured, only the per-request
work. A load driver in this process (a separate process from the server) keeps
``--connections`` keep-alive connections busy over loopback. Variants alternate
within each round (order rotated per round), ``--requests`` per variant per
round, ``--rounds`` rounds (>= 7 for the published numbers: this machine's noise
between two identical servers is ~4%, up to 11% a round). Reported: median
req/s, p50/p99 latency, and the median (min..max) per-round ratio to bare;
then each variant's per-request overhead over bare, and cairn's share of the
stock stack's.

Micro: ns per log line, per span and per metric update, cairn against
structlog, the OpenTelemetry SDK and prometheus_client used directly.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
import timeit
from collections.abc import Callable, Sequence
from importlib.metadata import version
from typing import Any

VARIANTS = ("bare", "stock", "cairn")
PATH = b"/items/42"


# -- server side (runs in the subprocess) -----------------------------------


def build_app(variant: str) -> Any:
    from fastapi import FastAPI

    # FastAPI's own telemetry would start spans as soon as a global provider
    # exists; the stock stack uses the contrib instrumentation instead.
    app = FastAPI(telemetry={"tracing": False, "metrics": False, "logs": False})

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"item_id": item_id}

    if variant == "bare":
        return app
    if variant == "stock":
        return _stock(app)
    if variant == "cairn":
        import cairn.observability as obs

        off = os.environ.get("BENCH_OFF", "")
        obs.setup(
            service="bench",
            traces="none",
            span_exporters=[] if "traces" in off else [_null_exporter()],
            sample_ratio=0.0 if "traces" in off else 1.0,
            log_stream=open(os.devnull, "wb"),  # noqa: SIM115 - lives as long as the server
        )
        return obs.instrument(app, log_requests="logs" not in off)
    raise SystemExit(f"unknown variant {variant!r}")


def _null_exporter() -> Any:
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    class Null(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    return Null()


def _stock(app: Any) -> Any:
    import orjson
    import structlog
    from opentelemetry import trace
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from prometheus_fastapi_instrumentator import Instrumentator

    provider = TracerProvider(resource=Resource.create({"service.name": "bench"}))
    provider.add_span_processor(BatchSpanProcessor(_null_exporter()))
    trace.set_tracer_provider(provider)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(serializer=orjson.dumps),
        ],
        logger_factory=structlog.BytesLoggerFactory(open(os.devnull, "wb")),  # noqa: SIM115
        cache_logger_on_first_use=True,
    )
    log = structlog.get_logger()
    Instrumentator().instrument(app).expose(app)
    FastAPIInstrumentor.instrument_app(app)

    async def request_log(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        status = 500
        start = time.perf_counter()

        async def send_status(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await app(scope, receive, send_status)
        finally:
            span = trace.get_current_span().get_span_context()
            log.info(
                "request",
                method=scope["method"],
                path=scope["path"],
                status=status,
                duration_ms=(time.perf_counter() - start) * 1000,
                trace_id=trace.format_trace_id(span.trace_id),
            )

    return request_log


def serve(variant: str, fd: int) -> None:
    import uvicorn

    # socket(fileno=) finds the family itself; uvicorn's --fd path makes an
    # AF_UNIX socket object, on which asyncio skips TCP_NODELAY, and every
    # response then waits ~40 ms for a delayed ACK.
    sock = socket.socket(fileno=fd)
    config = uvicorn.Config(
        build_app(variant), log_level="warning", access_log=False, lifespan="off"
    )
    asyncio.run(uvicorn.Server(config).serve(sockets=[sock]))


# -- load driver (this process) ---------------------------------------------


def start_server(variant: str) -> tuple[subprocess.Popen[bytes], int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    port = sock.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve", variant, "--fd", str(sock.fileno())],
        pass_fds=(sock.fileno(),),
        stdout=subprocess.DEVNULL,
    )
    sock.close()
    return process, port


def stop_server(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=15)


async def _connection(port: int, count: int, latencies: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = b"GET " + PATH + b" HTTP/1.1\r\nHost: bench\r\n\r\n"
    try:
        for _ in range(count):
            start = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"bad response: {head[:40]!r}")
            latencies.append(time.perf_counter() - start)
    finally:
        writer.close()


async def _wait_ready(port: int, deadline: float) -> None:
    while True:
        try:
            await _connection(port, 1, [])
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)  # polling a starting server, bounded by deadline


async def drive(port: int, *, requests: int, connections: int, warmup: int) -> dict[str, float]:
    await _wait_ready(port, time.monotonic() + 30)
    per = max(1, warmup // connections)
    await asyncio.gather(*(_connection(port, per, []) for _ in range(connections)))
    latencies: list[float] = []
    per = max(1, requests // connections)
    start = time.perf_counter()
    await asyncio.gather(*(_connection(port, per, latencies) for _ in range(connections)))
    elapsed = time.perf_counter() - start
    latencies.sort()
    return {
        "rps": len(latencies) / elapsed,
        "p50": latencies[len(latencies) // 2] * 1000,
        "p99": latencies[int(len(latencies) * 0.99)] * 1000,
    }


def macro(args: argparse.Namespace) -> dict[str, list[dict[str, float]]]:
    results: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
    for round_ in range(args.rounds):
        order = VARIANTS[round_ % 3 :] + VARIANTS[: round_ % 3]
        for variant in order:
            process, port = start_server(variant)
            try:
                result = asyncio.run(
                    drive(
                        port,
                        requests=args.requests,
                        connections=args.connections,
                        warmup=args.warmup,
                    )
                )
            finally:
                stop_server(process)
            results[variant].append(result)
            print(
                f"  round {round_ + 1}/{args.rounds} {variant:<6}"
                f" {result['rps']:8.0f} req/s  p50 {result['p50']:.2f} ms  p99 {result['p99']:.2f} ms",
                flush=True,
            )
    return results


def report_macro(results: dict[str, list[dict[str, float]]]) -> None:
    bare = results["bare"]
    print("\n| variant | req/s (median) | ratio to bare, median (min..max) | p50 ms | p99 ms |")
    print("|---|---|---|---|---|")
    overhead: dict[str, float] = {}
    kept: dict[str, float] = {}
    for variant in VARIANTS:
        runs = results[variant]
        ratios = [run["rps"] / base["rps"] for run, base in zip(runs, bare, strict=True)]
        kept[variant] = statistics.median(ratios)
        rps = statistics.median(run["rps"] for run in runs)
        print(
            f"| {variant} | {rps:.0f} | {statistics.median(ratios):.1%} "
            f"({min(ratios):.1%}..{max(ratios):.1%}) "
            f"| {statistics.median(r['p50'] for r in runs):.2f} "
            f"| {statistics.median(r['p99'] for r in runs):.2f} |"
        )
        overhead[variant] = 1e6 / rps - 1e6 / statistics.median(b["rps"] for b in bare)
    print(
        f"\nper-request overhead over bare (server CPU-bound, from median req/s): "
        f"stock {overhead['stock']:.0f} us, cairn {overhead['cairn']:.0f} us; "
        f"cairn/stock = {overhead['cairn'] / overhead['stock']:.2f} (target <= 0.33)"
        if overhead["stock"] > 0
        else "\nstock stack showed no overhead in this run (too short or too noisy)"
    )
    met = "met" if kept["cairn"] >= 0.85 else "NOT met"
    print(
        f"throughput kept by cairn: {kept['cairn']:.1%} of bare, median of {len(bare)} rounds "
        f"(target >= 85%: {met}; one round's spread here is +-5 points)"
    )


# -- micro ------------------------------------------------------------------


def _ns(fn: Callable[[], object], number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e9


def micro(number: int) -> list[tuple[str, float, float]]:
    import orjson
    import structlog
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from prometheus_client import CollectorRegistry, Counter, Histogram

    import cairn.observability as obs

    rows: list[tuple[str, float, float]] = []
    sink = open(os.devnull, "wb")  # noqa: SIM115

    # Plain structlog, as its docs configure JSON output (orjson, bytes logger).
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(serializer=orjson.dumps),
        ],
        logger_factory=structlog.BytesLoggerFactory(sink),
        cache_logger_on_first_use=True,
    )
    plain = structlog.get_logger()
    structlog_ns = _ns(lambda: plain.info("purchase_completed", user_id=7, price=19.99), number)
    structlog.reset_defaults()

    provider = TracerProvider(resource=Resource.create({"service.name": "bench"}))
    processor = BatchSpanProcessor(_null_exporter(), max_queue_size=number * 6)
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("bench")

    def sdk_span() -> None:
        with tracer.start_as_current_span("db.query"):
            pass

    sdk_ns = _ns(sdk_span, number)
    provider.shutdown()

    registry = CollectorRegistry()
    counter = Counter("r_total", "r", ["method", "endpoint", "status"], registry=registry)
    histogram = Histogram("d_seconds", "d", ["method", "endpoint"], registry=registry)

    def prom() -> None:
        counter.labels("GET", "/items/{item_id}", "200").inc()
        histogram.labels("GET", "/items/{item_id}").observe(0.001)

    prom_ns = _ns(prom, number)

    handle = obs.setup(
        service="bench",
        traces="none",
        span_exporters=[_null_exporter()],
        log_stream=sink,
        registry=CollectorRegistry(),
        max_queue_size=min(1_000_000, number * 6),
    )
    try:
        log = obs.get_logger()
        cairn_log_ns = _ns(lambda: log.info("purchase_completed", user_id=7, price=19.99), number)

        def cairn_span() -> None:
            with obs.span("db.query"):
                pass

        cairn_span_ns = _ns(cairn_span, number)
        from cairn.observability import _runtime

        runtime = _runtime.RUNTIME
        assert runtime is not None
        http = runtime.http
        cairn_metric_ns = _ns(
            lambda: http.observe("GET", "/items/{item_id}", 200, 0.001, None), number
        )
    finally:
        handle.shutdown()
    rows.append(("log line", structlog_ns, cairn_log_ns))
    rows.append(("span", sdk_ns, cairn_span_ns))
    rows.append(("metric update (counter + histogram)", prom_ns, cairn_metric_ns))
    return rows


def report_micro(rows: Sequence[tuple[str, float, float]]) -> None:
    print("\n| operation | library directly (ns) | cairn (ns) | cairn / library |")
    print("|---|---|---|---|")
    names = {
        "log line": "structlog",
        "span": "OTel SDK",
        "metric update (counter + histogram)": "prometheus_client",
    }
    for name, theirs, ours in rows:
        print(f"| {name} ({names[name]}) | {theirs:.0f} | {ours:.0f} | {ours / theirs:.2f} |")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: few rounds, few requests"
    )
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=5000, help="per variant per round")
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--micro-number", type=int, default=20_000)
    parser.add_argument("--no-macro", action="store_true")
    parser.add_argument("--serve", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--fd", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.fd)
        return
    if args.quick:
        args.rounds, args.requests, args.warmup, args.micro_number = 2, 600, 100, 2000
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} cpus; fastapi {version('fastapi')}, "
        f"uvicorn {version('uvicorn')}, opentelemetry-sdk {version('opentelemetry-sdk')}, "
        f"structlog {version('structlog')}, prometheus_client {version('prometheus_client')}"
    )
    if not args.no_macro:
        print(
            f"\nmacro: {args.rounds} rounds x {args.requests} requests per variant, "
            f"{args.connections} connections, fresh server per variant per round"
        )
        report_macro(macro(args))
    print(f"\nmicro: best of 5 x {args.micro_number}")
    report_micro(micro(args.micro_number))


if __name__ == "__main__":
    main()
