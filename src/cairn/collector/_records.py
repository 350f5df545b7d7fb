"""What the collector stores: spans, log records and metric samples, decoded from OTLP.

Every record is a plain slotted dataclass with a ``document()`` — the flat mapping the
query language matches against (``docs/query-language.md``) — and a ``to_json()`` /
``from_json()`` pair that is the collector's HTTP API shape. Identifiers are lower-case
hex (trace ids 32 digits, span ids 16), times are Unix nanoseconds.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Exemplar", "LogRecord", "Sample", "SpanEvent", "SpanRecord"]


def iso(time_ns: int) -> str:
    """``time_ns`` as an RFC 3339 UTC timestamp with microseconds."""
    seconds, nanos = divmod(time_ns, 1_000_000_000)
    moment = _dt.datetime.fromtimestamp(seconds, tz=_dt.UTC).replace(microsecond=nanos // 1000)
    return moment.isoformat().replace("+00:00", "Z")


@dataclass(slots=True)
class SpanEvent:
    """A timestamped event on a span (a retry, a breaker transition, an exception)."""

    name: str
    time_ns: int
    attributes: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "time_ns": self.time_ns, "attributes": self.attributes}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SpanEvent:
        return cls(data["name"], int(data["time_ns"]), dict(data.get("attributes") or {}))


@dataclass(slots=True)
class SpanRecord:
    """One finished span.

    ``kind`` is ``internal``, ``server``, ``client``, ``producer`` or ``consumer``;
    ``status`` is ``unset``, ``ok`` or ``error``; ``service`` is the resource's
    ``service.name`` (``unknown_service`` when absent).
    """

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    service: str
    start_ns: int
    end_ns: int
    kind: str = "internal"
    status: str = "unset"
    status_message: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)
    events: list[SpanEvent] = field(default_factory=list)
    resource: dict[str, Any] = field(default_factory=dict)

    @property
    def duration_ns(self) -> int:
        return max(0, self.end_ns - self.start_ns)

    def document(self) -> dict[str, Any]:
        """The mapping queries match: attributes at the top, then the span's own fields."""
        doc: dict[str, Any] = dict(self.attributes)
        doc.update(
            trace_id=self.trace_id,
            span_id=self.span_id,
            parent_span_id=self.parent_span_id,
            name=self.name,
            operation=self.name,
            service=self.service,
            kind=self.kind,
            status=self.status,
            duration_ms=self.duration_ns / 1e6,
            time=iso(self.start_ns),
            events=[event.name for event in self.events],
            resource=self.resource,
        )
        if self.status_message:
            doc["status_message"] = self.status_message
        return doc

    def to_json(self) -> dict[str, Any]:
        return {
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "parent_span_id": self.parent_span_id,
            "name": self.name,
            "service": self.service,
            "start_ns": self.start_ns,
            "end_ns": self.end_ns,
            "duration_ns": self.duration_ns,
            "kind": self.kind,
            "status": self.status,
            "status_message": self.status_message,
            "attributes": self.attributes,
            "events": [event.to_json() for event in self.events],
            "resource": self.resource,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SpanRecord:
        return cls(
            trace_id=data["trace_id"],
            span_id=data["span_id"],
            parent_span_id=data.get("parent_span_id"),
            name=data["name"],
            service=data["service"],
            start_ns=int(data["start_ns"]),
            end_ns=int(data["end_ns"]),
            kind=data.get("kind", "internal"),
            status=data.get("status", "unset"),
            status_message=data.get("status_message", ""),
            attributes=dict(data.get("attributes") or {}),
            events=[SpanEvent.from_json(e) for e in data.get("events") or ()],
            resource=dict(data.get("resource") or {}),
        )


@dataclass(slots=True)
class LogRecord:
    """One log record. ``body`` is the message (structlog's ``event``); ``level`` is
    lower case (``debug`` … ``critical``)."""

    time_ns: int
    service: str
    level: str
    body: str
    trace_id: str | None = None
    span_id: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    resource: dict[str, Any] = field(default_factory=dict)

    def document(self) -> dict[str, Any]:
        """The mapping queries match: attributes at the top (so ``user_id:123`` works),
        the body as both ``event`` and ``message`` (so does ``event:purchase_completed``)."""
        doc: dict[str, Any] = dict(self.attributes)
        doc.update(
            time=iso(self.time_ns),
            service=self.service,
            level=self.level,
            event=self.body,
            message=self.body,
            trace_id=self.trace_id,
            span_id=self.span_id,
            resource=self.resource,
        )
        return doc

    def to_json(self) -> dict[str, Any]:
        return {
            "time_ns": self.time_ns,
            "time": iso(self.time_ns),
            "service": self.service,
            "level": self.level,
            "body": self.body,
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "attributes": self.attributes,
            "resource": self.resource,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LogRecord:
        return cls(
            time_ns=int(data["time_ns"]),
            service=data["service"],
            level=data.get("level", "info"),
            body=data.get("body", ""),
            trace_id=data.get("trace_id"),
            span_id=data.get("span_id"),
            attributes=dict(data.get("attributes") or {}),
            resource=dict(data.get("resource") or {}),
        )


@dataclass(frozen=True, slots=True)
class Exemplar:
    """One observation a metric sample points to: its value, when, and its trace.

    Scraped from OpenMetrics (``… # {trace_id="…",span_id="…"} 0.0123 1.7e9``) or
    decoded from an OTLP histogram data point; ``time_ns`` is the exemplar's own
    timestamp (the scrape's when it has none), ``value`` the observed value (seconds
    for a duration histogram).
    """

    trace_id: str
    value: float
    time_ns: int
    span_id: str | None = None


@dataclass(slots=True)
class Sample:
    """One metric sample in Prometheus's model: a series (name + labels) at a time.

    OTLP histograms arrive as their ``_bucket`` (with ``le``), ``_sum`` and ``_count``
    series, exactly as a Prometheus scrape of the same histogram would give; ``kind``
    is the family's type (``counter``, ``gauge``, ``histogram``, ``summary``,
    ``unknown``) and ``family`` its name without those suffixes. ``exemplar`` is the
    exemplar the sample carried, if any (stored apart from the points; not part of the
    sample's JSON).
    """

    name: str
    labels: dict[str, str]
    time_ns: int
    value: float
    kind: str = "unknown"
    family: str = ""
    exemplar: Exemplar | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "labels": self.labels,
            "time_ns": self.time_ns,
            "value": self.value,
            "kind": self.kind,
            "family": self.family or self.name,
        }
