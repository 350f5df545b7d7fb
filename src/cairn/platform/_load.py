"""An open-loop load generator: requests at a fixed rate, latency from the scheduled send time.

Request ``i`` is due at ``start + i / rate`` whatever happened to the ones
before it (open loop). At most ``concurrency`` are in flight; a request that
waits for a free slot still counts its latency from the moment it was due,
so a slow server shows up as latency instead of as fewer requests
("coordinated omission" avoided, as wrk2 does).

The mix is weighted request templates, ``METHOD PATH [JSON BODY][:WEIGHT]``,
comma-separated; ``{id}`` is replaced by a random id (``ids``, 1-100 by
default) and ``{int:A-B}`` by a random integer from A to B::

    GET /orders/{id}:8,POST /orders {"user_id": {id}, "item_id": {int:1-20}}:2
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

__all__ = [
    "DEFAULT_MIX",
    "LoadSummary",
    "MixEntry",
    "Progress",
    "parse_duration",
    "parse_mix",
    "parse_rate",
    "percentile",
    "run_load",
]

DEFAULT_MIX = (
    'GET /orders/{id}:8,POST /orders {"user_id": {id}, "item_id": {int:1-20}, "quantity": 1}:2'
)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_PLACEHOLDER = re.compile(r"\{(id|int:(\d+)-(\d+))\}")
_WEIGHT = re.compile(r":(\d+)\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True, slots=True)
class MixEntry:
    """One request template of the mix and its weight."""

    method: str
    path: str
    body: str | None = None
    weight: int = 1

    @property
    def label(self) -> str:
        """``METHOD PATH`` (the template), how results are grouped."""
        return f"{self.method} {self.path}"

    def render(self, rng: random.Random, ids: tuple[int, int]) -> tuple[str, str | None]:
        """The path and body of one request, placeholders filled."""

        def fill(match: re.Match[str]) -> str:
            if match.group(1) == "id":
                return str(rng.randint(*ids))
            return str(rng.randint(int(match.group(2)), int(match.group(3))))

        path = _PLACEHOLDER.sub(fill, self.path)
        body = None if self.body is None else _PLACEHOLDER.sub(fill, self.body)
        return path, body


def _split_entries(text: str) -> list[str]:
    # Commas inside a JSON body do not separate entries.
    parts, depth, quoted, start = [], 0, False, 0
    for index, char in enumerate(text):
        if char == '"' and (index == 0 or text[index - 1] != "\\"):
            quoted = not quoted
        elif not quoted and char in "{[":
            depth += 1
        elif not quoted and char in "}]":
            depth -= 1
        elif char == "," and depth == 0 and not quoted:
            parts.append(text[start:index])
            start = index + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def parse_mix(text: str) -> tuple[MixEntry, ...]:
    """Read ``"GET /orders/{id}:8,POST /orders {...}:2"``; ``ValueError`` says what is wrong."""
    entries = []
    for part in _split_entries(text):
        weight = 1
        found = _WEIGHT.search(part)
        if found:
            weight = int(found.group(1))
            part = part[: found.start()].rstrip()
        method, _, rest = part.partition(" ")
        path, _, body = rest.strip().partition(" ")
        method = method.upper()
        if method not in METHODS or not path.startswith("/"):
            raise ValueError(
                f"mix entry {part!r}: write METHOD /path [JSON body][:weight], "
                'e.g. "GET /orders/{id}:8"'
            )
        if weight < 1:
            raise ValueError(f"mix entry {part!r}: the weight must be at least 1")
        body_text = body.strip() or None
        if body_text is not None:
            sample = _PLACEHOLDER.sub("1", body_text)
            try:
                json.loads(sample)
            except ValueError as exc:
                raise ValueError(f"mix entry {part!r}: the body is not JSON ({exc})") from None
        entries.append(MixEntry(method, path, body_text, weight))
    if not entries:
        raise ValueError('the mix is empty: give at least one entry, e.g. "GET /health/live"')
    return tuple(entries)


def parse_rate(text: str) -> float:
    """``"20/s"``, ``"20"`` (per second) or ``"600/m"`` → requests per second."""
    number, _, unit = text.strip().partition("/")
    try:
        value = float(number)
    except ValueError:
        value = math.nan
    per = {"": 1.0, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}.get(unit.strip().lower())
    if per is None or not math.isfinite(value) or value <= 0:
        raise ValueError(f"rate {text!r}: write requests per second or minute, e.g. 20/s or 600/m")
    rate = value / per
    if rate > 20_000:
        raise ValueError(f"rate {text!r} is above 20000/s, more than one process can send")
    return rate


def parse_duration(text: str) -> float:
    """``"30s"``, ``"2m"``, ``"500ms"``, ``"1h"`` or plain seconds → seconds (up to a day)."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*", text)
    if not found:
        raise ValueError(f"duration {text!r}: write e.g. 30s, 2m, 500ms or 90")
    seconds = float(found.group(1)) * _UNITS[found.group(2) or "s"]
    if not 0 < seconds <= 86_400:
        raise ValueError(f"duration {text!r} must be more than 0 and at most a day")
    return seconds


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0-100) of sorted values; 0 when there are none."""
    if not ordered:
        return 0.0
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass(frozen=True, slots=True)
class Progress:
    """A snapshot while the load runs."""

    elapsed: float
    duration: float
    sent: int
    done: int
    errors: int
    in_flight: int


@dataclass
class _Tally:
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)

    def latency_ms(self) -> dict[str, float]:
        ordered = sorted(self.latencies)
        return {
            name: round(percentile(ordered, q) * 1000, 3)
            for name, q in (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": sum(self.statuses.values()),
            "statuses": dict(sorted(self.statuses.items())),
            "errors": dict(sorted(self.errors.items())),
            "latency_ms": self.latency_ms(),
        }


@dataclass(frozen=True, slots=True)
class LoadSummary:
    """What a run did. ``errors`` counts responses of status 400 and up (by status) and
    requests that got no response (by exception name); latencies are of responses."""

    targets: tuple[str, ...]
    rate: float
    duration: float
    elapsed: float
    requests: int
    completed: int
    statuses: dict[str, int]
    errors: dict[str, int]
    latency_ms: dict[str, float]
    endpoints: dict[str, dict[str, Any]]

    @property
    def error_count(self) -> int:
        """All errors, whatever their kind."""
        return sum(self.errors.values())

    @property
    def throughput(self) -> float:
        """Completed requests per second of the run."""
        return self.completed / self.elapsed if self.elapsed > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` form."""
        return {
            "targets": list(self.targets),
            "rate": self.rate,
            "duration_s": self.duration,
            "elapsed_s": round(self.elapsed, 3),
            "requests": self.requests,
            "completed": self.completed,
            "throughput": round(self.throughput, 2),
            "statuses": self.statuses,
            "errors": self.errors,
            "error_count": self.error_count,
            "latency_ms": self.latency_ms,
            "endpoints": self.endpoints,
        }


