"""Types of the optional C extension (``_speedups.c``)."""

import itertools
from collections.abc import Callable, Generator
from typing import Any

class Protected:
    """A function protected by a circuit breaker (the fast paths in C)."""

    def __init__(
        self,
        *,
        breaker: object,
        fn: Callable[..., Any],
        slow: Callable[..., Any],
        calls: itertools.count[int],
        rejections: itertools.count[int],
        error: type[Exception],
        open_state: object,
        clock: object,
        listeners: tuple[Any, ...],
        events: dict[str, Any],
        is_async: bool,
    ) -> None: ...
    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...
    def __get__(self, obj: object, objtype: type | None = None) -> Any: ...

class Attempt:
    """One call of a circuit-protected coroutine function: await it."""

    def __await__(self) -> Generator[Any, None, Any]: ...
    def send(self, value: Any, /) -> Any: ...
    def throw(self, typ: Any, val: Any = ..., tb: Any = ..., /) -> Any: ...
    def close(self) -> None: ...
