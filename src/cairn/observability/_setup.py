"""The one setup call: logs, metrics and traces, correlated, idempotently."""

from __future__ import annotations

import sys
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter
from prometheus_client import REGISTRY, CollectorRegistry

from cairn.observability import _httpx, _logs, _otlp_logs, _resilience, _runtime, _tracing
from cairn.observability._metrics import (
    DEFAULT_BUCKETS,
    ResilienceMetrics,
    http_metrics,
)
from cairn.resilience import subscribe

__all__ = ["Observability", "setup", "shutdown"]

_lock = threading.Lock()


@dataclass(frozen=True)
class _Config:
    service: str
    version: str | None
    instance_id: str | None
    environment: str | None
    log_level: str
    log_stream: Any
    stdlib_logging: bool
    access_log: bool
    sample_ratio: float
    traces: str
    logs_export: str
    otlp_endpoint: str | None
    zipkin_endpoint: str | None
    span_exporters: tuple[SpanExporter, ...]
    export_delay_ms: int
    max_queue_size: int
    registry: Any
    buckets: tuple[float, ...]
    instrument_httpx: bool
    resilience_signals: bool


@dataclass(eq=False)
class Observability:
    """What :func:`setup` configured; ``shutdown()`` undoes all of it."""

    service: str
    instance_id: str
    tracer_provider: TracerProvider
    registry: CollectorRegistry
    _config: _Config = field(repr=False)
    _undo: list[Callable[[], None]] = field(default_factory=list, repr=False)
    _flush: Callable[[int], bool] = field(default=lambda _: True, repr=False)

    def force_flush(self, *, timeout: float = 30.0) -> bool:
        """Export every ended span (and log record) now; ``True`` when all went out in time."""
        return self._flush(int(timeout * 1000))

    def shutdown(self) -> None:
        """Flush and stop exporters, restore logging, unregister metrics."""
        shutdown()


_current: Observability | None = None


def setup(
    *,
    service: str,
    version: str | None = None,
    instance_id: str | None = None,
    environment: str | None = None,
    log_level: str = "info",
    log_stream: IO[Any] | None = None,
    stdlib_logging: bool = True,
    access_log: bool = False,
    sample_ratio: float = 1.0,
    traces: str = "auto",
    logs_export: str = "auto",
    otlp_endpoint: str | None = None,
    zipkin_endpoint: str | None = None,
    span_exporters: Sequence[SpanExporter] = (),
    export_delay_ms: int = 1000,
    max_queue_size: int = 8192,
    registry: CollectorRegistry | None = None,
    buckets: Sequence[float] = DEFAULT_BUCKETS,
    instrument_httpx: bool = True,
    resilience_signals: bool = True,
) -> Observability:
    """Configure structured logs, Prometheus metrics and OpenTelemetry traces.

    Calling it again with the same arguments returns the same handle and
    changes nothing; with different ones it raises ``ValueError`` (call
    :func:`shutdown` first). Importing cairn configures nothing.

    - ``service``, ``version``, ``instance_id`` (default: a fresh UUID per
      process), ``environment``: resource attributes ``service.name``,
      ``service.version``, ``service.instance.id``,
      ``deployment.environment.name``; ``service`` is on every log line.
    - ``log_level``: debug, info, warning, error or critical; ``log_stream``
      defaults to standard output. ``stdlib_logging`` routes the standard
      ``logging`` module (uvicorn, httpx, yours) into the same JSON lines;
      uvicorn's access log is silenced unless ``access_log`` (the middleware
      writes one line per request already).
    - ``sample_ratio``: share of new traces kept (parent-based: a caller's
      decision is followed).
    - ``traces``: ``auto`` (OTLP/HTTP when ``otlp_endpoint`` or
      ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set, otherwise none), ``otlp``,
      ``console``, ``zipkin``, ``none``, or several comma-separated;
      ``span_exporters`` adds your own.
    - ``logs_export``: ``auto`` (every log line also leaves as an OTLP/HTTP
      log record, with its trace context, when an OTLP endpoint is known and
      ``OTEL_LOGS_EXPORTER`` is not ``none``), ``otlp`` or ``none``.
    - ``registry``: Prometheus registry (default: prometheus_client's global).
    - ``instrument_httpx``: client spans for every httpx request.
    - ``resilience_signals``: retries, breaker transitions and rejections
      become log lines, metrics and span events.
    """
    global _current
    config = _Config(
        service=service,
        version=version,
        instance_id=instance_id,
        environment=environment,
        log_level=log_level,
        log_stream=log_stream,
        stdlib_logging=stdlib_logging,
        access_log=access_log,
        sample_ratio=sample_ratio,
        traces=traces,
        logs_export=logs_export,
        otlp_endpoint=otlp_endpoint,
        zipkin_endpoint=zipkin_endpoint,
        span_exporters=tuple(span_exporters),
        export_delay_ms=export_delay_ms,
        max_queue_size=max_queue_size,
        registry=registry,
        buckets=tuple(buckets),
        instrument_httpx=instrument_httpx,
        resilience_signals=resilience_signals,
    )
    with _lock:
        if _current is not None:
            if _current._config == config:
                return _current
            raise ValueError(
                "cairn.observability is already set up with different arguments; "
                "call cairn.observability.shutdown() first to reconfigure"
            )
        _validate(config)
        _current = _build(config)
        return _current


