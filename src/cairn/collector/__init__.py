"""The collector: OTLP in, a local store, and one query language over logs and spans.

::

    from cairn.collector import CollectorClient, parse_query

    with CollectorClient("http://127.0.0.1:4318") as client:        # `cairn collector`
        for record in client.logs("user_id:123 AND event:purchase_completed", since="15m"):
            print(record.trace_id, record.body)

    query = parse_query("duration_ms:>100 AND service:orders")      # the same language, locally
    hits = [span for span in spans if query.matches(span.document())]

- ``cairn collector`` (:class:`Collector`, :func:`serve_collector`) receives OTLP/HTTP
  traces, logs and metrics (protobuf or JSON, gzip or not), scrapes the ``/metrics`` of
  every passing instance in a registry, and keeps everything in a :class:`Store`.
- ``cairn logs`` / ``traces`` / ``trace`` / ``metrics`` and :class:`CollectorClient`
  query it over HTTP.

The query language: ``docs/query-language.md``; the store: ``docs/collector-store.md``;
the server and commands: ``docs/collector.md``.
"""

from __future__ import annotations

from cairn.collector._client import (
    CollectorClient,
    CollectorError,
    CollectorRefused,
    CollectorUnavailable,
)
from cairn.collector._otlp import OtlpDecodeError
from cairn.collector._query_eval import Query
from cairn.collector._query_parse import QueryError, parse_query
from cairn.collector._records import Exemplar, LogRecord, Sample, SpanEvent, SpanRecord
from cairn.collector._serve_cli import serve_collector
from cairn.collector._server import Collector
from cairn.collector._store import Store
from cairn.collector._store_model import (
    MetricInfo,
    RangeSeries,
    SeriesSummary,
    StoreStats,
    Trace,
    TraceSummary,
)

__all__ = [
    "Collector",
    "CollectorClient",
    "CollectorError",
    "CollectorRefused",
    "CollectorUnavailable",
    "Exemplar",
    "LogRecord",
    "MetricInfo",
    "OtlpDecodeError",
    "Query",
    "QueryError",
    "RangeSeries",
    "Sample",
    "SeriesSummary",
    "SpanEvent",
    "SpanRecord",
    "Store",
    "StoreStats",
    "Trace",
    "TraceSummary",
    "parse_query",
    "serve_collector",
]
