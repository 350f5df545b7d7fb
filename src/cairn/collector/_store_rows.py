"""Spans as the store's rows, prepared before the write transaction.

The hot write path never builds a :class:`SpanRecord` per span: the OTLP receiver walks
the protobuf straight into :data:`SpanRow` tuples (``_otlp.parse_spans``), the writer
thread concatenates them, and :meth:`Store.add_spans` hands them to ``executemany``.
:class:`SpanRows` carries such rows through APIs typed as ``Sequence[SpanRecord]``: it
*is* one (indexing decodes a row back), so a store subclass that wraps ``add_spans``
still sees a sequence of spans.

A row's ``blob`` is the JSON array ``[kind, status_message, attributes, events,
resource]`` that :func:`cairn.collector._store_codec.span_from_row` reads back. The
resource is the same for every span of one OTLP ``ResourceSpans``, so its JSON is made
once and spliced in (:func:`span_blob`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from operator import itemgetter
from typing import Any, overload

import orjson

from cairn.collector._records import SpanRecord
from cairn.collector._store_codec import dumps, span_from_row

__all__ = [
    "SERVICE",
    "START",
    "SpanRow",
    "SpanRows",
    "insert_rows",
    "resource_tail",
    "span_blob",
    "span_rows",
]

# trace_id, span_id, parent, service, name, start_ns, end_ns, status, blob: the columns
# of ``spans_N`` after ``id``, in ``INSERT`` order.
SpanRow = tuple[str, str, str | None, str, str, int, int, str, bytes]

START = itemgetter(5)
SERVICE = itemgetter(3)
_orjson_dumps = orjson.dumps
# Rows per INSERT statement. sqlite3 releases the GIL around every statement step, and
# a thread waiting to take it back can wait a whole switch interval (5 ms) while the
# event loop runs Python: executemany (one step per row) stalls the writer that way.
# One multi-row INSERT per CHUNK rows hands the GIL back a few times per batch instead.
CHUNK = 1024


def insert_rows(
    con: sqlite3.Connection, table: str, columns: str, rows: Sequence[tuple[Any, ...]]
) -> None:
    """``INSERT INTO table columns VALUES ...`` of ``rows``, ``CHUNK`` rows per statement.

    The rest is written in power-of-two chunks, so each table sees a dozen distinct
    statements at most (all kept in the connection's statement cache)."""
    if not rows:
        return
    width = len(rows[0])
    one = "(" + ", ".join("?" * width) + ")"
    # Old SQLite builds allow only 999 parameters per statement.
    most = con.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // width
    done, total, size = 0, len(rows), max(1, min(CHUNK, most))
    while done < total:
        while size > total - done:
            size //= 2
        sql = f"INSERT INTO {table} {columns} VALUES " + ", ".join([one] * size)
        for start in range(done, total - size + 1, size):
            con.execute(sql, [value for row in rows[start : start + size] for value in row])
            done = start + size


def resource_tail(resource: dict[str, Any]) -> bytes:
    """The end of every blob of spans with this resource: ``,<resource JSON>]``."""
    return b"," + dumps(resource) + b"]"


def span_blob(head: tuple[str, str, dict[str, Any], list[Any]], tail: bytes) -> bytes:
    """``[kind, message, attributes, events, resource]`` as JSON, ``head`` + ``tail``.

    As :func:`~cairn.collector._store_codec.dumps`: values orjson cannot write (bytes,
    huge ints) become their text, and NaN / ±Infinity keep the stdlib's spelling
    (``loads`` reads both)."""
    try:
        part = _orjson_dumps(head)
    except TypeError:
        part = b"null"
    if b"null" in part:
        part = dumps(head)
    return part[:-1] + tail


def span_rows(spans: Sequence[SpanRecord]) -> list[SpanRow]:
    """``spans`` as rows (the rows of a :class:`SpanRows` are returned as they are)."""
    if isinstance(spans, SpanRows):
        return spans.rows
    tails: dict[int, bytes] = {}  # spans of one request share their resource dict
    rows: list[SpanRow] = []
    for s in spans:
        tail = tails.get(id(s.resource))
        if tail is None:
            tail = tails[id(s.resource)] = resource_tail(s.resource)
        head = (
            s.kind,
            s.status_message,
            s.attributes,
            [(e.name, e.time_ns, e.attributes) for e in s.events],
        )
        rows.append(
            (
                s.trace_id,
                s.span_id,
                s.parent_span_id,
                s.service,
                s.name,
                s.start_ns,
                s.end_ns,
                s.status,
                span_blob(head, tail),
            )
        )
    return rows


class SpanRows(Sequence[SpanRecord]):
    """Spans held as store rows, made on first use by ``make`` (or given as ``rows``).

    ``len()`` is known up front (the ingest queue counts records before the walk runs
    in the writer thread). Indexing decodes a row into a :class:`SpanRecord`; the store
    reads :attr:`rows` directly.
    """

    __slots__ = ("_count", "_make", "_rows")

    def __init__(
        self,
        count: int,
        make: Callable[[], list[SpanRow]] | None = None,
        *,
        rows: list[SpanRow] | None = None,
    ) -> None:
        if (make is None) == (rows is None):
            raise TypeError("SpanRows needs exactly one of make= or rows=")
        self._count = count
        self._make = make
        self._rows = rows

    @classmethod
    def of(cls, rows: list[SpanRow]) -> SpanRows:
        """Rows already made."""
        return cls(len(rows), rows=rows)

    @property
    def rows(self) -> list[SpanRow]:
        """The rows (made now, once, if they were not yet)."""
        if self._rows is None:
            assert self._make is not None
            rows = self._make()
            if len(rows) != self._count:
                raise RuntimeError(f"expected {self._count} span rows, the walk made {len(rows)}")
            self._rows, self._make = rows, None
        return self._rows

    def __len__(self) -> int:
        return self._count

    @overload
    def __getitem__(self, index: int) -> SpanRecord: ...

    @overload
    def __getitem__(self, index: slice) -> list[SpanRecord]: ...

    def __getitem__(self, index: int | slice) -> SpanRecord | list[SpanRecord]:
        if isinstance(index, slice):
            return [span_from_row((0, *row)) for row in self.rows[index]]
        return span_from_row((0, *self.rows[index]))

    def __iter__(self) -> Iterator[SpanRecord]:
        return (span_from_row((0, *row)) for row in self.rows)

    def __repr__(self) -> str:
        state = "made" if self._rows is not None else "pending"
        return f"<SpanRows {self._count} spans, {state}>"
