"""Helpers for the collector receiver tests: a running collector and polling."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from cairn.collector._records import LogRecord, Sample, SpanRecord
from cairn.collector._server import Collector, serve_in_thread
from cairn.collector._store import Store

T = TypeVar("T")


def wait_for(condition: Callable[[], T], *, timeout: float = 20.0, what: str = "") -> T:
    """Poll ``condition`` until it returns something truthy, or fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(0.02)  # the polling interval, not a wait for things to settle


class GatedStore(Store):
    """An in-memory Store whose writes block until ``gate`` is set (or fail while
    ``failing`` is set): a slow or broken disk, on demand."""

    def __init__(self) -> None:
        super().__init__(None)
        self.gate = threading.Event()
        self.gate.set()
        self.failing = threading.Event()
        self.writes_started = threading.Event()

    def _pass(self) -> None:
        self.writes_started.set()
        if self.failing.is_set():
            raise OSError("disk on fire (test)")
        if not self.gate.wait(30):
            raise AssertionError("the test never opened the gate")

    def add_spans(self, spans: Sequence[SpanRecord]) -> None:
        self._pass()
        super().add_spans(spans)

    def add_logs(self, logs: Sequence[LogRecord]) -> None:
        self._pass()
        super().add_logs(logs)

    def add_samples(self, samples: Sequence[Sample]) -> None:
        self._pass()
        super().add_samples(samples)


@contextmanager
def running(store: Store | None = None, **settings: Any) -> Iterator[tuple[str, Collector]]:
    """A collector over ``store`` (default: a fresh in-memory one) served on 127.0.0.1:0."""
    own = store is None
    store = store or Store(None)
    collector = Collector(store, **settings)
    try:
        with serve_in_thread(collector) as url:
            yield url, collector
    finally:
        if own:
            store.close()
