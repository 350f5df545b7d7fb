"""The ``cp`` store: one CASPaxos register per key (Rystsov, 2018).

Every operation, a read included, is a change function run through a full
single-decree Paxos round on its key: *prepare* with a fresh ballot until a
majority promises, apply the change to the value of the highest accepted
ballot among the promises, *accept* the result at a majority. Any replica can
coordinate; there is no leader to elect and no log to compact, and every
operation is linearizable, compare-and-set included (a quorum register such
as ABD gives linearizable reads and writes, but not CAS).

Outcomes, as the workload records them:

- prepare reaches no majority and nobody refused: nothing was accepted
  anywhere, so the operation definitely did not happen: ``unavailable``
  (the seed's refused write on the minority side);
- accept reaches no majority: some acceptors may hold the new value and a
  later round may adopt it, so a write or a cas is ``indeterminate``. A read
  or a cas that did not match re-proposed the value already there, so it
  retries after a competing ballot, or fails definitely.
- a competing proposer's higher ballot refuses our prepare: nothing of ours
  was accepted, so retry with a higher ballot after a random pause, up to
  ``attempts`` times (then ``contention``, definite).

Acceptor state is written to a file on every change (no fsync: the lab kills
processes, not machines, and the page cache survives a SIGKILL), so a
restarted replica keeps its promises.

``local_reads=True`` makes the deliberately broken variant: reads answered
from this replica's accepted value, without a round. The lab's checker
catches it under a partition.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from pathlib import Path
from typing import Any

from cairn.lab._peers import Peers, fail, ok
from cairn.lab._wire import Message

__all__ = ["CasPaxos"]

Ballot = tuple[int, int]
_ZERO: Ballot = (0, 0)


class CasPaxos:
    """A replica of the cp store: acceptor for every key, and proposer for its clients."""

    def __init__(
        self,
        peers: Peers,
        *,
        data: Path,
        timeout: float = 0.5,
        attempts: int = 5,
        local_reads: bool = False,
    ) -> None:
        self.peers = peers
        self.timeout = timeout
        self.attempts = attempts
        self.local_reads = local_reads
        self._file = data / f"acceptor-{peers.node}.json"
        # key -> [promised ballot, accepted ballot, value]
        self._keys: dict[str, list[Any]] = {}
        if self._file.exists():
            self._keys = json.loads(self._file.read_text(encoding="utf-8"))
        self._round = max((max(p[0], a[0]) for p, a, _ in self._keys.values()), default=0)

    # -- acceptor -------------------------------------------------------------

    def _slot(self, key: str) -> list[Any]:
        return self._keys.get(key) or [list(_ZERO), list(_ZERO), None]

    def _save(self) -> None:
        tmp = self._file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._keys), encoding="utf-8")
        os.replace(tmp, self._file)

    def prepare(self, key: str, ballot: Ballot) -> Message:
        """Promise to ignore ballots below ``ballot``; answer with what was accepted."""
        promised, accepted, value = self._slot(key)
        if ballot <= tuple(promised):
            return {"ok": False, "promised": promised}
        self._keys[key] = [list(ballot), accepted, value]
        self._save()
        return {"ok": True, "accepted": accepted, "value": value}

    def accept(self, key: str, ballot: Ballot, value: Any) -> Message:
        """Accept ``value`` at ``ballot`` unless a higher ballot was promised."""
        promised, _, _ = self._slot(key)
        if ballot < tuple(promised):
            return {"ok": False, "promised": promised}
        self._keys[key] = [list(ballot), list(ballot), value]
        self._save()
        return {"ok": True}

    def value(self, key: str) -> Any:
        """The value this replica accepted last for ``key`` (not necessarily chosen)."""
        return self._slot(key)[2]

    def dump(self) -> dict[str, Any]:
        """Every key's locally accepted value."""
        return {key: slot[2] for key, slot in self._keys.items()}

    async def on_peer(self, message: Message) -> Message:
        """Answer a prepare or accept from another replica's proposer."""
        ballot: Ballot = (int(message["ballot"][0]), int(message["ballot"][1]))
        if message["type"] == "prepare":
            return self.prepare(message["key"], ballot)
        return self.accept(message["key"], ballot, message["value"])

    # -- proposer -------------------------------------------------------------

    async def execute(self, op: str, key: str, arg: Any) -> Message:
        """Run a client's read, write or cas [from, to] on ``key`` through one Paxos round."""
        if op == "read" and self.local_reads:
            return ok(self.value(key))
        majority = self.peers.majority
        refusals_to_lose = len(self.peers.ids) + 1 - majority + 1

        def decided(got: list[Message]) -> bool:
            # Stop at a majority either way: waiting for a cut peer's timeout
            # after a competing ballot already refused us only delays the retry.
            oks = sum(1 for a in got if a["ok"])
            return oks >= majority or len(got) - oks >= refusals_to_lose

        for _ in range(self.attempts):
            self._round += 1
            ballot: Ballot = (self._round, self.peers.node)
            answers = await self.peers.gather(
                {"type": "prepare", "key": key, "ballot": ballot},
                local=self.prepare(key, ballot),
                timeout=self.timeout,
                enough=decided,
            )
            promises = [a for a in answers if a["ok"]]
            if len(promises) < majority:
                refusals = [a["promised"][0] for a in answers if not a["ok"]]
                if not refusals:
                    return fail("unavailable", definite=True)
                # A competing proposer: nothing of ours was accepted, so retry higher.
                self._round = max(self._round, *refusals)
                await _backoff()
                continue
            current = max(promises, key=lambda a: tuple(a["accepted"]))["value"]
            new, reply = _apply(op, current, arg)
            accepted = await self.peers.gather(
                {"type": "accept", "key": key, "ballot": ballot, "value": new},
                local=self.accept(key, ballot, new),
                timeout=self.timeout,
                enough=decided,
            )
            if sum(a["ok"] for a in accepted) >= majority:
                return reply
            if op == "read" or not reply["ok"]:
                # We re-proposed a value that was already there: harmless to
                # leave half-accepted, so a read or a refused cas may try again.
                refusals = [a["promised"][0] for a in accepted if not a["ok"]]
                if not refusals:
                    return fail("unavailable", definite=True)
                self._round = max(self._round, *refusals)
                await _backoff()
                continue
            return fail("indeterminate", definite=False)
        return fail("contention", definite=True)


def _apply(op: str, current: Any, arg: Any) -> tuple[Any, Message]:
    if op == "read":
        return current, ok(current)
    if op == "write":
        return arg, ok(arg)
    expected, new = arg
    if current == expected:
        return new, ok(arg)
    return current, fail("mismatch", definite=True)


async def _backoff() -> None:
    # Duelling proposers retry at random moments so one of them wins the next round.
    await asyncio.sleep(random.uniform(0.002, 0.02))
