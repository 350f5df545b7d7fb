"""cairn.client and cairn.service have one public door each: a sorted, complete ``__all__``."""

from __future__ import annotations

import importlib
import types

import pytest


@pytest.mark.parametrize("name", ["cairn.client", "cairn.service"])
def test_all_is_sorted_and_complete(name: str) -> None:
    module = importlib.import_module(name)
    exported = list(module.__all__)
    key = lambda n: (0 if n.isupper() else 1 if n[:1].isupper() else 2, n)  # noqa: E731
    assert exported == sorted(exported, key=key)
    public = {
        n
        for n, v in vars(module).items()
        if not n.startswith("_")
        and not isinstance(v, types.ModuleType)
        and str(getattr(v, "__module__", "")).startswith(name)
    }
    assert public <= set(exported), sorted(public - set(exported))
    assert all(hasattr(module, n) for n in exported)
