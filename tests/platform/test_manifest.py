"""cairn.toml: parsed strictly, with errors that name the file, the line and the fix."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cairn.platform import ManifestError, NoRunError, RunState, find_run, load_manifest
from cairn.platform._state import InstanceRecord, remove_run, run_path, write_run

FIXTURE = Path(__file__).parent / "fixtures" / "two" / "cairn.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cairn.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_fixture_manifest() -> None:
    manifest = load_manifest(FIXTURE)
    assert manifest.name == "two"
    assert manifest.registry_port == 0
    assert manifest.collector.port == 0
    assert manifest.collector.data == FIXTURE.parent / ".cairn" / "collector"
    alpha, beta = manifest.services["alpha"], manifest.services["beta"]
    assert alpha.app == "alpha:app"
    assert alpha.replicas == 2
    assert alpha.instance_ids() == ["alpha-1", "alpha-2"]
    assert alpha.env == {"ALPHA_GREETING": "hello from alpha"}
    assert alpha.restart == "on-failure"
    assert beta.depends_on == ("alpha",)
    assert beta.restart == "always"
    assert [[s.name for s in level] for level in manifest.levels()] == [["alpha"], ["beta"]]


def test_folder_and_defaults(tmp_path: Path) -> None:
    write(tmp_path, '[services.web]\ncommand = ["python", "-m", "web"]\n')
    manifest = load_manifest(tmp_path)  # a folder means its cairn.toml
    assert manifest.name == tmp_path.name
    assert (manifest.registry_port, manifest.collector.port, manifest.dashboard_port) == (
        8500,
        4318,
        18888,
    )
    assert manifest.services["web"].command == ("python", "-m", "web")
    assert manifest.services["web"].app is None


def test_levels_diamond(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[services.d]
app = "d:app"
depends_on = ["b", "c"]
[services.b]
app = "b:app"
depends_on = ["a"]
[services.c]
app = "c:app"
depends_on = ["a"]
[services.a]
app = "a:app"
""",
    )
    levels = load_manifest(path).levels()
    assert [sorted(s.name for s in level) for level in levels] == [["a"], ["b", "c"], ["d"]]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"no manifest here: create a cairn.toml") as info:
        load_manifest(tmp_path / "nope.toml")
    assert info.value.path == tmp_path / "nope.toml"


def test_unknown_top_level_key_names_line(tmp_path: Path) -> None:
    path = write(tmp_path, 'name = "x"\n\nservces = 3\n')
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    message = str(info.value)
    assert "unknown key `servces` at the top level" in message
    assert f"{path}:3:" in message
    assert info.value.line == 3


def test_unknown_service_key_names_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[services.a]\napp = "a:app"\n\n[services.b]\napp = "b:app"\nreplica = 2\n',
    )
    with pytest.raises(
        ManifestError, match=r"cairn.toml:6: unknown key `replica` in \[services.b\]"
    ):
        load_manifest(path)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('app = "inventory"', r'app must be "module:attribute"'),
        ('app = "inventory:"', r'app must be "module:attribute"'),
        ('app = "a b:app"', r'app must be "module:attribute"'),
        ('app = "a:app"\ncommand = ["x"]', r"exactly one of"),
        ("replicas = 2", r"exactly one of"),
        ("command = []", r"command must be a non-empty list"),
        ('app = "a:app"\nreplicas = 0', r"replicas must be an integer from 1 to 64"),
        ('app = "a:app"\nreplicas = true', r"replicas must be an integer"),
        ('app = "a:app"\nrestart = "sometimes"', r"restart must be one of 'no', 'on-failure'"),
        ('app = "a:app"\nenv = { A = 1 }', r"env must be a table of strings"),
        ('app = "a:app"\ndepends_on = "b"', r"depends_on must be a list"),
        ('app = "a:app"\ndepends_on = ["ghost"]', r"depends_on names 'ghost'"),
        ('app = "a:app"\ndepends_on = ["a"]', r"depends on itself"),
        ('app = "a:app"\nttl = 0', r"ttl must be seconds"),
    ],
)
def test_bad_service(tmp_path: Path, body: str, expected: str) -> None:
    path = write(tmp_path, f"[services.a]\n{body}\n")
    with pytest.raises(ManifestError, match=expected):
        load_manifest(path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[registry]\nport = 70000\n", r"\[registry\] port must be an integer from 0"),
        ("[dashboard]\nhost = 'x'\n", r"unknown key `host` in \[dashboard\]"),
        ("[collector]\ndata = ''\n", r"\[collector\] data must be a folder path"),
        ("registry = 3\n", r"`registry` must be a table"),
        ("name = = 3\n", r"not valid TOML"),
        ('[services."bad name"]\napp = "a:app"\n', r"service name 'bad name'"),
    ],
)
def test_bad_tables(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ManifestError, match=expected):
        load_manifest(write(tmp_path, text))


