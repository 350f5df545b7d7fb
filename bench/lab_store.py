"""Benchmark of the lab store's throughput per mode, beside a real etcd's, in the same run.

Each engine runs on this machine (127.0.0.1, replica-to-replica traffic
through the lab's proxies, no faults) while ``--clients`` closed-loop
clients (each sends its next operation as soon as the last one answers),
bound round-robin to the nodes, do reads and writes (half each) on
``--keys`` keys for ``--seconds`` seconds. Reported: ok operations per
second and latency percentiles. etcd is skipped when its program is absent.

The numbers say what the lab can push, not what the protocols can: a
Python replica is one process on a shared 2-core box, and etcd's peer
traffic crosses a Python proxy too.

    .venv/bin/python bench/lab_store.py [--seconds 3] [--clients 8] [--keys 3]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import tempfile
import time
from pathlib import Path

from cairn.lab._cluster import Engine, StoreCluster
from cairn.lab._etcd import EtcdCluster, etcd_program
from cairn.lab._history import OpType


async def load(
    engine: Engine, *, seconds: float, clients: int, keys: int
) -> tuple[int, int, list[float]]:
    stop = time.monotonic() + seconds
    latencies: list[float] = []
    counts = [0, 0]  # ok, not ok

    async def client(i: int) -> None:
        node = engine.nodes[i % len(engine.nodes)]
        n = 0
        while time.monotonic() < stop:
            n += 1
            f = "read" if n % 2 else "write"
            start = time.perf_counter()
            reply = await engine.op(node, f, f"k{n % keys}", i * 1_000_000 + n, timeout=2.0)
            latencies.append(time.perf_counter() - start)
            counts[reply.type is not OpType.OK] += 1

    await asyncio.gather(*(client(i) for i in range(clients)))
    return counts[0], counts[1], latencies


async def bench(name: str, engine: Engine, args: argparse.Namespace) -> None:
    async with engine:
        await load(engine, seconds=min(0.5, args.seconds), clients=args.clients, keys=args.keys)
        ok, bad, lat = await load(
            engine, seconds=args.seconds, clients=args.clients, keys=args.keys
        )
    lat.sort()
    p50 = statistics.median(lat) * 1000
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000
    print(f"{name:<8} {ok / args.seconds:>10.0f} {bad:>8} {p50:>9.2f} {p99:>9.2f}")


async def main_async(args: argparse.Namespace) -> None:
    print(f"{'engine':<8} {'ok ops/s':>10} {'not ok':>8} {'p50 ms':>9} {'p99 ms':>9}")
    for mode in ("ca", "cp", "ap"):
        with tempfile.TemporaryDirectory() as data:
            await bench(mode, StoreCluster(mode, nodes=args.nodes, data=Path(data)), args)
    if etcd_program() is None:
        print("etcd     (skipped: the etcd program is not installed; apt-get install etcd-server)")
        return
    with tempfile.TemporaryDirectory() as data:
        await bench("etcd", EtcdCluster(nodes=args.nodes, data=Path(data)), args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--keys", type=int, default=3)
    parser.add_argument("--nodes", type=int, default=3)
    args = parser.parse_args()
    print(
        f"cairn lab store throughput: {platform.machine()}, Python {platform.python_version()}, "
        f"{args.nodes} nodes, {args.clients} closed-loop clients, {args.keys} keys, "
        f"{args.seconds:.0f} s each\n"
    )
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
