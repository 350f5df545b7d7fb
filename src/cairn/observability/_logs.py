"""Logs: one JSON object per line, from structlog and from standard logging.

Every line carries ``timestamp`` (ISO-8601 UTC), ``level``, ``event``,
``service``, the bound context variables and, inside a span, ``trace_id``
(32 hex) and ``span_id`` (16 hex) exactly as OpenTelemetry prints them (not
structlog's recipe's ``0x``-prefixed ints). Exceptions become structured
data (structlog's ``dict_tracebacks`` shape).

The processors are module-level functions reading the current ``LogPipeline``,
so loggers that structlog cached before a reconfiguration keep working.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager
from typing import IO, Any

import orjson
import structlog
from opentelemetry import trace
from structlog.contextvars import merge_contextvars

from cairn.observability._span import LeanSpan

__all__ = ["LEVELS", "LogPipeline", "add_export", "capture_log_lines", "emit"]

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
_METHOD_LEVEL = {"warn": "warning", "exception": "error", "fatal": "critical", "msg": "info"}
_dict_tracebacks = structlog.processors.dict_tracebacks

_ORJSON_OPTIONS = orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS
_log_captures: tuple[list[dict[str, Any]], ...] = ()
# Exporters handed every enriched event before it is rendered (OTLP logs).
_log_exports: tuple[Callable[[MutableMapping[str, Any]], None], ...] = ()


def _default(value: object) -> str:
    return str(value)


class LogPipeline:
    """Where lines go and what every line carries.

    A line is written at once, but the stream is flushed by a background
    thread every ``flush_interval`` seconds rather than after every line:
    a flush is a system call, and one per request cost a fifth of cairn's
    whole per-request overhead. An interactive terminal, or
    ``flush_interval=0``, flushes every line. ``close()`` flushes what is
    left.
    """

    def __init__(
        self, *, service: str, level: int, stream: IO[Any], flush_interval: float = 0.2
    ) -> None:
        self.service = service
        self.level = level
        self._lock = threading.Lock()
        # Bytes go to the binary buffer under a text stream (stdout), or
        # straight to a binary stream; a text-only stream gets str.
        target: Any = getattr(stream, "buffer", stream)
        self._flush = target.flush
        if isinstance(target, io.TextIOBase):
            self._write: Callable[[bytes], object] = lambda data: target.write(data.decode())
        else:
            self._write = target.write
        self._write_lock = None if type(target) in (io.BufferedWriter, io.BytesIO) else self._lock
        isatty = getattr(stream, "isatty", None)
        self._eager = flush_interval <= 0 or bool(callable(isatty) and isatty())
        self._dirty = False
        self._closed = threading.Event()
        self._flusher: threading.Thread | None = None
        if not self._eager:
            self._flusher = threading.Thread(
                target=self._flush_every,
                args=(flush_interval,),
                name="cairn-log-flush",
                daemon=True,
            )
            self._flusher.start()

    def write(self, line: bytes) -> None:
        # io.BufferedWriter and io.BytesIO take each write whole (the former
        # under its own lock): lines to them need no second lock.
        lock = self._write_lock
        if lock is not None:
            lock.acquire()
        try:
            self._write(line)
            if self._eager:
                self._flush()
            else:
                self._dirty = True
        finally:
            if lock is not None:
                lock.release()

    def flush(self) -> None:
        with self._lock:
            self._dirty = False
            # A stream closed under us (ValueError) has nothing left to keep.
            with contextlib.suppress(ValueError):
                self._flush()

    def _flush_every(self, interval: float) -> None:
        while not self._closed.wait(interval):
            if self._dirty:
                self.flush()

    def close(self) -> None:
        """Stop the flusher and flush what is buffered."""
        self._closed.set()
        if self._flusher is not None:
            self._flusher.join(timeout=5)
        self.flush()


# The pipeline of the moment (None: not set up; lines are dropped).
PIPELINE: LogPipeline | None = None


# (second, "YYYY-MM-DDTHH:MM:SS") of the last line: formatting the date and
# time once a second, not once a line, saves a microsecond a line. A tuple,
# replaced whole, so threads never see half an update.
_second: tuple[int, str] = (-1, "")


def _timestamp(now: float | None = None) -> str:
    """ISO-8601 UTC with microseconds and a ``Z``, like ``2026-11-27T22:45:44.879117Z``.

    ``now`` (Unix seconds) defaults to the current time.
    """
    global _second
    if now is None:
        now = time.time()
    second = int(now)
    cached = _second
    if cached[0] != second:
        cached = _second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{cached[1]}.{int((now - second) * 1_000_000):06d}Z"


def _enrich(_: object, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    pipeline = PIPELINE
    event["timestamp"] = _timestamp()
    event["level"] = _METHOD_LEVEL.get(method, method)
    if pipeline is not None:
        event.setdefault("service", pipeline.service)
    span = trace.get_current_span()
    if type(span) is LeanSpan:
        event["trace_id"] = span.trace_id_hex
        event["span_id"] = span.span_id_hex
    else:
        context = span.get_span_context()
        if context.is_valid:
            event["trace_id"] = f"{context.trace_id:032x}"
            event["span_id"] = f"{context.span_id:016x}"
    if "exc_info" in event:
        _dict_tracebacks(None, method, event)
    return event


def _render(_: object, __: str, event: MutableMapping[str, Any]) -> bytes:
    for captured in _log_captures:
        captured.append(dict(event))
    for export in _log_exports:
        export(event)
    try:
        return orjson.dumps(event, default=_default, option=_ORJSON_OPTIONS)
    except TypeError:
        # orjson refuses integers beyond 64 bits; the stdlib writes them. A log
        # call must never raise.
        return json.dumps(event, default=_default, separators=(",", ":")).encode() + b"\n"


PROCESSORS: list[Any] = [merge_contextvars, _enrich, _render]


# structlog's registry of the context variables bind_contextvars() created
# (a private name, so read defensively): while it is empty no line can carry
# one, and the request line skips merging them.
_BOUND_VARS: dict[str, Any] | None = getattr(structlog.contextvars, "_CONTEXT_VARS", None)


def request_line(
    level: str,
    span: LeanSpan,
    method: str,
    route: str,
    path: str,
    status: int,
    duration_ms: float,
    now: float | None = None,
) -> None:
    """The middleware's line for an answered request, built in one step when it can be.

    ``now`` (Unix seconds) is the line's timestamp, the current time by default.
    """
    pipeline = PIPELINE
    if pipeline is None or LEVELS[level] < pipeline.level:
        return
    event = {
        "event": "request",
        "method": method,
        "route": route,
        "path": path,
        "status": status,
        "duration_ms": duration_ms,
        "timestamp": _timestamp(now),
        "level": level,
        "service": pipeline.service,
        "trace_id": span.trace_id_hex,
        "span_id": span.span_id_hex,
    }
    if _BOUND_VARS is None or _BOUND_VARS:
        # Bound context variables may set "service" (and come before the
        # enrichment): the general path handles them.
        for key in _ENRICHED:
            del event[key]
        emit(level, event, span, now)
        return
    pipeline.write(_render(None, level, event))


_ENRICHED = ("timestamp", "level", "service", "trace_id", "span_id")


def emit(
    level: str, event: dict[str, Any], span: LeanSpan | None = None, now: float | None = None
) -> None:
    """Write one line without a bound logger: the middleware's fast path.

    ``span`` is the current span when the caller holds it (saves the context
    lookup); otherwise the line is enriched as any other. ``now`` (Unix
    seconds) is the line's time when ``span`` is given, the current time by
    default.
    """
    pipeline = PIPELINE
    if pipeline is None or LEVELS[level] < pipeline.level:
        return
    merge_contextvars(None, level, event)
    if span is None or "exc_info" in event:
        _enrich(None, level, event)
    else:
        event["timestamp"] = _timestamp(now)
        event["level"] = level
        event.setdefault("service", pipeline.service)
        event["trace_id"] = span.trace_id_hex
        event["span_id"] = span.span_id_hex
    pipeline.write(_render(None, level, event))


class _SinkLogger:
    """structlog's logger at the end of the chain: writes the rendered bytes."""

    def msg(self, line: bytes) -> None:
        if PIPELINE is not None:
            PIPELINE.write(line)

    debug = info = warning = warn = error = critical = exception = fatal = log = msg


