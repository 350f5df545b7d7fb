"""The ``cairn`` command line."""

from __future__ import annotations

import click

from cairn._version import __version__

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cairn")
def main() -> None:
    """cairn: observable, discoverable, resilient Python services."""


@main.command()
@click.option("--seed", default=7, show_default=True, help="Seed of the dependency's failures.")
@click.option(
    "--recovery-timeout",
    default=1.0,
    show_default=True,
    type=click.FloatRange(min=0.0, max=60.0),
    help="Seconds the breaker stays open before a trial call.",
)
def demo(seed: int, recovery_timeout: float) -> None:
    """Watch retry and a circuit breaker handle a flaky dependency."""
    from cairn._demo import run_demo

    run_demo(seed=seed, recovery_timeout=recovery_timeout)


def _attach_groups() -> None:
    from cairn.discovery._cli import registry
    from cairn.lab._cli import lab
    from cairn.lab._runcli import compare_command, run_command

    lab.add_command(run_command)
    lab.add_command(compare_command)
    main.add_command(lab)
    main.add_command(registry)


_attach_groups()
