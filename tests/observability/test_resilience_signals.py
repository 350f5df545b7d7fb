"""Resilience events become a log line, a metric and a span event."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass

import pytest
from obs_support import Setup
from prometheus_client import generate_latest

import cairn.observability as obs
from cairn.observability._testing import capture_logs, capture_metrics, capture_spans
from cairn.resilience import _events as ev


def test_every_event_becomes_three_signals(observed: Setup) -> None:
    boom = ConnectionError("refused")
    events: list[ev.Event] = [
        ev.RetryScheduled(policy="inventory", at=1.0, attempt=1, delay=0.2, error=boom),
        ev.RetryGaveUp(policy="inventory", at=2.0, attempts=3, reason="stop", error=boom),
        ev.BreakerStateChanged(
            policy="inventory",
            at=3.0,
            from_state=ev.BreakerState.CLOSED,
            to_state=ev.BreakerState.OPEN,
            reason="failure rate 60% >= 50%",
        ),
        ev.BreakerRejected(
            policy="inventory", at=4.0, state=ev.BreakerState.OPEN, retry_after=30.0
        ),
        ev.BulkheadRejected(policy="db", at=5.0, max_concurrent=10, max_queue=0),
        ev.TimeoutElapsed(policy="db", at=6.0, timeout=0.5),
        ev.HedgeLaunched(policy="db", at=7.0, attempt=2),
        ev.FallbackUsed(policy="db", at=8.0, error=None),
        ev.BreakerStateChanged(
            policy="inventory",
            at=9.0,
            from_state=ev.BreakerState.HALF_OPEN,
            to_state=ev.BreakerState.CLOSED,
            reason="trial succeeded",
        ),
    ]
    with (
        capture_spans() as spans,
        capture_logs() as lines,
        capture_metrics() as metrics,
        obs.span("GET /orders/{order_id}"),
    ):
        for event in events:
            ev.emit(event)
    names = [
        "retry.scheduled",
        "retry.gave_up",
        "breaker.state_changed",
        "breaker.rejected",
        "bulkhead.rejected",
        "timeout.elapsed",
        "hedge.launched",
        "fallback.used",
        "breaker.state_changed",
    ]
    assert [line["event"] for line in lines] == names
    assert [e.name for e in spans[0].events] == names
    first = lines[0]
    assert first["policy"] == "inventory"
    assert first["attempt"] == 1
    assert first["error.type"] == "ConnectionError"
    assert first["level"] == "warning"
    assert first["trace_id"] == f"{spans[0].context.trace_id:032x}"
    assert lines[1]["level"] == "error"
    assert lines[2]["to_state"] == "open"
    assert lines[-1]["level"] == "info"
    attributes = spans[0].events[0].attributes
    assert attributes["cairn.policy"] == "inventory"
    assert attributes["cairn.delay"] == 0.2
    assert attributes["error.message"] == "refused"

    assert metrics.delta("cairn_retry_attempts_total", policy="inventory") == 1
    assert metrics.delta("cairn_retry_giveups_total", policy="inventory", reason="stop") == 1
    assert (
        metrics.delta(
            "cairn_breaker_transitions_total",
            policy="inventory",
            from_state="closed",
            to_state="open",
        )
        == 1
    )
    assert metrics.value("cairn_breaker_state", policy="inventory", state="closed") == 1
    assert metrics.value("cairn_breaker_state", policy="inventory", state="open") == 0
    assert metrics.delta("cairn_breaker_rejections_total", policy="inventory") == 1
    assert metrics.delta("cairn_bulkhead_rejections_total", policy="db") == 1
    assert metrics.delta("cairn_timeouts_total", policy="db") == 1
    assert metrics.delta("cairn_hedges_total", policy="db") == 1
    assert metrics.delta("cairn_fallbacks_total", policy="db") == 1

    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package 'prometheus')")
    check = subprocess.run(
        [promtool, "check", "metrics"],
        input=generate_latest(observed.registry),
        capture_output=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_unknown_event_types_still_signal(observed: Setup) -> None:
    @dataclass(frozen=True, slots=True)
    class Shed(ev.Event):
        load: float

    with capture_logs() as lines:
        ev.emit(Shed(policy="limiter", at=0.0, load=0.9))
    assert lines[0]["event"] == "resilience.Shed"
    assert lines[0]["load"] == 0.9


def test_outside_a_span_and_after_shutdown(observed: Setup) -> None:
    with capture_logs() as lines:
        ev.emit(ev.TimeoutElapsed(policy="db", at=0.0, timeout=1.0))
    assert "trace_id" not in lines[0]
    obs.shutdown()
    with capture_logs() as after:
        ev.emit(ev.TimeoutElapsed(policy="db", at=0.0, timeout=1.0))
    assert after == []


def test_resilience_does_not_import_observability() -> None:
    code = "import sys, cairn.resilience; print('cairn.observability' in sys.modules)"
    result = subprocess.run(
        [__import__("sys").executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip() == "False"
