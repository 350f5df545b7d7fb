"""Service client benchmarks: cached resolve+pick, and per-request overhead over plain httpx.

    python bench/client.py [--quick]

1. resolve+pick: ``registry.cached(name)`` plus the client's pick (round
   robin, breakers and outlier detection on, three instances). Target <= 2 µs.
2. overhead: sequential GETs to a local uvicorn server (another process),
   bare ``httpx.AsyncClient.get(url)`` against ``ServiceClient.get(name, path)``
   with the default pipeline; blocks of 50 requests alternate, and the
   medians of the blocks' mean times are compared. Target
   <= 15 % of a bare request's time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from cairn.client import ServiceClient
from cairn.discovery import Instance, SQLiteRegistry

SERVER = """
import sys, uvicorn
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="error", access_log=False)
"""


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def bench_pick(rounds: int) -> float:
    registry = SQLiteRegistry(":memory:")
    for n in range(3):
        await registry.register(Instance("svc", f"svc-{n}", "127.0.0.1", 9000 + n))
    client = ServiceClient(registry)
    await registry.instances("svc")
    state = client._state("svc")
    options = client.defaults
    cached = registry.cached
    pick = state.pick
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(rounds):
            view = cached("svc", tags=())
            assert view is not None
            pick(view, (), options, None)
        best = min(best, (time.perf_counter() - start) / rounds)
    await client.aclose()
    await registry.aclose()
    return best * 1e6


async def bench_overhead(requests: int, rounds: int) -> tuple[float, float]:
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port)])  # noqa: ASYNC220
    url = f"http://127.0.0.1:{port}/"
    try:
        async with httpx.AsyncClient() as bare:
            for _ in range(200):  # wait for the server to listen, bounded
                try:
                    await bare.get(url)
                    break
                except httpx.ConnectError:
                    await asyncio.sleep(0.05)
            with tempfile.TemporaryDirectory() as tmp:
                registry = SQLiteRegistry(Path(tmp) / "registry.db")
                await registry.register(Instance("svc", "svc-1", "127.0.0.1", port))
                client = ServiceClient(registry)
                bare_times: list[float] = []
                client_times: list[float] = []
                for _ in range(50):  # warm both connection pools
                    await bare.get(url)
                    await client.get("svc", "/")
                for _ in range(rounds):
                    start = time.perf_counter()
                    for _ in range(requests):
                        await bare.get(url)
                    bare_times.append((time.perf_counter() - start) / requests)
                    start = time.perf_counter()
                    for _ in range(requests):
                        await client.get("svc", "/")
                    client_times.append((time.perf_counter() - start) / requests)
                await client.aclose()
                await registry.aclose()
    finally:
        server.terminate()
        server.wait(timeout=10)
    return statistics.median(bare_times) * 1e6, statistics.median(client_times) * 1e6


async def main(quick: bool) -> None:
    pick = await bench_pick(20_000 if quick else 200_000)
    print(f"cached resolve+pick: {pick:.2f} µs (target <= 2 µs)")
    # Short alternating blocks: a busy neighbour on the machine slows both sides alike.
    bare, client = await bench_overhead(50, 20 if quick else 100)
    overhead = client - bare
    print(
        f"GET, local uvicorn: bare httpx {bare:.0f} µs, ServiceClient {client:.0f} µs: "
        f"overhead {overhead:.0f} µs = {100 * overhead / bare:.1f} % (target <= 15 %)"
    )
    print(f"(Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, httpx {httpx.__version__})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    asyncio.run(main(parser.parse_args().quick))
