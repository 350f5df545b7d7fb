"""The dashboard in a real headless Chromium (Playwright), against real HTTP servers.

Screenshots of every page (1280x800) go to docs/images/ when CAIRN_SCREENSHOTS=1,
else to a temporary folder.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_support import MARKS, chromium, watched_page
from dash_support import (
    BUY_TRACE,
    MS,
    NOW,
    SLOW_TRACE,
    Served,
    fake_collector,
    real_collector,
    shop_logs,
    shop_registry,
    shop_spans,
)

from cairn.collector._records import SpanRecord
from cairn.dashboard import DashboardConfig, create_app

pytestmark = MARKS
ROOT = Path(__file__).resolve().parents[2]
BIG_TRACE = "b16" + "0" * 29


def big_trace(n: int = 1000) -> list[SpanRecord]:
    """A 1,000-span trace: a root with chains of children."""
    t = NOW - 30_000 * MS
    spans = [SpanRecord(BIG_TRACE, f"{0:016x}", None, "GET /big", "frontend", t, t + 900 * MS)]
    for i in range(1, n):
        parent = f"{(i - 1) if i % 10 else 0:016x}"
        start = t + i * 800_000
        spans.append(
            SpanRecord(BIG_TRACE, f"{i:016x}", parent, f"step-{i}", "orders", start, start + MS)
        )
    return spans


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if os.environ.get("CAIRN_SCREENSHOTS") == "1":
        out = ROOT / "docs" / "images"
        out.mkdir(parents=True, exist_ok=True)
        return out
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture(scope="module")
def lab_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lab")
    for name in ("cp-partition", "ap-partition"):
        (root / name).mkdir()
        (root / name / "report.html").write_text(
            f"<html><body><h1>cairn lab: {name}</h1></body></html>", encoding="utf-8"
        )
        (root / name / "history.jsonl").write_text("{}\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def stack(lab_dir: Path) -> Iterator[dict[str, Served]]:
    collector_app = fake_collector(spans=shop_spans() + big_trace(), logs=shop_logs())
    with Served(collector_app) as collector, shop_registry() as registry:
        config = DashboardConfig(
            collector=collector.url, registry=registry.url, lab_dir=lab_dir, poll_interval=0.2
        )
        with Served(create_app(config)) as dashboard:
            yield {"collector": collector, "registry": registry, "dashboard": dashboard}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    with watched_page(browser, timeout_ms=15_000) as (page, problems):
        page.problems = problems
        yield page
    # A CSP violation or a script error shows up here.
    assert [p for p in problems if "401" not in p and "502" not in p] == []


def test_overview_lists_services_instances_and_an_open_breaker(
    page: Any, stack: dict[str, Served], shots: Path
) -> None:
    page.goto(stack["dashboard"].url + "/#/overview")
    for iid in ("orders-1", "inventory-1", "inventory-2"):
        page.wait_for_selector(f'tr.instance-row[data-instance="{iid}"]')
    services = page.locator("tr.service-row").evaluate_all(
        "rows => rows.map(r => r.dataset.service)"
    )
    assert set(services) >= {"frontend", "inventory", "orders"}
    orders = page.locator('tr.instance-row[data-instance="orders-1"]')
    assert "2.1.0" in orders.inner_text()
    assert "127.0.0.1:9101" in orders.inner_text()
    breaker = orders.locator(".breaker-open")
    assert breaker.get_attribute("data-policy") == "inventory/inventory-1"
    assert "open" in breaker.inner_text()
    page.screenshot(path=str(shots / "dashboard-overview.png"))


def test_log_query_to_trace_waterfall(page: Any, stack: dict[str, Served], shots: Path) -> None:
    page.goto(stack["dashboard"].url + "/#/logs")
    page.fill("#log-query", "event:purchase_completed")
    page.press("#log-query", "Enter")
    page.wait_for_function("() => document.querySelectorAll('#log-list .log-line').length === 1")
    line = page.locator("#log-list .log-line")
    assert "purchase_completed" in line.inner_text()
    line.locator("button.expand").click()
    assert '"total": 19.5' in line.locator("pre.fields").inner_text()
    page.screenshot(path=str(shots / "dashboard-logs.png"))
    line.locator("a.trace-link").click()
    page.wait_for_selector('.span-row[data-name="db.query"]')
    page.wait_for_selector('.span-row[data-name="inventory.check"]')
    assert BUY_TRACE in page.url
    # db.query then inventory.check ran one after the other: both critical; cache.get
    # ran beside db.query and finished first: not.
    critical = page.locator(".span-row.critical").evaluate_all("r => r.map(x => x.dataset.name)")
    assert critical == ["POST /buy", "POST /orders", "db.query", "inventory.check"]
    page.click('.span-row[data-name="inventory.check"]')
    details = page.locator(".span-details")
    assert "breaker.transition" in details.inner_text()
    assert "<b>sku-1</b>" in details.inner_text()  # shown as text, not bold
    assert page.locator(".span-details b", has_text="sku-1").count() == 0
    assert "purchase_completed" in page.locator("table.trace-logs").inner_text()
    page.screenshot(path=str(shots / "dashboard-trace.png"))


def test_script_in_a_log_line_stays_text(page: Any, stack: dict[str, Served]) -> None:
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(stack["dashboard"].url + "/#/logs?q=level:error")
    page.wait_for_selector("#log-list .log-line")
    text = page.locator("#log-list .log-line .body").first.inner_text()
    assert text == "<script>alert('pwned')</script>"
    page.locator("#log-list button.expand").first.click()
    assert "onerror=alert(2)" in page.locator("#log-list pre.fields").first.inner_text()
    assert page.locator("#log-list script, #log-list img").count() == 0
    assert dialogs == []


def test_a_query_error_shows_its_column(page: Any, stack: dict[str, Served]) -> None:
    page.goto(stack["dashboard"].url + "/#/logs")
    page.fill("#log-query", "level:(error")
    page.press("#log-query", "Enter")
    error = page.wait_for_selector("#query-error:not([hidden])")
    assert "column" in error.inner_text()
    page.problems.clear()  # the 400 from the collector is logged by the browser


def test_traces_list_and_compare(page: Any, stack: dict[str, Served], shots: Path) -> None:
    page.goto(stack["dashboard"].url + "/#/traces")
    page.wait_for_selector(f'tr.trace-row[data-trace-id="{BUY_TRACE}"]')
    assert page.locator("tr.trace-row .dbar").count() >= 3
    page.screenshot(path=str(shots / "dashboard-traces.png"))
    boxes = page.locator("tr.trace-row input.pick")
    boxes.nth(0).check()
    boxes.nth(1).check()
    page.click("#trace-compare")
    page.wait_for_selector(".compare-col .waterfall")
    assert page.locator(".compare-col").count() == 2


def test_a_thousand_span_trace_renders(page: Any, stack: dict[str, Served]) -> None:
    page.goto(stack["dashboard"].url + "/#/overview")
    started = time.monotonic()
    page.goto(stack["dashboard"].url + f"/#/trace/{BIG_TRACE}")
    page.wait_for_function("() => document.querySelectorAll('.span-row').length === 1000")
    elapsed = time.monotonic() - started
    assert elapsed < 10, elapsed  # bench/dashboard.py measures it; < 1 s on a quiet machine


def test_metrics_page_draws_charts_with_exemplars(
    page: Any, stack: dict[str, Served], shots: Path
) -> None:
    page.goto(stack["dashboard"].url + "/#/metrics?service=orders")
    page.wait_for_selector("svg.chart polyline")
    page.wait_for_selector("svg.chart a.exemplar-link")
    href = page.locator("svg.chart a.exemplar-link").first.get_attribute("href")
    assert href.startswith("#/trace/")
    # orders has stored exemplars: the dots are those, each linking to its own trace
    hrefs = page.eval_on_selector_all(
        "svg.chart a.exemplar-link", "els => els.map(e => e.getAttribute('href'))"
    )
    assert sorted(hrefs) == sorted([f"#/trace/{BUY_TRACE}", f"#/trace/{SLOW_TRACE}"])
    assert page.locator('svg.chart[aria-label="p99 latency (ms) · dots: exemplars"]').count() == 1
    page.wait_for_function(
        "() => [...document.querySelectorAll('#endpoint-table td')].some(t => t.textContent === '/orders')"
    )
    page.screenshot(path=str(shots / "dashboard-metrics.png"))
    page.select_option("#metric-service", "inventory")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#endpoint-table td')].some(t => t.textContent === '/check')"
    )


def test_registry_page_shows_checks_and_history(
    page: Any, stack: dict[str, Served], shots: Path
) -> None:
    page.goto(stack["dashboard"].url + "/#/registry")
    page.wait_for_selector('tr.registry-row[data-instance="inventory-2"]')
    backend = page.locator("#registry-backend").inner_text()
    assert "cairn registry server" in backend
    assert "consistency: one node" in backend
    row = page.locator('tr.registry-row[data-instance="inventory-2"]')
    assert "zone=local" in row.inner_text()
    assert "service:inventory-2" in row.inner_text()
    page.wait_for_selector("#registry-history table")
    page.screenshot(path=str(shots / "dashboard-registry.png"))


def test_lab_page_lists_runs(page: Any, stack: dict[str, Served], shots: Path) -> None:
    page.goto(stack["dashboard"].url + "/#/lab")
    page.wait_for_selector("#lab-runs tr.lab-row")
    assert page.locator("#lab-runs tr.lab-row").count() == 2
    href = page.locator("#lab-runs tr.lab-row a").first.get_attribute("href")
    assert href.startswith("/lab/files/")
    assert href.endswith("/report.html")
    page.screenshot(path=str(shots / "dashboard-lab.png"))


def test_with_a_token_a_request_without_it_gets_401(
    browser: Any, stack: dict[str, Served], lab_dir: Path
) -> None:
    config = DashboardConfig(
        collector=stack["collector"].url, registry=None, lab_dir=lab_dir, token="s3cret-token"
    )
    with Served(create_app(config)) as dashboard:
        context = browser.new_context()
        try:
            page = context.new_page()
            assert page.goto(dashboard.url + "/").status == 401
            assert page.request.get(dashboard.url + "/api/logs").status == 401
            response = page.goto(dashboard.url + "/?token=s3cret-token#/logs")
            assert response.status == 200
            page.wait_for_selector("#log-list .log-line")
            assert page.request.get(dashboard.url + "/api/logs").status == 200
        finally:
            context.close()


def test_log_to_trace_with_the_real_collector(browser: Any, lab_dir: Path) -> None:
    with real_collector() as url:
        config = DashboardConfig(collector=url, registry=None, lab_dir=lab_dir)
        with Served(create_app(config)) as dashboard:
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            try:
                page = context.new_page()
                page.set_default_timeout(15_000)
                page.goto(dashboard.url + "/#/logs?q=event:purchase_completed")
                page.wait_for_selector("#log-list .log-line a.trace-link").click()
                page.wait_for_selector('.span-row[data-name="db.query"]')
                page.wait_for_selector('.span-row[data-name="inventory.check"]')
            finally:
                context.close()


class HeldSearches:
    """Holds back the logs page's searches with (or without) a query until released."""

    def __init__(self, page: Any, *, filtered: bool) -> None:
        self.page = page
        self.filtered = filtered
        self.routes: list[Any] = []
        page.route("**/api/logs*", self._route)

    def _route(self, route: Any) -> None:
        if ("q=" in route.request.url) == self.filtered:
            self.routes.append(route)
        else:
            route.continue_()

    def wait(self, what: str) -> None:
        deadline = time.monotonic() + 15
        while not self.routes and time.monotonic() < deadline:
            self.page.wait_for_timeout(20)  # lets Playwright deliver the route event
        assert self.routes, f"{what} never started"

    def release(self) -> None:
        self.routes.pop(0).continue_()


