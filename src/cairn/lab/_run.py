"""One experiment: start a cluster, run the workload under the nemesis, check, measure.

:func:`run_experiment` is the engine of ``cairn lab run`` and ``compare``:

1. start the engine (the lab store in a mode, or etcd);
2. run the clients for ``duration`` seconds while the nemesis applies its
   schedule (ending healed);
3. stop the clients, wait until the replicas agree (convergence, polled
   with a deadline) and read the final values;
4. check the history for linearizability (cas-register model, per key) and
   compute the measures.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cairn.lab._checker import CheckResult, check
from cairn.lab._cluster import Engine, StoreCluster
from cairn.lab._history import History, Op, OpType
from cairn.lab._measures import Measures, measure
from cairn.lab._models import CasRegisterModel
from cairn.lab._nemesis import NEMESES, Step, run_schedule, schedule
from cairn.lab._workload import Workload, run_clients

__all__ = [
    "ENGINES",
    "MODES",
    "RunConfig",
    "RunResult",
    "final_reads",
    "make_engine",
    "run_experiment",
    "wait_converged",
]

ENGINES = ("store", "etcd")
MODES = ("cp", "ap", "ca", "cp-local-reads")


@dataclass(frozen=True, slots=True, kw_only=True)
class RunConfig:
    """An experiment: which store, which faults, how long, what load."""

    mode: str = "cp"
    engine: str = "store"
    nemesis: str = "partition-halves"
    duration: float = 10.0
    interval: float | None = None
    nodes: int = 3
    workload: Workload = field(default_factory=Workload)
    seed: int = 0
    check_timeout: float = 10.0
    converge_timeout: float = 10.0
    r: int = 1
    w: int = 1

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {self.engine!r}")
        if self.engine == "store" and self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if self.nemesis not in NEMESES:
            raise ValueError(f"nemesis must be one of {', '.join(NEMESES)}, not {self.nemesis!r}")
        if self.engine == "etcd" and self.nemesis in ("loss", "skew"):
            raise ValueError(
                f"the {self.nemesis} nemesis needs the lab store (etcd's peer traffic is a byte "
                "stream that cannot lose single messages, and etcd ignores wall clocks)"
            )
        if not 0 < self.duration <= 3600:
            raise ValueError(f"duration must be in (0, 3600] seconds, not {self.duration}")

    @property
    def label(self) -> str:
        """``etcd`` or the store mode."""
        return "etcd" if self.engine == "etcd" else self.mode


@dataclass(frozen=True, slots=True)
class RunResult:
    """What a run produced: the history, the checker's verdict, the measures, the schedule."""

    config: RunConfig
    history: History
    check: CheckResult
    measures: Measures
    steps: tuple[Step, ...]
    started: int
    ended: int
    final: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        """Verdict and measures as JSON-ready data."""
        return {
            "mode": self.config.label,
            "nemesis": self.config.nemesis,
            "duration": self.config.duration,
            "nodes": self.config.nodes if self.config.mode != "ca" else 1,
            "clients": self.config.workload.clients,
            "keys": self.config.workload.keys,
            "seed": self.config.seed,
            "verdict": self.check.verdict.value,
            "check": self.check.to_dict(),
            "measures": self.measures.to_dict(),
        }


def make_engine(config: RunConfig, data: Path) -> Engine:
    """The engine a config names, not yet started."""
    if config.engine == "etcd":
        from cairn.lab._etcd import EtcdCluster

        return EtcdCluster(nodes=config.nodes, data=data, seed=config.seed)
    return StoreCluster(
        config.mode, nodes=config.nodes, data=data, seed=config.seed, r=config.r, w=config.w
    )


async def wait_converged(engine: Engine, *, timeout: float) -> tuple[bool | None, float | None]:
    """Poll until every node holds the same values: ``(converged, seconds)``.

    ``(None, None)`` if the engine cannot show its nodes' states.
    """
    start = time.monotonic()
    deadline = start + timeout
    while True:
        states = await engine.states()
        if states is None:
            return None, None
        values = list(states.values())
        if len(states) == len(engine.nodes) and all(v == values[0] for v in values):
            return True, time.monotonic() - start
        if time.monotonic() >= deadline:
            return False, None
        await asyncio.sleep(0.02)  # a poll interval, with a deadline above


async def final_reads(
    engine: Engine, keys: list[str], *, timeout: float = 10.0
) -> dict[str, Any] | None:
    """Each key's value as a read through the store says, or ``None`` if it would not say.

    Right after the faults heal a quorum store may still be electing a
    leader and refuse reads at once, so each key is asked of every node in
    turn until one answers or ``timeout`` seconds have passed.
    """
    deadline = time.monotonic() + timeout
    final: dict[str, Any] = {}
    for key in keys:
        while key not in final:
            for node in engine.nodes:
                reply = await engine.op(node, "read", key, None, timeout=2.0)
                if reply.type is OpType.OK:
                    final[key] = reply.value
                    break
            else:
                if time.monotonic() >= deadline:
                    return None
                await asyncio.sleep(0.05)  # a poll interval, with a deadline above
    return final


async def run_experiment(config: RunConfig, *, data: Path) -> RunResult:
    """Run ``config``'s experiment, keeping the replicas' files under ``data``."""
    ops: list[Op] = []
    steps = schedule(
        config.nemesis,
        nodes=list(range(1, (1 if config.mode == "ca" else config.nodes) + 1)),
        duration=config.duration,
        interval=config.interval,
        seed=config.seed,
    )
    async with make_engine(config, data) as engine:
        stop = asyncio.Event()
        started = time.monotonic_ns()
        clients = asyncio.create_task(
            run_clients(engine, config.workload, record=ops.append, stop=stop)
        )
        nemesis = asyncio.create_task(
            run_schedule(engine, steps, started=started, record=ops.append, stop=stop)
        )
        try:
            await asyncio.wait_for(asyncio.shield(clients), config.duration)
        except TimeoutError:
            pass
        finally:
            stop.set()
            await asyncio.gather(clients, nemesis, return_exceptions=True)
        for task in (clients, nemesis):
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        ended = time.monotonic_ns()
        converged: bool | None = None
        seconds: float | None = None
        if config.label == "ap":
            converged, seconds = await wait_converged(engine, timeout=config.converge_timeout)
            states = await engine.states() if converged else None
            final = next(iter(states.values())) if states else None
        else:
            # A quorum store's replicas need not hold the same bytes: ask the store.
            final = await final_reads(
                engine, config.workload.key_names(), timeout=config.converge_timeout
            )
    history = History(ops, source=f"{config.label} run")
    result = check(history, CasRegisterModel(), timeout=config.check_timeout)
    measures = measure(history, final=final, converged=converged, convergence_time=seconds)
    return RunResult(config, history, result, measures, tuple(steps), started, ended, final)
