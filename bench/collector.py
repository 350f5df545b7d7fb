"""Collector ingest benchmark: OTLP/HTTP protobuf batches through the real server into the store.

    python bench/collector.py [--quick] [--seconds 10] [--senders 4]

1. decode only: ``decode_spans`` / ``decode_logs`` on 512-record batches encoded by the
   real OpenTelemetry SDK encoder (spans: 4 attributes and one event each). Reported
   in µs per record.
2. sustained ingest: ``cairn collector`` (uvicorn, one process, an on-disk store in a
   temporary directory) receives batches of 512 spans (then 512 log records) from
   ``--senders`` threads in this process for ``--seconds``; the rate counts only what
   the store holds at the end (accepted, written and durable), over the time from the
   first request until the store holds the last record. 429s (queue full) are counted
   and retried after a short pause, as an exporter would. Target >= 50,000 spans/s.

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

from cairn.collector._otlp import decode_logs, decode_spans

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


def ingest(
    url: str, path: str, batches: list[bytes], signal: str, seconds: float, senders: int
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
    return {
        "records": sum(sent) * BATCH,
        "seconds": elapsed,
        "rate": sum(sent) * BATCH / elapsed,
        "refused_requests": sum(refused),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short run (CI smoke)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--senders", type=int, default=4)
    args = parser.parse_args()
    seconds = 2.0 if args.quick else args.seconds
    spans, logs = span_batches(8), log_batches(8)
    print(f"decode only: {decode_cost(spans, decode_spans, 3 if args.quick else 10):.2f} µs/span, "
          f"{decode_cost(logs, decode_logs, 3 if args.quick else 10):.2f} µs/log record")  # fmt: skip
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
                result = ingest(url, path, batches, signal, seconds, args.senders)
                verdict = ""
                if signal == "spans":
                    verdict = (
                        "  (target >= 50,000: "
                        + ("met" if result["rate"] >= 50_000 else "NOT met")
                        + ")"
                    )
                print(
                    f"ingest {label}: {result['rate']:,.0f}/s ({result['records']:,} stored in "
                    f"{result['seconds']:.1f} s, {result['refused_requests']:.0f} requests refused and retried){verdict}"
                )
        finally:
            server.terminate()
            server.wait(60)


if __name__ == "__main__":
    main()
