"""The workload: concurrent clients doing reads, writes and CAS, recorded as a history.

Client ``i`` talks to node ``nodes[i % n]`` (as Jepsen binds clients to
nodes) and runs one operation at a time on a random key. Every write and
every cas writes a value no other operation writes, so the measures can tell
which write a read saw. Each operation is an ``invoke`` and then:

- ``ok`` with the value read (or the value written, the cas pair);
- ``fail`` when the store said it certainly did not happen (``unavailable``,
  a cas that did not match, a refused connection) -- and for a read that got
  no answer, since a read changes nothing;
- ``info`` for a write or cas with no definite answer (a timeout, a lost
  connection): it may have happened. As in Jepsen, the client then carries on
  as a new process (``process + clients``), since the old one may still be
  running its operation.

Failed and indeterminate completions carry the error as their value; the
checker ignores it.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cairn.lab._cluster import Engine
from cairn.lab._history import Op, OpType, freeze

__all__ = ["Workload", "run_clients"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Workload:
    """What the clients do: how many, on how many keys, how fast, and the op mix."""

    clients: int = 5
    keys: int = 3
    rate: float = 50.0
    """Operations per second, all clients together (each paces itself at random)."""
    timeout: float = 1.0
    """Seconds a client waits for an answer before recording ``info``."""
    reads: float = 0.5
    writes: float = 0.3
    """The rest of the mix is cas."""
    seed: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.clients <= 100:
            raise ValueError(f"clients must be between 1 and 100, not {self.clients}")
        if not 1 <= self.keys <= 100:
            raise ValueError(f"keys must be between 1 and 100, not {self.keys}")
        if not 0 < self.rate <= 10_000:
            raise ValueError(f"rate must be in (0, 10000] operations per second, not {self.rate}")
        if not 0 < self.timeout <= 60:
            raise ValueError(f"timeout must be in (0, 60] seconds, not {self.timeout}")
        if not (self.reads >= 0 and self.writes >= 0 and self.reads + self.writes <= 1):
            raise ValueError("reads and writes are shares: each >= 0, together <= 1")

    def key_names(self) -> list[str]:
        """The keys the clients use."""
        return [f"k{i}" for i in range(self.keys)]


async def run_clients(
    engine: Engine,
    workload: Workload,
    *,
    record: Callable[[Op], None],
    stop: asyncio.Event,
) -> None:
    """Run ``workload.clients`` clients against ``engine`` until ``stop`` is set."""
    values = itertools.count(1)
    keys = workload.key_names()

    async def client(i: int) -> None:
        rng = random.Random(workload.seed * 1000 + i)
        node = engine.nodes[i % len(engine.nodes)]
        process = i
        known: dict[str, Any] = {}
        pause = workload.clients / workload.rate
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), rng.uniform(0, 2 * pause))
                return
            except TimeoutError:
                pass
            key = rng.choice(keys)
            roll = rng.random()
            f = "read"
            arg: Any = None
            if roll >= workload.reads + workload.writes:
                f, arg = "cas", (known.get(key), next(values))
            elif roll >= workload.reads:
                f, arg = "write", next(values)
            record(Op.invoke(process, f, arg, key=key, time=time.monotonic_ns()))
            reply = await engine.op(
                node, f, key, list(arg) if f == "cas" else arg, timeout=workload.timeout
            )
            kind = reply.type
            if kind is OpType.INFO and f == "read":
                kind = OpType.FAIL
            value: Any = reply.error
            if kind is OpType.OK:
                value = reply.value if f == "read" else arg
                known[key] = arg[1] if f == "cas" else value
            record(Op(process, kind, f, key, freeze(value), time.monotonic_ns()))
            if kind is OpType.INFO:
                process += workload.clients

    await asyncio.gather(*(client(i) for i in range(workload.clients)))
