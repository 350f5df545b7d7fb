"""``cairn dashboard``: serve the web dashboard (127.0.0.1:18888 unless told otherwise)."""

from __future__ import annotations

import importlib
import socket
from pathlib import Path
from typing import Any

import click

__all__ = ["dashboard_command"]


def _from_run() -> dict[str, Any]:
    """Collector and registry URLs of a `cairn up` running here, if any."""
    try:
        state = importlib.import_module("cairn.platform._state")
        run = state.find_run(None)
    except Exception:  # no platform package, or nothing running: use the defaults
        return {}
    found = {}
    for key in ("collector", "registry"):
        value = getattr(run, key, None)
        if value is None and isinstance(run, dict):
            value = run.get(key)
        if isinstance(value, str) and value:
            found[key] = value
    return found


@click.command(name="dashboard")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=18888, show_default=True, help="0: any free."
)
@click.option(
    "--collector",
    metavar="URL",
    help="The collector's HTTP API [default: that of `cairn up` here, else http://127.0.0.1:4318].",
)
@click.option(
    "--registry",
    metavar="URL",
    help="The registry [default: that of `cairn up` here, else http://127.0.0.1:8500].",
)
@click.option(
    "--lab-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("lab-report"),
    show_default=True,
    help="Where to look for consistency-lab runs (folders holding report.html).",
)
@click.option(
    "--token",
    envvar="CAIRN_TOKEN",
    help="Require this token on every page and API call (also $CAIRN_TOKEN).",
)
def dashboard_command(
    host: str,
    port: int,
    collector: str | None,
    registry: str | None,
    lab_dir: Path,
    token: str | None,
) -> None:
    """Serve the web dashboard: services, logs, traces, metrics, registry, lab runs.

    Every asset is served locally (no internet needed). Open the printed URL; with
    a token, open it once with ?token=<token> to log in.
    """
    try:
        import uvicorn

        from cairn.dashboard._app import DashboardConfig, create_app
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise click.ClickException(
            f"the dashboard needs {exc.name}: pip install 'cairn[dashboard]'"
        ) from exc
    found = _from_run() if collector is None or registry is None else {}
    try:
        config = DashboardConfig(
            collector=collector or found.get("collector", "http://127.0.0.1:4318"),
            registry=registry or found.get("registry", "http://127.0.0.1:8500"),
            lab_dir=lab_dir,
            token=token or None,
            hosts=(host,) if host not in ("0.0.0.0", "::") else None,
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    # Bind first so the printed URL is the real one (port 0 included).
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise click.ClickException(
            f"cannot listen on {host}:{port}: {exc.strerror}; pick another with --port"
        ) from exc
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"cairn dashboard on http://{shown}:{bound}/")
    click.echo(f"  collector {config.collector}  registry {config.registry}  lab {lab_dir}")
    if token:
        click.echo("  token required: open the URL once with ?token=<token>")
    server = uvicorn.Server(uvicorn.Config(create_app(config), log_level="warning"))
    server.run(sockets=[sock])
