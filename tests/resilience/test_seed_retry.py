"""The seed's retry semantics, held exactly.

    @retry(stop=stop_after_attempt(3), wait=wait_exponential(multiplier=1, min=1, max=10))
    def call_api(): ...

Attempt 1 at once, attempt 2 after 1 s, attempt 3 after 2 s more, then it
gives up and the caller gets the last error, as with tenacity.
"""

from __future__ import annotations

import pytest

from cairn.resilience import (
    DEFAULT_CLOCK,
    RetryGaveUp,
    RetryScheduled,
    retry,
    stop_after_attempt,
    wait_exponential,
)
from cairn.testing import VirtualClock, capture_events, virtual_time

# The seed's code, with only the import changed, decorated at import time as
# production code is; the test runs it in virtual time.
seed_calls: list[float] = []


@retry(stop=stop_after_attempt(3), wait=wait_exponential(multiplier=1, min=1, max=10))
def call_api() -> str:
    seed_calls.append(time_now())
    raise ConnectionError("api.com is down")


def time_now() -> float:
    return DEFAULT_CLOCK.monotonic()


def test_seed_snippet_as_written() -> None:
    seed_calls.clear()
    with virtual_time() as clock, pytest.raises(ConnectionError, match=r"api\.com is down"):
        call_api()
    # Tentativa 1: imediata · Tentativa 2: espera 1s · Tentativa 3: espera 2s · Desiste
    assert seed_calls == [0.0, 1.0, 3.0]
    assert clock.sleeps == [1, 2]


def test_seed_retry_schedule_sync() -> None:
    clock = VirtualClock()
    attempts: list[float] = []

    @retry(
        stop=stop_after_attempt(3), wait=wait_exponential(multiplier=1, min=1, max=10), clock=clock
    )
    def call_api() -> None:
        attempts.append(clock.monotonic())
        raise ConnectionError(f"attempt {len(attempts)}")

    with capture_events() as events, pytest.raises(ConnectionError, match="attempt 3"):
        call_api()
    assert clock.sleeps == [1, 2]
    assert attempts == [0.0, 1.0, 3.0]
    assert [(type(e), e.at) for e in events] == [
        (RetryScheduled, 0.0),
        (RetryScheduled, 1.0),
        (RetryGaveUp, 3.0),
    ]


async def test_seed_retry_schedule_async() -> None:
    clock = VirtualClock()
    attempts: list[float] = []

    @retry(
        stop=stop_after_attempt(3), wait=wait_exponential(multiplier=1, min=1, max=10), clock=clock
    )
    async def call_api() -> None:
        attempts.append(clock.monotonic())
        raise ConnectionError(f"attempt {len(attempts)}")

    with pytest.raises(ConnectionError, match="attempt 3"):
        await call_api()
    assert clock.sleeps == [1, 2]
    assert attempts == [0.0, 1.0, 3.0]


def test_seed_retry_stops_retrying_once_the_call_succeeds() -> None:
    clock = VirtualClock()
    attempts: list[float] = []

    @retry(
        stop=stop_after_attempt(3), wait=wait_exponential(multiplier=1, min=1, max=10), clock=clock
    )
    def call_api() -> str:
        attempts.append(clock.monotonic())
        if len(attempts) < 2:
            raise ConnectionError
        return "ok"

    assert call_api() == "ok"
    assert clock.sleeps == [1]
    assert attempts == [0.0, 1.0]
