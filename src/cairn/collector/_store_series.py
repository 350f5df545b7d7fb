"""Metric reads: families, window summaries and stepped ranges over stored samples.

A *family* is the name a metric has without its ``_bucket``/``_sum``/``_count``
suffixes (``Sample.family``); a *series* is one name plus one label set. Reads select
the series whose family or own name is the one asked for, then group them: without
``by`` each label set (``le`` aside) stands alone; with ``by`` series sharing those
labels are summed (as PromQL's ``sum by``).
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from cairn.collector._records import Sample
from cairn.collector._store_db import Db
from cairn.collector._store_metrics import (
    Point,
    histogram_quantile,
    increase,
    latest,
    rate,
    step_increase,
)
from cairn.collector._store_model import MetricInfo, RangeSeries, SeriesSummary

__all__ = ["metric_names", "metric_range", "metric_summary", "series_key"]

QUANTILES = {"p50": 0.5, "p90": 0.9, "p99": 0.99}
STATS = ("rate", "latest", *QUANTILES)
LOOKBACK_NS = 300 * 1_000_000_000  # as Prometheus: a gauge older than 5 minutes is stale
MAX_STEPS = 11_000


def series_key(sample: Sample) -> tuple[str, str]:
    """The (name, canonical labels JSON) a sample's series is stored under."""
    return sample.name, orjson.dumps(sample.labels, option=orjson.OPT_SORT_KEYS).decode()


def metric_names(con: sqlite3.Connection) -> list[MetricInfo]:
    """Each family with its kind and its number of distinct label sets."""
    kinds: dict[str, str] = {}
    label_sets: dict[str, set[str]] = defaultdict(set)
    for family, kind, labels in con.execute("SELECT family, kind, labels FROM series"):
        kinds.setdefault(family, kind)
        parsed = json.loads(labels)
        parsed.pop("le", None)
        label_sets[family].add(json.dumps(parsed, sort_keys=True))
    return [MetricInfo(name, kinds[name], len(label_sets[name])) for name in sorted(kinds)]


@dataclass(slots=True)
class _Series:
    name: str
    labels: dict[str, str]
    kind: str
    points: list[Point]


def _load(
    con: sqlite3.Connection, db: Db, name: str, since_ns: int, until_ns: int
) -> tuple[str, list[_Series]]:
    rows = con.execute(
        "SELECT id, name, labels, kind FROM series WHERE family = ? OR name = ? ORDER BY id",
        (name, name),
    ).fetchall()
    if not rows:
        return "unknown", []
    by_id = {row[0]: _Series(row[1], json.loads(row[2]), row[3], []) for row in rows}
    ids = json.dumps(list(by_id))
    for segment in db.segments(con, "points"):
        if segment.max_ns < since_ns or segment.min_ns > until_ns:
            continue
        for series, time_ns, value in con.execute(
            f"SELECT series, time_ns, value FROM points_{segment.seq}"
            " WHERE series IN (SELECT value FROM json_each(?)) AND time_ns BETWEEN ? AND ?",
            (ids, since_ns, until_ns),
        ):
            by_id[series].points.append((time_ns, value))
    for item in by_id.values():
        item.points.sort()
    kinds = {s.kind for s in by_id.values()}
    kind = "histogram" if "histogram" in kinds else rows[0][3]
    return kind, list(by_id.values())


def _group(series: _Series, by: Sequence[str]) -> str:
    if by:
        labels = {key: series.labels[key] for key in by if key in series.labels}
    else:
        labels = {k: v for k, v in series.labels.items() if k != "le"}
    return json.dumps(labels, sort_keys=True)


def _role(series: _Series, kind: str) -> str:
    """``bucket``, ``count`` or ``other``: what a series contributes to its group."""
    if kind == "histogram":
        if series.name.endswith("_bucket") and "le" in series.labels:
            return "bucket"
        if series.name.endswith("_count"):
            return "count"
        return "other"
    return "count"


