"""The seed's circuit breaker, as written there, with a virtual clock injected.

@circuit(failure_threshold=5, recovery_timeout=60)
def call_external_api(): ...

# 5 consecutive failures → circuit OPEN (stops trying)
# after 60 s → circuit HALF_OPEN (tries 1 request)
# on success → circuit CLOSED (back to normal)
"""

from __future__ import annotations

import pytest

from cairn.resilience import BreakerState, BreakerStateChanged, CircuitOpenError, circuit
from cairn.testing import VirtualClock, capture_events, virtual_time

# The seed's snippet, with only the import changed, decorated at import time
# as production code is; `external_api_up` stands in for api.externa.com.
external_api_up = False
external_api_calls = 0


@circuit(failure_threshold=5, recovery_timeout=60)
def call_external_api() -> dict[str, str]:
    global external_api_calls
    external_api_calls += 1
    if not external_api_up:
        raise ConnectionError("api.externa.com unreachable")
    return {"data": "ok"}


def test_seed_snippet_as_written() -> None:
    global external_api_up, external_api_calls
    call_external_api.breaker.reset()
    external_api_up, external_api_calls = False, 0
    with virtual_time() as clock:
        for _ in range(5):  # "Se 5 falhas consecutivas → circuit OPEN"
            with pytest.raises(ConnectionError):
                call_external_api()
        assert call_external_api.breaker.state is BreakerState.OPEN
        with pytest.raises(CircuitOpenError):  # "não tenta mais"
            call_external_api()
        assert external_api_calls == 5
        clock.advance(59.9)
        with pytest.raises(CircuitOpenError):
            call_external_api()
        clock.advance(0.1)  # "Após 60s → circuit HALF_OPEN (tenta 1 request)"
        external_api_up = True
        assert call_external_api() == {"data": "ok"}  # "Se sucesso → circuit CLOSED"
        assert call_external_api.breaker.state is BreakerState.CLOSED
        assert external_api_calls == 6


def test_seed_circuit_breaker_lifecycle() -> None:
    clock = VirtualClock()
    api_up = False
    attempts = 0

    @circuit(failure_threshold=5, recovery_timeout=60, clock=clock)
    def call_external_api() -> dict[str, str]:
        nonlocal attempts
        attempts += 1
        if not api_up:
            raise ConnectionError("api.externa.com unreachable")
        return {"data": "ok"}

    breaker = call_external_api.breaker
    with capture_events() as events:
        for _ in range(4):
            with pytest.raises(ConnectionError):
                call_external_api()
        assert breaker.state is BreakerState.CLOSED
        with pytest.raises(ConnectionError):
            call_external_api()
        assert breaker.state is BreakerState.OPEN
        assert attempts == 5

        # The 6th call is refused without running.
        with pytest.raises(CircuitOpenError) as refused:
            call_external_api()
        assert attempts == 5
        assert refused.value.state is BreakerState.OPEN
        assert refused.value.retry_after == pytest.approx(60.0)

        # Just before 60 s: still refused, with the exact wait left.
        clock.advance(59.5)
        with pytest.raises(CircuitOpenError) as refused:
            call_external_api()
        assert refused.value.retry_after == pytest.approx(0.5)
        assert attempts == 5

        # At 60 s one trial goes through, and its success closes the circuit.
        clock.advance(0.5)
        api_up = True
        assert call_external_api() == {"data": "ok"}
        assert attempts == 6
        assert breaker.state is BreakerState.CLOSED

    changes = [
        (e.from_state, e.to_state, e.reason, e.at)
        for e in events
        if isinstance(e, BreakerStateChanged)
    ]
    assert changes == [
        (BreakerState.CLOSED, BreakerState.OPEN, "5 consecutive failures", 0.0),
        (BreakerState.OPEN, BreakerState.HALF_OPEN, "recovery timeout elapsed", 60.0),
        (BreakerState.HALF_OPEN, BreakerState.CLOSED, "trial succeeded", 60.0),
    ]


def test_seed_half_open_admits_exactly_one_trial() -> None:
    clock = VirtualClock()
    calls: list[str] = []

    @circuit(failure_threshold=5, recovery_timeout=60, clock=clock)
    def call_external_api() -> None:
        calls.append("called")
        if len(calls) <= 5:
            raise ConnectionError("down")
        # The trial call: a second caller arriving now must be refused.
        with pytest.raises(CircuitOpenError) as second:
            call_external_api()
        assert second.value.state is BreakerState.HALF_OPEN
        assert second.value.retry_after is None

    for _ in range(5):
        with pytest.raises(ConnectionError):
            call_external_api()
    clock.advance(60)
    call_external_api()
    assert len(calls) == 6
    assert call_external_api.breaker.state is BreakerState.CLOSED
