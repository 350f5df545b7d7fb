"""The ``cairn`` command line.

Sub-commands are imported only when they run (or when ``--help`` lists them), so
``cairn registry serve`` does not pay for the lab's imports and a command whose extra
is not installed cannot break the others.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import click

from cairn._version import __version__

__all__ = ["main"]

# name -> (module, attribute, one-line help shown before the module is imported)
_LAZY: dict[str, tuple[str, str, str]] = {
    "up": ("cairn.platform._up_cli", "up_command", "Run every service of a manifest, supervised."),
    "load": (
        "cairn.platform._load_cli",
        "load_command",
        "Send traffic at a rate; print latencies.",
    ),
    "chaos": ("cairn.platform._chaos_cli", "chaos_command", "Kill, slow down or fail instances."),
    "collector": (
        "cairn.collector._serve_cli",
        "collector_command",
        "Receive OTLP traces, logs and metrics; store them.",
    ),
    "logs": ("cairn.collector._query_cli", "logs_command", "Search stored log records."),
    "traces": ("cairn.collector._query_cli", "traces_command", "List stored traces."),
    "trace": ("cairn.collector._query_cli", "trace_command", "Print one trace as a tree."),
    "metrics": (
        "cairn.collector._query_cli",
        "metrics_command",
        "Latest values, rates, quantiles.",
    ),
    "dashboard": ("cairn.dashboard._cli", "dashboard_command", "Serve the web dashboard."),
    "registry": ("cairn.discovery._cli", "registry", "Run or query the service registry."),
    "lab": ("cairn.lab._cli", "lab", "The consistency lab: CP vs AP under partitions."),
}


def _available(name: str) -> bool:
    import importlib.util

    module = _LAZY[name][0]
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        lazy = [name for name in _LAZY if _available(name)]
        return sorted({*super().list_commands(ctx), *lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = super().get_command(ctx, cmd_name)
        if found is not None or cmd_name not in _LAZY or not _available(cmd_name):
            return found
        module_name, attribute, _ = _LAZY[cmd_name]
        command: click.Command = getattr(importlib.import_module(module_name), attribute)
        if cmd_name == "lab":
            from cairn.lab._runcli import compare_command, run_command

            assert isinstance(command, click.Group)
            command.add_command(run_command)
            command.add_command(compare_command)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            if name in _LAZY:
                rows.append((name, _LAZY[name][2]))
            else:
                command = super().get_command(ctx, name)
                if command is not None and not command.hidden:
                    rows.append((name, command.get_short_help_str(limit=60)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cairn")
def main() -> None:
    """cairn: observable, discoverable, resilient Python services."""


_SHOP = Path("examples/shop/cairn.toml")


@main.command()
@click.argument("manifest", required=False, type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--policies",
    is_flag=True,
    help="Instead: retry and a breaker around a flaky function, in one process, no servers.",
)
@click.option("--seed", default=7, show_default=True, help="--policies: seed of the failures.")
@click.option(
    "--recovery-timeout",
    default=1.0,
    show_default=True,
    type=click.FloatRange(min=0.0, max=60.0),
    help="--policies: seconds the breaker stays open before a trial call.",
)
def demo(manifest: Path | None, policies: bool, seed: int, recovery_timeout: float) -> None:
    """A scripted tour of the example shop that exits by itself.

    Brings the shop up (MANIFEST, default examples/shop/cairn.toml), sends
    traffic, prints the seed's trace tree and log query from the collector,
    kills an inventory instance under load (no order fails), trips and
    recovers a breaker with injected errors, and stops everything.
    """
    if policies:
        from cairn._demo import run_demo

        run_demo(seed=seed, recovery_timeout=recovery_timeout)
        return
    import asyncio

    from cairn.platform._errors import PlatformError
    from cairn.platform._tour import run_tour

    path = manifest or _SHOP
    if not path.is_file():
        raise click.ClickException(
            f"no manifest at {path}: the tour runs the example shop; run it from cairn's "
            "source folder (where examples/shop is), or pass the shop's cairn.toml"
        )
    try:
        asyncio.run(run_tour(path))
    except PlatformError as exc:
        raise click.ClickException(str(exc)) from None
