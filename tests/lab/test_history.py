"""Pairing events into operations: ok, fail, info, never-completed, crashes, time order."""

from __future__ import annotations

import math

import pytest

from cairn.lab import Call, History, HistoryError, Op, OpType, freeze


def test_ok_pairs_with_invoke_and_fail_is_dropped() -> None:
    h = History(
        [
            Op.invoke(0, "write", 1),
            Op.invoke(1, "cas", [1, 2]),
            Op.ok(0, "write", 1),
            Op.fail(1, "cas", [1, 2]),
            Op.invoke(1, "read"),
            Op.ok(1, "read", 1),
        ]
    )
    calls = h.calls()
    assert [(c.f, c.input, c.output) for c in calls] == [("write", 1, 1), ("read", None, 1)]
    assert [(c.call, c.ret) for c in calls] == [(0, 2), (4, 5)]
    assert [c.id for c in calls] == [0, 1]
    assert not any(c.indeterminate for c in calls)


def test_info_and_never_completed_are_indeterminate() -> None:
    h = History(
        [
            Op.invoke(0, "write", 1),
            Op.invoke(1, "write", 2),
            Op.info(0, "write", "timed-out"),
            Op.invoke(2, "write", 3),  # process 0 came back as 2; process 1 never completes
        ]
    )
    calls = h.calls()
    assert [c.input for c in calls] == [1, 2, 3]
    assert all(c.indeterminate and c.ret == math.inf and c.output is None for c in calls)
    assert calls[0].complete_index == 2
    assert calls[1].complete_index is None
    assert h.where(calls[0]) == "lines 1-3"
    assert h.where(calls[1]) == "line 2, never completed"


def test_calls_are_ordered_by_invoke_even_when_completed_out_of_order() -> None:
    h = History(
        [
            Op.invoke(0, "write", 1),
            Op.invoke(1, "write", 2),
            Op.ok(1, "write", 2),
            Op.ok(0, "write", 1),
        ]
    )
    assert [c.input for c in h.calls()] == [1, 2]


def test_nemesis_events_are_ignored() -> None:
    h = History([Op.info("nemesis", "start"), Op.invoke(0, "read"), Op.info("nemesis", "start")])
    assert [c.f for c in h.calls()] == ["read"]
    assert h.fs() == frozenset({"read"})


@pytest.mark.parametrize(
    ("ops", "message", "line"),
    [
        ([Op.invoke(0, "read"), Op.invoke(0, "write", 1)], "invoked 'write' while its 'read'", 2),
        ([Op.ok(3, "read", 1)], "ok of 'read' by process 3 without an invoke", 1),
        ([Op.invoke(0, "read"), Op.ok(0, "write", 1)], "completes process 0's 'read'", 2),
        (
            [Op.invoke(0, "read", key="x"), Op.ok(0, "read", 1, key="y")],
            "names key 'y' but its invoke",
            2,
        ),
        (
            [Op.invoke(0, "read", time=10), Op.ok(0, "read", 1, time=5)],
            "completes at time 5, before its invoke",
            2,
        ),
    ],
)
def test_events_that_do_not_pair_raise_with_line(ops: list[Op], message: str, line: int) -> None:
    h = History(ops, source="h.jsonl")
    with pytest.raises(HistoryError, match=message) as info:
        h.calls()
    assert info.value.line == line
    assert str(info.value).startswith(f"h.jsonl:{line}: ")


def test_lines_map_errors_to_source_lines() -> None:
    h = History([Op.ok(0, "read")], source="f", lines=[7])
    with pytest.raises(HistoryError, match=r"^f:7: ") as info:
        h.calls()
    assert isinstance(info.value, ValueError)


def test_completion_may_omit_the_key() -> None:
    h = History([Op.invoke(0, "read", key="x"), Op.ok(0, "read", 3)])
    assert h.calls()[0].key == "x"


def test_times_order_events_and_ties_overlap() -> None:
    # Written out of order; by time the read (5..6) overlaps the write (1..5).
    h = History(
        [
            Op.invoke(1, "read", time=5),
            Op.invoke(0, "write", 1, time=1),
            Op.ok(0, "write", 1, time=5),
            Op.ok(1, "read", None, time=6),
        ]
    )
    write, read = h.calls()
    assert write.f == "write"
    assert read.call < write.ret, "an invoke at the same time as a completion counts as before it"


def test_times_ignored_unless_every_event_has_one() -> None:
    h = History([Op.invoke(0, "write", 1, time=9), Op.ok(0, "write", 1)])
    assert [(c.call, c.ret) for c in h.calls()] == [(0, 1)]


def test_history_is_a_sequence_with_indexes() -> None:
    ops = [Op.invoke(0, "read"), Op.ok(0, "read", 1)]
    h = History(ops, source="x")
    assert len(h) == 2
    assert [op.index for op in h] == [0, 1]
    assert h[1].type is OpType.OK
    assert list(h[0:1]) == [h[0]]
    assert h == History(ops)
    assert h != ops
    assert "2 events" in repr(h)
    assert h.line_of(1) == 2
    assert h.keys() == frozenset({None})


def test_history_rejects_non_ops_and_bad_lines() -> None:
    with pytest.raises(TypeError, match="Op events"):
        History([("invoke", 0)])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="lines has 1 entries for 2 events"):
        History([Op.invoke(0, "read"), Op.ok(0, "read")], lines=[1])


def test_op_normalises_type_and_lists() -> None:
    op = Op(0, "ok", "cas", key=["a", 1], value=[1, [2, 3]])  # type: ignore[arg-type]
    assert op.type is OpType.OK
    assert op.value == (1, (2, 3))
    assert op.key == ("a", 1)
    hash(op)


def test_freeze_rejects_maps() -> None:
    assert freeze([1, "a", None, [True]]) == (1, "a", None, (True,))
    with pytest.raises(TypeError, match="not dict"):
        freeze({"a": 1})


def test_call_is_frozen() -> None:
    call = History([Op.invoke(0, "read")]).calls()[0]
    assert isinstance(call, Call)
    with pytest.raises(AttributeError):
        call.f = "write"  # type: ignore[misc]
