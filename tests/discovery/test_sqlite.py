"""The embedded registry: safe across processes, honest about clocks, clear about errors."""

from __future__ import annotations

import asyncio
import contextvars
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from disc_support import until

from cairn.discovery import (
    DiscoveryError,
    Health,
    Instance,
    RegistryUnavailable,
    SQLiteRegistry,
    TTLCheck,
)
from cairn.testing import VirtualClock

WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from cairn.discovery import Instance, SQLiteRegistry, TTLCheck

    async def main(path, worker, count, beat):
        registry = SQLiteRegistry(path)
        for n in range(count):
            check = TTLCheck(ttl=1.0) if beat else None
            await registry.register(Instance("jobs", f"w{worker}-{n}", "127.0.0.1", 1000 + n, check=check))
        print("registered", flush=True)
        while beat:
            for n in range(count):
                await registry.heartbeat(f"w{worker}-{n}")
            await asyncio.sleep(0.2)
        await registry.aclose()

    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "beat"))
    """
)


def _spawn(path: Path, worker: int, count: int, *, beat: bool = False) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            WRITER,
            str(path),
            str(worker),
            str(count),
            "beat" if beat else "once",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
async def test_processes_register_concurrently_into_one_file(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    workers = [_spawn(path, w, 25) for w in range(4)]
    for proc in workers:
        _out, err = await asyncio.to_thread(proc.communicate, timeout=60)
        assert proc.returncode == 0, err
    registry = SQLiteRegistry(path)
    try:
        found = await registry.fetch("jobs")
        assert len(found) == 100
        assert {i.id for i in found} == {f"w{w}-{n}" for w in range(4) for n in range(25)}
    finally:
        await registry.aclose()


@pytest.mark.slow
async def test_a_watch_sees_another_process_register_and_die(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    registry = SQLiteRegistry(path, poll_interval=0.02)
    try:
        assert len(await registry.instances("jobs")) == 0
        child = _spawn(path, 7, 2, beat=True)
        try:
            seen = await until(registry, "jobs", lambda v: len(v) == 2, timeout=30)
            assert seen.ids == ("w7-0", "w7-1")
            os.kill(child.pid, signal.SIGKILL)
        finally:
            child.kill()
            await asyncio.to_thread(child.communicate)
        # Nobody deregistered them: the TTL (1 s) alone turns them critical.
        gone = await until(registry, "jobs", lambda v: len(v) == 0, timeout=10)
        assert gone.registered == 2
        everyone = await registry.instances("jobs", passing=False)
        assert {everyone.health(i) for i in ("w7-0", "w7-1")} == {Health.CRITICAL}
    finally:
        await registry.aclose()


async def test_rows_from_before_a_reboot_lapse_instead_of_living_forever(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    before = SQLiteRegistry(path, clock=VirtualClock(start=10_000.0))
    await before.register(Instance("jobs", "old", "127.0.0.1", 1, check=TTLCheck(ttl=60)))
    await before.register(Instance("jobs", "plain", "127.0.0.1", 2))
    await before.aclose()

    # After a reboot the monotonic clock starts again near zero.
    after = SQLiteRegistry(path, clock=VirtualClock(start=5.0))
    try:
        found = await after.fetch("jobs", passing=False)
        assert found.health("old") is Health.CRITICAL
        assert found.health("plain") is Health.PASSING
    finally:
        await after.aclose()


async def test_heartbeat_without_a_ttl_check_is_a_clear_error() -> None:
    registry = SQLiteRegistry(":memory:", clock=VirtualClock())
    try:
        await registry.register(Instance("jobs", "j1", "127.0.0.1", 1))
        with pytest.raises(ValueError, match="no TTL check"):
            await registry.heartbeat("j1")
    finally:
        await registry.aclose()


async def test_a_critical_heartbeat_keeps_its_critical_since(tmp_path: Path) -> None:
    clock = VirtualClock()
    registry = SQLiteRegistry(tmp_path / "r.db", clock=clock)
    try:
        await registry.register(
            Instance("jobs", "j1", "127.0.0.1", 1, check=TTLCheck(ttl=60, deregister_after=10))
        )
        await registry.heartbeat("j1", health=Health.CRITICAL)
        clock.advance(6)
        # Still critical: the clock towards deregistration keeps running.
        await registry.heartbeat("j1", health=Health.CRITICAL)
        clock.advance(6)
        assert (await registry.fetch("jobs", passing=False)).registered == 0
    finally:
        await registry.aclose()


async def test_closed_registry_refuses_lookups() -> None:
    registry = SQLiteRegistry(":memory:")
    await registry.aclose()
    await registry.aclose()  # idempotent
    with pytest.raises(DiscoveryError, match="closed"):
        await registry.instances("jobs")


def test_an_unusable_path_raises_registry_unavailable(tmp_path: Path) -> None:
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(RegistryUnavailable, match=r"dir\.db"):
        SQLiteRegistry(tmp_path / "dir.db")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"poll_interval": 0}, "poll_interval"),
        ({"busy_timeout": -1}, "busy_timeout"),
        ({"protection_threshold": 0}, "protection_threshold"),
        ({"protection_threshold": 1.5}, "protection_threshold"),
        ({"wait": 0}, "wait"),
    ],
)
def test_bad_settings_are_refused_at_construction(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SQLiteRegistry(":memory:", **kwargs)  # type: ignore[arg-type]


async def test_cached_is_none_until_watched_and_unhashable_tags_work() -> None:
    registry = SQLiteRegistry(":memory:", clock=VirtualClock())
    try:
        await registry.register(Instance("jobs", "j1", "127.0.0.1", 1, tags=("a",)))
        assert registry.cached("jobs") is None
        assert registry.cached("jobs", tags=["a"]) is None
        assert (await registry.instances("jobs", tags=["a"])).ids == ("j1",)
        cached = registry.cached("jobs", tags=["a"])
        assert cached is not None
        assert cached.ids == ("j1",)
        assert registry.cached("jobs") is not None
    finally:
        await registry.aclose()


async def test_a_watch_does_not_carry_the_context_of_the_call_that_started_it(
    tmp_path: Path,
) -> None:
    # The first caller may be a request with a trace and bound log fields; the
    # watch outlives it and must not run (or make spans) inside that context.
    request = contextvars.ContextVar("request", default="none")
    seen: list[str] = []

    class Recording(SQLiteRegistry):
        async def _query(self, service: str, *, index: int, wait: float) -> Any:
            seen.append(request.get())
            return await super()._query(service, index=index, wait=wait)

    registry = Recording(tmp_path / "r.db")
    try:
        await registry.register(Instance("jobs", "j-1", "127.0.0.1", 1000))
        request.set("GET /orders/123")
        found = await registry.instances("jobs")
        assert [i.id for i in found] == ["j-1"]
        assert seen
        assert set(seen) == {"none"}
    finally:
        await registry.aclose()
