"""Consistency-lab runs on disk: find their reports, serve their files read-only.

A run is any folder under the lab directory (at most :data:`MAX_DEPTH` deep) holding a
``report.html`` written by ``cairn lab run`` or ``cairn lab compare``. Files are served
only if they resolve, symlinks followed, to a regular file inside the lab directory.
"""

from __future__ import annotations

import datetime as _dt
import html
import os
import re
from pathlib import Path
from typing import Any

__all__ = ["MAX_DEPTH", "MAX_RUNS", "resolve_file", "scan_runs"]

MAX_DEPTH = 4
MAX_RUNS = 500
_H1 = re.compile(r"<h1>(.*?)</h1>", re.S)
_TAG = re.compile(r"<[^>]+>")


def _title(report: Path) -> str:
    try:
        with report.open(encoding="utf-8", errors="replace") as f:
            head = f.read(8192)
    except OSError:
        return ""
    found = _H1.search(head)
    return html.unescape(_TAG.sub("", found.group(1))).strip() if found else ""


def scan_runs(root: Path) -> list[dict[str, Any]]:
    """The runs under ``root``, newest first (an absent ``root`` has none)."""
    if not root.is_dir():
        return []
    base = root.resolve()
    runs: list[dict[str, Any]] = []
    for folder, dirs, files in os.walk(base):
        depth = len(Path(folder).relative_to(base).parts)
        if depth >= MAX_DEPTH:
            dirs.clear()
        dirs.sort()
        if "report.html" not in files:
            continue
        report = Path(folder) / "report.html"
        rel = Path(folder).relative_to(base).as_posix()
        prefix = "" if rel == "." else rel + "/"
        modified = report.stat().st_mtime
        runs.append(
            {
                "name": rel if rel != "." else base.name,
                "title": _title(report),
                "modified": _dt.datetime.fromtimestamp(modified, tz=_dt.UTC).isoformat(),
                "modified_s": modified,
                "report": prefix + "report.html",
                "files": [prefix + f for f in sorted(files) if not f.startswith(".")],
            }
        )
        if len(runs) >= MAX_RUNS:
            break
    runs.sort(key=lambda r: float(r["modified_s"]), reverse=True)
    return runs


def resolve_file(root: Path, relative: str) -> Path | None:
    """``relative`` inside ``root`` as a real regular file, or ``None`` if it is not one."""
    if not relative or "\x00" in relative or relative.startswith(("/", "\\")):
        return None
    base = root.resolve()
    try:
        target = (base / relative).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not target.is_relative_to(base) or not target.is_file():
        return None
    return target
