"""The breaker's decorator in C (``_speedups``) against its pure-Python form.

Every test but the first two runs under both forms (``breaker_impl``), so each
is also a statement of what the Python wrapper does: the C form must be the
same function to its callers, to ``inspect``, to asyncio and to pickle.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import os
import pickle
import subprocess
import sys
import tracemalloc
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from cairn.resilience import BreakerState, CircuitBreaker, CircuitOpenError
from cairn.resilience._events import BreakerRejected
from cairn.testing import VirtualClock, capture_events, virtual_time

pytestmark = pytest.mark.usefixtures("breaker_impl")


class Boom(Exception):
    pass


# Module level, so that pickle can find it by name.
module_breaker = CircuitBreaker(name="module-level", failure_threshold=3)


@module_breaker
def module_level(x: int) -> int:
    return x + 1


def test_the_c_extension_is_built_and_used() -> None:
    if os.environ.get("CAIRN_NO_SPEEDUPS"):
        pytest.skip("CAIRN_NO_SPEEDUPS is set: the pure-Python breaker is in use")
    try:
        from cairn.resilience import _speedups
    except ImportError:
        _speedups = None
    assert _speedups is not None, (
        "cairn.resilience._speedups was not built: install a C compiler and the Python "
        "headers (Debian: gcc python3-dev), then `pip install -e .` again; or set "
        "CAIRN_NO_SPEEDUPS=1 to run on the pure-Python breaker"
    )
    assert type(module_level).__name__ == "Protected"


def test_cairn_no_speedups_keeps_the_python_wrapper() -> None:
    code = (
        "from cairn.resilience import CircuitBreaker\n"
        "f = CircuitBreaker()(lambda: 1)\n"
        "print(type(f).__name__, f())\n"
    )
    env = {**os.environ, "CAIRN_NO_SPEEDUPS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["function", "1"]


def trip(fn: Callable[[], Any], times: int) -> None:
    for _ in range(times):
        with pytest.raises(Boom):
            fn()


async def atrip(fn: Callable[[], Awaitable[Any]], times: int) -> None:
    for _ in range(times):
        with pytest.raises(Boom):
            await fn()


# -- the same function to inspect, pickle and classes --------------------------


def test_it_looks_like_the_function_it_protects() -> None:
    breaker = CircuitBreaker(name="looks")

    @breaker
    def add(x: int, y: int = 2) -> int:
        """Add two numbers."""
        return x + y

    @breaker
    async def fetch(url: str) -> str:
        return url

    assert add(1) == 3
    assert add(1, y=5) == 6
    assert add.__name__ == "add"
    assert add.__doc__ == "Add two numbers."
    assert add.__qualname__.endswith("<locals>.add")
    assert str(inspect.signature(add)) == "(x: 'int', y: 'int' = 2) -> 'int'"
    assert add.__wrapped__(1) == 3
    assert add.breaker is breaker
    assert fetch.breaker is breaker
    assert not inspect.iscoroutinefunction(add)
    assert inspect.iscoroutinefunction(fetch)
    assert asyncio.iscoroutinefunction(fetch)
    assert inspect.isroutine(add)
    assert inspect.isfunction(add)
    assert inspect.isfunction(fetch)
    assert "add" in repr(add)
    ref = weakref.ref(add)
    assert ref() is add


def test_it_pickles_by_name_as_a_function_does() -> None:
    assert pickle.loads(pickle.dumps(module_level)) is module_level


def test_web_frameworks_take_it_as_the_endpoint_function() -> None:
    # Starlette tells an endpoint function from an ASGI app with
    # inspect.isfunction(), FastAPI awaits what iscoroutinefunction() marks.
    import httpx
    from fastapi import FastAPI
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    breaker = CircuitBreaker(name="endpoints")

    @breaker
    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse("hello " + request.path_params["name"])

    api = FastAPI()

    @api.get("/items/{item_id}")
    @breaker
    async def item(item_id: int) -> dict[str, int]:
        return {"item_id": item_id}

    async def main() -> None:
        site = Starlette(routes=[Route("/hello/{name}", hello)])
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=site)) as client:
            assert (await client.get("http://site/hello/ana")).text == "hello ana"
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api)) as client:
            assert (await client.get("http://api/items/7")).json() == {"item_id": 7}
            # FastAPI read the signature: a bad path parameter never reaches the call
            assert (await client.get("http://api/items/x")).status_code == 422

    asyncio.run(main())
    assert breaker.stats().total_calls == 2


def test_a_decorated_method_gets_its_instance() -> None:
    breaker = CircuitBreaker(name="methods")

    class Client:
        def __init__(self, base: int) -> None:
            self.base = base

        @breaker
        def get(self, n: int) -> int:
            return self.base + n

        @breaker
        async def aget(self, n: int) -> int:
            return self.base * n

    client = Client(10)
    assert client.get(1) == 11
    assert Client.get(client, 2) == 12
    assert asyncio.run(client.aget(3)) == 30
    assert breaker.stats().total_calls == 3


# -- a coroutine function's call does nothing until awaited ---------------------


def test_the_decision_is_taken_when_the_call_is_first_awaited() -> None:
    breaker = CircuitBreaker(name="lazy")

    @breaker
    async def work() -> str:
        return "done"

    async def main() -> None:
        call = work()  # made while CLOSED
        assert breaker.stats().total_calls == 0
        breaker.force_open()
        with pytest.raises(CircuitOpenError) as refused:
            await call
        assert refused.value.state is BreakerState.FORCED_OPEN
        breaker.reset()
        refused_early = work()
        breaker.force_open()
        breaker.reset()
        assert await refused_early == "done"

    asyncio.run(main())
    assert breaker.stats().total_calls == 1


def test_a_call_closed_before_it_starts_counts_nothing() -> None:
    breaker = CircuitBreaker(name="unawaited", failure_threshold=1, recovery_timeout=60)

    @breaker
    async def work() -> str:
        raise Boom

    call = work()
    call.close()
    assert breaker.stats().total_calls == 0
    thrown = work()
    with pytest.raises(KeyError):
        thrown.throw(KeyError("thrown in"))
    with pytest.raises(RuntimeError, match="already awaited"):
        thrown.send(None)
    assert breaker.stats().total_calls == 0
    assert breaker.state is BreakerState.CLOSED


def test_it_behaves_as_a_coroutine_when_stepped_by_hand() -> None:
    breaker = CircuitBreaker(name="stepped")

    @breaker
    async def pair() -> tuple[int, int]:
        return (1, 2)

    started_wrong = pair()
    with pytest.raises(TypeError, match="non-None"):
        started_wrong.send("x")
    started_wrong.close()
    call = pair()
    with pytest.raises(StopIteration) as stop:
        call.send(None)
    assert stop.value.value == (1, 2)  # a tuple comes back whole, not as args
    with pytest.raises(RuntimeError, match="already awaited"):
        call.send(None)
    unawaited = pair()
    assert asyncio.iscoroutine(unawaited)
    assert inspect.isawaitable(unawaited)
    assert unawaited.__name__ == "pair"
    assert unawaited.__qualname__.endswith("<locals>.pair")
    assert "pair" in repr(unawaited)
    unawaited.close()


def test_gather_tasks_and_results_as_with_native_coroutines() -> None:
    breaker = CircuitBreaker(name="tasks")

    @breaker
    async def nothing() -> None:
        return None

    @breaker
    async def square(n: int) -> int:
        await asyncio.sleep(0)
        return n * n

    async def main() -> list[Any]:
        task = asyncio.create_task(square(5))
        results = await asyncio.gather(square(2), square(3), nothing())
        return [*results, await task]

    assert asyncio.run(main()) == [4, 9, None, 25]


# -- the breaker's bookkeeping on the fast paths -------------------------------


def test_async_success_resets_consecutive_failures() -> None:
    breaker = CircuitBreaker(name="reset", failure_threshold=2)
    fail = [True]

    @breaker
    async def flaky() -> str:
        await asyncio.sleep(0)
        if fail[0]:
            raise Boom
        return "ok"

    async def main() -> None:
        await atrip(flaky, 1)
        fail[0] = False
        assert await flaky() == "ok"
        fail[0] = True
        await atrip(flaky, 1)  # one in a row again: still closed
        assert breaker.state is BreakerState.CLOSED
        await atrip(flaky, 1)
        assert breaker.state is BreakerState.OPEN

    asyncio.run(main())


def test_sync_success_resets_consecutive_failures() -> None:
    breaker = CircuitBreaker(name="sync-reset", failure_threshold=2)
    fail = [True]

    @breaker
    def flaky() -> str:
        if fail[0]:
            raise Boom
        return "ok"

    trip(flaky, 1)
    fail[0] = False
    assert flaky() == "ok"
    fail[0] = True
    trip(flaky, 1)
    assert breaker.state is BreakerState.CLOSED
    trip(flaky, 1)
    assert breaker.state is BreakerState.OPEN


def test_a_cancelled_call_is_not_a_failure() -> None:
    breaker = CircuitBreaker(name="cancelled", failure_threshold=1)

    @breaker
    async def slow(started: asyncio.Event) -> None:
        started.set()
        await asyncio.Event().wait()

    async def main() -> None:
        started = asyncio.Event()
        task = asyncio.create_task(slow(started))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert breaker.state is BreakerState.CLOSED
    assert breaker.stats().total_failures == 0


def test_a_bad_call_is_a_failure_raised_when_awaited() -> None:
    breaker = CircuitBreaker(name="bad-args", failure_threshold=1)

    @breaker
    async def one(x: int) -> int:
        return x

    call = one(1, 2)  # the wrong arguments: nothing raised until awaited

    async def main() -> None:
        with pytest.raises(TypeError):
            await call

    asyncio.run(main())
    assert breaker.state is BreakerState.OPEN


def test_rejections_are_counted_timed_and_announced() -> None:
    clock = VirtualClock()
    breaker = CircuitBreaker(
        name="announced", failure_threshold=1, recovery_timeout=10, clock=clock
    )

    @breaker
    def call() -> None:
        raise Boom

    @breaker
    async def acall() -> None:
        raise Boom

    trip(call, 1)
    clock.advance(4)
    with capture_events() as events:
        with pytest.raises(CircuitOpenError) as refused:
            call()
        with pytest.raises(CircuitOpenError) as arefused:
            asyncio.run(acall())
    assert refused.value.retry_after == 6.0
    assert arefused.value.retry_after == 6.0
    assert refused.value.name == "announced"
    assert refused.value.state is BreakerState.OPEN
    rejections = [e for e in events if isinstance(e, BreakerRejected)]
    assert [(e.policy, e.retry_after) for e in rejections] == [("announced", 6.0)] * 2
    # Nobody listening: the same rejection, counted all the same.
    with pytest.raises(CircuitOpenError):
        call()
    assert breaker.stats().total_rejections == 3


def test_the_default_clock_is_read_at_call_time() -> None:
    with virtual_time() as clock:
        breaker = CircuitBreaker(name="virtual", failure_threshold=1, recovery_timeout=30)

        @breaker
        def call(ok: bool) -> str:
            if not ok:
                raise Boom
            return "ok"

        trip(lambda: call(False), 1)
        with pytest.raises(CircuitOpenError) as refused:
            call(True)
        assert refused.value.retry_after == 30.0
        clock.advance(30)
        assert call(True) == "ok"  # the trial call
        assert breaker.state is BreakerState.CLOSED


# -- nothing is kept per call -----------------------------------------------------


def grows(run: Callable[[], None], calls: int = 20_000) -> int:
    """Bytes still allocated after ``calls`` more calls than a warm-up's."""
    run()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(calls):
            run()
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("path", ["success", "failure", "rejection"])
def test_no_path_keeps_memory_per_call(path: str) -> None:
    if path == "rejection":  # opened once, for long enough
        breaker = CircuitBreaker(name="memory", failure_threshold=1, recovery_timeout=3600)
    else:  # never opens
        breaker = CircuitBreaker(name="memory", failure_threshold=1_000_000_000)

    @breaker
    def sync(ok: bool) -> None:
        if not ok:
            raise Boom

    @breaker
    async def asynchronous(ok: bool) -> None:
        if not ok:
            raise Boom

    ok = path == "success"
    if path == "rejection":
        trip(lambda: sync(False), 1)
        assert breaker.state is BreakerState.OPEN

    def run_sync() -> None:
        with contextlib.suppress(Boom, CircuitOpenError):
            sync(ok)

    def run_async() -> None:
        with contextlib.suppress(StopIteration, Boom, CircuitOpenError):
            asynchronous(ok).send(None)

    assert grows(run_sync) < 16_384
    assert grows(run_async) < 16_384
    if path == "rejection":
        assert breaker.stats().total_rejections == 2 * 20_001
