"""The store's SQLite plumbing: connections per thread, the schema, and segments.

Records live in **segments**: per signal, a set of tables (``logs_N`` + ``terms_N``,
``spans_N``, ``points_N``) that the one writer fills until it holds ``segment_records``
records or spans more than ``slice_ns`` of record time, then starts the next. Retention
drops whole segments (``DROP TABLE`` costs no per-row work), oldest ``max_ns`` first.
The ``segments`` table lists them with their record count and time bounds; reads take a
snapshot (one read transaction) so a segment dropped meanwhile is never half seen.
Exemplars (few: one per histogram bucket per scrape at most) live in one ``exemplars``
table outside segments, pruned by age and capped in rows (``_store_exemplars``).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

__all__ = ["Db", "Segment"]

_BASE_SCHEMA = """
CREATE TABLE IF NOT EXISTS segments (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, signal TEXT NOT NULL,
    count INTEGER NOT NULL DEFAULT 0, min_ns INTEGER, max_ns INTEGER);
CREATE TABLE IF NOT EXISTS services (name TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL, labels TEXT NOT NULL,
    kind TEXT NOT NULL, family TEXT NOT NULL, UNIQUE (name, labels));
CREATE INDEX IF NOT EXISTS series_family ON series (family);
CREATE TABLE IF NOT EXISTS exemplars (
    id INTEGER PRIMARY KEY, series INTEGER NOT NULL, time_ns INTEGER NOT NULL,
    value REAL NOT NULL, trace_id TEXT NOT NULL, span_id TEXT,
    UNIQUE (series, trace_id, value));
CREATE INDEX IF NOT EXISTS exemplars_series_time ON exemplars (series, time_ns);
CREATE INDEX IF NOT EXISTS exemplars_time ON exemplars (time_ns);
"""

_SEGMENT_SCHEMA = {
    "logs": """
CREATE TABLE logs_{n} (
    id INTEGER PRIMARY KEY, time_ns INTEGER NOT NULL, service TEXT NOT NULL,
    level TEXT NOT NULL, body TEXT NOT NULL, trace_id TEXT, partial INTEGER NOT NULL,
    text TEXT NOT NULL, blob BLOB NOT NULL);
CREATE INDEX logs_{n}_time ON logs_{n} (time_ns);
CREATE INDEX logs_{n}_trace ON logs_{n} (lower(trace_id));
CREATE INDEX logs_{n}_partial ON logs_{n} (id) WHERE partial = 1;
CREATE TABLE terms_{n} (term INTEGER NOT NULL, id INTEGER NOT NULL,
    PRIMARY KEY (term, id)) WITHOUT ROWID;
""",
    "spans": """
CREATE TABLE spans_{n} (
    id INTEGER PRIMARY KEY, trace_id TEXT NOT NULL, span_id TEXT NOT NULL, parent TEXT,
    service TEXT NOT NULL, name TEXT NOT NULL, start_ns INTEGER NOT NULL,
    end_ns INTEGER NOT NULL, status TEXT NOT NULL, blob BLOB NOT NULL);
CREATE INDEX spans_{n}_trace ON spans_{n} (trace_id);
CREATE INDEX spans_{n}_start ON spans_{n} (start_ns);
""",
    "points": """
CREATE TABLE points_{n} (series INTEGER NOT NULL, time_ns INTEGER NOT NULL,
    value REAL NOT NULL, PRIMARY KEY (series, time_ns)) WITHOUT ROWID;
""",
}
_SEGMENT_TABLES = {"logs": ("logs", "terms"), "spans": ("spans",), "points": ("points",)}


@dataclass(frozen=True, slots=True)
class Segment:
    """One segment's row of the ``segments`` table."""

    seq: int
    signal: str
    count: int
    min_ns: int
    max_ns: int


