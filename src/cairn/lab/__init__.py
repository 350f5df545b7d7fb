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

- :func:`run_experiment` runs a :class:`Workload` against a replicated
  store (``cp``: CASPaxos quorums, ``ap``: last-writer-wins on hybrid logical
  clocks, ``ca``: one node) or a real etcd cluster while a nemesis cuts its
  network, then checks and measures the history (:class:`Measures`);
  :class:`StoreCluster` gives scripted control of one.

The ``cairn lab check``, ``cairn lab run`` and ``cairn lab compare`` commands
drive all of this from the shell.
"""

from __future__ import annotations

from cairn.lab._checker import CheckResult, KeyResult, Verdict, Violation, check
from cairn.lab._cluster import Engine, StoreCluster
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
from cairn.lab._measures import Measures, measure
from cairn.lab._models import (
    MODELS,
    CasRegisterModel,
    KeyValueModel,
    Model,
    RegisterModel,
    choose_model,
    model_named,
)
from cairn.lab._nemesis import NEMESES
from cairn.lab._run import RunConfig, RunResult, run_experiment
from cairn.lab._workload import Workload

__all__ = [
    "MODELS",
    "NEMESES",
    "Call",
    "CasRegisterModel",
    "CheckResult",
    "Engine",
    "History",
    "HistoryError",
    "HistoryFormat",
    "KeyResult",
    "KeyValueModel",
    "LabError",
    "Measures",
    "Model",
    "Op",
    "OpType",
    "RegisterModel",
    "RunConfig",
    "RunResult",
    "StoreCluster",
    "Verdict",
    "Violation",
    "Workload",
    "check",
    "choose_model",
    "detect_format",
    "freeze",
    "measure",
    "model_named",
    "op_to_json",
    "parse_history",
    "random_history",
    "read_history",
    "run_experiment",
    "write_jsonl",
]
