"""Scrape every passing instance in the registry for Prometheus metrics.

Every ``interval_s`` the scraper lists the registry's services, fetches each one's
passing instances (a critical instance is not scraped), GETs
``http://address:port/metrics`` (or the instance's ``meta["metrics_path"]``) asking
for OpenMetrics first (it carries exemplars: a ``trace_id`` per histogram bucket) and
the Prometheus text format second, parses whichever the target answered (by its
``Content-Type``) and turns it into :class:`Sample` s labelled ``service`` and ``instance``
(the instance id; a scraped label of the same name is kept as ``exported_service`` /
``exported_instance``, as Prometheus does). Each target's last scrape and last error are
reported by :meth:`Scraper.targets` (shown at ``/api/stats``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any

import httpx
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as _untyped_parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as _untyped_parse
from prometheus_client.samples import Timestamp

from cairn.collector._records import Exemplar, Sample
from cairn.discovery import Instance, Registry, connect

__all__ = ["OPENMETRICS", "Scraper", "parse_metrics", "parse_openmetrics", "parse_prometheus"]

OPENMETRICS = "application/openmetrics-text"
# What a scrape asks for: OpenMetrics (it carries exemplars), else the text format.
ACCEPT = f"{OPENMETRICS}; version=1.0.0, text/plain;version=0.0.4;q=0.5"

_log = logging.getLogger("cairn.collector")
_parse: Callable[[str], Iterable[Any]] = _untyped_parse
_parse_openmetrics: Callable[[str], Iterable[Any]] = _untyped_parse_openmetrics
_TRACE_ID = re.compile(r"[0-9a-f]{32}")
_SPAN_ID = re.compile(r"[0-9a-f]{16}")
_KINDS = {"counter": "counter", "gauge": "gauge", "histogram": "histogram", "summary": "summary"}
_MAX_BODY = 16 << 20


def parse_prometheus(
    text: str, *, service: str, instance: str, time_ns: int | None = None
) -> list[Sample]:
    """The samples of one scrape in the Prometheus text format, labelled with ``service``
    and ``instance``.

    ``*_created`` series of counters, histograms and summaries (creation timestamps,
    not values) are skipped; ``info`` and
    ``stateset`` families count as gauges, the rest keep their Prometheus type.
    Raises ``ValueError`` when the text does not parse."""
    return _samples(_parse(text), service=service, instance=instance, time_ns=time_ns)


def parse_openmetrics(
    text: str, *, service: str, instance: str, time_ns: int | None = None
) -> list[Sample]:
    """The samples of one scrape in OpenMetrics 1.0, as :func:`parse_prometheus` would
    give them for the same metrics in the text format, plus each sample's exemplar.

    Only exemplars with a ``trace_id`` label of 32 hex digits (not all zero) are kept
    (``span_id``, 16 hex digits, when present); an exemplar without a timestamp takes
    the scrape's. Raises ``ValueError`` when the text does not parse."""
    return _samples(
        _parse_openmetrics(text), service=service, instance=instance, time_ns=time_ns,
        openmetrics=True,
    )  # fmt: skip


def parse_metrics(
    text: str, content_type: str, *, service: str, instance: str, time_ns: int | None = None
) -> list[Sample]:
    """:func:`parse_openmetrics` when ``content_type`` says OpenMetrics, else
    :func:`parse_prometheus`."""
    media = content_type.split(";")[0].strip().lower()
    parse = parse_openmetrics if media == OPENMETRICS else parse_prometheus
    return parse(text, service=service, instance=instance, time_ns=time_ns)


def _timestamp_ns(stamp: Any) -> int:
    # OpenMetrics gives a Timestamp (whole seconds + nanoseconds) or a float; text, a float.
    if isinstance(stamp, Timestamp):
        return stamp.sec * 1_000_000_000 + stamp.nsec
    return int(float(stamp) * 1e9)


def _exemplar(raw: Any, now: int) -> Exemplar | None:
    labels = raw.labels
    trace_id = str(labels.get("trace_id", "")).lower()
    if not _TRACE_ID.fullmatch(trace_id) or trace_id == "0" * 32:
        return None
    span_id = str(labels.get("span_id", "")).lower()
    at = now if raw.timestamp is None else _timestamp_ns(raw.timestamp)
    return Exemplar(
        trace_id, float(raw.value), at, span_id if _SPAN_ID.fullmatch(span_id) else None
    )


