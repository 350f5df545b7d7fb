"""The collector's store: spans, logs and metric samples in one local SQLite file.

::

    store = Store("/var/lib/cairn/collector.db", max_bytes=1 << 30, max_age_s=7 * 86400)
    store.add_logs(records)                      # the one writer thread
    store.search_logs("user_id:123 AND event:purchase_completed", limit=100)

Design, measurements and limits: ``docs/collector-store.md``. In short: segments of
tables (``_store_db``), an inverted index of ``field=value`` terms and a full-text column
to narrow a log query (``_store_plan``), and every candidate checked with
``Query.matches(record.document())`` so results are exactly the reference evaluator's.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Sequence
from typing import Any

from cairn.collector._query_eval import Query
from cairn.collector._query_parse import parse_query
from cairn.collector._records import LogRecord, Sample, SpanRecord
from cairn.collector._store_codec import ascii_lower, dumps, log_from_row, span_from_row, summarise
from cairn.collector._store_db import Db, Segment
from cairn.collector._store_exemplars import (
    ExemplarRow,
    StoredExemplar,
    find_exemplars,
    insert_exemplars,
    trim_exemplars,
)
from cairn.collector._store_model import (
    MetricInfo,
    RangeSeries,
    SeriesSummary,
    StoreStats,
    Trace,
    TraceSummary,
)
from cairn.collector._store_plan import (
    ColumnKeys,
    IndexKeys,
    Plan,
    index_plan,
    log_index,
    text_filter,
)
from cairn.collector._store_rows import SERVICE, START, insert_rows, span_rows
from cairn.collector._store_series import metric_names, metric_range, metric_summary, series_key

__all__ = [
    "MetricInfo",
    "RangeSeries",
    "SeriesSummary",
    "Store",
    "StoreStats",
    "StoredExemplar",
    "Trace",
    "TraceSummary",
]

# Posting lists longer than this (per segment) are not worth reading: a term that common
# matches often, so scanning newest-first reaches `limit` matches sooner.
CANDIDATE_CAP = 4096
# Rough bytes per record on disk, to size segments at about 1/8 of max_bytes.
_RECORD_BYTES = {"logs": 400, "spans": 300, "points": 40}
_SEGMENT_MAX = {"logs": 1 << 17, "spans": 1 << 17, "points": 1 << 20}
_LOG_COLUMNS = "id, time_ns, service, level, body, trace_id, blob"
_SPAN_COLUMNS = "id, trace_id, span_id, parent, service, name, start_ns, end_ns, status, blob"
_FAR = 1 << 62
_SPAN_INSERT = "(trace_id, span_id, parent, service, name, start_ns, end_ns, status, blob)"


def _as_query(query: str | Query | None) -> Query:
    if query is None:
        return Query(None)
    return query if isinstance(query, Query) else parse_query(query)


def _in_window(segments: Iterable[Segment], since: int, until: int) -> list[Segment]:
    return [s for s in segments if s.max_ns >= since and s.min_ns <= until]


class Store:
    """A local, embedded store of spans, logs and metric samples with retention.

    ``path=None`` keeps everything in memory (for tests). Writes come from one thread;
    each ``add_*`` call is one transaction, durable on return (WAL, ``synchronous=NORMAL``:
    safe from a process crash, not from power loss). Reads are safe from any thread,
    concurrently with the writer. Below ``max_bytes`` (approximate: pages in use plus the
    WAL) and ``max_age_s``, :meth:`enforce_retention` drops nothing. Exemplars are kept
    for ``max_age_s`` too, and at most ``max_exemplars`` of them (the newest).
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None,
        *,
        max_bytes: int = 1 << 30,
        max_age_s: float = 7 * 86400,
        max_exemplars: int = 100_000,
    ) -> None:
        if max_bytes <= 0 or max_age_s <= 0 or max_exemplars <= 0:
            raise ValueError(
                f"max_bytes ({max_bytes}), max_age_s ({max_age_s}) and max_exemplars"
                f" ({max_exemplars}) must be positive"
            )
        self.max_exemplars = max_exemplars
        self._exemplars_since_trim = 0
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self._db = Db(path, wal_bytes=max(1 << 16, min(1 << 26, max_bytes // 16)))
        self._slice_ns = int(max_age_s * 1e9 / 16)
        self._segment_records = {
            signal: max(256, min(_SEGMENT_MAX[signal], max_bytes // 8 // size))
            for signal, size in _RECORD_BYTES.items()
        }
        self._services: set[str] = set()
        self._series: dict[tuple[str, str], int] = {}

    # -- writes (one writer thread) ------------------------------------------------------

    def _segment(self, con: sqlite3.Connection, signal: str, low: int, high: int) -> int:
        return self._db.open_segment(
            con, signal, low, high, records=self._segment_records[signal], span=self._slice_ns
        )

    def _note_services(self, con: sqlite3.Connection, names: Iterable[str]) -> None:
        new = set(names) - self._services
        if new:
            con.executemany("INSERT OR IGNORE INTO services (name) VALUES (?)", [(n,) for n in new])
            self._services |= new

    def add_spans(self, spans: Sequence[SpanRecord]) -> None:
        """Store a batch of finished spans (one transaction).

        A :class:`~cairn.collector._store_rows.SpanRows` (what the collector's writer
        passes) goes in as its prepared rows, with no :class:`SpanRecord` per span."""
        if not spans:
            return
        rows = span_rows(spans)
        low = min(map(START, rows))
        high = max(map(START, rows))
        with self._db.write() as con:
            seq = self._segment(con, "spans", low, high)
            insert_rows(con, f"spans_{seq}", _SPAN_INSERT, rows)
            self._db.grow_segment(con, seq, len(rows), low, high)
            self._note_services(con, set(map(SERVICE, rows)))

    def add_logs(self, logs: Sequence[LogRecord]) -> None:
        """Store a batch of log records with their index terms (one transaction)."""
        if not logs:
            return
        prepared = []
        for log in logs:
            terms, complete, text = log_index(log)
            blob = dumps((log.span_id, log.attributes, log.resource))
            prepared.append((log, terms, not complete, text, blob))
        low = min(log.time_ns for log in logs)
        high = max(log.time_ns for log in logs)
        with self._db.write() as con:
            seq = self._segment(con, "logs", low, high)
            first = con.execute(f"SELECT coalesce(max(id), 0) + 1 FROM logs_{seq}").fetchone()[0]
            con.executemany(
                f"INSERT INTO logs_{seq} (id, time_ns, service, level, body, trace_id, partial,"
                " text, blob) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (first + i, log.time_ns, log.service, log.level, log.body, log.trace_id,
                     partial, text, blob)
                    for i, (log, _, partial, text, blob) in enumerate(prepared)
                ],
            )  # fmt: skip
            con.executemany(
                f"INSERT INTO terms_{seq} (term, id) VALUES (?, ?)",
                [(term, first + i) for i, item in enumerate(prepared) for term in item[1]],
            )
            self._db.grow_segment(con, seq, len(logs), low, high)
            self._note_services(con, {log.service for log in logs})

    def add_samples(self, samples: Sequence[Sample]) -> None:
        """Store a batch of metric samples; a repeated (series, time) keeps the last value.

        A sample's exemplar is stored too, once: the same (series, trace id, value)
        seen again on later scrapes is ignored."""
        if not samples:
            return
        low = min(s.time_ns for s in samples)
        high = max(s.time_ns for s in samples)
        with self._db.write() as con:
            rows = []
            exemplars: list[ExemplarRow] = []
            for sample in samples:
                key = series_key(sample)
                series = self._series.get(key)
                if series is None:
                    con.execute(
                        "INSERT OR IGNORE INTO series (name, labels, kind, family)"
                        " VALUES (?, ?, ?, ?)",
                        (*key, sample.kind, sample.family or sample.name),
                    )
                    series = con.execute(
                        "SELECT id FROM series WHERE name = ? AND labels = ?", key
                    ).fetchone()[0]
                    self._series[key] = series
                rows.append((series, sample.time_ns, sample.value))
                if (ex := sample.exemplar) is not None:
                    exemplars.append((series, ex.time_ns, ex.value, ex.trace_id, ex.span_id))
            seq = self._segment(con, "points", low, high)
            con.executemany(
                f"INSERT OR REPLACE INTO points_{seq} (series, time_ns, value) VALUES (?, ?, ?)",
                rows,
            )
            self._db.grow_segment(con, seq, len(rows), low, high)
            services = {s.labels["service"] for s in samples if "service" in s.labels}
            services |= {s.labels["job"] for s in samples if "job" in s.labels}
            self._note_services(con, services)
            self._exemplars_since_trim += insert_exemplars(con, exemplars)
            if self._exemplars_since_trim > self.max_exemplars // 8:
                # Between retention runs too, so a burst cannot grow the table unbounded.
                trim_exemplars(con, cutoff_ns=0, keep=self.max_exemplars)
                self._exemplars_since_trim = 0

    # -- logs ----------------------------------------------------------------------------

    def search_logs(
        self,
        query: str | Query | None,
        *,
        since_ns: int | None = None,
        until_ns: int | None = None,
        limit: int = 100,
    ) -> list[LogRecord]:
        """Log records matching ``query`` within the time bounds (inclusive), newest first.

        Raises :class:`cairn.collector.QueryError` for query text that does not parse.
        """
        parsed = _as_query(query)
        since, until = since_ns or 0, _FAR if until_ns is None else until_ns
        plan = index_plan(parsed.root)
        found: list[tuple[int, int, int, LogRecord]] = []
        if limit <= 0:
            return []
        with self._db.read() as con:
            for segment in _in_window(self._db.segments(con, "logs"), since, until):
                if len(found) >= limit:
                    found.sort(key=lambda f: f[:3], reverse=True)
                    if found[limit - 1][0] > segment.max_ns:
                        break
                found.extend(
                    self._search_segment(con, segment.seq, parsed, plan, since, until, limit)
                )
        found.sort(key=lambda f: f[:3], reverse=True)
        return [f[3] for f in found[:limit]]

    def _search_segment(
        self,
        con: sqlite3.Connection,
        seq: int,
        query: Query,
        plan: Plan | None,
        since: int,
        until: int,
        limit: int,
    ) -> list[tuple[int, int, int, LogRecord]]:
        where = ["time_ns >= ?", "time_ns <= ?"]
        params: list[Any] = [since, until]
        candidates = None if plan is None else self._candidates(con, seq, plan)
        if candidates is not None:
            if not candidates:
                return []
            candidates |= {
                r[0] for r in con.execute(f"SELECT id FROM logs_{seq} WHERE partial = 1")
            }
            where.append("id IN (SELECT value FROM json_each(?))")
            params.append(json.dumps(sorted(candidates)))
        text = text_filter(query.root)
        if text is not None:
            where.append(f"({text[0]})")
            params.extend(text[1])
        cursor = con.execute(
            f"SELECT {_LOG_COLUMNS} FROM logs_{seq} WHERE {' AND '.join(where)}"
            " ORDER BY time_ns DESC, id DESC",
            params,
        )
        out: list[tuple[int, int, int, LogRecord]] = []
        for row in cursor:
            record = log_from_row(row)
            if query.root is None or query.matches(record.document()):
                out.append((record.time_ns, seq, row[0], record))
                if len(out) >= limit:
                    break
        cursor.close()
        return out

    def _candidates(self, con: sqlite3.Connection, seq: int, plan: Plan) -> set[int] | None:
        """Record ids including every match of ``plan`` (``None``: too many to be worth it)."""
        if isinstance(plan, IndexKeys):
            ids: set[int] = set()
            for key in plan.keys:
                ids.update(
                    r[0]
                    for r in con.execute(
                        f"SELECT id FROM terms_{seq} WHERE term = ? LIMIT ?",
                        (key, CANDIDATE_CAP + 1),
                    )
                )
                if len(ids) > CANDIDATE_CAP:
                    return None
            return ids
        if isinstance(plan, ColumnKeys):
            rows = con.execute(
                f"SELECT id FROM logs_{seq} WHERE lower(trace_id) = ? LIMIT ?",
                (plan.value, CANDIDATE_CAP + 1),
            ).fetchall()
            return None if len(rows) > CANDIDATE_CAP else {r[0] for r in rows}
        op, parts = plan
        sets = [self._candidates(con, seq, part) for part in parts]
        if op == "and":
            known = sorted((s for s in sets if s is not None), key=len)
            if not known:
                return None
            return known[0].intersection(*known[1:])
        if any(s is None for s in sets):
            return None
        union: set[int] = set().union(*(s for s in sets if s is not None))
        return None if len(union) > CANDIDATE_CAP else union

    # -- traces --------------------------------------------------------------------------

    def find_traces(
        self,
        *,
        service: str | None = None,
        operation: str | None = None,
        min_duration_ns: int | None = None,
        status: str | None = None,
        query: str | Query | None = None,
        since_ns: int | None = None,
        until_ns: int | None = None,
        limit: int = 50,
    ) -> list[TraceSummary]:
        """Traces with at least one span meeting every given filter, newest first.

        ``service``, ``operation`` (span name) and ``status`` compare exactly;
        ``min_duration_ns`` is the span's duration; ``query`` is matched against span
        documents; the time bounds apply to span start times.
        """
        parsed = _as_query(query)
        since, until = since_ns or 0, _FAR if until_ns is None else until_ns
        where: list[str] = ["start_ns >= ?", "start_ns <= ?"]
        params: list[Any] = [since, until]
        for column, value in (("service", service), ("name", operation), ("status", status)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if min_duration_ns is not None:
            where.append("end_ns - start_ns >= ?")
            params.append(min_duration_ns)
        if limit <= 0:
            return []
        found: dict[str, int] = {}
        with self._db.read() as con:
            segments = self._db.segments(con, "spans")
            for segment in _in_window(segments, since, until):
                if len(found) >= limit and sorted(found.values())[-limit] > segment.max_ns:
                    break
                new = 0
                cursor = con.execute(
                    f"SELECT {_SPAN_COLUMNS} FROM spans_{segment.seq}"
                    f" WHERE {' AND '.join(where)} ORDER BY start_ns DESC",
                    params,
                )
                for row in cursor:
                    trace_id, start = row[1], row[6]
                    if trace_id in found and found[trace_id] >= start:
                        continue
                    if parsed.root is not None and not parsed.matches(
                        span_from_row(row).document()
                    ):
                        continue
                    new += trace_id not in found
                    found[trace_id] = start
                    if new >= limit:
                        break
                cursor.close()
            chosen = sorted(found, key=lambda t: found[t], reverse=True)[:limit]
            spans = self._spans_of(con, segments, chosen)
        summaries = [summarise(t, spans[t]) for t in chosen if spans.get(t)]
        summaries.sort(key=lambda s: (s.start_ns, s.trace_id), reverse=True)
        return summaries

    def _spans_of(
        self, con: sqlite3.Connection, segments: list[Segment], trace_ids: list[str]
    ) -> dict[str, list[SpanRecord]]:
        spans: dict[str, list[SpanRecord]] = {}
        if not trace_ids:
            return spans
        ids = json.dumps(trace_ids)
        for segment in segments:
            for row in con.execute(
                f"SELECT {_SPAN_COLUMNS} FROM spans_{segment.seq}"
                " WHERE trace_id IN (SELECT value FROM json_each(?))",
                (ids,),
            ):
                spans.setdefault(row[1], []).append(span_from_row(row))
        for items in spans.values():
            items.sort(key=lambda s: (s.start_ns, s.span_id))
        return spans

    def get_trace(self, trace_id: str) -> Trace | None:
        """Every span of the trace and every log carrying its id; ``None`` if neither."""
        with self._db.read() as con:
            spans = self._spans_of(con, self._db.segments(con, "spans"), [trace_id])
            # (SQLite's planner ignores the index when the exact match is in the same WHERE.)
            logs = [
                log_from_row(row)
                for segment in self._db.segments(con, "logs")
                for row in con.execute(
                    f"SELECT {_LOG_COLUMNS} FROM logs_{segment.seq} WHERE lower(trace_id) = ?",
                    (ascii_lower(trace_id),),
                )
                if row[5] == trace_id
            ]
        if not spans and not logs:
            return None
        logs.sort(key=lambda log: log.time_ns)
        return Trace(trace_id, spans.get(trace_id, []), logs)

    # -- metrics and the rest ------------------------------------------------------------

    def services(self) -> list[str]:
        """Every service seen in spans, logs or samples (``service`` or ``job`` label)."""
        with self._db.read() as con:
            return [r[0] for r in con.execute("SELECT name FROM services ORDER BY name")]

    def metric_names(self) -> list[MetricInfo]:
        """Each metric family: name, kind and number of label sets (``le`` ignored)."""
        with self._db.read() as con:
            return metric_names(con)

    def metric_summary(
        self, name: str, *, by: Sequence[str] = (), since_ns: int | None = None
    ) -> list[SeriesSummary]:
        """Each series of ``name`` (or group, when ``by`` names labels) over the window
        from ``since_ns`` to now; see ``docs/collector-store.md`` for the arithmetic."""
        with self._db.read() as con:
            return metric_summary(con, self._db, name, by=by, since_ns=since_ns or 0)

    def metric_range(
        self,
        name: str,
        *,
        by: Sequence[str] = (),
        since_ns: int,
        until_ns: int | None = None,
        step_s: float = 15.0,
        stat: str = "rate",
    ) -> list[RangeSeries]:
        """``stat`` (``rate``, ``latest``, ``p50``, ``p90``, ``p99``) of each series or
        group at every step from ``since_ns + step`` to ``until_ns`` (default: now)."""
        until = time.time_ns() if until_ns is None else until_ns
        with self._db.read() as con:
            return metric_range(
                con, self._db, name, by=by, since_ns=since_ns, until_ns=until, step_s=step_s,
                stat=stat,
            )  # fmt: skip

    def exemplars(
        self,
        name: str,
        *,
        service: str | None = None,
        since_ns: int | None = None,
        until_ns: int | None = None,
        limit: int = 200,
    ) -> list[StoredExemplar]:
        """Exemplars of metric ``name`` (a series name or a family: a histogram's are on
        its ``_bucket`` series), of ``service`` if given, in the time bounds, newest
        first."""
        with self._db.read() as con:
            return find_exemplars(
                con, name, service=service, since_ns=since_ns or 0,
                until_ns=_FAR if until_ns is None else until_ns, limit=limit,
            )  # fmt: skip

    def enforce_retention(self, now_ns: int | None = None) -> int:
        """Drop whole segments older than ``max_age_s``, then the oldest ones while the
        store is over ``max_bytes``; returns how many records were dropped (exemplars
        older than ``max_age_s`` or beyond ``max_exemplars`` go too, uncounted)."""
        now = time.time_ns() if now_ns is None else now_ns
        cutoff = now - int(self.max_age_s * 1e9)
        dropped = 0
        with self._db.write() as con:
            trim_exemplars(con, cutoff_ns=cutoff, keep=self.max_exemplars)
            self._exemplars_since_trim = 0
            for segment in self._db.all_segments(con):
                if segment.count and segment.max_ns < cutoff:
                    self._db.drop_segment(con, segment)
                    dropped += segment.count
        self._db.checkpoint()
        while self._db.used_bytes() > self.max_bytes:
            with self._db.write() as con:
                segments = [s for s in self._db.all_segments(con) if s.count]
                if not segments:
                    break
                oldest = min(segments, key=lambda s: (s.max_ns, s.seq))
                self._db.drop_segment(con, oldest)
                dropped += oldest.count
            self._db.checkpoint()
        return dropped

    def stats(self) -> StoreStats:
        """Record counts, bytes in use on disk (incl. the WAL) and the oldest record time."""
        with self._db.read() as con:
            counts = dict(
                con.execute("SELECT signal, sum(count) FROM segments GROUP BY signal").fetchall()
            )
            oldest = con.execute("SELECT min(min_ns) FROM segments WHERE count > 0").fetchone()[0]
            exemplars = con.execute("SELECT count(*) FROM exemplars").fetchone()[0]
        return StoreStats(
            spans=int(counts.get("spans") or 0),
            logs=int(counts.get("logs") or 0),
            samples=int(counts.get("points") or 0),
            bytes=self._db.used_bytes(),
            oldest_ns=oldest,
            exemplars=int(exemplars),
        )

    def close(self) -> None:
        """Close every connection; the store cannot be used afterwards."""
        self._db.close()
