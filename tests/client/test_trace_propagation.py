"""The client's requests carry the caller's trace: a real server sees `traceparent`."""

from __future__ import annotations

import http.server
import io
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import CollectorRegistry

import cairn.observability as obs
from cairn.client import ServiceClient
from cairn.discovery import Instance, SQLiteRegistry


@contextmanager
def header_recorder() -> Iterator[tuple[int, list[dict[str, str]]]]:
    """A tiny HTTP server on 127.0.0.1 that records every request's headers."""
    seen: list[dict[str, str]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append({k.lower(): v for k, v in self.headers.items()})
            body = b"ok"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1]), seen
    finally:
        server.shutdown()
        server.server_close()


async def test_a_call_inside_a_span_propagates_that_trace_to_the_instance() -> None:
    obs.setup(
        service="orders", log_stream=io.BytesIO(), traces="none", registry=CollectorRegistry()
    )
    registry = SQLiteRegistry(":memory:")
    try:
        with header_recorder() as (port, seen):
            await registry.register(Instance("inventory", "inventory-1", "127.0.0.1", port))
            client = ServiceClient(registry)
            try:
                with obs.span("inventory.check") as span:
                    response = await client.get("inventory", "/inventory/items")
                    context = span.get_span_context()
            finally:
                await client.aclose()
    finally:
        await registry.aclose()
        obs.shutdown()
    assert response.status_code == 200
    (headers,) = seen
    version, trace_id, parent_id, flags = headers["traceparent"].split("-")
    assert (version, flags) == ("00", "01")
    assert trace_id == f"{context.trace_id:032x}"
    # The parent is the client span made for this request, not the caller's.
    assert parent_id != f"{context.span_id:016x}"
