"""The random history generator: shape, determinism, and its arguments."""

from __future__ import annotations

import pytest

from cairn.lab import OpType, random_history


def test_same_seed_same_history() -> None:
    a = random_history(operations=200, clients=4, keys=3, indeterminate=0.2, seed=5)
    b = random_history(operations=200, clients=4, keys=3, indeterminate=0.2, seed=5)
    c = random_history(operations=200, clients=4, keys=3, indeterminate=0.2, seed=6)
    assert a == b
    assert a != c


def test_shape() -> None:
    h = random_history(operations=500, clients=5, keys=3, indeterminate=0.2, seed=1, timed=True)
    invokes = [op for op in h if op.type is OpType.INVOKE]
    assert len(invokes) == 500
    assert {op.key for op in h} == {"0", "1", "2"}
    types = {op.type for op in h}
    assert types == set(OpType), "ok, fail (cas), info (crashes) all occur"
    assert any(c.complete_index is None for c in h.calls()), "some invokes never complete"
    times = [op.time for op in h]
    assert times == sorted(times)
    # A crashed client comes back under a new process id.
    assert max(op.process for op in h if isinstance(op.process, int)) >= 5


def test_kv_uses_strings() -> None:
    h = random_history(operations=100, clients=3, model="kv", seed=2)
    assert {op.f for op in h} == {"get", "put", "append"}
    assert all(isinstance(op.value, str) for op in h if op.type is OpType.OK)


def test_single_key_is_none() -> None:
    h = random_history(operations=10, clients=2, model="register", seed=3)
    assert h.keys() == frozenset({None})
    assert h.fs() <= {"read", "write"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"operations": -1, "clients": 1}, "operations >= 0"),
        ({"operations": 1, "clients": 0}, "clients >= 1"),
        ({"operations": 1, "clients": 1, "keys": 0}, "keys >= 1"),
        ({"operations": 1, "clients": 1, "indeterminate": 1.5}, "a probability in"),
        ({"operations": 1, "clients": 1, "model": "queue"}, "unknown model 'queue'"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        random_history(**kwargs)  # type: ignore[arg-type]
