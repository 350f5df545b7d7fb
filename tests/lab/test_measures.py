"""AP measures on hand-made histories: availability, stale reads, lost writes."""

from __future__ import annotations

from cairn.lab import Op
from cairn.lab._measures import measure, stale_reads


def op_pair(
    process: int, f: str, value: object, out: object, start: int, end: int, kind: str = "ok"
) -> list[Op]:
    return [
        Op.invoke(process, f, value, key="x", time=start),  # type: ignore[arg-type]
        Op(process, kind, f, "x", out, end),  # type: ignore[arg-type]
    ]


def test_a_read_of_a_superseded_value_is_stale_and_a_concurrent_one_is_not() -> None:
    history = [
        *op_pair(0, "write", 1, 1, 0, 10),
        *op_pair(0, "write", 2, 2, 20, 30),
        *op_pair(1, "read", None, 1, 40, 50),  # 2 was written before: stale
        *op_pair(2, "read", None, 1, 25, 45),  # overlaps the write of 2: fine
        *op_pair(3, "read", None, None, 35, 55),  # the initial value, after writes: stale
    ]
    assert sorted(stale_reads(history)) == [(1, 40), (3, 35)]
    m = measure(history)
    assert (m.reads, m.stale_reads) == (3, 2)
    assert m.stale_read_share == 2 / 3
    assert m.lost_writes is None  # no final state given


def test_lost_writes_are_those_begun_after_the_final_values_write_ended() -> None:
    history = [
        *op_pair(0, "write", 1, 1, 0, 10),
        *op_pair(1, "write", 2, 2, 5, 15),
        *op_pair(0, "cas", [1, 3], [1, 3], 20, 30),
        *op_pair(1, "write", 4, "timeout", 40, 50, kind="info"),
    ]
    assert measure(history, final={"x": 3}).lost_writes == 0
    # The store kept 1: the cas (begun after 1's write ended) was lost; 2 overlapped 1.
    assert measure(history, final={"x": 1}).lost_writes == 1
    # The indeterminate write of 4 may have landed at any time: nothing provably lost.
    assert measure(history, final={"x": 4}).lost_writes == 0
    # Nothing survived: every acknowledged write is lost.
    assert measure(history, final={}).lost_writes == 3


def test_availability_counts_answers_in_and_out_of_fault_windows() -> None:
    history = [
        *op_pair(0, "write", 1, 1, 0, 10),
        Op.info("nemesis", "start-partition-halves", [[1], [2, 3]], time=15),
        *op_pair(0, "write", 2, "unavailable", 20, 30, kind="fail"),
        *op_pair(1, "cas", [5, 6], "mismatch", 21, 31, kind="fail"),
        *op_pair(2, "write", 3, "timeout", 22, 32, kind="info"),
        Op.info("nemesis", "stop-partition-halves", [[1], [2, 3]], time=40),
        *op_pair(0, "read", None, 1, 50, 60),
    ]
    m = measure(history, converged=True, convergence_time=0.5)
    assert (m.operations, m.ok, m.failed, m.indeterminate) == (5, 2, 2, 1)
    assert m.availability == 3 / 5
    assert m.availability_faulty == 1 / 3  # the cas mismatch was an answer
    assert m.availability_calm == 1.0
    assert m.to_dict()["convergence_time"] == 0.5


def test_empty_history_has_no_shares() -> None:
    m = measure([])
    assert m.availability is None
    assert m.stale_read_share is None
