"""``cairn registry``: run cairn's registry server, look at a registry.

``cairn registry serve`` binds 127.0.0.1 unless told otherwise: a registry
lets whoever reaches it steer traffic, so exposing it is a choice to make
explicitly (with ``--token`` for writes).
"""

from __future__ import annotations

import asyncio
import sys

import click

__all__ = ["registry"]


@click.group()
def registry() -> None:
    """cairn's service registry: serve it, list what it holds."""


@registry.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option(
    "--port",
    default=8500,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port (Consul's is 8500).",
)
@click.option(
    "--data",
    type=click.Path(dir_okay=False),
    default=None,
    help="SQLite file to keep registrations in (default: memory, lost on exit).",
)
@click.option(
    "--token",
    envvar="CAIRN_REGISTRY_TOKEN",
    default=None,
    help="Require this token for writes (X-Consul-Token or ?token=). Env: CAIRN_REGISTRY_TOKEN.",
)
@click.option(
    "--log-level",
    default="warning",
    show_default=True,
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
)
def serve(host: str, port: int, data: str | None, token: str | None, log_level: str) -> None:
    """Serve Consul's service endpoints and Prometheus HTTP SD."""
    try:
        import uvicorn

        from cairn.discovery._server import create_app
        from cairn.discovery._sqlite import SQLiteRegistry
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise click.ClickException(
            f"the registry server needs {exc.name}: pip install 'cairn[discovery]'"
        ) from exc
    if token is not None and not token:
        raise click.BadParameter("must not be empty", param_hint="--token")
    store = SQLiteRegistry(data or ":memory:")
    app = create_app(
        store, token=token, node_address="127.0.0.1" if host in ("0.0.0.0", "::") else host
    )
    # Blocking queries hold requests open for minutes: don't wait them out on exit.
    config = uvicorn.Config(
        app, host=host, port=port, log_level=log_level, lifespan="on", timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    click.echo(
        f"cairn registry on http://{host}:{port} (data: {data or 'memory'}; "
        f"writes {'need a token' if token else 'open'})",
        err=True,
    )
    sys.stderr.flush()
    server.run()


@registry.command(name="list")
@click.option(
    "--url", default=None, help="Registry URL (default: $CAIRN_REGISTRY or the embedded one)."
)
def list_(url: str | None) -> None:
    """List every service and its instances with their health."""
    from cairn.discovery._connect import connect

    async def run() -> None:
        async with connect(url) as reg:
            for service in await reg.services():
                found = await reg.fetch(service, passing=False)
                click.echo(f"{service}  ({found.healthy}/{found.registered} passing)")
                for instance in found:
                    health = found.health(instance.id)
                    tags = f"  [{', '.join(instance.tags)}]" if instance.tags else ""
                    click.echo(f"  {instance.id}  {instance.host_port}  {health}{tags}")

    asyncio.run(run())
