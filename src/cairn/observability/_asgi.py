"""The ASGI middleware: one server span, RED metrics, one log line per request.

Pure ASGI (``async def __call__``; uvicorn would take a sync ``__call__`` for
ASGI2). The route template is read from ``scope["route"]`` after the app
returns: Starlette's router leaves it there, so naming the span
``GET /orders/{order_id}`` costs nothing and the ``endpoint`` label stays
bounded. Requests no route matched fold into ``endpoint="unmatched"``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from opentelemetry import context, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.trace.propagation import _SPAN_KEY

from cairn.observability import _logs, _runtime
from cairn.observability._metrics import ASGIApp, Message, Receive, Scope, Send, metrics_app
from cairn.observability._span import LeanSpan, parse_traceparent

__all__ = ["DEFAULT_EXCLUDED_PATHS", "CairnMiddleware", "instrument"]

DEFAULT_EXCLUDED_PATHS = ("/metrics", "/health", "/healthz", "/livez", "/readyz", "/ready")
UNMATCHED = "unmatched"
_BAGGAGE = W3CBaggagePropagator()


def _route_template(scope: Scope, root_path: str) -> str | None:
    route = scope.get("route")
    if route is None:
        return None
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    if not isinstance(template, str):
        return None
    # A mounted app's routes are relative; the mount's prefix was added to
    # root_path on the way in.
    mounted = scope.get("root_path", "")
    if len(mounted) > len(root_path):
        template = mounted[len(root_path) :] + template
    return template


class CairnMiddleware:
    """Wrap any ASGI app: traces, metrics and a log line for each HTTP request.

    ``excluded_paths`` (exact paths) get no span, metric or log line; health
    probes and ``/metrics`` by default. ``metrics_path`` (``None`` to turn it
    off) is answered by the middleware itself with the Prometheus exposition
    of cairn's registry. Before ``cairn.observability.setup()`` the
    middleware passes every request straight through.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        excluded_paths: Iterable[str] = DEFAULT_EXCLUDED_PATHS,
        metrics_path: str | None = "/metrics",
        log_requests: bool = True,
    ) -> None:
        if metrics_path is not None and not metrics_path.startswith("/"):
            raise ValueError(f"metrics_path must start with '/', got {metrics_path!r}")
        self.app = app
        self.excluded_paths = frozenset(excluded_paths)
        self.metrics_path = metrics_path
        self.log_requests = log_requests
        self._metrics_apps: dict[int, ASGIApp] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        runtime = _runtime.RUNTIME
        if scope["type"] != "http" or runtime is None:
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path == self.metrics_path:
            serve = self._metrics_apps.get(id(runtime.registry))
            if serve is None:
                serve = self._metrics_apps[id(runtime.registry)] = metrics_app(runtime.registry)
            await serve(scope, receive, send)
            return
        if path in self.excluded_paths:
            await self.app(scope, receive, send)
            return
        await self._traced(runtime, scope, receive, send)

    async def _traced(
        self, runtime: _runtime.Runtime, scope: Scope, receive: Receive, send: Send
    ) -> None:
        method: str = scope["method"]
        root_path: str = scope.get("root_path", "")
        parent = None
        tracestate = baggage_header = None
        traceparents = 0
        traceparent = ""
        for name, value in scope["headers"]:
            if name == b"traceparent":
                traceparents += 1
                traceparent = value.decode("latin-1")
            elif name == b"tracestate":
                tracestate = value.decode("latin-1")
            elif name == b"baggage":
                baggage_header = value.decode("latin-1")
        if traceparents == 1:
            parent = parse_traceparent(traceparent, tracestate)
        span = runtime.tracing.lean.start(
            method,
            kind=SpanKind.SERVER,
            parent=parent,
            attributes={
                "http.request.method": method,
                "url.path": scope["path"],
                "url.scheme": scope.get("scheme", "http"),
            },
        )
        if baggage_header:
            ctx = trace.set_span_in_context(span, _BAGGAGE.extract({"baggage": baggage_header}))
        else:
            # What set_span_in_context(span, Context()) builds, in one step.
            ctx = context.Context({_SPAN_KEY: span})
        token = context.attach(ctx)
        status = 500
        runtime.http.begin()
        start = time.perf_counter()

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        error: BaseException | None = None
        try:
            await self.app(scope, receive, send_status)
        except BaseException as exc:
            error = exc
            raise
        finally:
            elapsed = time.perf_counter() - start
            template = _route_template(scope, root_path)
            self._finish(runtime, span, method, template, status, elapsed, error, scope)
            context.detach(token)

    def _finish(
        self,
        runtime: _runtime.Runtime,
        span: trace.Span,
        method: str,
        template: str | None,
        status: int,
        elapsed: float,
        error: BaseException | None,
        scope: Scope,
    ) -> None:
        if type(span) is LeanSpan:
            attributes = span._attributes  # still recording: written directly
            if template is not None:
                span._name = f"{method} {template}"
                attributes["http.route"] = template
            attributes["http.response.status_code"] = status
            if error is not None:
                span.record_exception(error, escaped=True)
                span.set_attribute("error.type", type(error).__qualname__)
                span.set_status(StatusCode.ERROR, f"{type(error).__qualname__}: {error}")
            elif status >= 500:
                span.set_attribute("error.type", str(status))
                span.set_status(StatusCode.ERROR)
            trace_id: str | None = span.trace_id_hex
            # One clock reading for the span's end, the exemplar and the log line.
            end_ns = time.time_ns()
            now = end_ns / 1e9
            span.end(end_ns)
            lean: LeanSpan | None = span
        else:
            trace_id = None
            lean = None
            now = time.time()
        endpoint = template or UNMATCHED
        runtime.http.observe(method, endpoint, status, elapsed, trace_id, now)
        if self.log_requests and lean is not None and error is None:
            _logs.request_line(
                "error" if status >= 500 else "info",
                lean,
                method,
                endpoint,
                scope["path"],
                status,
                round(elapsed * 1000.0, 3),
                now,
            )
        elif self.log_requests:
            fields: dict[str, Any] = {
                "event": "request",
                "method": method,
                "route": endpoint,
                "path": scope["path"],
                "status": status,
                "duration_ms": round(elapsed * 1000.0, 3),
            }
            if error is not None:
                fields["exc_info"] = error
                _logs.emit("error", fields)
            else:
                _logs.emit("error" if status >= 500 else "info", fields)


def instrument(
    app: Any,
    *,
    excluded_paths: Iterable[str] = DEFAULT_EXCLUDED_PATHS,
    metrics_path: str | None = "/metrics",
    log_requests: bool = True,
) -> Any:
    """Add :class:`CairnMiddleware` to a Starlette/FastAPI app (returned), or wrap any ASGI app.

    For FastAPI it also turns off FastAPI's built-in OpenTelemetry request
    spans and metrics, which switch on as soon as a global tracer provider is
    set and would trace every request twice.
    """
    telemetry = getattr(app, "_telemetry", None)
    if isinstance(telemetry, dict):
        telemetry.update(tracing=False, metrics=False, logs=False)
    if hasattr(app, "add_middleware") and hasattr(app, "user_middleware"):
        app.add_middleware(
            CairnMiddleware,
            excluded_paths=excluded_paths,
            metrics_path=metrics_path,
            log_requests=log_requests,
        )
        return app
    return CairnMiddleware(
        app, excluded_paths=excluded_paths, metrics_path=metrics_path, log_requests=log_requests
    )
