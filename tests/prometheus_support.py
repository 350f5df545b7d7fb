"""A real Prometheus server (Debian's `prometheus`) for tests, on 127.0.0.1."""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PROMETHEUS = shutil.which("prometheus")
MISSING = "prometheus is not installed (Debian package 'prometheus'; make test installs it)"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def prometheus(
    workdir: Path, scrape_configs: str, *, features: tuple[str, ...] = ()
) -> Iterator[str]:
    """Run Prometheus scraping every second with ``scrape_configs`` (YAML); yields its URL."""
    port = _free_port()
    config = workdir / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 500ms\nscrape_configs:\n"
        + scrape_configs
    )
    argv = [
        PROMETHEUS or "prometheus",
        f"--config.file={config}",
        f"--storage.tsdb.path={workdir / 'prometheus-data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        *(f"--enable-feature={feature}" for feature in features),
    ]
    with (workdir / "prometheus.log").open("wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=20)
