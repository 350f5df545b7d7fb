"""Small helpers over the standard APIs: a span block, a decorator, a logger."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar, cast

import structlog
from opentelemetry import context, trace
from opentelemetry.trace import StatusCode
from opentelemetry.util import types

from cairn.observability import _runtime

__all__ = ["get_logger", "span", "traced"]

P = ParamSpec("P")
R = TypeVar("R")


@contextmanager
def span(name: str, **attributes: types.AttributeValue) -> Iterator[trace.Span]:
    """Run the block in a new span, child of the current one.

    The same as ``tracer.start_as_current_span(name)`` in shape, on cairn's
    cheaper span path; an exception escaping the block is recorded and marks
    the span as an error. Before ``setup()`` it yields a non-recording span.
    """
    runtime = _runtime.RUNTIME
    if runtime is None:
        yield trace.INVALID_SPAN
        return
    current = runtime.tracing.lean.start_child(name, attributes=dict(attributes))
    token = context.attach(trace.set_span_in_context(current))
    try:
        yield current
    except BaseException as exc:
        current.record_exception(exc, escaped=True)
        current.set_status(StatusCode.ERROR, f"{type(exc).__qualname__}: {exc}")
        raise
    finally:
        context.detach(token)
        current.end()


def traced(
    name: str | None = None, **attributes: types.AttributeValue
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a function (sync or async) to run each call in a :func:`span`.

    The span is named ``name`` or the function's qualified name.
    """

    def decorate(function: Callable[P, R]) -> Callable[P, R]:
        span_name = name or function.__qualname__
        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def awrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                with span(span_name, **attributes):
                    return await function(*args, **kwargs)

            return cast(Callable[P, R], awrapper)

        @functools.wraps(function)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            with span(span_name, **attributes):
                return function(*args, **kwargs)

        return wrapper

    return decorate


def get_logger(name: str | None = None, **initial: Any) -> Any:
    """A structlog logger; after ``setup()`` its lines are cairn's JSON lines."""
    return structlog.get_logger(name, **initial) if name else structlog.get_logger(**initial)
