"""Checked by mypy (``make typecheck``), never run: the public API keeps its types.

Decorated functions keep their signatures (sync and async), policies compose,
and errors carry typed context.
"""

from __future__ import annotations

from typing import assert_type

from cairn.resilience import (
    CircuitBreaker,
    CircuitOpenError,
    Fallback,
    Pipeline,
    Retry,
    Timeout,
    circuit,
    retry,
    stop_after_attempt,
    wait_exponential,
)


@retry(stop=stop_after_attempt(3), wait=wait_exponential(multiplier=1, min=1, max=10))
def call_api(path: str, *, timeout: float = 1.0) -> bytes:
    return path.encode()


@circuit(failure_threshold=5, recovery_timeout=60)
def call_external_api(item: int) -> dict[str, int]:
    return {"item": item}


@retry
async def fetch(order_id: int) -> str:
    return str(order_id)


assert_type(call_api("/data", timeout=2.0), bytes)
assert_type(call_external_api(3), dict[str, int])
assert_type(call_external_api.breaker, CircuitBreaker)


async def use_async() -> None:
    assert_type(await fetch(7), str)
    pipeline = Pipeline(Timeout(seconds=10), Retry(), CircuitBreaker(), Timeout(seconds=2))
    assert_type(await pipeline.acall(fetch, 7), str)


def use_sync() -> None:
    policy = Fallback(fallback=b"")
    assert_type(policy.call(call_api, "/x"), bytes)
    try:
        call_external_api(1)
    except CircuitOpenError as error:
        assert_type(error.retry_after, float | None)
        assert_type(error.name, str)
