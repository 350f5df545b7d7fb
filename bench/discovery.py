"""Discovery speed: cached lookups, register-to-visible, kill-to-gone, per backend.

Run: ``.venv/bin/python bench/discovery.py [--quick]``.

- **cached lookup**: ``await registry.instances(service)`` (and the sync
  ``registry.cached(service)``) once the service is watched, in a tight loop.
  Target: <= 2 us per lookup.
- **register-to-visible**: a writer registers a new instance; a *separate*
  registry object (its own connection, as another process would have) is
  watching; measured until its watch yields a set containing the instance.
- **kill-to-gone**: a child process registers with a TTL check (``--ttl``)
  and heartbeats every ttl/4; it is SIGKILLed; measured until the watcher's
  passing set no longer holds it. Expect about one TTL plus detection.

Backends: ``sqlite`` (embedded file), ``server`` (the Consul backend against
``cairn registry serve`` in a subprocess), ``etcd`` (a real etcd on
127.0.0.1, if the binary is installed). Every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from cairn.discovery import Instance, Registry, connect

CHILD = """
import asyncio, sys
from cairn.discovery import Instance, TTLCheck, connect

async def main(url, ttl):
    registry = connect(url)
    await registry.register(Instance("victim", "victim-1", "127.0.0.1", 9, check=TTLCheck(ttl=ttl)))
    print("ready", flush=True)
    while True:
        await registry.heartbeat("victim-1")
        await asyncio.sleep(ttl / 4)

asyncio.run(main(sys.argv[1], float(sys.argv[2])))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)


def _answers(url: str, path: str, **kwargs: Any) -> bool:
    try:
        return (
            httpx.request(kwargs.pop("method", "GET"), url + path, timeout=1, **kwargs).status_code
            == 200
        )
    except httpx.HTTPError:
        return False


@contextmanager
def backend(name: str, workdir: str) -> Iterator[str | None]:
    """Start what the backend needs; yield its registry URL (None: unavailable)."""
    if name == "sqlite":
        yield f"sqlite:///{workdir}/registry.db?poll=0.05"
        return
    if name == "server":
        port = _free_port()
        cmd = [sys.executable, "-c", "from cairn.discovery._cli import registry; registry()"]
        proc = subprocess.Popen([*cmd, "serve", "--port", str(port)], stderr=subprocess.DEVNULL)
        try:
            _wait(
                lambda: _answers(f"http://127.0.0.1:{port}", "/v1/status/leader"),
                20,
                "the registry server",
            )
            yield f"consul://127.0.0.1:{port}?wait=30"
        finally:
            proc.terminate()
            proc.wait(timeout=10)
        return
    etcd = shutil.which("etcd")
    if etcd is None:
        yield None
        return
    client, peer = _free_port(), _free_port()
    url, peer_url = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
    proc = subprocess.Popen(
        [
            etcd, "--name=bench", f"--data-dir={workdir}/etcd", f"--listen-client-urls={url}",
            f"--advertise-client-urls={url}", f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}", f"--initial-cluster=bench={peer_url}",
            "--heartbeat-interval=10", "--election-timeout=100",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        _wait(
            lambda: _answers(url, "/v3/kv/range", method="POST", json={"key": "eA=="}), 30, "etcd"
        )
        yield f"etcd://127.0.0.1:{client}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def _until(
    registry: Registry, service: str, predicate: Callable[[Any], bool], timeout: float
) -> float:
    async with asyncio.timeout(timeout):
        async for view in registry.watch(service):
            if predicate(view):
                return time.perf_counter()
    raise AssertionError("unreachable")


async def cached_lookup(n: int) -> dict[str, float]:
    registry = connect("sqlite://")
    try:
        for i in range(8):
            await registry.register(
                Instance("users", f"u{i}", "10.0.0.1", 8000 + i, tags=("blue",))
            )
        await registry.instances("users")
        await registry.instances("users", tags=("blue",))
        results: dict[str, float] = {}
        for label, call in (
            ("instances()", lambda: registry.instances("users")),
            ("instances(tags=('blue',))", lambda: registry.instances("users", tags=("blue",))),
        ):
            best = float("inf")
            for _ in range(5):
                start = time.perf_counter()
                for _ in range(n):
                    await call()
                best = min(best, (time.perf_counter() - start) / n)
            results[f"await {label}"] = best
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(n):
                registry.cached("users")
            best = min(best, (time.perf_counter() - start) / n)
        results["cached() (sync)"] = best
        return results
    finally:
        await registry.aclose()