def _sink_factory(*_: Any) -> _SinkLogger:
    return _SinkLogger()


class StdlibHandler(logging.Handler):
    """Routes standard ``logging`` records (uvicorn, httpx, yours) into the pipeline."""

    def emit(self, record: logging.LogRecord) -> None:
        pipeline = PIPELINE
        if pipeline is None:
            return
        try:
            event: dict[str, Any] = {"event": record.getMessage(), "logger": record.name}
            if record.exc_info:
                event["exc_info"] = record.exc_info
            method = record.levelname.lower()
            line = _render(None, method, _enrich(None, method, merge_contextvars(None, "", event)))
            pipeline.write(line)
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


def configure(pipeline: LogPipeline) -> None:
    """Make structlog render through ``pipeline``."""
    global PIPELINE
    PIPELINE = pipeline
    structlog.configure(
        processors=PROCESSORS,
        wrapper_class=structlog.make_filtering_bound_logger(pipeline.level),
        logger_factory=_sink_factory,
        context_class=dict,
        cache_logger_on_first_use=True,
    )


def unconfigure() -> None:
    global PIPELINE
    pipeline, PIPELINE = PIPELINE, None
    structlog.reset_defaults()
    if pipeline is not None:
        pipeline.close()


def add_export(export: Callable[[MutableMapping[str, Any]], None]) -> Callable[[], None]:
    """Hand every enriched event to ``export`` too; returns the undo."""
    global _log_exports
    _log_exports = (*_log_exports, export)

    def remove() -> None:
        global _log_exports
        _log_exports = tuple(e for e in _log_exports if e is not export)

    return remove


