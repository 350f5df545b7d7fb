"""Fallback: which failures and results are replaced, by what, sync and async."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cairn.resilience import FallbackUsed
from cairn.resilience._events import Event
from cairn.resilience._fallback import Fallback, exception_matcher
from cairn.testing import VirtualClock, capture_events


def fails(error: BaseException) -> Any:
    raise error


async def afails(error: BaseException) -> Any:
    await asyncio.sleep(0)
    raise error


def returns(value: object) -> object:
    return value


async def areturns(value: object) -> object:
    await asyncio.sleep(0)
    return value


# -- configuration ----------------------------------------------------------


@pytest.mark.parametrize(
    ("on", "message"),
    [
        ((), "would never match"),
        (KeyboardInterrupt, "must name Exception subclasses"),
        (BaseException, "must name Exception subclasses"),
        (asyncio.CancelledError, "must name Exception subclasses"),
        ((ValueError, "KeyError"), "must name Exception subclasses"),
        (42, "must be an exception class, a tuple of them, or a predicate"),
    ],
)
def test_rejects_filters_that_make_no_sense(on: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Fallback(fallback=None, on=on)


def test_rejects_a_bad_result_predicate_name_and_listeners() -> None:
    with pytest.raises(ValueError, match="if_result must be a predicate"):
        Fallback(fallback=None, if_result=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="name must be"):
        Fallback(fallback=None, name="")
    with pytest.raises(ValueError, match="listeners must be"):
        Fallback(fallback=None, listeners=["x"])  # type: ignore[list-item]


def test_matcher_accepts_classes_tuples_and_predicates() -> None:
    assert exception_matcher(KeyError)(KeyError())
    assert not exception_matcher(KeyError)(ValueError())
    assert exception_matcher((KeyError, OSError))(ConnectionError())
    assert exception_matcher(lambda e: "retry" in str(e))(ValueError("please retry"))


def test_configuration_is_keyword_only_and_shown() -> None:
    with pytest.raises(TypeError):
        Fallback(0)  # type: ignore[call-arg]
    assert repr(Fallback(fallback=[], name="cache")) == "Fallback(fallback=[], name='cache')"


# -- sync -------------------------------------------------------------------


def test_a_matching_failure_returns_the_constant_and_emits() -> None:
    clock = VirtualClock(start=5)
    seen: list[Event] = []
    error = ConnectionError("down")
    fallback = Fallback(fallback="cached", name="prices", clock=clock, listeners=[seen.append])
    with capture_events() as events:
        assert fallback.call(fails, error) == "cached"
    assert events == [FallbackUsed(policy="prices", at=5.0, error=error)]
    assert seen == events


def test_success_passes_through_and_emits_nothing() -> None:
    with capture_events() as events:
        assert Fallback(fallback="cached").call(returns, "fresh") == "fresh"
    assert events == []


def test_non_matching_failures_propagate() -> None:
    fallback = Fallback(fallback="cached", on=ConnectionError)
    with capture_events() as events, pytest.raises(KeyError):
        fallback.call(fails, KeyError("bug"))
    assert events == []


@pytest.mark.parametrize("error", [KeyboardInterrupt(), SystemExit(1), GeneratorExit()])
def test_base_exceptions_are_never_replaced(error: BaseException) -> None:
    with pytest.raises(type(error)):
        Fallback(fallback="cached").call(fails, error)


def test_a_predicate_decides_and_sees_the_exception() -> None:
    shown: list[Exception] = []

    def transient(error: Exception) -> bool:
        shown.append(error)
        return isinstance(error, OSError) and error.errno == 111

    fallback = Fallback(fallback=0, on=transient)
    refused = OSError(111, "refused")
    assert fallback.call(fails, refused) == 0
    with pytest.raises(OSError, match="denied"):
        fallback.call(fails, OSError(13, "denied"))
    assert shown[0] is refused
    assert len(shown) == 2


def test_a_callable_fallback_receives_the_exception() -> None:
    error = TimeoutError("slow")
    fallback = Fallback(fallback=lambda e: f"default after {type(e).__name__}")
    assert fallback.call(fails, error) == "default after TimeoutError"


def test_unwanted_results_are_replaced_and_the_callable_gets_none() -> None:
    received: list[object] = []

    def make(error: Exception | None) -> str:
        received.append(error)
        return "placeholder"

    fallback = Fallback(fallback=make, if_result=lambda r: r == [])
    with capture_events() as events:
        assert fallback.call(returns, []) == "placeholder"
        assert fallback.call(returns, [1]) == [1]
    assert received == [None]
    assert [e.error for e in events if isinstance(e, FallbackUsed)] == [None]


def test_a_failing_fallback_propagates_with_the_original_as_context() -> None:
    original = ConnectionError("down")

    def broken(error: Exception | None) -> str:
        raise LookupError("no cache either")

    with pytest.raises(LookupError) as info:
        Fallback(fallback=broken).call(fails, original)
    assert info.value.__context__ is original


def test_a_sync_call_refuses_an_async_fallback_before_running() -> None:
    async def later(error: Exception | None) -> str:
        return "x"

    ran: list[bool] = []
    with pytest.raises(TypeError, match=r"coroutine function.*acall"):
        Fallback(fallback=later).call(lambda: ran.append(True))
    assert ran == []


def test_decorates_plain_functions() -> None:
    @Fallback(fallback=-1, on=ZeroDivisionError)
    def ratio(a: int, b: int) -> float:
        """Divide."""
        return a / b

    assert ratio(6, 3) == 2
    assert ratio(1, 0) == -1
    assert ratio.__doc__ == "Divide."


@given(
    raised=st.sampled_from([None, KeyError, ValueError, ConnectionError, TimeoutError]),
    on=st.sampled_from([KeyError, OSError, (KeyError, ValueError), Exception]),
    value=st.integers(),
)
def test_the_fallback_is_used_exactly_when_the_failure_matches(
    raised: type[Exception] | None, on: Any, value: int
) -> None:
    fallback = Fallback(fallback="fallback", on=on)

    def work() -> int:
        if raised is not None:
            raise raised("x")
        return value

    matches = raised is not None and issubclass(raised, on)
    if raised is not None and not matches:
        with pytest.raises(raised):
            fallback.call(work)
    else:
        assert fallback.call(work) == ("fallback" if matches else value)


# -- async ------------------------------------------------------------------


async def test_async_constant_and_passthrough() -> None:
    fallback = Fallback(fallback="cached", on=ConnectionError)
    assert await fallback.acall(afails, ConnectionError()) == "cached"
    assert await fallback.acall(areturns, "fresh") == "fresh"
    with pytest.raises(KeyError):
        await fallback.acall(afails, KeyError())


async def test_async_cancellation_is_never_replaced() -> None:
    with pytest.raises(asyncio.CancelledError):
        await Fallback(fallback="cached").acall(afails, asyncio.CancelledError())


@pytest.mark.parametrize("kind", ["sync", "async", "returns-awaitable"])
async def test_async_fallback_callables(kind: str) -> None:
    received: list[object] = []

    def sync_make(error: Exception | None) -> str:
        received.append(error)
        return "made"

    async def async_make(error: Exception | None) -> str:
        received.append(error)
        await asyncio.sleep(0)
        return "made"

    def awaitable_make(error: Exception | None) -> Any:
        return async_make(error)

    make = {"sync": sync_make, "async": async_make, "returns-awaitable": awaitable_make}[kind]
    error = ConnectionError("down")
    fallback = Fallback(fallback=make, if_result=lambda r: r is None)
    assert await fallback.acall(afails, error) == "made"
    assert await fallback.acall(areturns, None) == "made"
    assert await fallback.acall(areturns, "fine") == "fine"
    assert received == [error, None]


async def test_async_a_constant_awaitable_is_returned_as_is() -> None:
    future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    assert await Fallback(fallback=future).acall(afails, ValueError()) is future


async def test_async_failing_fallback_keeps_the_original_as_context() -> None:
    original = ConnectionError("down")

    async def broken(error: Exception | None) -> str:
        raise LookupError("no cache either")

    with pytest.raises(LookupError) as info:
        await Fallback(fallback=broken).acall(afails, original)
    assert info.value.__context__ is original


async def test_decorates_coroutine_functions() -> None:
    clock = VirtualClock()

    @Fallback(fallback="stale", clock=clock)
    async def fetch(fail: bool) -> str:
        if fail:
            raise ConnectionError
        return "fresh"

    with capture_events() as events:
        assert await fetch(False) == "fresh"
        assert await fetch(True) == "stale"
    assert len(events) == 1
