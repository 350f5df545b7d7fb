"""The dashboard in headless Chromium against the REAL shop run by ``cairn up``.

One ``cairn up`` (a subprocess) of a copy of examples/shop with the collector
scraping every second and the dashboard on a free port, started once for the
module. Every assertion is about what the real services sent: the registry's
instances, a purchase's log line and trace, a breaker opened by ``cairn chaos``,
scraped request counters.

With CAIRN_SCREENSHOTS=1 the pages are captured (1280x800) into docs/images/.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from browser_support import MARKS, chromium, watched_page
from click.testing import CliRunner

from cairn.platform._chaos_cli import chaos_command
from shop_support import INSTANCES, RunningShop, running_shop

pytestmark = MARKS
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningShop]:
    parent = tmp_path_factory.mktemp("real-shop")
    args = ("--collector-port", "0", "--dashboard-port", "0")
    with running_shop(parent, *args, scrape_interval=1, wanted=("collector", "dashboard")) as shop:
        yield shop


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if os.environ.get("CAIRN_SCREENSHOTS") == "1":
        out = ROOT / "docs" / "images"
        out.mkdir(parents=True, exist_ok=True)
        return out
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    with watched_page(browser, timeout_ms=30_000) as (page, problems):
        yield page
    # A CSP violation or a script error on real data shows up here.
    assert problems == []


def purchase(shop: RunningShop, user_id: int, item_id: int) -> str:
    """POST /orders on orders-1 under a trace id chosen here; returns that id."""
    trace_id = secrets.token_hex(16)
    response = httpx.post(
        shop.url("orders-1") + "/orders",
        json={"user_id": user_id, "item_id": item_id, "quantity": 1},
        headers={"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    return trace_id


def get_orders(shop: RunningShop, count: int, *, first: int = 1) -> None:
    orders = shop.url("orders-1")
    with httpx.Client(timeout=30) as http:
        for n in range(first, first + count):
            # 200 even when inventory fails: the order comes back degraded.
            assert http.get(f"{orders}/orders/{n}").status_code == 200


def api(shop: RunningShop, path: str, **params: str) -> Any:
    response = httpx.get(shop.run["dashboard"] + path, params=params, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def chaos(shop: RunningShop, *args: str) -> str:
    result = CliRunner().invoke(
        chaos_command, ["--run-file", str(shop.run_file), *args], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    return result.output


def test_overview_lists_every_instance_passing(page: Any, shop: RunningShop) -> None:
    page.goto(shop.run["dashboard"] + "/#/overview")
    for iid in INSTANCES:
        row = page.wait_for_selector(f'tr.instance-row[data-instance="{iid}"]')
        assert row.query_selector(".badge").inner_text() == "passing"
        assert re.search(r"127\.0\.0\.1:\d+", row.inner_text())
    services = page.locator("tr.service-row").evaluate_all(
        "rows => rows.map(r => r.dataset.service)"
    )
    assert set(services) >= {"users", "orders", "inventory"}
    inventory = page.locator('tr.service-row[data-service="inventory"]')
    assert "2 instance(s)" in inventory.inner_text()


def test_a_purchase_log_line_leads_to_its_waterfall(
    page: Any, shop: RunningShop, shots: Path
) -> None:
    # The first calls to users and inventory start orders' registry watches, and
    # those long polls land in the calling request's trace (see the H7 report):
    # a first purchase takes them, so the one looked at below is a plain one.
    purchase(shop, 7, 3)
    trace_id = purchase(shop, 123, 7)
    purchase(shop, 42, 5)
    get_orders(shop, 10)

    page.goto(shop.run["dashboard"] + "/#/logs")
    page.fill("#log-query", "event:purchase_completed")
    page.press("#log-query", "Enter")
    # Only a list that answers this query counts: the page's own first search (no
    # query) may still be on screen, and it holds the purchase line too.
    answered = '#log-list[data-query="event:purchase_completed"]:not([aria-busy])'
    line = page.locator(f'{answered} .log-line:has(a.trace-link[href="#/trace/{trace_id}"])')

    def shown() -> bool:
        if line.count():
            return True
        # The line reaches the collector within the services' export delay: search again.
        with page.expect_response(lambda r: "/api/logs" in r.url):
            page.click("#log-search")
        return False

    shop.until(shown, "the purchase_completed line on the logs page")
    lines = page.locator(f"{answered} .log-line")
    assert lines.count() >= 1
    for text in lines.locator(".body").all_inner_texts():
        assert text == "purchase_completed"
    assert line.locator(".svc").inner_text() == "orders"
    line.locator("button.expand").click()
    fields = json.loads(line.locator("pre.fields").inner_text())
    assert fields["user_id"] == 123
    assert fields["item_id"] == 7
    page.screenshot(path=str(shots / "dashboard-logs.png"))

    line.locator("a.trace-link").click()
    page.wait_for_selector('.span-row[data-name="POST /orders"]')
    assert trace_id in page.url
    # Spans may still be arriving from the services' batch exporters: reload until
    # inventory's side of the trace is there.

    def whole() -> bool:
        if page.locator('.span-row[data-name="POST /inventory/reserve"]').count():
            return True
        page.reload()
        page.wait_for_selector(".span-row")
        return False

    shop.until(whole, "the purchase trace with inventory's spans")
    names = page.locator(".span-row").evaluate_all("r => r.map(x => x.dataset.name)")
    assert names[0] == "POST /orders"
    assert names.count("db.query") >= 2  # orders' INSERT and inventory's UPDATE
    assert "GET /users/{user_id}" in names
    page.click('.span-row[data-name="POST /inventory/reserve"]')
    assert "/inventory/reserve" in page.locator(".span-details").inner_text()
    assert "purchase_completed" in page.locator("table.trace-logs").inner_text()
    # An HTTP client span, named by its method only, says where it went.
    targets = page.locator(".wf-label .target").all_inner_texts()
    assert any("/inventory/reserve" in t for t in targets), targets
    # Long log fields wrap inside the page instead of widening it.
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.screenshot(path=str(shots / "dashboard-trace.png"))


def test_the_seed_trace_shows_db_query_and_inventory_check(
    page: Any, shop: RunningShop, shots: Path
) -> None:
    # POST /orders has no inventory.check span; the seed's GET /orders/{id} has.
    get_orders(shop, 5, first=20)
    page.goto(shop.run["dashboard"] + "/#/traces?service=orders&q=kind:server&since=15m")
    row = page.locator('tr.trace-row:has(a:text-is("orders: GET /orders/{order_id}"))').first

    def listed() -> bool:
        if row.count():
            return True
        with page.expect_response(lambda r: "/api/traces" in r.url):
            page.click("#trace-search")
        return False

    shop.until(listed, "a GET /orders/{order_id} trace in the list")
    page.screenshot(path=str(shots / "dashboard-traces.png"))
    row.locator("a").click()
    page.wait_for_selector('.span-row[data-name="db.query"]')
    page.wait_for_selector('.span-row[data-name="inventory.check"]')
    critical = page.locator(".span-row.critical").evaluate_all("r => r.map(x => x.dataset.name)")
    assert critical[0] == "GET /orders/{order_id}"


def test_a_breaker_opened_by_chaos_shows_on_the_overview(
    page: Any, shop: RunningShop, shots: Path
) -> None:
    badge = page.locator(
        'tr.instance-row[data-instance="orders-1"] .breaker[data-policy="inventory/inventory-1"]'
    )
    assert "100% errors (503)" in chaos(shop, "errors", "inventory-1", "--rate", "1")
    try:
        page.goto(shop.run["dashboard"] + "/#/overview")
        page.wait_for_selector('tr.instance-row[data-instance="orders-1"]')
        sent = [100]

        def open_badge() -> bool:
            # Round robin sends every other call to inventory-1; its 503s open the
            # breaker within a few calls, and the next scrape (1 s) carries it.
            get_orders(shop, 4, first=sent[0] % 150 + 1)
            sent[0] += 4
            return bool(badge.count()) and badge.first.get_attribute("data-state") == "open"

        shop.until(open_badge, "inventory/inventory-1's breaker open on the overview")
        assert badge.first.inner_text() == "inventory/inventory-1: open"
        assert "breaker-open" in (badge.first.get_attribute("class") or "")
        # inventory-1's 5xx share turns red once two scrapes hold its 503 counter.
        errors = page.locator('tr.instance-row[data-instance="inventory-1"] td.num').nth(1)

        def red() -> bool:
            get_orders(shop, 2)
            return "bad" in (errors.get_attribute("class") or "")

        shop.until(red, "inventory-1's 5xx share shown as bad")
        page.screenshot(path=str(shots / "dashboard-overview.png"))
    finally:
        assert "no fault" in chaos(shop, "restore", "inventory-1")


def test_metrics_page_charts_orders_requests(page: Any, shop: RunningShop, shots: Path) -> None:
    get_orders(shop, 10)

    def scraped() -> bool:
        # A rate needs the counter to grow between two scrapes: keep it growing.
        get_orders(shop, 2)
        series = api(
            shop,
            "/api/metrics/http_requests_total/range",
            by="service",
            since="5m",
            step="5",
            stat="rate",
        )["series"]
        return any(
            s["labels"].get("service") == "orders" and any(v > 0 for _, v in s["points"])
            for s in series
        )

    shop.until(scraped, "a non-zero request rate of orders in the collector")
    page.goto(shop.run["dashboard"] + "/#/metrics?service=orders&since=5m")
    chart = page.locator('figure.chart-box:has(figcaption:text-is("Requests per second"))')
    chart.locator("polyline").first.wait_for(state="attached")  # a flat line has no height
    assert "no data in this range" not in chart.inner_text()
    legend = chart.locator(".legend-item").all_inner_texts()
    assert "/orders/{order_id}" in legend
    # Some point sits above the zero line (y = 192 in the chart's 220-high viewBox).
    heights = chart.locator("polyline").evaluate_all(
        "ls => ls.flatMap(l => l.getAttribute('points').split(' ').map(p => +p.split(',')[1]))"
    )
    assert heights
    assert min(heights) < 191, heights
    page.wait_for_function(
        "() => [...document.querySelectorAll('#endpoint-table td')]"
        ".some(t => t.textContent === '/orders/{order_id}')"
    )
    page.screenshot(path=str(shots / "dashboard-metrics.png"))


def test_metrics_page_dots_are_exemplars_that_open_their_traces(
    page: Any, shop: RunningShop
) -> None:
    orders = shop.url("orders-1")
    ours = [secrets.token_hex(16) for _ in range(3)]
    with httpx.Client(timeout=30) as http:
        for n, trace_id in enumerate(ours, start=1):
            # sampled (flag 01): the duration's exemplar names this trace
            header = f"00-{trace_id}-{secrets.token_hex(8)}-01"
            assert (
                http.get(f"{orders}/orders/{n}", headers={"traceparent": header}).status_code == 200
            )

    def stored() -> list[str]:
        # exemplars the collector scraped whose traces it also received (OTLP)
        body = api(shop, "/api/exemplars", service="orders", since="5m")
        if body["source"] != "exemplars":
            return []
        ids = {e["trace_id"] for e in body["exemplars"]}
        if not ids & set(ours):
            return []
        dashboard = shop.run["dashboard"]
        return [
            t
            for t in ids
            if httpx.get(f"{dashboard}/api/traces/{t}", timeout=30).status_code == 200
        ]

    shop.until(stored, "an exemplar of orders whose trace the collector holds")
    page.goto(shop.run["dashboard"] + "/#/metrics?service=orders&since=5m")
    page.wait_for_selector(
        'svg.chart[aria-label="p99 latency (ms) · dots: exemplars"] a.exemplar-link'
    )
    hrefs = page.eval_on_selector_all(
        "svg.chart a.exemplar-link", "els => els.map(e => e.getAttribute('href'))"
    )
    linked = [h.removeprefix("#/trace/") for h in hrefs]
    assert all(re.fullmatch(r"[0-9a-f]{32}", t) for t in linked), hrefs
    existing = set(stored())
    assert existing & set(linked), (hrefs, existing)
    # Following a dot opens that trace (dots may overlap: the click goes to this one).
    target = next(t for t in linked if t in existing)
    page.locator(f'svg.chart a.exemplar-link[href="#/trace/{target}"]').first.dispatch_event(
        "click"
    )
    page.wait_for_function(f"() => location.hash.startsWith('#/trace/{target}')")
    page.wait_for_selector(".span-row")  # its waterfall, whichever request it was


def test_registry_page_shows_the_real_instances(page: Any, shop: RunningShop, shots: Path) -> None:
    page.goto(shop.run["dashboard"] + "/#/registry")
    for iid in INSTANCES:
        row = page.wait_for_selector(f'tr.registry-row[data-instance="{iid}"]')
        assert f"service:{iid}" in row.inner_text()
    assert "cairn registry server" in page.locator("#registry-backend").inner_text()
    page.wait_for_selector("#registry-history table")
    page.screenshot(path=str(shots / "dashboard-registry.png"))


def test_the_run_stops_cleanly(shop: RunningShop) -> None:
    # Last: SIGTERM stops the shop with its dashboard; nothing is left of the run.
    started = time.monotonic()
    shop.proc.send_signal(signal.SIGTERM)
    assert shop.proc.wait(60) == 0, shop.log()
    assert time.monotonic() - started < 60
    assert not shop.run_file.exists()