class StdlibRouting:
    """Points the root logger (and uvicorn's own loggers) at the pipeline; undoable."""

    _UVICORN = ("uvicorn", "uvicorn.error", "uvicorn.access")
    # One INFO line per HTTP request made: the client span says it already.
    _CHATTY = ("httpx", "httpcore")

    def __init__(self, *, level: int, access_log: bool) -> None:
        root = logging.getLogger()
        self._saved_root = (list(root.handlers), root.level)
        self._saved: dict[str, tuple[list[logging.Handler], bool, int]] = {}
        self.handler = StdlibHandler(level)
        root.handlers = [self.handler]
        root.setLevel(level)
        for name in self._UVICORN:
            logger = logging.getLogger(name)
            self._saved[name] = (list(logger.handlers), logger.propagate, logger.level)
            logger.handlers = []
            logger.propagate = True
            # setup(log_level=...) governs: uvicorn's own level (set by its
            # --log-level or an earlier dictConfig) would filter lines before
            # they reach the pipeline.
            logger.setLevel(logging.NOTSET)
        if not access_log:
            # The middleware already writes one line per request.
            logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
        for name in self._CHATTY:
            logger = logging.getLogger(name)
            self._saved[name] = (list(logger.handlers), logger.propagate, logger.level)
            if level > logging.DEBUG:
                logger.setLevel(max(level, logging.WARNING))

    def undo(self) -> None:
        root = logging.getLogger()
        root.handlers, level = self._saved_root
        root.setLevel(level)
        for name, (handlers, propagate, level) in self._saved.items():
            logger = logging.getLogger(name)
            logger.handlers, logger.propagate = handlers, propagate
            logger.setLevel(level)


@contextmanager
def capture_log_lines() -> Iterator[list[dict[str, Any]]]:
    """Collect, as dicts, every line the pipeline renders inside the block."""
    global _log_captures
    captured: list[dict[str, Any]] = []
    _log_captures = (*_log_captures, captured)
    try:
        yield captured
    finally:
        _log_captures = tuple(c for c in _log_captures if c is not captured)
