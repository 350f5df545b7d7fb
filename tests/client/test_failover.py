"""Two real service processes, one dies (SIGKILL) or drains (SIGTERM) under load: no request fails."""

from __future__ import annotations

import asyncio
import collections
import signal
import time
from pathlib import Path

import httpx
import pytest
from client_procs import EchoProcess, RecordingTransport, wait_view

from cairn.client import ServiceClient
from cairn.discovery import connect

pytestmark = pytest.mark.slow

TTL = 1.0


async def _load(
    client: ServiceClient,
    path: str,
    *,
    total: int,
    until: asyncio.Event,
    at: int,
    action: asyncio.Event,
    workers: int = 8,
    deadline: float = 25.0,
) -> tuple[collections.Counter[str], list[BaseException | int], list[tuple[float, str]]]:
    """Send requests from ``workers`` tasks until ``total`` are done and ``until`` is set.

    ``action`` is set once ``at`` requests succeeded. Returns hits per instance
    id, failures, and (time, instance id) of every answer.
    """
    hits: collections.Counter[str] = collections.Counter()
    failures: list[BaseException | int] = []
    answers: list[tuple[float, str]] = []
    done = 0
    stop_at = time.monotonic() + deadline

    async def worker() -> None:
        nonlocal done
        while (done < total or not until.is_set()) and time.monotonic() < stop_at:
            try:
                response = await client.get("echo", path)
            except Exception as exc:
                failures.append(exc)
            else:
                if response.status_code != 200:
                    failures.append(response.status_code)
                else:
                    hits[response.text] += 1
                    answers.append((time.monotonic(), response.text))
            done += 1
            if done >= at:
                action.set()

    await asyncio.gather(*(worker() for _ in range(workers)))
    assert done >= total, f"only {done} requests in {deadline}s"
    return hits, failures, answers


async def _two_instances(tmp_path: Path) -> tuple[str, EchoProcess, EchoProcess]:
    url = f"sqlite:///{tmp_path}/registry.db?poll=0.02"
    a = EchoProcess(tmp_path, url, "echo-a", ttl=TTL)
    b = EchoProcess(tmp_path, url, "echo-b", ttl=TTL)
    return url, a, b


async def test_sigkill_of_one_instance_fails_no_request(tmp_path: Path) -> None:
    url, a, b = await _two_instances(tmp_path)
    transport = RecordingTransport()
    registry = connect(url)
    try:
        view = await wait_view(registry, "echo", lambda v: len(v) == 2)
        port_a = next(i.port for i in view if i.id == "echo-a")
        http = httpx.AsyncClient(transport=transport)
        client = ServiceClient(registry, http=http)
        killed = asyncio.Event()
        long_enough = asyncio.Event()
        kill_time = 0.0

        async def killer() -> None:
            nonlocal kill_time
            await killed.wait()
            a.signal(signal.SIGKILL)
            kill_time = time.monotonic()
            # Keep the load on for 1.5 TTL after the kill: long enough to see the registry drop it.
            await wait_view(registry, "echo", lambda v: v.ids == ("echo-b",))
            await asyncio.get_running_loop().run_in_executor(None, a.proc.wait)
            await transport.sent_after(kill_time + 1.5 * TTL).wait()
            long_enough.set()

        kill = asyncio.create_task(killer())
        hits, failures, _ = await _load(
            client, "/who", total=600, until=long_enough, at=150, action=killed
        )
        await kill
        await client.aclose()
        await http.aclose()
    finally:
        await registry.aclose()
        a.stop()
        b.stop()
    assert failures == []
    assert sum(hits.values()) >= 600
    assert hits["echo-a"] > 0, hits
    assert hits["echo-b"] > 0, hits
    late = [t for t, port in transport.sent if port == port_a and t > kill_time + TTL]
    assert late == [], f"{len(late)} attempts reached the dead instance more than one TTL after"
    assert any(t > kill_time + TTL for t, _ in transport.sent)  # the load did go on
    assert len(transport.sent) > sum(hits.values())  # some attempts failed, and were retried


async def test_sigterm_drains_without_failing_a_request(tmp_path: Path) -> None:
    url, a, b = await _two_instances(tmp_path)
    registry = connect(url)
    try:
        await wait_view(registry, "echo", lambda v: len(v) == 2)
        client = ServiceClient(registry)
        term = asyncio.Event()
        exited = asyncio.Event()
        term_time = 0.0

        async def terminator() -> None:
            nonlocal term_time
            await term.wait()
            a.signal(signal.SIGTERM)
            term_time = time.monotonic()
            code = await asyncio.get_running_loop().run_in_executor(None, a.proc.wait)
            assert code in (0, -signal.SIGTERM)
            exited.set()

        stop = asyncio.create_task(terminator())
        hits, failures, answers = await _load(
            client, "/slow?ms=20", total=500, until=exited, at=100, action=term
        )
        await stop
        await client.aclose()
    finally:
        await registry.aclose()
        a.stop()
        b.stop()
    assert failures == []
    assert hits["echo-a"] > 0, hits
    assert hits["echo-b"] > 0, hits
    # It kept serving while it drained (deregistered, then drain_delay), then stopped.
    assert any(t > term_time and who == "echo-a" for t, who in answers)
    assert not any(t > term_time + 10 and who == "echo-a" for t, who in answers)
    assert "echo-a" not in (await _passing(url))


async def _passing(url: str) -> tuple[str, ...]:
    registry = connect(url)
    try:
        return (await registry.fetch("echo", passing=False)).ids
    finally:
        await registry.aclose()
