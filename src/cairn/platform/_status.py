"""The live status table of ``cairn up``: health from the registry, rates and breakers from the collector."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from cairn.platform._state import InstanceRecord

__all__ = ["MetricsReader", "StatusRow", "render_table", "rows"]

_RATE_NAMES = ("http_requests_total",)
_BREAKER_NAME = "cairn_breaker_state"


@dataclass(frozen=True, slots=True)
class StatusRow:
    """One line of the table."""

    instance: str
    health: str
    address: str
    pid: str
    restarts: int
    rate: str
    breakers: str


class MetricsReader:
    """Request rates and breaker states per instance, from the collector's ``/api/metrics``.

    Absent collector or metric: empty answers (the table shows ``-``).
    """

    def __init__(self, http: httpx.AsyncClient, collector: str | None) -> None:
        self._http = http
        self._collector = collector
        self._rate_name: str | None = None

    async def _series(self, name: str, by: str) -> list[dict[str, object]] | None:
        assert self._collector is not None
        try:
            response = await self._http.get(
                f"{self._collector}/api/metrics/{name}", params={"by": by, "since": "1m"}
            )
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        with contextlib.suppress(ValueError):
            series = response.json().get("series")
            if isinstance(series, list):
                return series
        return None

    async def rates(self) -> dict[str, float]:
        """Requests per second over the last minute, by instance id."""
        if self._collector is None:
            return {}
        for name in (self._rate_name,) if self._rate_name else _RATE_NAMES:
            series = await self._series(name, "instance")
            if series is None:
                continue
            self._rate_name = name
            result: dict[str, float] = {}
            for item in series:
                labels, rate = item.get("labels"), item.get("rate")
                if isinstance(labels, dict) and isinstance(rate, int | float):
                    result[str(labels.get("instance", ""))] = float(rate)
            return result
        return {}

    async def breakers(self) -> dict[str, dict[str, int]]:
        """Per target instance id: how many callers' breakers are in each non-closed state."""
        if self._collector is None:
            return {}
        series = await self._series(_BREAKER_NAME, "policy,state")
        result: dict[str, dict[str, int]] = {}
        for item in series or ():
            labels, latest = item.get("labels"), item.get("latest")
            if not isinstance(labels, dict) or not isinstance(latest, int | float) or latest < 1:
                continue
            policy, state = str(labels.get("policy", "")), str(labels.get("state", ""))
            if "/" not in policy:
                continue
            target = policy.rsplit("/", 1)[1]
            counts = result.setdefault(target, {})
            counts[state] = counts.get(state, 0) + int(latest)
        return result


def rows(
    records: Sequence[InstanceRecord],
    rates: dict[str, float],
    breakers: dict[str, dict[str, int]],
) -> list[StatusRow]:
    """Table rows for ``records`` with the metrics found."""
    result = []
    for r in records:
        rate = rates.get(r.instance_id)
        states = breakers.get(r.instance_id, {})
        opened = {s: n for s, n in states.items() if s != "closed" and n}
        if opened:
            breaker = " ".join(f"{s}:{n}" for s, n in sorted(opened.items()))
        else:
            breaker = "closed" if states else "-"
        health = r.health if r.state in ("running", "starting") else f"{r.health} ({r.state})"
        result.append(
            StatusRow(
                instance=r.instance_id,
                health=health,
                address=(r.url or "-").removeprefix("http://"),
                pid=str(r.pid) if r.pid else "-",
                restarts=r.restarts,
                rate="-" if rate is None else f"{rate:.1f}/s",
                breakers=breaker,
            )
        )
    return result


HEADER = ("INSTANCE", "HEALTH", "ADDRESS", "PID", "RESTARTS", "REQ/S", "BREAKERS")
"""The live table's columns, in order."""


def render_table(table: Sequence[StatusRow], *, color: bool = False) -> str:
    """The rows as aligned text, with a header line."""
    header = HEADER
    cells = [header] + [
        (r.instance, r.health, r.address, r.pid, str(r.restarts), r.rate, r.breakers) for r in table
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = []
    for number, row in enumerate(cells):
        text = "  ".join(value.ljust(widths[i]) for i, value in enumerate(row)).rstrip()
        if color and number > 0:
            health = row[1]
            code = "32" if health == "passing" else "33" if health.startswith("starting") else "31"
            text = text.replace(health, f"\x1b[{code}m{health}\x1b[0m", 1)
        lines.append(text)
    return "\n".join(lines)
