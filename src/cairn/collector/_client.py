"""A synchronous client of the collector's query API (``/api/...``).

::

    from cairn.collector._client import CollectorClient

    with CollectorClient() as collector:          # --collector, $CAIRN_COLLECTOR, or 127.0.0.1:4318
        for record in collector.logs("user_id:123 AND event:purchase_completed", since="1h"):
            print(record.body)
        trace = collector.trace("4bf92f3577b34da6a3ce929d0e0e4736")

Each query has a ``*_json`` twin returning the API's JSON document unchanged (what
``--json`` prints). Errors: :class:`CollectorUnavailable` when nothing answers,
:class:`~cairn.collector.QueryError` (with the column) when the collector refuses a
query, :class:`CollectorRefused` for any other refusal.
"""

from __future__ import annotations

import ipaddress
import os
import urllib.parse
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import httpx

from cairn._errors import CairnError
from cairn.collector._query_parse import QueryError
from cairn.collector._records import LogRecord, SpanRecord
from cairn.collector._store_model import (
    MetricInfo,
    RangeSeries,
    SeriesSummary,
    Trace,
    TraceSummary,
)

__all__ = [
    "DEFAULT_COLLECTOR",
    "CollectorClient",
    "CollectorError",
    "CollectorRefused",
    "CollectorUnavailable",
    "metric_info_from_json",
    "range_series_from_json",
    "resolve_collector_url",
    "series_summary_from_json",
    "trace_from_json",
    "trace_summary_from_json",
]

DEFAULT_COLLECTOR = "http://127.0.0.1:4318"


class CollectorError(CairnError):
    """Talking to the collector's API failed; ``url`` is the collector's address."""

    def __init__(self, message: str, *, url: str) -> None:
        super().__init__(message)
        self.url = url


class CollectorUnavailable(CollectorError):
    """Nothing answered at ``url`` (refused, unresolvable, or timed out)."""


class CollectorRefused(CollectorError):
    """The collector answered with an error ``status`` (its ``reason`` is in the message)."""

    def __init__(self, message: str, *, url: str, status: int, reason: str) -> None:
        super().__init__(message, url=url)
        self.status = status
        self.reason = reason


def resolve_collector_url(url: str | None = None) -> str:
    """``url``, else ``$CAIRN_COLLECTOR``, else :data:`DEFAULT_COLLECTOR`; ``host:port``
    gets ``http://``. Raises ``ValueError`` for anything that is not an HTTP URL."""
    text = (url or os.environ.get("CAIRN_COLLECTOR") or DEFAULT_COLLECTOR).strip()
    if "://" not in text:
        text = "http://" + text
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{text!r} is not a collector URL: give one like http://127.0.0.1:4318")
    return text.rstrip("/")


