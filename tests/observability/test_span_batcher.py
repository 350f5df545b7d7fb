"""SpanBatcher: the span export queue behind every cairn exporter."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence

import pytest
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, get_value
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import SpanContext, TraceFlags

from cairn.observability._export import SpanBatcher


class Recorder(SpanExporter):
    def __init__(self, *, gate: threading.Event | None = None) -> None:
        self.batches: list[list[str]] = []
        self.suppressed: list[object] = []
        self.gate = gate
        self.shut = False
        self.exported = threading.Condition()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self.gate is not None:
            self.gate.wait(10)
        self.suppressed.append(get_value(_SUPPRESS_INSTRUMENTATION_KEY))
        with self.exported:
            self.batches.append([span.name for span in spans])
            self.exported.notify_all()
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.shut = True

    def count(self) -> int:
        return sum(len(batch) for batch in self.batches)

    def wait_for(self, total: int, timeout: float = 10.0) -> bool:
        with self.exported:
            return self.exported.wait_for(lambda: self.count() >= total, timeout)


def span(name: str, *, sampled: bool = True) -> ReadableSpan:
    flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
    return ReadableSpan(name, SpanContext(1, 2, False, flags))


def test_a_full_batch_wakes_the_worker_before_the_schedule() -> None:
    recorder = Recorder()
    batcher = SpanBatcher(recorder, schedule_delay_millis=60_000, max_export_batch_size=4)
    try:
        for i in range(10):
            batcher.on_end(span(f"s{i}"))
        assert recorder.wait_for(8), "two full batches go without waiting a minute"
        assert all(len(batch) <= 4 for batch in recorder.batches)
        assert recorder.suppressed[0] is True, "the exporter's own calls are not traced"
    finally:
        batcher.shutdown()
    # Shutdown exported the rest, in order, and shut the exporter down.
    assert [name for batch in recorder.batches for name in batch] == [f"s{i}" for i in range(10)]
    assert recorder.shut


def test_the_schedule_exports_a_partial_batch() -> None:
    recorder = Recorder()
    batcher = SpanBatcher(recorder, schedule_delay_millis=20, max_export_batch_size=512)
    try:
        batcher.on_end(span("lonely"))
        assert recorder.wait_for(1)
    finally:
        batcher.shutdown()
    assert recorder.batches == [["lonely"]]


def test_unsampled_spans_and_spans_after_shutdown_are_not_exported() -> None:
    recorder = Recorder()
    batcher = SpanBatcher(recorder, schedule_delay_millis=60_000)
    batcher.on_end(span("skipped", sampled=False))
    batcher.on_end(span("kept"))
    assert batcher.force_flush()
    batcher.shutdown()
    batcher.on_end(span("late"))
    batcher.shutdown()  # twice is fine
    assert recorder.batches == [["kept"]]
    assert not batcher.force_flush()


def test_a_full_queue_drops_new_spans_counts_them_and_warns_once_per_round(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gate = threading.Event()
    recorder = Recorder(gate=gate)
    batcher = SpanBatcher(
        recorder, max_queue_size=3, schedule_delay_millis=60_000, max_export_batch_size=3
    )
    try:
        for i in range(3):
            batcher.on_end(span(f"s{i}"))  # the third wakes the worker, which blocks on the gate
        deadline = time.monotonic() + 10
        while batcher._queue and time.monotonic() < deadline:
            time.sleep(0.01)  # polling a condition with a deadline
        for i in range(3, 8):
            batcher.on_end(span(f"s{i}"))  # three fit again, two do not
        assert batcher.dropped == 2
        with caplog.at_level(logging.WARNING, logger="cairn.observability"):
            gate.set()
            assert recorder.wait_for(6)
            batcher.force_flush()
    finally:
        gate.set()
        batcher.shutdown()
    assert recorder.count() == 6
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "cairn: span queue full (3 spans); 2 spans dropped so far "
        "(raise max_queue_size, or lower the sample ratio)"
    ]


def test_an_exporter_that_raises_is_logged_and_the_worker_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken(Recorder):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            if not self.batches:
                self.batches.append([])
                raise ConnectionError("collector down")
            return super().export(spans)

    recorder = Broken()
    batcher = SpanBatcher(recorder, schedule_delay_millis=60_000, max_export_batch_size=1)
    try:
        with caplog.at_level(logging.ERROR, logger="cairn.observability"):
            batcher.on_end(span("lost"))
            batcher.on_end(span("sent"))
            assert recorder.wait_for(1)
    finally:
        batcher.shutdown()
    assert recorder.batches == [[], ["sent"]]
    assert "exporting 1 spans failed" in caplog.text


def test_sdk_spans_go_through_it_too() -> None:
    recorder = Recorder()
    provider = TracerProvider()
    provider.add_span_processor(SpanBatcher(recorder, schedule_delay_millis=60_000))
    with provider.get_tracer("t").start_as_current_span("sdk-span"):
        pass
    assert provider.force_flush()
    provider.shutdown()
    assert recorder.batches == [["sdk-span"]]


@pytest.mark.parametrize(
    "options",
    [{"max_queue_size": 0}, {"schedule_delay_millis": 0}, {"max_export_batch_size": 0}],
)
def test_bad_sizes_are_refused(options: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="must be >= 1"):
        SpanBatcher(Recorder(), **options)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
# Python 3.12+ warns about forking a process with threads; that is the point here.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_gets_its_own_worker() -> None:
    recorder = Recorder()
    batcher = SpanBatcher(recorder, schedule_delay_millis=60_000)
    batcher.on_end(span("parent's, queued"))
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            batcher.on_end(span("child's"))
            batcher.force_flush()
            ok = batcher._worker.is_alive() and recorder.batches == [["child's"]]
            os.write(write, b"ok" if ok else repr(recorder.batches).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as answer:
        said = answer.read()
    os.waitpid(pid, 0)
    batcher.shutdown()
    assert said == b"ok", said
    assert recorder.batches == [["parent's, queued"]]


def test_push_skips_the_checks_but_keeps_the_bound() -> None:
    recorder = Recorder()
    batcher = SpanBatcher(
        recorder, max_queue_size=2, schedule_delay_millis=60_000, max_export_batch_size=2
    )
    gate_open = batcher._export_lock.acquire()  # hold the worker off: the queue stays full
    try:
        for name in ("a", "b", "c"):
            batcher.push(span(name, sampled=False))  # push trusts its caller
        assert batcher.dropped == 1
    finally:
        if gate_open:
            batcher._export_lock.release()
    batcher.shutdown()
    assert [n for batch in recorder.batches for n in batch] == ["a", "b"]
