"""A real 3-node etcd cluster under the lab's network: it refuses the minority write, checks linearizable."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from cairn.lab import OpType, Verdict
from cairn.lab._etcd import EtcdCluster, etcd_program
from cairn.lab._run import RunConfig, run_experiment
from cairn.lab._workload import Workload

pytest.importorskip("httpx")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        etcd_program() is None,
        reason="the etcd program is not installed (Debian: apt-get install etcd-server)",
    ),
]

ISOLATE_1 = {(1, 2), (2, 1), (1, 3), (3, 1)}


async def test_etcd_refuses_writes_on_the_minority_side_until_heal(tmp_path: Path) -> None:
    async with EtcdCluster(data=tmp_path) as etcd:
        assert (await etcd.op(1, "write", "x", 1, timeout=2.0)).type is OpType.OK
        etcd.partition(ISOLATE_1)
        # Until n1's election timer fires it may still believe in a leader
        # (its requests then time out: indeterminate); after that, a definite refusal.
        deadline = time.monotonic() + 10
        refused = None
        while time.monotonic() < deadline:
            reply = await etcd.op(1, "write", "x", 99, timeout=1.0)
            assert reply.type is not OpType.OK
            if reply.type is OpType.FAIL:
                refused = reply
                break
        assert refused is not None
        assert refused.error is not None
        assert "no leader" in refused.error
        # The majority accepts writes once it has a leader: if n1 led, n2 and n3
        # first elect one and refuse ("no leader") meanwhile.
        deadline = time.monotonic() + 15
        accepted = None
        while time.monotonic() < deadline:
            accepted = await etcd.op(2, "write", "x", 2, timeout=2.0)
            if accepted.type is OpType.OK:
                break
            await asyncio.sleep(0.05)  # a poll interval, with a deadline above
        assert accepted is not None
        assert accepted.type is OpType.OK, accepted
        etcd.heal()
        deadline = time.monotonic() + 15
        healed = None
        while time.monotonic() < deadline:
            healed = await etcd.op(1, "read", "x", None, timeout=1.0)
            if healed.type is OpType.OK:
                break
        assert healed is not None
        assert (healed.type, healed.value) == (OpType.OK, 2)


async def test_etcd_cas_and_missing_keys(tmp_path: Path) -> None:
    async with EtcdCluster(data=tmp_path) as etcd:
        assert (await etcd.op(1, "read", "k", None, timeout=2.0)).value is None
        assert (await etcd.op(2, "cas", "k", [None, [1, "a"]], timeout=2.0)).type is OpType.OK
        lost = await etcd.op(3, "cas", "k", [None, 5], timeout=2.0)
        assert (lost.type, lost.error) == (OpType.FAIL, "mismatch")
        assert (await etcd.op(3, "read", "k", None, timeout=2.0)).value == [1, "a"]
        await etcd.kill(3)
        assert (await etcd.op(3, "read", "k", None, timeout=2.0)).type is OpType.FAIL
        await etcd.restart(3)


async def test_etcd_history_under_partition_is_linearizable(tmp_path: Path) -> None:
    config = RunConfig(
        engine="etcd",
        mode="etcd",
        nemesis="partition-halves",
        duration=4.0,
        workload=Workload(clients=4, keys=2, rate=60.0, seed=4),
        seed=4,
    )
    result = await run_experiment(config, data=tmp_path)
    assert result.check.verdict is Verdict.LINEARIZABLE, result.check.report()
    assert result.measures.ok > 0
    assert result.measures.lost_writes == 0


def test_etcd_config_rejects_what_it_cannot_do(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="3 to 7 members"):
        EtcdCluster(nodes=2, data=tmp_path)
    with pytest.raises(ValueError, match="heartbeat"):
        EtcdCluster(data=tmp_path, heartbeat_ms=600)
    with pytest.raises(ValueError, match="lab store"):
        RunConfig(engine="etcd", mode="etcd", nemesis="skew")
