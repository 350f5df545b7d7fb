"""`cairn demo` (what `make run` runs) and the CLI around it."""

from __future__ import annotations

import re

from click.testing import CliRunner

from cairn import __version__
from cairn._cli import main
from cairn._demo import run_demo
from cairn.testing import virtual_time


def _plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def test_demo_shows_retries_then_the_breaker_cycle_in_order() -> None:
    with virtual_time():
        result = CliRunner().invoke(main, ["demo", "--policies", "--recovery-timeout", "2"])
    assert result.exit_code == 0, result.output
    out = _plain(result.output)
    transitions = re.findall(r"breaker  (\w+) → (\w+)", out)
    assert transitions == [("CLOSED", "OPEN"), ("OPEN", "HALF_OPEN"), ("HALF_OPEN", "CLOSED")]
    assert out.index("retry    attempt 1 failed") < out.index("CLOSED → OPEN")
    assert "rejected a call without running it" in out
    assert "waiting 2s for the breaker's recovery timeout" in out


def test_demo_outcomes_add_up_and_the_breaker_shields_the_dependency() -> None:
    lines: list[str] = []
    with virtual_time() as clock:
        totals = run_demo(seed=3, recovery_timeout=5, pause=0.01, echo=lines.append)
    assert sum(totals.values()) == 110
    # Phase 3 is a full outage: the breaker must have refused most of it.
    assert totals["rejected"] >= 20
    # Healthy and recovered phases succeed entirely: at least their 40 calls.
    assert totals["ok"] >= 40
    assert clock.monotonic() >= 5 + 110 * 0.01
    down = next(line for line in lines if line.startswith("  → 30 calls"))
    seen = int(re.search(r"the dependency saw (\d+) requests", down).group(1))  # type: ignore[union-attr]
    assert seen < 30, "an open breaker must keep traffic off a dead dependency"


def test_version_and_help() -> None:
    runner = CliRunner()
    assert __version__ in runner.invoke(main, ["--version"]).output
    help_text = runner.invoke(main, ["--help"]).output
    assert "demo" in help_text


def test_bad_option_is_a_clear_usage_error() -> None:
    result = CliRunner().invoke(main, ["demo", "--policies", "--recovery-timeout", "-1"])
    assert result.exit_code == 2
    assert "recovery-timeout" in result.output
