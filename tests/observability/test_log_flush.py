"""Log lines reach a buffered stream by a background flush, not a syscall per line."""

from __future__ import annotations

import datetime as dt
import io
import logging
import os
import re
import time
from unittest.mock import patch

from hypothesis import given
from hypothesis import strategies as st

from cairn.observability import _logs
from cairn.observability._logs import LogPipeline


class CountingRaw(io.RawIOBase):
    """A raw stream that counts the writes (system calls) it receives."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.writes = 0

    def writable(self) -> bool:
        return True

    def write(self, b: bytes) -> int:  # type: ignore[override]
        self.writes += 1
        self.data += b
        return len(b)


def _wait_for(condition: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)  # polling the condition, bounded by the deadline


def test_lines_are_batched_then_flushed_by_the_interval_and_on_close() -> None:
    raw = CountingRaw()
    pipeline = LogPipeline(
        service="s", level=logging.INFO, stream=io.BufferedWriter(raw), flush_interval=0.05
    )
    try:
        for n in range(100):
            pipeline.write(b'{"n":%d}\n' % n)
        # A hundred lines, far fewer system calls than lines.
        _wait_for(lambda: raw.data.count(b"\n") == 100)
        assert raw.writes < 10
        pipeline.write(b'{"last":true}\n')
    finally:
        pipeline.close()
    assert raw.data.endswith(b'{"last":true}\n')


def test_a_terminal_or_a_zero_interval_flushes_every_line() -> None:
    raw = CountingRaw()
    eager = LogPipeline(
        service="s", level=logging.INFO, stream=io.BufferedWriter(raw), flush_interval=0
    )
    eager.write(b"one\n")
    assert raw.data == b"one\n"
    eager.close()

    primary, secondary = os.openpty()
    with os.fdopen(secondary, "wb") as tty:
        assert tty.isatty()
        pipeline = LogPipeline(service="s", level=logging.INFO, stream=tty)
        pipeline.write(b"shown at once\n")
        # The terminal driver turns "\n" into "\r\n".
        assert os.read(primary, 100) == b"shown at once\r\n"
        pipeline.close()
    os.close(primary)


@given(st.floats(min_value=0, max_value=4_000_000_000, allow_nan=False))
def test_timestamps_are_iso_utc_with_microseconds(now: float) -> None:
    with patch.object(_logs.time, "time", return_value=now):
        stamp = _logs._timestamp()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", stamp)
    parsed = dt.datetime.fromisoformat(stamp).timestamp()
    assert abs(parsed - now) < 2e-6
