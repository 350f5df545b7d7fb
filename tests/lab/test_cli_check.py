"""``cairn lab check``: verdicts as exit codes, human and JSON output, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cairn.lab import Op, random_history, write_jsonl
from cairn.lab._cli import EXIT_BAD_INPUT, lab


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def write(tmp_path: Path, ops: list[Op], name: str = "h.jsonl") -> Path:
    path = tmp_path / name
    write_jsonl(ops, path)
    return path


GOOD = [Op.invoke(0, "write", 1, key="x"), Op.ok(0, "write", 1, key="x")]
GOOD += [Op.invoke(1, "read", key="x"), Op.ok(1, "read", 1, key="x")]
BAD = [*GOOD[:2], Op.invoke(1, "read", key="x"), Op.ok(1, "read", 2, key="x")]


def test_linearizable_exits_0(runner: CliRunner, tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    result = runner.invoke(lab, ["check", str(path)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"{path}: linearizable (2 operations, 1 key, register model")


def test_not_linearizable_exits_1_and_explains(runner: CliRunner, tmp_path: Path) -> None:
    path = write(tmp_path, BAD)
    result = runner.invoke(lab, ["check", str(path)])
    assert result.exit_code == 1
    assert "NOT linearizable" in result.output
    assert 'Operations of key "x" that cannot be linearized' in result.output
    assert "process 1: read -> 2  (lines 3-4): impossible in state 1" in result.output


def test_json_output(runner: CliRunner, tmp_path: Path) -> None:
    path = write(tmp_path, BAD)
    result = runner.invoke(lab, ["check", "--json", str(path)])
    assert result.exit_code == 1
    data = json.loads(result.output)
    assert data["history"] == str(path)
    assert data["verdict"] == "not_linearizable"
    assert data["model"] == "register"
    assert data["keys"][0]["violation"]["blocker"]["output"] == 2


def test_unknown_exits_2(runner: CliRunner, tmp_path: Path) -> None:
    # Appends by many clients on one key: far more than a millisecond of search.
    hard = random_history(operations=3000, clients=10, model="kv", seed=1)
    path = write(tmp_path, list(hard))
    result = runner.invoke(lab, ["check", "--timeout", "1ms", "--json", str(path)])
    assert result.exit_code == 2, result.output
    assert json.loads(result.output)["verdict"] == "unknown"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--timeout", "0"], "'0' is not a positive duration"),
        (["--timeout", "soon"], "'soon' is not a positive duration"),
        (["--model", "queue"], "Invalid value for '--model'"),
        (["--initial", "{bad"], "Invalid value for '--initial'"),
        (["--no-such-option"], "No such option"),
    ],
)
def test_usage_errors_exit_3(
    runner: CliRunner, tmp_path: Path, args: list[str], message: str
) -> None:
    path = write(tmp_path, GOOD)
    result = runner.invoke(lab, ["check", *args, str(path)])
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    assert message in result.output


def test_missing_argument_exits_3(runner: CliRunner) -> None:
    result = runner.invoke(lab, ["check"])
    assert result.exit_code == EXIT_BAD_INPUT
    assert "Missing argument 'HISTORY'" in result.output


def test_missing_file_exits_3(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(lab, ["check", str(tmp_path / "absent.jsonl")])
    assert result.exit_code == EXIT_BAD_INPUT
    assert "cannot read" in result.output
    assert "No such file" in result.output


def test_malformed_history_exits_3_with_line(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "broken.jsonl"
    path.write_text('{"process":0,"type":"invoke","f":"read"}\n{"process":0,\n', encoding="utf-8")
    result = runner.invoke(lab, ["check", str(path)])
    assert result.exit_code == EXIT_BAD_INPUT
    assert f"error: {path}:2: bad jsonl event: invalid JSON" in result.output


def test_model_that_lacks_an_operation_exits_3(runner: CliRunner, tmp_path: Path) -> None:
    path = write(tmp_path, [Op.invoke(0, "cas", [1, 2]), Op.ok(0, "cas", [1, 2])])
    result = runner.invoke(lab, ["check", "--model", "register", str(path)])
    assert result.exit_code == EXIT_BAD_INPUT
    assert "the register model has no operation 'cas'" in result.output


def test_model_and_initial_options(runner: CliRunner, tmp_path: Path) -> None:
    # A read of 5 before any write: only right if every key starts at 5.
    path = write(tmp_path, [Op.invoke(0, "read", key="k"), Op.ok(0, "read", 5, key="k")])
    assert runner.invoke(lab, ["check", str(path)]).exit_code == 1
    assert runner.invoke(lab, ["check", "--initial", "5", str(path)]).exit_code == 0
    kv = runner.invoke(lab, ["check", "--model", "kv", "--initial", "5", "--json", str(path)])
    assert kv.exit_code == 0
    assert json.loads(kv.output)["model"] == "kv"
    default_kv = runner.invoke(lab, ["check", "--model", "kv", str(path)])
    assert default_kv.exit_code == 1


def test_format_option_and_stdin(runner: CliRunner) -> None:
    text = "INFO  jepsen.util - 0\t:invoke\t:cas\t[1 2]\nINFO  jepsen.util - 0\t:ok\t:cas\t[1 2]\n"
    result = runner.invoke(lab, ["check", "--format", "jepsen-log", "-"], input=text)
    assert result.exit_code == 1, result.output
    assert "cas-register model" in result.output
    wrong = runner.invoke(lab, ["check", "--format", "edn", "-"], input=text)
    assert wrong.exit_code == EXIT_BAD_INPUT


def test_timeout_none_means_no_limit(runner: CliRunner, tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    assert runner.invoke(lab, ["check", "--timeout", "none", str(path)]).exit_code == 0
    assert runner.invoke(lab, ["check", "--timeout", "1.5m", str(path)]).exit_code == 0


def test_help_documents_exit_codes(runner: CliRunner) -> None:
    result = runner.invoke(lab, ["check", "--help"])
    assert result.exit_code == 0
    for line in ("0  linearizable", "1  not linearizable", "2  unknown", "3  bad input"):
        assert line in result.output


def test_shared_history(runner: CliRunner, porcupine: Path) -> None:
    result = runner.invoke(lab, ["check", str(porcupine / "jepsen-etcd" / "etcd_000.log")])
    assert result.exit_code == 1
    assert "cas-register model" in result.output
    ok = runner.invoke(lab, ["check", str(porcupine / "kv" / "c10-ok.txt")])
    assert ok.exit_code == 0
    assert "kv model" in ok.output
