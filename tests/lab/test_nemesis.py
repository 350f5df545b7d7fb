"""Nemesis grudges and schedules, fault windows, the network layer, the wire and the HLC."""

from __future__ import annotations

import asyncio
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cairn.lab import Op
from cairn.lab._hlc import HLC
from cairn.lab._measures import fault_windows
from cairn.lab._nemesis import NEMESES, PARTITIONS, grudge, schedule
from cairn.lab._net import Network
from cairn.lab._wire import Connection, LinkDown, Message, decode, encode, serve

node_counts = st.integers(min_value=3, max_value=9)


def reachable(cut: frozenset[tuple[int, int]], nodes: list[int], node: int) -> set[int]:
    """Who ``node`` hears from (itself included)."""
    return {a for a in nodes if a == node or (a, node) not in cut}


@given(node_counts, st.integers(0, 10_000))
def test_halves_leave_a_minority_and_a_majority(n: int, seed: int) -> None:
    nodes = list(range(1, n + 1))
    fault = grudge("partition-halves", nodes, random.Random(seed))
    small, big = fault.groups
    assert sorted(small + big) == nodes
    assert len(small) < n / 2 < len(big) or len(small) == len(big) == n / 2
    for a in small:
        assert reachable(fault.cut, nodes, a) == set(small)
    assert all((b, a) in fault.cut for a, b in fault.cut)  # symmetric


@given(node_counts, st.integers(0, 10_000))
def test_isolate_one_cuts_exactly_one_node_off(n: int, seed: int) -> None:
    nodes = list(range(1, n + 1))
    fault = grudge("isolate-one", nodes, random.Random(seed))
    (alone,), rest = fault.groups
    assert reachable(fault.cut, nodes, alone) == {alone}
    assert len(fault.cut) == 2 * (n - 1)
    assert alone not in rest


