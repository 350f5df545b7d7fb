"""The ``ap`` store: last-writer-wins registers on hybrid logical clocks.

Any replica that a client reaches accepts its write: it stamps the value
with its HLC, stores it, answers, and replicates in the background. So the
store stays available on both sides of a partition, and diverges there.

- **Replication**: each replica keeps, per peer, the newest not-yet-delivered
  value of each key (a *hint*) and pushes hints until the peer acknowledges
  them. A cut peer's hints wait for the heal (hinted handoff, kept by the
  coordinator, as Cassandra does).
- **Anti-entropy**: every ``sync_every`` seconds a replica swaps its whole
  state with one random peer (push-pull), which repairs whatever the hints
  missed (a restarted replica, dropped messages).
- **Merge**: the higher ``(wall, logical, node)`` timestamp wins, on every
  replica alike, so all replicas converge to the same value once they have
  exchanged states.

What LWW loses: of two writes to one key that do not know of each other
(written on the two sides of a partition), the one with the lower timestamp
disappears on merge although both were acknowledged; a ``cas`` checks only
the local value, so both sides can swap from the same value. With a
replica's clock running ahead (``skew``), its writes win over later writes
elsewhere until the others' clocks catch up. ``r`` and ``w`` (how many
replicas a read asks and a write waits for) move the store toward
consistency, but only ``r + w > n`` without partitions, and never for cas.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from pathlib import Path
from typing import Any

from cairn.lab._hlc import HLC, Timestamp
from cairn.lab._peers import Peers, fail, ok
from cairn.lab._wire import Message

__all__ = ["LwwStore"]

_ZERO: Timestamp = (0, 0, 0)


class LwwStore:
    """A replica of the ap store."""

    def __init__(
        self,
        peers: Peers,
        *,
        data: Path | None = None,
        timeout: float = 0.5,
        sync_every: float = 0.2,
        r: int = 1,
        w: int = 1,
    ) -> None:
        self.peers = peers
        self.timeout = timeout
        self.sync_every = sync_every
        self.r = r
        self.w = w
        self.hlc = HLC(peers.node)
        self._data: dict[str, tuple[Any, Timestamp]] = {}
        self._file = None if data is None else data / f"lww-{peers.node}.json"
        if self._file is not None and self._file.exists():
            saved = json.loads(self._file.read_text(encoding="utf-8"))
            self.merge(saved)
        self._hints: dict[int, dict[str, tuple[Any, Timestamp]]] = {p: {} for p in peers.ids}
        self._wake = {p: asyncio.Event() for p in peers.ids}
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """Start the background replication and anti-entropy tasks."""
        self._tasks = [asyncio.create_task(self._deliver(p)) for p in self.peers.ids]
        if self.peers.ids:
            self._tasks.append(asyncio.create_task(self._anti_entropy()))

    async def stop(self) -> None:
        """Stop the background tasks."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def merge(self, entries: list[list[Any]]) -> None:
        """Fold in ``[key, value, timestamp]`` entries: the highest timestamp wins."""
        changed = False
        for key, value, raw in entries:
            ts: Timestamp = (int(raw[0]), int(raw[1]), int(raw[2]))
            self.hlc.observe(ts)
            if ts > self._data.get(key, (None, _ZERO))[1]:
                self._data[key] = (value, ts)
                changed = True
        if changed:
            self._save()

    def _save(self) -> None:
        # As in the cp store: a killed replica restarts with what it had acknowledged.
        if self._file is not None:
            tmp = self._file.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.entries()), encoding="utf-8")
            os.replace(tmp, self._file)

    def entries(self) -> list[list[Any]]:
        """The whole state as ``[key, value, timestamp]`` entries."""
        return [[key, value, list(ts)] for key, (value, ts) in self._data.items()]

    def dump(self) -> dict[str, Any]:
        """Every key's local value."""
        return {key: value for key, (value, _) in self._data.items()}

    async def on_peer(self, message: Message) -> Message:
        """Answer another replica: replicated values, an anti-entropy swap, or a read."""
        kind = message["type"]
        if kind == "get":
            value, ts = self._data.get(message["key"], (None, _ZERO))
            return {"ok": True, "value": value, "ts": list(ts)}
        self.merge(message["entries"])
        if kind == "sync":
            return {"ok": True, "entries": self.entries()}
        return {"ok": True}

    async def execute(self, op: str, key: str, arg: Any) -> Message:
        """Serve a client's read, write or cas [from, to] on ``key``."""
        if op == "read":
            return await self._read(key)
        if op == "cas":
            expected, new = arg
            if self._data.get(key, (None, _ZERO))[0] != expected:
                return fail("mismatch", definite=True)
            arg = new
        ts = self.hlc.now()
        self._data[key] = (arg, ts)
        self._save()
        for peer in self.peers.ids:
            self._hints[peer][key] = (arg, ts)
            self._wake[peer].set()
        if self.w > 1:
            acks = await self.peers.gather(
                {"type": "replicate", "entries": [[key, arg, list(ts)]]},
                local={"ok": True},
                timeout=self.timeout,
                enough=lambda got: len(got) >= self.w,
            )
            if len(acks) < self.w:
                # Stored here and on its way: it may well survive, so not a definite failure.
                return fail("indeterminate", definite=False)
        return ok(new if op == "cas" else arg)

    async def _read(self, key: str) -> Message:
        value, ts = self._data.get(key, (None, _ZERO))
        if self.r <= 1:
            return ok(value)
        answers = await self.peers.gather(
            {"type": "get", "key": key},
            local={"ok": True, "value": value, "ts": list(ts)},
            timeout=self.timeout,
            enough=lambda got: len(got) >= self.r,
        )
        if len(answers) < self.r:
            return fail("unavailable", definite=True)
        best = max(answers, key=lambda a: tuple(a["ts"]))
        return ok(best["value"])

    async def _deliver(self, peer: int) -> None:
        hints, wake = self._hints[peer], self._wake[peer]
        while True:
            await wake.wait()
            wake.clear()
            batch = dict(hints)
            if not batch:
                continue
            entries = [[key, value, list(ts)] for key, (value, ts) in batch.items()]
            answer = await self.peers.ask(
                peer, {"type": "replicate", "entries": entries}, timeout=self.timeout
            )
            if answer is None:
                # Keep the hints; the next write or the retry tick wakes us again.
                await asyncio.sleep(self.sync_every)
                wake.set()
                continue
            for key, sent in batch.items():
                if hints.get(key) == sent:
                    del hints[key]

    async def _anti_entropy(self) -> None:
        while True:
            await asyncio.sleep(self.sync_every)
            peer = random.choice(self.peers.ids)
            answer = await self.peers.ask(
                peer, {"type": "sync", "entries": self.entries()}, timeout=self.timeout
            )
            if answer is not None:
                self.merge(answer["entries"])
