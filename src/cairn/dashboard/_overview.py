"""The overview (instances joined with their RED metrics and breaker states) and the
registry's history of health changes, which the dashboard keeps itself by polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from typing import Any

from cairn.dashboard._sources import Upstream, UpstreamError

__all__ = ["HealthHistory", "build_overview", "metric_name"]

REQUESTS = "http_requests_total"
DURATION = "http_request_duration_seconds"
BREAKER = "cairn_breaker_state"


def metric_name(wanted: str, known: set[str]) -> str | None:
    """The collector's name for ``wanted`` (with or without a counter's ``_total``)."""
    for name in (wanted, wanted.removesuffix("_total"), wanted + "_total"):
        if name in known:
            return name
    return None


async def _summary(up: Upstream, name: str | None, by: str, since: str) -> list[dict[str, Any]]:
    if name is None:
        return []
    body = await up.collector_get(f"/api/metrics/{name}", {"by": by, "since": since})
    return list(body.get("series") or [])


def _key(labels: dict[str, str]) -> tuple[str, str]:
    return labels.get("service", ""), labels.get("instance", "")


def _red(
    requests: list[dict[str, Any]], durations: list[dict[str, Any]], *, per_instance: bool
) -> dict[tuple[str, str], dict[str, float | None]]:
    out: dict[tuple[str, str], dict[str, float | None]] = {}
    totals: dict[tuple[str, str], list[float]] = {}
    for series in requests:
        key = _key(series["labels"]) if per_instance else (series["labels"].get("service", ""), "")
        rate = float(series.get("rate") or 0.0)
        total = totals.setdefault(key, [0.0, 0.0])
        total[0] += rate
        if str(series["labels"].get("status", "")).startswith("5"):
            total[1] += rate
    for key, (rate, errors) in totals.items():
        out[key] = {"rate": rate, "error_rate": errors / rate if rate else 0.0, "p99_ms": None}
    for series in durations:
        key = _key(series["labels"]) if per_instance else (series["labels"].get("service", ""), "")
        p99 = (series.get("quantiles") or {}).get("p99")
        row = out.setdefault(key, {"rate": None, "error_rate": None, "p99_ms": None})
        row["p99_ms"] = None if p99 is None else float(p99) * 1000.0
    return out


async def build_overview(
    up: Upstream, history: HealthHistory | None, *, since: str = "1m"
) -> dict[str, Any]:
    """Every service and instance: health, address, version, RED numbers, breakers.

    Either source may be down: what the other knows is still shown, with the error.
    """
    errors: dict[str, str] = {}
    instances: list[dict[str, Any]] = []
    if up.registry is not None:
        try:
            instances = await up.instances()
            if history is not None:
                history.observe(instances)
        except UpstreamError as exc:
            errors["registry"] = exc.message
    services: set[str] = {i["service"] for i in instances}
    red_i: dict[tuple[str, str], dict[str, float | None]] = {}
    red_s: dict[tuple[str, str], dict[str, float | None]] = {}
    breakers: dict[str, list[dict[str, str]]] = {}
    try:
        known = {m["name"] for m in (await up.collector_get("/api/metrics")).get("metrics", [])}
        req, dur = metric_name(REQUESTS, known), metric_name(DURATION, known)
        brk = metric_name(BREAKER, known)
        answers = await asyncio.gather(
            _summary(up, req, "service,instance,status", since),
            _summary(up, dur, "service,instance", since),
            _summary(up, req, "service,status", since),
            _summary(up, dur, "service", since),
            _summary(up, brk, "instance,policy,state", since),
            up.collector_get("/api/services"),
        )
        red_i = _red(answers[0], answers[1], per_instance=True)
        red_s = _red(answers[2], answers[3], per_instance=False)
        for series in answers[4]:
            labels = series["labels"]
            if (series.get("latest") or 0.0) >= 1.0:
                breakers.setdefault(labels.get("instance", ""), []).append(
                    {"policy": labels.get("policy", ""), "state": labels.get("state", "")}
                )
        services.update(str(s) for s in answers[5].get("services", []))
    except UpstreamError as exc:
        errors["collector"] = exc.message
    empty: dict[str, float | None] = {"rate": None, "error_rate": None, "p99_ms": None}
    listed = []
    for name in sorted(services):
        rows = [
            {
                "id": inst["id"],
                "address": inst["address"],
                "health": inst["health"],
                "version": inst["version"],
                **red_i.get((name, inst["id"]), empty),
                "breakers": sorted(breakers.get(inst["id"], []), key=lambda b: b["policy"]),
            }
            for inst in instances
            if inst["service"] == name
        ]
        listed.append({"name": name, **red_s.get((name, ""), empty), "instances": rows})
    return {"services": listed, "errors": errors, "window": since}


class HealthHistory:
    """Health changes of registry instances, as seen by polling (newest last, bounded)."""

    def __init__(self, *, limit: int = 2000) -> None:
        self.changes: deque[dict[str, Any]] = deque(maxlen=limit)
        self._last: dict[str, tuple[str, str]] = {}
        self._seeded = False

    def observe(self, instances: list[dict[str, Any]], *, now: float | None = None) -> None:
        """Record what changed since the last observation."""
        stamp = time.time() if now is None else now
        current = {i["id"]: (i["service"], i["health"]) for i in instances}
        for iid, (service, health) in current.items():
            before = self._last.get(iid)
            if before is None:
                self._add(stamp, service, iid, None if not self._seeded else "absent", health)
            elif before[1] != health:
                self._add(stamp, service, iid, before[1], health)
        for iid, (service, health) in self._last.items():
            if iid not in current:
                self._add(stamp, service, iid, health, "deregistered")
        self._last = current
        self._seeded = True

    def _add(self, stamp: float, service: str, iid: str, old: str | None, new: str) -> None:
        self.changes.append(
            {"time": stamp, "service": service, "instance": iid, "from": old, "to": new}
        )

    async def watch(self, up: Upstream, *, interval: float) -> None:
        """Poll the registry every ``interval`` seconds until cancelled."""
        while True:
            # An unreachable registry is reported by the pages; keep polling.
            with contextlib.suppress(UpstreamError):
                self.observe(await up.instances())
            await asyncio.sleep(interval)