async def register_to_visible(url: str, rounds: int) -> list[float]:
    writer, reader = connect(url), connect(url)
    samples: list[float] = []
    try:
        await reader.instances("fresh")
        for r in range(rounds):
            iid = f"fresh-{r}"
            watch = asyncio.ensure_future(
                _until(reader, "fresh", lambda v, iid=iid: iid in v.ids, 30)
            )
            # Let the watch park on its blocking query, at a random phase of any poll.
            await asyncio.sleep(0.05 + random.random() * 0.1)
            start = time.perf_counter()
            await writer.register(Instance("fresh", iid, "127.0.0.1", 9))
            samples.append(await watch - start)
    finally:
        await writer.aclose()
        await reader.aclose()
    return samples


async def kill_to_gone(url: str, ttl: float, rounds: int) -> list[float]:
    samples: list[float] = []
    reader = connect(url)
    try:
        for _ in range(rounds):
            # Popen returns at once; only reading its pipe blocks, and that runs in a thread.
            child = subprocess.Popen(  # noqa: ASYNC220
                [sys.executable, "-c", CHILD, url, str(ttl)], stdout=subprocess.PIPE, text=True
            )
            try:
                assert child.stdout is not None
                line = await asyncio.wait_for(asyncio.to_thread(child.stdout.readline), 30)
                assert line.strip() == "ready", line
                await _until(reader, "victim", lambda v: "victim-1" in v.ids, 30)
                # Let a few heartbeats land so the kill does not race the first one.
                await asyncio.sleep(ttl / 2)
                start = time.perf_counter()
                os.kill(child.pid, signal.SIGKILL)
                samples.append(
                    await _until(reader, "victim", lambda v: "victim-1" not in v.ids, 30) - start
                )
            finally:
                child.kill()
                child.wait()
                if child.stdout:
                    child.stdout.close()
            writer = connect(url)
            await writer.deregister("victim-1")
            await writer.aclose()
    finally:
        await reader.aclose()
    return samples


def _fmt(samples: list[float]) -> str:
    ms = [s * 1000 for s in samples]
    return f"median {statistics.median(ms):7.1f} ms  (min {min(ms):.1f}, max {max(ms):.1f}, n={len(ms)})"


async def run(args: argparse.Namespace) -> None:
    n = 20_000 if args.quick else 200_000
    print(f"cached lookups (best of 5 x {n:,}; target <= 2 us):")
    for label, seconds in (await cached_lookup(n)).items():
        print(f"  {label:32s} {seconds * 1e9:7.0f} ns")
    rounds = 3 if args.quick else 10
    kills = 2 if args.quick else 5
    with tempfile.TemporaryDirectory(prefix="cairn-bench-") as workdir:
        for name in args.backends:
            with backend(name, workdir) as url:
                if url is None:
                    print(f"{name}: skipped (etcd not installed)")
                    continue
                # Every wait inside is bounded; this bounds the whole, too.
                visible = await asyncio.wait_for(register_to_visible(url, rounds), 120)
                gone = await asyncio.wait_for(kill_to_gone(url, args.ttl, kills), 120)
                print(f"{name}:")
                print(f"  register-to-visible  {_fmt(visible)}")
                print(f"  kill-to-gone (ttl {args.ttl:g}s)  {_fmt(gone)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run, noisy)")
    parser.add_argument(
        "--backends",
        nargs="+",
        default=["sqlite", "server", "etcd"],
        choices=["sqlite", "server", "etcd"],
    )
    parser.add_argument(
        "--ttl", type=float, default=1.0, help="TTL of the killed instance (seconds)"
    )
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
