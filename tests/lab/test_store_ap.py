"""The ap store (LWW on HLCs): the seed's accepted write and stale read, convergence, what LWW loses."""

from __future__ import annotations

import time
from pathlib import Path

from cairn.lab import Op, OpType
from cairn.lab._cluster import StoreCluster
from cairn.lab._measures import measure
from cairn.lab._run import RunConfig, run_experiment, wait_converged
from cairn.lab._workload import Workload

ISOLATE_1 = {(1, 2), (2, 1), (1, 3), (3, 1)}


async def test_seed_ap_write_on_a_accepted_read_on_b_stale_converge_after_heal(
    tmp_path: Path,
) -> None:
    """The seed's AP case: A -X- B; A accepts the write, B reads the old value, both converge."""
    async with StoreCluster("ap", data=tmp_path) as cluster:
        assert (await cluster.op(1, "write", "x", "old", timeout=2.0)).type is OpType.OK
        converged, _ = await wait_converged(cluster, timeout=5.0)
        assert converged
        cluster.partition(ISOLATE_1)
        accepted = await cluster.op(1, "write", "x", "new", timeout=2.0)
        assert accepted.type is OpType.OK
        stale = await cluster.op(2, "read", "x", None, timeout=2.0)
        assert (stale.type, stale.value) == (OpType.OK, "old")
        # Not merely slow: still old while the partition lasts.
        assert (await cluster.states() or {})[2]["x"] == "old"
        cluster.heal()
        converged, seconds = await wait_converged(cluster, timeout=5.0)
        assert converged
        assert seconds is not None
        assert (await cluster.op(2, "read", "x", None, timeout=2.0)).value == "new"


async def test_ap_run_under_partition_stays_available_and_converges(tmp_path: Path) -> None:
    config = RunConfig(
        mode="ap",
        nemesis="partition-halves",
        duration=2.0,
        workload=Workload(clients=4, keys=2, rate=100.0, seed=1),
        seed=1,
    )
    result = await run_experiment(config, data=tmp_path)
    m = result.measures
    assert m.availability == 1.0
    assert m.availability_faulty == 1.0
    assert m.converged is True
    assert m.convergence_time is not None
    assert m.lost_writes == 0  # one clock for all replicas: LWW keeps the latest write
    assert result.final is not None


async def test_lww_loses_an_acknowledged_write_to_a_clock_running_ahead(tmp_path: Path) -> None:
    """Documented loss: two writes that do not know of each other, the earlier one stamped later."""
    ops: list[Op] = []

    async def write(node: int, process: int, value: str) -> None:
        ops.append(Op.invoke(process, "write", value, key="x", time=time.monotonic_ns()))
        reply = await cluster.op(node, "write", "x", value, timeout=2.0)
        assert reply.type is OpType.OK
        ops.append(Op.ok(process, "write", value, key="x", time=time.monotonic_ns()))

    async with StoreCluster("ap", data=tmp_path) as cluster:
        cluster.partition(ISOLATE_1)
        assert await cluster.skew(1, 60_000)
        await write(1, 0, "ahead")
        await write(2, 1, "later")
        cluster.heal()
        converged, _ = await wait_converged(cluster, timeout=5.0)
        states = await cluster.states()
    assert converged
    assert states is not None
    final = states[1]
    assert final == {"x": "ahead"}
    m = measure(ops, final=final, converged=True)
    assert (m.acknowledged_writes, m.lost_writes) == (2, 1)


async def test_ap_quorum_reads_and_writes_see_each_other(tmp_path: Path) -> None:
    async with StoreCluster("ap", data=tmp_path, r=2, w=2, sync_every=30.0) as cluster:
        for i in range(5):
            assert (await cluster.op(1 + i % 3, "write", "x", i, timeout=2.0)).type is OpType.OK
            read = await cluster.op(1 + (i + 1) % 3, "read", "x", None, timeout=2.0)
            assert read.value == i


async def test_ap_w2_write_on_isolated_node_is_indeterminate(tmp_path: Path) -> None:
    async with StoreCluster("ap", data=tmp_path, w=2, timeout=0.2) as cluster:
        cluster.partition(ISOLATE_1)
        reply = await cluster.op(1, "write", "x", 1, timeout=2.0)
        assert (reply.type, reply.error) == (OpType.INFO, "indeterminate")
        read = await cluster.op(1, "read", "x", None, timeout=2.0)
        assert read.value == 1  # kept locally, on its way to the others
