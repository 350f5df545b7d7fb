"""The orders service: reads orders, and buys (checks the user, reserves stock, stores).

- ``GET /orders/{order_id}``: a ``db.query`` span, then an ``inventory.check``
  span around the call to ``inventory`` (``GET /inventory/items``) — the
  seed's trace. If inventory cannot answer, the order is still returned,
  with ``"inventory": {"status": "unknown"}`` and ``"degraded": true``.
- ``POST /orders`` ``{"user_id", "item_id", "quantity"}``: asks ``users``,
  reserves at ``inventory``, stores the order, logs ``purchase_completed``
  (user_id, item_id, price, currency) and answers 201.

Both other services are called through :class:`cairn.client.ServiceClient`:
round robin over passing instances, up to 3 attempts (each retry on another
instance), and one circuit breaker per instance tuned to act fast in a demo
(see :func:`shop_breaker`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from _db import Database, db_path
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

from cairn import CairnError
from cairn.client import ServiceClient
from cairn.discovery import Instance
from cairn.observability import get_logger, span
from cairn.resilience import CircuitBreaker

SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    order_id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL,
    item_id INTEGER NOT NULL,
    quantity INTEGER NOT NULL,
    price REAL NOT NULL,
    currency TEXT NOT NULL,
    status TEXT NOT NULL
);
"""
ORDERS = 200
log = get_logger("shop.orders")


def seed(connection: sqlite3.Connection) -> None:
    """Orders 1..200 of users 1..100 for items 1..20 (kept if already there)."""
    rows = []
    for n in range(1, ORDERS + 1):
        item_id, quantity = (n * 7) % 20 + 1, n % 3 + 1
        price = round((4.99 + 5 * item_id) * quantity, 2)
        rows.append((n, (n * 13) % 100 + 1, item_id, quantity, price, "USD", "completed"))
    connection.executemany(
        "INSERT OR IGNORE INTO orders (order_id, user_id, item_id, quantity, price, currency, status)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        rows,
    )


def _server_error(result: object) -> bool:
    return isinstance(result, httpx.Response) and result.status_code >= 500


def shop_breaker(service: str, instance: Instance) -> CircuitBreaker:
    """One breaker per instance: open when half of its last 10 calls failed (errors, 5xx),
    judged from the 4th call on, then refuse it for 5 s before one trial call.

    cairn's default (50 % over 30 s, at least 20 calls) suits real traffic; a
    demo at 20 req/s wants an instance failing under ``cairn chaos`` cut off
    within a few requests, and back soon after ``cairn chaos restore``.
    """
    return CircuitBreaker(
        name=f"{service}/{instance.id}",
        window_size=10,
        minimum_calls=4,
        failure_rate=0.5,
        recovery_timeout=5.0,
        failure_if_result=_server_error,
    )


class Purchase(BaseModel):
    """A purchase: ``quantity`` of ``item_id`` for ``user_id``."""

    user_id: int
    item_id: int
    quantity: int = Field(default=1, ge=1, le=100)


_COLUMNS = "order_id, user_id, item_id, quantity, price, currency, status"


def create_app(*, database: Path | None = None, registry: str | None = None) -> FastAPI:
    """The orders app; its database is ``database``, else ``$ORDERS_DB``, else
    ``.cairn/orders.db``; services are found in ``registry`` (else ``$CAIRN_REGISTRY``)."""
    db = Database(database or db_path("ORDERS_DB", "orders.db"), schema=SCHEMA, seed=seed)
    clients: list[ServiceClient] = []

    def client() -> ServiceClient:
        # Made on first use, not in the lifespan: cairn.service sets up
        # observability after the app's startup, and the client's metrics
        # attach to it when the client is made.
        if not clients:
            clients.append(
                ServiceClient(
                    registry,
                    breaker=shop_breaker,
                    attempts=3,
                    attempt_timeout=2.0,
                    total_timeout=5.0,
                )
            )
        return clients[0]

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db.open()
        try:
            yield
        finally:
            for made in clients:
                await made.aclose()
            db.close()

    app = FastAPI(title="orders", version="1.0.0", lifespan=lifespan)

    @app.get("/orders/{order_id}")
    async def get_order(order_id: int) -> dict[str, Any]:
        order = await db.fetchone(f"SELECT {_COLUMNS} FROM orders WHERE order_id = ?", (order_id,))
        if order is None:
            raise HTTPException(404, f"no order {order_id}")
        with span("inventory.check", **{"shop.item_id": order["item_id"]}) as current:
            inventory = await _check_inventory(client(), order["item_id"])
            current.set_attribute("shop.inventory_status", inventory["status"])
        return {**order, "inventory": inventory, "degraded": inventory["status"] == "unknown"}

    @app.post("/orders", status_code=201)
    async def purchase(body: Purchase) -> dict[str, Any]:
        calls = client()
        user = await _call(calls, "GET", "users", f"/users/{body.user_id}")
        if user.status_code == 404:
            raise HTTPException(404, f"no user {body.user_id}")
        _expect_ok(user, "users")
        reserved = await _call(
            calls,
            "POST",
            "inventory",
            "/inventory/reserve",
            json={"item_id": body.item_id, "quantity": body.quantity},
        )
        if reserved.status_code in (404, 409):
            raise HTTPException(reserved.status_code, reserved.json().get("detail", "refused"))
        _expect_ok(reserved, "inventory")
        stock = reserved.json()
        price = round(stock["price"] * body.quantity, 2)
        _rows, _changed, order_id = await db.query(
            "INSERT INTO orders (user_id, item_id, quantity, price, currency, status)"
            " VALUES (?, ?, ?, ?, ?, 'completed')",
            (body.user_id, body.item_id, body.quantity, price, stock["currency"]),
        )
        log.info(
            "purchase_completed",
            order_id=order_id,
            user_id=body.user_id,
            item_id=body.item_id,
            quantity=body.quantity,
            price=price,
            currency=stock["currency"],
        )
        return {
            "order_id": order_id,
            "user_id": body.user_id,
            "item_id": body.item_id,
            "quantity": body.quantity,
            "price": price,
            "currency": stock["currency"],
            "status": "completed",
        }

    return app


async def _check_inventory(calls: ServiceClient, item_id: int) -> dict[str, Any]:
    try:
        response = await calls.get("inventory", "/inventory/items", params={"item_id": item_id})
    except (CairnError, httpx.HTTPError) as exc:
        return {"status": "unknown", "reason": f"{type(exc).__name__}: {exc}"}
    if response.status_code != 200:
        return {"status": "unknown", "reason": f"inventory answered {response.status_code}"}
    items = response.json()["items"]
    stock = items[0]["stock"] if items else 0
    return {"status": "in_stock" if stock > 0 else "out_of_stock", "stock": stock}


async def _call(calls: ServiceClient, method: str, service: str, path: str, **options: Any) -> Any:
    try:
        return await calls.request(method, service, path, **options)
    except (CairnError, httpx.HTTPError) as exc:
        raise HTTPException(503, f"{service} is unavailable: {type(exc).__name__}: {exc}") from exc


def _expect_ok(response: httpx.Response, service: str) -> None:
    if response.status_code >= 400:
        raise HTTPException(503, f"{service} answered {response.status_code}")


app = create_app()
