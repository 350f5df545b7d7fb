"""Capture helpers for tests: log lines, spans and metric samples.

Re-exported from ``cairn.testing``. They capture what cairn's pipeline
produces, so call ``cairn.observability.setup()`` first (any exporters may be
off: ``traces="none"``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from prometheus_client import CollectorRegistry

from cairn.observability import _runtime
from cairn.observability._logs import capture_log_lines
from cairn.observability._tracing import capture_finished_spans

__all__ = ["MetricsCapture", "capture_logs", "capture_metrics", "capture_spans"]


@contextmanager
def capture_logs() -> Iterator[list[dict[str, Any]]]:
    """Every log line cairn writes inside the block, as the dict it renders.

    >>> with capture_logs() as lines:  # doctest: +SKIP
    ...     log.info("purchase_completed", user_id=7)
    >>> lines[0]["event"], lines[0]["user_id"]  # doctest: +SKIP
    ('purchase_completed', 7)
    """
    with capture_log_lines() as lines:
        yield lines


@contextmanager
def capture_spans() -> Iterator[list[ReadableSpan]]:
    """Every span that ends inside the block (cairn's and the SDK's), in end order."""
    with capture_finished_spans() as spans:
        yield spans


class MetricsCapture:
    """Metric samples of cairn's registry, read against a starting snapshot."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._start = self._snapshot()

    def _snapshot(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for metric in self.registry.collect()
            for sample in metric.samples
        }

    def value(self, name: str, **labels: str) -> float | None:
        """The sample's value now (``None`` if it does not exist)."""
        return self.registry.get_sample_value(name, labels)

    def delta(self, name: str, **labels: str) -> float:
        """How much the sample moved since the block started (0 if it never existed)."""
        start = self._start.get((name, frozenset(labels.items())), 0.0)
        return (self.value(name, **labels) or 0.0) - start


@contextmanager
def capture_metrics() -> Iterator[MetricsCapture]:
    """Read metric samples, and their change since the block started."""
    runtime = _runtime.RUNTIME
    if runtime is None:
        raise RuntimeError(
            "capture_metrics() reads cairn's registry: call cairn.observability.setup() first"
        )
    yield MetricsCapture(runtime.registry)
