"""Benchmark of cairn.lab's linearizability checker.

Times ``check()`` (pairing, partitioning and search; parsing is timed apart)
on every shared Porcupine/Jepsen history, if the data is there, and on
generated histories of 1,000 and 10,000 operations from 5 and 10 clients, on
one key and on ten, linearizable by construction, with and without
indeterminate (crashed) operations; and on partition histories where the
isolated node's writes all time out unread, checked as shipped and with the
pruning of unread indeterminate writes turned off. Each time is the best of
``--repeat`` runs. Targets: every shared history under 1 s; 10,000 operations from 10
clients on one key under 1 s.

    .venv/bin/python bench/lab.py [--repeat 3] [--data DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from cairn.lab import (
    Call,
    CasRegisterModel,
    CheckResult,
    History,
    Op,
    check,
    random_history,
    read_history,
)

TARGET = 1.0  # seconds


def data_dir() -> Path:
    env = os.environ.get("CAIRN_TESTDATA")
    if env:
        base = Path(env)
        return base if (base / "verdicts.json").exists() else base / "porcupine"
    return Path(__file__).resolve().parents[1].parent / "shared" / "testdata" / "porcupine"


def best_of(repeat: int, run: Callable[[], CheckResult]) -> tuple[float, CheckResult]:
    best = float("inf")
    result = run()
    for _ in range(repeat):
        start = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - start)
    return best, result


def row(name: str, history: History, seconds: float, result: CheckResult, note: str = "") -> str:
    states = sum(k.states for k in result.keys)
    return (
        f"{name:<40} {len(history):>7} {result.operations:>6} {len(result.keys):>4} "
        f"{result.verdict.value:<16} {seconds * 1000:>9.1f} {states:>9}  {note}"
    )


HEADER = (
    f"{'history':<40} {'events':>7} {'ops':>6} {'keys':>4} {'verdict':<16} "
    f"{'check ms':>9} {'states':>9}"
)


def shared(repeat: int, root: Path) -> list[tuple[str, float, bool]]:
    verdicts_file = root / "verdicts.json"
    if not verdicts_file.exists():
        print(f"(shared histories skipped: no data at {root})\n")
        return []
    verdicts = json.loads(verdicts_file.read_text(encoding="utf-8"))
    print(HEADER + "  parse ms / expected")
    out = []
    total = 0.0
    for sub, files in verdicts.items():
        for name, expected in files.items():
            start = time.perf_counter()
            history = read_history(root / sub / name)
            parsed = time.perf_counter() - start
            seconds, result = best_of(repeat, partial(check, history, timeout=60))
            agrees = result.linearizable is expected
            note = f"{parsed * 1000:7.1f} / {'ok' if agrees else 'WRONG VERDICT'}"
            print(row(f"{sub}/{name}", history, seconds, result, note))
            out.append((f"{sub}/{name}", seconds, agrees))
            total += seconds
    print(f"{'all shared histories':<40} {'':>7} {'':>6} {'':>4} {'':<16} {total * 1000:>9.1f}\n")
    return out


def generated(repeat: int) -> dict[tuple[int, int, int, float, str], float]:
    print(HEADER + "  (generated: linearizable by construction)")
    times = {}
    # register: every invoke is a checked operation; cas-register: failed cas
    # are dropped (they did not happen), so fewer operations remain to check.
    cases = [
        (ops, clients, keys, lost, model)
        for model in ("register", "cas-register")
        for ops in (1_000, 10_000)
        for clients in (5, 10)
        for keys in (1, 10)
        for lost in (0.0, 0.02)
    ]
    # The kv model's appends, where every order is a new state: the hard case.
    cases += [(1_000, 5, 1, 0.0, "kv"), (1_000, 5, 10, 0.02, "kv"), (1_000, 10, 10, 0.0, "kv")]
    for ops, clients, keys, lost, model in cases:
        history = random_history(
            operations=ops, clients=clients, keys=keys, indeterminate=lost, model=model, seed=1
        )
        seconds, result = best_of(repeat, partial(check, history, timeout=60))
        name = f"{model} {ops} ops {clients}c {keys}k {lost:.0%} lost"
        print(row(name, history, seconds, result))
        times[(ops, clients, keys, lost, model)] = seconds
    print()
    return times


class Unpruned(CasRegisterModel):
    """The cas-register model with no pruning: every indeterminate write is searched."""

    def prune(self, calls: list[Call]) -> list[Call]:
        return calls


def partition_history(lost: int) -> History:
    """The isolated node's ``lost`` writes time out; the majority goes on; then a stale read."""
    ops = [Op.invoke(100 + p, "write", 1000 + p) for p in range(lost)]
    for i in range(lost):
        ops += [
            Op.invoke(0, "write", i),
            Op.invoke(1, "read"),
            Op.ok(0, "write", i),
            Op.ok(1, "read", i),
        ]
    return History([*ops, Op.invoke(2, "read"), Op.ok(2, "read", 0)])


def partitions(repeat: int) -> None:
    print(HEADER + "  (partition: unread lost writes, then a stale read)")
    for lost in (8, 10, 12, 16, 100):
        history = partition_history(lost)
        seconds, result = best_of(repeat, partial(check, history, CasRegisterModel(), timeout=60))
        print(row(f"partition {lost} lost writes", history, seconds, result))
        if lost <= 12:
            seconds, result = best_of(1, partial(check, history, Unpruned(), timeout=20))
            print(row("  the same, unpruned (limit 20 s)", history, seconds, result))
    print()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per history (best is kept)")
    parser.add_argument("--data", type=Path, default=None, help="Porcupine test-data directory")
    args = parser.parse_args()
    print(
        f"cairn.lab checker benchmark: {platform.machine()}, Python {platform.python_version()} "
        f"({platform.python_implementation()}), best of {args.repeat}\n"
    )
    shared_times = shared(args.repeat, args.data or data_dir())
    gen_times = generated(args.repeat)
    partitions(args.repeat)

    ok = True
    if shared_times:
        slowest = max(shared_times, key=lambda t: t[1])
        met = slowest[1] < TARGET and all(agrees for _, _, agrees in shared_times)
        ok &= met
        print(
            f"target: every shared history under {TARGET:.0f} s and right: "
            f"{'met' if met else 'MISSED'} (slowest {slowest[0]}, {slowest[1] * 1000:.1f} ms)"
        )
    single = gen_times[(10_000, 10, 1, 0.0, "register")]
    met = single < TARGET
    ok &= met
    print(
        f"target: 10,000 register ops from 10 clients on one key under {TARGET:.0f} s: "
        f"{'met' if met else 'MISSED'} ({single * 1000:.1f} ms)"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
