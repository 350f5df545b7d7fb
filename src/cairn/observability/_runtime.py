"""The configured state that middleware, httpx hooks and listeners read.

One module global, replaced whole by ``setup()`` and cleared by ``shutdown()``:
instrumentation reads it once per request and does nothing while it is
``None`` (not set up: no-op, like the OpenTelemetry API without an SDK).
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from cairn.observability._logs import LogPipeline
from cairn.observability._metrics import HttpMetrics, ResilienceMetrics
from cairn.observability._tracing import Tracing

__all__ = ["RUNTIME", "Runtime", "install"]


@dataclass(frozen=True, slots=True)
class Runtime:
    service: str
    logs: LogPipeline
    tracing: Tracing
    registry: CollectorRegistry
    http: HttpMetrics
    resilience: ResilienceMetrics


RUNTIME: Runtime | None = None


def install(runtime: Runtime | None) -> None:
    global RUNTIME
    RUNTIME = runtime
