"""The seed's shop, in process: users, orders and two inventory replicas on real uvicorn servers.

Each service runs under ``cairn.service.serve`` on a free port with an SQLite
registry and SQLite databases in a temporary folder; orders finds the others
through the registry. Asserted: the seed's spans (``db.query`` then
``inventory.check`` under ``GET /orders/{order_id}``), the
``purchase_completed`` log line with user_id, item_id, price, currency and
a trace id, stock taken atomically (409 when it runs out), and an inventory
instance failing under injected faults cut off by its breaker without a
failed order.
"""

from __future__ import annotations

import asyncio
import importlib
import io
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

import cairn.observability as obs
import cairn.service._serve as serve_module
from cairn.service import Service, serve
from cairn.testing import capture_logs, capture_spans

SHOP = Path(__file__).resolve().parents[2] / "examples" / "shop"
TOKEN = "shop-chaos-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def _wait_for(predicate: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


@dataclass
class Shop:
    urls: dict[str, str]
    metrics: CollectorRegistry
    http: httpx.AsyncClient
    inventory: ModuleType

    def url(self, instance_id: str, path: str) -> str:
        return self.urls[instance_id] + path


@pytest.fixture
async def shop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Shop]:
    monkeypatch.syspath_prepend(str(SHOP))
    modules = {name: importlib.import_module(name) for name in ("users", "inventory", "orders")}
    servers: list[Any] = []
    original = serve_module._server_class

    def capturing() -> Any:
        cls = original()

        class Captured(cls):  # type: ignore[misc,valid-type]
            def __init__(self, config: Any) -> None:
                super().__init__(config)
                servers.append(self)

        return Captured

    monkeypatch.setattr(serve_module, "_server_class", capturing)
    metrics = CollectorRegistry()
    obs.setup(
        service="shop",
        traces="none",
        logs_export="none",
        registry=metrics,
        log_stream=io.StringIO(),
    )
    registry = f"sqlite:///{tmp_path / 'registry.db'}"
    data = tmp_path / "data"
    apps = {
        "users-1": ("users", modules["users"].create_app(database=data / "users.db")),
        "inventory-1": (
            "inventory",
            modules["inventory"].create_app(database=data / "inventory.db"),
        ),
        "inventory-2": (
            "inventory",
            modules["inventory"].create_app(database=data / "inventory.db"),
        ),
        "orders-1": (
            "orders",
            modules["orders"].create_app(database=data / "orders.db", registry=registry),
        ),
    }
    services: dict[str, Service] = {}
    tasks: list[asyncio.Task[None]] = []
    try:
        for instance_id, (name, app) in apps.items():
            service = Service(
                app,
                name=name,
                instance_id=instance_id,
                registry=registry,
                handle_signals=False,
                drain_delay=0,
                ttl=2.0,
                chaos_token=TOKEN,
            )
            services[instance_id] = service
            tasks.append(asyncio.create_task(serve(service, drain_timeout=2)))
        await _wait_for(
            lambda: all(s.registered for s in services.values()) or any(t.done() for t in tasks),
            "the shop to register",
        )
        for task in tasks:
            if task.done():
                task.result()
        urls = {i: f"http://127.0.0.1:{s.instance.port}" for i, s in services.items()}
        async with httpx.AsyncClient(timeout=15) as http:
            yield Shop(urls, metrics, http, modules["inventory"])
    finally:
        for server in servers:
            server.should_exit = True
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 20)
        obs.shutdown()


async def test_users_and_inventory_endpoints(shop: Shop) -> None:
    user = await shop.http.get(shop.url("users-1", "/users/7"))
    assert user.status_code == 200
    assert user.json()["user_id"] == 7
    assert (await shop.http.get(shop.url("users-1", "/users/999"))).status_code == 404

    listing = await shop.http.get(shop.url("inventory-1", "/inventory/items"))
    assert len(listing.json()["items"]) == 20
    one = await shop.http.get(shop.url("inventory-2", "/inventory/items"), params={"item_id": 3})
    assert [i["item_id"] for i in one.json()["items"]] == [3]
    assert one.json()["items"][0]["price"] == shop.inventory.price_of(3)

    # The two replicas share one stock: what one reserves, the other sees.
    taken = await shop.http.post(
        shop.url("inventory-1", "/inventory/reserve"), json={"item_id": 3, "quantity": 5}
    )
    assert taken.status_code == 200
    assert taken.json()["remaining"] == shop.inventory.STOCK - 5
    seen = await shop.http.get(shop.url("inventory-2", "/inventory/items"), params={"item_id": 3})
    assert seen.json()["items"][0]["stock"] == shop.inventory.STOCK - 5
    unknown = await shop.http.post(
        shop.url("inventory-2", "/inventory/reserve"), json={"item_id": 999, "quantity": 1}
    )
    assert unknown.status_code == 404


