"""Observability: correlated JSON logs, Prometheus metrics and OpenTelemetry traces.

One call configures all three; importing configures nothing::

    import cairn.observability as obs

    obs.setup(service="orders", version="1.4.2")
    app = obs.instrument(FastAPI())

Needs the extra: ``pip install 'cairn[observability]'``.
"""

from __future__ import annotations

try:
    import httpx
    import opentelemetry.exporter.otlp.proto.http
    import opentelemetry.sdk.trace
    import orjson
    import prometheus_client
    import structlog
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        f"cairn.observability needs optional dependencies ({exc.name} is missing): "
        "pip install 'cairn[observability]'"
    ) from exc

from cairn.observability._api import get_logger, span, traced
from cairn.observability._asgi import DEFAULT_EXCLUDED_PATHS, CairnMiddleware, instrument
from cairn.observability._metrics import metrics_app
from cairn.observability._setup import Observability, current, setup, shutdown
from cairn.observability._span import format_traceparent, parse_traceparent

del httpx, opentelemetry, orjson, prometheus_client, structlog

__all__ = [
    "DEFAULT_EXCLUDED_PATHS",
    "CairnMiddleware",
    "Observability",
    "current",
    "format_traceparent",
    "get_logger",
    "instrument",
    "metrics_app",
    "parse_traceparent",
    "setup",
    "shutdown",
    "span",
    "traced",
]
