"""Cold start of ``cairn up``: from launch to every instance passing (run.json written).

    python bench/up.py [--manifest examples/shop/cairn.toml] [--runs 3] [--no-extras]

Runs ``cairn up`` on a copy of the manifest's folder (every port 0, so it
never clashes with a running one), waits for ``.cairn/run.json`` (written
once the registry, collector, dashboard and all instances are up and
passing), then sends SIGTERM and times the clean stop too. Prints the best
and median of the runs. Target: cold start <= 5 s on the 2-core machine.

Then one more run with everything on (registry, collector scraping, dashboard,
traces and logs exported): closed-loop ``GET /orders/{id}`` (each a
``db.query`` and an ``inventory.check`` calling inventory through the client's
balancer, retry and breakers) from ``--concurrency`` clients for
``--seconds``: orders→inventory requests per second and latency percentiles.
Falls back to the test fixture when the shop example is absent.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cairn.platform._supervisor import cairn_argv

ROOT = Path(__file__).resolve().parent.parent
SHOP = ROOT / "examples" / "shop" / "cairn.toml"
FIXTURE = ROOT / "tests" / "platform" / "fixtures" / "two" / "cairn.toml"


async def _closed_loop(base: str, seconds: float, concurrency: int) -> tuple[int, list[float], int]:
    import httpx

    latencies: list[float] = []
    errors = 0
    end = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=10, limits=limits, trust_env=False) as http:

        async def client(n: int) -> None:
            nonlocal errors
            i = n
            while time.perf_counter() < end:
                i = i % 200 + 1
                began = time.perf_counter()
                response = await http.get(f"{base}/orders/{i}")
                latencies.append(time.perf_counter() - began)
                if response.status_code != 200 or response.json().get("degraded"):
                    errors += 1

        await asyncio.gather(*(client(n) for n in range(concurrency)))
    return len(latencies), sorted(latencies), errors


def throughput(run_file: Path, seconds: float, concurrency: int) -> str:
    run = json.loads(run_file.read_text())
    orders = next(i["url"] for i in run["instances"] if i["service"] == "orders")
    asyncio.run(_closed_loop(orders, 1.0, concurrency))  # warm-up: connections, caches
    count, latencies, errors = asyncio.run(_closed_loop(orders, seconds, concurrency))

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000

    return (
        f"orders→inventory, everything on: {count / seconds:,.0f} requests/s "
        f"({concurrency} clients, {seconds:g} s), p50 {pct(0.5):.1f} ms, p99 {pct(0.99):.1f} ms, "
        f"errors or degraded answers {errors}"
    )


def one_run(
    manifest: Path, extras: bool, work: Callable[[Path], str] | None = None
) -> tuple[float, float, int, str]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / manifest.parent.name
        shutil.copytree(
            manifest.parent, folder, ignore=shutil.ignore_patterns(".cairn", "__pycache__")
        )
        args = ["--registry-port", "0", "--collector-port", "0", "--dashboard-port", "0"]
        if not extras:
            args += ["--no-collector", "--no-dashboard"]
        run_file = folder / ".cairn" / "run.json"
        with (folder / "up.out").open("wb") as out:
            began = time.perf_counter()
            proc = subprocess.Popen(
                [*cairn_argv(), "up", str(folder / manifest.name), "--no-status", "--quiet", *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=folder,
            )
            deadline = began + 60
            while not run_file.exists():
                if proc.poll() is not None or time.perf_counter() > deadline:
                    proc.kill()
                    raise SystemExit(
                        f"cairn up failed:\n{(folder / 'up.out').read_text(errors='replace')}"
                    )
                time.sleep(0.01)
            started = time.perf_counter() - began
            instances = len(json.loads(run_file.read_text())["instances"])
            report = work(run_file) if work is not None else ""
            stop_began = time.perf_counter()
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(60)
            stopped = time.perf_counter() - stop_began
        if code != 0:
            raise SystemExit(f"cairn up exited {code} on SIGTERM")
        return started, stopped, instances, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--manifest", type=Path, default=SHOP if SHOP.exists() else FIXTURE)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-extras", action="store_true", help="without collector/dashboard")
    parser.add_argument("--seconds", type=float, default=10.0, help="throughput run length")
    parser.add_argument("--concurrency", type=int, default=16, help="throughput clients")
    options = parser.parse_args()
    starts, stops = [], []
    for number in range(1, options.runs + 1):
        started, stopped, instances, _ = one_run(options.manifest.resolve(), not options.no_extras)
        starts.append(started)
        stops.append(stopped)
        print(
            f"run {number}: all {instances} instances passing in {started:.2f} s; stop {stopped:.2f} s"
        )
    print(
        f"cold start ({options.manifest}): best {min(starts):.2f} s, "
        f"median {statistics.median(starts):.2f} s (target <= 5 s); "
        f"stop median {statistics.median(stops):.2f} s"
    )
    sys.stdout.flush()
    if options.manifest.resolve() == SHOP.resolve():
        *_, report = one_run(
            SHOP.resolve(), True, lambda f: throughput(f, options.seconds, options.concurrency)
        )
        print(report)


if __name__ == "__main__":
    main()
