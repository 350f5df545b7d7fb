"""The sequential specifications, one step at a time."""

from __future__ import annotations

import math
import re

import pytest

from cairn.lab import (
    MODELS,
    Call,
    CasRegisterModel,
    KeyValueModel,
    RegisterModel,
    choose_model,
    model_named,
)
from cairn.lab._models import show


def call(
    f: str, input: object = None, output: object = None, *, indeterminate: bool = False
) -> Call:
    return Call(0, 0, f, None, input, output, indeterminate, 0, math.inf, 0, None)  # type: ignore[arg-type]


def test_register() -> None:
    m = RegisterModel()
    assert m.init() is None
    assert m.step(None, call("read", output=None)) == (True, None)
    assert m.step(3, call("read", output=4)) == (False, 3)
    assert m.step(3, call("read", indeterminate=True)) == (True, 3)
    assert m.step(3, call("write", 4)) == (True, 4)
    assert m.read_only == frozenset({"read"})
    assert RegisterModel(initial=0).init() == 0


def test_cas_register() -> None:
    m = CasRegisterModel()
    assert m.step(1, call("cas", (1, 2), (1, 2))) == (True, 2)
    assert m.step(0, call("cas", (1, 2), (1, 2))) == (False, 0)
    # Indeterminate: swapped if it could, else did nothing.
    assert m.step(1, call("cas", (1, 2), indeterminate=True)) == (True, 2)
    assert m.step(0, call("cas", (1, 2), indeterminate=True)) == (True, 0)
    assert m.step(5, call("write", 6)) == (True, 6)
    assert m.step(5, call("read", output=5)) == (True, 5)


def test_key_value() -> None:
    m = KeyValueModel()
    assert m.init() == ""
    assert m.step("", call("append", "x")) == (True, "x")
    assert m.step("x", call("get", output="x")) == (True, "x")
    assert m.step("x", call("get", output="")) == (False, "x")
    assert m.step("x", call("put", "y")) == (True, "y")
    assert m.step(3, call("append", "x")) == (False, 3)
    assert m.step("a", call("cas", ("a", "b"), ("a", "b"))) == (True, "b")
    assert m.step("a", call("write", "c")) == (True, "c")
    assert m.step("a", call("read", output="a")) == (True, "a")


@pytest.mark.parametrize(
    ("model", "op", "message"),
    [
        (RegisterModel(), call("cas", (1, 2)), "the register model has no operation 'cas'"),
        (CasRegisterModel(), call("cas", 1), r"a cas needs a \[from, to\] pair"),
        (CasRegisterModel(), call("cas", (1, 2, 3)), "pair"),
        (KeyValueModel(), call("append", 3), "an append needs a string"),
        (KeyValueModel(), call("incr", 3), "it knows append, cas, get, put, read, write"),
    ],
)
def test_validate_says_what_is_wrong(model: RegisterModel, op: Call, message: str) -> None:
    reason = model.validate(op)
    assert reason is not None
    assert re.search(message, reason), reason


def test_validate_accepts_good_ops() -> None:
    assert KeyValueModel().validate(call("cas", [1, 2])) is None
    assert KeyValueModel().validate(call("append", "x")) is None


def test_partition_by_key_keeps_order() -> None:
    calls = [
        Call(i, 0, "write", key, i, None, False, i, i + 1, 0, 1)
        for i, key in enumerate(["a", "b", "a", None])
    ]
    parts = RegisterModel().partition(calls)
    assert {k: [c.id for c in v] for k, v in parts.items()} == {"a": [0, 2], "b": [1], None: [3]}


def test_describe() -> None:
    m = KeyValueModel()
    assert m.describe(call("read", output=3)) == "read -> 3"
    assert m.describe(call("get", indeterminate=True)) == "get -> ? (indeterminate)"
    assert m.describe(call("append", "x")) == 'append "x"'
    assert m.describe(call("cas", (1, 2))) == "cas 1->2"
    assert m.describe(call("cas", (1, 2), indeterminate=True)) == "cas 1->2 (indeterminate)"
    assert m.describe(call("cas", 7)) == "cas 7"
    assert m.describe_state(("a", None)) == '["a", null]'
    assert show(object()).startswith("<object")
    assert repr(m) == "KeyValueModel(initial='')"


def test_choose_model_and_model_named() -> None:
    assert isinstance(choose_model({"read", "write"}), RegisterModel)
    assert type(choose_model({"read", "cas"})) is CasRegisterModel
    assert type(choose_model({"get", "append"})) is KeyValueModel
    assert type(choose_model(set())) is RegisterModel
    assert sorted(MODELS) == ["cas-register", "kv", "register"]
    assert model_named("kv").init() == ""
    assert model_named("kv", initial=None).init() is None
    with pytest.raises(ValueError, match="unknown model 'queue'; choose one of"):
        model_named("queue")


def test_unhashable_initial_is_refused() -> None:
    with pytest.raises(ValueError, match="initial must be hashable"):
        RegisterModel(initial=[1])  # type: ignore[arg-type]


def test_prune_drops_indeterminate_writes_nobody_observes() -> None:
    m = CasRegisterModel()
    lost = call("write", 7, indeterminate=True)
    seen = call("write", 8, indeterminate=True)
    swap_seen = call("cas", (8, 9), indeterminate=True)
    swap_lost = call("cas", (9, 10), indeterminate=True)
    calls = [lost, seen, swap_seen, swap_lost, call("read", output=9), call("write", 1, 1)]
    # 7 and 10 are read and expected by no one; 8 is expected by a cas, 9 read.
    assert m.prune(calls) == calls[1:3] + calls[4:]
    # Determinate operations always stay, observed or not.
    assert m.prune([call("write", 5, 5)]) == [call("write", 5, 5)]


def test_prune_repeats_until_nothing_more_goes() -> None:
    m = CasRegisterModel()
    # The write of 3 is observed only by a cas whose own result no one sees.
    chain = [call("write", 3, indeterminate=True), call("cas", (3, 4), indeterminate=True)]
    assert m.prune([*chain, call("read", output=None)]) == [call("read", output=None)]


def test_prune_keeps_everything_once_values_are_built_on() -> None:
    # An append builds on the value it finds, so a put may be observed through it.
    m = KeyValueModel()
    calls = [
        call("put", "a", indeterminate=True),
        call("append", "b", "b"),
        call("get", output="ab"),
    ]
    assert m.prune(calls) == calls
    assert KeyValueModel().prune(calls[:1]) == []
    assert RegisterModel().prune([call("write", 2, indeterminate=True)]) == []