def _is_loopback(url: str) -> bool:
    host = urllib.parse.urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _labels(data: dict[str, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in (data.get("labels") or {}).items()}


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def trace_summary_from_json(data: dict[str, Any]) -> TraceSummary:
    """A ``TraceSummary`` from its API JSON."""
    return TraceSummary(
        trace_id=data["trace_id"],
        root_service=data.get("root_service") or "",
        root_name=data.get("root_name") or "",
        start_ns=int(data["start_ns"]),
        duration_ns=int(data.get("duration_ns") or 0),
        span_count=int(data.get("span_count") or 0),
        error_count=int(data.get("error_count") or 0),
        services=[str(s) for s in data.get("services") or ()],
    )


def trace_from_json(data: dict[str, Any]) -> Trace:
    """A ``Trace`` (spans and logs) from its API JSON."""
    return Trace(
        trace_id=data["trace_id"],
        spans=[SpanRecord.from_json(s) for s in data.get("spans") or ()],
        logs=[LogRecord.from_json(r) for r in data.get("logs") or ()],
    )


def metric_info_from_json(data: dict[str, Any]) -> MetricInfo:
    """A ``MetricInfo`` from its API JSON."""
    return MetricInfo(data["name"], data.get("kind") or "unknown", int(data.get("series") or 0))


def series_summary_from_json(data: dict[str, Any]) -> SeriesSummary:
    """A ``SeriesSummary`` from its API JSON (null quantiles are dropped)."""
    quantiles = data.get("quantiles")
    return SeriesSummary(
        labels=_labels(data),
        latest=_float(data.get("latest")),
        rate=_float(data.get("rate")),
        quantiles=None
        if quantiles is None
        else {str(k): float(v) for k, v in quantiles.items() if v is not None},
    )


def range_series_from_json(data: dict[str, Any]) -> RangeSeries:
    """A ``RangeSeries`` from its API JSON."""
    return RangeSeries(
        labels=_labels(data), points=[(int(t), float(v)) for t, v in data.get("points") or ()]
    )


def _params(**values: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in values.items():
        if value is None or value == "" or value == ():
            continue
        if isinstance(value, list | tuple):
            value = ",".join(value)
        out[key] = str(value)
    return out


class CollectorClient:
    """The collector's query API over HTTP (sync, httpx). Use it as a context manager,
    or call :meth:`close`. ``url`` is resolved by :func:`resolve_collector_url`."""

    def __init__(self, url: str | None = None, *, timeout: float = 10.0) -> None:
        self.url = resolve_collector_url(url)
        # A proxy from the environment must not swallow requests meant for this machine.
        self._http = httpx.Client(
            base_url=self.url, timeout=timeout, trust_env=not _is_loopback(self.url)
        )

    def __enter__(self) -> CollectorClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def get_json(
        self, path: str, params: dict[str, str] | None = None, *, query: str | None = None
    ) -> Any:
        """GET ``path`` and return its JSON. A 400 naming a column becomes a
        :class:`QueryError` about ``query``."""
        try:
            response = self._http.get(path, params=params)
        except httpx.TransportError as exc:
            raise CollectorUnavailable(
                f"no collector at {self.url} ({type(exc).__name__}: {exc or 'no answer'}); "
                "start one with `cairn collector` or `cairn up`, or pass --collector URL "
                "(or set CAIRN_COLLECTOR)",
                url=self.url,
            ) from exc
        try:
            body: Any = response.json()
        except ValueError:
            body = None
        if response.is_success and body is not None:
            return body
        reason = ""
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            reason = body["error"]
        reason = reason or response.text.strip()[:200] or response.reason_phrase
        column = body.get("column") if isinstance(body, dict) else None
        if response.status_code == 400 and query is not None and isinstance(column, int):
            raise QueryError(reason, query=query, column=max(1, column))
        if response.is_success:
            reason = "the answer was not JSON; is this a cairn collector?"
        raise CollectorRefused(
            f"the collector at {self.url} answered {response.status_code} to {path}: {reason}",
            url=self.url,
            status=response.status_code,
            reason=reason,
        )

    def _get_optional(self, path: str, params: dict[str, str] | None = None) -> Any | None:
        try:
            return self.get_json(path, params)
        except CollectorRefused as exc:
            if exc.status == 404:
                return None
            raise

    # --- logs and traces -------------------------------------------------------------
    def logs_json(
        self,
        query: str | None = None,
        *,
        since: str | None = None,
        until: str | None = None,
        limit: int = 100,
    ) -> dict[str, Any]:
        """``/api/logs``: ``{"records": [...]}``, newest first."""
        params = _params(q=query, since=since, until=until, limit=limit)
        result: dict[str, Any] = self.get_json("/api/logs", params, query=query)
        return result

    def logs(
        self,
        query: str | None = None,
        *,
        since: str | None = None,
        until: str | None = None,
        limit: int = 100,
    ) -> list[LogRecord]:
        """Log records matching ``query`` (all when empty), newest first. ``since`` and
        ``until`` take ``15m``, ``2h``, ``7d`` or an ISO time."""
        data = self.logs_json(query, since=since, until=until, limit=limit)
        return [LogRecord.from_json(r) for r in data.get("records") or ()]

    def traces_json(
        self,
        *,
        service: str | None = None,
        operation: str | None = None,
        min_duration_ms: float | None = None,
        status: str | None = None,
        query: str | None = None,
        since: str | None = None,
        until: str | None = None,
        limit: int = 50,
    ) -> dict[str, Any]:
        """``/api/traces``: ``{"traces": [...]}``, newest first."""
        params = _params(
            service=service,
            operation=operation,
            min_duration_ms=None if min_duration_ms is None else f"{min_duration_ms:g}",
            status=status,
            q=query,
            since=since,
            until=until,
            limit=limit,
        )
        result: dict[str, Any] = self.get_json("/api/traces", params, query=query)
        return result

    def traces(
        self,
        *,
        service: str | None = None,
        operation: str | None = None,
        min_duration_ms: float | None = None,
        status: str | None = None,
        query: str | None = None,
        since: str | None = None,
        until: str | None = None,
        limit: int = 50,
    ) -> list[TraceSummary]:
        """Traces with a span matching every filter given, newest first."""
        data = self.traces_json(
            service=service,
            operation=operation,
            min_duration_ms=min_duration_ms,
            status=status,
            query=query,
            since=since,
            until=until,
            limit=limit,
        )
        return [trace_summary_from_json(t) for t in data.get("traces") or ()]

    def trace_json(self, trace_id: str) -> dict[str, Any] | None:
        """``/api/traces/{trace_id}``, or ``None`` when the collector has no such trace."""
        result: dict[str, Any] | None = self._get_optional(
            "/api/traces/" + urllib.parse.quote(trace_id, safe="")
        )
        return result

    def trace(self, trace_id: str) -> Trace | None:
        """The spans and logs of one trace, or ``None`` when it is unknown."""
        data = self.trace_json(trace_id)
        return None if data is None else trace_from_json(data)

    # --- metrics ---------------------------------------------------------------------
    def metrics_json(self) -> dict[str, Any]:
        """``/api/metrics``: ``{"metrics": [...]}``."""
        result: dict[str, Any] = self.get_json("/api/metrics")
        return result

    def metrics(self) -> list[MetricInfo]:
        """Every metric family the collector holds, with its kind and series count."""
        return [metric_info_from_json(m) for m in self.metrics_json().get("metrics") or ()]

    def metric_json(
        self, name: str, *, by: Sequence[str] = (), since: str | None = None
    ) -> dict[str, Any] | None:
        """``/api/metrics/{name}``, or ``None`` when the collector has no such metric."""
        path = "/api/metrics/" + urllib.parse.quote(name, safe="")
        result: dict[str, Any] | None = self._get_optional(path, _params(by=tuple(by), since=since))
        return result

    def metric(
        self, name: str, *, by: Sequence[str] = (), since: str | None = None
    ) -> tuple[str, list[SeriesSummary]] | None:
        """``(kind, series)`` of one metric family summed by the ``by`` labels, or
        ``None`` when it is unknown."""
        data = self.metric_json(name, by=by, since=since)
        if data is None:
            return None
        series = [series_summary_from_json(s) for s in data.get("series") or ()]
        return str(data.get("kind") or "unknown"), series

    def metric_range(
        self,
        name: str,
        *,
        by: Sequence[str] = (),
        since: str = "1h",
        until: str | None = None,
        step: float = 15.0,
        stat: str = "rate",
    ) -> list[RangeSeries]:
        """Points of one metric over time (``stat``: rate, latest, p50, p90 or p99)."""
        path = "/api/metrics/" + urllib.parse.quote(name, safe="") + "/range"
        params = _params(by=tuple(by), since=since, until=until, step=f"{step:g}", stat=stat)
        data = self.get_json(path, params)
        return [range_series_from_json(s) for s in data.get("series") or ()]

    # --- the collector itself --------------------------------------------------------
    def services(self) -> list[str]:
        """Services seen in spans, logs or samples."""
        return [str(s) for s in self.get_json("/api/services").get("services") or ()]

    def stats(self) -> dict[str, Any]:
        """``/api/stats``: accepted and refused counts, the store's size, scrape targets."""
        result: dict[str, Any] = self.get_json("/api/stats")
        return result
