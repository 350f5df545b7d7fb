"""The inventory service: stock and prices of the shop's items.

- ``GET /inventory/items`` lists items (``?item_id=`` for one: a list of zero or one);
- ``POST /inventory/reserve`` ``{"item_id", "quantity"}`` takes stock in one
  atomic ``UPDATE``: 409 when there is not enough, 404 for an unknown item.

``cairn.toml`` runs two replicas; they share ``.cairn/inventory.db``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from _db import Database, db_path
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    item_id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    price REAL NOT NULL,
    currency TEXT NOT NULL,
    stock INTEGER NOT NULL CHECK (stock >= 0)
);
"""
ITEMS = 20
STOCK = 10_000
_KINDS = ("boots", "tent", "lantern", "rope", "map")


def price_of(item_id: int) -> float:
    """The seeded price of an item."""
    return round(4.99 + 5 * item_id, 2)


def seed(connection: sqlite3.Connection) -> None:
    """Items 1..20, 10 000 in stock each (kept if already there)."""
    connection.executemany(
        "INSERT OR IGNORE INTO items (item_id, name, price, currency, stock) VALUES (?, ?, ?, ?, ?)",
        [
            (n, f"{_KINDS[n % len(_KINDS)]} #{n}", price_of(n), "USD", STOCK)
            for n in range(1, ITEMS + 1)
        ],
    )


class Reservation(BaseModel):
    """A request to take ``quantity`` of ``item_id`` from stock."""

    item_id: int
    quantity: int = Field(default=1, ge=1, le=100)


def create_app(*, database: Path | None = None) -> FastAPI:
    """The inventory app; its database is ``database``, else ``$INVENTORY_DB``, else
    ``.cairn/inventory.db``."""
    db = Database(database or db_path("INVENTORY_DB", "inventory.db"), schema=SCHEMA, seed=seed)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db.open()
        try:
            yield
        finally:
            db.close()

    app = FastAPI(title="inventory", version="1.0.0", lifespan=lifespan)

    @app.get("/inventory/items")
    async def items(item_id: int | None = None) -> dict[str, Any]:
        columns = "item_id, name, price, currency, stock"
        if item_id is None:
            rows = await db.fetchall(f"SELECT {columns} FROM items ORDER BY item_id")
        else:
            rows = await db.fetchall(f"SELECT {columns} FROM items WHERE item_id = ?", (item_id,))
        return {"items": rows}

    @app.post("/inventory/reserve")
    async def reserve(reservation: Reservation) -> dict[str, Any]:
        row = await db.fetchone(
            "UPDATE items SET stock = stock - ? WHERE item_id = ? AND stock >= ? "
            "RETURNING item_id, stock, price, currency",
            (reservation.quantity, reservation.item_id, reservation.quantity),
        )
        if row is None:
            known = await db.fetchone(
                "SELECT stock FROM items WHERE item_id = ?", (reservation.item_id,)
            )
            if known is None:
                raise HTTPException(404, f"no item {reservation.item_id}")
            raise HTTPException(
                409,
                f"item {reservation.item_id}: {known['stock']} in stock, "
                f"{reservation.quantity} asked",
            )
        return {
            "item_id": row["item_id"],
            "quantity": reservation.quantity,
            "remaining": row["stock"],
            "price": row["price"],
            "currency": row["currency"],
        }

    return app


app = create_app()
