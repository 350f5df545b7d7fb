"""Per-call overhead of cairn's retry and circuit breaker against Python peers.

Run: ``make bench`` (or ``.venv/bin/python bench/resilience.py [--quick]``).

For every path the script measures, in one run and one process, a bare call
and each library's protected call, and reports the *overhead above the bare
call* in ns/call (the minimum over several repeats, as timeit advises: the
minimum is the run least disturbed by the rest of the machine), then the ratio
of each peer's overhead to cairn's. Peers are used as their docs show, with
retry waits set to zero and instrumentation hooks off so that only the policy
machinery is measured.

Paths: retry success (first attempt succeeds), retry with one failure and zero
wait, breaker closed success, breaker open rejection; sync and async. Then the
memory held after 100,000 rejections in the open state.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import platform
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib.metadata import version

import aiobreaker
import circuitbreaker
import purgatory
import pybreaker
import stamina
import stamina.instrumentation
import tenacity

from cairn.resilience import (
    CircuitBreaker,
    CircuitOpenError,
    _breaker,
    retry,
    stop_after_attempt,
    wait_none,
)

SyncFn = Callable[[], object]
AsyncFn = Callable[[], Awaitable[object]]


class Boom(Exception):
    pass


# -- the protected functions ------------------------------------------------


def ok() -> int:
    return 1


async def aok() -> int:
    return 1


def boom() -> int:
    raise Boom


async def aboom() -> int:
    raise Boom


def flaky_once() -> SyncFn:
    """Fails every other call: each protected call needs exactly one retry."""
    state = [False]

    def fn() -> int:
        state[0] = not state[0]
        if state[0]:
            raise Boom
        return 1

    return fn


def aflaky_once() -> AsyncFn:
    state = [False]

    async def fn() -> int:
        state[0] = not state[0]
        if state[0]:
            raise Boom
        return 1

    return fn


# -- timing -----------------------------------------------------------------


def time_sync(fn: SyncFn, n: int, repeat: int, expect_error: type[BaseException] | None) -> float:
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        if expect_error is None:
            start = time.perf_counter_ns()
            for _ in range(n):
                fn()
            elapsed = time.perf_counter_ns() - start
        else:
            start = time.perf_counter_ns()
            for _ in range(n):
                try:
                    fn()
                except expect_error:
                    pass
            elapsed = time.perf_counter_ns() - start
        best = min(best, elapsed / n)
    return best


def time_async(fn: AsyncFn, n: int, repeat: int, expect_error: type[BaseException] | None) -> float:
    async def run() -> float:
        best = float("inf")
        for _ in range(repeat):
            gc.collect()
            start = time.perf_counter_ns()
            if expect_error is None:
                for _ in range(n):
                    await fn()
            else:
                for _ in range(n):
                    try:
                        await fn()
                    except expect_error:
                        pass
            best = min(best, (time.perf_counter_ns() - start) / n)
        return best

    return asyncio.run(run())


@dataclass
class Row:
    path: str
    library: str
    ns: float
    overhead: float


# -- the contenders -----------------------------------------------------------


def retry_contenders(
    fn_factory: Callable[[], Callable[..., object]],
) -> dict[str, Callable[..., object]]:
    stamina.instrumentation.set_on_retry_hooks([])
    return {
        "cairn": retry(stop=stop_after_attempt(3), wait=wait_none())(fn_factory()),
        "tenacity": tenacity.retry(
            stop=tenacity.stop_after_attempt(3), wait=tenacity.wait_none(), reraise=True
        )(fn_factory()),
        "stamina": stamina.retry(
            on=Boom, attempts=3, timeout=None, wait_initial=0, wait_max=0, wait_jitter=0
        )(fn_factory()),
    }


def pure_python(fn: Callable[..., object]) -> Callable[..., object]:
    """``fn`` behind cairn's breaker without its C extension (as where none is built)."""
    built = _breaker._speedups
    _breaker._speedups = None
    try:
        return CircuitBreaker(failure_threshold=5, recovery_timeout=600)(fn)
    finally:
        _breaker._speedups = built


OURS = {"cairn", "cairn, no C", "(bare call)", "(bare raise)"}