class Db:
    """Connections (one per thread on disk; one shared, locked, in memory) and segments."""

    def __init__(self, path: str | os.PathLike[str] | None, *, wal_bytes: int = 1 << 26) -> None:
        self.path = None if path is None else os.fspath(path)
        # The WAL counts toward the size limit, so it is kept to a fraction of it.
        self._wal_bytes = wal_bytes
        self._lock = threading.RLock()
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._closed = False
        self._shared = self._connect() if self.path is None else None
        with self._lock:
            self._connection().executescript(_BASE_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        target = ":memory:" if self.path is None else self.path
        con = sqlite3.connect(target, isolation_level=None, check_same_thread=False)
        con.execute("PRAGMA busy_timeout = 10000")
        if self.path is not None:
            con.execute("PRAGMA journal_mode = WAL")
            con.execute("PRAGMA synchronous = NORMAL")
            con.execute(f"PRAGMA journal_size_limit = {int(self._wal_bytes)}")
            con.execute(f"PRAGMA wal_autocheckpoint = {max(16, self._wal_bytes // 4096)}")
        con.execute("PRAGMA cache_size = -65536")
        with self._lock:
            self._all.append(con)
        return con

    def _connection(self) -> sqlite3.Connection:
        if self._closed:
            raise RuntimeError("the store is closed; open a new Store to read or write")
        if self._shared is not None:
            return self._shared
        con: sqlite3.Connection | None = getattr(self._local, "con", None)
        if con is None:
            con = self._connect()
            self._local.con = con
        return con

    @contextmanager
    def _transaction(self, begin: str) -> Iterator[sqlite3.Connection]:
        # In memory there is one connection: the lock makes its transactions take turns.
        with self._lock if self._shared is not None else _NOLOCK:
            con = self._connection()
            con.execute(begin)
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    def read(self) -> AbstractContextManager[sqlite3.Connection]:
        """A read transaction: one consistent snapshot, concurrent with the writer."""
        return self._transaction("BEGIN")

    def write(self) -> AbstractContextManager[sqlite3.Connection]:
        """A write transaction (the single writer thread)."""
        return self._transaction("BEGIN IMMEDIATE")

    def segments(self, con: sqlite3.Connection, signal: str) -> list[Segment]:
        """The signal's segments, newest ``max_ns`` first."""
        rows = con.execute(
            "SELECT seq, signal, count, min_ns, max_ns FROM segments WHERE signal = ?"
            " AND count > 0 ORDER BY max_ns DESC, seq DESC",
            (signal,),
        ).fetchall()
        return [Segment(*row) for row in rows]

    def all_segments(self, con: sqlite3.Connection) -> list[Segment]:
        rows = con.execute(
            "SELECT seq, signal, count, coalesce(min_ns, 0), coalesce(max_ns, 0) FROM segments"
        ).fetchall()
        return [Segment(*row) for row in rows]

    def open_segment(
        self, con: sqlite3.Connection, signal: str, low: int, high: int, *, records: int, span: int
    ) -> int:
        """The segment the next batch goes to: the newest, unless full or too wide."""
        row = con.execute(
            "SELECT seq, count, min_ns, max_ns FROM segments WHERE signal = ?"
            " ORDER BY seq DESC LIMIT 1",
            (signal,),
        ).fetchone()
        if row is not None:
            seq, count, min_ns, max_ns = row
            if count == 0 or (count < records and max(high, max_ns) - min(low, min_ns) <= span):
                return int(seq)
        seq = con.execute("INSERT INTO segments (signal) VALUES (?)", (signal,)).lastrowid
        assert seq is not None
        for statement in _SEGMENT_SCHEMA[signal].format(n=seq).split(";"):
            if statement.strip():
                con.execute(statement)
        return int(seq)

    def grow_segment(
        self, con: sqlite3.Connection, seq: int, count: int, low: int, high: int
    ) -> None:
        con.execute(
            "UPDATE segments SET count = count + ?, min_ns = min(coalesce(min_ns, ?), ?),"
            " max_ns = max(coalesce(max_ns, ?), ?) WHERE seq = ?",
            (count, low, low, high, high, seq),
        )

    def drop_segment(self, con: sqlite3.Connection, segment: Segment) -> None:
        for table in _SEGMENT_TABLES[segment.signal]:
            con.execute(f"DROP TABLE IF EXISTS {table}_{segment.seq}")
        con.execute("DELETE FROM segments WHERE seq = ?", (segment.seq,))

    def used_bytes(self) -> int:
        """Pages in use (free pages left by dropped segments excluded) plus the WAL."""
        with self.read() as con:
            pages = con.execute("PRAGMA page_count").fetchone()[0]
            free = con.execute("PRAGMA freelist_count").fetchone()[0]
            size = con.execute("PRAGMA page_size").fetchone()[0]
        wal = 0
        if self.path is not None:
            try:
                wal = os.path.getsize(self.path + "-wal")
            except OSError:
                wal = 0
        return int((pages - free) * size + wal)

    def checkpoint(self) -> None:
        """Fold the WAL back into the database (never waiting on readers)."""
        if self.path is not None:
            con = self._connection()
            con.execute("PRAGMA busy_timeout = 0")  # busy readers: try again next time
            try:
                con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            finally:
                con.execute("PRAGMA busy_timeout = 10000")

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for con in self._all:
                con.close()
            self._all.clear()


class _NoLock:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


_NOLOCK = _NoLock()
