"""httpx client spans: one per request, injecting ``traceparent``.

The hook sits on httpx's ``HTTPTransport.handle_request`` and
``AsyncHTTPTransport.handle_async_request`` (as OpenTelemetry's own httpx
instrumentation does), so every ``httpx.Client``/``AsyncClient`` is covered,
including those made before ``setup()``. Custom transports (e.g.
``httpx.MockTransport``) are not wrapped, nor are transports marked
``cairn_untraced = True`` (the registry clients' heartbeats and watches:
plumbing, not the application's calls).
"""

from __future__ import annotations

from typing import Any

import httpx
from opentelemetry import baggage, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.trace import SpanKind, StatusCode

from cairn.observability import _runtime
from cairn.observability._span import format_traceparent

__all__ = ["install", "uninstall"]

_BAGGAGE = W3CBaggagePropagator()
_originals: dict[str, Any] = {}


def _start(request: httpx.Request) -> trace.Span | None:
    runtime = _runtime.RUNTIME
    if runtime is None:
        return None
    url = request.url
    span = runtime.tracing.lean.start_child(
        request.method,
        kind=SpanKind.CLIENT,
        attributes={
            "http.request.method": request.method,
            "url.full": str(url.copy_with(username=None, password=None)),
            "server.address": url.host,
            "server.port": url.port or (443 if url.scheme == "https" else 80),
        },
    )
    span_context = span.get_span_context()
    request.headers["traceparent"] = format_traceparent(span_context)
    if span_context.trace_state:
        request.headers["tracestate"] = span_context.trace_state.to_header()
    if baggage.get_all():
        carrier: dict[str, str] = {}
        _BAGGAGE.inject(carrier)
        request.headers.update(carrier)
    return span


def _end(span: trace.Span, response: httpx.Response | None, error: BaseException | None) -> None:
    if response is not None:
        span.set_attribute("http.response.status_code", response.status_code)
        if response.status_code >= 400:
            # Client spans: 4xx is an error too (semantic conventions).
            span.set_attribute("error.type", str(response.status_code))
            span.set_status(StatusCode.ERROR)
    if error is not None:
        span.record_exception(error, escaped=True)
        span.set_attribute("error.type", type(error).__qualname__)
        span.set_status(StatusCode.ERROR, f"{type(error).__qualname__}: {error}")
    span.end()


def _handle_request(self: httpx.HTTPTransport, request: httpx.Request) -> httpx.Response:
    original = _originals["sync"]
    span = None if getattr(self, "cairn_untraced", False) else _start(request)
    if span is None:
        response: httpx.Response = original(self, request)
        return response
    try:
        response = original(self, request)
    except BaseException as exc:
        _end(span, None, exc)
        raise
    _end(span, response, None)
    return response


async def _handle_async_request(
    self: httpx.AsyncHTTPTransport, request: httpx.Request
) -> httpx.Response:
    original = _originals["async"]
    span = None if getattr(self, "cairn_untraced", False) else _start(request)
    if span is None:
        response: httpx.Response = await original(self, request)
        return response
    try:
        response = await original(self, request)
    except BaseException as exc:
        _end(span, None, exc)
        raise
    _end(span, response, None)
    return response


def install() -> None:
    """Hook httpx's transports (idempotent)."""
    if _originals:
        return
    _originals["sync"] = httpx.HTTPTransport.handle_request
    _originals["async"] = httpx.AsyncHTTPTransport.handle_async_request
    httpx.HTTPTransport.handle_request = _handle_request  # type: ignore[method-assign]
    httpx.AsyncHTTPTransport.handle_async_request = _handle_async_request  # type: ignore[method-assign]


def uninstall() -> None:
    """Put httpx's transports back as they were."""
    if not _originals:
        return
    httpx.HTTPTransport.handle_request = _originals.pop("sync")  # type: ignore[method-assign]
    httpx.AsyncHTTPTransport.handle_async_request = _originals.pop("async")  # type: ignore[method-assign]
