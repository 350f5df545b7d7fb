"""End to end: ``cairn up`` runs the shop with the collector; what the seed promises comes out.

One subprocess run of ``cairn up`` on a copy of examples/shop (collector scraping
every second, no dashboard): the seed's trace shape and log query come out of the
collector, ``http_requests_total`` there matches what was sent, an inventory
instance killed under load fails no order, injected errors open a breaker and
recovery closes it (seen in the scraped metrics and in span events), and after
SIGTERM no process of the run is left.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from cairn.collector import CollectorClient, SpanRecord
from cairn.platform._load import parse_mix, run_load
from shop_support import RunningShop, running_shop, wait_for

pytestmark = pytest.mark.slow


@dataclass
class Shop:
    running: RunningShop
    collector: CollectorClient

    def __getattr__(self, name: str) -> Any:
        return getattr(self.running, name)


def _processes_under(folder: Path) -> list[int]:
    """Pids whose command line or working directory is inside ``folder``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if str(folder) in cmdline or cwd.startswith(str(folder)):
            found.append(int(entry.name))
    return found


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[Shop]:
    with (
        running_shop(
            tmp_path, "--no-dashboard", "--collector-port", "0", scrape_interval=1
        ) as running,
        CollectorClient(running.run["collector"]) as collector,
    ):
        yield Shop(running, collector)


def _children(spans: list[SpanRecord], parent: SpanRecord) -> list[SpanRecord]:
    return [s for s in spans if s.parent_span_id == parent.span_id]


def _descendants(spans: list[SpanRecord], parent: SpanRecord) -> list[SpanRecord]:
    found, todo = [], [parent]
    while todo:
        for child in _children(spans, todo.pop()):
            found.append(child)
            todo.append(child)
    return found


def _orders_requests(shop: Shop) -> float | None:
    found = shop.collector.metric("http_requests_total", by=["service"], since="10m")
    if found is None:  # not scraped yet
        return None
    kind, series = found
    assert kind == "counter"
    return next((s.latest for s in series if s.labels.get("service") == "orders"), None)


def _breaker(shop: Shop, state: str) -> float | None:
    found = shop.collector.metric("cairn_breaker_state", by=["policy", "state"], since="1m")
    if found is None:  # no breaker has changed state yet
        return None
    _, series = found
    return next(
        (
            s.latest
            for s in series
            if s.labels == {"policy": "inventory/inventory-1", "state": state}
        ),
        None,
    )


def test_the_seed_end_to_end_under_cairn_up(shop: Shop) -> None:
    orders = shop.url("orders-1")
    sent = 0
    with httpx.Client(timeout=10) as http:
        # The seed's request, and a purchase whose trace id the test chooses.
        assert http.get(orders + "/orders/123").status_code == 200
        trace_id = secrets.token_hex(16)
        parent = f"00-{trace_id}-{secrets.token_hex(8)}-01"
        bought = http.post(
            orders + "/orders",
            json={"user_id": 123, "item_id": 7, "quantity": 1},
            headers={"traceparent": parent},
        )
        assert bought.status_code == 201, bought.text
        sent += 2
        for n in range(1, 29):
            assert http.get(f"{orders}/orders/{n}").status_code == 200
            sent += 1

    # The seed's trace: GET /orders/123 ├─ db.query └─ inventory.check └─ GET /inventory/items
    def seed_trace() -> list[SpanRecord] | None:
        found = shop.collector.traces(query='url.path:"/orders/123"', since="10m", limit=1)
        trace = shop.collector.trace(found[0].trace_id) if found else None
        if trace is None or not any(s.service == "inventory" for s in trace.spans):
            return None
        return trace.spans

    spans = wait_for(seed_trace, "the seed's trace in the collector")
    root = next(s for s in spans if s.parent_span_id is None)
    assert (root.name, root.service, root.kind) == ("GET /orders/{order_id}", "orders", "server")
    assert [c.name for c in _children(spans, root)] == ["db.query", "inventory.check"]
    check = _children(spans, root)[1]
    below = _descendants(spans, check)
    assert any(
        s.name == "GET /inventory/items" and s.service == "inventory" and s.kind == "server"
        for s in below
    )

    # The seed's log query finds the purchase, with its request's trace id.
    def purchase() -> list[Any]:
        return shop.collector.logs(
            f"event:purchase_completed AND user_id:123 AND trace_id:{trace_id}", since="10m"
        )

    [line] = wait_for(purchase, "the purchase_completed line")
    assert line.trace_id == trace_id
    assert line.service == "orders"
    assert {"user_id", "item_id", "price", "currency"} <= set(line.attributes)

    # http_requests_total, scraped from orders-1, counts exactly what was sent.
    wait_for(lambda: _orders_requests(shop) == sent, f"http_requests_total = {sent}")

    # An inventory instance dies under load: no order fails.
    mix = parse_mix('GET /orders/{id}:3,POST /orders {"user_id": {id}, "item_id": 3}:1')

    async def load_and_kill() -> Any:
        load = asyncio.ensure_future(run_load([orders], mix, rate=20, duration=5, seed=3))
        await asyncio.sleep(1.5)  # part of the scenario: the kill lands mid-load
        killed = await asyncio.to_thread(shop.control, "POST", "/instances/inventory-2/kill")
        assert killed.status_code == 200, killed.text
        return await load

    summary = asyncio.run(load_and_kill())
    assert summary.completed == 100
    assert summary.error_count == 0, summary.errors
    assert shop.control("POST", "/instances/inventory-2/start").status_code in (200, 202)

    def inventory_2_back() -> bool:
        status = shop.control("GET", "/status").json()
        row = next(i for i in status["instances"] if i["instance_id"] == "inventory-2")
        return bool(row["health"] == "passing")

    wait_for(inventory_2_back, "inventory-2 passing again")

    # Injected errors open inventory-1's breaker; recovery closes it. Seen in the
    # collector: the scraped gauge, and the transition as a span event.
    shop.chaos("inventory-1", {"error_rate": 1.0, "status": 503})
    get_mix = parse_mix("GET /orders/{id}")
    failing = asyncio.run(run_load([orders], get_mix, rate=20, duration=2, seed=4))
    assert failing.error_count == 0
    wait_for(lambda: _breaker(shop, "open") == 1.0, "inventory-1's breaker open, scraped")
    shop.chaos("inventory-1", None)

    def closed() -> bool:
        assert httpx.get(orders + "/orders/1", timeout=10).status_code == 200
        return _breaker(shop, "closed") == 1.0

    wait_for(closed, "inventory-1's breaker closed again, scraped")

    def transitions() -> set[tuple[str, str]]:
        found = shop.collector.traces(query="events:breaker.state_changed", since="10m", limit=50)
        seen = set()
        for summary_ in found:
            trace = shop.collector.trace(summary_.trace_id)
            for span in trace.spans if trace else []:
                for event in span.events:
                    if event.name == "breaker.state_changed":
                        attrs = event.attributes
                        seen.add(
                            (str(attrs.get("cairn.from_state")), str(attrs.get("cairn.to_state")))
                        )
        return seen if {("closed", "open"), ("half_open", "closed")} <= seen else set()

    wait_for(transitions, "breaker transitions as span events")

    # SIGTERM: everything stops, nothing of the run is left.
    shop.proc.send_signal(signal.SIGTERM)
    assert shop.proc.wait(60) == 0, (shop.folder / "up.out").read_text()
    assert not (shop.folder / ".cairn" / "run.json").exists()
    wait_for(lambda: not _processes_under(shop.folder), "no process of the run left", timeout=20)
