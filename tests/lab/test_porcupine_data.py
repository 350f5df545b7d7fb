"""The checker agrees with every verdict of the Porcupine/Jepsen test histories.

Nobody here wrote these histories or their verdicts (see the data's README):
they come from real Jepsen runs against etcd and from Porcupine's kv tests.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cairn.lab import Verdict, check, read_history


@pytest.mark.timeout(60)
def test_verdict_matches(porcupine_case: tuple[str, bool], porcupine: Path) -> None:
    name, expected = porcupine_case
    history = read_history(porcupine / name)
    result = check(history, timeout=30)
    assert result.verdict is not Verdict.UNKNOWN, f"{name}: no verdict within 30 s"
    assert result.linearizable is expected, result.report()
    if not expected:
        violation = result.violation
        assert violation is not None
        assert violation.blocker in violation.window
        assert str(violation) == violation.text


def test_shared_set_has_both_verdicts_and_indeterminate_ops(porcupine: Path) -> None:
    # Guards the test above against a data set that stopped exercising the hard parts.
    etcd = read_history(porcupine / "jepsen-etcd" / "etcd_002.log")
    calls = etcd.calls()
    assert any(c.indeterminate for c in calls)
    assert any(c.f == "cas" for c in calls)
    kv = read_history(porcupine / "kv" / "c50-ok.txt")
    assert len(kv.keys()) > 1
