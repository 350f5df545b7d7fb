"""Properties: generated histories check linearizable; broken ones don't; and the
search agrees with a brute-force reference on small histories of both verdicts."""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cairn.lab import Call, History, Model, Op, OpType, Verdict, check, model_named, random_history

MODELS = ("register", "cas-register", "kv")


@st.composite
def generated(draw: st.DrawFn) -> History:
    model = draw(st.sampled_from(MODELS))
    # Lost appends are the checker's hard case (each one may go anywhere and
    # every place gives a new state): docs/lab.md, "Limits". Keep them few.
    rates = [0.0, 0.1] if model == "kv" else [0.0, 0.1, 0.3]
    return random_history(
        operations=draw(st.integers(0, 60)),
        clients=draw(st.integers(1, 6)),
        keys=draw(st.integers(1, 3)),
        model=model,
        values=draw(st.integers(1, 4)),
        indeterminate=draw(st.sampled_from(rates)),
        seed=draw(st.integers(0, 2**32)),
        timed=draw(st.booleans()),
    )


histories = generated()


@settings(max_examples=150, deadline=None)
@given(histories)
def test_histories_from_a_sequential_schedule_are_linearizable(history: History) -> None:
    result = check(history, timeout=30)
    assert result.verdict is Verdict.LINEARIZABLE, result.report()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(histories, st.data())
def test_a_read_of_a_value_never_written_is_not_linearizable(
    history: History, data: st.DataObject
) -> None:
    reads = [i for i, op in enumerate(history) if op.type is OpType.OK and op.f in ("read", "get")]
    assume(reads)
    i = data.draw(st.sampled_from(reads))
    ops = list(history)
    ops[i] = dataclasses.replace(ops[i], value="never written")
    result = check(History(ops), timeout=30)
    assert result.verdict is Verdict.NOT_LINEARIZABLE
    violation = result.violation
    assert violation is not None
    assert i in {c.complete_index for c in violation.window}, "the window holds the broken read"


# -- a brute-force reference ---------------------------------------------------


def brute_force(calls: Sequence[Call], model: Model) -> bool:
    """Try every order allowed by real time; indeterminate operations may be left out."""
    for part in model.partition(calls).values():
        ops = tuple(part)
        need = frozenset(i for i, c in enumerate(ops) if not c.indeterminate)

        @functools.cache
        def search(
            done: frozenset[int],
            state: object,
            ops: tuple[Call, ...] = ops,
            need: frozenset[int] = need,
        ) -> bool:
            if need <= done:
                return True
            for i, c in enumerate(ops):
                if i in done:
                    continue
                # c can go next unless some op left undone returned before c was invoked.
                if any(j not in done and ops[j].ret < c.call for j in range(len(ops))):
                    continue
                ok, new = model.step(state, c)
                if ok and search(done | {i}, new):
                    return True
            return False

        if not search(frozenset(), model.init()):
            return False
    return True


@st.composite
def small_histories(draw: st.DrawFn) -> tuple[History, str]:
    """A short generated history whose reads are then scrambled: either verdict."""
    model = draw(st.sampled_from(MODELS))
    history = random_history(
        operations=draw(st.integers(1, 8)),
        clients=draw(st.integers(1, 4)),
        keys=draw(st.integers(1, 2)),
        model=model,
        values=3,
        indeterminate=draw(st.sampled_from([0.0, 0.3, 0.6])),
        seed=draw(st.integers(0, 2**32)),
    )
    ops = list(history)
    for i, op in enumerate(ops):
        if op.type is OpType.OK and op.f in ("read", "get") and draw(st.booleans()):
            seen = draw(st.sampled_from([None, 0, 1, 2, ""]))
            ops[i] = dataclasses.replace(op, value=seen)
    return History(ops), model


@settings(max_examples=400, deadline=None)
@given(small_histories())
def test_search_agrees_with_brute_force(case: tuple[History, str]) -> None:
    history, name = case
    model = model_named(name)
    expected = brute_force(history.calls(), model)
    result = check(history, model)
    assert result.linearizable is expected, (expected, result.report(), list(history))


def test_brute_force_sees_both_verdicts() -> None:
    # The reference itself must be able to say no, or the comparison proves nothing.
    model = model_named("register")
    ok = History(
        [Op.invoke(0, "write", 1), Op.ok(0, "write", 1), Op.invoke(0, "read"), Op.ok(0, "read", 1)]
    )
    bad = History(
        [Op.invoke(0, "write", 1), Op.ok(0, "write", 1), Op.invoke(0, "read"), Op.ok(0, "read", 2)]
    )
    assert brute_force(ok.calls(), model)
    assert not brute_force(bad.calls(), model)
    assert math.isinf(History([Op.invoke(0, "write", 1)]).calls()[0].ret)
