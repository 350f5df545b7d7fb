"""The example shop under a real ``cairn up``, for the end-to-end tests.

``running_shop(parent, ...)`` copies examples/shop into ``parent`` (so nothing is
written into the repository), starts ``cairn up`` there as a subprocess, waits
until every wanted instance is passing, yields a :class:`RunningShop`, and stops
the run at the end (SIGTERM, then SIGKILL after a deadline).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx

from cairn.platform._supervisor import cairn_argv

SHOP = Path(__file__).resolve().parents[1] / "examples" / "shop"
INSTANCES = ("users-1", "orders-1", "inventory-1", "inventory-2")
T = TypeVar("T")


def wait_for(check: Callable[[], T | None], what: str, timeout: float = 60.0) -> T:
    """Poll ``check`` until it returns something truthy, or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@dataclass
class RunningShop:
    """A running ``cairn up`` of the shop: its folder, process and run state."""

    folder: Path
    proc: subprocess.Popen[bytes]
    run: dict[str, Any]

    @property
    def run_file(self) -> Path:
        return self.folder / ".cairn" / "run.json"

    def url(self, instance_id: str) -> str:
        """The instance's current base URL (it changes when it is restarted)."""
        run = json.loads(self.run_file.read_text())
        return str(next(i["url"] for i in run["instances"] if i["instance_id"] == instance_id))

    def log(self) -> str:
        """The end of what ``cairn up`` printed, for failure messages."""
        return (self.folder / "up.out").read_text(errors="replace")[-4000:]

    def until(self, check: Callable[[], T | None], what: str, timeout: float = 60.0) -> T:
        """``wait_for`` that shows, on failure, what ``cairn up`` printed last."""
        try:
            return wait_for(check, what, timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- cairn up output (tail) ---\n{self.log()}") from None

    def control(self, method: str, path: str) -> httpx.Response:
        """A call to the run's control API, with its token."""
        headers = {"authorization": f"Bearer {self.run['token']}"}
        return httpx.request(method, self.run["control"] + path, headers=headers, timeout=30)

    def chaos(self, instance_id: str, fault: dict[str, Any] | None) -> None:
        """Set (or, with ``None``, clear) an instance's injected fault."""
        headers = {"authorization": f"Bearer {self.run['token']}"}
        url = self.url(instance_id) + "/_cairn/chaos"
        if fault is None:
            response = httpx.delete(url, headers=headers, timeout=10)
        else:
            response = httpx.post(url, json=fault, headers=headers, timeout=10)
        assert response.status_code == 200, response.text


@contextmanager
def running_shop(
    parent: Path,
    *args: str,
    scrape_interval: int | None = None,
    wanted: Sequence[str] = ("collector",),
    timeout: float = 90.0,
) -> Iterator[RunningShop]:
    """``cairn up ARGS`` on a copy of the shop in ``parent``, every instance passing and the
    run-file keys in ``wanted`` (e.g. ``collector``, ``dashboard``) set."""
    folder = parent / "shop"
    shutil.copytree(SHOP, folder, ignore=shutil.ignore_patterns(".cairn", "__pycache__"))
    if scrape_interval is not None:
        manifest = folder / "cairn.toml"
        text = manifest.read_text()
        assert "scrape_interval = 5" in text
        manifest.write_text(
            text.replace("scrape_interval = 5", f"scrape_interval = {scrape_interval}")
        )
    with (folder / "up.out").open("wb") as out:
        proc = subprocess.Popen(
            [*cairn_argv(), "up", "--no-status", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=folder,
        )
    shop = RunningShop(folder, proc, {})

    def ready() -> dict[str, Any] | None:
        if proc.poll() is not None:
            raise AssertionError("cairn up exited:\n" + shop.log())
        try:
            data: dict[str, Any] = json.loads(shop.run_file.read_text())
        except (FileNotFoundError, ValueError):
            return None
        passing = {i["instance_id"] for i in data["instances"] if i["health"] == "passing"}
        complete = passing >= set(INSTANCES) and all(data.get(key) for key in wanted)
        return data if complete else None

    try:
        shop.run = shop.until(ready, "the shop passing", timeout=timeout)
        yield shop
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
