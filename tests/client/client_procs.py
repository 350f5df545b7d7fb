"""Real service processes for the client tests, and a transport that records every attempt."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from cairn.discovery import InstanceSet, Registry

HERE = Path(__file__).resolve().parent


class EchoProcess:
    """``echo_service.py`` in a child process; its output goes to files in ``directory``."""

    def __init__(
        self,
        directory: Path,
        registry: str,
        instance_id: str,
        *,
        ttl: float = 1.0,
        drain_delay: float = 0.3,
    ) -> None:
        self.id = instance_id
        self.log = open(directory / f"{instance_id}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(HERE / "echo_service.py"),
                registry,
                instance_id,
                str(ttl),
                str(drain_delay),
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.log.close()


class RecordingTransport(httpx.AsyncBaseTransport):
    """Sends through a real transport and notes (monotonic time, port) of every attempt."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.sent: list[tuple[float, int]] = []
        self._marks: list[tuple[float, asyncio.Event]] = []

    def sent_after(self, when: float) -> asyncio.Event:
        """An event set once an attempt is sent after monotonic time ``when``."""
        event = asyncio.Event()
        self._marks.append((when, event))
        return event

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        now = time.monotonic()
        self.sent.append((now, int(request.url.port or 80)))
        for when, event in self._marks:
            if now > when:
                event.set()
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def wait_view(
    registry: Registry, service: str, predicate: Any, *, timeout: float = 30.0
) -> InstanceSet:
    """The first view of ``service`` that satisfies ``predicate``, or fail at the deadline."""
    last: InstanceSet | None = None
    try:
        async with asyncio.timeout(timeout):
            async for view in registry.watch(service):
                last = view
                if predicate(view):
                    return view
    except TimeoutError:
        pass
    raise AssertionError(f"timed out after {timeout}s; last view of {service!r}: {last!r}")
