"""Text for the query commands: the trace tree, tables fitted to the terminal, durations.

Everything here is a pure function of its arguments (the terminal width and whether to
colour are passed in), so the exact text is testable. ``Style`` carries those choices::

    style = Style.for_terminal()           # width from the terminal, colour only on a TTY
    print(render_trace(spans, logs, style=style))
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import re
import shutil
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import click

from cairn.collector._records import LogRecord, SpanEvent, SpanRecord
from cairn.collector._store_model import MetricInfo, SeriesSummary, TraceSummary

__all__ = [
    "Style",
    "format_duration",
    "parse_duration",
    "printable",
    "render_logs",
    "render_metric_names",
    "render_metric_series",
    "render_trace",
    "render_trace_tree",
    "render_traces",
    "table",
]

_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000, "s": 1_000_000_000}
_NS |= {"m": 60 * _NS["s"], "h": 3600 * _NS["s"], "d": 86400 * _NS["s"]}
_DURATION = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(ns|us|µs|μs|ms|s|m|h|d)\s*", re.IGNORECASE)


_CONTROL = {
    code: f"\\x{code:02x}" for code in (*range(32), *range(127, 160)) if code not in (9, 10, 13)
} | {9: "\\t", 10: "\\n", 13: "\\r"}


def printable(text: str) -> str:
    """``text`` with control characters (escape sequences, newlines) written as
    ``\\x1b``, ``\\n``: telemetry is untrusted and must not drive the terminal."""
    return text.translate(_CONTROL)


def parse_duration(text: str) -> int:
    """``"100ms"``, ``"1.5s"``, ``"2m"``, ``"250us"`` (also ``ns``, ``µs``, ``h``, ``d``)
    as integer nanoseconds. Raises ``ValueError`` naming the accepted forms."""
    m = _DURATION.fullmatch(text)
    if m is None:
        raise ValueError(
            f"{text!r} is not a duration: write a number and a unit, e.g. 250us, 100ms, 1.5s, 2m, 1h"
        )
    unit = m[2] if m[2] in ("µs", "μs") else m[2].lower()
    return round(float(m[1]) * _NS[unit])


def _number(value: float) -> str:
    if value >= 99.95:
        return str(round(value))
    return f"{value:.3g}"


def format_duration(ns: float, *, ascii: bool = False) -> str:
    """A duration for people: ``850ns``, ``250µs``, ``12.5ms``, ``152ms``, ``1.5s``, ``2m5s``.

    Three significant digits at most, in the largest unit below the value; with
    ``ascii`` microseconds are written ``us``.
    """
    if ns < 0 or math.isnan(ns):
        return "?"
    if ns < 1_000:
        return f"{round(ns)}ns"
    if ns < 999_950:
        return _number(ns / 1e3) + ("us" if ascii else "µs")
    if ns < 999_950_000:
        return _number(ns / 1e6) + "ms"
    if ns < 59_950_000_000:
        return _number(ns / 1e9) + "s"
    seconds = round(ns / 1e9)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m"
    return f"{minutes}m{seconds}s" if seconds else f"{minutes}m"


@dataclass(frozen=True, slots=True)
class Style:
    """How to draw: ``width`` in columns, ``color`` (ANSI), ``ascii`` (no box-drawing
    characters, for terminals without UTF-8)."""

    width: int = 100
    color: bool = False
    ascii: bool = False

    @classmethod
    def for_terminal(cls, *, ascii: bool = False) -> Style:
        """The terminal's width; colour only on a TTY and without ``NO_COLOR``; ASCII
        when asked or when standard output cannot encode the box-drawing characters."""
        width = shutil.get_terminal_size((100, 24)).columns
        color = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
        encoding = (getattr(sys.stdout, "encoding", None) or "").lower().replace("-", "")
        ascii = ascii or not encoding.startswith("utf")
        return cls(width=max(40, width), color=color, ascii=ascii)

    def paint(
        self, text: str, fg: str | None = None, *, bold: bool = False, dim: bool = False
    ) -> str:
        """``text`` in colour when colour is on, unchanged otherwise."""
        if not self.color or not (fg or bold or dim):
            return text
        return click.style(text, fg=fg, bold=bold or None, dim=dim or None)

    def clip(self, text: str, width: int) -> str:
        """``text`` cut to ``width`` columns, ending with an ellipsis when cut."""
        if len(text) <= width:
            return text
        mark = "..." if self.ascii else "…"
        if width <= len(mark):
            return text[:width]
        return text[: width - len(mark)] + mark


_LEVEL_COLORS = {
    "critical": "red",
    "fatal": "red",
    "error": "red",
    "warning": "yellow",
    "warn": "yellow",
}


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    style: Style,
    flex: Iterable[int] = (),
    colors: Callable[[int, int, str], str | None] | None = None,
    right: Iterable[int] = (),
) -> str:
    """Columns two spaces apart, fitted to ``style.width``.

    When the natural width is too wide, the ``flex`` columns shrink (the widest first,
    never below their header or 8 columns) and their cells are clipped. ``colors(row,
    column, text)`` may name a colour for a cell; ``right`` columns are right-aligned.
    """
    count = len(headers)
    headers = [printable(h) for h in headers]
    rows = [[printable(cell) for cell in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    flexible = sorted(set(flex))
    excess = sum(widths) + 2 * (count - 1) - style.width
    while excess > 0:
        shrinkable = [i for i in flexible if widths[i] > max(len(headers[i]), 8)]
        if not shrinkable:
            break
        widest = max(shrinkable, key=lambda i: widths[i])
        floor = max(len(headers[widest]), 8)
        others = [widths[i] for i in shrinkable if i != widest]
        target = max(floor, widths[widest] - excess, max(others, default=floor))
        if target >= widths[widest]:
            target = widths[widest] - 1
        excess -= widths[widest] - target
        widths[widest] = target
    right_set = set(right)

    def line(cells: Sequence[str], row: int | None) -> str:
        out = []
        for i, cell in enumerate(cells):
            text = style.clip(cell, widths[i])  # cells were made printable above
            last = i == count - 1
            pad = " " * (widths[i] - len(text))
            painted = text
            if row is None:
                painted = style.paint(text, bold=True)
            elif colors is not None:
                painted = style.paint(text, colors(row, i, cell))
            if i in right_set:
                out.append(pad + painted)
            else:
                out.append(painted + ("" if last else pad))
        return "  ".join(out).rstrip()

    return "\n".join([line(headers, None), *(line(r, n) for n, r in enumerate(rows))])


def _value(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False) if (not value or " " in value) else value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, int) or value is None:
        return str(value).lower() if value is None else str(value)
    return json.dumps(value, ensure_ascii=False, default=str, separators=(",", ":"))


_QUIET_ATTRIBUTES = ("logger", "timestamp", "level", "event", "message", "trace_id", "span_id")


def _attributes(attributes: Mapping[str, Any], *, limit: int = 80) -> str:
    parts = []
    for key, value in attributes.items():
        if key in _QUIET_ATTRIBUTES or key.startswith("code.") or key.endswith("stacktrace"):
            continue
        shown = _value(value)
        if len(shown) > limit:
            shown = shown[: limit - 1] + "…"
        parts.append(f"{key.removeprefix('cairn.')}={shown}")
    return " ".join(parts)


def _clock(time_ns: int, *, date: bool) -> str:
    seconds, nanos = divmod(time_ns, 1_000_000_000)
    moment = _dt.datetime.fromtimestamp(seconds, tz=_dt.UTC)
    text = moment.strftime("%Y-%m-%d %H:%M:%S" if date else "%H:%M:%S")
    return f"{text}.{nanos // 1_000_000:03d}"


def render_logs(records: Sequence[LogRecord], *, style: Style, date: bool = True) -> str:
    """Log records as a table: time (UTC), service, level, then the body with its
    attributes as ``key=value``."""
    rows = [
        [
            _clock(r.time_ns, date=date),
            r.service,
            r.level,
            f"{r.body}  {attrs}" if (attrs := _attributes(r.attributes)) else r.body,
        ]
        for r in records
    ]

    def color(row: int, column: int, text: str) -> str | None:
        return _LEVEL_COLORS.get(text) if column == 2 else None

    return table(
        ["TIME", "SERVICE", "LEVEL", "MESSAGE"], rows, style=style, flex=(1, 3), colors=color
    )


def render_traces(traces: Sequence[TraceSummary], *, style: Style) -> str:
    """Trace summaries as a table: id, start, duration, root span, spans, errors, services."""
    rows = [
        [
            t.trace_id,
            _clock(t.start_ns, date=True),
            format_duration(t.duration_ns, ascii=style.ascii),
            f"{t.root_service}: {t.root_name}" if t.root_service else t.root_name,
            str(t.span_count),
            str(t.error_count),
            ",".join(t.services),
        ]
        for t in traces
    ]

    def color(row: int, column: int, text: str) -> str | None:
        return "red" if column == 5 and text != "0" else None

    headers = ["TRACE", "START", "DURATION", "ROOT", "SPANS", "ERRORS", "SERVICES"]
    return table(headers, rows, style=style, flex=(3, 6), colors=color, right=(2, 4, 5))


def _event_line(event: SpanEvent, span: SpanRecord) -> str:
    attributes = dict(event.attributes)
    if event.name == "exception":
        kind = attributes.pop("exception.type", "")
        message = attributes.pop("exception.message", "")
        attributes.pop("exception.stacktrace", None)
        head = f"exception {kind}: {message}" if kind else f"exception {message}"
    else:
        head = event.name
    attrs = _attributes(attributes, limit=40)
    offset = event.time_ns - span.start_ns
    sign = "+" if offset >= 0 else "-"
    return " ".join(p for p in (head, attrs, sign + format_duration(abs(offset))) if p)


def _order(span: SpanRecord) -> tuple[int, int, str]:
    return (span.start_ns, span.end_ns, span.span_id)


def render_trace_tree(spans: Sequence[SpanRecord], *, style: Style | None = None) -> str:
    """The spans of one trace as a tree, in the seed's shape::

        GET /orders/123 (152ms)  orders
          ├─ db.query (50ms)  orders
          └─ inventory.check (100ms)  orders
             └─ GET /inventory/items (80ms)  inventory

    Children are sorted by start time; an error span ends with ``✗ error: message``;
    span events follow their span as ``· name key=value +offset``. A span whose parent
    was not received is drawn at the top level with a note.
    """
    style = style or Style()
    tee, elbow, pipe = ("|- ", "`- ", "|  ") if style.ascii else ("├─ ", "└─ ", "│  ")
    bullet, cross = ("- ", "x") if style.ascii else ("· ", "✗")
    by_id: dict[str, SpanRecord] = {}
    for span in spans:
        by_id.setdefault(span.span_id, span)
    children: dict[str, list[SpanRecord]] = {}
    tops: list[tuple[int, SpanRecord]] = []
    for span in by_id.values():
        parent = span.parent_span_id
        if parent and parent in by_id and parent != span.span_id:
            children.setdefault(parent, []).append(span)
        else:
            tops.append((0 if not parent else 1, span))
    tops.sort(key=lambda t: (t[0], *_order(t[1])))
    lines: list[str] = []
    seen: set[str] = set()

    def label(span: SpanRecord, orphan: bool) -> str:
        text = f"{printable(span.name)} ({format_duration(span.duration_ns, ascii=style.ascii)})  "
        text = style.paint(text, bold=not span.parent_span_id)
        text += style.paint(printable(span.service), "cyan")
        if span.status == "error":
            message = f"{cross} error" + (f": {span.status_message}" if span.status_message else "")
            message = printable(message)
            text += "  " + style.paint(message, "red", bold=True)
        if orphan:
            note = printable(f"  (parent {span.parent_span_id} not received)")
            text += style.paint(note, dim=True)
        return text

    def walk(top: SpanRecord, orphan: bool) -> None:
        # Depth-first with an explicit stack: a trace may nest deeper than Python recurses.
        stack = [(top, "", "  ", orphan)]
        while stack:
            span, lead, kids_lead, note = stack.pop()
            if span.span_id in seen:
                continue
            seen.add(span.span_id)
            lines.append(lead + label(span, note))
            kids = sorted(
                (c for c in children.get(span.span_id, ()) if c.span_id not in seen), key=_order
            )
            stem = pipe.rstrip() + " " if kids else "  "
            for event in sorted(span.events, key=lambda e: e.time_ns):
                event_text = style.paint(printable(bullet + _event_line(event, span)), dim=True)
                lines.append(kids_lead + stem + event_text)
            for i, kid in reversed(list(enumerate(kids))):
                last = i == len(kids) - 1
                stack.append(
                    (
                        kid,
                        kids_lead + (elbow if last else tee),
                        kids_lead + ("   " if last else pipe),
                        False,
                    )
                )

    for kind, top in tops:
        walk(top, kind == 1)
    # Spans only reachable through a parent cycle (malformed input) still get drawn.
    for span in sorted(by_id.values(), key=_order):
        walk(span, True)
    return "\n".join(line.rstrip() for line in lines)


def render_trace(
    trace_id: str, spans: Sequence[SpanRecord], logs: Sequence[LogRecord], *, style: Style
) -> str:
    """A header, the tree, then the trace's log lines (oldest first)."""
    services = sorted({s.service for s in spans})
    errors = sum(s.status == "error" for s in spans)
    start = min((s.start_ns for s in spans), default=0)
    end = max((s.end_ns for s in spans), default=0)
    dot = " - " if style.ascii else " · "
    facts = [
        f"{len(spans)} span{'s' * (len(spans) != 1)}",
        f"{len(services)} service{'s' * (len(services) != 1)}",
        format_duration(end - start, ascii=style.ascii),
    ]
    if errors:
        facts.append(style.paint(f"{errors} error{'s' * (errors != 1)}", "red"))
    head = style.paint(printable(f"trace {trace_id}"), bold=True) + dot + dot.join(facts)
    if spans:
        head += dot + _clock(start, date=True) + " UTC"
    parts = [head, "", render_trace_tree(spans, style=style)]
    if logs:
        ordered = sorted(logs, key=lambda r: r.time_ns)
        parts += ["", f"logs ({len(ordered)})", render_logs(ordered, style=style, date=False)]
    return "\n".join(parts)


