"""The checker on small hand-written histories: both verdicts, and why."""

from __future__ import annotations

import json
import math

import pytest

from cairn.lab import (
    CasRegisterModel,
    CheckResult,
    History,
    HistoryError,
    KeyValueModel,
    Op,
    RegisterModel,
    Verdict,
    check,
    random_history,
)

W, R = "write", "read"


def verdict(ops: list[Op], model: RegisterModel | None = None) -> Verdict:
    return check(History(ops), model or CasRegisterModel()).verdict


LIN, NOT = Verdict.LINEARIZABLE, Verdict.NOT_LINEARIZABLE


def test_empty_history_is_linearizable() -> None:
    result = check([], RegisterModel())
    assert result.linearizable
    assert result.keys == ()
    assert result.operations == 0


def test_sequential_write_then_read() -> None:
    ops = [Op.invoke(0, W, 1), Op.ok(0, W, 1), Op.invoke(0, R), Op.ok(0, R, 1)]
    assert verdict(ops) is LIN


def test_read_of_a_value_never_written() -> None:
    ops = [Op.invoke(0, W, 1), Op.ok(0, W, 1), Op.invoke(1, R), Op.ok(1, R, 7)]
    result = check(ops, RegisterModel())
    assert result.verdict is NOT
    violation = result.violation
    assert violation is not None
    assert (violation.blocker.f, violation.blocker.output) == (R, 7)
    assert violation.state == 1
    assert violation.linearized == 1
    assert "impossible in state 1" in violation.text
    assert "read -> 7" in violation.text


def test_stale_read_after_write_completed() -> None:
    ops = [Op.invoke(0, W, 1), Op.ok(0, W, 1), Op.invoke(1, R), Op.ok(1, R, None)]
    assert verdict(ops) is NOT


def test_read_concurrent_with_write_may_see_either_value() -> None:
    for seen in (None, 1):
        ops = [Op.invoke(0, W, 1), Op.invoke(1, R), Op.ok(1, R, seen), Op.ok(0, W, 1)]
        assert verdict(ops) is LIN, seen


def test_concurrent_writes_then_two_sequential_reads_must_agree() -> None:
    writes = [Op.invoke(0, W, 1), Op.invoke(1, W, 2), Op.ok(0, W, 1), Op.ok(1, W, 2)]
    reads = [Op.invoke(2, R), Op.ok(2, R, 2), Op.invoke(2, R), Op.ok(2, R, 2)]
    assert verdict(writes + reads) is LIN
    flip = [Op.invoke(2, R), Op.ok(2, R, 1), Op.invoke(2, R), Op.ok(2, R, 2)]
    assert verdict(writes + flip) is NOT
    either_one = [Op.invoke(2, R), Op.ok(2, R, 1)]
    assert verdict(writes + either_one) is LIN


def test_indeterminate_write_may_be_assumed_to_have_happened() -> None:
    ops = [
        Op.invoke(0, W, 1),
        Op.ok(0, W, 1),
        Op.invoke(1, W, 2),
        Op.info(1, W, "timed-out"),
        Op.invoke(2, R),
        Op.ok(2, R, 2),
        Op.invoke(2, R),
        Op.ok(2, R, 2),
    ]
    assert verdict(ops) is LIN


def test_indeterminate_write_may_be_assumed_not_to_have_happened() -> None:
    ops = [Op.invoke(1, W, 2), Op.info(1, W), Op.invoke(2, R), Op.ok(2, R, None)]
    assert verdict(ops) is LIN


def test_indeterminate_write_cannot_take_effect_before_its_invoke() -> None:
    ops = [Op.invoke(2, R), Op.ok(2, R, 2), Op.invoke(1, W, 2), Op.info(1, W)]
    assert verdict(ops) is NOT


def test_indeterminate_write_takes_effect_once() -> None:
    # 2 (maybe), then 3, then 2 again: the one indeterminate write cannot explain both 2s.
    ops = [
        Op.invoke(1, W, 2),  # never completes
        Op.invoke(0, R),
        Op.ok(0, R, 2),
        Op.invoke(0, W, 3),
        Op.ok(0, W, 3),
        Op.invoke(0, R),
        Op.ok(0, R, 2),
    ]
    assert verdict(ops) is NOT


