"""The breaker's decorator comes in two forms: C (``_speedups``) and pure Python.

Breaker test modules run every test under both (``pytestmark =
pytest.mark.usefixtures("breaker_impl")``): the C form must behave exactly as
the Python one, which is also what runs where the extension is not built.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cairn.resilience import _breaker

BUILT = _breaker._speedups


@pytest.fixture(scope="module", params=["c", "python"])
def breaker_impl(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "c" and BUILT is None:
        pytest.skip(
            "the C form is not in use: CAIRN_NO_SPEEDUPS is set or the extension is not built "
            "(see test_the_c_extension_is_built_and_used)"
        )
    previous = _breaker._speedups
    _breaker._speedups = BUILT if request.param == "c" else None
    try:
        yield request.param
    finally:
        _breaker._speedups = previous
