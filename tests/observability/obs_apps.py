"""The seed's two services, started by the real-server tests under uvicorn.

``orders`` calls ``inventory`` over httpx; both export spans over OTLP/HTTP
to ``OTEL_EXPORTER_OTLP_ENDPOINT`` and log JSON lines to stdout.
"""

from __future__ import annotations

import os

import httpx
from fastapi import FastAPI
from opentelemetry import trace

import cairn.observability as obs


def orders() -> FastAPI:
    obs.setup(service="orders", version="1.0.0", export_delay_ms=50)
    app = FastAPI()
    tracer = trace.get_tracer("orders")
    log = obs.get_logger("orders")
    inventory = os.environ["INVENTORY_URL"]
    client = httpx.AsyncClient(base_url=inventory)

    @app.get("/orders/{order_id}")
    async def get_order(order_id: int) -> dict[str, object]:
        with tracer.start_as_current_span("db.query"):
            log.info("order_loaded", order_id=order_id)
        with tracer.start_as_current_span("inventory.check"):
            stock = (await client.get("/inventory/items", params={"id": order_id})).json()
        log.info("purchase_completed", user_id=7, item_id=order_id, price=19.99, currency="USD")
        return {"order_id": order_id, "stock": stock["stock"]}

    return obs.instrument(app)


def inventory() -> FastAPI:
    obs.setup(service="inventory", version="1.0.0", export_delay_ms=50)
    app = FastAPI()
    log = obs.get_logger("inventory")

    @app.get("/inventory/items")
    async def items(id: int) -> dict[str, int]:
        log.info("stock_checked", item_id=id)
        return {"stock": 3}

    return obs.instrument(app)


def pid() -> FastAPI:
    """A service that says which worker answered (multi-worker tests)."""
    obs.setup(service="workers", export_delay_ms=50)
    app = FastAPI()

    @app.get("/pid")
    async def get_pid() -> dict[str, int]:
        return {"pid": os.getpid()}

    return obs.instrument(app)
