"""Event delivery and the shared deadline, the plumbing under every policy."""

from __future__ import annotations

import logging
import pickle

import pytest

from cairn import CairnError
from cairn.resilience import (
    BreakerState,
    BulkheadFullError,
    CircuitOpenError,
    ResilienceError,
    RetryError,
    TimeoutElapsed,
    TimeoutExceeded,
    current_deadline,
    subscribe,
    time_left,
)
from cairn.resilience._deadline import deadline_scope
from cairn.resilience._events import emit
from cairn.testing import VirtualClock, capture_events


def test_listeners_receive_events_in_order_and_can_unsubscribe() -> None:
    seen: list[object] = []
    unsubscribe = subscribe(seen.append)
    first = TimeoutElapsed(policy="t", at=1.0, timeout=2.0)
    emit(first)
    unsubscribe()
    emit(TimeoutElapsed(policy="t", at=2.0, timeout=2.0))
    assert seen == [first]
    unsubscribe()  # a second call is harmless


def test_local_listeners_run_before_global_ones() -> None:
    order: list[str] = []
    event = TimeoutElapsed(policy="t", at=0.0, timeout=1.0)
    with capture_events() as captured:
        emit(event, (lambda e: order.append("local"),))
    assert order == ["local"]
    assert captured == [event]


def test_a_failing_listener_is_logged_and_never_breaks_delivery(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(event: object) -> None:
        raise RuntimeError("listener bug")

    unsubscribe = subscribe(broken)
    try:
        with capture_events() as captured, caplog.at_level(logging.ERROR, "cairn.resilience"):
            emit(TimeoutElapsed(policy="t", at=0.0, timeout=1.0))
    finally:
        unsubscribe()
    assert len(captured) == 1
    assert "listener bug" in caplog.text


def test_events_are_frozen() -> None:
    event = TimeoutElapsed(policy="t", at=0.0, timeout=1.0)
    with pytest.raises(AttributeError):
        event.timeout = 5.0  # type: ignore[misc]


def test_deadline_scopes_nest_and_the_earlier_wins() -> None:
    clock = VirtualClock(start=10)
    assert current_deadline() is None
    assert time_left(clock) is None
    with deadline_scope(15):
        assert time_left(clock) == 5
        with deadline_scope(30) as effective:
            assert effective == 15
        with deadline_scope(12):
            assert current_deadline() == 12
        clock.advance(20)
        assert time_left(clock) == 0.0
    assert current_deadline() is None


def test_error_tree_and_messages_say_what_to_do() -> None:
    opened = CircuitOpenError("payments", BreakerState.OPEN, 12.5)
    assert isinstance(opened, ResilienceError)
    assert isinstance(opened, CairnError)
    assert "payments" in str(opened)
    assert "12.5s" in str(opened)
    assert "operator" in str(CircuitOpenError("p", BreakerState.FORCED_OPEN, None))
    assert "trial calls are taken" in str(CircuitOpenError("p", BreakerState.HALF_OPEN, None))

    full = BulkheadFullError("db", 4, 2)
    assert "max_concurrent" in str(full)

    timeout = TimeoutExceeded("call", 2.0)
    assert isinstance(timeout, TimeoutError)
    assert "2s" in str(timeout)

    gave_up = RetryError("api", 3, "stop", ValueError("boom"))
    assert "3 attempt(s)" in str(gave_up)
    assert "ValueError: boom" in str(gave_up)
    assert "last result: 503" in str(RetryError("api", 3, "stop", None, 503))


@pytest.mark.parametrize(
    "error",
    [
        CircuitOpenError("p", BreakerState.OPEN, 1.0),
        BulkheadFullError("b", 1, 0),
        TimeoutExceeded("t", 1.0),
        RetryError("r", 2, "budget", None, 42),
    ],
)
def test_errors_survive_pickling(error: Exception) -> None:
    # Errors cross process boundaries (multiprocessing, worker pools).
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
