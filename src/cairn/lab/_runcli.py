"""``cairn lab run`` and ``cairn lab compare``: experiments from the command line.

Both exit, as ``cairn lab check`` does, with 0 when the store kept its
promise (cp, ca, etcd: the history is linearizable; ap: the replicas
converged after the heal), 1 when it broke it, 2 when the checker ran out
of time, and 3 for bad options or an experiment that could not start (e.g.
no ``etcd`` program). An interrupted run tears its cluster down and exits
130.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import tempfile
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click

from cairn.lab._cli import EXIT_BAD_INPUT, _BadUsage, _CheckCommand
from cairn.lab._errors import LabError
from cairn.lab._nemesis import NEMESES
from cairn.lab._report import upheld, verdict_table, write_report
from cairn.lab._run import ENGINES, MODES, RunConfig, RunResult, run_experiment
from cairn.lab._workload import Workload

__all__ = ["compare_command", "run_command"]

T = TypeVar("T")
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m)?")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0}


def _seconds(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    m = _DURATION.fullmatch(value.strip().lower())
    seconds = float(m[1]) * _UNITS[m[2] or "s"] if m else 0.0
    if not seconds > 0:
        raise click.BadParameter(f"{value!r} is not a positive duration (e.g. 20s, 500ms, 2m)")
    return seconds


def _exit_code(results: list[RunResult]) -> int:
    kept = [upheld(r) for r in results]
    if any(k is False for k in kept):
        return 1
    if any(k is None for k in kept):
        return 2
    return 0


def _run_async(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main``; SIGTERM cancels it like Ctrl-C, so its clean-up runs."""

    async def guarded() -> T:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
        try:
            return await main
        finally:
            loop.remove_signal_handler(signal.SIGTERM)

    return asyncio.run(guarded())


def _options(f: Any) -> Any:
    options = [
        click.option(
            "--engine",
            type=click.Choice(ENGINES),
            default="store",
            show_default=True,
            help="The lab's own store, or a real 3-node etcd cluster.",
        ),
        click.option(
            "--nemesis",
            type=click.Choice(NEMESES),
            default="partition-halves",
            show_default=True,
            help="The faults to inject.",
        ),
        click.option(
            "--duration",
            default="10s",
            callback=_seconds,
            show_default=True,
            help="How long the clients run (20s, 500ms, 2m).",
        ),
        click.option(
            "--interval",
            default=None,
            callback=_seconds,
            help="Length of each calm and fault window [default: a quarter of the duration].",
        ),
        click.option("--nodes", type=click.IntRange(3, 9), default=3, show_default=True),
        click.option("--clients", type=click.IntRange(1, 100), default=5, show_default=True),
        click.option("--keys", type=click.IntRange(1, 100), default=3, show_default=True),
        click.option(
            "--rate",
            type=click.FloatRange(0.1, 10_000),
            default=50.0,
            show_default=True,
            help="Operations per second, all clients together.",
        ),
        click.option(
            "--seed",
            type=int,
            default=0,
            show_default=True,
            help="Seed of the faults and the load.",
        ),
        click.option(
            "--check-timeout",
            default="10s",
            callback=_seconds,
            show_default=True,
            help="Give the checker this long before answering 'unknown'.",
        ),
        click.option(
            "--out",
            type=click.Path(file_okay=False, path_type=Path),
            default=Path("lab-report"),
            show_default=True,
            help="Where report.html, the timeline PNG and the history go.",
        ),
        click.option(
            "--json", "as_json", is_flag=True, help="Print verdicts and measures as JSON."
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _configs(modes: list[str], kw: dict[str, Any]) -> list[RunConfig]:
    workload = Workload(clients=kw["clients"], keys=kw["keys"], rate=kw["rate"], seed=kw["seed"])
    return [
        RunConfig(
            mode=mode,
            engine=kw["engine"] if mode != "etcd" else "etcd",
            nemesis=kw["nemesis"],
            duration=kw["duration"],
            interval=kw["interval"],
            nodes=kw["nodes"],
            workload=workload,
            seed=kw["seed"],
            check_timeout=kw["check_timeout"],
            r=kw.get("r", 1),
            w=kw.get("w", 1),
        )
        for mode in modes
    ]


def _execute(configs: list[RunConfig], out: Path, as_json: bool) -> None:
    ctx = click.get_current_context()

    async def all_runs() -> list[RunResult]:
        results = []
        for config in configs:
            with tempfile.TemporaryDirectory(prefix=f"cairn-lab-{config.label}-") as data:
                results.append(await run_experiment(config, data=Path(data)))
        return results

    try:
        results = _run_async(all_runs())
    except (LabError, OSError) as e:
        click.echo(f"error: {e}", err=True)
        ctx.exit(EXIT_BAD_INPUT)
    except (KeyboardInterrupt, asyncio.CancelledError):
        click.echo("interrupted; the cluster was torn down", err=True)
        ctx.exit(130)
    files = write_report(results, out)
    if as_json:
        payload: Any = [r.to_dict() for r in results]
        click.echo(json.dumps(payload[0] if len(payload) == 1 else payload, indent=2))
    else:
        click.echo(verdict_table(results))
        for r in results:
            if not r.check.linearizable and r.config.label != "ap":
                click.echo(f"\n{r.config.label}: {r.check.report()}")
        click.echo(f"\nreport: {files['report.html']}")
    ctx.exit(_exit_code(results))


@click.command(name="run", cls=_CheckCommand)
@click.option(
    "--mode",
    type=click.Choice(MODES),
    default="cp",
    show_default=True,
    help="cp: quorum (CASPaxos); ap: last-writer-wins; ca: one node; "
    "cp-local-reads: cp with a deliberate bug.",
)
@click.option(
    "-r",
    "r",
    type=click.IntRange(1, 9),
    default=1,
    show_default=True,
    help="ap: replicas a read asks.",
)
@click.option(
    "-w",
    "w",
    type=click.IntRange(1, 9),
    default=1,
    show_default=True,
    help="ap: replicas a write waits for.",
)
@_options
def run_command(mode: str, out: Path, as_json: bool, **kw: Any) -> None:
    """Run the workload against a replicated store under faults, then check and measure it.

    Prints a verdict table and writes report.html, timeline.png and
    history.jsonl to --out.

    \b
    Exit status:
      0  the store kept its promise (linearizable; ap: converged)
      1  it did not
      2  unknown (the checker's time limit was hit)
      3  bad options, or the experiment could not start
    """
    if kw["engine"] == "etcd":
        mode = "etcd"
    try:
        configs = _configs([mode], kw)
    except ValueError as e:
        raise _BadUsage(str(e)) from e
    _execute(configs, out, as_json)


@click.command(name="compare", cls=_CheckCommand)
@_options
def compare_command(out: Path, as_json: bool, **kw: Any) -> None:
    """Run cp and ap (and etcd with --engine etcd) side by side on the same fault schedule.

    Exits 0 when every store kept its promise, 1 when one did not, 2 when
    the checker could not tell, 3 for bad options.
    """
    modes = ["cp", "ap", *(["etcd"] if kw["engine"] == "etcd" else [])]
    kw["engine"] = "store"
    try:
        configs = _configs(modes, kw)
    except ValueError as e:
        raise _BadUsage(str(e)) from e
    _execute(configs, out, as_json)
