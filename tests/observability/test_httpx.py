"""httpx client spans (sync and async) inject traceparent into real requests."""

from __future__ import annotations

import asyncio
import http.server
import socket
import threading
from collections.abc import Iterator

import httpx
import pytest
from obs_support import Setup
from opentelemetry import baggage, context
from opentelemetry.trace import SpanKind, StatusCode

import cairn.observability as obs
from cairn.observability._testing import capture_spans


@pytest.fixture
def echo() -> Iterator[tuple[str, list[dict[str, str]]]]:
    """A server on 127.0.0.1 recording each request's headers; /missing is a 404."""
    received: list[dict[str, str]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            received.append(dict(self.headers))
            self.send_response(404 if self.path == "/missing" else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_sync_client_span_and_propagation(
    observed: Setup, echo: tuple[str, list[dict[str, str]]]
) -> None:
    url, received = echo
    token = context.attach(baggage.set_baggage("tenant", "acme"))
    try:
        with (
            capture_spans() as spans,
            obs.span("inventory.check") as parent,
            httpx.Client() as client,
        ):
            assert client.get(url + "/items?id=1").status_code == 200
            assert client.get(url + "/missing").status_code == 404
    finally:
        context.detach(token)
    ok, missing, outer = spans
    assert ok.name == "GET"
    assert ok.kind is SpanKind.CLIENT
    assert ok.parent.span_id == parent.get_span_context().span_id
    assert ok.attributes["url.full"] == url + "/items?id=1"
    assert ok.attributes["server.address"] == "127.0.0.1"
    assert ok.attributes["http.response.status_code"] == 200
    assert ok.status.status_code is StatusCode.UNSET
    assert missing.status.status_code is StatusCode.ERROR
    assert received[0]["traceparent"] == obs.format_traceparent(ok.context)
    assert received[0]["baggage"] == "tenant=acme"
    assert outer.name == "inventory.check"
    with capture_spans() as spans, httpx.Client() as client, pytest.raises(httpx.ConnectError):
        client.get(f"http://127.0.0.1:{_closed_port()}/")
    assert spans[0].attributes["error.type"] == "ConnectError"


async def test_async_client_span_and_failures(
    observed: Setup, echo: tuple[str, list[dict[str, str]]]
) -> None:
    url, received = echo
    with capture_spans() as spans:
        async with httpx.AsyncClient() as client:
            await client.get(url + "/a")
            with pytest.raises(httpx.ConnectError):
                await client.get(f"http://127.0.0.1:{_closed_port()}/")
    ok, refused = spans
    assert received[0]["traceparent"] == obs.format_traceparent(ok.context)
    assert ok.parent is None  # no current span: the client span starts the trace
    assert refused.status.status_code is StatusCode.ERROR
    assert refused.events[0].name == "exception"


def test_no_spans_once_shut_down(echo: tuple[str, list[dict[str, str]]]) -> None:
    url, received = echo
    with httpx.Client() as client:
        client.get(url + "/")

    async def get() -> None:
        async with httpx.AsyncClient() as client:
            await client.get(url + "/")

    asyncio.run(get())
    assert all("traceparent" not in headers for headers in received)


async def test_registry_plumbing_is_not_traced(
    observed: Setup, echo: tuple[str, list[dict[str, str]]]
) -> None:
    from cairn.discovery._http import plumbing_transport

    url, received = echo
    with capture_spans() as spans:
        async with httpx.AsyncClient(transport=plumbing_transport()) as client:
            assert (await client.get(url + "/v1/agent/check/pass/x")).status_code == 200
        async with httpx.AsyncClient() as client:
            assert (await client.get(url + "/items")).status_code == 200
    assert [span.attributes["url.full"] for span in spans] == [url + "/items"]
    assert not any(key.lower() == "traceparent" for key in received[0])
    assert any(key.lower() == "traceparent" for key in received[1])
