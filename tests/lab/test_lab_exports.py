"""cairn.lab has one public door: a sorted, complete ``__all__``."""

from __future__ import annotations

import types

import cairn.lab


def _isort_key(name: str) -> tuple[int, str]:
    if name.isupper():
        return (0, name)
    if name[:1].isupper():
        return (1, name)
    return (2, name)


def test_all_is_sorted_complete_and_public() -> None:
    exported = list(cairn.lab.__all__)
    assert exported == sorted(exported, key=_isort_key)
    assert len(set(exported)) == len(exported)
    defined = {
        name
        for name, value in vars(cairn.lab).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and str(getattr(value, "__module__", "")).startswith("cairn.lab")
    }
    assert defined <= set(exported), sorted(defined - set(exported))
    for name in exported:
        obj = getattr(cairn.lab, name)
        assert not str(getattr(obj, "__name__", name)).startswith("_"), name
