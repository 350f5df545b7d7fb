"""cairn.discovery has one public door: a sorted, complete ``__all__``."""

from __future__ import annotations

import importlib
import subprocess
import sys
import types


def _isort_key(name: str) -> tuple[int, str]:
    if name.isupper():
        return (0, name)
    if name[:1].isupper():
        return (1, name)
    return (2, name)


def test_all_is_sorted_complete_and_private_free() -> None:
    module = importlib.import_module("cairn.discovery")
    exported = list(module.__all__)
    assert exported == sorted(exported, key=_isort_key)
    public = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and str(getattr(value, "__module__", "")).startswith("cairn.discovery")
    }
    assert public <= set(exported), sorted(public - set(exported))
    for name in exported:
        obj = getattr(module, name)
        assert not str(getattr(obj, "__name__", name)).startswith("_"), name


def test_importing_discovery_loads_no_extra_and_configures_nothing() -> None:
    code = (
        "import logging, sys, cairn.discovery; "
        "print(sorted(m for m in ('httpx', 'starlette', 'uvicorn', 'cairn.discovery._consul', "
        "'cairn.discovery._etcd', 'cairn.discovery._server') if m in sys.modules)); "
        "print(logging.getLogger().handlers)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["[]", "[]"]
