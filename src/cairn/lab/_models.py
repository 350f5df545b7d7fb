"""Models: the sequential specifications a history is checked against.

A model is a deterministic state machine. ``step(state, op)`` says whether
``op`` could have taken effect in ``state`` and returning what it returned,
and which state follows. States must be hashable (the checker memoises on
them) and compare by value.

Every model here is P-compositional by key: each key is an independent object
with its own state, so the checker splits a history by ``op.key`` and checks
each part alone (Herlihy & Wing's locality).
"""

from __future__ import annotations

import abc
import json
from collections.abc import Hashable, Iterable, Sequence
from typing import Any, ClassVar, cast

from cairn.lab._history import Call, Key, Value

__all__ = [
    "MODELS",
    "CasRegisterModel",
    "KeyValueModel",
    "Model",
    "RegisterModel",
    "choose_model",
    "model_named",
]


class Model(abc.ABC):
    """A sequential specification for the linearizability checker.

    Subclasses declare ``name``, the operations they know (``fs``), which of
    those never change the state (``read_only``: the checker linearizes them
    greedily, so only declare an operation that leaves *every* state as it
    is), and implement :meth:`init` and :meth:`step`.
    """

    name: ClassVar[str]
    fs: ClassVar[frozenset[str]]
    read_only: ClassVar[frozenset[str]]

    @abc.abstractmethod
    def init(self) -> Hashable:
        """The state of every key before any operation."""

    @abc.abstractmethod
    def step(self, state: Any, op: Call) -> tuple[bool, Any]:
        """``(True, next_state)`` if ``op`` can take effect in ``state``, else ``(False, state)``.

        An indeterminate ``op`` (``op.indeterminate``) has no output: step it
        as if it took effect, whatever it would have returned.
        """

    def partition(self, calls: Iterable[Call]) -> dict[Key, list[Call]]:
        """Split operations into independent objects (by ``op.key``), keeping their order."""
        parts: dict[Key, list[Call]] = {}
        for call in calls:
            part = parts.get(call.key)
            if part is None:
                parts[call.key] = [call]
            else:
                part.append(call)
        return parts

    def prune(self, calls: list[Call]) -> list[Call]:
        """Drop indeterminate operations that cannot change one key's verdict.

        Called with one key's operations (in call order) before its search.
        The default keeps everything; override it only with a proof that every
        linearization using a dropped operation also works without it.
        """
        return calls

    def validate(self, op: Call) -> str | None:
        """Why ``op`` cannot be checked against this model, or ``None`` if it can."""
        if op.f not in self.fs:
            known = ", ".join(sorted(self.fs))
            return f"the {self.name} model has no operation {op.f!r} (it knows {known})"
        return None

    def describe(self, op: Call) -> str:
        """A short human description of ``op``, e.g. ``"read -> 3"`` or ``"write 4"``."""
        if op.f in self.read_only:
            text = f"{op.f} -> {'?' if op.indeterminate else show(op.output)}"
        else:
            text = f"{op.f} {show(op.input)}"
        return f"{text} (indeterminate)" if op.indeterminate else text

    def describe_state(self, state: Any) -> str:
        """A short human description of a state."""
        return show(state)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(initial={self.init()!r})"


class RegisterModel(Model):
    """A read/write register. ``read`` returns the value; ``write`` sets it."""

    name: ClassVar[str] = "register"
    fs: ClassVar[frozenset[str]] = frozenset({"read", "write"})
    read_only: ClassVar[frozenset[str]] = frozenset({"read"})

    def __init__(self, *, initial: Value = None) -> None:
        _check_hashable(initial)
        self._initial = initial

    def init(self) -> Hashable:
        return self._initial

    def step(self, state: Any, op: Call) -> tuple[bool, Any]:
        if op.f == "read":
            return op.indeterminate or op.output == state, state
        return True, op.input

    def prune(self, calls: list[Call]) -> list[Call]:
        """Drop indeterminate writes (and cas) of a value no operation observes.

        Such a write only ever leaves the register holding a value that no
        read returns and no cas expects, so whatever comes after it in a
        linearization is a write (nothing else can take effect then): it can
        be left out. A timed-out write during a partition is typically one
        (it never reached a majority), and each kept one would double the
        configurations the search may have to visit. Repeated until nothing
        more goes, since dropping a cas can unobserve the value it expected.
        """
        kept = calls
        while True:
            seen = self._observed(kept)
            if seen is None:
                return kept
            fewer = [c for c in kept if not (c.indeterminate and self._unobserved(c, seen))]
            if len(fewer) == len(kept):
                return kept
            kept = fewer

    def _observed(self, calls: list[Call]) -> set[Any] | None:
        """Every value some operation needs the register to hold, or ``None`` to prune nothing."""
        seen: set[Any] = set()
        for c in calls:
            if c.f in self.read_only:
                if not c.indeterminate:
                    seen.add(c.output)
            elif c.f == "cas":
                seen.add(cast("tuple[Value, Value]", c.input)[0])
            elif c.f not in _SETTERS:
                return None  # e.g. an append: it builds on the value, which it observes
        return seen

    def _unobserved(self, op: Call, seen: set[Any]) -> bool:
        if op.f in _SETTERS:
            return op.input not in seen
        if op.f == "cas":
            return cast("tuple[Value, Value]", op.input)[1] not in seen
        return False


