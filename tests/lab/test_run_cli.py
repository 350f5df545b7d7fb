"""``cairn lab run`` / ``compare``: verdict table, report files, exit codes, no process left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from cairn.lab._runcli import compare_command, run_command

PIL = pytest.importorskip("PIL.Image")


def lab_processes(marker: str) -> list[int]:
    """Pids of live processes whose command line mentions ``marker``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().split()[2]
        except OSError:
            continue
        if marker in cmdline and state != "Z":
            pids.append(int(entry.name))
    return pids


def wait_until(condition: object, *, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.05)  # polling a condition with a deadline
    return bool(condition())  # type: ignore[operator]


def test_run_cp_writes_report_timeline_and_history(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(
        run_command, ["--mode", "cp", "--duration", "1.5s", "--rate", "60", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "linearizable" in result.output
    assert "partition-halves" in result.output
    assert {p.name for p in out.iterdir()} == {"report.html", "timeline.png", "history.jsonl"}
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "<svg" in page
    assert "partition-halves" in page
    with PIL.open(out / "timeline.png") as image:
        assert image.size[0] == 1000
    lines = (out / "history.jsonl").read_text(encoding="utf-8").splitlines()
    assert any('"process":"nemesis"' in line for line in lines)
    assert any('"type":"invoke"' in line for line in lines)


def test_run_json_reports_verdict_and_measures(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        run_command,
        ["--mode", "ap", "--duration", "1.5s", "--rate", "80", "--out", str(tmp_path), "--json"],
    )
    assert result.exit_code == 0, result.output  # ap's promise: it converged
    data = json.loads(result.output)
    assert data["mode"] == "ap"
    assert data["measures"]["converged"] is True
    assert data["measures"]["availability"] == 1.0
    assert data["verdict"] in ("linearizable", "not_linearizable")


def test_run_broken_store_exits_1_with_the_violation(tmp_path: Path) -> None:
    # A stale read needs a client of the isolated node to read after the
    # majority wrote; with 5 clients and two fault windows a loaded machine
    # sometimes served none (the history was then linearizable). Five
    # clients per node and five windows leave no run without one (4-9 seen).
    result = CliRunner().invoke(
        run_command,
        [
            "--mode", "cp-local-reads", "--nemesis", "isolate-one", "--duration", "3s",
            "--interval", "300ms", "--clients", "15", "--rate", "150", "--keys", "1",
            "--seed", "2", "--out", str(tmp_path),
        ],
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "cannot be linearized" in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["--mode", "xx"],
        ["--duration", "soon"],
        ["--nodes", "2"],
        ["--engine", "etcd", "--nemesis", "loss"],
    ],
)
def test_bad_options_exit_3(tmp_path: Path, args: list[str]) -> None:
    result = CliRunner().invoke(run_command, [*args, "--out", str(tmp_path)])
    assert result.exit_code == 3, result.output


def test_compare_runs_cp_and_ap_on_one_schedule(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        compare_command, ["--duration", "1.5s", "--rate", "60", "--out", str(tmp_path), "--json"]
    )
    assert result.exit_code == 0, result.output
    cp, ap = json.loads(result.output)
    assert (cp["mode"], ap["mode"]) == ("cp", "ap")
    assert cp["verdict"] == "linearizable"
    assert {p.name for p in tmp_path.iterdir()} >= {
        "report.html",
        "cp-history.jsonl",
        "ap-history.jsonl",
        "cp-timeline.png",
        "ap-timeline.png",
    }
    # Same seed, same schedule: the fault events carry the same victims.
    faults = []
    for name in ("cp-history.jsonl", "ap-history.jsonl"):
        events = [json.loads(line) for line in (tmp_path / name).read_text().splitlines()]
        faults.append([(e["f"], e["value"]) for e in events if e["process"] == "nemesis"])
    assert faults[0] == faults[1]
    assert faults[0]


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_no_replica_outlives_the_lab(tmp_path: Path, how: signal.Signals) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    code = "from cairn.lab._runcli import run_command; run_command.main()"
    lab = subprocess.Popen(
        [sys.executable, "-c", code, "--duration", "60s", "--out", str(tmp_path / "out")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        assert wait_until(lambda: len(lab_processes(str(tmp_path))) >= 4, timeout=20)
        replicas = [p for p in lab_processes(str(tmp_path)) if p != lab.pid]
        assert len(replicas) == 3
        lab.send_signal(how)
        lab.wait(timeout=20)
        if how is not signal.SIGKILL:
            assert lab.returncode == 130
            assert b"torn down" in (lab.stderr.read() if lab.stderr else b"")
        # Even a killed lab leaves nothing: replicas exit when their stdin closes.
        assert wait_until(lambda: not lab_processes(str(tmp_path)), timeout=10)
    finally:
        if lab.poll() is None:
            lab.kill()
            lab.wait()
        if lab.stderr:
            lab.stderr.close()
