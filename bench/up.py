"""Cold start of ``cairn up``: from launch to every instance passing (run.json written).

    python bench/up.py [--manifest examples/shop/cairn.toml] [--runs 3] [--no-extras]

Runs ``cairn up`` on a copy of the manifest's folder (every port 0, so it
never clashes with a running one), waits for ``.cairn/run.json`` (written
once the registry, collector, dashboard and all instances are up and
passing), then sends SIGTERM and times the clean stop too. Prints the best
and median of the runs. Target: cold start <= 5 s on the 2-core machine.
Falls back to the test fixture when the shop example is absent.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cairn.platform._supervisor import cairn_argv

ROOT = Path(__file__).resolve().parent.parent
SHOP = ROOT / "examples" / "shop" / "cairn.toml"
FIXTURE = ROOT / "tests" / "platform" / "fixtures" / "two" / "cairn.toml"


def one_run(manifest: Path, extras: bool) -> tuple[float, float, int]:
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
            stop_began = time.perf_counter()
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(60)
            stopped = time.perf_counter() - stop_began
        if code != 0:
            raise SystemExit(f"cairn up exited {code} on SIGTERM")
        return started, stopped, instances


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--manifest", type=Path, default=SHOP if SHOP.exists() else FIXTURE)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-extras", action="store_true", help="without collector/dashboard")
    options = parser.parse_args()
    starts, stops = [], []
    for number in range(1, options.runs + 1):
        started, stopped, instances = one_run(options.manifest.resolve(), not options.no_extras)
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


if __name__ == "__main__":
    main()
