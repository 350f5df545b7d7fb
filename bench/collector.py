"""Collector ingest benchmark: OTLP/HTTP protobuf batches through the real server into the store.

    python bench/collector.py [--quick] [--seconds 10] [--senders 4] [--ingest-only]

The issue's three measures in one run: ingest (below), then the queries over
1,000,000 stored log records and the trace lookup by id, which
``bench/collector_store.py`` measures (run after the ingest part unless
``--ingest-only``; ``--quick`` passes on as 100,000 records).

1. stages, in µs per record, on 512-record batches encoded by the real OpenTelemetry SDK
   encoder (spans: 4 attributes and one event each): ``decode_spans`` / ``decode_logs``
   (the full decode into records); for protobuf spans the collector's own path instead:
   the receiver's check (``parse_spans``: parse + id checks, in the event loop), the
   writer's walk into store rows (attribute cache warm, and cold: cleared before every
   batch), and ``Store.add_spans`` of those rows on disk, 8,192 spans per transaction.
2. sustained ingest: ``cairn collector`` (uvicorn, one process, an on-disk store in a
   temporary directory) receives batches of 512 spans (then 512 log records) from
   ``--senders`` threads in this process for ``--seconds``; the rate counts only what
   the store holds at the end (accepted, written and durable), over the time from the
   first request until the store holds the last record. 429s (queue full) are counted
   and retried after a short pause, as an exporter would. Target >= 50,000 spans/s.
   Besides wall-clock records/s, the collector process's CPU time over the same
   interval (``/proc/<pid>/stat``, user + system) gives records per CPU-second: the
   senders share the machine, so this is the collector's own cost on one core.

The server process runs on its own core when the machine has two; this process's
senders use the other.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time

import httpx
from opentelemetry._logs import LogRecord as ApiLogRecord
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from cairn.collector import _otlp_rows
from cairn.collector._otlp import decode_logs, decode_spans
from cairn.collector._otlp_rows import parse_spans
from cairn.collector._store import Store
from cairn.collector._store_rows import SpanRows

BATCH = 512
RESOURCE = Resource.create({"service.name": "bench", "service.instance.id": "bench-1"})
SERVER = """
import asyncio, sys
from cairn.collector._serve_cli import serve_collector
def ready(url):
    print(url, flush=True)
asyncio.run(serve_collector(port=0, data=sys.argv[1], on_ready=ready))
"""


def span_batches(count: int) -> list[bytes]:
    """``count`` distinct protobuf ExportTraceServiceRequests of BATCH spans each."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("bench")
    out = []
    for b in range(count):
        exporter.clear()
        for i in range(BATCH // 4):
            with tracer.start_as_current_span("GET /orders/{id}", kind=SpanKind.SERVER) as root:
                root.set_attributes(
                    {
                        "http.route": "/orders/{id}",
                        "http.status_code": 200,
                        "user_id": i,
                        "batch": b,
                    }
                )
                root.add_event("cache_miss", {"key": f"order:{i}"})
                for name in ("db.query", "cache.get", "render"):
                    with tracer.start_as_current_span(name) as child:
                        child.set_attributes(
                            {"db.system": "sqlite", "rows": i, "ok": True, "step": name}
                        )
                        child.add_event("done", {"n": 1})
        out.append(encode_spans(exporter.get_finished_spans()).SerializeToString())
    provider.shutdown()
    return out


def log_batches(count: int) -> list[bytes]:
    """``count`` protobuf ExportLogsServiceRequests of BATCH log records each."""
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=RESOURCE)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = provider.get_logger("bench")
    out = []
    for b in range(count):
        exporter.clear()
        for i in range(BATCH):
            logger.emit(
                ApiLogRecord(
                    timestamp=time.time_ns(),
                    severity_number=SeverityNumber.INFO,
                    severity_text="INFO",
                    body="purchase_completed",
                    attributes={"user_id": i, "batch": b, "amount": 9.5, "currency": "EUR"},
                )
            )
        out.append(encode_logs(exporter.get_finished_logs()).SerializeToString())
    provider.shutdown()
    return out


