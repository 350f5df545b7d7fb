"""Real servers for the discovery tests: cairn's registry server, etcd, a toggled HTTP target."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import uvicorn

from cairn.discovery import HTTPCheck, InstanceSet, Registry
from cairn.discovery._health import _classify
from cairn.discovery._model import Health
from cairn.discovery._server import create_app
from cairn.discovery._sqlite import SQLiteRegistry
from cairn.resilience._clock import Clock
from cairn.testing import VirtualClock

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(condition: Callable[[], T], *, timeout: float = 15.0, what: str = "") -> T:
    """Poll ``condition`` until it returns something truthy, or fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(0.02)  # polling interval of the condition


async def until(
    registry: Registry,
    service: str,
    predicate: Callable[[InstanceSet], bool],
    *,
    passing: bool = True,
    timeout: float = 15.0,
) -> InstanceSet:
    """The first view of ``service`` the registry's watch yields that satisfies ``predicate``."""
    last: InstanceSet | None = None
    try:
        async with asyncio.timeout(timeout):
            async for view in registry.watch(service, passing=passing):
                last = view
                if predicate(view):
                    return view
    except TimeoutError:
        pass
    raise AssertionError(f"timed out after {timeout}s; last view of {service!r}: {last!r}")


class ThreadedUvicorn:
    """An ASGI app served by uvicorn on 127.0.0.1 in a background thread."""

    def __init__(self, app: Any) -> None:
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=0,
            log_level="error",
            lifespan="on",
            timeout_graceful_shutdown=2,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ThreadedUvicorn:
        self.thread.start()
        wait_for(lambda: self.server.started, timeout=10, what="uvicorn to start")
        return self

    @property
    def port(self) -> int:
        return int(self.server.servers[0].sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@contextmanager
def registry_server(
    *, token: str | None = None, data: str = ":memory:"
) -> Iterator[ThreadedUvicorn]:
    """cairn's registry server, in this process, on a free port."""
    store = SQLiteRegistry(data, poll_interval=0.02)
    with ThreadedUvicorn(create_app(store, token=token)) as server:
        yield server


class StatusTarget:
    """An HTTP endpoint answering every GET with ``status`` (change it to flip a check)."""

    def __init__(self) -> None:
        self.status = 200
        self.hits = 0
        target = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                target.hits += 1
                body = b"# metrics\nup 1\n" if self.path == "/metrics" else b"ok"
                self.send_response(target.status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}/health"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> StatusTarget:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class Etcd:
    """A real single-node etcd on free ports with a temporary data dir."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="cairn-etcd-")
        self.client_port = free_port()
        self.peer_port = free_port()
        self.url = f"http://127.0.0.1:{self.client_port}"
        peer = f"http://127.0.0.1:{self.peer_port}"
        self.log = open(os.path.join(self.dir, "etcd.log"), "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                shutil.which("etcd") or "etcd",
                "--name=cairn-test",
                f"--data-dir={self.dir}/data",
                f"--listen-client-urls={self.url}",
                f"--advertise-client-urls={self.url}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=cairn-test={peer}",
                # Fast ticks: leases as short as one second are honoured.
                "--heartbeat-interval=10",
                "--election-timeout=100",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"etcd exited: {Path(self.dir, 'etcd.log').read_text()[-2000:]}")
        try:
            return (
                httpx.post(f"{self.url}/v3/kv/range", json={"key": "eA=="}, timeout=1).status_code
                == 200
            )
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class Harness:
    """A backend under test: how to make registries on it, its TTL, its clock, its checks."""

    def __init__(self, name: str, clock: Clock, ttl: float, make: Callable[..., Registry]) -> None:
        self.name = name
        self.clock = clock
        self.ttl = ttl
        self._make = make
        self._registries: list[Registry] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.target_status: dict[str, int] = {}
        self.target: StatusTarget | None = None

    @property
    def virtual(self) -> bool:
        return isinstance(self.clock, VirtualClock)

    def registry(self, **kwargs: Any) -> Registry:
        registry = self._make(**kwargs)
        self._registries.append(registry)
        return registry

    def http_check(self, **kwargs: Any) -> tuple[HTTPCheck, Callable[[int], None]]:
        """An HTTP check and a function setting the status its probe sees."""
        interval = 1.0 if self.virtual else 0.1
        if self.target is None:
            url = f"http://probe.invalid/{uuid.uuid4().hex}"
            self.target_status[url] = 200

            def flip(status: int) -> None:
                self.target_status[url] = status

            return HTTPCheck(url, interval=interval, timeout=1.0, **kwargs), flip
        target = self.target

        def flip_real(status: int) -> None:
            target.status = status

        return HTTPCheck(target.url, interval=interval, timeout=1.0, **kwargs), flip_real

    async def fake_probe(self, check: HTTPCheck) -> tuple[Health, str]:
        status = self.target_status[check.url]
        return _classify(status), f"fake {status}"

    def keep_alive(self, registry: Registry, instance_id: str) -> None:
        """Heartbeat ``instance_id`` every quarter TTL until the test ends."""

        async def beat() -> None:
            while True:
                await registry.heartbeat(instance_id)
                await self.clock.asleep(self.ttl / 4)

        self._tasks.append(asyncio.get_running_loop().create_task(beat()))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for registry in self._registries:
            await registry.aclose()


def cairn_cli(*args: str) -> list[str]:
    """The command line running ``cairn registry ARGS`` with this interpreter."""
    return [sys.executable, "-c", "from cairn.discovery._cli import registry; registry()", *args]