async def test_get_order_traces_db_query_then_inventory_check(shop: Shop) -> None:
    with capture_spans() as spans:
        response = await shop.http.get(shop.url("orders-1", "/orders/12"))
        assert response.status_code == 200
        body = response.json()
        assert body["order_id"] == 12
        assert body["inventory"]["status"] == "in_stock"
        assert body["degraded"] is False
        await _wait_for(
            lambda: any(s.name == "GET /orders/{order_id}" for s in spans), "the server span"
        )
    server = next(s for s in spans if s.name == "GET /orders/{order_id}")
    trace_id = server.context.trace_id
    in_trace = [s for s in spans if s.context.trace_id == trace_id]
    children = [s for s in in_trace if s.parent and s.parent.span_id == server.context.span_id]
    names = [s.name for s in sorted(children, key=lambda s: s.start_time or 0)]
    assert names[:2] == ["db.query", "inventory.check"]
    query = next(s for s in children if s.name == "db.query")
    assert query.attributes is not None
    assert query.attributes["db.system"] == "sqlite"
    assert "FROM orders" in str(query.attributes["db.statement"])
    # inventory.check holds the call to inventory, whose server span is in the same trace.
    check = next(s for s in children if s.name == "inventory.check")
    assert any(
        s.name == "GET /inventory/items"
        and s.parent is not None
        and s.context.trace_id == trace_id
        and s.start_time is not None
        and check.start_time is not None
        and s.start_time >= check.start_time
        for s in in_trace
    )
    assert (await shop.http.get(shop.url("orders-1", "/orders/100000"))).status_code == 404


async def test_purchase_logs_purchase_completed_with_a_trace_id(shop: Shop) -> None:
    with capture_logs() as lines:
        response = await shop.http.post(
            shop.url("orders-1", "/orders"), json={"user_id": 5, "item_id": 4, "quantity": 2}
        )
    assert response.status_code == 201, response.text
    order = response.json()
    price = round(shop.inventory.price_of(4) * 2, 2)
    assert order["price"] == price
    purchases = [line for line in lines if line.get("event") == "purchase_completed"]
    assert len(purchases) == 1
    line = purchases[0]
    assert (line["user_id"], line["item_id"], line["price"], line["currency"]) == (
        5,
        4,
        price,
        "USD",
    )
    assert len(line["trace_id"]) == 32
    assert line["order_id"] == order["order_id"]
    stored = await shop.http.get(shop.url("orders-1", f"/orders/{order['order_id']}"))
    assert stored.json()["price"] == price

    unknown_user = await shop.http.post(
        shop.url("orders-1", "/orders"), json={"user_id": 999, "item_id": 4}
    )
    assert unknown_user.status_code == 404
    too_many = await shop.http.post(
        shop.url("inventory-1", "/inventory/reserve"),
        json={"item_id": 6, "quantity": 100},
    )
    assert too_many.status_code == 200
    # Empty item 6 through inventory, then a purchase of it is refused with 409.
    remaining = too_many.json()["remaining"]
    while remaining >= 100:
        reply = await shop.http.post(
            shop.url("inventory-2", "/inventory/reserve"), json={"item_id": 6, "quantity": 100}
        )
        remaining = reply.json()["remaining"]
    if remaining:
        await shop.http.post(
            shop.url("inventory-1", "/inventory/reserve"),
            json={"item_id": 6, "quantity": remaining},
        )
    refused = await shop.http.post(
        shop.url("orders-1", "/orders"), json={"user_id": 5, "item_id": 6}
    )
    assert refused.status_code == 409


async def test_a_failing_inventory_instance_trips_its_breaker_without_failed_orders(
    shop: Shop,
) -> None:
    fault = {"error_rate": 1.0, "status": 503}
    chaos = await shop.http.post(shop.url("inventory-1", "/_cairn/chaos"), json=fault, headers=AUTH)
    assert chaos.status_code == 200
    for n in range(1, 31):
        response = await shop.http.get(shop.url("orders-1", f"/orders/{n}"))
        assert response.status_code == 200
        assert response.json()["inventory"]["status"] == "in_stock"  # retried on inventory-2
    state = shop.metrics.get_sample_value(
        "cairn_breaker_state", {"policy": "inventory/inventory-1", "state": "open"}
    )
    assert state == 1.0
    injected = shop.metrics.get_sample_value(
        "http_requests_total",
        {"method": "GET", "endpoint": "/inventory/items", "status": "503"},
    )
    assert injected is not None
    assert 1 <= injected <= 10  # cut off within a few requests, not 15 of 30
    restored = await shop.http.delete(shop.url("inventory-1", "/_cairn/chaos"), headers=AUTH)
    assert restored.status_code == 200
