"""Proof: two real services, one trace, received over OTLP/HTTP; logs correlated."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from obs_servers import OtlpReceiver, uvicorn_server, wait_for

pytestmark = pytest.mark.slow

SERVER, CLIENT = 2, 3  # OTLP span kinds


def test_orders_and_inventory_make_one_trace(tmp_path: Path) -> None:
    with OtlpReceiver() as otlp:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": otlp.url}
        with (
            uvicorn_server("inventory", env=env, log_path=tmp_path / "inventory.log") as inventory,
            uvicorn_server(
                "orders",
                env={**env, "INVENTORY_URL": inventory.url},
                log_path=tmp_path / "orders.log",
            ) as orders,
        ):
            response = httpx.get(orders.url + "/orders/42", timeout=10)
            assert response.json() == {"order_id": 42, "stock": 3}
            root = wait_for(
                lambda: [s for s in otlp.snapshot() if s["name"] == "GET /orders/{order_id}"],
                what="the orders server span",
            )[0]
            trace_id = root["trace_id"]

            def whole_trace() -> list[dict[str, object]]:
                spans = [s for s in otlp.snapshot() if s["trace_id"] == trace_id]
                return spans if len(spans) >= 5 else []

            spans = wait_for(whole_trace, what="all five spans of the trace")
            wait_for(
                lambda: any(line.get("event") == "request" for line in orders.lines()),
                what="the orders request log line",
            )
            orders_lines = orders.lines()
            inventory_lines = inventory.lines()

    by_name = {s["name"]: s for s in spans}
    assert sorted(by_name) == [
        "GET",
        "GET /inventory/items",
        "GET /orders/{order_id}",
        "db.query",
        "inventory.check",
    ]
    assert len(spans) == 5
    server = by_name["GET /orders/{order_id}"]
    assert server["parent_span_id"] == ""
    assert server["service"] == "orders"
    assert server["kind"] == SERVER
    assert server["attributes"]["http.route"] == "/orders/{order_id}"
    assert by_name["db.query"]["parent_span_id"] == server["span_id"]
    check = by_name["inventory.check"]
    assert check["parent_span_id"] == server["span_id"]
    client = by_name["GET"]
    assert client["kind"] == CLIENT
    assert client["parent_span_id"] == check["span_id"]
    items = by_name["GET /inventory/items"]
    assert items["service"] == "inventory"
    assert items["kind"] == SERVER
    assert items["parent_span_id"] == client["span_id"]

    def correlated(lines: list[dict[str, object]], event: str) -> dict[str, object]:
        (line,) = [x for x in lines if x.get("event") == event]
        assert line["trace_id"] == trace_id
        return line

    purchase = correlated(orders_lines, "purchase_completed")
    assert purchase["service"] == "orders"
    assert (purchase["price"], purchase["currency"]) == (19.99, "USD")
    assert correlated(orders_lines, "order_loaded")["span_id"] == by_name["db.query"]["span_id"]
    correlated(orders_lines, "request")
    stock = correlated(inventory_lines, "stock_checked")
    assert stock["service"] == "inventory"
    assert stock["span_id"] == items["span_id"]
    request = correlated(inventory_lines, "request")
    assert request["route"] == "/inventory/items"
