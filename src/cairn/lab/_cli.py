"""``cairn lab``: the consistency lab's commands.

``cairn lab check HISTORY`` exits with:

- 0: linearizable;
- 1: not linearizable;
- 2: unknown (the time limit was hit first);
- 3: bad input: the file cannot be read or is not a history, or the command
  line is wrong (click's usual exit code 2 would read as "unknown").
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, NoReturn

import click

from cairn.lab._checker import Verdict, check
from cairn.lab._errors import HistoryError
from cairn.lab._formats import HistoryFormat, read_history
from cairn.lab._history import Value, freeze
from cairn.lab._models import MODELS, Model, choose_model, model_named

__all__ = ["EXIT_BAD_INPUT", "EXIT_CODES", "lab"]

EXIT_CODES = {Verdict.LINEARIZABLE: 0, Verdict.NOT_LINEARIZABLE: 1, Verdict.UNKNOWN: 2}
EXIT_BAD_INPUT = 3

_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def _duration(ctx: click.Context, param: click.Parameter, value: str) -> float | None:
    text = value.strip().lower()
    if text in ("none", "off"):
        return None
    m = _DURATION.fullmatch(text)
    seconds = float(m[1]) * _UNITS[m[2] or "s"] if m else 0.0
    if not seconds > 0:
        raise click.BadParameter(
            f"{value!r} is not a positive duration (e.g. 10s, 500ms, 2m, or 'none')"
        )
    return seconds


class _BadUsage(click.UsageError):
    exit_code = EXIT_BAD_INPUT


class _CheckCommand(click.Command):
    """Makes usage errors exit 3 (bad input): click's 2 means "unknown" here."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as e:
            raise _BadUsage(e.format_message(), e.ctx) from e


@click.group(name="lab")
def lab() -> None:
    """The consistency lab: run CP/AP experiments under partitions, check histories."""


@lab.command(name="check", cls=_CheckCommand)
@click.argument("history", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@click.option(
    "--model",
    "model_name",
    type=click.Choice(sorted(MODELS)),
    default=None,
    help="Sequential specification [default: from the operations seen: "
    "read/write -> register, with cas -> cas-register, else kv].",
)
@click.option(
    "--format",
    "format_name",
    type=click.Choice(["auto", *(f.value for f in HistoryFormat)]),
    default="auto",
    show_default=True,
    help="History format; auto tells it from the first event.",
)
@click.option(
    "--timeout",
    default="10s",
    metavar="DURATION",
    callback=_duration,
    show_default=True,
    help="Give up with verdict 'unknown' after this long (10s, 500ms, 2m; 'none' for no limit).",
)
@click.option(
    "--initial",
    metavar="JSON",
    default=None,
    help='Initial value of every key, as JSON [default: null; "" for kv].',
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def check_command(
    history: Path,
    model_name: str | None,
    format_name: str,
    timeout: float | None,
    initial: str | None,
    as_json: bool,
) -> None:
    """Check that HISTORY (a file, or - for stdin) is linearizable.

    HISTORY holds one event a line, as cairn's JSON lines, Jepsen EDN maps or
    jepsen.util log lines (told apart automatically). Each key is checked on
    its own.

    \b
    Exit status:
      0  linearizable
      1  not linearizable
      2  unknown (the time limit was hit first)
      3  bad input (unreadable or malformed history, or bad options)
    """
    ctx = click.get_current_context()
    start: dict[str, Value] = {} if initial is None else {"initial": _parse_initial(initial)}
    try:
        hist = read_history(history, format=None if format_name == "auto" else format_name)
        model: Model = model_named(model_name or choose_model(hist.fs()).name, **start)
        result = check(hist, model, timeout=timeout)
    except HistoryError as e:
        _bad_input(str(e))
    except OSError as e:
        _bad_input(f"cannot read {history}: {e.strerror or e}")
    if as_json:
        click.echo(json.dumps({"history": str(history), **result.to_dict()}, indent=2))
    else:
        click.echo(f"{history}: {result.report()}")
    ctx.exit(EXIT_CODES[result.verdict])


def _parse_initial(text: str) -> Value:
    try:
        return freeze(json.loads(text))
    except (ValueError, TypeError) as e:
        raise _BadUsage(f"Invalid value for '--initial': {text!r} is not JSON ({e})") from None


def _bad_input(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    click.get_current_context().exit(EXIT_BAD_INPUT)