def render_metric_names(metrics: Sequence[MetricInfo], *, style: Style) -> str:
    """Metric families as a table: name, kind, series count."""
    rows = [[m.name, m.kind, str(m.series)] for m in sorted(metrics, key=lambda m: m.name)]
    return table(["NAME", "KIND", "SERIES"], rows, style=style, flex=(0,), right=(2,))


def _metric_value(value: float | None, *, seconds: bool, style: Style) -> str:
    if value is None or math.isnan(value):
        return "-"
    if seconds and math.isfinite(value):
        return format_duration(value * 1e9, ascii=style.ascii)
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.4g}"


def render_metric_series(
    name: str, kind: str, series: Sequence[SeriesSummary], *, style: Style
) -> str:
    """One row per series: its labels, then latest (gauge), rate/s (counter), or
    rate/s and p50/p90/p99 (histogram). Quantiles of ``*_seconds`` metrics are shown
    as durations."""
    label_names = sorted({k for s in series for k in s.labels})
    seconds = name.endswith("_seconds")
    histogram = kind == "histogram" or any(s.quantiles for s in series)
    rated = kind in ("counter", "histogram") or any(s.rate is not None for s in series)
    columns = ["P50", "P90", "P99"] if histogram else []
    columns += ["RATE/S"] if rated else []
    if not rated and not histogram:
        columns = ["LATEST"]

    def cells(s: SeriesSummary) -> list[str]:
        quantiles = s.quantiles or {}
        out = [
            _metric_value(quantiles.get(q), seconds=seconds, style=style)
            for q in ("p50", "p90", "p99")
        ]
        out = out if histogram else []
        if rated:
            out.append(_metric_value(s.rate, seconds=False, style=style))
        if not out:
            out.append(_metric_value(s.latest, seconds=False, style=style))
        return out

    headers = [n.upper() for n in label_names] + columns
    rows = [[s.labels.get(n, "") for n in label_names] + cells(s) for s in series]
    if not label_names:
        headers.insert(0, "SERIES")
        rows = [["(all)", *row] for row in rows]
    numeric = range(len(headers) - len(columns), len(headers))
    body = table(headers, rows, style=style, flex=range(len(label_names)), right=numeric)
    return f"{style.paint(printable(name), bold=True)} ({printable(kind)})\n{body}"