def decode_cost(batches: list[bytes], decode: object, rounds: int) -> float:
    """Best µs per record over ``rounds`` passes."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for body in batches:
            decode(body)  # type: ignore[operator]
        best = min(best, (time.perf_counter() - start) / (len(batches) * BATCH) * 1e6)
    return best


def walk_cold(batches: list[bytes]) -> None:
    for body in batches:
        _otlp_rows._cache.clear()
        parse_spans(body).rows  # noqa: B018 - the walk is the point


def store_cost(batches: list[bytes], total: int = 100_000, per_write: int = 8192) -> float:
    """µs per span of ``Store.add_spans`` (prepared rows, on disk), ``per_write`` at a time."""
    rows = [row for body in batches for row in parse_spans(body).rows]
    spent, written = 0.0, 0
    with tempfile.TemporaryDirectory() as data:
        store = Store(os.path.join(data, "bench.db"))
        try:
            while written < total:
                # fresh trace ids, as a real stream has: the trace index gets new keys
                batch = [
                    (os.urandom(16).hex(), *rows[(written + i) % len(rows)][1:])
                    for i in range(per_write)
                ]
                start = time.perf_counter()
                store.add_spans(SpanRows.of(batch))
                spent += time.perf_counter() - start
                written += per_write
        finally:
            store.close()
    return spent / written * 1e6


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ingest(
    url: str,
    path: str,
    batches: list[bytes],
    signal: str,
    seconds: float,
    senders: int,
    pid: int,
) -> dict[str, float]:
    """Post batches from ``senders`` threads for ``seconds``; rate of records stored."""
    sent = [0] * senders
    refused = [0] * senders
    stop = time.monotonic() + seconds

    def stored() -> int:
        return int(httpx.get(f"{url}/api/stats").json()["store"][signal])

    base = stored()

    def sender(k: int) -> None:
        with httpx.Client(timeout=60) as client:
            i = k
            while time.monotonic() < stop:
                reply = client.post(
                    f"{url}{path}", content=batches[i % len(batches)],
                    headers={"Content-Type": "application/x-protobuf"},
                )  # fmt: skip
                if reply.status_code == 200:
                    sent[k] += 1
                    i += senders
                elif reply.status_code in (429, 503):
                    refused[k] += 1
                    time.sleep(0.01)  # back off as an exporter does on 429
                else:
                    raise RuntimeError(f"{reply.status_code}: {reply.text}")

    start = time.monotonic()
    cpu_start = cpu_seconds(pid)
    threads = [threading.Thread(target=sender, args=(k,)) for k in range(senders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    expected = base + sum(sent) * BATCH
    deadline = time.monotonic() + 120
    while (now := stored()) < expected:
        if time.monotonic() > deadline:
            raise RuntimeError(f"store holds {now}, expected {expected}")
        time.sleep(0.05)  # polling for the writer to finish
    elapsed = time.monotonic() - start
    cpu = cpu_seconds(pid) - cpu_start
    return {
        "records": sum(sent) * BATCH,
        "seconds": elapsed,
        "rate": sum(sent) * BATCH / elapsed,
        "cpu_seconds": cpu,
        "per_cpu_second": sum(sent) * BATCH / cpu if cpu > 0 else float("nan"),
        "refused_requests": sum(refused),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short run (CI smoke)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--ingest-only", action="store_true", help="skip the query benchmark")
    args = parser.parse_args()
    seconds = 2.0 if args.quick else args.seconds
    spans, logs = span_batches(8), log_batches(8)
    rounds = 3 if args.quick else 10
    print(f"decode only: {decode_cost(spans, decode_spans, rounds):.2f} µs/span, "
          f"{decode_cost(logs, decode_logs, rounds):.2f} µs/log record")  # fmt: skip
    check = decode_cost(spans, parse_spans, rounds)
    warm = decode_cost(spans, lambda body: parse_spans(body).rows, rounds) - check
    cold = decode_cost(spans, lambda body: walk_cold([body]), rounds) - check
    store = store_cost(spans, 30_000 if args.quick else 100_000)
    print(f"span stages: receive check {check:.2f} µs/span (event loop); walk to rows "
          f"{warm:.2f} µs/span, {cold:.2f} with a cold attribute cache (writer); "
          f"store {store:.2f} µs/span (writer, 8,192 per transaction)")  # fmt: skip
    with tempfile.TemporaryDirectory() as data:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        server = subprocess.Popen(
            [sys.executable, "-c", SERVER, data], stdout=subprocess.PIPE, text=True, env=env
        )
        try:
            assert server.stdout is not None
            url = server.stdout.readline().strip()
            if not url.startswith("http"):
                raise RuntimeError("the collector did not start")
            for label, path, signal, batches in [
                ("spans", "/v1/traces", "spans", spans),
                ("log records", "/v1/logs", "logs", logs),
            ]:
                result = ingest(url, path, batches, signal, seconds, args.senders, server.pid)
                verdict = ""
                if signal == "spans":
                    verdict = (
                        "  (target >= 50,000: "
                        + ("met" if result["rate"] >= 50_000 else "NOT met")
                        + ")"
                    )
                print(
                    f"ingest {label}: {result['rate']:,.0f}/s ({result['records']:,} stored in "
                    f"{result['seconds']:.1f} s, {result['refused_requests']:.0f} requests refused "
                    f"and retried){verdict}\n  collector process: {result['cpu_seconds']:.1f} CPU-s, "
                    f"{result['per_cpu_second']:,.0f} {label} per CPU-second"
                )
        finally:
            server.terminate()
            server.wait(60)
    if not args.ingest_only:
        sys.stdout.flush()
        queries = [sys.executable, os.path.join(os.path.dirname(__file__), "collector_store.py")]
        subprocess.run([*queries, *(["--quick"] if args.quick else [])], check=True)


if __name__ == "__main__":
    main()
