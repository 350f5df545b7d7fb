"""``cairn up``: run every service of a manifest, supervised, until Ctrl-C."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import click

from cairn.platform._errors import ManifestError, StartupError
from cairn.platform._manifest import load_manifest
from cairn.platform._status import MetricsReader, render_table, rows
from cairn.platform._supervisor import Supervisor

__all__ = ["up_command"]

_PORT = click.IntRange(0, 65535)
# SIGHUP too: a closed terminal should stop the children as Ctrl-C does.
_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _say(text: str, *, err: bool = False) -> None:
    # The terminal may be gone (SIGHUP): the stop must go on regardless.
    with contextlib.suppress(OSError):
        click.echo(text, err=err)


def _stamp(text: str) -> str:
    return f"{time.strftime('%H:%M:%S')} {text}"


def _urls(sup: Supervisor) -> list[str]:
    lines = [f"registry   {sup.registry_url}"]
    if sup.collector_url:
        lines.append(f"collector  {sup.collector_url}")
    if sup.dashboard_url:
        lines.append(f"dashboard  {sup.dashboard_url}")
    lines.append(f"control    {sup.control_url}  (token in {sup.run_file})")
    lines.append(f"logs       {sup.log_dir}")
    if sup.collector_url:
        lines.append(
            "try        cairn traces · cairn trace ID · cairn logs 'level:error' · cairn metrics"
        )
    lines.append("           cairn chaos kill|latency|errors|restore … · cairn load --rate 20/s")
    return lines


async def _live(sup: Supervisor, recent: collections.deque[str]) -> None:
    import httpx

    async with httpx.AsyncClient(timeout=1.0, trust_env=False) as http:
        metrics = MetricsReader(http, sup.collector_url)
        while True:
            rates, breakers = await metrics.rates(), await metrics.breakers()
            table = render_table(rows(sup.snapshot(), rates, breakers), color=True)
            head = f"cairn up — {sup.manifest.name}   (Ctrl-C to stop)"
            screen = [head, *_urls(sup), "", table, "", *recent]
            with contextlib.suppress(OSError):
                sys.stdout.write("\x1b[H\x1b[2J" + "\n".join(screen) + "\n")
                sys.stdout.flush()
            await asyncio.sleep(1.0)


async def _traffic(
    sup: Supervisor, rate: float, target: str, notify: Callable[[str], None]
) -> None:
    """Light traffic against ``target`` until cancelled, in 10 s rounds (instances may move)."""
    from cairn.platform._load import DEFAULT_MIX, parse_mix, run_load

    mix = parse_mix(DEFAULT_MIX)
    while True:
        urls = [
            r.url
            for r in sup.snapshot()
            if r.url and r.state == "running" and target in (r.service, r.instance_id)
        ]
        if not urls:
            notify(f"traffic: no running instance of {target!r}; waiting")
            await asyncio.sleep(2.0)
            continue
        summary = await run_load(urls, mix, rate=rate, duration=10.0, concurrency=8)
        p99 = summary.latency_ms.get("p99", 0.0)
        notify(
            f"traffic: {summary.completed} requests to {target} in 10 s, "
            f"{summary.error_count} errors, p99 {p99:.0f} ms"
        )


async def _run(
    sup: Supervisor,
    *,
    live: bool,
    quiet: bool,
    recent: collections.deque[str],
    traffic: tuple[float, str] | None = None,
    notify: Callable[[str], None] = print,
) -> int:
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if sup.stop_requested:
            click.echo("cairn up: forcing: killing what is left", err=True)
            sup.force()
        else:
            if not quiet:
                click.echo("cairn up: stopping (Ctrl-C again to force)", err=True)
            sup.request_stop()

    for signum in _SIGNALS:
        loop.add_signal_handler(signum, on_signal)
    try:
        try:
            await sup.start()
        except StartupError as exc:
            if sup.stop_requested:
                return 0
            click.echo(f"cairn up: {exc}", err=True)
            return 1
        if not quiet:
            for line in _urls(sup):
                click.echo(line)
            click.echo(f"all {len(sup.snapshot())} instances passing")
        tasks = [loop.create_task(_live(sup, recent))] if live else []
        if traffic is not None:
            rate, target = traffic
            if not quiet:
                click.echo(f"light traffic: {rate:g} requests/s to {target} (cairn load's mix)")
            tasks.append(loop.create_task(_traffic(sup, rate, target, notify)))
        await sup.wait_for_stop()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await sup.stop()
        if not quiet:
            click.echo("cairn up: stopped")
        return 0
    finally:
        await sup.stop()
        for signum in _SIGNALS:
            loop.remove_signal_handler(signum)


@click.command("up")
@click.argument("manifest", required=False, default="cairn.toml", type=click.Path(path_type=Path))
@click.option(
    "--registry-port", type=_PORT, default=None, help="Override [registry] port (0: any)."
)
@click.option(
    "--collector-port", type=_PORT, default=None, help="Override [collector] port (0: any)."
)
@click.option(
    "--dashboard-port", type=_PORT, default=None, help="Override [dashboard] port (0: any)."
)
@click.option("--no-collector", is_flag=True, help="Do not start the collector.")
@click.option("--no-dashboard", is_flag=True, help="Do not start the dashboard.")
@click.option("--no-status", is_flag=True, help="No live table; print state changes as lines.")
@click.option("--verbose", "-v", is_flag=True, help="Print every child's output, prefixed.")
@click.option("--quiet", "-q", is_flag=True, help="Print errors only.")
@click.option(
    "--ready-timeout",
    type=click.FloatRange(1, 600),
    default=30.0,
    show_default=True,
    help="Seconds each step may take to turn ready.",
)
@click.option(
    "--stop-timeout",
    type=click.FloatRange(0.1, 600),
    default=10.0,
    show_default=True,
    help="Seconds a child may take to drain before SIGKILL.",
)
@click.option(
    "--traffic",
    default=None,
    metavar="RATE",
    help="Also send light traffic at RATE (e.g. 5/s) with `cairn load`'s mix.",
)
@click.option(
    "--traffic-target",
    default="orders",
    show_default=True,
    help="Service (or instance) --traffic goes to.",
)
def up_command(
    manifest: Path,
    registry_port: int | None,
    collector_port: int | None,
    dashboard_port: int | None,
    no_collector: bool,
    no_dashboard: bool,
    no_status: bool,
    verbose: bool,
    quiet: bool,
    ready_timeout: float,
    stop_timeout: float,
    traffic: str | None,
    traffic_target: str,
) -> None:
    """Run every service of MANIFEST (default ./cairn.toml), supervised.

    Starts the registry, the collector, the dashboard, then each service in
    dependency order, waits until every instance is passing, and shows a
    live status table (on a terminal). Ctrl-C or SIGTERM stops everything
    in reverse order; a second Ctrl-C kills what is left.
    """
    try:
        parsed = load_manifest(manifest)
    except ManifestError as exc:
        raise click.ClickException(str(exc)) from None
    traffic_plan: tuple[float, str] | None = None
    if traffic is not None:
        from cairn.platform._load import parse_rate

        try:
            traffic_plan = (parse_rate(traffic), traffic_target)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--traffic") from None
        if traffic_target not in parsed.services:
            known = ", ".join(sorted(parsed.services))
            raise click.BadParameter(
                f"{traffic_target!r} is not a service of {manifest} (it has: {known})",
                param_hint="--traffic-target",
            )
    tty = sys.stdout.isatty()
    live = tty and not no_status and not verbose and not quiet
    recent: collections.deque[str] = collections.deque(maxlen=6)

    def notify(text: str) -> None:
        if live:
            recent.append(_stamp(text))
        elif not quiet or text.startswith("warning"):
            _say(_stamp(text), err=quiet)

    def echo(text: str) -> None:
        _say(text)

    sup = Supervisor(
        parsed,
        registry_port=registry_port,
        collector_port=collector_port,
        dashboard_port=dashboard_port,
        collector=not no_collector,
        dashboard=not no_dashboard,
        notify=notify,
        echo=echo if (verbose or not tty) and not quiet else None,
        ready_timeout=ready_timeout,
        stop_timeout=stop_timeout,
    )
    code = asyncio.run(
        _run(sup, live=live, quiet=quiet, recent=recent, traffic=traffic_plan, notify=notify)
    )
    sys.exit(code)
