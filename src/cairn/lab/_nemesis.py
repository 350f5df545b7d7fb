"""The nemesis: faults on a schedule, recorded in the history as Jepsen does.

A schedule alternates calm and fault windows of ``interval`` seconds,
starting calm: ``[0, i)`` calm, ``[i, 2i)`` fault, ``[2i, 3i)`` calm, ...
By default ``i`` is a quarter of the run, so the last fault lasts until the
clients stop; the cluster is then healed, and the runner measures how long
the replicas take to converge. Each window draws its victims from a seeded random
generator, so two runs with the same seed (``cairn lab compare``) suffer the
same faults at the same moments.

Faults (``NEMESES``):

- ``partition-halves``: two halves, the smaller one a minority;
- ``isolate-one``: one node alone;
- ``majorities-ring``: every node sees a majority, but each a different one
  (Jepsen's ring: directed links, so node views differ);
- ``bridge``: two halves joined through one node that sees both;
- ``kill``: SIGKILL one node, restart it when the window ends;
- ``latency``: every link slowed by ``latency`` seconds;
- ``loss``: every link drops a ``loss`` share of its messages;
- ``skew``: one node's clock runs ``skew`` seconds ahead (the AP store's
  last-writer-wins feels it; the cp store and etcd do not use wall clocks);
- ``none``: no fault.

The nemesis writes ``info`` events of the process ``"nemesis"`` (which the
checker ignores) with ``f`` ``start-<fault>``/``stop-<fault>`` and a value
naming the victims, e.g. ``[[1], [2, 3]]`` for a partition.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from cairn.lab._cluster import Engine
from cairn.lab._history import Op, Value
from cairn.lab._net import Link

__all__ = ["NEMESES", "PARTITIONS", "Fault", "Step", "apply", "grudge", "run_schedule", "schedule"]

PARTITIONS = ("partition-halves", "isolate-one", "majorities-ring", "bridge")
NEMESES = ("none", *PARTITIONS, "kill", "latency", "loss", "skew")
"""The nemesis names ``cairn lab run --nemesis`` accepts."""


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault: its ``kind`` (a nemesis name), the links it cuts, the nodes it hits."""

    kind: str
    cut: frozenset[Link] = frozenset()
    nodes: tuple[int, ...] = ()
    groups: tuple[tuple[int, ...], ...] = ()
    amount: float = 0.0

    @property
    def description(self) -> Value:
        """What the history records as the fault's value."""
        if self.groups:
            return self.groups
        if self.kind in ("kill", "skew"):
            return self.nodes
        return self.amount


@dataclass(frozen=True, slots=True)
class Step:
    """At ``at`` seconds into the run, ``start`` or stop ``fault``."""

    at: float
    start: bool
    fault: Fault


def _cut_between(groups: list[list[int]]) -> set[Link]:
    cut: set[Link] = set()
    for i, left in enumerate(groups):
        for right in groups[i + 1 :]:
            for a in left:
                for b in right:
                    cut |= {(a, b), (b, a)}
    return cut


