"""Benchmark of the collector's store: ingest cost and query latency over many log records.

Builds ``--logs`` synthetic log records (services, levels, event names, user and item
ids, trace ids; default 1,000,000, ``--quick`` 100,000) into a store in a temporary
directory, then times queries (p50/p99 over ``--runs`` runs each), trace lookup by id
among ``--traces`` traces, and ``add_spans`` / ``add_logs`` cost per record. For
comparison, the naive layout — one table of JSON documents, every record decoded and
checked with ``Query.matches`` newest first — answers the same queries over the same
records (capped at ``--naive`` records; its times scale linearly).

    .venv/bin/python bench/collector_store.py [--quick] [--runs 30]
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import orjson

from cairn.collector import parse_query
from cairn.collector._records import LogRecord, SpanRecord
from cairn.collector._store import Store

SERVICES = ["checkout", "cart", "inventory", "payments", "gateway", "search", "auth", "mailer"]
EVENTS = [
    ("request_finished", 40),
    ("cache_hit", 15),
    ("cache_miss", 8),
    ("item_viewed", 12),
    ("cart_updated", 8),
    ("purchase_started", 6),
    ("purchase_completed", 5),
    ("payment_declined", 1),
    ("retry_scheduled", 3),
    ("db_query_slow", 2),
]
LEVELS = [("info", 80), ("debug", 10), ("warning", 7), ("error", 3)]
QUERIES = [
    ("seed: user_id:123 AND event:purchase_completed", "user_id:123 AND event:purchase_completed"),
    ("single term: level:error", "level:error"),
    ("OR: event:(payment_declined OR db_query_slow)", "event:(payment_declined OR db_query_slow)"),
    ("rare term: item_id:SKU-00042", "item_id:SKU-00042"),
    ("full text word: declined", "declined"),
    ("full text rare: zzqx", "zzqx"),
    ("range: duration_ms:>990", "duration_ms:>990"),
]


def weighted(rng: random.Random, table: list[tuple[str, int]], n: int) -> list[str]:
    names, weights = zip(*table, strict=True)
    return rng.choices(names, weights, k=n)


def make_logs(n: int, start_ns: int, seed: int = 1) -> list[LogRecord]:
    rng = random.Random(seed)
    events = weighted(rng, EVENTS, n)
    levels = weighted(rng, LEVELS, n)
    logs = []
    for i in range(n):
        attributes: dict[str, object] = {
            "user_id": rng.randrange(20_000),
            "duration_ms": round(rng.random() * 1000, 2),
        }
        if events[i] in ("item_viewed", "cart_updated", "purchase_completed"):
            attributes["item_id"] = f"SKU-{rng.randrange(5000):05d}"
        if events[i] == "request_finished":
            attributes["http.route"] = rng.choice(["/cart", "/checkout", "/items/{id}"])
            attributes["http.status_code"] = rng.choice([200, 200, 200, 201, 404, 500])
        logs.append(
            LogRecord(
                time_ns=start_ns + i * 1_000_000,
                service=rng.choice(SERVICES),
                level=levels[i],
                body=events[i],
                trace_id=f"{rng.getrandbits(128):032x}" if rng.random() < 0.7 else None,
                span_id=f"{rng.getrandbits(64):016x}",
                attributes=attributes,
                resource={"service.name": "shop", "host.name": f"node-{i % 4}"},
            )
        )
    return logs


def make_spans(traces: int, start_ns: int, seed: int = 2) -> tuple[list[SpanRecord], list[str]]:
    rng = random.Random(seed)
    spans, ids = [], []
    for t in range(traces):
        trace_id = f"{rng.getrandbits(128):032x}"
        ids.append(trace_id)
        begin = start_ns + t * 10_000_000
        root = f"{rng.getrandbits(64):016x}"
        spans.append(
            SpanRecord(trace_id, root, None, "POST /checkout", "gateway", begin, begin + 9_000_000,
                       "server", "ok", attributes={"http.route": "/checkout"})
        )  # fmt: skip
        for k in range(3):
            spans.append(  # noqa: PERF401
                SpanRecord(trace_id, f"{rng.getrandbits(64):016x}", root, f"step-{k}",
                           rng.choice(SERVICES), begin + k * 1000, begin + 2_000_000 + k,
                           "client", "error" if rng.random() < 0.02 else "ok",
                           attributes={"user_id": rng.randrange(20_000)})
            )  # fmt: skip
    return spans, ids


def timed(fn: object, runs: int) -> tuple[float, float]:
    assert callable(fn)
    fn()  # warm the cache
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(len(times) * 0.99))]


class NaiveStore:
    """The layout to beat: JSON documents, decoded and checked one by one, newest first."""

    def __init__(self, path: Path) -> None:
        self.con = sqlite3.connect(path, isolation_level=None)
        self.con.execute("PRAGMA journal_mode = WAL")
        self.con.execute("CREATE TABLE logs (id INTEGER PRIMARY KEY, time_ns INTEGER, doc BLOB)")
        self.con.execute("CREATE INDEX logs_time ON logs (time_ns)")

    def add(self, logs: list[LogRecord]) -> None:
        self.con.execute("BEGIN")
        self.con.executemany(
            "INSERT INTO logs (time_ns, doc) VALUES (?, ?)",
            [(log.time_ns, orjson.dumps(log.to_json())) for log in logs],
        )
        self.con.execute("COMMIT")

    def search(self, text: str, limit: int = 100) -> list[LogRecord]:
        query = parse_query(text)
        out = []
        for (doc,) in self.con.execute("SELECT doc FROM logs ORDER BY time_ns DESC"):
            record = LogRecord.from_json(orjson.loads(doc))
            if query.matches(record.document()):
                out.append(record)
                if len(out) >= limit:
                    break
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100,000 logs instead of 1,000,000")
    parser.add_argument("--logs", type=int, default=None)
    parser.add_argument("--traces", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--naive", type=int, default=200_000, help="records in the naive store")
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()
    n = args.logs or (100_000 if args.quick else 1_000_000)
    print(f"# cairn collector store — Python {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version},"
          f" {os.cpu_count()} CPUs, {n:,} logs")  # fmt: skip
    start_ns = time.time_ns() - 86_400 * 10**9
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "store.db", max_bytes=1 << 34)
        logs = make_logs(n, start_ns)
        started = time.perf_counter()
        for i in range(0, n, args.batch):
            store.add_logs(logs[i : i + args.batch])
        build = time.perf_counter() - started
        size = store.stats().bytes
        print(f"built in {build:.1f} s ({build / n * 1e6:.1f} µs/log), {size / 1e6:.0f} MB,"
              f" {size / n:.0f} B/log")  # fmt: skip

        m = min(n, args.naive)
        naive = NaiveStore(Path(tmp) / "naive.db")
        naive.add(logs[:m])
        naive_runs = max(3, args.runs // 10)

        print(f"\n| query | hits | store p50 ms | store p99 ms | naive ({m:,}) p50 ms |")
        print("|---|---:|---:|---:|---:|")
        for label, text in QUERIES:
            hits = len(store.search_logs(text))
            p50, p99 = timed(lambda t=text: store.search_logs(t), args.runs)
            n50, _ = timed(lambda t=text: naive.search(t), naive_runs)
            print(f"| {label} | {hits} | {p50:.2f} | {p99:.2f} | {n50:.1f} |")

        spans, trace_ids = make_spans(args.traces, start_ns)
        started = time.perf_counter()
        for i in range(0, len(spans), args.batch):
            store.add_spans(spans[i : i + args.batch])
        span_cost = (time.perf_counter() - started) / len(spans) * 1e6
        rng = random.Random(3)
        p50, p99 = timed(lambda: store.get_trace(rng.choice(trace_ids)), args.runs * 10)
        f50, f99 = timed(lambda: store.find_traces(service="payments", limit=20), args.runs)

        fresh = Store(Path(tmp) / "fresh.db")
        more = make_logs(100_000, start_ns, seed=9)
        more_spans, _ = make_spans(25_000, start_ns, seed=9)
        started = time.perf_counter()
        for i in range(0, len(more), args.batch):
            fresh.add_logs(more[i : i + args.batch])
        log_cost = (time.perf_counter() - started) / len(more) * 1e6
        started = time.perf_counter()
        for i in range(0, len(more_spans), args.batch):
            fresh.add_spans(more_spans[i : i + args.batch])
        fresh_span_cost = (time.perf_counter() - started) / len(more_spans) * 1e6

        print("\n| operation | result |")
        print("|---|---:|")
        print(
            f"| get_trace by id among {args.traces:,} traces | p50 {p50:.2f} ms, p99 {p99:.2f} ms |"
        )
        print(f"| find_traces(service=payments, limit=20) | p50 {f50:.2f} ms, p99 {f99:.2f} ms |")
        print(
            f"| add_spans, batches of {args.batch} (empty store) | {fresh_span_cost:.1f} µs/span |"
        )
        print(
            f"| add_spans, batches of {args.batch} (after {n:,} logs) | {span_cost:.1f} µs/span |"
        )
        print(f"| add_logs, batches of {args.batch} (empty store) | {log_cost:.1f} µs/log |")
        fresh.close()
        store.close()
        naive.con.close()


if __name__ == "__main__":
    main()
