"""First render of each dashboard page in headless Chromium, and its API latency.

    python bench/dashboard.py [--collector URL] [--registry URL] [--runs 3]

Starts the dashboard in-process on a free port and times, for every page, the
browser from navigation to the page's data being on screen (median of --runs).
Target: < 1 s per page with 1,000,000 log records and 100,000 traces stored, and
< 1 s for a 1,000-span trace. Pages ask for bounded pages of data (200 newest logs,
100 traces), so the cost is the collector's query time plus a fixed render cost.

Without --collector it serves the tests' collector stand-in (a few records plus a
1,000-span trace): that measures the dashboard's own cost. To measure against a
full store, fill a real collector (``cairn collector`` + ``cairn load``, or
bench/collector_store.py) and pass its URL; the biggest trace found is rendered.

Needs Playwright for Python and /usr/bin/chromium.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

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

from cairn.collector._records import SpanRecord  # noqa: E402
from cairn.dashboard import DashboardConfig, create_app  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync"]  # fmt: skip
BIG = "b16" + "0" * 29

PAGES = {
    "overview": ("#/overview", "#overview-table, #view > div > p"),
    "logs": ("#/logs", "#log-list[data-loaded]"),
    "traces": ("#/traces", "#trace-list table, #trace-list p"),
    "metrics": ("#/metrics", "#charts figure, #view p.error"),
    "registry": ("#/registry", "#registry-instances table, #registry-instances p"),
    "lab": ("#/lab", "#lab-runs, #view > p.muted + p"),
}


def big_trace(n: int = 1000) -> list[SpanRecord]:
    t = NOW - 30_000 * MS
    spans = [SpanRecord(BIG, f"{0:016x}", None, "GET /big", "frontend", t, t + 900 * MS)]
    for i in range(1, n):
        start = t + i * 800_000
        parent = f"{(i - 1) if i % 10 else 0:016x}"
        spans.append(SpanRecord(BIG, f"{i:016x}", parent, f"step-{i}", "orders", start, start + MS))
    return spans


def biggest_trace(collector: str) -> tuple[str, int]:
    found = httpx.get(f"{collector}/api/traces", params={"since": "7d", "limit": 500}).json()
    best = max(found["traces"], key=lambda t: t["span_count"])
    return best["trace_id"], best["span_count"]


def measure(dashboard: str, trace_id: str, spans: int, runs: int) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    results: dict[str, list[float]] = {}
    pages = {**PAGES, f"trace ({spans} spans)": (f"#/trace/{trace_id}", ".span-row")}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.set_default_timeout(60_000)
        for _ in range(runs):
            for name, (route, ready) in pages.items():
                page.goto("about:blank")
                started = time.perf_counter()
                page.goto(f"{dashboard}/{route}")
                if route.startswith("#/trace/"):
                    page.wait_for_function(
                        f"() => document.querySelectorAll('.span-row').length >= {spans}"
                    )
                else:
                    page.wait_for_selector(ready)
                results.setdefault(name, []).append(time.perf_counter() - started)
        browser.close()
    return {name: statistics.median(times) for name, times in results.items()}


def api_times(dashboard: str, runs: int) -> dict[str, float]:
    calls = {
        "/api/logs (200 newest)": ("/api/logs", {"limit": 200, "since": "7d"}),
        "/api/traces (100)": ("/api/traces", {"limit": 100, "since": "7d"}),
        "/api/overview": ("/api/overview", {}),
    }
    out = {}
    with httpx.Client(base_url=dashboard, timeout=60) as client:
        for name, (path, params) in calls.items():
            times = []
            for _ in range(runs):
                started = time.perf_counter()
                client.get(path, params=params)
                times.append(time.perf_counter() - started)
            out[name] = statistics.median(times)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--collector", help="a filled collector's URL")
    parser.add_argument("--registry", help="a registry's URL")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        sys.exit(f"{CHROMIUM} is not installed")
    with (
        Served(fake_collector(spans=shop_spans() + big_trace(), logs=shop_logs())) as fake,
        shop_registry() as registry,
    ):
        collector = args.collector or fake.url
        trace_id, spans = biggest_trace(collector) if args.collector else (BIG, 1000)
        config = DashboardConfig(
            collector=collector, registry=args.registry or registry.url, lab_dir=ROOT / "lab-report"
        )
        with Served(create_app(config)) as dashboard:
            stats = httpx.get(f"{collector}/api/stats").json()
            print(f"collector {collector}: {stats.get('store') or stats.get('accepted')}")
            for name, seconds in api_times(dashboard.url, args.runs).items():
                print(f"  {name:<28} {seconds * 1000:8.1f} ms")
            for name, seconds in measure(dashboard.url, trace_id, spans, args.runs).items():
                verdict = "ok" if seconds < 1.0 else "SLOW (target < 1 s)"
                print(f"  first render {name:<22} {seconds * 1000:8.1f} ms  {verdict}")


if __name__ == "__main__":
    main()