def test_cycle_is_named(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[services.a]
app = "a:app"
depends_on = ["b"]
[services.b]
app = "b:app"
depends_on = ["c"]
[services.c]
app = "c:app"
depends_on = ["a"]
""",
    )
    with pytest.raises(ManifestError, match=r"cycle: a -> b -> c -> a; remove one"):
        load_manifest(path)


def test_run_file_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = RunState(
        pid=os.getpid(),
        manifest=str(tmp_path / "cairn.toml"),
        started_at="2024-01-01T00:00:00+00:00",
        control="http://127.0.0.1:1",
        token="ab" * 16,
        registry="http://127.0.0.1:2",
        collector=None,
        dashboard=None,
        instances=[InstanceRecord("a", "a-1", 123, "http://127.0.0.1:3", "running", "passing")],
    )
    path = run_path(tmp_path)
    write_run(path, state)
    assert path.stat().st_mode & 0o777 == 0o600
    assert json.loads(path.read_text())["instances"][0]["instance_id"] == "a-1"
    assert find_run(tmp_path / "cairn.toml") == state
    nested = tmp_path / "src" / "deep"
    nested.mkdir(parents=True)
    monkeypatch.chdir(nested)
    assert find_run() == state  # found in a parent folder
    assert state.instance("a-1").pid == 123
    with pytest.raises(KeyError, match=r"no instance 'zzz' in this run \(instances: a-1\)"):
        state.instance("zzz")
    assert state.headers == {"Authorization": f"Bearer {'ab' * 16}"}
    remove_run(path)
    with pytest.raises(NoRunError, match=r"no `cairn up` running here; start one with `cairn up`"):
        find_run(tmp_path)


def test_stale_run_file(tmp_path: Path) -> None:
    path = run_path(tmp_path)
    path.parent.mkdir()
    data = {
        "pid": 2**22 + 12345,  # above pid_max's default: never a live process
        "manifest": "x",
        "started_at": "x",
        "control": "x",
        "token": "x",
        "registry": "x",
        "collector": None,
        "dashboard": None,
        "instances": [],
    }
    path.write_text(json.dumps(data))
    with pytest.raises(NoRunError, match=r"which is gone; delete the file"):
        find_run(tmp_path)
    path.write_text("{")
    with pytest.raises(NoRunError, match=r"cannot be read"):
        find_run(tmp_path)


def _state(folder: Path) -> RunState:
    return RunState(
        pid=os.getpid(),
        manifest=str(folder / "cairn.toml"),
        started_at="2024-01-01T00:00:00+00:00",
        control="http://127.0.0.1:1",
        token="cd" * 16,
        registry="http://127.0.0.1:2",
        collector=None,
        dashboard=None,
    )


def test_a_run_started_elsewhere_is_found_through_its_pointer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = tmp_path / "runs"
    monkeypatch.setenv("CAIRN_RUNS_DIR", str(runs))
    shop = tmp_path / "examples" / "shop"
    shop.mkdir(parents=True)
    elsewhere = tmp_path / "repo-root"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    state = _state(shop)
    write_run(run_path(shop), state)
    assert (runs / f"{os.getpid()}.path").read_text() == str(run_path(shop))
    assert find_run() == state  # not in cwd or its parents: the pointer leads there

    # A pointer of a dead process is dropped; a second live run makes it ambiguous.
    dead = runs / f"{2**22 + 777}.path"
    dead.write_text(str(run_path(shop)))
    assert find_run() == state
    assert not dead.exists()
    other = tmp_path / "other"
    other.mkdir()
    run_path(other).parent.mkdir()
    run_path(other).write_text(json.dumps(_state(other).to_json()))
    (runs / f"{os.getppid()}.path").write_text(str(run_path(other)))
    with pytest.raises(NoRunError, match=r"several `cairn up` runs are live .*--run-file"):
        find_run()

    remove_run(run_path(shop))
    assert not (runs / f"{os.getpid()}.path").exists()
    assert find_run() == _state(other)  # the one left