def _validate(config: _Config) -> None:
    if not config.service or not config.service.strip():
        raise ValueError("service must be a non-empty name, e.g. setup(service='orders')")
    if config.log_level not in _logs.LEVELS:
        raise ValueError(f"log_level={config.log_level!r}: choose one of {sorted(_logs.LEVELS)}")
    if not 0.0 <= config.sample_ratio <= 1.0:
        raise ValueError(f"sample_ratio must be between 0.0 and 1.0, got {config.sample_ratio!r}")
    if not 1 <= config.export_delay_ms <= 60_000:
        raise ValueError(f"export_delay_ms must be 1..60000, got {config.export_delay_ms!r}")
    if not 1 <= config.max_queue_size <= 1_000_000:
        raise ValueError(f"max_queue_size must be 1..1000000, got {config.max_queue_size!r}")
    _otlp_logs.wants_otlp_logs(config.logs_export, config.otlp_endpoint)  # validates
    if not config.buckets or list(config.buckets) != sorted(set(config.buckets)):
        raise ValueError(f"buckets must be strictly increasing, got {config.buckets!r}")


def _build(config: _Config) -> Observability:
    undo: list[Callable[[], None]] = []
    exporters = _tracing.build_exporters(
        config.traces, otlp_endpoint=config.otlp_endpoint, zipkin_endpoint=config.zipkin_endpoint
    )
    exporters.extend(config.span_exporters)
    instance_id = config.instance_id or str(uuid.uuid4())
    attributes: dict[str, str] = {
        "service.name": config.service,
        "service.instance.id": instance_id,
    }
    if config.version:
        attributes["service.version"] = config.version
    if config.environment:
        attributes["deployment.environment.name"] = config.environment
    # Resource.create also merges OTEL_RESOURCE_ATTRIBUTES; ours win.
    resource = Resource.create(attributes)
    tracing = _tracing.Tracing(
        resource=resource,
        sample_ratio=config.sample_ratio,
        exporters=exporters,
        export_delay_ms=config.export_delay_ms,
        max_queue_size=config.max_queue_size,
    )
    undo.append(tracing.shutdown)
    if _tracing.install_global(tracing.provider):
        undo.append(lambda: _tracing.uninstall_global(tracing.provider))

    registry = config.registry if config.registry is not None else REGISTRY
    http = http_metrics(registry=registry, buckets=config.buckets)
    undo.append(http.unregister)
    resilience = ResilienceMetrics(registry=registry)
    undo.append(resilience.unregister)

    level = _logs.LEVELS[config.log_level]
    pipeline = _logs.LogPipeline(
        service=config.service,
        level=level,
        stream=config.log_stream if config.log_stream is not None else sys.stdout,
    )
    _logs.configure(pipeline)
    undo.append(_logs.unconfigure)
    flushes: list[Callable[[int], bool]] = [tracing.force_flush]
    if _otlp_logs.wants_otlp_logs(config.logs_export, config.otlp_endpoint):
        otlp_logs = _otlp_logs.OtlpLogs(
            resource=resource,
            otlp_endpoint=config.otlp_endpoint,
            export_delay_ms=config.export_delay_ms,
            max_queue_size=config.max_queue_size,
        )
        undo.append(otlp_logs.shutdown)
        undo.append(_logs.add_export(otlp_logs))
        flushes.append(otlp_logs.force_flush)
    if config.stdlib_logging:
        routing = _logs.StdlibRouting(level=level, access_log=config.access_log)
        undo.append(routing.undo)

    _runtime.install(
        _runtime.Runtime(
            service=config.service,
            logs=pipeline,
            tracing=tracing,
            registry=registry,
            http=http,
            resilience=resilience,
        )
    )
    undo.append(lambda: _runtime.install(None))
    if config.instrument_httpx:
        _httpx.install()
        undo.append(_httpx.uninstall)
    if config.resilience_signals:
        undo.append(subscribe(_resilience.on_event))
    return Observability(
        service=config.service,
        instance_id=instance_id,
        tracer_provider=tracing.provider,
        registry=registry,
        _config=config,
        _undo=undo,
        # A list, not a generator: every exporter flushes even when one fails.
        _flush=lambda timeout_ms: all([flush(timeout_ms) for flush in flushes]),  # noqa: C419
    )


def shutdown() -> None:
    """Undo :func:`setup`: flush spans, restore logging, unregister metrics.

    Safe to call when nothing is set up.
    """
    global _current
    with _lock:
        current, _current = _current, None
    if current is None:
        return
    # Stop feeding first, flush/stop exporters last.
    for step in reversed(current._undo):
        step()


def current() -> Observability | None:
    """The handle of the active setup, or ``None``."""
    return _current
