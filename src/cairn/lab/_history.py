"""The history model: events as recorded, and the operations they pair into.

A history is what clients saw, in real-time order: each operation is an
``invoke`` event and, later, one completion from the same process:

- ``ok``: it happened, and ``value`` is what it returned;
- ``fail``: it definitely did not happen, so it is dropped;
- ``info``: nobody knows (a timeout, a crash). Like an invoke that never
  completes, it becomes *indeterminate*: it may have taken effect at any
  moment after its invoke, or never; its return time is +infinity.

A process runs one operation at a time. Jepsen gives a crashed process a new
id, so an ``info`` simply ends that process's operation.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import NoReturn, TypeAlias, overload

from cairn.lab._errors import HistoryError

__all__ = ["Call", "History", "Key", "Op", "OpType", "Process", "Value", "freeze"]

Value: TypeAlias = "bool | int | float | str | tuple[Value, ...] | None"
"""What an operation reads or writes: JSON scalars and (frozen) lists."""

Key: TypeAlias = Value
"""What a history is partitioned by; ``None`` for a single register."""

Process: TypeAlias = "int | str"

# Jepsen's nemesis logs its fault injections in the same history; they are
# not client operations and take no part in linearizability.
_NEMESIS = "nemesis"


class OpType(enum.StrEnum):
    """The four event types of a Jepsen-style history."""

    INVOKE = "invoke"
    OK = "ok"
    FAIL = "fail"
    INFO = "info"


def freeze(value: object) -> Value:
    """Return ``value`` with lists turned into tuples, so that states can be hashed.

    Raises :class:`TypeError` for anything that is not a JSON scalar or list.
    """
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return tuple(freeze(item) for item in value)
    raise TypeError(
        f"values must be null, booleans, numbers, strings or lists, not {type(value).__name__}"
    )


@dataclass(frozen=True, slots=True)
class Op:
    """One event of a history, as recorded.

    ``time`` is an optional monotonic reading in nanoseconds; ``index`` is the
    event's position in its :class:`History` (set by the history).
    """

    process: Process
    type: OpType
    f: str
    key: Key = None
    value: Value = None
    time: int | None = None
    index: int = -1

    def __post_init__(self) -> None:
        # Typed fields, but callers may still pass "ok" or a list: normalise.
        kind: object = self.type
        if not isinstance(kind, OpType):
            object.__setattr__(self, "type", OpType(str(kind)))
        value: object = self.value
        if isinstance(value, list):
            object.__setattr__(self, "value", freeze(value))
        key: object = self.key
        if isinstance(key, list):
            object.__setattr__(self, "key", freeze(key))

    @classmethod
    def invoke(
        cls,
        process: Process,
        f: str,
        value: Value = None,
        *,
        key: Key = None,
        time: int | None = None,
    ) -> Op:
        """Process ``process`` starts operation ``f``."""
        return cls(process, OpType.INVOKE, f, key, value, time)

    @classmethod
    def ok(
        cls,
        process: Process,
        f: str,
        value: Value = None,
        *,
        key: Key = None,
        time: int | None = None,
    ) -> Op:
        """The operation completed and returned ``value``."""
        return cls(process, OpType.OK, f, key, value, time)

    @classmethod
    def fail(
        cls,
        process: Process,
        f: str,
        value: Value = None,
        *,
        key: Key = None,
        time: int | None = None,
    ) -> Op:
        """The operation definitely did not take effect."""
        return cls(process, OpType.FAIL, f, key, value, time)

    @classmethod
    def info(
        cls,
        process: Process,
        f: str,
        value: Value = None,
        *,
        key: Key = None,
        time: int | None = None,
    ) -> Op:
        """Nobody knows whether the operation took effect."""
        return cls(process, OpType.INFO, f, key, value, time)


@dataclass(frozen=True, slots=True)
class Call:
    """One operation: an invoke paired with its completion.

    ``call`` and ``ret`` are ranks in the history's real-time order (``ret`` is
    ``math.inf`` for an indeterminate operation). ``input`` is the value of the
    invoke and ``output`` that of the ``ok`` completion (``None`` when
    indeterminate). ``id`` is the operation's position, ordered by ``call``;
    ``invoke_index`` and ``complete_index`` locate its events (the latter is
    ``None`` for an invoke that never completed).
    """

    id: int
    process: Process
    f: str
    key: Key
    input: Value
    output: Value
    indeterminate: bool
    call: int
    ret: float
    invoke_index: int
    complete_index: int | None


class History(Sequence[Op]):
    """An immutable sequence of :class:`Op` events in real-time order.

    Events are ordered as given, unless every event carries a ``time``: then
    by time, with ties read as concurrent (invokes before completions). Each
    op's ``index`` is set to its position. ``source`` names where it came from
    and ``lines`` maps each index to a 1-based line number, for error messages.
    """

    __slots__ = ("_ops", "lines", "source")

    def __init__(
        self,
        ops: Iterable[Op] = (),
        *,
        source: str | None = None,
        lines: Sequence[int] | None = None,
    ) -> None:
        placed: list[Op] = []
        for i, op in enumerate(ops):
            if not isinstance(op, Op):
                raise TypeError(f"a History holds Op events, not {type(op).__name__}")
            placed.append(op if op.index == i else _replace_index(op, i))
        self._ops: tuple[Op, ...] = tuple(placed)
        self.source = source
        if lines is not None and len(lines) != len(placed):
            raise ValueError(f"lines has {len(lines)} entries for {len(placed)} events")
        self.lines: tuple[int, ...] | None = tuple(lines) if lines is not None else None

    @overload
    def __getitem__(self, i: int) -> Op: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[Op]: ...
    def __getitem__(self, i: int | slice) -> Op | Sequence[Op]:
        return self._ops[i]

    def __len__(self) -> int:
        return len(self._ops)

    def __iter__(self) -> Iterator[Op]:
        return iter(self._ops)

    def __repr__(self) -> str:
        return f"History({len(self._ops)} events, source={self.source!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, History):
            return self._ops == other._ops
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def line_of(self, index: int) -> int:
        """The 1-based line of event ``index`` (its position + 1 when lines are unknown)."""
        return self.lines[index] if self.lines is not None else index + 1

    def where(self, call: Call) -> str:
        """Where ``call`` sits in the source, e.g. ``"lines 12-15"``."""
        first = self.line_of(call.invoke_index)
        if call.complete_index is None:
            return f"line {first}, never completed"
        return f"lines {first}-{self.line_of(call.complete_index)}"

    def fs(self) -> frozenset[str]:
        """The operation names that occur in the history."""
        return frozenset(op.f for op in self._ops if op.process != _NEMESIS)

    def keys(self) -> frozenset[Key]:
        """The keys that occur in the history (``None`` for keyless events)."""
        return frozenset(op.key for op in self._ops if op.process != _NEMESIS)

    def calls(self) -> list[Call]:
        """Pair invokes with completions into operations, ordered by invoke.

        ``fail`` operations are dropped; ``info`` completions and invokes that
        never complete become indeterminate. Raises :class:`HistoryError` for a
        process that invokes twice, a completion without an invoke, or a
        completion that names another operation or key than its invoke.
        """
        ops = self._ops
        rank = self._ranks()
        pending: dict[Process, Op] = {}
        raw: list[tuple[Op, Op | None]] = []  # (invoke, ok or info completion)
        for op in ops:
            process = op.process
            if process == _NEMESIS:
                continue
            if op.type is OpType.INVOKE:
                if process in pending:
                    first = pending[process]
                    self._fail(
                        op,
                        f"process {process!r} invoked {op.f!r} while its {first.f!r} from line "
                        f"{self.line_of(first.index)} had not completed; a process runs one "
                        "operation at a time (give a crashed process a new id)",
                    )
                pending[process] = op
                continue
            invoke = pending.pop(process, None)
            if invoke is None:
                self._fail(op, f"{op.type} of {op.f!r} by process {process!r} without an invoke")
            if op.f != invoke.f:
                self._fail(
                    op,
                    f"{op.type} of {op.f!r} completes process {process!r}'s {invoke.f!r} "
                    f"from line {self.line_of(invoke.index)}",
                )
            if op.key is not None and invoke.key is not None and op.key != invoke.key:
                self._fail(
                    op,
                    f"{op.type} names key {op.key!r} but its invoke (line "
                    f"{self.line_of(invoke.index)}) names key {invoke.key!r}",
                )
            if op.type is not OpType.FAIL:
                raw.append((invoke, op))
        raw.extend((invoke, None) for invoke in pending.values())
        raw.sort(key=lambda pair: rank[pair[0].index])
        calls: list[Call] = []
        for i, (invoke, done) in enumerate(raw):
            indeterminate = done is None or done.type is OpType.INFO
            calls.append(
                Call(
                    id=i,
                    process=invoke.process,
                    f=invoke.f,
                    key=invoke.key,
                    input=invoke.value,
                    output=None if indeterminate or done is None else done.value,
                    indeterminate=indeterminate,
                    call=rank[invoke.index],
                    ret=math.inf if indeterminate or done is None else rank[done.index],
                    invoke_index=invoke.index,
                    complete_index=None if done is None else done.index,
                )
            )
        return calls

    def _ranks(self) -> list[int]:
        ops = self._ops
        if not ops or any(op.time is None for op in ops):
            return list(range(len(ops)))
        # Equal times cannot say which came first, so an invoke is put before
        # a completion: the ops overlap, and overlap never forges a violation.
        order = sorted(
            range(len(ops)),
            key=lambda i: (ops[i].time, ops[i].type is not OpType.INVOKE, i),
        )
        rank = [0] * len(ops)
        for r, i in enumerate(order):
            rank[i] = r
        by_process: dict[Process, Op] = {}
        for op in ops:
            if op.type is OpType.INVOKE:
                by_process[op.process] = op
                continue
            invoke = by_process.get(op.process)
            if invoke is not None and rank[op.index] < rank[invoke.index]:
                self._fail(
                    op,
                    f"completes at time {op.time}, before its invoke at time {invoke.time} "
                    f"(line {self.line_of(invoke.index)})",
                )
        return rank

    def _fail(self, op: Op, reason: str) -> NoReturn:
        raise HistoryError(reason, source=self.source, line=self.line_of(op.index))


def _replace_index(op: Op, index: int) -> Op:
    return Op(op.process, op.type, op.f, op.key, op.value, op.time, index)