async def run_load(
    targets: Sequence[str],
    mix: Sequence[MixEntry],
    *,
    rate: float,
    duration: float,
    concurrency: int = 8,
    ids: tuple[int, int] = (1, 100),
    timeout: float = 10.0,
    seed: int | None = None,
    headers: dict[str, str] | None = None,
    progress: Callable[[Progress], None] | None = None,
    progress_interval: float = 0.5,
    transport: httpx.AsyncBaseTransport | None = None,
) -> LoadSummary:
    """Send ``rate`` requests per second for ``duration`` seconds, round robin over
    ``targets`` (base URLs), with at most ``concurrency`` in flight; return the summary.

    Requests still unanswered ``timeout`` seconds after the last one was due are
    cancelled and counted as ``unfinished`` errors.
    """
    if not targets:
        raise ValueError("no target to send to: give at least one base URL")
    if not mix:
        raise ValueError("the mix is empty")
    if not 1 <= concurrency <= 10_000:
        raise ValueError(f"concurrency must be from 1 to 10000, not {concurrency!r}")
    if ids[0] > ids[1]:
        raise ValueError(f"ids {ids[0]}-{ids[1]}: the first must not be above the last")
    rng = random.Random(seed)
    weights = [entry.weight for entry in mix]
    total = max(1, round(rate * duration))
    overall, by_entry = _Tally(), {entry.label: _Tally() for entry in mix}
    slots = asyncio.Semaphore(concurrency)
    state = {"sent": 0, "done": 0, "errors": 0, "completed": 0}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    loop = asyncio.get_running_loop()

    async with httpx.AsyncClient(
        timeout=timeout, limits=limits, transport=transport, headers=headers
    ) as http:

        async def one(due: float, target: str, entry: MixEntry) -> None:
            path, body = entry.render(rng, ids)
            tallies = (overall, by_entry[entry.label])
            try:
                async with slots:
                    state["sent"] += 1
                    response = await http.request(
                        entry.method,
                        target.rstrip("/") + path,
                        content=None if body is None else body.encode(),
                        headers=None if body is None else {"content-type": "application/json"},
                    )
                    await response.aread()
            except asyncio.CancelledError:
                for tally in tallies:
                    tally.errors["unfinished"] += 1
                state["errors"] += 1
                raise
            except httpx.HTTPError as exc:
                for tally in tallies:
                    tally.errors[type(exc).__name__] += 1
                state["errors"] += 1
                state["completed"] += 1
            else:
                state["completed"] += 1
                latency = loop.time() - due
                status = str(response.status_code)
                for tally in tallies:
                    tally.latencies.append(latency)
                    tally.statuses[status] += 1
                    if response.status_code >= 400:
                        tally.errors[status] += 1
                if response.status_code >= 400:
                    state["errors"] += 1
            finally:
                state["done"] += 1

        start = loop.time()
        wall_start = time.monotonic()
        tasks: set[asyncio.Task[None]] = set()

        def snapshot() -> Progress:
            return Progress(
                elapsed=loop.time() - start,
                duration=duration,
                sent=state["sent"],
                done=state["done"],
                errors=state["errors"],
                in_flight=state["sent"] - state["done"],
            )

        async def reporter(report: Callable[[Progress], None]) -> None:
            while True:
                await asyncio.sleep(progress_interval)
                report(snapshot())

        reporting = None if progress is None else asyncio.create_task(reporter(progress))
        try:
            for index in range(total):
                due = start + index / rate
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                entry = rng.choices(mix, weights)[0] if len(mix) > 1 else mix[0]
                task = asyncio.create_task(one(due, targets[index % len(targets)], entry))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            # The last request is due at (total - 1) / rate; the run lasts `duration`.
            rest = start + duration - loop.time()
            if rest > 0:
                await asyncio.sleep(rest)
            if tasks:
                _done, pending = await asyncio.wait(set(tasks), timeout=timeout)
                for task in pending:
                    task.cancel()
                if pending:
                    await asyncio.gather(*pending, return_exceptions=True)
        finally:
            if reporting is not None:
                reporting.cancel()
                await asyncio.gather(reporting, return_exceptions=True)
            for task in tasks:
                task.cancel()
        if progress is not None:
            progress(snapshot())
        elapsed = time.monotonic() - wall_start

    combined = overall.to_json()
    return LoadSummary(
        targets=tuple(targets),
        rate=rate,
        duration=duration,
        elapsed=elapsed,
        requests=total,
        completed=state["completed"],
        statuses=combined["statuses"],
        errors=combined["errors"],
        latency_ms=combined["latency_ms"],
        endpoints={label: tally.to_json() for label, tally in by_entry.items()},
    )
