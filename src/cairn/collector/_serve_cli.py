"""``cairn collector``: run the collector (OTLP in, query API out) under uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

__all__ = ["collector_command", "parse_duration", "parse_size", "serve_collector"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_SECONDS = {"ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)
_POWERS = {"": 0, "b": 0, "k": 1, "m": 2, "g": 3, "t": 4}


def parse_duration(text: str) -> float:
    """``15s``, ``2m``, ``7d``, ``500ms`` or plain seconds → seconds (> 0)."""
    match = _DURATION.match(text)
    if not match or float(match[1]) <= 0:
        raise ValueError(f"{text!r} is not a positive duration like 15s, 5m, 2h or 7d")
    return float(match[1]) * _SECONDS[match[2] or "s"]


def parse_size(text: str) -> int:
    """``1GiB``, ``500MB``, ``64k`` or plain bytes → bytes (> 0); K/M/G/T are powers of 1024."""
    match = _SIZE.match(text)
    if not match or float(match[1]) <= 0:
        raise ValueError(f"{text!r} is not a positive size like 512MiB or 1GiB")
    unit = (match[2] or "").lower()
    return int(float(match[1]) * 1024 ** _POWERS[unit[:1]])


async def serve_collector(
    *,
    host: str = "127.0.0.1",
    port: int = 4318,
    data: str | os.PathLike[str] | None = ".cairn/collector",
    registry: str | None = None,
    scrape_interval_s: float = 15.0,
    max_bytes: int = 1 << 30,
    retention_s: float = 7 * 86400,
    on_ready: Callable[[str], None] | None = None,
    log_level: str = "warning",
    handle_signals: bool = True,
    **collector: Any,
) -> None:
    """Run a collector until SIGTERM / Ctrl-C (or cancellation), then drain and close.

    ``data`` is a directory (the store is ``data/collector.db``; ``None`` keeps it in
    memory). ``registry`` is a registry URL to scrape (``None``: no scraping).
    ``on_ready(url)`` is called once the socket is bound (so ``port=0`` tells the real
    port). SIGTERM and SIGINT stop it gracefully (main thread only; ``handle_signals=False``
    leaves signals to the caller). Further keyword arguments go to :class:`Collector`.
    """
    import uvicorn

    from cairn.collector._server import Collector
    from cairn.collector._store import Store

    if data is not None:
        await asyncio.to_thread(os.makedirs, data, exist_ok=True)
        path: Path | None = Path(data) / "collector.db"
    else:
        path = None
    store = Store(path, max_bytes=max_bytes, max_age_s=retention_s)
    try:
        app = Collector(store, registry=registry, scrape_interval_s=scrape_interval_s, **collector)

        class _Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                # As uvicorn's, but without re-raising the signal after the graceful
                # shutdown: the collector has drained its queue and exits 0.
                if not handle_signals or threading.current_thread() is not threading.main_thread():
                    yield
                    return
                signals = (signal.SIGINT, signal.SIGTERM)
                originals = {sig: signal.signal(sig, self.handle_exit) for sig in signals}
                try:
                    yield
                finally:
                    for sig, handler in originals.items():
                        signal.signal(sig, handler)

            async def startup(self, sockets: list[socket.socket] | None = None) -> None:
                await super().startup(sockets)
                if self.should_exit or not self.servers or on_ready is None:
                    return
                bound = self.servers[0].sockets[0].getsockname()
                shown = f"[{host}]" if ":" in host else host
                on_ready(f"http://{shown}:{bound[1]}")

        config = uvicorn.Config(
            app.app, host=host, port=port, lifespan="on", log_config=None,
            access_log=False, log_level=log_level, timeout_graceful_shutdown=30,
        )  # fmt: skip
        await _Server(config).serve()
    finally:
        store.close()


@click.command("collector")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", default=4318, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--data",
    default=".cairn/collector",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Directory of the store (collector.db).",
)
@click.option(
    "--registry",
    envvar="CAIRN_REGISTRY",
    default=None,
    help="Registry URL whose passing instances are scraped (default $CAIRN_REGISTRY; none: no scraping).",
)
@click.option("--scrape-interval", default="15s", show_default=True, help="How often to scrape.")
@click.option("--max-size", default="1GiB", show_default=True, help="Store size limit.")
@click.option("--retention", default="7d", show_default=True, help="How long records are kept.")
def collector_command(
    host: str,
    port: int,
    data: str,
    registry: str | None,
    scrape_interval: str,
    max_size: str,
    retention: str,
) -> None:
    """Receive OTLP traces, logs and metrics, scrape services, and answer queries."""
    try:
        interval = parse_duration(scrape_interval)
        size = parse_size(max_size)
        keep = parse_duration(retention)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if host in ("0.0.0.0", "::", ""):
        click.echo(
            f"warning: binding {host or 'every interface'}: anyone who can reach this host "
            "can send telemetry and read it",
            err=True,
        )

    def ready(url: str) -> None:
        scraping = f", scraping {registry} every {scrape_interval}" if registry else ""
        click.echo(f"cairn collector listening on {url} (OTLP/HTTP {url}/v1/...){scraping}")
        click.echo(f"store: {Path(data) / 'collector.db'}; stop with Ctrl-C")

    try:
        asyncio.run(
            serve_collector(
                host=host,
                port=port,
                data=data,
                registry=registry or None,
                scrape_interval_s=interval,
                max_bytes=size,
                retention_s=keep,
                on_ready=ready,
            )
        )
    except KeyboardInterrupt:  # a second Ctrl-C: uvicorn's forced exit
        raise SystemExit(130) from None