def test_failed_cas_did_not_happen() -> None:
    ops = [
        Op.invoke(0, W, 0),
        Op.ok(0, W, 0),
        Op.invoke(0, "cas", [0, 1]),
        Op.fail(0, "cas", [0, 1]),
        Op.invoke(0, R),
        Op.ok(0, R, 1),
    ]
    assert verdict(ops) is NOT
    as_info = [*ops[:3], Op.info(0, "cas", [0, 1]), *ops[4:]]
    assert verdict(as_info) is LIN


def test_ok_cas_needs_the_expected_value() -> None:
    ops = [Op.invoke(0, W, 0), Op.ok(0, W, 0), Op.invoke(0, "cas", [5, 6]), Op.ok(0, "cas", [5, 6])]
    assert verdict(ops) is NOT
    ops[2:] = [Op.invoke(0, "cas", [0, 6]), Op.ok(0, "cas", [0, 6])]
    assert verdict([*ops, Op.invoke(1, R), Op.ok(1, R, 6)]) is LIN


def test_indeterminate_cas_that_would_change_nothing_is_never_needed() -> None:
    # The cas 0->1 can only help if it swapped; it did not, since 1 was never read.
    ops = [
        Op.invoke(0, W, 0),
        Op.ok(0, W, 0),
        Op.invoke(1, "cas", [9, 0]),  # can never swap: state is never 9
        Op.invoke(2, R),
        Op.ok(2, R, 0),
    ]
    assert verdict(ops) is LIN


def test_indeterminate_read_is_ignored() -> None:
    ops = [Op.invoke(0, R), Op.info(0, R), Op.invoke(1, R), Op.ok(1, R, None)]
    result = check(ops, RegisterModel())
    assert result.linearizable
    assert result.keys[0].operations == 2


def test_keys_are_checked_independently() -> None:
    x_then_y = [
        Op.invoke(0, W, 1, key="x"),
        Op.ok(0, W, 1, key="x"),
        Op.invoke(1, R, key="y"),
        Op.ok(1, R, None, key="y"),
    ]
    assert verdict(x_then_y) is LIN
    # The same read on x instead would be stale.
    bad = [*x_then_y[:2], Op.invoke(1, R, key="x"), Op.ok(1, R, None, key="x")]
    assert verdict(bad) is NOT


def test_a_failing_key_stops_the_others() -> None:
    good = random_history(operations=3000, clients=5, keys=1, seed=3)
    ops = [Op(op.process, op.type, op.f, "big", op.value) for op in good]
    ops += [Op.invoke(99, R, key="bad"), Op.ok(99, R, "never written", key="bad")]
    result = check(ops, CasRegisterModel())
    assert result.verdict is NOT
    by_key = {r.key: r for r in result.keys}
    assert by_key["bad"].verdict is NOT
    assert by_key["big"].verdict is Verdict.UNKNOWN, "the long key is abandoned, not finished"
    assert result.violation is by_key["bad"].violation
    assert 'of key "bad"' in result.report()


def test_timed_history_ties_are_concurrent() -> None:
    ops = [
        Op.invoke(0, W, 1, time=1),
        Op.ok(0, W, 1, time=5),
        Op.invoke(1, R, time=5),
        Op.ok(1, R, None, time=6),
    ]
    assert verdict(ops) is LIN
    later = [*ops[:2], Op.invoke(1, R, time=6), Op.ok(1, R, None, time=7)]
    assert verdict(later) is NOT


def test_model_defaults_from_operations() -> None:
    ops = [Op.invoke(0, "append", "a", key="k"), Op.ok(0, "append", "a", key="k")]
    ops += [Op.invoke(0, "get", key="k"), Op.ok(0, "get", "a", key="k")]
    result = check(ops)
    assert result.model == "kv"
    assert result.linearizable


def test_operation_unknown_to_the_model_is_bad_input() -> None:
    h = History([Op.invoke(0, "append", "a")], source="h", lines=[4])
    with pytest.raises(HistoryError, match=r"^h:4: the register model has no operation 'append'"):
        check(h, RegisterModel())
    with pytest.raises(HistoryError, match="pair"):
        check([Op.invoke(0, "cas", 3)], CasRegisterModel())


