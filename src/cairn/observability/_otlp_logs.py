"""OTLP log export: every JSON log line also leaves as an OpenTelemetry log record.

The line written to stdout stays the source of truth; this hands the same
enriched event to the OpenTelemetry SDK's batch log processor and OTLP/HTTP
exporter, so a collector (cairn's, or any OpenTelemetry Collector, Loki,
Elastic) receives it with its trace context: ``trace_id`` and ``span_id``
become the record's own fields, ``event`` its body, the rest attributes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

import orjson
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.trace import TraceFlags

__all__ = ["LOG_EXPORTERS", "OtlpLogs", "wants_otlp_logs"]

LOG_EXPORTERS = frozenset({"auto", "otlp", "none"})

_SEVERITY = {
    "debug": SeverityNumber.DEBUG,
    "info": SeverityNumber.INFO,
    "warning": SeverityNumber.WARN,
    "error": SeverityNumber.ERROR,
    "critical": SeverityNumber.FATAL,
}
# Fields that become parts of the record rather than attributes.
_OWN_FIELDS = frozenset({"event", "level", "timestamp", "trace_id", "span_id"})
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)


def wants_otlp_logs(choice: str, otlp_endpoint: str | None) -> bool:
    """Whether ``logs_export=choice`` means exporting, given the environment.

    ``auto`` exports when an OTLP endpoint is known (the argument,
    ``OTEL_EXPORTER_OTLP_LOGS_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_ENDPOINT``)
    unless the standard ``OTEL_LOGS_EXPORTER`` says ``none``.
    """
    if choice not in LOG_EXPORTERS:
        raise ValueError(f"logs_export={choice!r}: choose one of {sorted(LOG_EXPORTERS)}")
    if choice != "auto":
        return choice == "otlp"
    if os.environ.get("OTEL_LOGS_EXPORTER", "").strip().lower() == "none":
        return False
    return bool(
        otlp_endpoint
        or os.environ.get("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )


def _logs_url(endpoint: str) -> str:
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/v1/logs") else endpoint + "/v1/logs"


def _attribute(value: Any) -> Any:
    if isinstance(value, str | bool | int | float):
        return value
    try:
        return orjson.dumps(value, default=str).decode()
    except TypeError:
        return str(value)


class OtlpLogs:
    """A logger provider with a batch OTLP/HTTP exporter, fed one event dict at a time."""

    def __init__(
        self,
        *,
        resource: Resource,
        otlp_endpoint: str | None,
        export_delay_ms: int,
        max_queue_size: int,
        exporter: LogRecordExporter | None = None,
    ) -> None:
        if exporter is None:
            from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

            # Without an explicit endpoint the exporter reads OTEL_EXPORTER_OTLP_*.
            exporter = (
                OTLPLogExporter(endpoint=_logs_url(otlp_endpoint))
                if otlp_endpoint
                else OTLPLogExporter()
            )
        self.provider = LoggerProvider(resource=resource)
        self.provider.add_log_record_processor(
            BatchLogRecordProcessor(
                exporter,
                schedule_delay_millis=export_delay_ms,
                max_queue_size=max_queue_size,
                max_export_batch_size=min(512, max_queue_size),
            )
        )
        self._logger = self.provider.get_logger("cairn")

    def __call__(self, event: Mapping[str, Any]) -> None:
        trace_hex = event.get("trace_id")
        span_hex = event.get("span_id")
        level = str(event.get("level", "info"))
        self._logger.emit(
            LogRecord(
                timestamp=time.time_ns(),
                trace_id=int(trace_hex, 16) if isinstance(trace_hex, str) else None,
                span_id=int(span_hex, 16) if isinstance(span_hex, str) else None,
                trace_flags=_SAMPLED if isinstance(trace_hex, str) else None,
                severity_text=level.upper(),
                severity_number=_SEVERITY.get(level, SeverityNumber.UNSPECIFIED),
                body=_attribute(event.get("event")),
                attributes={
                    key: _attribute(value)
                    for key, value in event.items()
                    if key not in _OWN_FIELDS and value is not None
                },
            )
        )

    def force_flush(self, timeout_ms: int) -> bool:
        return bool(self.provider.force_flush(timeout_ms))

    def shutdown(self) -> None:
        self.provider.shutdown()
