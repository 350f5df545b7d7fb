"""The supervisor behind ``cairn up``: start everything in order, keep it running, stop it cleanly.

Order of start: the registry, the collector, the dashboard, then the
services level by level (a service starts once everything it depends on is
passing in the registry). Order of stop: the reverse. Every child has its
own process group, and stopping one kills its group, so nothing is left
behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import random
import secrets
import signal
import socket
import sys
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from cairn.platform._child import Child
from cairn.platform._errors import PlatformError, StartupError
from cairn.platform._manifest import Manifest, ServiceSpec
from cairn.platform._orphan import BOOTSTRAP
from cairn.platform._state import InstanceRecord, RunState, remove_run, run_path, write_run
from cairn.resilience import RetryState, WaitFunc, wait_exponential

__all__ = ["Supervisor"]

CRASH_LOOP_RESTARTS = 5
"""Restarts within :data:`CRASH_LOOP_WINDOW` seconds after which an instance is given up on."""
CRASH_LOOP_WINDOW = 60.0
_HEALTHY_RUN = 10.0  # a process that ran this long resets the backoff
DEFAULT_BACKOFF: WaitFunc = wait_exponential(multiplier=0.5, max=15.0)
"""Waits before restarting a crashed instance: 0.5, 1, 2, 4 … up to 15 s."""

Notify = Callable[[str], None]


def cairn_argv(*, guarded: bool = False) -> list[str]:
    """How to run the ``cairn`` command with this interpreter.

    ``guarded``: the child stops itself if its parent (``cairn up``) dies.
    """
    if guarded:
        return [sys.executable, "-c", BOOTSTRAP]
    if importlib.util.find_spec("cairn.__main__") is not None:
        return [sys.executable, "-m", "cairn"]
    return [
        sys.executable,
        "-c",
        "import sys; from cairn._cli import main; sys.exit(main(prog_name='cairn'))",
    ]


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class Supervisor:
    """Runs a :class:`~cairn.platform.Manifest`: usable in-process (asyncio) or through ``cairn up``.

    ::

        async with Supervisor(load_manifest("cairn.toml")) as sup:   # all passing here
            print(sup.registry_url, sup.snapshot())
            await sup.wait_for_stop()         # until request_stop() or POST /shutdown

    Port arguments override the manifest's (0: any free port).
    ``collector``/``dashboard`` False leave them out (they are also left out,
    with a warning, when their command is not installed). ``notify`` gets
    one-line messages (state changes, warnings); ``echo`` gets every child's
    output line prefixed with its name. ``control`` serves the control API.
    A crashed instance is restarted per its service's ``restart`` policy
    after ``backoff`` (a :mod:`cairn.resilience` wait strategy, given the
    number of failures in a row), unless it was restarted ``crash_loop[0]``
    times within ``crash_loop[1]`` seconds: then it stays down (``crash-loop``).
    """

    def __init__(
        self,
        manifest: Manifest,
        *,
        registry_port: int | None = None,
        collector_port: int | None = None,
        dashboard_port: int | None = None,
        collector: bool = True,
        dashboard: bool = True,
        control: bool = True,
        notify: Notify | None = None,
        echo: Notify | None = None,
        ready_timeout: float = 30.0,
        stop_timeout: float = 10.0,
        backoff: WaitFunc = DEFAULT_BACKOFF,
        crash_loop: tuple[int, float] = (CRASH_LOOP_RESTARTS, CRASH_LOOP_WINDOW),
    ) -> None:
        self.manifest = manifest
        self.backoff = backoff
        self.crash_loop = crash_loop
        self.token = secrets.token_hex(16)
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self._ports = {
            "registry": manifest.registry_port if registry_port is None else registry_port,
            "collector": manifest.collector.port if collector_port is None else collector_port,
            "dashboard": manifest.dashboard_port if dashboard_port is None else dashboard_port,
        }
        self._want_collector = collector
        self._want_dashboard = dashboard
        self._want_control = control
        self._notify = notify or (lambda _text: None)
        self._echo = echo
        self.folder = manifest.folder
        self.log_dir = self.folder / ".cairn" / "logs"
        self.run_file = run_path(self.folder)
        self.registry_url = ""
        self.collector_url: str | None = None
        self.dashboard_url: str | None = None
        self.control_url: str | None = None
        self.started_at = ""
        self._infra: list[Child] = []
        self._instances: dict[str, Child] = {}
        self._health: dict[str, str] = {}
        self._urls: dict[str, str] = {}
        self._by_port: dict[int, str] = {}
        self._watchers: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._http: httpx.AsyncClient | None = None
        self._poller: asyncio.Task[None] | None = None
        self._control: Any = None
        self._started = False
        self._stopping = False
        self._stopped = False
        self._stop_requested = asyncio.Event()
        self._force = asyncio.Event()
        self._changed = asyncio.Event()
        self._last_seen: dict[str, tuple[str, str]] = {}
        self._rng = random.Random()
        self._epoch = 0

    # -- public API ---------------------------------------------------------

    async def __aenter__(self) -> Supervisor:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Start everything and return once every instance is passing.

        Raises :class:`StartupError` (with the failing child's last log lines)
        after stopping whatever was started.
        """
        if self._started or self._stopping:
            raise PlatformError("a Supervisor starts once; make a new one")
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    def request_stop(self) -> None:
        """Ask for a graceful stop: :meth:`wait_for_stop` returns."""
        self._stop_requested.set()

    def force(self) -> None:
        """Stop waiting for children to drain: kill what is left at once."""
        self._stop_requested.set()
        self._force.set()

    @property
    def stop_requested(self) -> bool:
        """Whether :meth:`request_stop` (or ``POST /shutdown``) was called."""
        return self._stop_requested.is_set()

    async def wait_for_stop(self) -> None:
        """Wait until :meth:`request_stop`, :meth:`force` or ``POST /shutdown``."""
        await self._stop_requested.wait()

    async def run(self) -> None:
        """Start, wait for a stop request, stop."""
        try:
            await self.start()
            await self.wait_for_stop()
        finally:
            await self.stop()

    def snapshot(self) -> list[InstanceRecord]:
        """Every instance now: state, health, pid, url, restarts."""
        return [self._record(child) for child in self._instances.values()]

    def children(self) -> list[Child]:
        """Every child process handle, infrastructure first (for tests and the status view)."""
        return [*self._infra, *self._instances.values()]

    def run_state(self) -> RunState:
        """What ``run.json`` holds."""
        return RunState(
            pid=os.getpid(),
            manifest=str(self.manifest.path),
            started_at=self.started_at,
            control=self.control_url or "",
            token=self.token,
            registry=self.registry_url,
            collector=self.collector_url,
            dashboard=self.dashboard_url,
            instances=self.snapshot(),
        )

    async def kill_instance(self, instance_id: str) -> InstanceRecord:
        """SIGKILL an instance and keep it down until :meth:`start_instance`."""
        child = self._instance(instance_id)
        child.held = True
        self._cancel_watch(child)
        if child.running:
            child.signal_group(signal.SIGKILL)
            await child.wait()
        child.state = "stopped"
        self._changed.set()
        self._notify(f"{child.name}: killed (kept down until started)")
        return self._record(child)

    async def start_instance(self, instance_id: str) -> InstanceRecord:
        """Start a stopped (or given-up) instance again: same id, new port."""
        child = self._instance(instance_id)
        if child.running:
            raise PlatformError(f"{instance_id} is running already (pid {child.pid})")
        self._cancel_watch(child)
        child.held = False
        child.failures = 0
        child.recent_restarts.clear()
        await self._forget(child)
        await child.spawn()
        self._watch(child)
        self._changed.set()
        self._notify(f"{child.name}: started (pid {child.pid})")
        return self._record(child)

    async def stop(self) -> None:
        """Stop everything in reverse order; idempotent. Removes ``run.json``."""
        if self._stopped or self._stopping:
            return
        self._stopping = True
        try:
            for task in list(self._watchers.values()):
                task.cancel()
            for level in reversed(self.manifest.levels()):
                children = [
                    c
                    for spec in level
                    for i in spec.instance_ids()
                    if (c := self._instances.get(i))
                ]
                await asyncio.gather(
                    *(c.terminate(self.stop_timeout, self._force) for c in children)
                )
            for child in reversed(self._infra):
                await child.terminate(self.stop_timeout, self._force)
            for child in self.children():
                if not child.held:
                    child.state = "exited"
        finally:
            await self._close()
            self._stopped = True

    # -- start --------------------------------------------------------------

    async def _start(self) -> None:
        self.started_at = datetime.now(UTC).isoformat(timespec="seconds")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(2.0), trust_env=False)
        cairn = cairn_argv(guarded=True)
        base_env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "CAIRN_SUPERVISOR_PID": str(os.getpid()),
        }

        registry_port = self._port("registry")
        self.registry_url = f"http://127.0.0.1:{registry_port}"
        registry = self._infra_child(
            "registry",
            [*cairn, "registry", "serve", "--port", str(registry_port)],
            base_env,
            registry_port,
        )
        await self._spawn_ready(registry, "/v1/status/leader")
        self._poller = asyncio.get_running_loop().create_task(self._poll(), name="cairn-health")

        if self._want_collector:
            if _has_module("cairn.collector._serve_cli"):
                port = self._port("collector")
                url = f"http://127.0.0.1:{port}"
                child = self._infra_child(
                    "collector",
                    [
                        *cairn,
                        "collector",
                        "--port",
                        str(port),
                        "--data",
                        str(self.manifest.collector.data),
                        "--registry",
                        self.registry_url,
                        "--scrape-interval",
                        f"{self.manifest.collector.scrape_interval:g}s",
                    ],
                    base_env,
                    port,
                )
                await self._spawn_ready(child, "/api/stats")
                self.collector_url = url
            else:
                self._notify("warning: `cairn collector` is not installed; running without it")
        if self._want_dashboard:
            if _has_module("cairn.dashboard._cli"):
                port = self._port("dashboard")
                argv = [*cairn, "dashboard", "--port", str(port), "--registry", self.registry_url]
                # The lab writes to ./lab-report by default: the folder we were started from.
                argv += ["--lab-dir", str(Path.cwd() / "lab-report")]
                if self.collector_url:
                    argv += ["--collector", self.collector_url]
                child = self._infra_child("dashboard", argv, base_env, port)
                await self._spawn_ready(child, "/")
                self.dashboard_url = f"http://127.0.0.1:{port}"
            else:
                self._notify("warning: `cairn dashboard` is not installed; running without it")

        for level in self.manifest.levels():
            started: list[Child] = []
            for spec in level:
                for instance_id in spec.instance_ids():
                    child = self._instance_child(spec, instance_id, base_env)
                    self._instances[instance_id] = child
                    await child.spawn()
                    started.append(child)
            await self._await_passing(started)

        if self._want_control:
            from cairn.platform._control import ControlServer

            self._control = ControlServer(self)
            self.control_url = await self._control.start()
        self._started = True
        for child in self.children():
            child.state = "running"
            self._watch(child)
        self._save()
        self._changed.set()

    def _port(self, what: str) -> int:
        port = self._ports[what]
        if port == 0:
            return _free_port()
        if not _port_free(port):
            flag = f"--{what}-port"
            raise StartupError(
                f"port {port} for the {what} is in use on 127.0.0.1 (another `cairn up`?); "
                f"stop what uses it, or pass {flag} 0 (any free port) or set [{what}] port in the manifest"
            )
        return port

    def _infra_child(self, name: str, argv: list[str], env: Mapping[str, str], port: int) -> Child:
        child = Child(
            name,
            argv,
            kind=name,
            cwd=self.folder,
            env=env,
            log_path=self.log_dir / f"{name}.log",
            restart="on-failure",
            port=port,
            echo=self._echo,
        )
        self._infra.append(child)
        return child

    def _instance_child(
        self, spec: ServiceSpec, instance_id: str, base: Mapping[str, str]
    ) -> Child:
        folder = str(self.folder)
        env = dict(base)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (folder, base.get("PYTHONPATH")) if p)
        env["CAIRN_REGISTRY"] = self.registry_url
        env["CAIRN_INSTANCE_ID"] = instance_id
        env["CAIRN_CHAOS_TOKEN"] = self.token
        if self.collector_url:
            env["OTEL_EXPORTER_OTLP_ENDPOINT"] = self.collector_url
        env.update(spec.env)
        port = None
        if spec.app is not None:
            argv = [
                sys.executable,
                "-m",
                "cairn.platform.worker",
                spec.app,
                "--name",
                spec.name,
                "--instance-id",
                instance_id,
                "--port",
                "0",
            ]
            if spec.ttl is not None:
                argv += ["--ttl", str(spec.ttl)]
        else:
            assert spec.command is not None
            # Exec-ed by the guard (same pid), which leaves a watcher behind
            # that stops the command's group if `cairn up` dies outright.
            argv = [sys.executable, "-m", "cairn.platform._guard", *spec.command]
            port = _free_port()
            env["PORT"] = str(port)
        return Child(
            instance_id,
            argv,
            kind="instance",
            service=spec.name,
            cwd=self.folder,
            env=env,
            log_path=self.log_dir / f"{instance_id}.log",
            restart=spec.restart,
            port=port,
            echo=self._echo,
        )

    async def _spawn_ready(self, child: Child, path: str) -> None:
        await child.spawn()
        assert self._http is not None
        assert child.port is not None
        url = f"http://127.0.0.1:{child.port}{path}"

        async def ready() -> bool:
            assert self._http is not None
            try:
                response = await self._http.get(url)
            except httpx.HTTPError:
                return False
            return response.status_code < 500

        await self._until([child], ready, f"{child.name} did not answer {url}")
        child.state = "running"
        self._notify(f"{child.name}: ready at http://127.0.0.1:{child.port}")

    async def _await_passing(self, children: list[Child]) -> None:
        async def ready() -> bool:
            return all(self._health.get(c.name) == "passing" for c in children)

        names = ", ".join(c.name for c in children)
        await self._until(children, ready, f"not passing in the registry: {names}")
        for child in children:
            self._notify(f"{child.name}: passing at {self._urls.get(child.name, '?')}")

    async def _until(self, children: list[Child], ready: Callable[[], Any], what: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.ready_timeout
        while True:
            for child in children:
                if not child.running:
                    await child.wait()
                    raise StartupError(
                        f"{child.name} exited with status {child.returncode} while starting",
                        child=child.name,
                        log_tail=tuple(child.tail)[-15:],
                        log_path=child.log_path,
                    )
            if await ready():
                return
            if loop.time() > deadline:
                first = children[0]
                raise StartupError(
                    f"{what} after {self.ready_timeout:g} s",
                    child=first.name,
                    log_tail=tuple(first.tail)[-15:],
                    log_path=first.log_path,
                )
            if self._stop_requested.is_set():
                raise StartupError("stopped while starting")
            await asyncio.sleep(0.1)

    # -- health -------------------------------------------------------------

    async def _poll(self) -> None:
        while True:
            # The registry restarting: keep the last view.
            with contextlib.suppress(httpx.HTTPError, ValueError, KeyError, TypeError):
                await self._poll_once()
            if self._started:
                self._report_changes()
            await asyncio.sleep(0.25 if not self._started else 0.5)

    async def _poll_once(self) -> None:
        assert self._http is not None
        epoch = self._epoch
        services = (await self._http.get(f"{self.registry_url}/v1/agent/services")).json()
        checks = (await self._http.get(f"{self.registry_url}/v1/agent/checks")).json()
        urls: dict[str, str] = {}
        by_port: dict[int, str] = {}
        for sid, item in services.items():
            address, port = item.get("Address") or "127.0.0.1", int(item.get("Port") or 0)
            urls[sid] = f"http://{address}:{port}"
            by_port[port] = sid
        health: dict[str, str] = {}
        for item in checks.values():
            sid = item.get("ServiceID")
            if sid:
                health[sid] = str(item.get("Status", "critical"))
        for sid in urls:
            health.setdefault(sid, "passing")  # no check: registered means passing
        # A `command` service may register under its own id: match it by port.
        for child in self._instances.values():
            if child.name not in urls and child.port is not None and child.port in by_port:
                other = by_port[child.port]
                urls[child.name] = urls[other]
                health[child.name] = health.get(other, "passing")
        if epoch == self._epoch:
            self._urls, self._health, self._by_port = urls, health, by_port

    async def _forget(self, child: Child) -> None:
        # Its registration is the dead process's: drop it now rather than one
        # TTL later, and ignore a poll that read it before.
        self._epoch += 1
        self._health.pop(child.name, None)
        self._urls.pop(child.name, None)
        if self._http is not None and child.kind == "instance":
            with contextlib.suppress(httpx.HTTPError):
                await self._http.put(
                    f"{self.registry_url}/v1/agent/service/deregister/{child.name}"
                )

    def _health_of(self, child: Child) -> str:
        if not child.running:
            return "stopped"
        return self._health.get(child.name, "starting")

    def _record(self, child: Child) -> InstanceRecord:
        return InstanceRecord(
            service=child.service or child.name,
            instance_id=child.name,
            pid=child.pid,
            url=self._urls.get(child.name) if child.running else None,
            state=child.state,
            health=self._health_of(child),
            restarts=child.restarts,
        )

    def _report_changes(self) -> None:
        if self._stopping:
            return
        changed = False
        for child in self._instances.values():
            if child.state == "starting" and self._health_of(child) == "passing":
                child.state = "running"

            now = (child.state, self._health_of(child))
            if self._last_seen.get(child.name) != now:
                changed = True
                before = self._last_seen.get(child.name)
                self._last_seen[child.name] = now
                if before is not None:
                    url = self._urls.get(child.name, "") if child.running else ""
                    self._notify(f"{child.name}: {now[0]}, {now[1]} {url}".rstrip())
        if changed or self._changed.is_set():
            self._changed.clear()
            self._save()

    def _save(self) -> None:
        if self._started and not self._stopping:
            try:
                write_run(self.run_file, self.run_state())
            except OSError as exc:
                self._notify(f"warning: cannot write {self.run_file}: {exc}")

    # -- restarts -----------------------------------------------------------

    def _instance(self, instance_id: str) -> Child:
        try:
            return self._instances[instance_id]
        except KeyError:
            known = ", ".join(self._instances) or "none"
            raise KeyError(f"no instance {instance_id!r} (instances: {known})") from None

    def _watch(self, child: Child) -> None:
        task = asyncio.get_running_loop().create_task(
            self._supervise(child), name=f"cairn-watch-{child.name}"
        )
        self._watchers[child.name] = task

    def _cancel_watch(self, child: Child) -> None:
        task = self._watchers.pop(child.name, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    def _leave_down(self, child: Child) -> bool:
        return self._stopping or child.held

    async def _supervise(self, child: Child) -> None:
        loop = asyncio.get_running_loop()
        while True:
            code = await child.wait()
            if self._leave_down(child):
                return
            self._changed.set()
            policy = child.restart
            if policy == "no" or (policy == "on-failure" and code == 0):
                child.state = "exited"
                self._notify(f"{child.name}: exited with status {code}; restart={policy}")
                return
            now = loop.time()
            limit, window = self.crash_loop
            while child.recent_restarts and now - child.recent_restarts[0] > window:
                child.recent_restarts.popleft()
            if len(child.recent_restarts) >= limit:
                child.state = "crash-loop"
                self._notify(
                    f"{child.name}: exited with status {code} after {len(child.recent_restarts)} "
                    f"restarts in {window:g} s; not restarting (see {child.log_path}; "
                    "start it again through the control API)"
                )
                return
            if now - child.started_at >= _HEALTHY_RUN:
                child.failures = 0
            child.failures += 1
            delay = self.backoff(
                RetryState(
                    attempt=child.failures,
                    elapsed=now - child.started_at,
                    previous_delay=None,
                    error=None,
                    result=None,
                    rng=self._rng,
                )
            )
            child.state = "backoff"
            self._notify(f"{child.name}: exited with status {code}; restarting in {delay:.1f} s")
            await asyncio.sleep(delay)
            if self._leave_down(child):
                return
            await self._forget(child)
            await child.spawn()
            child.restarts += 1
            child.recent_restarts.append(loop.time())
            self._changed.set()

    # -- stop ---------------------------------------------------------------

    async def _close(self) -> None:
        remove_run(self.run_file)
        for task in [*self._watchers.values(), *([self._poller] if self._poller else [])]:
            task.cancel()
        await _settle([*self._watchers.values(), *([self._poller] if self._poller else [])])
        self._watchers.clear()
        if self._control is not None:
            with contextlib.suppress(Exception):
                await self._control.stop()
        if self._http is not None:
            await self._http.aclose()


async def _settle(tasks: Iterable[asyncio.Task[Any]]) -> None:
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
