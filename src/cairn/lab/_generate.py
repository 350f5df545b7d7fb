"""Random histories that are linearizable by construction.

Clients run operations against one in-memory object per key under a random
interleaving: each operation is invoked, takes effect at one atomic step
later, and completes later still, so the moment it took effect lies between
its invoke and completion. Some operations crash (``info``, or no completion
at all) before or after taking effect; the client then comes back under a new
process id, as in Jepsen. A cas that finds another value completes ``fail``.

Used to test the checker and to benchmark it; also handy to try a model.
"""

from __future__ import annotations

import random
from typing import Any, cast

from cairn.lab._history import History, Key, Op, OpType, Value

__all__ = ["random_history"]

_FS = {
    "register": ("read", "write"),
    "cas-register": ("read", "write", "cas"),
    "kv": ("get", "put", "append"),
}


def random_history(
    *,
    operations: int,
    clients: int,
    keys: int = 1,
    model: str = "cas-register",
    values: int = 5,
    indeterminate: float = 0.0,
    seed: int | None = None,
    timed: bool = False,
) -> History:
    """A random concurrent history of ``operations`` operations by ``clients`` clients.

    ``model`` picks the operations (``register``: read/write; ``cas-register``:
    read/write/cas; ``kv``: get/put/append). Written values are drawn from
    ``range(values)`` (as strings for kv; appends write unique strings). ``indeterminate`` is the
    chance that an operation crashes (half before, half after taking effect).
    ``timed`` adds a ``time`` to every event. The same ``seed`` gives the same
    history.
    """
    if operations < 0 or clients < 1 or keys < 1 or values < 1:
        raise ValueError(
            "random_history needs operations >= 0, clients >= 1, keys >= 1 and values >= 1; "
            f"got operations={operations}, clients={clients}, keys={keys}, values={values}"
        )
    if not 0.0 <= indeterminate <= 1.0:
        raise ValueError(f"indeterminate is a probability in [0, 1], not {indeterminate!r}")
    try:
        fs = _FS[model]
    except KeyError:
        raise ValueError(f"unknown model {model!r}; choose one of {', '.join(_FS)}") from None
    rng = random.Random(seed)
    initial: Value = "" if model == "kv" else None
    state: dict[Key, Value] = {}
    key_names: list[Key] = [None] if keys == 1 else [str(k) for k in range(keys)]
    process = list(range(clients))
    # Per client: None when idle, else [invoke op, applied?, result, failed?]
    pending: list[list[Any] | None] = [None] * clients
    events: list[Op] = []
    invoked = 0
    busy = 0

    def emit(op: Op) -> None:
        if timed:
            op = Op(op.process, op.type, op.f, op.key, op.value, len(events) * 1000)
        events.append(op)

    while invoked < operations or busy:
        c = rng.randrange(clients)
        slot = pending[c]
        if slot is None:
            if invoked >= operations:
                continue
            f = rng.choice(fs)
            key = rng.choice(key_names)
            value: Value
            if f in ("read", "get"):
                value = None
            elif f == "cas":
                value = (rng.randrange(values), rng.randrange(values))
            elif f == "append":
                value = f"x{process[c]}.{invoked} "
            elif f == "put":
                value = str(rng.randrange(values))
            else:
                value = rng.randrange(values)
            invoke = Op(process[c], OpType.INVOKE, f, key, value)
            emit(invoke)
            pending[c] = [invoke, False, None, False]
            invoked += 1
            busy += 1
            continue
        invoke, applied, result, failed = slot
        crash = rng.random() < indeterminate / 2
        if not applied and not crash:
            current = state.get(invoke.key, initial)
            result, new, failed = _apply(invoke, current)
            state[invoke.key] = new
            slot[1:] = [True, result, failed]
            continue
        if crash:
            # Lost: half the time an info completion, half the time nothing at all.
            if rng.random() < 0.5:
                emit(Op(process[c], OpType.INFO, invoke.f, invoke.key, invoke.value))
            process[c] += clients
        elif failed:
            emit(Op(process[c], OpType.FAIL, invoke.f, invoke.key, invoke.value))
        else:
            emit(Op(process[c], OpType.OK, invoke.f, invoke.key, result))
        pending[c] = None
        busy -= 1
    return History(events, source="<random>")


def _apply(invoke: Op, current: Value) -> tuple[Value, Value, bool]:
    """(returned value, new state, failed) of ``invoke`` on ``current``."""
    f = invoke.f
    if f in ("read", "get"):
        return current, current, False
    if f == "cas":
        expected, new = cast("tuple[Value, Value]", invoke.value)
        if current == expected:
            return invoke.value, new, False
        return invoke.value, current, True
    if f == "append":
        return invoke.value, f"{current}{invoke.value}", False
    return invoke.value, invoke.value, False