def test_a_slow_answer_to_an_older_search_does_not_replace_a_newer_one(
    page: Any, stack: dict[str, Served]
) -> None:
    # The page's own first search (no query) is held back until the query typed
    # meanwhile has been answered; its late answer must not replace the list.
    held = HeldSearches(page, filtered=False)
    page.goto(stack["dashboard"].url + "/#/logs")
    held.wait("the first search")
    page.fill("#log-query", "event:purchase_completed")
    page.press("#log-query", "Enter")
    page.wait_for_function("() => document.querySelectorAll('#log-list .log-line').length === 1")
    held.release()
    page.wait_for_selector('#log-list[data-dropped="1"]')
    lines = page.locator("#log-list .log-line")
    assert lines.count() == 1
    assert "purchase_completed" in lines.inner_text()


def test_a_list_says_it_waits_and_which_search_it_shows(
    page: Any, stack: dict[str, Served]
) -> None:
    # While a typed query is on its way, the list still shows the older results:
    # it says so (aria-busy), and names its search only once the answer is drawn.
    held = HeldSearches(page, filtered=True)
    page.goto(stack["dashboard"].url + "/#/logs")
    page.wait_for_selector('#log-list[data-query=""]:not([aria-busy]) .log-line')
    unfiltered = page.locator("#log-list .log-line").count()
    assert unfiltered > 1
    page.fill("#log-query", "event:purchase_completed")
    page.press("#log-query", "Enter")
    page.wait_for_selector('#log-list[aria-busy="true"][data-query=""]')
    held.wait("the typed search")
    assert page.locator("#log-list .log-line").count() == unfiltered
    held.release()
    page.wait_for_selector('#log-list[data-query="event:purchase_completed"]:not([aria-busy])')
    assert page.locator("#log-list .log-line .body").all_inner_texts() == ["purchase_completed"]
