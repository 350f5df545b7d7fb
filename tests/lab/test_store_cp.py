"""The cp store (CASPaxos over real replica processes): the seed's refused write, checked runs."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from cairn.lab import CasRegisterModel, Op, OpType, Verdict, check
from cairn.lab._cluster import Engine, StoreCluster
from cairn.lab._run import RunConfig, run_experiment
from cairn.lab._workload import Workload

ISOLATE_1 = {(1, 2), (2, 1), (1, 3), (3, 1)}


async def timed(
    engine: Engine, ops: list[Op], process: int, node: int, f: str, key: str, value: object = None
) -> Op:
    """Run one operation and record it as a Jepsen-style invoke/complete pair."""
    ops.append(Op.invoke(process, f, value, key=key, time=time.monotonic_ns()))  # type: ignore[arg-type]
    reply = await engine.op(node, f, key, value, timeout=2.0)
    done = Op(
        process,
        reply.type,
        f,
        key,
        reply.value if reply.type is OpType.OK else reply.error,
        time.monotonic_ns(),
    )
    ops.append(done)
    return done


async def test_seed_cp_write_on_minority_refused_until_heal(tmp_path: Path) -> None:
    """The seed's CP case: A -X- B; the write on A is refused, and stays refused until the heal."""
    async with StoreCluster("cp", data=tmp_path) as cluster:
        assert (await cluster.op(1, "write", "x", 1, timeout=2.0)).type is OpType.OK
        cluster.partition(ISOLATE_1)
        for attempt in range(3):
            refused = await cluster.op(1, "write", "x", 10 + attempt, timeout=2.0)
            assert refused.type is OpType.FAIL
            assert refused.error == "unavailable"
        # The majority side carries on, and the minority cannot even read.
        assert (await cluster.op(2, "write", "x", 2, timeout=2.0)).type is OpType.OK
        assert (await cluster.op(1, "read", "x", None, timeout=2.0)).type is OpType.FAIL
        cluster.heal()
        accepted = await cluster.op(1, "write", "x", 3, timeout=2.0)
        assert accepted.type is OpType.OK
        assert (await cluster.op(3, "read", "x", None, timeout=2.0)).value == 3


async def test_cp_cas_is_linearizable_read_modify_write(tmp_path: Path) -> None:
    async with StoreCluster("cp", data=tmp_path) as cluster:
        assert (await cluster.op(1, "cas", "k", [None, 1], timeout=2.0)).type is OpType.OK
        mismatch = await cluster.op(2, "cas", "k", [None, 2], timeout=2.0)
        assert (mismatch.type, mismatch.error) == (OpType.FAIL, "mismatch")
        assert (await cluster.op(3, "cas", "k", [1, 2], timeout=2.0)).type is OpType.OK
        assert (await cluster.op(1, "read", "k", None, timeout=2.0)).value == 2


async def test_cp_restarted_replica_keeps_its_promises(tmp_path: Path) -> None:
    async with StoreCluster("cp", data=tmp_path) as cluster:
        assert (await cluster.op(1, "write", "x", 7, timeout=2.0)).type is OpType.OK
        before = cluster.pids[2]
        await cluster.kill(2)
        assert (await cluster.op(2, "read", "x", None, timeout=2.0)).type is OpType.FAIL
        # One replica down: still a majority.
        assert (await cluster.op(1, "write", "x", 8, timeout=2.0)).type is OpType.OK
        await cluster.restart(2)
        assert cluster.pids[2] != before
        assert (tmp_path / "acceptor-2.json").exists()
        assert (await cluster.op(2, "read", "x", None, timeout=2.0)).value == 8


async def test_broken_cp_local_reads_caught_under_partition(tmp_path: Path) -> None:
    """cp answering reads from the local replica is caught as not linearizable under a partition."""
    ops: list[Op] = []
    async with StoreCluster("cp-local-reads", data=tmp_path) as cluster:
        assert (await timed(cluster, ops, 0, 1, "write", "x", 1)).type is OpType.OK
        cluster.partition(ISOLATE_1)
        assert (await timed(cluster, ops, 1, 2, "write", "x", 2)).type is OpType.OK
        stale = await timed(cluster, ops, 2, 1, "read", "x")
    assert stale.type is OpType.OK
    assert stale.value == 1
    result = check(ops, CasRegisterModel())
    assert result.verdict is Verdict.NOT_LINEARIZABLE
    assert result.violation is not None
    assert "read -> 1" in result.violation.text


async def test_correct_cp_serves_no_stale_read_in_the_same_scenario(tmp_path: Path) -> None:
    ops: list[Op] = []
    async with StoreCluster("cp", data=tmp_path) as cluster:
        await timed(cluster, ops, 0, 1, "write", "x", 1)
        cluster.partition(ISOLATE_1)
        await timed(cluster, ops, 1, 2, "write", "x", 2)
        read = await timed(cluster, ops, 2, 1, "read", "x")
    assert read.type is OpType.FAIL
    assert check(ops, CasRegisterModel()).verdict is Verdict.LINEARIZABLE


@pytest.mark.parametrize(
    "nemesis",
    ["partition-halves", "isolate-one", "majorities-ring", "bridge", "kill", "latency", "loss"],
)
async def test_cp_passes_the_checker_under_every_nemesis(tmp_path: Path, nemesis: str) -> None:
    config = RunConfig(
        mode="cp",
        nemesis=nemesis,
        duration=2.0,
        workload=Workload(clients=4, keys=2, rate=80.0, seed=3),
        seed=3,
    )
    result = await run_experiment(config, data=tmp_path)
    assert result.check.verdict is Verdict.LINEARIZABLE, result.check.report()
    assert result.measures.ok > 0
    assert result.measures.lost_writes == 0
    kinds = {op.f for op in result.history if op.process == "nemesis"}
    assert kinds == {f"start-{nemesis}", f"stop-{nemesis}"}


async def test_ca_is_one_node_and_linearizable(tmp_path: Path) -> None:
    config = RunConfig(
        mode="ca", nemesis="partition-halves", duration=1.0, workload=Workload(rate=60.0)
    )
    result = await run_experiment(config, data=tmp_path)
    assert result.check.verdict is Verdict.LINEARIZABLE
    # A single node has no link to cut: everything is answered.
    assert result.measures.availability == 1.0
    assert {op.process for op in result.history if op.process != "nemesis"} <= set(range(5))
