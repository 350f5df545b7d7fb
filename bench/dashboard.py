"""First render of each dashboard page in headless Chromium, over a big real store.

    python bench/dashboard.py [--quick] [--logs N] [--traces N] [--runs 3]
    python bench/dashboard.py --collector URL [--registry URL]   # an existing collector
    python bench/dashboard.py --fake                             # the tests' stand-in

By default it fills a real collector store on disk (``Store.add_logs``/``add_spans``/
``add_samples`` in batches) with 1,000,000 shop-like log records and 100,000 shop-like
traces over the last hour, plus a 1,000-span trace and an hour of scraped RED and
breaker metrics (``--quick``: 100,000 logs and 10,000 traces), serves it through the
real ``Collector`` (``serve_in_thread``), starts cairn's registry server with the
shop's instances and the real dashboard app, then times in headless Chromium, for
every page, navigation until the page's data is on screen (median of ``--runs``).
Target: < 1 s per page and for the 1,000-span trace.

Needs Playwright for Python and /usr/bin/chromium. Results: docs/dashboard.md, "Speed".
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests" / "dashboard"))

import httpx  # noqa: E402
from dash_support import (  # noqa: E402
    MS,
    NOW,
    Served,
    fake_collector,
    shop_logs,
    shop_registry,
    shop_spans,
)

from cairn.collector._records import LogRecord, Sample, SpanRecord  # noqa: E402
from cairn.collector._server import Collector, serve_in_thread  # noqa: E402
from cairn.collector._store import Store  # noqa: E402
from cairn.dashboard import DashboardConfig, create_app  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync"]  # fmt: skip
BIG = "b16" + "0" * 29
HOUR_NS = 3600 * 10**9
BATCH = 5000

PAGES = {
    "overview": ("#/overview", "#overview-table, #view > div > p"),
    "logs": ("#/logs", "#log-list[data-loaded]"),
    "traces": ("#/traces", "#trace-list table, #trace-list p"),
    "metrics": ("#/metrics?service=orders", "#charts figure, #view p.error"),
    "registry": ("#/registry", "#registry-instances table, #registry-instances p"),
}

# -- a shop-like store -------------------------------------------------------------

INSTANCES = {"orders": ["orders-1"], "inventory": ["inventory-1", "inventory-2"],
             "users": ["users-1"]}  # fmt: skip
ENDPOINTS = {
    "orders": [("GET", "/orders/{order_id}", 0.75), ("POST", "/orders", 0.25)],
    "inventory": [("GET", "/inventory/items", 0.8), ("POST", "/inventory/reserve", 0.2)],
    "users": [("GET", "/users/{user_id}", 1.0)],
}
BUCKETS = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "+Inf"]
LOG_KINDS = [("request", 45), ("httpx", 35), ("purchase_completed", 6), ("stock_low", 2),
             ("breaker_opened", 1), ("inventory_unavailable", 3), ("heartbeat", 8)]  # fmt: skip


def _ids(rng: random.Random) -> tuple[str, str]:
    return f"{rng.getrandbits(128):032x}", f"{rng.getrandbits(64):016x}"


def shop_trace(rng: random.Random, trace_id: str, start: int) -> list[SpanRecord]:
    """One request through the shop: a read (5 spans) or a purchase (8 spans)."""

    def sid() -> str:
        return f"{rng.getrandbits(64):016x}"

    inv = rng.choice(INSTANCES["inventory"])
    failed = rng.random() < 0.03
    root = sid()
    if rng.random() < 0.75:
        order = rng.randrange(1, 201)
        check, server = sid(), sid()
        return [
            SpanRecord(trace_id, root, None, "GET /orders/{order_id}", "orders", start,
                       start + 9 * MS, "server", "ok",
                       attributes={"http.route": "/orders/{order_id}", "url.path": f"/orders/{order}",
                                   "http.response.status_code": 200},
                       resource={"service.instance.id": "orders-1"}),
            SpanRecord(trace_id, sid(), root, "db.query", "orders", start + MS, start + 2 * MS,
                       attributes={"db.system": "sqlite", "db.operation": "SELECT"}),
            SpanRecord(trace_id, check, root, "inventory.check", "orders", start + 2 * MS,
                       start + 8 * MS, "internal", "error" if failed else "ok",
                       attributes={"shop.item_id": order % 20 + 1}),
            SpanRecord(trace_id, server, check, "GET /inventory/items", "inventory",
                       start + 3 * MS, start + 7 * MS, "server", "error" if failed else "ok",
                       attributes={"http.route": "/inventory/items",
                                   "http.response.status_code": 503 if failed else 200},
                       resource={"service.instance.id": inv}),
            SpanRecord(trace_id, sid(), server, "db.query", "inventory", start + 4 * MS,
                       start + 5 * MS, attributes={"db.system": "sqlite"}),
        ]  # fmt: skip
    user, reserve, ucall, icall = sid(), sid(), sid(), sid()
    return [
        SpanRecord(trace_id, root, None, "POST /orders", "orders", start, start + 30 * MS,
                   "server", "error" if failed else "ok",
                   attributes={"http.route": "/orders", "http.response.status_code": 503 if failed else 201}),
        SpanRecord(trace_id, ucall, root, "GET", "orders", start + MS, start + 6 * MS, "client",
                   attributes={"url.full": "http://127.0.0.1:9301/users/7"}),
        SpanRecord(trace_id, user, ucall, "GET /users/{user_id}", "users", start + 2 * MS,
                   start + 5 * MS, "server", attributes={"http.route": "/users/{user_id}"}),
        SpanRecord(trace_id, sid(), user, "db.query", "users", start + 3 * MS, start + 4 * MS),
        SpanRecord(trace_id, icall, root, "POST", "orders", start + 7 * MS, start + 25 * MS,
                   "client", attributes={"url.full": "http://127.0.0.1:9201/inventory/reserve"}),
        SpanRecord(trace_id, reserve, icall, "POST /inventory/reserve", "inventory",
                   start + 8 * MS, start + 24 * MS, "server", "error" if failed else "ok",
                   attributes={"http.route": "/inventory/reserve"}),
        SpanRecord(trace_id, sid(), reserve, "db.query", "inventory", start + 9 * MS,
                   start + 20 * MS, attributes={"db.operation": "UPDATE"}),
        SpanRecord(trace_id, sid(), root, "db.query", "orders", start + 26 * MS,
                   start + 29 * MS, attributes={"db.operation": "INSERT"}),
    ]  # fmt: skip


def big_trace(start: int, n: int = 1000) -> list[SpanRecord]:
    """A 1,000-span trace: a root with chains of ten children."""
    spans = [SpanRecord(BIG, f"{0:016x}", None, "GET /big", "orders", start, start + 900 * MS,
                        "server")]  # fmt: skip
    for i in range(1, n):
        parent = f"{(i - 1) if i % 10 else 0:016x}"
        begin = start + i * 800_000
        spans.append(SpanRecord(BIG, f"{i:016x}", parent, f"step-{i}", "inventory", begin,
                                begin + MS))  # fmt: skip
    return spans


def shop_logs_batch(
    rng: random.Random, n: int, first: int, total: int, start: int, trace_ids: list[str]
) -> list[LogRecord]:
    names, weights = zip(*LOG_KINDS, strict=True)
    kinds = rng.choices(names, weights, k=n)
    out = []
    for k, kind in enumerate(kinds):
        t = start + (first + k) * HOUR_NS // total
        service = rng.choice(("orders", "orders", "inventory", "users"))
        instance = rng.choice(INSTANCES[service])
        trace_id = rng.choice(trace_ids) if kind != "heartbeat" else None
        level, body = "info", kind
        attrs: dict[str, Any] = {"logger": f"shop.{service}"}
        if kind == "request":
            method, route, _ = rng.choice(ENDPOINTS[service])
            attrs.update(method=method, route=route, status=rng.choice((200, 200, 200, 201, 404)),
                         duration_ms=round(rng.random() * 30, 2))  # fmt: skip
        elif kind in ("httpx", "heartbeat"):
            body = f"HTTP Request: GET http://127.0.0.1:9201/inventory/items?item_id={k % 20}"
            if kind == "heartbeat":
                body = f'HTTP Request: PUT http://127.0.0.1:8500/v1/agent/check/pass/service:{instance} "HTTP/1.1 200 OK"'
            attrs["logger"] = "httpx"
        elif kind == "purchase_completed":
            service, instance = "orders", "orders-1"
            attrs.update(user_id=rng.randrange(1, 101), item_id=rng.randrange(1, 21),
                         price=round(rng.random() * 100, 2), currency="USD")  # fmt: skip
        elif kind == "stock_low":
            level, service, instance = "warning", "inventory", "inventory-1"
            attrs["item_id"] = rng.randrange(1, 21)
        else:
            level = "error" if kind == "inventory_unavailable" else "warning"
            service, instance = "orders", "orders-1"
            attrs["dependency"] = "inventory"
        out.append(LogRecord(t, service, level, body, trace_id=trace_id,
                             span_id=f"{rng.getrandbits(64):016x}" if trace_id else None,
                             attributes=attrs,
                             resource={"service.name": service, "service.instance.id": instance}))  # fmt: skip
    return out


def scraped_metrics(start: int, every_s: int = 15) -> Iterator[list[Sample]]:
    """An hour of 15 s scrapes: RED counters, latency histograms, breaker states."""
    rng = random.Random(5)
    counts: dict[tuple[str, ...], float] = {}
    for tick in range(HOUR_NS // (every_s * 10**9) + 1):
        at = start + tick * every_s * 10**9
        batch: list[Sample] = []
        for service, instances in INSTANCES.items():
            for instance in instances:
                base = {"service": service, "instance": instance}
                for method, route, share in ENDPOINTS[service]:
                    labels = {**base, "method": method, "endpoint": route}
                    for status, part in (("200", 0.97), ("503", 0.03)):
                        key = (instance, route, status)
                        counts[key] = counts.get(key, 0.0) + round(20 * share * part * every_s)
                        batch.append(Sample("http_requests_total", {**labels, "status": status},
                                            at, counts[key], "counter", "http_requests_total"))  # fmt: skip
                    seen = counts.get((instance, route, "200"), 0.0)
                    for le, part in zip(
                        BUCKETS, (0.2, 0.5, 0.8, 0.93, 0.98, 0.995, 0.999, 1, 1), strict=True
                    ):
                        batch.append(Sample("http_request_duration_seconds_bucket", {**labels, "le": le},
                                            at, seen * part, "histogram", "http_request_duration_seconds"))  # fmt: skip
                    batch.append(Sample("http_request_duration_seconds_count", labels, at, seen,
                                        "histogram", "http_request_duration_seconds"))  # fmt: skip
                    batch.append(Sample("http_request_duration_seconds_sum", labels, at, seen * 0.012,
                                        "histogram", "http_request_duration_seconds"))  # fmt: skip
        trip = 1500 < tick * every_s < 1560  # a minute of open breaker, half an hour ago
        for target in INSTANCES["inventory"]:
            for state in ("closed", "open", "half_open"):
                value = (
                    1.0
                    if state == ("open" if trip and target == "inventory-1" else "closed")
                    else 0.0
                )
                batch.append(Sample("cairn_breaker_state",
                                    {"service": "orders", "instance": "orders-1",
                                     "policy": f"inventory/{target}", "state": state},
                                    at, value, "gauge", "cairn_breaker_state"))  # fmt: skip
        rng.random()
        yield batch


def fill(store: Store, logs: int, traces: int) -> str:
    """Fill ``store`` over the last hour; returns a line saying what and how fast."""
    rng = random.Random(1)
    start = time.time_ns() - HOUR_NS
    began = time.perf_counter()
    trace_ids: list[str] = []
    spans: list[SpanRecord] = []
    n_spans = 0
    for t in range(traces):
        trace_id, _ = _ids(rng)
        trace_ids.append(trace_id)
        spans.extend(shop_trace(rng, trace_id, start + t * HOUR_NS // traces))
        if len(spans) >= BATCH:
            store.add_spans(spans)
            n_spans += len(spans)
            spans = []
    spans.extend(big_trace(time.time_ns() - 120 * 10**9))
    store.add_spans(spans)
    n_spans += len(spans)
    span_s = time.perf_counter() - began
    for first in range(0, logs, BATCH):
        size = min(BATCH, logs - first)
        store.add_logs(shop_logs_batch(rng, size, first, logs, start, trace_ids))
    log_s = time.perf_counter() - began - span_s
    samples = 0
    for batch in scraped_metrics(start):
        store.add_samples(batch)
        samples += len(batch)
    size = store.stats().bytes
    return (
        f"filled {logs:,} logs, {traces + 1:,} traces ({n_spans:,} spans), {samples:,} samples: "
        f"spans {span_s:.0f} s, logs {log_s:.0f} s, total {time.perf_counter() - began:.0f} s, "
        f"{size / 1e6:,.0f} MB on disk"
    )


# -- the measurement ----------------------------------------------------------------


def biggest_trace(collector: str) -> tuple[str, int]:
    found = httpx.get(f"{collector}/api/traces", params={"since": "7d", "limit": 500}).json()
    best = max(found["traces"], key=lambda t: t["span_count"])
    return best["trace_id"], best["span_count"]


def a_trace(collector: str) -> str:
    found = httpx.get(
        f"{collector}/api/traces", params={"since": "1h", "operation": "POST /orders", "limit": 1}
    ).json()["traces"]
    return str(found[0]["trace_id"]) if found else BIG


def measure(
    dashboard: str, pages: dict[str, tuple[str, str]], runs: int, shots: Path | None = None
) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    results: dict[str, list[float]] = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.set_default_timeout(60_000)
        page.goto(f"{dashboard}/#/overview")  # warm the browser cache once: pages are timed
        page.wait_for_selector(PAGES["overview"][1])
        for _ in range(runs):
            for name, (route, ready) in pages.items():
                page.goto("about:blank")
                started = time.perf_counter()
                page.goto(f"{dashboard}/{route}")
                if ready.startswith("spans>="):
                    count = int(ready.split("=")[1])
                    page.wait_for_function(
                        f"() => document.querySelectorAll('.span-row').length >= {count}"
                    )
                else:
                    page.wait_for_selector(ready)
                results.setdefault(name, []).append(time.perf_counter() - started)
                if shots is not None:
                    shots.mkdir(parents=True, exist_ok=True)
                    slug = re.sub(r"\W+", "-", name).strip("-")
                    page.screenshot(path=str(shots / f"{slug}.png"))
        browser.close()
    return {name: statistics.median(times) for name, times in results.items()}


def api_times(dashboard: str, runs: int) -> dict[str, float]:
    calls = {
        "/api/logs (200 newest, 1h)": ("/api/logs", {"limit": "200", "since": "1h"}),
        "/api/logs?q=event:purchase_completed": (
            "/api/logs",
            {"limit": "200", "since": "1h", "q": "event:purchase_completed"},
        ),
        "/api/traces (100 newest, 1h)": ("/api/traces", {"limit": "100", "since": "1h"}),
        "/api/overview": ("/api/overview", {}),
    }
    out = {}
    with httpx.Client(base_url=dashboard, timeout=60) as client:
        for name, (path, params) in calls.items():
            times = []
            for _ in range(runs):
                started = time.perf_counter()
                client.get(path, params=params).raise_for_status()
                times.append(time.perf_counter() - started)
            out[name] = statistics.median(times)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100,000 logs and 10,000 traces")
    parser.add_argument("--logs", type=int, default=None, help="log records (1,000,000)")
    parser.add_argument("--traces", type=int, default=None, help="traces (100,000)")
    parser.add_argument("--collector", help="measure against this filled collector instead")
    parser.add_argument("--registry", help="a registry's URL (default: a stand-in shop's)")
    parser.add_argument("--fake", action="store_true", help="the tests' collector stand-in")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--screenshots", type=Path, help="save each rendered page here")
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        sys.exit(f"{CHROMIUM} is not installed")
    logs = args.logs or (100_000 if args.quick else 1_000_000)
    traces = args.traces or (10_000 if args.quick else 100_000)
    print(f"# cairn dashboard first render — CPython {platform.python_version()}, "
          f"{os.cpu_count()} CPUs, Chromium headless, median of {args.runs}")  # fmt: skip
    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        if args.collector:
            collector = args.collector
            trace_id, spans = biggest_trace(collector)
            one = trace_id
        elif args.fake:
            fake = fake_collector(
                spans=shop_spans() + big_trace(NOW - 30_000 * MS), logs=shop_logs()
            )
            collector = stack.enter_context(Served(fake)).url
            trace_id, spans, one = BIG, 1000, shop_spans()[0].trace_id
        else:
            store = Store(Path(tmp) / "collector.db", max_bytes=1 << 34)
            stack.callback(store.close)
            print(fill(store, logs, traces), flush=True)
            collector = stack.enter_context(serve_in_thread(Collector(store)))
            trace_id, spans = BIG, 1000
            one = a_trace(collector)
        registry = args.registry or stack.enter_context(shop_registry()).url
        config = DashboardConfig(collector=collector, registry=registry, lab_dir=Path(tmp) / "lab")
        dashboard = stack.enter_context(Served(create_app(config)))
        stats = httpx.get(f"{collector}/api/stats").json()
        print(f"collector {collector}: {stats.get('store') or stats.get('accepted')}\n")
        print("| request (through the dashboard) | median ms |")
        print("|---|---:|")
        for name, seconds in api_times(dashboard.url, args.runs).items():
            print(f"| {name} | {seconds * 1000:.0f} |")
        pages = {
            **PAGES,
            "a trace (purchase)": (f"#/trace/{one}", ".span-row"),
            f"a {spans:,}-span trace": (f"#/trace/{trace_id}", f"spans>={spans}"),
        }
        print("\n| page | first render ms | target < 1 s |")
        print("|---|---:|---|")
        for name, seconds in measure(dashboard.url, pages, args.runs, args.screenshots).items():
            verdict = "ok" if seconds < 1.0 else "SLOW"
            print(f"| {name} | {seconds * 1000:.0f} | {verdict} |")


if __name__ == "__main__":
    main()
