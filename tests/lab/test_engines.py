"""The store engines in this process: CASPaxos and LWW replicas behind the lab's network."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from cairn.lab import CasRegisterModel, Op, OpType, Verdict, check
from cairn.lab._ap import LwwStore
from cairn.lab._cluster import Reply, StoreCluster
from cairn.lab._cp import CasPaxos
from cairn.lab._net import Network
from cairn.lab._peers import Peers
from cairn.lab._replica import Replica, start_replica
from cairn.lab._run import RunConfig, final_reads
from cairn.lab._wire import Connection, Message
from cairn.lab._workload import Workload


@contextlib.asynccontextmanager
async def replicas(
    mode: str, data: Path, *, n: int = 3, **options: Any
) -> AsyncIterator[tuple[Network, dict[int, Replica], dict[int, Connection]]]:
    net = Network(list(range(1, n + 1)), seed=1)
    started: dict[int, Replica] = {}
    clients: dict[int, Connection] = {}
    try:
        for a in net.nodes:
            peers = {b: await net.line_proxy(a, b) for b in net.nodes if b != a}
            started[a] = await start_replica(node=a, mode=mode, peers=peers, data=data, **options)
            net.targets[a] = started[a].port
            clients[a] = Connection("127.0.0.1", started[a].port)
        yield net, started, clients
    finally:
        for conn in clients.values():
            await conn.close()
        for replica in started.values():
            await replica.close()
        await net.close()


async def op(conn: Connection, f: str, key: str = "x", value: Any = None) -> Message:
    return await conn.request({"type": "op", "op": f, "key": key, "value": value}, timeout=5.0)


async def test_cp_concurrent_clients_on_all_coordinators_stay_linearizable(tmp_path: Path) -> None:
    ops: list[Op] = []
    async with replicas("cp", tmp_path) as (_, _, clients):

        async def client(process: int) -> None:
            rng = random.Random(process)
            conn = clients[1 + process % 3]
            for i in range(15):
                f = rng.choice(["read", "write", "cas"])
                value: Any = None
                if f == "write":
                    value = process * 100 + i
                elif f == "cas":
                    value = [rng.choice([None, 1, 2]), process * 100 + i]
                ops.append(Op.invoke(process, f, value, key="x", time=time.monotonic_ns()))
                answer = await op(conn, f, "x", value)
                kind = "ok" if answer["ok"] else ("fail" if answer["definite"] else "info")
                out = answer.get("value") if answer["ok"] else answer["error"]
                ops.append(Op(process, kind, f, "x", out, time.monotonic_ns()))  # type: ignore[arg-type]
                if kind == "info":
                    process += 6  # as Jepsen: the old process may still be running

        await asyncio.gather(*(client(p) for p in range(6)))
    assert check(ops, CasRegisterModel()).verdict is Verdict.LINEARIZABLE
    assert sum(o.type.value == "ok" for o in ops) > 30


async def test_replica_answers_admin_and_bad_requests(tmp_path: Path) -> None:
    async with replicas("ap", tmp_path, sync_every=0.05) as (_, _, clients):
        assert (await op(clients[1], "write", "k", 5))["ok"]
        assert (await clients[1].request({"type": "skew", "ms": 10}, timeout=2))["ok"]
        dump = await clients[1].request({"type": "dump"}, timeout=2)
        assert dump["state"] == {"k": 5}
        bad = await clients[1].request(
            {"type": "op", "op": "cas", "key": "k", "value": 3}, timeout=2
        )
        assert (bad["ok"], bad["definite"]) == (False, True)
        assert "bad request" in bad["error"]


async def test_ap_hints_wait_for_the_heal_and_anti_entropy_repairs(tmp_path: Path) -> None:
    async with replicas("ap", tmp_path, sync_every=0.05, timeout=0.1) as (net, started, clients):
        net.cut({(1, 2), (2, 1), (1, 3), (3, 1)})
        assert (await op(clients[1], "write", "k", "a"))["ok"]
        engine = started[1].engine
        assert isinstance(engine, LwwStore)
        assert engine.dump() == {"k": "a"}
        assert (await op(clients[2], "read", "k"))["value"] is None
        net.heal()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if (await op(clients[3], "read", "k"))["value"] == "a":
                break
            await asyncio.sleep(0.02)  # polling a condition with a deadline
        assert (await op(clients[2], "read", "k"))["value"] == "a"
        assert (await op(clients[3], "read", "k"))["value"] == "a"


async def test_ap_state_survives_a_restart_from_its_file(tmp_path: Path) -> None:
    store = LwwStore(Peers(1, {}), data=tmp_path)
    assert (await store.execute("write", "k", [1, 2]))["value"] == [1, 2]
    assert (await store.execute("cas", "k", [[1, 2], 3]))["ok"]
    again = LwwStore(Peers(1, {}), data=tmp_path)
    assert again.dump() == {"k": 3}
    assert (await again.execute("cas", "k", [9, 4]))["error"] == "mismatch"


def test_lww_merge_keeps_the_highest_stamp_whatever_the_order() -> None:
    entries = [["k", "old", [10, 0, 1]], ["k", "new", [10, 1, 2]], ["j", 1, [5, 0, 3]]]
    for order in (entries, entries[::-1]):
        store = LwwStore(Peers(1, {}))
        store.merge(order)
        assert store.dump() == {"k": "new", "j": 1}
        assert store.hlc.now()[:2] > (10, 1)


# -- CASPaxos outcomes, with scripted peers ----------------------------------------------


class ScriptedPeers(Peers):
    """Peers whose answers a test writes: ``answers(message)`` for each other replica."""

    def __init__(self, answer: Callable[[Message], list[Message]]) -> None:
        super().__init__(1, {2: 1, 3: 1})
        self.answer = answer
        self.sent: list[str] = []

    async def gather(self, message: Message, *, local: Message, **_: Any) -> list[Message]:  # type: ignore[override]
        self.sent.append(message["type"])
        return [local, *self.answer(message)]


def promise_then(accept: list[Message]) -> Callable[[Message], list[Message]]:
    def answer(message: Message) -> list[Message]:
        if message["type"] == "prepare":
            return [{"ok": True, "accepted": [0, 0], "value": None}]
        return accept

    return answer


async def test_no_promise_quorum_is_a_definite_unavailable(tmp_path: Path) -> None:
    peers = ScriptedPeers(lambda m: [])
    paxos = CasPaxos(peers, data=tmp_path)
    assert await paxos.execute("write", "x", 1) == {
        "ok": False,
        "error": "unavailable",
        "definite": True,
    }
    assert peers.sent == ["prepare"]  # nothing was accepted anywhere


async def test_lost_accept_makes_a_write_indeterminate_and_a_read_a_failure(tmp_path: Path) -> None:
    paxos = CasPaxos(ScriptedPeers(promise_then([])), data=tmp_path)
    assert (await paxos.execute("write", "x", 1))["definite"] is False
    assert (await paxos.execute("read", "x", None))["definite"] is True
    mismatch = await paxos.execute("cas", "x", [7, 8])
    assert mismatch["definite"] is True


async def test_refused_ballots_retry_higher_then_give_up(tmp_path: Path) -> None:
    refusals = ScriptedPeers(lambda m: [{"ok": False, "promised": [50, 2]}] * 2)
    paxos = CasPaxos(refusals, data=tmp_path, attempts=3)
    answer = await paxos.execute("write", "x", 1)
    assert answer == {"ok": False, "error": "contention", "definite": True}
    assert refusals.sent == ["prepare"] * 3


async def test_acceptor_rules_and_recovery(tmp_path: Path) -> None:
    paxos = CasPaxos(Peers(1, {}), data=tmp_path)
    assert paxos.prepare("x", (5, 1))["ok"]
    assert not paxos.prepare("x", (5, 1))["ok"]
    assert not paxos.accept("x", (4, 2), "low")["ok"]
    assert paxos.accept("x", (5, 1), "v")["ok"]
    assert await paxos.on_peer({"type": "prepare", "key": "x", "ballot": [6, 2]}) == {
        "ok": True,
        "accepted": [5, 1],
        "value": "v",
    }
    again = CasPaxos(Peers(1, {}), data=tmp_path)
    assert again.dump() == {"x": "v"}
    assert not again.prepare("x", (6, 2))["ok"]  # the promise survived
    # A single replica is its own majority.
    assert (await again.execute("write", "x", "w"))["ok"]


@pytest.mark.parametrize("mode", ["cp-local-reads"])
async def test_local_reads_skip_the_round(tmp_path: Path, mode: str) -> None:
    async with replicas(mode, tmp_path) as (net, started, clients):
        assert (await op(clients[1], "write", "x", 1))["ok"]
        net.cut(net.cut_links() | {(1, 2), (2, 1), (1, 3), (3, 1)})
        assert (await op(clients[2], "write", "x", 2))["ok"]
        assert (await op(clients[1], "read", "x"))["value"] == 1  # stale, served locally
        assert started[1].engine.dump() == {"x": 1}


async def test_ap_quorum_read_takes_the_newest_of_r_replicas(tmp_path: Path) -> None:
    async with replicas("ap", tmp_path, r=3, sync_every=60.0) as (net, started, clients):
        engine = started[2].engine
        assert isinstance(engine, LwwStore)
        engine.merge([["k", "newest", [2**40, 0, 2]]])  # only replica 2 knows it
        assert (await op(clients[1], "read", "k"))["value"] == "newest"
        net.cut({(1, 2), (2, 1), (1, 3), (3, 1)})
        unavailable = await op(clients[1], "read", "k")
        assert (unavailable["ok"], unavailable["error"]) == (False, "unavailable")


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda p: Workload(clients=0), "clients"),
        (lambda p: Workload(keys=0), "keys"),
        (lambda p: Workload(rate=0), "rate"),
        (lambda p: Workload(timeout=0), "timeout"),
        (lambda p: Workload(reads=0.8, writes=0.5), "shares"),
        (lambda p: RunConfig(engine="x"), "engine"),
        (lambda p: RunConfig(mode="x"), "mode"),
        (lambda p: RunConfig(nemesis="x"), "nemesis"),
        (lambda p: RunConfig(duration=0), "duration"),
        (lambda p: StoreCluster("x", data=p), "mode"),
        (lambda p: StoreCluster("cp", nodes=2, data=p), "between 3 and 9"),
        (lambda p: StoreCluster("ap", r=4, data=p), "r and w"),
    ],
)
def test_bad_configuration_is_refused_with_a_reason(
    tmp_path: Path, build: Callable[[Path], object], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        build(tmp_path)


class ElectingStore:
    """Refuses reads at once (no leader yet) for its first ``refusals`` asks."""

    nodes = (1, 2, 3)

    def __init__(self, refusals: int) -> None:
        self.refusals = refusals
        self.asked = 0

    async def op(self, node: int, f: str, key: str, value: Any, *, timeout: float) -> Reply:
        self.asked += 1
        if self.asked <= self.refusals:
            return Reply(OpType.FAIL, error="no leader")
        return Reply(OpType.OK, f"{key}@{node}")


async def test_final_reads_wait_for_the_store_to_answer_again() -> None:
    store = ElectingStore(refusals=7)  # every node refuses twice, then one more
    final = await final_reads(store, ["a", "b"], timeout=10.0)  # type: ignore[arg-type]
    assert final == {"a": "a@2", "b": "b@1"}
    assert store.asked == 9


async def test_final_reads_give_up_at_the_deadline() -> None:
    store = ElectingStore(refusals=10**9)
    assert await final_reads(store, ["a"], timeout=0.2) is None  # type: ignore[arg-type]
    assert store.asked >= 3
