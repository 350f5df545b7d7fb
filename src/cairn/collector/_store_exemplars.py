"""Exemplars in the store: which trace an observation of a metric came from.

One ``exemplars`` table (``_store_db``) keyed to the ``series`` table: a row per distinct
(series, trace id, value). A scrape sees the same exemplar on a bucket until a newer
observation replaces it, so consecutive scrapes insert nothing new (``INSERT OR
IGNORE`` on that key). Rows are few — at most one per histogram bucket per scrape —
so they are kept outside the segments: pruned by age with the rest and capped in rows
(the oldest go first).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["ExemplarRow", "StoredExemplar", "find_exemplars", "insert_exemplars", "trim_exemplars"]

ExemplarRow = tuple[int, int, float, str, str | None]
"""(series id, time_ns, value, trace_id, span_id) as inserted."""


@dataclass(frozen=True, slots=True)
class StoredExemplar:
    """An exemplar as read back: its series' name and labels, time, value and ids."""

    name: str
    labels: dict[str, str]
    time_ns: int
    value: float
    trace_id: str
    span_id: str | None

    def to_json(self) -> dict[str, Any]:
        """The collector's HTTP API shape (``/api/metrics/{name}/exemplars``)."""
        return {
            "name": self.name,
            "labels": self.labels,
            "time_ns": self.time_ns,
            "value": self.value,
            "trace_id": self.trace_id,
            "span_id": self.span_id,
        }


def insert_exemplars(con: sqlite3.Connection, rows: Sequence[ExemplarRow]) -> int:
    """Insert the new ones (an exemplar already stored is ignored); returns how many."""
    if not rows:
        return 0
    before = con.total_changes
    con.executemany(
        "INSERT OR IGNORE INTO exemplars (series, time_ns, value, trace_id, span_id)"
        " VALUES (?, ?, ?, ?, ?)",
        rows,
    )
    return con.total_changes - before


def trim_exemplars(con: sqlite3.Connection, *, cutoff_ns: int, keep: int) -> int:
    """Delete exemplars older than ``cutoff_ns``, then the oldest beyond ``keep`` rows;
    returns how many were deleted."""
    before = con.total_changes
    con.execute("DELETE FROM exemplars WHERE time_ns < ?", (cutoff_ns,))
    count = con.execute("SELECT count(*) FROM exemplars").fetchone()[0]
    if count > keep:
        con.execute(
            "DELETE FROM exemplars WHERE id IN"
            " (SELECT id FROM exemplars ORDER BY time_ns, id LIMIT ?)",
            (count - keep,),
        )
    return con.total_changes - before


def find_exemplars(
    con: sqlite3.Connection,
    name: str,
    *,
    service: str | None = None,
    since_ns: int = 0,
    until_ns: int = 1 << 62,
    limit: int = 200,
) -> list[StoredExemplar]:
    """Exemplars of the series named ``name`` or of the family ``name`` (a histogram's
    live on its ``_bucket`` series), of one ``service`` if given, within the time
    bounds (inclusive), newest first, at most ``limit``."""
    series: dict[int, tuple[str, dict[str, str]]] = {}
    for sid, series_name, labels_json in con.execute(
        "SELECT id, name, labels FROM series WHERE family = ? OR name = ?", (name, name)
    ):
        labels = json.loads(labels_json)
        if service is None or labels.get("service") == service:
            series[sid] = (series_name, labels)
    if not series or limit <= 0:
        return []
    rows = con.execute(
        "SELECT series, time_ns, value, trace_id, span_id FROM exemplars"
        " WHERE series IN (SELECT value FROM json_each(?)) AND time_ns >= ? AND time_ns <= ?"
        " ORDER BY time_ns DESC, id DESC LIMIT ?",
        (json.dumps(list(series)), since_ns, until_ns, limit),
    ).fetchall()
    return [
        StoredExemplar(series[sid][0], series[sid][1], time_ns, value, trace_id, span_id)
        for sid, time_ns, value, trace_id, span_id in rows
    ]
