"""Shared fixtures: the Porcupine test histories, found beside the repository."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest


def porcupine_dir() -> Path:
    """``$CAIRN_TESTDATA/porcupine`` if set, else ``<repo>/../shared/testdata/porcupine``."""
    env = os.environ.get("CAIRN_TESTDATA")
    if env:
        base = Path(env)
        return base if (base / "verdicts.json").exists() else base / "porcupine"
    return Path(__file__).resolve().parents[2].parent / "shared" / "testdata" / "porcupine"


def _cases() -> list[tuple[str, bool]]:
    verdicts = porcupine_dir() / "verdicts.json"
    if not verdicts.exists():
        return []
    data = json.loads(verdicts.read_text(encoding="utf-8"))
    return [
        (f"{sub}/{name}", expected)
        for sub, files in data.items()
        for name, expected in files.items()
    ]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "porcupine_case" in metafunc.fixturenames:
        cases = _cases()
        if cases:
            metafunc.parametrize("porcupine_case", cases, ids=[name for name, _ in cases])
        else:
            reason = f"Porcupine test data not found at {porcupine_dir()}"
            metafunc.parametrize(
                "porcupine_case", [pytest.param(None, marks=pytest.mark.skip(reason=reason))]
            )


@pytest.fixture
def porcupine() -> Path:
    """The Porcupine test-data directory; skips the test when it is absent."""
    path = porcupine_dir()
    if not (path / "verdicts.json").exists():
        pytest.skip(f"Porcupine test data not found at {path}")
    return path
