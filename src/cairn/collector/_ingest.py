"""The collector's write path: a bounded ingest queue drained by one writer thread.

Accepted means enqueued: a record the receiver answered 200 for is in the queue, and the
writer keeps it until the store took it (retrying a failing store) or, at shutdown,
until the drain deadline passed (then it is counted in ``lost`` and logged). The
queue is bounded in records, not requests, so one 512-span batch and one single log
weigh what they hold.

Protobuf spans reach the queue checked but not yet walked (``_otlp_rows.parse_spans``):
the writer thread makes their store rows, so the event loop only reads, parses and
answers. The writer waits up to ``linger_s`` for ``min_batch_records`` before a write
when little is queued: one transaction of thousands of spans costs far less per span
than many small ones (each commit rewrites the index pages it touched).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from cairn.collector._store import Store
from cairn.collector._store_rows import SpanRow, SpanRows, span_rows

__all__ = ["SIGNALS", "IngestQueue", "Writer"]

SIGNALS = ("spans", "logs", "samples")
_log = logging.getLogger("cairn.collector")


class IngestQueue:
    """Batches waiting for the writer, bounded by their total record count."""

    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise ValueError(f"queue capacity must be a positive number of records, not {capacity}")
        self.capacity = capacity
        self._items: collections.deque[tuple[str, Sequence[Any]]] = collections.deque()
        self._records = 0
        self._cond = threading.Condition()
        self._closed = False

    @property
    def records(self) -> int:
        """Records waiting now."""
        return self._records

    def offer(self, signal: str, records: Sequence[Any]) -> str | None:
        """Enqueue without waiting; ``None`` when accepted, else ``"full"`` or ``"closed"``.

        A batch larger than the whole capacity is still accepted into an empty queue,
        so no request is refused forever."""
        with self._cond:
            if self._closed:
                return "closed"
            if self._records and self._records + len(records) > self.capacity:
                return "full"
            self._items.append((signal, records))
            self._records += len(records)
            self._cond.notify()
            return None

    def take(
        self,
        max_records: int,
        timeout: float,
        *,
        min_records: int = 1,
        linger: float = 0.0,
    ) -> list[tuple[str, Sequence[Any]]] | None:
        """Up to about ``max_records`` queued records (at least one batch); ``[]`` after
        ``timeout`` with nothing queued; ``None`` once closed and empty.

        Once something is queued, waits up to ``linger`` seconds more for
        ``min_records`` (never past closing)."""
        with self._cond:
            if not self._items:
                if self._closed:
                    return None
                self._cond.wait(timeout)
            if self._items and linger > 0:
                wanted = min(min_records, max_records, self.capacity)
                deadline = time.monotonic() + linger
                while self._records < wanted and not self._closed:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
            taken: list[tuple[str, Sequence[Any]]] = []
            count = 0
            while self._items and (not taken or count + len(self._items[0][1]) <= max_records):
                signal, records = self._items.popleft()
                taken.append((signal, records))
                count += len(records)
            self._records -= count
            return taken

    def close(self) -> None:
        """Refuse new batches; :meth:`take` drains what is queued, then returns ``None``."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class Writer:
    """The one thread that writes to the store: batches, retries, retention.

    Each write takes up to ``batch_records`` queued records; when fewer than
    ``min_batch_records`` are queued it first waits up to ``linger_s`` for more (the
    price: a record becomes queryable up to ``linger_s`` later).

    While the store raises, the writer keeps the failed batch, marks itself
    ``failing`` (the receiver answers 503 then) and retries with a capped backoff.
    """

    def __init__(
        self,
        store: Store,
        queue: IngestQueue,
        *,
        batch_records: int = 20_000,
        min_batch_records: int = 8192,
        linger_s: float = 0.1,
        retention_interval_s: float = 60.0,
        drain_timeout_s: float = 30.0,
    ) -> None:
        if linger_s < 0:
            raise ValueError(f"linger_s must be >= 0 seconds, not {linger_s}")
        self.store = store
        self.queue = queue
        self.batch_records = batch_records
        self.min_batch_records = min_batch_records
        self.linger_s = linger_s
        self.retention_interval_s = retention_interval_s
        self.drain_timeout_s = drain_timeout_s
        self.failing = False
        self.last_error = ""
        self.written = dict.fromkeys(SIGNALS, 0)
        self.lost = dict.fromkeys(SIGNALS, 0)
        self.write_errors = 0
        self.retention_dropped = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the writer thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="cairn-collector-writer", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Close the queue, write everything in it, and wait for the thread."""
        self.queue.close()
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        last_retention = time.monotonic()
        while True:
            batches = self.queue.take(
                self.batch_records,
                timeout=0.5,
                min_records=self.min_batch_records,
                linger=self.linger_s,
            )
            if batches is None:
                return
            grouped: dict[str, list[Sequence[Any]]] = {}
            for signal, records in batches:
                grouped.setdefault(signal, []).append(records)
            for signal, parts in grouped.items():
                if signal == "spans":
                    self._write(signal, self._span_rows(parts))
                else:
                    self._write(signal, [record for part in parts for record in part])
            if time.monotonic() - last_retention >= self.retention_interval_s:
                last_retention = time.monotonic()
                self._retention()

    def _span_rows(self, parts: list[Sequence[Any]]) -> SpanRows:
        # Walks the OTLP bodies accepted since the last write into one batch of rows.
        rows: list[SpanRow] = []
        for part in parts:
            try:
                rows.extend(span_rows(part))
            except Exception as exc:  # a bug: the receiver checked these spans already
                self.lost["spans"] += len(part)
                self.last_error = f"span decode: {type(exc).__name__}: {exc}"
                _log.error("collector could not decode %d accepted spans: %s", len(part), exc)
        return SpanRows.of(rows)

    def _write(self, signal: str, records: Sequence[Any]) -> None:
        if not records:
            return
        add: Callable[[Sequence[Any]], None]
        if signal == "spans":
            add = self.store.add_spans
        elif signal == "logs":
            add = self.store.add_logs
        else:
            add = self.store.add_samples
        delay = 0.05
        give_up_at: float | None = None
        while True:
            try:
                add(records)
            except Exception as exc:
                self.write_errors += 1
                self.failing = True
                self.last_error = f"{type(exc).__name__}: {exc}"
                _log.warning(
                    "collector store write of %d %s failed: %s",
                    len(records),
                    signal,
                    self.last_error,
                )
                if self._stop.is_set():
                    give_up_at = give_up_at or time.monotonic() + self.drain_timeout_s
                    if time.monotonic() >= give_up_at:
                        self.lost[signal] += len(records)
                        _log.error(
                            "collector shut down with the store failing: %d %s lost",
                            len(records),
                            signal,
                        )
                        return
                # A short, capped backoff: wait() returns early when shutdown begins.
                self._stop.wait(delay)
                delay = min(delay * 2, 2.0)
            else:
                self.written[signal] += len(records)
                self.failing = False
                return

    def _retention(self) -> None:
        try:
            self.retention_dropped += self.store.enforce_retention()
        except Exception as exc:
            self.last_error = f"retention: {type(exc).__name__}: {exc}"
            _log.warning("collector retention failed: %s", self.last_error)
