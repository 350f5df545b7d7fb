"""The consistency lab: record histories and check them for linearizability.

- :func:`check` decides whether a history of operations on a shared object is
  linearizable with respect to a sequential :class:`Model`, and explains a
  violation with the smallest window of operations that cannot be ordered;
- :func:`read_history` / :func:`parse_history` read cairn's JSON lines,
  Jepsen's EDN maps and ``jepsen.util`` logs; :func:`write_jsonl` writes the
  first;
- :class:`RegisterModel`, :class:`CasRegisterModel` and
  :class:`KeyValueModel` are the built-in specifications;
- :func:`random_history` makes histories that are linearizable by
  construction, to test a model or a checker.

The ``cairn lab check`` command runs the checker on a file.
"""

from __future__ import annotations

from cairn.lab._checker import CheckResult, KeyResult, Verdict, Violation, check
from cairn.lab._errors import HistoryError, LabError
from cairn.lab._formats import (
    HistoryFormat,
    detect_format,
    op_to_json,
    parse_history,
    read_history,
    write_jsonl,
)
from cairn.lab._generate import random_history
from cairn.lab._history import Call, History, Op, OpType, freeze
from cairn.lab._models import (
    MODELS,
    CasRegisterModel,
    KeyValueModel,
    Model,
    RegisterModel,
    choose_model,
    model_named,
)

__all__ = [
    "MODELS",
    "Call",
    "CasRegisterModel",
    "CheckResult",
    "History",
    "HistoryError",
    "HistoryFormat",
    "KeyResult",
    "KeyValueModel",
    "LabError",
    "Model",
    "Op",
    "OpType",
    "RegisterModel",
    "Verdict",
    "Violation",
    "check",
    "choose_model",
    "detect_format",
    "freeze",
    "model_named",
    "op_to_json",
    "parse_history",
    "random_history",
    "read_history",
    "write_jsonl",
]
