"""What a run leaves behind: a verdict table, an HTML report with the timeline, a PNG, the history."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path

from cairn.lab._checker import Verdict
from cairn.lab._formats import write_jsonl
from cairn.lab._plot import png_available, timeline, to_png, to_svg
from cairn.lab._run import RunResult

__all__ = ["claim", "upheld", "verdict_table", "write_report"]


def claim(result: RunResult) -> str:
    """What the run's store promises, in a few words."""
    if result.config.label == "ap":
        return "available; converges after heal"
    return "linearizable"


def upheld(result: RunResult) -> bool | None:
    """Whether the store kept its promise; ``None`` when the checker could not tell."""
    if result.config.label == "ap":
        return result.measures.converged is True
    if result.check.verdict is Verdict.UNKNOWN:
        return None
    return result.check.verdict is Verdict.LINEARIZABLE


def _pct(share: float | None) -> str:
    return "-" if share is None else f"{share * 100:.0f}%"


def _rows(results: Sequence[RunResult]) -> list[list[str]]:
    rows = [
        [
            "store",
            "nemesis",
            "checker",
            "ops",
            "avail.",
            "in faults",
            "stale reads",
            "lost writes",
            "converged",
            "promise",
            "kept",
        ]
    ]
    for r in results:
        m = r.measures
        if m.converged is None:
            converged = "-"
        elif m.converged:
            converged = f"{(m.convergence_time or 0) * 1000:.0f} ms"
        else:
            converged = "NO"
        kept = upheld(r)
        rows.append(
            [
                r.config.label,
                r.config.nemesis,
                r.check.verdict.value.replace("_", " "),
                str(m.operations),
                _pct(m.availability),
                _pct(m.availability_faulty),
                f"{m.stale_reads} ({_pct(m.stale_read_share)})",
                "-" if m.lost_writes is None else f"{m.lost_writes}/{m.acknowledged_writes}",
                converged,
                claim(r),
                {True: "yes", False: "NO", None: "unknown"}[kept],
            ]
        )
    return rows


def verdict_table(results: Sequence[RunResult]) -> str:
    """A plain-text table of verdicts and measures, one row a run."""
    rows = _rows(results)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def _lanes(result: RunResult) -> dict[int, int]:
    nodes = 1 if result.config.label == "ca" else result.config.nodes
    return {c: c % nodes + 1 for c in range(result.config.workload.clients)}


def write_report(results: Sequence[RunResult], out: Path) -> dict[str, Path]:
    """Write ``report.html``, a timeline PNG and the history of each run into ``out``.

    One run writes ``history.jsonl`` and ``timeline.png``; several (compare)
    write ``<store>-history.jsonl`` and ``<store>-timeline.png``. The PNG is
    skipped when Pillow is missing. Returns the files written by name.
    """
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    sections: list[str] = []
    for r in results:
        prefix = "" if len(results) == 1 else f"{r.config.label}-"
        hist_path = out / f"{prefix}history.jsonl"
        write_jsonl(r.history, hist_path)
        written[hist_path.name] = hist_path
        title = (
            f"{r.config.label} under {r.config.nemesis}: {r.check.verdict.value.replace('_', ' ')}"
        )
        scene = timeline(r.history, clients=r.config.workload.clients, title=title, nodes=_lanes(r))
        png_note = ""
        if png_available():
            png_path = out / f"{prefix}timeline.png"
            to_png(scene, png_path)
            written[png_path.name] = png_path
            png_note = f' (<a href="{png_path.name}">PNG</a>)'
        report = html.escape(r.check.report())
        sections.append(
            f"<section><h2>{html.escape(r.config.label)}</h2>"
            f'<p>History: <a href="{hist_path.name}">{hist_path.name}</a>{png_note}. '
            f"Promise: {html.escape(claim(r))}.</p>"
            f"{to_svg(scene)}<h3>Checker</h3><pre>{report}</pre>"
            f"<h3>Measures</h3><pre>{html.escape(json.dumps(r.measures.to_dict(), indent=2))}</pre>"
            "</section>"
        )
    rows = _rows(results)
    table = "<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in rows[0]) + "</tr>"
    for row in rows[1:]:
        table += "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
    table += "</table>"
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>cairn lab report</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #212121; }}
table {{ border-collapse: collapse; }} th, td {{ border: 1px solid #cfd8dc; padding: 4px 8px; }}
th {{ background: #eceff1; }} pre {{ background: #fafafa; padding: 8px; overflow-x: auto; }}
svg {{ max-width: 100%; height: auto; border: 1px solid #eceff1; }}
</style></head><body>
<h1>cairn lab: {html.escape(" vs ".join(r.config.label for r in results))}</h1>
<p>Bars are operations from invoke to completion, one lane per client: green ok,
red a definite failure, orange indeterminate (timeout); rings mark stale reads;
grey bands are fault windows.</p>
{table}
{"".join(sections)}
</body></html>
"""
    report_path = out / "report.html"
    report_path.write_text(page, encoding="utf-8")
    written[report_path.name] = report_path
    return written
