"""Health checks: the counting state machine, the HTTP probe and the loop that runs them.

The state machine (:class:`CheckState`) neither sleeps nor does I/O: it is
fed results and says the status. :class:`Prober` is the thin async driver
that probes on an interval, through an injected clock and an injectable
probe function, so tests run it in virtual time without a network.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Awaitable, Callable
from typing import Any

from cairn.discovery._model import Health, HTTPCheck, Instance
from cairn.resilience._clock import Clock

__all__ = [
    "CheckState",
    "Probe",
    "Prober",
    "format_duration",
    "http_probe",
    "parse_duration",
]

Probe = Callable[[HTTPCheck], Awaitable[tuple[Health, str]]]
"""Runs one probe of a check and says what it saw: (health, output)."""

Report = Callable[[Instance, Health, str, float], Awaitable[None]]
"""Stores a probe's verdict: (instance, health, output, valid-for seconds)."""

Expire = Callable[[Instance], Awaitable[None]]

_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str | float | int) -> float:
    """Seconds in a Go duration (``"10s"``, ``"1m30s"``, ``"250ms"``); bare numbers are seconds."""
    if isinstance(text, int | float):
        return float(text)
    value = text.strip()
    if not value:
        raise ValueError("empty duration")
    if re.fullmatch(r"\d+(?:\.\d*)?", value):
        return float(value)
    pos, total = 0, 0.0
    for m in _DURATION.finditer(value):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(value):
        raise ValueError(f"not a duration: {text!r} (use e.g. '10s', '1m30s', '250ms')")
    return total


def format_duration(seconds: float) -> str:
    """A Go duration string Consul accepts: milliseconds when not whole seconds."""
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{round(seconds * 1000)}ms"


class CheckState:
    """Consecutive results of one check, turned into a status.

    A new check starts critical (as in Consul): an instance is not served
    before its first successful probe.
    """

    __slots__ = ("_check", "critical_since", "failures", "health", "successes")

    def __init__(self, check: HTTPCheck, *, now: float) -> None:
        self._check = check
        self.health = Health.CRITICAL
        self.failures = 0
        self.successes = 0
        self.critical_since: float | None = now

    def record(self, result: Health, *, now: float) -> bool:
        """Count one probe result; returns whether the status changed."""
        before = self.health
        if result is Health.PASSING:
            self.successes += 1
            self.failures = 0
            if self.successes >= self._check.successes_before_passing:
                self.health = Health.PASSING
        elif result is Health.CRITICAL:
            self.failures += 1
            self.successes = 0
            if self.failures >= self._check.failures_before_critical:
                self.health = Health.CRITICAL
        else:
            # Consul's 429 Too Many Requests: alive but asking for less.
            self.successes = self.failures = 0
            self.health = Health.WARNING
        if self.health is Health.CRITICAL:
            if before is not Health.CRITICAL:
                self.critical_since = now
        else:
            self.critical_since = None
        return self.health is not before

    def overdue(self, *, now: float) -> bool:
        """Critical for longer than the check's ``deregister_after``."""
        after = self._check.deregister_after
        return (
            after is not None
            and self.critical_since is not None
            and now - self.critical_since >= after
        )


def _classify(status: int) -> Health:
    if 200 <= status < 300:
        return Health.PASSING
    if status == 429:
        return Health.WARNING
    return Health.CRITICAL


async def http_probe(check: HTTPCheck, *, client: Any = None) -> tuple[Health, str]:
    """``GET check.url`` within ``check.timeout``: 2xx passing, 429 warning, else critical."""
    try:
        import httpx
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("HTTP health checks need httpx: pip install 'cairn[discovery]'") from exc
    owned = client is None
    http = httpx.AsyncClient() if owned else client
    try:
        response = await http.get(check.url, timeout=check.timeout)
    except httpx.HTTPError as exc:
        return Health.CRITICAL, f"GET {check.url}: {type(exc).__name__}: {exc}"
    finally:
        if owned:
            await http.aclose()
    return _classify(response.status_code), f"HTTP GET {check.url}: {response.status_code}"


class Prober:
    """Runs the HTTP checks of the instances this process registered.

    Each verdict is reported with how long it stays valid (two intervals and
    a timeout), so if this process dies its instances turn critical by
    themselves instead of staying passing forever. An instance critical for
    its check's ``deregister_after`` is handed to ``expire``.
    """

    def __init__(
        self, *, report: Report, expire: Expire, clock: Clock, probe: Probe | None = None
    ) -> None:
        self._report = report
        self._expire = expire
        self._clock = clock
        self._probe = probe
        self._client: Any = None
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def start(self, instance: Instance) -> None:
        """Probe ``instance`` from now on (replacing any earlier loop for its id)."""
        assert isinstance(instance.check, HTTPCheck)
        self.stop(instance.id)
        self._tasks[instance.id] = asyncio.get_running_loop().create_task(
            self._loop(instance, instance.check), name=f"cairn-probe-{instance.id}"
        )

    def stop(self, instance_id: str) -> None:
        """Stop probing ``instance_id`` (nothing if it was not probed)."""
        task = self._tasks.pop(instance_id, None)
        if task is not None:
            task.cancel()

    def probing(self) -> frozenset[str]:
        """Ids of the instances being probed."""
        return frozenset(self._tasks)

    async def aclose(self) -> None:
        """Stop every loop and close the HTTP client."""
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _probe_once(self, check: HTTPCheck) -> tuple[Health, str]:
        if self._probe is not None:
            return await self._probe(check)
        if self._client is None:
            import httpx

            self._client = httpx.AsyncClient()
        return await http_probe(check, client=self._client)

    async def _loop(self, instance: Instance, check: HTTPCheck) -> None:
        state = CheckState(check, now=self._clock.monotonic())
        while True:
            try:
                result, output = await self._probe_once(check)
            except Exception as exc:  # a broken probe must not kill the loop
                result, output = Health.CRITICAL, f"probe failed: {type(exc).__name__}: {exc}"
            now = self._clock.monotonic()
            state.record(result, now=now)
            if state.overdue(now=now):
                self._tasks.pop(instance.id, None)
                await self._expire(instance)
                return
            await self._report(instance, state.health, output, check.lapse)
            await self._clock.asleep(check.interval)
