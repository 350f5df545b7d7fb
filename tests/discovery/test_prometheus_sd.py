"""A real Prometheus finds registered instances through cairn's HTTP service discovery."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from disc_support import StatusTarget, registry_server, wait_for

from cairn.discovery import Instance
from cairn.discovery._consul import ConsulRegistry
from prometheus_support import MISSING, PROMETHEUS, prometheus

pytestmark = pytest.mark.slow


@pytest.fixture
def prometheus_for(tmp_path: Path) -> Iterator[Any]:
    with ExitStack() as stack:

        def start(sd_url: str) -> str:
            return stack.enter_context(
                prometheus(
                    tmp_path,
                    "  - job_name: cairn\n"
                    "    http_sd_configs:\n"
                    f"      - url: {sd_url}\n"
                    "        refresh_interval: 1s\n",
                )
            )

        yield start


@pytest.mark.skipif(PROMETHEUS is None, reason=MISSING)
async def test_prometheus_scrapes_a_registered_instance(
    prometheus_for: Any, tmp_path: Path
) -> None:
    with registry_server() as server, StatusTarget() as target:
        registry = ConsulRegistry(server.url)
        try:
            await registry.register(
                Instance(
                    "inventory",
                    "inventory-1",
                    "127.0.0.1",
                    target.port,
                    tags=("blue",),
                    meta={"zone": "a"},
                )
            )
            async with httpx.AsyncClient() as http:
                sd = (await http.get(f"{server.url}/v1/prometheus/sd")).json()
            assert sd == [
                {
                    "targets": [f"127.0.0.1:{target.port}"],
                    "labels": {
                        "service": "inventory",
                        "instance_id": "inventory-1",
                        "__meta_cairn_service": "inventory",
                        "__meta_cairn_instance_id": "inventory-1",
                        "__meta_cairn_health": "passing",
                        "__meta_cairn_tags": ",blue,",
                        "__metrics_path__": "/metrics",
                        "__meta_cairn_meta_zone": "a",
                    },
                }
            ]
            prometheus = prometheus_for(f"{server.url}/v1/prometheus/sd")

            def up_target() -> dict[str, Any] | None:
                try:
                    data = httpx.get(f"{prometheus}/api/v1/targets", timeout=2).json()
                except (httpx.HTTPError, ValueError):
                    return None
                for t in data["data"]["activeTargets"]:
                    if t["labels"].get("instance_id") == "inventory-1" and t["health"] == "up":
                        return dict(t)
                return None

            found = wait_for(up_target, timeout=60, what="Prometheus to scrape inventory-1")
            assert found["scrapeUrl"] == f"http://127.0.0.1:{target.port}/metrics"
            assert found["labels"]["service"] == "inventory"
            assert found["labels"]["job"] == "cairn"
            assert target.hits >= 1
        finally:
            await registry.aclose()
