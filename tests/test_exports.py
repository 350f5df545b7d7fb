"""Each package has one public door: a sorted, complete ``__all__``."""

from __future__ import annotations

import importlib
import types

import pytest

PACKAGES = [
    "cairn",
    "cairn.client",
    "cairn.collector",
    "cairn.dashboard",
    "cairn.discovery",
    "cairn.lab",
    "cairn.observability",
    "cairn.platform",
    "cairn.resilience",
    "cairn.service",
    "cairn.testing",
]


def _public_names(module: types.ModuleType) -> set[str]:
    """Public names defined in the module itself or in its private submodules."""
    own = module.__name__
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and str(getattr(value, "__module__", "")).split(".")[: own.count(".") + 1] == own.split(".")
    }


def _isort_key(name: str) -> tuple[int, str]:
    # ruff's RUF022 order: CONSTANTS, then Classes, then functions.
    if name.isupper():
        return (0, name)
    if name[:1].isupper():
        return (1, name)
    return (2, name)


@pytest.mark.parametrize("name", PACKAGES)
def test_all_is_sorted_and_complete(name: str) -> None:
    module = importlib.import_module(name)
    exported = list(module.__all__)
    assert exported == sorted(exported, key=_isort_key), f"{name}.__all__ is not sorted"
    assert len(set(exported)) == len(exported), f"{name}.__all__ has duplicates"
    missing = _public_names(module) - set(exported)
    assert not missing, f"{name} has public names outside __all__: {sorted(missing)}"
    for item in exported:
        assert hasattr(module, item), f"{name}.__all__ names {item!r}, which does not exist"


@pytest.mark.parametrize("name", PACKAGES)
def test_no_private_names_leak_through_all(name: str) -> None:
    module = importlib.import_module(name)
    for item in module.__all__:
        obj = getattr(module, item)
        qualname = getattr(obj, "__name__", item)
        assert not str(qualname).startswith("_") or item == "__version__", item


def test_importing_cairn_configures_nothing() -> None:
    import logging

    root_handlers = list(logging.getLogger().handlers)
    importlib.import_module("cairn")
    importlib.import_module("cairn.resilience")
    assert logging.getLogger().handlers == root_handlers
