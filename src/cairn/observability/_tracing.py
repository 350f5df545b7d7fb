"""Traces: one SDK ``TracerProvider`` plus cairn's lean spans, sharing export.

User code keeps the standard API (``trace.get_tracer(__name__)``); its spans
come from the SDK provider built here. cairn's own spans (server, httpx
client, ``cairn.observability.span``) are lean spans: once ended they are
pushed straight into the same ``SpanBatcher`` queues the provider's SDK spans
go through, so everything leaves through one batch export per exporter.

The global provider is set once per process to a small delegating provider:
``setup()`` after ``shutdown()`` swaps the SDK provider behind it, which the
OpenTelemetry API alone forbids (it allows ``set_tracer_provider`` once).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.util import types

from cairn._version import __version__
from cairn.observability._export import SpanBatcher
from cairn.observability._span import LeanSpan, LeanTracer

__all__ = ["Tracing", "build_exporters", "capture_finished_spans"]

_log = logging.getLogger("cairn.observability")

TRACE_EXPORTERS = frozenset({"auto", "otlp", "console", "zipkin", "none"})

# Lists that capture_finished_spans() is filling; a tuple so on_end reads it
# without a lock.
_span_captures: tuple[list[ReadableSpan], ...] = ()


class _CaptureProcessor(SpanProcessor):
    def on_end(self, span: ReadableSpan) -> None:
        for captured in _span_captures:
            captured.append(span)


@contextmanager
def capture_finished_spans() -> Iterator[list[ReadableSpan]]:
    """Collect every span (lean or SDK) that ends inside the block."""
    global _span_captures
    captured: list[ReadableSpan] = []
    _span_captures = (*_span_captures, captured)
    try:
        yield captured
    finally:
        _span_captures = tuple(c for c in _span_captures if c is not captured)


def build_exporters(
    traces: str, *, otlp_endpoint: str | None, zipkin_endpoint: str | None
) -> list[SpanExporter]:
    """Span exporters for a comma-separated choice of ``TRACE_EXPORTERS``."""
    names = [name.strip() for name in traces.split(",") if name.strip()]
    unknown = [name for name in names if name not in TRACE_EXPORTERS]
    if unknown or not names:
        raise ValueError(
            f"traces={traces!r}: choose from {sorted(TRACE_EXPORTERS)}, comma-separated "
            "(e.g. traces='otlp,console')"
        )
    env_endpoint = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    exporters: list[SpanExporter] = []
    for name in dict.fromkeys(names):
        if name == "otlp" or (name == "auto" and (otlp_endpoint or env_endpoint)):
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            if otlp_endpoint:
                exporters.append(OTLPSpanExporter(endpoint=_traces_url(otlp_endpoint)))
            else:
                # The exporter reads OTEL_EXPORTER_OTLP_* itself (and
                # defaults to localhost:4318).
                exporters.append(OTLPSpanExporter())
        elif name == "console":
            exporters.append(ConsoleSpanExporter())
        elif name == "zipkin":
            exporters.append(_zipkin(zipkin_endpoint))
    return exporters


def _traces_url(endpoint: str) -> str:
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/v1/traces") else endpoint + "/v1/traces"


def _zipkin(endpoint: str | None) -> SpanExporter:
    try:
        from opentelemetry.exporter.zipkin.json import ZipkinExporter
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ValueError(
            "traces='zipkin' needs the Zipkin exporter: pip install opentelemetry-exporter-zipkin-json"
        ) from exc
    exporter: SpanExporter = ZipkinExporter(endpoint=endpoint) if endpoint else ZipkinExporter()
    return exporter


class Tracing:
    """The SDK provider, its processors, and the lean tracer feeding them."""

    def __init__(
        self,
        *,
        resource: Resource,
        sample_ratio: float,
        exporters: Sequence[SpanExporter],
        export_delay_ms: int,
        max_queue_size: int,
    ) -> None:
        self.resource = resource
        self.provider = TracerProvider(
            resource=resource,
            sampler=ParentBased(TraceIdRatioBased(sample_ratio)),
            shutdown_on_exit=False,
        )
        processors: list[SpanProcessor] = [
            SpanBatcher(
                exporter,
                max_queue_size=max_queue_size,
                schedule_delay_millis=export_delay_ms,
                max_export_batch_size=512,
            )
            for exporter in exporters
        ]
        processors.append(_CaptureProcessor())
        for processor in processors:
            self.provider.add_span_processor(processor)
        self._processors = tuple(processors)
        # Lean spans are sampled by construction: they go straight into the queues.
        self._pushes = tuple(p.push for p in processors if isinstance(p, SpanBatcher))
        self._scope = InstrumentationScope("cairn.observability", __version__)
        self.lean = LeanTracer(ratio=sample_ratio, finish=self._finish)

    def _finish(self, span: LeanSpan) -> None:
        span._resource = self.resource
        span._instrumentation_scope = self._scope
        for push in self._pushes:
            push(span)
        for captured in _span_captures:
            captured.append(span)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.provider.force_flush(timeout_millis)

    def shutdown(self) -> None:
        self.provider.shutdown()


class _DelegatingTracer(trace.Tracer):
    """A tracer that asks the provider of the moment, so setup() can be redone."""

    def __init__(self, owner: DelegatingProvider, args: tuple[Any, ...]) -> None:
        self._owner = owner
        self._args = args
        self._for: TracerProvider | None = None
        self._real: trace.Tracer = trace.NoOpTracer()

    def _tracer(self) -> trace.Tracer:
        target = self._owner.target
        if target is not self._for:
            self._for = target
            self._real = target.get_tracer(*self._args) if target else trace.NoOpTracer()
        return self._real

    def start_span(
        self,
        name: str,
        context: Any = None,
        kind: trace.SpanKind = trace.SpanKind.INTERNAL,
        attributes: types.Attributes = None,
        links: Any = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> trace.Span:
        return self._tracer().start_span(
            name,
            context,
            kind,
            attributes,
            links,
            start_time,
            record_exception,
            set_status_on_exception,
        )

    def start_as_current_span(
        self,
        name: str,
        context: Any = None,
        kind: trace.SpanKind = trace.SpanKind.INTERNAL,
        attributes: types.Attributes = None,
        links: Any = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Any:
        # The real tracer's context manager, returned as is (usable as a
        # decorator too, like the API's).
        return self._tracer().start_as_current_span(
            name,
            context,
            kind,
            attributes,
            links,
            start_time,
            record_exception,
            set_status_on_exception,
            end_on_exit,
        )


class DelegatingProvider(trace.TracerProvider):
    """The process-wide provider cairn installs once; ``target`` is swappable."""

    def __init__(self) -> None:
        self.target: TracerProvider | None = None

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: types.Attributes = None,
    ) -> trace.Tracer:
        return _DelegatingTracer(
            self, (instrumenting_module_name, instrumenting_library_version, schema_url, attributes)
        )


_GLOBAL: DelegatingProvider | None = None


def install_global(provider: TracerProvider) -> bool:
    """Route the OpenTelemetry API's global provider to ``provider``.

    Returns ``False`` (and leaves it alone) when the application already set
    a global provider of its own: its manual spans still nest under cairn's,
    because both read the same context.
    """
    global _GLOBAL
    current = trace.get_tracer_provider()
    if _GLOBAL is None:
        if not isinstance(current, trace.ProxyTracerProvider):
            _log.warning(
                "cairn: a global TracerProvider is already set (%r); leaving it in place",
                current,
            )
            return False
        _GLOBAL = DelegatingProvider()
        trace.set_tracer_provider(_GLOBAL)
    elif current is not _GLOBAL:  # pragma: no cover - someone replaced it by force
        return False
    _GLOBAL.target = provider
    return True


def uninstall_global(provider: TracerProvider) -> None:
    if _GLOBAL is not None and _GLOBAL.target is provider:
        _GLOBAL.target = None
