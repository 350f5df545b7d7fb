"""The Supervisor in-process, with real child processes: restart policies, crash loops, errors."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import shutil
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from cairn.platform import StartupError, Supervisor, load_manifest
from cairn.platform._state import InstanceRecord
from cairn.platform._status import StatusRow, render_table, rows
from cairn.resilience import wait_none

pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).parent / "fixtures"


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


FLAKY = """
import pathlib, sys

from starlette.applications import Starlette

marker = pathlib.Path("started-once")
if marker.exists():
    print("flaky: refusing to start twice", flush=True)
    sys.exit(3)
marker.write_text("x")
app = Starlette()
"""


def project(tmp_path: Path, services: str) -> Path:
    shutil.copy(FIXTURES / "two" / "alpha.py", tmp_path / "alpha.py")
    (tmp_path / "flaky.py").write_text(FLAKY)
    manifest = tmp_path / "cairn.toml"
    manifest.write_text("[registry]\nport = 0\n" + services)
    return manifest


async def until(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def supervisor(manifest: Path, messages: list[str], **options: object) -> Supervisor:
    return Supervisor(
        load_manifest(manifest),
        collector=False,
        dashboard=False,
        notify=messages.append,
        stop_timeout=5.0,
        **options,  # type: ignore[arg-type]
    )


async def test_crash_loop_then_start_again(tmp_path: Path) -> None:
    manifest = project(tmp_path, '[services.flaky]\napp = "flaky:app"\nttl = 2\n')
    messages: list[str] = []
    async with supervisor(manifest, messages, backoff=wait_none(), crash_loop=(2, 60.0)) as sup:
        (record,) = sup.snapshot()
        assert record.health == "passing"
        assert sup.run_file.exists()
        os.kill(record.pid or 0, signal.SIGKILL)
        await until(lambda: sup.snapshot()[0].state == "crash-loop", "the crash loop")
        assert sup.snapshot()[0].restarts == 2
        assert any("after 2 restarts in 60 s; not restarting" in m for m in messages)
        child = sup.children()[-1]
        assert "flaky: refusing to start twice" in child.tail

        # Fixed: the control API's start brings it back.
        (tmp_path / "started-once").unlink()
        await sup.start_instance("flaky-1")
        await until(lambda: sup.snapshot()[0].health == "passing", "flaky-1 passing")
        assert sup.snapshot()[0].state == "running"
    assert not sup.run_file.exists()
    assert all(not c.running for c in sup.children())


async def test_restart_no_and_kill_keeps_down(tmp_path: Path) -> None:
    manifest = project(
        tmp_path,
        '[services.alpha]\napp = "alpha:app"\nreplicas = 2\nrestart = "no"\n'
        'env = { ALPHA_GREETING = "hi" }\n',
    )
    messages: list[str] = []
    async with supervisor(manifest, messages, control=False) as sup:
        assert sup.control_url is None
        one, _ = sup.snapshot()
        os.kill(one.pid or 0, signal.SIGKILL)
        await until(lambda: sup.snapshot()[0].state == "exited", "alpha-1 exited")
        assert sup.snapshot()[0].pid is None
        assert any("alpha-1: exited with status -9; restart=no" in m for m in messages)

        killed = await sup.kill_instance("alpha-2")
        assert (killed.state, killed.health, killed.pid) == ("stopped", "stopped", None)
        with pytest.raises(
            KeyError, match=r"no instance 'alpha-3' \(instances: alpha-1, alpha-2\)"
        ):
            await sup.kill_instance("alpha-3")
    assert not sup.run_file.exists()


async def test_port_in_use_starts_nothing(tmp_path: Path) -> None:
    manifest = project(tmp_path, '[services.alpha]\napp = "alpha:app"\n')
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        sup = supervisor(manifest, [], registry_port=port)
        with pytest.raises(StartupError, match=rf"port {port} for the registry is in use"):
            await sup.start()
    assert sup.children() == []


async def test_start_timeout_names_the_child(tmp_path: Path) -> None:
    # A command service that never registers: it never turns passing.
    script = tmp_path / "silent.py"
    script.write_text("import time\nprint('up', flush=True)\ntime.sleep(60)\n")
    manifest = project(
        tmp_path, f"[services.silent]\ncommand = [{json.dumps(sys.executable)}, 'silent.py']\n"
    )
    sup = supervisor(manifest, [], ready_timeout=1.0)
    with pytest.raises(StartupError) as info:
        await sup.start()
    message = str(info.value)
    assert "not passing in the registry: silent-1 after 1 s" in message
    assert "up" in info.value.log_tail
    assert all(not c.running for c in sup.children())


def test_status_table() -> None:
    records = [
        InstanceRecord("a", "a-1", 10, "http://127.0.0.1:5000", "running", "passing", 0),
        InstanceRecord("a", "a-2", None, None, "stopped", "stopped", 2),
    ]
    table = rows(records, {"a-1": 12.345}, {"a-1": {"closed": 1}, "a-2": {"open": 2}})
    assert table[0] == StatusRow("a-1", "passing", "127.0.0.1:5000", "10", 0, "12.3/s", "closed")
    assert table[1] == StatusRow("a-2", "stopped (stopped)", "-", "-", 2, "-", "open:2")
    text = render_table(table)
    lines = text.splitlines()
    assert lines[0].split() == [
        "INSTANCE",
        "HEALTH",
        "ADDRESS",
        "PID",
        "RESTARTS",
        "REQ/S",
        "BREAKERS",
    ]
    assert lines[1].split() == ["a-1", "passing", "127.0.0.1:5000", "10", "0", "12.3/s", "closed"]
    assert "\x1b[32mpassing" in render_table(table, color=True)


async def test_metrics_reader() -> None:
    import httpx

    from cairn.platform._status import MetricsReader

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/metrics/http_requests_total":
            assert request.url.params["by"] == "instance"
            series = [{"labels": {"instance": "a-1"}, "rate": 2.5, "latest": 10}]
            return httpx.Response(200, json={"name": "x", "kind": "counter", "series": series})
        if request.url.path == "/api/metrics/cairn_breaker_state":
            series = [
                {"labels": {"policy": "a/a-1", "state": "open"}, "latest": 1.0},
                {"labels": {"policy": "a/a-1", "state": "closed"}, "latest": 0.0},
                {"labels": {"policy": "a/a-2", "state": "closed"}, "latest": 2.0},
                {"labels": {"policy": "a", "state": "open"}, "latest": 1.0},
            ]
            return httpx.Response(200, json={"name": "x", "kind": "gauge", "series": series})
        return httpx.Response(404, json={"error": "no such metric"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
        reader = MetricsReader(http, "http://collector")
        assert await reader.rates() == {"a-1": 2.5}
        assert await reader.breakers() == {"a-1": {"open": 1}, "a-2": {"closed": 2}}
        assert await MetricsReader(http, None).rates() == {}


@pytest.mark.skipif(not _has("cairn.dashboard._cli"), reason="the dashboard is not installed")
async def test_dashboard_started_when_installed(tmp_path: Path) -> None:
    import httpx

    manifest = project(tmp_path, "[dashboard]\nport = 0\n")
    async with Supervisor(
        load_manifest(manifest), collector=False, dashboard=True, stop_timeout=5.0
    ) as sup:
        assert sup.dashboard_url is not None
        async with httpx.AsyncClient(trust_env=False) as http:
            assert (await http.get(sup.dashboard_url)).status_code < 500
        assert [c.name for c in sup.children()] == ["registry", "dashboard"]
    assert all(not c.running for c in sup.children())