@given(node_counts, st.integers(0, 10_000))
def test_majorities_ring_gives_every_node_its_own_majority(n: int, seed: int) -> None:
    nodes = list(range(1, n + 1))
    fault = grudge("majorities-ring", nodes, random.Random(seed))
    views = [frozenset(reachable(fault.cut, nodes, node)) for node in nodes]
    assert all(len(v) == n // 2 + 1 for v in views)
    if n >= 4:
        assert len(set(views)) == n  # no two nodes share a view


@given(node_counts, st.integers(0, 10_000))
def test_bridge_node_hears_everyone_and_the_sides_do_not_hear_each_other(n: int, seed: int) -> None:
    nodes = list(range(1, n + 1))
    fault = grudge("bridge", nodes, random.Random(seed))
    left, (bridge,), right = fault.groups
    assert reachable(fault.cut, nodes, bridge) == set(nodes)
    for a in left:
        assert reachable(fault.cut, nodes, a) == {*left, bridge}
    assert set(left).isdisjoint(right)


def test_grudge_refuses_a_fault_that_is_not_a_partition() -> None:
    with pytest.raises(ValueError, match="not a partition"):
        grudge("kill", [1, 2, 3], random.Random(0))


@given(st.sampled_from(NEMESES), st.floats(0.5, 60), st.integers(0, 1000))
def test_schedules_alternate_inside_the_run_and_repeat_by_seed(
    nemesis: str, duration: float, seed: int
) -> None:
    steps = schedule(nemesis, nodes=[1, 2, 3], duration=duration, seed=seed)
    assert steps == schedule(nemesis, nodes=[1, 2, 3], duration=duration, seed=seed)
    if nemesis == "none":
        assert steps == []
        return
    assert len(steps) == 4
    assert [s.start for s in steps] == [True, False, True, False]
    assert all(0 < s.at <= duration + 1e-6 for s in steps)
    assert steps[0].fault == steps[1].fault
    assert steps[1].at < steps[2].at


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"nemesis": "flood", "duration": 1}, "unknown nemesis"),
        ({"nemesis": "kill", "duration": 0}, "duration must be positive"),
        ({"nemesis": "kill", "duration": 1, "interval": -1}, "interval must be positive"),
    ],
)
def test_schedule_rejects_bad_configuration(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        schedule(nodes=[1, 2, 3], **kwargs)  # type: ignore[arg-type]


def test_fault_windows_pair_starts_with_stops_and_close_open_ones_at_the_end() -> None:
    history = [
        Op.info("nemesis", "start-partition-halves", [[1], [2, 3]], time=10),
        Op.invoke(0, "read", key="x", time=11),
        Op.ok(0, "read", None, key="x", time=12),
        Op.info("nemesis", "stop-partition-halves", [[1], [2, 3]], time=20),
        Op.info("nemesis", "start-kill", [2], time=30),
        Op.invoke(0, "read", key="x", time=40),
    ]
    windows = fault_windows(history)
    assert [(w.kind, w.start, w.end) for w in windows] == [
        ("partition-halves", 10, 20),
        ("kill", 30, 40),
    ]
    assert windows[0].value == ((1,), (2, 3))


def test_every_nemesis_has_a_name_in_the_list() -> None:
    assert set(PARTITIONS) < set(NEMESES)


# -- the network layer ------------------------------------------------------------


async def echo(message: Message) -> Message:
    return {"echo": message.get("n")}


async def test_line_proxy_forwards_cuts_and_heals() -> None:
    server = await serve(echo)
    net = Network([1, 2])
    try:
        net.targets[2] = server.sockets[0].getsockname()[1]
        conn = Connection("127.0.0.1", await net.line_proxy(1, 2))
        assert (await conn.request({"n": 1}, timeout=2.0))["echo"] == 1
        net.cut({(1, 2)})
        assert net.cut_links() == {(1, 2)}
        with pytest.raises(TimeoutError):
            await conn.request({"n": 2}, timeout=0.2)
        net.cut({(2, 1)})  # the answer's way back is cut: also silence
        with pytest.raises(TimeoutError):
            await conn.request({"n": 3}, timeout=0.2)
        net.heal()
        assert (await conn.request({"n": 4}, timeout=2.0))["echo"] == 4
        await conn.close()
    finally:
        await net.close()
        server.close()


async def test_line_proxy_delays_and_loses_messages() -> None:
    server = await serve(echo)
    net = Network([1, 2], seed=5)
    try:
        net.targets[2] = server.sockets[0].getsockname()[1]
        conn = Connection("127.0.0.1", await net.line_proxy(1, 2))
        net.slow(0.1)
        loop = asyncio.get_running_loop()
        start = loop.time()
        assert (await conn.request({"n": 1}, timeout=2.0))["echo"] == 1
        assert loop.time() - start >= 0.2  # there and back
        net.slow(0.0)
        net.lossy(1.0)
        with pytest.raises(TimeoutError):
            await conn.request({"n": 2}, timeout=0.2)
        net.lossy(0.5)
        results = await asyncio.gather(
            *(conn.request({"n": i}, timeout=0.5) for i in range(40)), return_exceptions=True
        )
        delivered = sum(not isinstance(r, BaseException) for r in results)
        assert 0 < delivered < 40  # each way loses about half: about a quarter get through
        await conn.close()
    finally:
        await net.close()
        server.close()


async def test_proxy_to_a_stopped_replica_refuses_and_connection_reports_link_down() -> None:
    net = Network([1, 2])
    try:
        conn = Connection("127.0.0.1", await net.line_proxy(1, 2))
        with pytest.raises(LinkDown) as caught:
            await conn.request({"n": 1}, timeout=1.0)
        assert caught.value.sent  # it left this process; the proxy then hung up
        nowhere = Connection("127.0.0.1", 1)
        with pytest.raises(LinkDown) as refused:
            await nowhere.request({}, timeout=1.0)
        assert not refused.value.sent
    finally:
        await net.close()


def test_wire_round_trip_and_rejects_non_objects() -> None:
    assert decode(encode({"a": [1, None]})) == {"a": [1, None]}
    with pytest.raises(ValueError, match="JSON object"):
        decode(b"[1]\n")


# -- the hybrid logical clock -------------------------------------------------------


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 50), st.integers(0, 5)), max_size=60))
def test_hlc_stamps_grow_past_everything_seen(events: list[tuple[bool, int, int]]) -> None:
    wall = [1000]
    clock = HLC(1, physical=lambda: wall[0])
    last = clock.now()
    for local, jump, logical in events:
        wall[0] += jump - 25  # physical time may even go back
        if local:
            stamp = clock.now()
            assert stamp > last
            last = stamp
        else:
            seen = (last[0] + jump, logical, 2)
            clock.observe(seen)
            stamp = clock.now()
            assert stamp[:2] > seen[:2]
            last = stamp


def test_hlc_skew_moves_the_wall_component() -> None:
    clock = HLC(3, physical=lambda: 1000)
    clock.skew_ms = 500
    assert clock.now() == (1500, 0, 3)
    assert clock.now() == (1500, 1, 3)
