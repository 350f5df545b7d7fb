"""The ``cairn`` command group: lazy sub-commands, ``python -m cairn``."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from cairn._cli import _LAZY, main


def test_help_lists_every_installed_command_with_its_summary() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0, result.output
    for name in ("demo", "lab", "registry"):
        assert f"  {name} " in result.output
    assert _LAZY["registry"][2] in result.output


def test_lazy_command_runs_and_lab_keeps_its_sub_commands() -> None:
    result = CliRunner().invoke(main, ["lab", "--help"])
    assert result.exit_code == 0, result.output
    for sub in ("check", "run", "compare"):
        assert f"  {sub} " in result.output


def test_unknown_command_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["no-such-command"])
    assert result.exit_code == 2
    assert "No such command 'no-such-command'" in result.output


def test_python_dash_m_cairn_is_the_same_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cairn", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("cairn, version ")
