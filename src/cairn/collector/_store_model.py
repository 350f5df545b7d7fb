"""What the store's reads return: frozen records with their HTTP API JSON shape."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cairn.collector._records import LogRecord, SpanRecord

__all__ = ["MetricInfo", "RangeSeries", "SeriesSummary", "StoreStats", "Trace", "TraceSummary"]


@dataclass(frozen=True, slots=True)
class TraceSummary:
    """One trace as a list shows it: its root span, timing, size and errors."""

    trace_id: str
    root_service: str
    root_name: str
    start_ns: int
    duration_ns: int
    span_count: int
    error_count: int
    services: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "trace_id": self.trace_id,
            "root_service": self.root_service,
            "root_name": self.root_name,
            "start_ns": self.start_ns,
            "duration_ns": self.duration_ns,
            "span_count": self.span_count,
            "error_count": self.error_count,
            "services": list(self.services),
        }


@dataclass(frozen=True, slots=True)
class Trace:
    """Every stored span of a trace (by start time) and the logs that carry its id."""

    trace_id: str
    spans: list[SpanRecord]
    logs: list[LogRecord]

    def to_json(self) -> dict[str, Any]:
        return {
            "trace_id": self.trace_id,
            "spans": [span.to_json() for span in self.spans],
            "logs": [log.to_json() for log in self.logs],
        }


@dataclass(frozen=True, slots=True)
class MetricInfo:
    """A metric family: its name, kind and how many label sets it has."""

    name: str
    kind: str
    series: int

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "series": self.series}


@dataclass(frozen=True, slots=True)
class SeriesSummary:
    """One series (or group of series) over a window: see ``Store.metric_summary``."""

    labels: dict[str, str]
    latest: float | None
    rate: float | None
    quantiles: dict[str, float] | None

    def to_json(self) -> dict[str, Any]:
        return {
            "labels": dict(self.labels),
            "latest": self.latest,
            "rate": self.rate,
            "quantiles": None if self.quantiles is None else dict(self.quantiles),
        }


@dataclass(frozen=True, slots=True)
class RangeSeries:
    """One series (or group) as ``(time_ns, value)`` points, one per step."""

    labels: dict[str, str]
    points: list[tuple[int, float]]

    def to_json(self) -> dict[str, Any]:
        return {"labels": dict(self.labels), "points": [[t, v] for t, v in self.points]}


@dataclass(frozen=True, slots=True)
class StoreStats:
    """How much the store holds: record counts, bytes on disk (incl. WAL), oldest time.

    ``exemplars`` are counted apart: they are kept beside the samples, not in segments.
    """

    spans: int
    logs: int
    samples: int
    bytes: int
    oldest_ns: int | None
    exemplars: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "spans": self.spans,
            "logs": self.logs,
            "samples": self.samples,
            "bytes": self.bytes,
            "oldest_ns": self.oldest_ns,
            "exemplars": self.exemplars,
        }