def grudge(kind: str, nodes: list[int], rng: random.Random) -> Fault:
    """A random partition of ``nodes`` of the given ``kind`` (one of the partition nemeses)."""
    order = list(nodes)
    rng.shuffle(order)
    n = len(order)
    if kind == "partition-halves":
        groups = [sorted(order[: n // 2]), sorted(order[n // 2 :])]
        return Fault(kind, frozenset(_cut_between(groups)), groups=_frozen(groups))
    if kind == "isolate-one":
        groups = [[order[0]], sorted(order[1:])]
        return Fault(kind, frozenset(_cut_between(groups)), groups=_frozen(groups))
    if kind == "bridge":
        left, bridge, right = order[: n // 2], order[n // 2], order[n // 2 + 1 :]
        cut = _cut_between([left, right])
        groups = [sorted(left), [bridge], sorted(right)]
        return Fault(kind, frozenset(cut), nodes=(bridge,), groups=_frozen(groups))
    if kind == "majorities-ring":
        # Each node hears from the majority centred on it in a shuffled ring.
        size = n // 2 + 1
        offsets = range(-((size - 1) // 2), size - (size - 1) // 2)
        cut = set()
        views = []
        for p, node in enumerate(order):
            hears = {order[(p + d) % n] for d in offsets}
            views.append(sorted(hears))
            cut |= {(other, node) for other in order if other not in hears}
        return Fault(kind, frozenset(cut), groups=_frozen(views))
    raise ValueError(f"{kind!r} is not a partition; choose one of {', '.join(PARTITIONS)}")


def _frozen(groups: list[list[int]]) -> tuple[tuple[int, ...], ...]:
    return tuple(tuple(g) for g in groups)


def schedule(
    nemesis: str,
    *,
    nodes: list[int],
    duration: float,
    interval: float | None = None,
    seed: int = 0,
    latency: float = 0.05,
    loss: float = 0.2,
    skew: float = 5.0,
) -> list[Step]:
    """The fault schedule of a run: alternating calm and fault windows, ending healed.

    ``interval`` defaults to a quarter of ``duration`` (two fault windows, the
    second ending with the run).
    """
    if nemesis not in NEMESES:
        raise ValueError(f"unknown nemesis {nemesis!r}; choose one of {', '.join(NEMESES)}")
    if not duration > 0:
        raise ValueError(f"duration must be positive, not {duration!r}")
    step = duration / 4 if interval is None else interval
    if not step > 0:
        raise ValueError(f"interval must be positive, not {interval!r}")
    if nemesis == "none":
        return []
    rng = random.Random(seed)
    steps: list[Step] = []
    at = step
    while at + step <= duration + 1e-9:
        fault = _draw(nemesis, nodes, rng, latency=latency, loss=loss, skew=skew)
        steps += [Step(at, True, fault), Step(at + step, False, fault)]
        at += 2 * step
    return steps


def _draw(
    nemesis: str, nodes: list[int], rng: random.Random, *, latency: float, loss: float, skew: float
) -> Fault:
    if nemesis in PARTITIONS:
        return grudge(nemesis, nodes, rng)
    if nemesis in ("kill", "skew"):
        return Fault(nemesis, nodes=(rng.choice(nodes),), amount=skew if nemesis == "skew" else 0)
    return Fault(nemesis, amount=latency if nemesis == "latency" else loss)


async def apply(engine: Engine, step: Step) -> None:
    """Start or stop ``step``'s fault on ``engine``."""
    fault = step.fault
    kind = fault.kind
    if kind in PARTITIONS:
        engine.partition(set(fault.cut) if step.start else set())
    elif kind == "kill":
        for node in fault.nodes:
            await (engine.kill(node) if step.start else engine.restart(node))
    elif kind == "latency":
        engine.network.slow(fault.amount if step.start else 0.0)
    elif kind == "loss":
        engine.network.lossy(fault.amount if step.start else 0.0)
    elif kind == "skew":
        for node in fault.nodes:
            await engine.skew(node, int(fault.amount * 1000) if step.start else 0)


async def run_schedule(
    engine: Engine,
    steps: list[Step],
    *,
    started: int,
    record: Callable[[Op], None],
    stop: asyncio.Event,
) -> None:
    """Apply ``steps`` at their times after ``started`` (``time.monotonic_ns``), recording each.

    Returns early, healed, when ``stop`` is set.
    """
    active: Step | None = None
    try:
        for step in steps:
            due = started / 1e9 + step.at
            try:
                await asyncio.wait_for(stop.wait(), max(0.0, due - time.monotonic()))
                return
            except TimeoutError:
                pass
            _record(record, step)
            await apply(engine, step)
            active = step if step.start else None
    finally:
        # Whatever happened, leave the cluster whole, and say so in the history.
        if active is not None:
            end = Step(active.at, False, active.fault)
            _record(record, end)
            await apply(engine, end)


def _record(record: Callable[[Op], None], step: Step) -> None:
    verb = "start" if step.start else "stop"
    f = f"{verb}-{step.fault.kind}"
    record(Op.info("nemesis", f, step.fault.description, time=time.monotonic_ns()))