def breaker_contenders(fn: SyncFn) -> dict[str, SyncFn]:
    purgatory_factory = purgatory.SyncCircuitBreakerFactory(default_threshold=5, default_ttl=600)
    return {
        "cairn": CircuitBreaker(failure_threshold=5, recovery_timeout=600)(fn),
        "cairn, no C": pure_python(fn),  # type: ignore[dict-item]
        "circuitbreaker": circuitbreaker.circuit(failure_threshold=5, recovery_timeout=600)(fn),
        "pybreaker": pybreaker.CircuitBreaker(fail_max=5, reset_timeout=600)(fn),
        "purgatory": purgatory_factory("bench")(fn),
    }


def async_breaker_contenders(fn: AsyncFn) -> dict[str, AsyncFn]:
    purgatory_factory = purgatory.AsyncCircuitBreakerFactory(default_threshold=5, default_ttl=600)
    aio = aiobreaker.CircuitBreaker(fail_max=5, timeout_duration=dt.timedelta(seconds=600))
    return {
        "cairn": CircuitBreaker(failure_threshold=5, recovery_timeout=600)(fn),
        "cairn, no C": pure_python(fn),  # type: ignore[dict-item]
        "circuitbreaker": circuitbreaker.circuit(failure_threshold=5, recovery_timeout=600)(fn),
        "aiobreaker": aio(fn),
        "purgatory": purgatory_factory("bench")(fn),
    }


# Exceptions each library raises when its breaker is open.
OPEN_ERRORS: tuple[type[BaseException], ...] = (
    CircuitOpenError,
    circuitbreaker.CircuitBreakerError,
    pybreaker.CircuitBreakerError,
    aiobreaker.CircuitBreakerError,
    purgatory.domain.model.OpenedState,
    Boom,  # pybreaker raises the trip error only on the tripping call
)


def trip_sync(fn: SyncFn) -> None:
    for _ in range(10):
        try:
            fn()
        except OPEN_ERRORS:
            pass


def trip_async(fn: AsyncFn) -> None:
    async def run() -> None:
        for _ in range(10):
            try:
                await fn()
            except OPEN_ERRORS:
                pass

    asyncio.run(run())


# -- the run ------------------------------------------------------------------


