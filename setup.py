"""The one C extension; everything else about the package is in pyproject.toml.

``cairn.resilience._speedups`` runs a circuit breaker's two hot paths (see
``src/cairn/resilience/_breaker.py``). It is optional: where it cannot be
compiled (no C compiler or no Python headers), the install goes on and the
breaker runs in pure Python, with the same behaviour and less speed.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "cairn.resilience._speedups",
            sources=["src/cairn/resilience/_speedups.c"],
            optional=True,
        )
    ]
)
