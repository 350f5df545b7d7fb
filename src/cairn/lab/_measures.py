"""What an AP run is judged by, measured from its history (and the final states).

- **availability**: the share of completed operations the store answered
  (``ok``, or a cas refused because the value differed), overall, during
  fault windows, and outside them;
- **stale reads**: ``ok`` reads that returned a value already overwritten by
  a write that *both* began after that value's write had finished *and*
  finished before the read began. Such a read is certainly not
  linearizable; the measure does not count subtler anomalies;
- **acknowledged writes lost**: ``ok`` writes (and cas) that began after the
  write of the key's final, converged value had finished; they should have
  won, and were dropped;
- **convergence time**: seconds from the final heal (clients stopped) until
  every replica held the same values (measured by the runner).

Values are told apart by the workload writing each value once.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import asdict, dataclass
from typing import Any

from cairn.lab._history import History, Key, Op, OpType, Value

__all__ = ["MISMATCH", "Measures", "Window", "fault_windows", "measure", "stale_reads"]

_NEMESIS = "nemesis"
MISMATCH = "mismatch"
"""The error a cas that found another value fails with."""


@dataclass(frozen=True, slots=True)
class Window:
    """A fault window: ``kind`` was active from ``start`` to ``end`` (monotonic ns)."""

    kind: str
    start: int
    end: int
    value: Value = None


@dataclass(frozen=True, slots=True)
class Measures:
    """The measures of one run; shares are ``None`` when nothing was there to share."""

    operations: int
    ok: int
    failed: int
    indeterminate: int
    availability: float | None
    availability_faulty: float | None
    availability_calm: float | None
    reads: int
    stale_reads: int
    stale_read_share: float | None
    acknowledged_writes: int
    lost_writes: int | None
    converged: bool | None
    convergence_time: float | None

    def to_dict(self) -> dict[str, Any]:
        """The measures as JSON-ready data."""
        return asdict(self)


def fault_windows(history: History | list[Op], *, end: int | None = None) -> list[Window]:
    """The nemesis's fault windows, from its ``start-*``/``stop-*`` events."""
    windows: list[Window] = []
    open_: dict[str, Op] = {}
    last = 0
    for op in history:
        last = max(last, op.time or 0)
        if op.process != _NEMESIS or op.time is None:
            continue
        verb, _, kind = op.f.partition("-")
        if verb == "start":
            open_[kind] = op
        elif verb == "stop" and kind in open_:
            began = open_.pop(kind)
            windows.append(Window(kind, began.time or 0, op.time, began.value))
    for kind, began in open_.items():
        windows.append(Window(kind, began.time or 0, end or last, began.value))
    return sorted(windows, key=lambda w: w.start)


@dataclass(slots=True)
class _Done:
    process: object
    f: str
    key: Key
    input: Value
    output: Value
    type: OpType
    invoke: int
    complete: int


def _pairs(history: History | list[Op]) -> list[_Done]:
    pending: dict[object, Op] = {}
    done: list[_Done] = []
    for op in history:
        if op.process == _NEMESIS:
            continue
        if op.type is OpType.INVOKE:
            pending[op.process] = op
            continue
        inv = pending.pop(op.process, None)
        if inv is None:
            continue
        done.append(
            _Done(
                op.process, op.f, op.key, inv.value, op.value, op.type, inv.time or 0, op.time or 0
            )
        )
    return done


def _written(op: _Done) -> Value:
    if op.f == "cas" and isinstance(op.input, tuple) and len(op.input) == 2:
        return op.input[1]
    return op.input


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _writes(
    done: list[_Done],
) -> tuple[dict[tuple[Key, Value], tuple[float, float]], dict[Key, list[_Done]]]:
    # Writes by the value they wrote: (invoke, complete), complete=inf when not known.
    writer: dict[tuple[Key, Value], tuple[float, float]] = {}
    ok_writes: dict[Key, list[_Done]] = {}
    for d in done:
        if d.f not in ("write", "cas") or d.type is OpType.FAIL:
            continue
        complete = d.complete if d.type is OpType.OK else math.inf
        writer[(d.key, _written(d))] = (d.invoke, complete)
        if d.type is OpType.OK:
            ok_writes.setdefault(d.key, []).append(d)
    for writes in ok_writes.values():
        writes.sort(key=lambda d: d.invoke)
    return writer, ok_writes


def _stale(done: list[_Done]) -> list[_Done]:
    writer, ok_writes = _writes(done)
    # Per key: ok writes by invoke time, with the earliest completion among later invokes.
    index: dict[Key, tuple[list[int], list[float]]] = {}
    for key, writes in ok_writes.items():
        suffix: list[float] = [math.inf] * (len(writes) + 1)
        for i in range(len(writes) - 1, -1, -1):
            suffix[i] = min(suffix[i + 1], writes[i].complete)
        index[key] = ([d.invoke for d in writes], suffix)

    def superseded(key: Key, after: float, before: float) -> bool:
        # Did an ok write begin after `after` and end before `before`?
        if key not in index:
            return False
        invokes, suffix = index[key]
        return suffix[bisect.bisect_right(invokes, after)] < before

    stale: list[_Done] = []
    for r in done:
        if r.f != "read" or r.type is not OpType.OK:
            continue
        source = writer.get((r.key, r.output))
        if source is None and r.output is not None:
            continue  # a value nobody here wrote: not this measure's business
        if superseded(r.key, -math.inf if source is None else source[1], r.invoke):
            stale.append(r)
    return stale


def stale_reads(history: History | list[Op]) -> list[tuple[object, int]]:
    """The stale reads of ``history``, as ``(process, invoke time)`` pairs."""
    return [(r.process, r.invoke) for r in _stale(_pairs(history))]


def measure(
    history: History | list[Op],
    *,
    final: dict[str, Any] | None = None,
    converged: bool | None = None,
    convergence_time: float | None = None,
) -> Measures:
    """Measure ``history``; ``final`` is each key's converged value, if known."""
    done = _pairs(history)
    windows = fault_windows(history)

    def faulty(op: _Done) -> bool:
        return any(w.start <= op.invoke < w.end for w in windows)

    ok = [d for d in done if d.type is OpType.OK]
    in_fault = [d for d in done if faulty(d)]
    calm = [d for d in done if not faulty(d)]

    def answered(ops: list[_Done]) -> int:
        # A cas refused because the value differed is an answer, not an outage.
        return sum(d.type is OpType.OK or d.output == MISMATCH for d in ops)

    writer, ok_writes = _writes(done)
    reads = [d for d in ok if d.f == "read"]
    stale = len(_stale(done))

    lost: int | None = None
    if final is not None:
        lost = 0
        for key, writes in ok_writes.items():
            value = final.get(str(key))
            source = writer.get((key, _freeze(value)))
            final_done = -math.inf if source is None else source[1]
            lost += sum(1 for w in writes if w.invoke > final_done)

    acknowledged = sum(len(w) for w in ok_writes.values())
    return Measures(
        operations=len(done),
        ok=len(ok),
        failed=sum(1 for d in done if d.type is OpType.FAIL),
        indeterminate=sum(1 for d in done if d.type is OpType.INFO),
        availability=_share(answered(done), len(done)),
        availability_faulty=_share(answered(in_fault), len(in_fault)),
        availability_calm=_share(answered(calm), len(calm)),
        reads=len(reads),
        stale_reads=stale,
        stale_read_share=_share(stale, len(reads)),
        acknowledged_writes=acknowledged,
        lost_writes=lost,
        converged=converged,
        convergence_time=convergence_time,
    )


def _freeze(value: Any) -> Value:
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value  # type: ignore[no-any-return]