def _sum(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return math.fsum(known) if known else None


def metric_summary(
    con: sqlite3.Connection, db: Db, name: str, *, by: Sequence[str], since_ns: int
) -> list[SeriesSummary]:
    """Counters: ``rate`` per second and ``latest``; gauges (and other kinds): ``latest``;
    histograms: ``rate`` and ``latest`` of ``_count`` and p50/p90/p99 from each bucket's
    increase over the window. Grouped values are sums."""
    kind, series = _load(con, db, name, since_ns, 1 << 62)
    groups: dict[str, list[_Series]] = defaultdict(list)
    for item in series:
        groups[_group(item, by)].append(item)
    out = []
    for key, members in sorted(groups.items()):
        counts = [m for m in members if _role(m, kind) == "count"]
        quantiles = None
        if kind == "histogram":
            buckets: dict[float, float] = defaultdict(float)
            for member in members:
                if _role(member, kind) == "bucket" and len(member.points) >= 2:
                    buckets[float(member.labels["le"])] += increase(member.points)
            found = {
                label: histogram_quantile(q, sorted(buckets.items()))
                for label, q in QUANTILES.items()
            }
            quantiles = {k: v for k, v in found.items() if v is not None} or None
        out.append(
            SeriesSummary(
                labels=json.loads(key),
                latest=_sum([latest(m.points) for m in counts]),
                rate=None
                if kind not in ("counter", "histogram")
                else _sum([rate(m.points) for m in counts]),
                quantiles=quantiles,
            )
        )
    return out


def metric_range(
    con: sqlite3.Connection,
    db: Db,
    name: str,
    *,
    by: Sequence[str],
    since_ns: int,
    until_ns: int,
    step_s: float,
    stat: str,
) -> list[RangeSeries]:
    """One point per step end ``t``: ``rate`` is the increase over ``(t - step, t]`` per
    second; ``latest`` the last value at ``t`` (within 5 minutes); ``pNN`` the quantile of
    the histogram buckets' increases over ``(t - step, t]``."""
    if stat not in STATS:
        raise ValueError(f"unknown stat {stat!r}: use one of {', '.join(STATS)}")
    if not step_s > 0:
        raise ValueError(f"step_s must be positive, not {step_s}")
    step = int(step_s * 1e9)
    ends = (until_ns - since_ns) // step
    if ends > MAX_STEPS:
        raise ValueError(
            f"{ends} steps of {step_s}s between since and until: at most {MAX_STEPS};"
            " use a larger step or a shorter range"
        )
    kind, series = _load(con, db, name, since_ns - max(step, LOOKBACK_NS), until_ns)
    if stat in QUANTILES and series and kind != "histogram":
        raise ValueError(f"{stat} needs a histogram, and {name!r} is a {kind}")
    groups: dict[str, list[_Series]] = defaultdict(list)
    for item in series:
        groups[_group(item, by)].append(item)
    out = []
    for key, members in sorted(groups.items()):
        points: list[tuple[int, float]] = []
        for i in range(1, ends + 1):
            t = since_ns + i * step
            value = _at(members, kind, stat, t, step)
            if value is not None and not math.isnan(value):
                points.append((t, value))
        out.append(RangeSeries(json.loads(key), points))
    return out


def _at(members: list[_Series], kind: str, stat: str, t: int, step: int) -> float | None:
    counts = [m for m in members if _role(m, kind) == "count"]
    if stat == "rate":
        total = _sum([step_increase(m.points, t - step, t) for m in counts])
        return None if total is None else total / (step / 1e9)
    if stat == "latest":
        return _sum([latest(m.points, t, LOOKBACK_NS) for m in counts])
    buckets: dict[float, float] = defaultdict(float)
    for member in members:
        if _role(member, kind) == "bucket":
            rise = step_increase(member.points, t - step, t)
            if rise is not None:
                buckets[float(member.labels["le"])] += rise
    return histogram_quantile(QUANTILES[stat], sorted(buckets.items()))