def measure(n: int, repeat: int) -> list[Row]:
    rows: list[Row] = []

    def add(
        path: str,
        contenders: dict[str, Callable[..., object]],
        bare_ns: float,
        timer: Callable[[Callable[..., object]], float],
    ) -> None:
        rows.append(Row(path, "(bare call)", bare_ns, 0.0))
        for name, fn in contenders.items():
            ns = timer(fn)
            rows.append(Row(path, name, ns, ns - bare_ns))

    bare = time_sync(ok, n, repeat, None)
    add(
        "retry, success, sync",
        retry_contenders(lambda: ok),
        bare,
        lambda f: time_sync(f, n, repeat, None),
    )
    abare = time_async(aok, n, repeat, None)
    add(
        "retry, success, async",
        retry_contenders(lambda: aok),
        abare,
        lambda f: time_async(f, n, repeat, None),
    )  # type: ignore[arg-type]

    flaky_bare = time_sync(flaky_once(), n, repeat, Boom)
    add(
        "retry, one failure, sync",
        retry_contenders(flaky_once),
        flaky_bare,
        lambda f: time_sync(f, n // 4, repeat, None),
    )
    aflaky_bare = time_async(aflaky_once(), n, repeat, Boom)
    add(
        "retry, one failure, async",
        retry_contenders(aflaky_once),
        aflaky_bare,
        lambda f: time_async(f, n // 4, repeat, None),
    )  # type: ignore[arg-type]

    add(
        "breaker, closed, sync",
        breaker_contenders(ok),
        bare,
        lambda f: time_sync(f, n, repeat, None),
    )
    add(
        "breaker, closed, async",
        async_breaker_contenders(aok),
        abare,
        lambda f: time_async(f, n, repeat, None),
    )  # type: ignore[arg-type]

    def open_sync(f: SyncFn) -> float:
        trip_sync(f)
        return time_sync(f, n, repeat, OPEN_ERRORS)

    def open_async(f: AsyncFn) -> float:
        trip_async(f)
        return time_async(f, n, repeat, OPEN_ERRORS)

    add("breaker, open rejection, sync", breaker_contenders(boom), bare, open_sync)  # type: ignore[arg-type]
    add("breaker, open rejection, async", async_breaker_contenders(aboom), abare, open_async)  # type: ignore[arg-type]
    # A rejection is delivered as an exception, and raising one has a floor
    # of its own in CPython: measure it, so both baselines can be read.
    rows.append(
        Row("breaker, open rejection, sync", "(bare raise)", time_sync(boom, n, repeat, Boom), 0.0)
    )
    rows.append(
        Row(
            "breaker, open rejection, async",
            "(bare raise)",
            time_async(aboom, n, repeat, Boom),
            0.0,
        )
    )
    return rows


def memory_after_rejections(count: int) -> dict[str, int]:
    """Bytes still allocated after ``count`` rejections in the open state."""
    held: dict[str, int] = {}
    for name, fn in breaker_contenders(boom).items():
        trip_sync(fn)
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        for _ in range(count):
            try:
                fn()
            except OPEN_ERRORS:
                pass
        gc.collect()
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
        held[name] = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    return held


def report(rows: list[Row], held: dict[str, int], n: int, repeat: int) -> None:
    libs = ["tenacity", "stamina", "circuitbreaker", "pybreaker", "aiobreaker", "purgatory"]
    print(f"# cairn resilience benchmark — {n:,} calls x {repeat} repeats, min per call")
    print(
        f"# {platform.platform()} · {platform.processor() or platform.machine()} · Python {platform.python_version()}"
    )
    print("# versions: " + ", ".join(f"{lib} {version(lib)}" for lib in ["cairn", *libs]))
    print()
    print(f"{'path':34} {'library':16} {'ns/call':>9} {'overhead ns':>12} {'peer/cairn':>11}")
    by_path: dict[str, dict[str, Row]] = {}
    for row in rows:
        by_path.setdefault(row.path, {})[row.library] = row
    for path, entries in by_path.items():
        mine = entries["cairn"].overhead
        for lib, row in entries.items():
            ratio = ""
            if lib not in OURS:
                ratio = f"{row.overhead / mine:10.1f}x" if mine > 0 else "   cairn≈0"
            print(f"{path:34} {lib:16} {row.ns:9.0f} {row.overhead:12.0f} {ratio:>11}")
        print()
    print("targets (overhead above the bare call; the fastest peer's over cairn's):")
    targets = {"retry": 10.0, "breaker": 3.0}
    for path, entries in by_path.items():
        mine = entries["cairn"].overhead
        peers = {k: v for k, v in entries.items() if k not in OURS}
        fastest = min(peers, key=lambda k: peers[k].overhead)
        ratio = peers[fastest].overhead / mine if mine > 0 else float("inf")
        target = targets[path.split(",")[0]]
        verdict = "meets" if ratio >= target else "MISSES"
        line = f"  {path:34} {ratio:6.1f}x vs {fastest:14} (target {target:g}x): {verdict}"
        if "(bare raise)" in entries:
            floor = entries["(bare raise)"].ns
            over_raise = (entries["cairn"].ns - floor, peers[fastest].ns - floor)
            line += (
                f"; above a bare raise ({floor:.0f} ns): cairn {over_raise[0]:.0f} ns, "
                f"{fastest} {over_raise[1]:.0f} ns, {over_raise[1] / over_raise[0]:.1f}x"
            )
        print(line)
    print()
    print("memory held after 100,000 open-state rejections:")
    for lib, size in held.items():
        print(f"  {lib:16} {size / 1024:10.1f} KiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls (a smoke run, noisy)")
    args = parser.parse_args()
    n, repeat = (2_000, 2) if args.quick else (100_000, 7)
    rows = measure(n, repeat)
    held = memory_after_rejections(2_000 if args.quick else 100_000)
    report(rows, held, n, repeat)


if __name__ == "__main__":
    sys.exit(main())