_SETTERS = frozenset({"write", "put"})


class CasRegisterModel(RegisterModel):
    """A register with compare-and-set: ``cas [from, to]`` sets ``to`` if it holds ``from``.

    A cas that completed ``ok`` succeeded; one that failed is dropped from the
    history (it did not happen); an indeterminate one either swapped or did
    nothing.
    """

    name: ClassVar[str] = "cas-register"
    fs: ClassVar[frozenset[str]] = frozenset({"read", "write", "cas"})

    def step(self, state: Any, op: Call) -> tuple[bool, Any]:
        f = op.f
        if f == "read":
            return op.indeterminate or op.output == state, state
        if f == "write":
            return True, op.input
        expected, new = cast("tuple[Value, Value]", op.input)  # validate() saw a pair
        if state == expected:
            return True, new
        # An indeterminate cas that found another value did nothing.
        return op.indeterminate, state

    def validate(self, op: Call) -> str | None:
        reason = super().validate(op)
        if reason is None and op.f == "cas" and not _is_pair(op.input):
            return f"a cas needs a [from, to] pair as its value, not {show(op.input)}"
        return reason

    def describe(self, op: Call) -> str:
        if op.f == "cas" and _is_pair(op.input):
            text = f"cas {show(op.input[0])}->{show(op.input[1])}"  # type: ignore[index]
            return f"{text} (indeterminate)" if op.indeterminate else text
        return super().describe(op)


class KeyValueModel(CasRegisterModel):
    """A key-value store: ``get``/``put``/``append`` (strings) and ``read``/``write``/``cas``.

    Each key starts at ``initial`` (the empty string by default, as a get of
    a missing key returns in Porcupine's and Jepsen's kv tests).
    """

    name: ClassVar[str] = "kv"
    fs: ClassVar[frozenset[str]] = frozenset({"get", "put", "append", "read", "write", "cas"})
    read_only: ClassVar[frozenset[str]] = frozenset({"get", "read"})

    def __init__(self, *, initial: Value = "") -> None:
        super().__init__(initial=initial)

    def step(self, state: Any, op: Call) -> tuple[bool, Any]:
        f = op.f
        if f == "get" or f == "read":
            return op.indeterminate or op.output == state, state
        if f == "append":
            if isinstance(state, str):
                return True, state + op.input  # type: ignore[operator]  # validate() saw a str
            return False, state
        if f == "put" or f == "write":
            return True, op.input
        return super().step(state, op)

    def validate(self, op: Call) -> str | None:
        reason = super().validate(op)
        if reason is None and op.f == "append" and not isinstance(op.input, str):
            return f"an append needs a string value, not {show(op.input)}"
        return reason


MODELS: dict[str, type[Model]] = {
    RegisterModel.name: RegisterModel,
    CasRegisterModel.name: CasRegisterModel,
    KeyValueModel.name: KeyValueModel,
}
"""The built-in models by name."""


_DEFAULT: Any = object()


def model_named(name: str, *, initial: Value = _DEFAULT) -> Model:
    """The built-in model called ``name``, with its default initial value unless given."""
    try:
        cls = MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}") from None
    if initial is _DEFAULT:
        return cls()
    return cls(initial=initial)  # type: ignore[call-arg]


def choose_model(fs: Iterable[str]) -> Model:
    """The smallest built-in model that knows every operation in ``fs``.

    Only read and write: a register; with cas too: a cas register; anything
    else: the key-value model. Every model checks each key on its own.
    """
    names = set(fs)
    for cls in (RegisterModel, CasRegisterModel):
        if names <= cls.fs:
            return cls()
    return KeyValueModel()


def show(value: object) -> str:
    """Render a value the way cairn's JSON format writes it."""
    if isinstance(value, tuple):
        return "[" + ", ".join(show(item) for item in value) + "]"
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def _is_pair(value: object) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2


def _check_hashable(initial: object) -> None:
    try:
        hash(initial)
    except TypeError:
        raise ValueError(
            f"initial must be hashable (a scalar or a tuple), not {type(initial).__name__}; "
            "freeze lists with cairn.lab.freeze()"
        ) from None