def _samples(
    families: Iterable[Any],
    *,
    service: str,
    instance: str,
    time_ns: int | None,
    openmetrics: bool = False,
) -> list[Sample]:
    now = time.time_ns() if time_ns is None else time_ns
    out: list[Sample] = []
    cumulative: set[str] = set()
    for family in families:
        # prometheus_client exposes a counter's creation time as a separate
        # ``<name>_created`` family after it: a timestamp, not a value.
        if family.name.endswith("_created") and family.name[:-8] in cumulative:
            continue
        if family.type in ("counter", "histogram", "summary"):
            cumulative.add(family.name)
        kind = _KINDS.get(
            family.type, "gauge" if family.type in ("info", "stateset") else "unknown"
        )
        # The parser names a counter's family without ``_total``; people (and the
        # seed, and the OTLP path) know it by its sample name, ``http_requests_total``.
        name = family.name + "_total" if family.type == "counter" else family.name
        if openmetrics and family.type == "info":
            name = family.name + "_info"  # the text format's gauge family is ``x_info``
        for sample in family.samples:
            if sample.name.endswith("_created") and sample.name != family.name:
                continue
            labels = dict(sample.labels)
            for own in ("service", "instance"):
                if own in labels:
                    labels["exported_" + own] = labels.pop(own)
            labels["service"] = service
            labels["instance"] = instance
            at = _timestamp_ns(sample.timestamp) if sample.timestamp is not None else now
            exemplar = None
            if openmetrics and sample.exemplar is not None:
                exemplar = _exemplar(sample.exemplar, now)
            out.append(Sample(sample.name, labels, at, float(sample.value), kind, name, exemplar))
    return out


class Scraper:
    """Scrapes the registry's passing instances every ``interval_s`` and ``submit`` s
    the samples (``submit("samples", samples)`` returns ``None`` when accepted, else
    why not)."""

    def __init__(
        self,
        registry: str | Registry,
        submit: Callable[[str, Sequence[Sample]], str | None],
        *,
        interval_s: float = 15.0,
        timeout_s: float = 5.0,
    ) -> None:
        if not 0 < interval_s <= 86400:
            raise ValueError(f"scrape interval must be seconds in (0, 86400], not {interval_s}")
        if not 0 < timeout_s <= 300:
            raise ValueError(f"scrape timeout must be seconds in (0, 300], not {timeout_s}")
        self._registry_arg = registry
        self.registry: Registry | None = registry if isinstance(registry, Registry) else None
        self._submit = submit
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self._targets: dict[str, dict[str, Any]] = {}
        self._client: httpx.AsyncClient | None = None
        self.rounds = 0
        self.last_error = ""

    def targets(self) -> list[dict[str, Any]]:
        """Each target: service, instance, url, last scrape time, samples, last error."""
        return [dict(t) for t in sorted(self._targets.values(), key=lambda t: t["url"])]

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Scraper]:
        """Scrape in a background task for as long as the context is open."""
        owned = self.registry is None
        if self.registry is None:
            assert isinstance(self._registry_arg, str)
            self.registry = connect(self._registry_arg)
        self._client = httpx.AsyncClient(timeout=self.timeout_s, follow_redirects=False)
        task = asyncio.create_task(self._loop(), name="cairn-collector-scrape")
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await self._client.aclose()
            if owned:
                await self.registry.aclose()
                self.registry = None

    async def _loop(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.scrape_once()
            except Exception as exc:  # the registry being down must not end scraping
                self.last_error = f"{type(exc).__name__}: {exc}"
                _log.warning("collector scrape round failed: %s", self.last_error)
            await asyncio.sleep(max(0.0, self.interval_s - (time.monotonic() - started)))

    async def scrape_once(self) -> int:
        """One round over every passing instance; returns how many samples were accepted."""
        if self.registry is None or self._client is None:
            raise RuntimeError("Scraper.scrape_once() runs inside `async with scraper.running()`")
        instances: list[Instance] = []
        for service in await self.registry.services():
            instances.extend(await self.registry.fetch(service, passing=True))
        results = await asyncio.gather(*(self._scrape(i) for i in instances))
        seen = {i.id for i in instances}
        for gone in set(self._targets) - seen:
            del self._targets[gone]
        self.rounds += 1
        self.last_error = ""
        return sum(results)

    async def _scrape(self, instance: Instance) -> int:
        assert self._client is not None
        path = instance.meta.get("metrics_path", "/metrics")
        url = f"http://{instance.host_port}{path if path.startswith('/') else '/' + path}"
        target = self._targets.setdefault(
            instance.id,
            {"service": instance.service, "instance": instance.id, "url": url,
             "last_scrape_ns": None, "samples": 0, "error": None},
        )  # fmt: skip
        target["url"] = url
        try:
            response = await self._client.get(url, headers={"Accept": ACCEPT})
            response.raise_for_status()
            if len(response.content) > _MAX_BODY:
                raise ValueError(f"metrics page of {len(response.content)} bytes is too large")
            samples = parse_metrics(
                response.text, response.headers.get("content-type", ""),
                service=instance.service, instance=instance.id,
            )  # fmt: skip
        except (httpx.HTTPError, ValueError) as exc:
            target["error"] = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            return 0
        verdict = self._submit("samples", samples)
        target["last_scrape_ns"] = time.time_ns()
        target["samples"] = len(samples)
        target["error"] = None if verdict is None else f"samples refused: ingest {verdict}"
        return len(samples) if verdict is None else 0