@pytest.mark.parametrize("timeout", [0, -1, math.nan])
def test_bad_timeout_is_refused(timeout: float) -> None:
    with pytest.raises(ValueError, match="timeout must be a positive number of seconds"):
        check([], RegisterModel(), timeout=timeout)


class TickingClock:
    """Each reading is one second after the last: every slice "takes" a second."""

    def __init__(self) -> None:
        self.now = 0.0
        self.readings = 0

    def monotonic(self) -> float:
        self.now += 1.0
        self.readings += 1
        return self.now

    def sleep(self, seconds: float) -> None:  # pragma: no cover - never called
        raise AssertionError

    async def asleep(self, seconds: float) -> None:  # pragma: no cover - never called
        raise AssertionError


def test_timeout_gives_unknown_and_stops() -> None:
    history = random_history(operations=2000, clients=5, keys=2, seed=1)
    clock = TickingClock()
    # Start at 1 s, deadline 1.5 s: the reading after the first slice is past it.
    result = check(history, CasRegisterModel(), timeout=0.5, clock=clock)
    assert result.verdict is Verdict.UNKNOWN
    assert all(r.verdict is Verdict.UNKNOWN and r.violation is None for r in result.keys)
    assert clock.readings == 3, "start, after the first slice, end"
    assert result.elapsed == 2.0
    assert "unknown: the time limit was hit" in result.report()
    untimed = check(history, CasRegisterModel(), clock=TickingClock())
    assert untimed.linearizable


def test_result_to_dict_is_json() -> None:
    ops = [Op.invoke(0, "cas", [1, 2]), Op.ok(0, "cas", [1, 2])]
    result = check(ops, KeyValueModel(initial=1), timeout=5)
    assert result.linearizable
    good = json.loads(json.dumps(result.to_dict()))
    assert good["verdict"] == "linearizable"
    assert good["keys"][0]["violation"] is None
    bad = check([Op.invoke(0, R), Op.ok(0, R, 5)], RegisterModel())
    data = json.loads(json.dumps(bad.to_dict()))
    assert data["verdict"] == "not_linearizable"
    violation = data["keys"][0]["violation"]
    assert violation["blocker"]["output"] == 5
    assert violation["explanation"] == bad.violation.text  # type: ignore[union-attr]
    assert data["keys"][0]["states"] == bad.keys[0].states


def test_report_mentions_verdict_and_counts() -> None:
    result = check([Op.invoke(0, W, 1), Op.ok(0, W, 1)], RegisterModel())
    assert isinstance(result, CheckResult)
    assert result.report().startswith("linearizable (1 operations, 1 key, register model")
    assert result.violation is None
    bad = check([Op.invoke(0, W, 1), Op.ok(0, W, 1), Op.invoke(0, R), Op.ok(0, R, 2)], None)
    text = bad.report()
    assert text.startswith("NOT linearizable")
    assert "1 of 2 operations fit in an order" in text
    assert "leave the state at 1" in text


def test_violation_at_the_start_names_the_initial_state() -> None:
    bad = check([Op.invoke(0, R), Op.ok(0, R, "x" * 200)], RegisterModel())
    assert bad.violation is not None
    assert "Starting from the initial state null" in bad.violation.text
    assert "..." in bad.violation.text, "long values are clipped"


def partition_history(lost: int) -> list[Op]:
    """A partition: the isolated node's writes time out while the majority goes on."""
    ops = [Op.invoke(100 + p, W, 1000 + p) for p in range(lost)]  # never answered
    for i in range(lost):
        ops += [Op.invoke(0, W, i), Op.invoke(1, R), Op.ok(0, W, i), Op.ok(1, R, i)]
    return ops


def test_lost_writes_nobody_read_do_not_multiply_the_search() -> None:
    # Each unread indeterminate write may or may not have happened; kept, they
    # double the configurations a failing search must rule out (16 of them
    # took minutes). Dropped before the search, the proof is linear.
    stale = [Op.invoke(2, R), Op.ok(2, R, 0)]
    result = check(partition_history(16) + stale, CasRegisterModel())
    assert result.verdict is NOT
    assert result.keys[0].operations == 16 * 3 + 1
    assert result.keys[0].states <= 2 * 16
    assert check(partition_history(16), CasRegisterModel()).verdict is LIN
