"""The linearizability checker: split by key, search each part, explain a violation.

:func:`check` pairs the history into operations, splits them by key (each key
is an independent object, so the history is linearizable iff every part is),
and runs one search per key, interleaved in short slices: the first key that
fails ends the check, so a violation in one key is not stuck behind a long
search of another. A time limit turns an unfinished check into ``unknown``;
it is read after every slice, so the check never runs much past it.
"""

from __future__ import annotations

import enum
from collections.abc import Generator, Hashable, Iterable
from dataclasses import dataclass
from typing import Any

from cairn.lab._errors import HistoryError
from cairn.lab._history import Call, History, Key, Op
from cairn.lab._models import Model, choose_model, show
from cairn.lab._search import DeadEnd, Outcome, search
from cairn.resilience import SYSTEM_CLOCK, Clock

__all__ = ["CheckResult", "KeyResult", "Verdict", "Violation", "check"]

_SLICE_STEPS = 512
_CLIP = 72


class Verdict(enum.StrEnum):
    """What the checker concluded."""

    LINEARIZABLE = "linearizable"
    NOT_LINEARIZABLE = "not_linearizable"
    UNKNOWN = "unknown"
    """The time limit was hit first, or another key already failed."""


@dataclass(frozen=True, slots=True)
class Violation:
    """Why one key's operations cannot be linearized.

    The search's deepest dead end: after ``linearized`` of the key's
    ``operations`` are put in an order that works (``prefix`` holds the last
    few of them), the model is in ``state`` and ``blocker`` has returned, so it
    must come next or before; but no operation of the ``window`` (the
    unplaced operations concurrent with it, the blocker among them) can.
    ``text`` says so for a person.
    """

    key: Key
    linearized: int
    operations: int
    state: Hashable
    prefix: tuple[Call, ...]
    window: tuple[Call, ...]
    blocker: Call
    text: str

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True)
class KeyResult:
    """The verdict for one key; ``states`` is how many configurations the search cached."""

    key: Key
    verdict: Verdict
    operations: int
    states: int
    violation: Violation | None


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The verdict for a whole history, with one :class:`KeyResult` a key."""

    verdict: Verdict
    model: str
    keys: tuple[KeyResult, ...]
    operations: int
    elapsed: float
    """Seconds spent, read on the checker's clock."""

    @property
    def linearizable(self) -> bool:
        """``True`` only for a ``linearizable`` verdict."""
        return self.verdict is Verdict.LINEARIZABLE

    @property
    def violation(self) -> Violation | None:
        """The violation found, if any."""
        for result in self.keys:
            if result.violation is not None:
                return result.violation
        return None

    def report(self) -> str:
        """A human summary: the verdict, and the violation if there is one."""
        n_keys = len(self.keys)
        stats = (
            f"{self.operations} operations, {n_keys} key{'s' * (n_keys != 1)}, "
            f"{self.model} model, {self.elapsed:.3f} s"
        )
        if self.verdict is Verdict.LINEARIZABLE:
            return f"linearizable ({stats})"
        if self.verdict is Verdict.UNKNOWN:
            done = sum(1 for r in self.keys if r.verdict is Verdict.LINEARIZABLE)
            return (
                f"unknown: the time limit was hit ({stats}); {done} of {n_keys} "
                "keys were checked and found linearizable, the rest are unknown"
            )
        violation = self.violation
        assert violation is not None
        return f"NOT linearizable ({stats})\n{violation.text}"

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-ready data (tuples become lists when dumped)."""
        return {
            "verdict": self.verdict.value,
            "model": self.model,
            "operations": self.operations,
            "elapsed": self.elapsed,
            "keys": [
                {
                    "key": r.key,
                    "verdict": r.verdict.value,
                    "operations": r.operations,
                    "states": r.states,
                    "violation": None if r.violation is None else _violation_dict(r.violation),
                }
                for r in self.keys
            ],
        }


def check(
    history: History | Iterable[Op],
    model: Model | None = None,
    *,
    timeout: float | None = None,
    clock: Clock | None = None,
) -> CheckResult:
    """Check whether ``history`` is linearizable with respect to ``model``.

    ``model`` defaults to :func:`choose_model` of the history's operations.
    ``timeout`` (seconds, or ``None`` for no limit) bounds the search: past it,
    keys not yet decided are ``unknown``. ``clock`` supplies ``monotonic()``
    (the system clock by default). Raises :class:`HistoryError` for events
    that do not pair or operations the model does not know.
    """
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds or None, not {timeout!r}")
    hist = history if isinstance(history, History) else History(history)
    if model is None:
        model = choose_model(hist.fs())
    clock = clock or SYSTEM_CLOCK
    start = clock.monotonic()
    calls = hist.calls()
    for call in calls:
        reason = model.validate(call)
        if reason is not None:
            raise HistoryError(reason, source=hist.source, line=hist.line_of(call.invoke_index))
    parts = model.partition(calls)
    keys = sorted(parts, key=_key_order)
    searches: dict[Key, Generator[None, None, Outcome]] = {
        key: search(model.prune(parts[key]), model, slice_steps=_SLICE_STEPS) for key in keys
    }
    outcomes: dict[Key, Outcome] = {}
    deadline = None if timeout is None else start + timeout
    failed = timed_out = False
    while searches and not (failed or timed_out):
        for key, running in list(searches.items()):
            try:
                next(running)
            except StopIteration as stop:
                outcome: Outcome = stop.value
                outcomes[key] = outcome
                del searches[key]
                if not outcome.linearizable:
                    failed = True
                    break
            if deadline is not None and clock.monotonic() >= deadline:
                timed_out = True
                break
    for running in searches.values():
        running.close()

    results: list[KeyResult] = []
    for key in keys:
        found = outcomes.get(key)
        if found is None:
            results.append(KeyResult(key, Verdict.UNKNOWN, len(parts[key]), 0, None))
            continue
        violation = None
        if found.dead_end is not None and not found.linearizable:
            violation = _violation(key, found.dead_end, len(parts[key]), model, hist)
        verdict = Verdict.LINEARIZABLE if found.linearizable else Verdict.NOT_LINEARIZABLE
        results.append(KeyResult(key, verdict, len(parts[key]), found.states, violation))
    if failed:
        verdict = Verdict.NOT_LINEARIZABLE
    elif searches:
        verdict = Verdict.UNKNOWN
    else:
        verdict = Verdict.LINEARIZABLE
    return CheckResult(verdict, model.name, tuple(results), len(calls), clock.monotonic() - start)


def _key_order(key: Key) -> tuple[str, str]:
    return (type(key).__name__, repr(key))


def _violation(key: Key, dead: DeadEnd, operations: int, model: Model, hist: History) -> Violation:
    state = model.describe_state(dead.state)

    def line(call: Call) -> str:
        return f"process {call.process}: {_clip(model.describe(call))}  ({hist.where(call)})"

    where = "" if key is None else f" of key {show(key)}"
    out = [f"Operations{where} that cannot be linearized:"]
    if dead.prefix:
        out.append(
            f"  {dead.linearized} of {operations} operations fit in an order; the last of them:"
        )
        out.extend(f"    {line(call)}" for call in dead.prefix)
        out.append(f"  leave the state at {_clip(state)}.")
    else:
        out.append(f"  Starting from the initial state {_clip(state)},")
    blocker = dead.blocker
    out.append(
        f"  Process {blocker.process}'s {_clip(model.describe(blocker))} "
        f"({hist.where(blocker)}) must take effect before it returns,"
    )
    out.append("  yet no operation that may come next can:")
    for call in dead.window:
        ok, new = model.step(dead.state, call)
        if not ok:
            why = f"impossible in state {_clip(state)}"
        elif call.indeterminate and new == dead.state:
            why = "would change nothing"
        else:
            why = "possible, but then the rest cannot be ordered"
        out.append(f"    {line(call)}: {why}")
    return Violation(
        key,
        dead.linearized,
        operations,
        dead.state,
        dead.prefix,
        dead.window,
        blocker,
        "\n".join(out),
    )


def _violation_dict(violation: Violation) -> dict[str, Any]:
    def call_dict(call: Call) -> dict[str, Any]:
        return {
            "id": call.id,
            "process": call.process,
            "f": call.f,
            "input": call.input,
            "output": call.output,
            "indeterminate": call.indeterminate,
            "invoke_index": call.invoke_index,
            "complete_index": call.complete_index,
        }

    return {
        "linearized": violation.linearized,
        "state": violation.state,
        "prefix": [call_dict(c) for c in violation.prefix],
        "window": [call_dict(c) for c in violation.window],
        "blocker": call_dict(violation.blocker),
        "explanation": violation.text,
    }


def _clip(text: str) -> str:
    return text if len(text) <= _CLIP else text[: _CLIP - 3] + "..."
