"""SQLite for the shop's services: one local file per service, every query a ``db.query`` span.

The standard library's ``sqlite3`` driver runs in a worker thread
(``asyncio.to_thread``) so a slow disk never stalls the event loop; the span
is opened around it, in the request's context, so it is a child of the
request's server span. Two replicas of a service share their file (WAL mode,
a busy timeout), which is what keeps stock consistent across ``inventory-1``
and ``inventory-2``.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cairn.observability import span

__all__ = ["Database", "db_path"]

HERE = Path(__file__).resolve().parent
Row = dict[str, Any]


def db_path(variable: str, default_name: str) -> Path:
    """``$variable`` (relative to the working folder), else ``<shop folder>/.cairn/<default_name>``."""
    value = os.environ.get(variable)
    return Path(value).absolute() if value else HERE / ".cairn" / default_name


class Database:
    """One SQLite file: created with ``schema``, seeded by ``seed`` (idempotent) on :meth:`open`."""

    def __init__(
        self, path: Path, *, schema: str, seed: Callable[[sqlite3.Connection], None]
    ) -> None:
        self.path = path
        self._schema = schema
        self._seed = seed
        self._connection: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def open(self) -> None:
        """Create the file, its tables and its seed rows (rows already there are kept)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=10.0
        )
        connection.row_factory = sqlite3.Row
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA busy_timeout=10000")
        connection.executescript(self._schema)
        connection.execute("BEGIN IMMEDIATE")
        try:
            self._seed(connection)
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")
        self._connection = connection

    def close(self) -> None:
        """Close the connection (idempotent)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    def _run(self, sql: str, params: Sequence[Any]) -> tuple[list[Row], int, int | None]:
        connection = self._connection
        if connection is None:
            raise RuntimeError(f"database {self.path} is not open (the app's lifespan opens it)")
        with self._lock:
            cursor = connection.execute(sql, params)
            rows = [dict(row) for row in cursor.fetchall()]
            return rows, cursor.rowcount, cursor.lastrowid

    async def query(
        self, sql: str, params: Sequence[Any] = ()
    ) -> tuple[list[Row], int, int | None]:
        """Run one statement in a ``db.query`` span: (rows, rows changed, last row id)."""
        attributes = {
            "db.system": "sqlite",
            "db.statement": sql,
            "db.name": self.path.name,
            "db.operation": sql.split(None, 1)[0].upper(),
        }
        with span("db.query", **attributes):
            return await asyncio.to_thread(self._run, sql, params)

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """The rows of a query."""
        return (await self.query(sql, params))[0]

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        """The first row of a query, or ``None``."""
        rows = (await self.query(sql, params))[0]
        return rows[0] if rows else None
