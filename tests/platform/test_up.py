"""``cairn up`` as a real process: start, control, restart, stop with nothing left behind."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from cairn.platform._status import HEADER
from cairn.platform._supervisor import cairn_argv

pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).parent / "fixtures"
T = TypeVar("T")


def wait_for(check: Callable[[], T | None], what: str, timeout: float = 30.0) -> T:
    """Poll ``check`` until it returns something truthy, with a generous deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def children_of(pid: int) -> set[int]:
    """Pids whose parent is ``pid`` (from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            found.add(int(entry.name))
    return found


def in_groups(groups: set[int]) -> set[int]:
    """Live pids whose process group is one of ``groups``."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) in groups and fields[0] != "Z":
            found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "two"
    shutil.copytree(
        FIXTURES / "two", folder, ignore=shutil.ignore_patterns(".cairn", "__pycache__")
    )
    return folder


@pytest.fixture
def up(project: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(*args: str, manifest: Path | None = None) -> subprocess.Popen[bytes]:
        out = (project / "up.out").open("wb")
        proc = subprocess.Popen(
            [*cairn_argv(), "up", str(manifest or project / "cairn.toml"), *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=project,
        )
        out.close()
        started.append(proc)
        return proc

    yield start
    for proc in started:  # a failed test must not leave `cairn up` running
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def read_run(project: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads((project / ".cairn" / "run.json").read_text())
    except (FileNotFoundError, ValueError):
        return None
    return data


def test_up_control_restart_and_clean_stop(
    project: Path, up: Callable[..., subprocess.Popen[bytes]]
) -> None:
    proc = up("--no-status", "--no-collector", "--no-dashboard", "--stop-timeout", "5")
    run = wait_for(lambda: read_run(project), "run.json")
    assert (project / ".cairn" / "run.json").stat().st_mode & 0o777 == 0o600
    assert run["pid"] == proc.pid
    assert [i["instance_id"] for i in run["instances"]] == ["alpha-1", "alpha-2", "beta-1"]
    assert all(i["health"] == "passing" and i["state"] == "running" for i in run["instances"])
    auth = {"Authorization": f"Bearer {run['token']}"}

    with httpx.Client(timeout=5.0, trust_env=False) as http:
        # The registry (queried over its own HTTP API) has every instance passing.
        alpha = http.get(f"{run['registry']}/v1/health/service/alpha", params={"passing": ""})
        assert sorted(e["Service"]["ID"] for e in alpha.json()) == ["alpha-1", "alpha-2"]
        beta = http.get(f"{run['registry']}/v1/health/service/beta", params={"passing": ""})
        assert [e["Service"]["ID"] for e in beta.json()] == ["beta-1"]
        # Each instance runs with its env and its id.
        first = run["instances"][0]
        hello = http.get(first["url"] + "/hello").json()
        assert hello == {"greeting": "hello from alpha", "instance": "alpha-1"}

        control = run["control"]
        assert http.get(f"{control}/status").status_code == 401
        wrong = {"Authorization": "Bearer " + "0" * 32}
        assert http.post(f"{control}/instances/alpha-1/kill", headers=wrong).status_code == 401
        assert http.post(f"{control}/instances/nope/kill", headers=auth).status_code == 404
        too_big = http.post(f"{control}/shutdown", headers=auth, content=b"x" * 70_000)
        assert too_big.status_code == 413

        # kill: the process is gone and stays down
        killed = http.post(f"{control}/instances/alpha-1/kill", headers=auth)
        assert killed.status_code == 200
        assert killed.json()["instance"]["state"] == "stopped"
        assert not alive(first["pid"])
        status = http.get(f"{control}/status", headers=auth).json()["instances"]
        assert status[0]["health"] == "stopped"
        assert status[0]["pid"] is None

        # start: same id, a new process on a new port, passing again
        started = http.post(f"{control}/instances/alpha-1/start", headers=auth)
        assert started.status_code == 202
        assert http.post(f"{control}/instances/alpha-1/start", headers=auth).status_code == 409

        def alpha1_back() -> dict[str, Any] | None:
            rows = http.get(f"{control}/status", headers=auth).json()["instances"]
            row: dict[str, Any] = rows[0]
            ok = row["health"] == "passing" and row["state"] == "running" and row["url"]
            return row if ok and row["pid"] != first["pid"] else None

        back = wait_for(alpha1_back, "alpha-1 passing again")
        assert http.get(back["url"] + "/hello").json()["instance"] == "alpha-1"

        # beta has restart = "always": a crash is restarted (after the backoff)
        beta_pid = run["instances"][2]["pid"]
        os.kill(beta_pid, signal.SIGKILL)

        def beta_restarted() -> dict[str, Any] | None:
            rows = http.get(f"{control}/status", headers=auth).json()["instances"]
            row: dict[str, Any] = rows[2]
            ok = row["restarts"] == 1 and row["health"] == "passing" and row["state"] == "running"
            return row if ok else None

        wait_for(beta_restarted, "beta-1 restarted")
        # run.json follows the instances
        wait_for(
            lambda: (r := read_run(project)) and r["instances"][2]["restarts"] == 1,
            "run.json updated",
        )

    pids = children_of(proc.pid)
    assert len(pids) == 4  # registry + 3 instances
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    assert not (project / ".cairn" / "run.json").exists()
    assert not [p for p in pids if alive(p)]
    assert not in_groups(pids)  # nothing they started either
    output = (project / "up.out").read_text()
    assert "all 3 instances passing" in output
    assert "cairn up: stopped" in output
    assert (project / ".cairn" / "logs" / "alpha-1.log").read_text().count(
        "registered alpha-1"
    ) == 2


def test_up_child_failing_at_start(
    project: Path, up: Callable[..., subprocess.Popen[bytes]]
) -> None:
    (project / "broken.py").write_text("raise RuntimeError('the database is on fire')\n")
    manifest = project / "broken.toml"
    manifest.write_text(
        '[registry]\nport = 0\n[services.ok]\napp = "alpha:app"\n'
        '[services.bad]\napp = "broken:app"\ndepends_on = ["ok"]\n'
    )
    proc = up("--no-status", "--no-collector", "--no-dashboard", manifest=manifest)
    assert proc.wait(60) == 1
    output = (project / "up.out").read_text()
    assert "bad-1 exited with status 2 while starting" in output
    assert "the database is on fire" in output  # the child's last log lines
    assert "full log:" in output
    assert not (project / ".cairn" / "run.json").exists()
    # the instance that did start was stopped
    assert "registered ok-1" in (project / ".cairn" / "logs" / "ok-1.log").read_text()
    assert "Finished server process" in (project / ".cairn" / "logs" / "ok-1.log").read_text()


def test_up_port_in_use(project: Path, up: Callable[..., subprocess.Popen[bytes]]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = up("--no-status", "--no-collector", "--no-dashboard", "--registry-port", str(port))
        assert proc.wait(30) == 1
    output = (project / "up.out").read_text()
    assert f"port {port} for the registry is in use" in output
    assert "--registry-port 0" in output


def test_up_bad_manifest(project: Path, up: Callable[..., subprocess.Popen[bytes]]) -> None:
    manifest = project / "typo.toml"
    manifest.write_text('[services.a]\napp = "alpha:app"\nreplica = 2\n')
    proc = up(manifest=manifest)
    assert proc.wait(30) == 1
    output = (project / "up.out").read_text()
    assert "typo.toml:3: unknown key `replica` in [services.a]" in output


def test_children_stop_when_up_is_killed(
    project: Path, up: Callable[..., subprocess.Popen[bytes]]
) -> None:
    manifest = project / "one.toml"
    manifest.write_text(
        '[registry]\nport = 0\n[services.alpha]\napp = "alpha:app"\nenv = { ALPHA_GREETING = "x" }\n'
    )
    proc = up("--no-status", "--no-collector", "--no-dashboard", manifest=manifest)
    wait_for(lambda: read_run(project), "run.json")
    pids = children_of(proc.pid)
    assert len(pids) == 2
    proc.kill()  # no chance to stop anything: the children notice and stop themselves
    proc.wait()
    wait_for(lambda: not [p for p in pids if alive(p)], "orphaned children to stop", timeout=20)
    assert not in_groups(pids)


def test_on_a_terminal_the_status_is_a_live_table(project: Path) -> None:
    # stdout a terminal (a pseudo-terminal here): the screen is redrawn each second
    # with every instance's health, address, rate and breakers, and Ctrl-C stops all.
    master, terminal = pty.openpty()
    proc = subprocess.Popen(
        [*cairn_argv(), "up", str(project / "cairn.toml"), "--no-dashboard"],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        cwd=project,
    )
    os.close(terminal)
    screen = bytearray()

    def drain() -> None:
        while select.select([master], [], [], 0.05)[0]:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every writer has closed the terminal
                return
            if not chunk:
                return
            screen.extend(chunk)

    def frames() -> list[str]:
        drain()
        return screen.decode(errors="replace").split("\x1b[H\x1b[2J")[1:]

    def all_passing() -> str | None:
        drawn = frames()
        if len(drawn) < 2 or "INSTANCE" not in drawn[-2]:
            return None
        frame = drawn[-2]  # the last whole one
        lines = {line.split()[0]: line for line in frame.splitlines() if line.strip()}
        ids = ("alpha-1", "alpha-2", "beta-1")
        if not all(i in lines and "\x1b[32mpassing\x1b[0m" in lines[i] for i in ids):
            return None
        return frame

    try:
        frame = wait_for(all_passing, "a redrawn table with every instance passing", 60)
        header = next(line for line in frame.splitlines() if line.startswith("INSTANCE"))
        assert tuple(header.split()) == HEADER  # the names are pinned in test_supervisor.py
        assert frame.startswith("cairn up — two")
        assert re.search(r"alpha-1\s+\S*passing\S*\s+127\.0\.0\.1:\d+\s+\d+\s+0", frame)
        redraws = len(frames())
        wait_for(lambda: len(frames()) > redraws, "another redraw")
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            drain()
        assert proc.wait(1) == 0
        drain()
        assert "cairn up: stopped" in screen.decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


def start_legacy(
    project: Path, up: Callable[..., subprocess.Popen[bytes]]
) -> tuple[subprocess.Popen[bytes], dict[str, Any], set[int]]:
    """`cairn up` with one `command` service; returns once its whole group runs."""
    # Not a Python app cairn runs: a program of its own, which starts a helper.
    manifest = project / "legacy.toml"
    manifest.write_text(
        '[registry]\nport = 0\n[services.legacy]\ncommand = ["python", "legacy.py"]\n'
    )
    proc = up("--no-status", "--no-collector", "--no-dashboard", manifest=manifest)
    run = wait_for(lambda: read_run(project), "run.json")
    command = run["instances"][0]["pid"]

    def whole_group() -> set[int] | None:
        found = in_groups({command})
        return found if len(found) >= 3 else None

    group = wait_for(whole_group, "the command, its helper and the guard's watcher")
    return proc, run, group


def test_a_command_service_stops_when_up_is_killed(
    project: Path, up: Callable[..., subprocess.Popen[bytes]]
) -> None:
    proc, run, group = start_legacy(project, up)
    (legacy,) = run["instances"]
    assert legacy["health"] == "passing"
    command = legacy["pid"]
    # The guard exec-ed the command: cairn up's child is the program itself.
    assert b"legacy.py" in Path(f"/proc/{command}/cmdline").read_bytes()
    with httpx.Client(timeout=5.0, trust_env=False) as http:
        assert http.get(legacy["url"]).text == "legacy"
    assert command in group  # with its helper and the guard's watcher
    proc.kill()  # no chance to stop anything: the watcher stops the group
    proc.wait()
    # Every process of the group (the command, its helper, the watcher) is gone.
    wait_for(lambda: not in_groups({command}), "the command's group to stop", timeout=20)


def test_the_guard_says_what_it_could_not_run(capsys: pytest.CaptureFixture[str]) -> None:
    from cairn.platform._guard import main

    assert main([]) == 2
    assert main(["/nonexistent/legacy-server", "--port", "1"]) == 127
    err = capsys.readouterr().err
    assert "usage: python -m cairn.platform._guard COMMAND" in err
    assert "cannot run '/nonexistent/legacy-server': No such file or directory" in err


def test_a_command_service_stops_with_up(
    project: Path, up: Callable[..., subprocess.Popen[bytes]]
) -> None:
    proc, run, _ = start_legacy(project, up)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    assert not in_groups({run["instances"][0]["pid"]})  # the command's group, watcher included
    assert "legacy on" in (project / ".cairn" / "logs" / "legacy-1.log").read_text()
