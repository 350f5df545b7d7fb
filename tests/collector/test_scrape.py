"""Scraping: real cairn services registered in a SQLite registry, scraped by the collector."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from receiver_support import running, wait_for

from cairn.collector._scrape import parse_prometheus
from cairn.discovery import Health, Instance, TTLCheck, connect

SERVICE = """
import sys
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from cairn.service import run

async def hello(request):
    return PlainTextResponse("hi")

name, instance, registry = sys.argv[1:4]
app = Starlette(routes=[Route("/hello", hello)])
run(app, name=name, instance_id=instance, registry=registry, port=0, ttl=5, drain_delay=0)
"""


@pytest.fixture
def registry_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'registry.db'}?poll=0.05"


@pytest.fixture
def services(registry_url: str, tmp_path: Path) -> Iterator[dict[str, int]]:
    """Two real cairn services (``inventory-1``, ``users-1``) in subprocesses; id → port."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "CAIRN_"))}
    log_path = tmp_path / "services.log"
    log = log_path.open("wb")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SERVICE, name, f"{name}-1", registry_url],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        for name in ("inventory", "users")
    ]
    try:

        async def ports() -> dict[str, int]:
            async with connect(registry_url) as registry:
                found: dict[str, int] = {}
                for name in await registry.services():
                    found.update({i.id: i.port for i in await registry.fetch(name)})
                return found

        def registered() -> dict[str, int] | None:
            for proc in procs:
                if proc.poll() is not None:
                    raise AssertionError(f"a service exited: {log_path.read_text()}")
            found = asyncio.run(ports())
            return found if len(found) == 2 else None

        yield wait_for(registered, timeout=60, what="both services registered")
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


async def _register_critical(registry_url: str, port: int) -> None:
    """A third instance at a real metrics port, whose TTL check says critical."""
    async with connect(registry_url) as registry:
        await registry.register(
            Instance("ghost", "ghost-1", "127.0.0.1", port, check=TTLCheck(ttl=60))
        )
        await registry.heartbeat("ghost-1", health=Health.CRITICAL, output="failing on purpose")


def test_passing_services_are_scraped_with_labels_and_critical_ones_are_not(
    services: dict[str, int], registry_url: str
) -> None:
    with httpx.Client() as client:
        for port in services.values():
            for _ in range(3):
                assert client.get(f"http://127.0.0.1:{port}/hello").status_code == 200
    asyncio.run(_register_critical(registry_url, services["users-1"]))
    with (
        running(registry=registry_url, scrape_interval_s=0.2) as (url, collector),
        httpx.Client() as client,
    ):

        def scraped() -> list[dict[str, object]] | None:
            reply = client.get(
                f"{url}/api/metrics/http_requests_total", params={"by": "service,instance"}
            )
            series = reply.json()["series"] if reply.status_code == 200 else []
            return series if len(series) >= 2 else None

        series = wait_for(scraped, what="http_requests from both services")
        labels = {(s["labels"]["service"], s["labels"]["instance"]) for s in series}  # type: ignore[index]
        assert labels == {("inventory", "inventory-1"), ("users", "users-1")}
        targets = client.get(f"{url}/api/stats").json()["scrape_targets"]
        assert {(t["instance"], t["error"]) for t in targets} == {
            ("inventory-1", None),
            ("users-1", None),
        }
        assert all(t["samples"] > 0 and t["url"].endswith("/metrics") for t in targets)
        assert collector.scraper is not None
        assert collector.scraper.rounds >= 1
        assert "ghost" not in client.get(f"{url}/api/services").json()["services"]


def test_scrape_errors_are_visible(registry_url: str) -> None:
    async def register_dead() -> None:
        async with connect(registry_url) as registry:
            # Port 9 (discard) on loopback: nothing listens, the connection is refused.
            await registry.register(Instance("dead", "dead-1", "127.0.0.1", 9))

    asyncio.run(register_dead())
    with (
        running(registry=registry_url, scrape_interval_s=0.2) as (url, _),
        httpx.Client() as client,
    ):

        def failed() -> list[dict[str, object]] | None:
            targets = client.get(f"{url}/api/stats").json()["scrape_targets"]
            return targets if targets and targets[0]["error"] else None

        [target] = wait_for(failed, what="the failed scrape reported")
        assert target["instance"] == "dead-1"
        assert "Connect" in str(target["error"])


def test_parse_prometheus_labels_and_kinds() -> None:
    text = (
        "# TYPE http_requests_total counter\n"
        'http_requests_total{method="GET",service="inner"} 3\n'
        'http_requests_created{method="GET"} 1.7e9\n'
        "# TYPE temp gauge\ntemp 21.5\n"
        "# TYPE lat histogram\n"
        'lat_bucket{le="0.5"} 1\nlat_bucket{le="+Inf"} 2\nlat_sum 0.9\nlat_count 2\n'
    )
    samples = parse_prometheus(text, service="svc", instance="svc-1", time_ns=5)
    got = [(s.name, s.kind, s.family, s.value, s.labels) for s in samples]
    base = {"service": "svc", "instance": "svc-1"}
    assert got == [
        ("http_requests_total", "counter", "http_requests_total", 3.0,
         {"method": "GET", "exported_service": "inner", **base}),
        ("temp", "gauge", "temp", 21.5, base),
        ("lat_bucket", "histogram", "lat", 1.0, {"le": "0.5", **base}),
        ("lat_bucket", "histogram", "lat", 2.0, {"le": "+Inf", **base}),
        ("lat_sum", "histogram", "lat", 0.9, base),
        ("lat_count", "histogram", "lat", 2.0, base),
    ]  # fmt: skip
    assert all(s.time_ns == 5 for s in samples)
    with pytest.raises(ValueError):
        parse_prometheus("bad line {{{", service="s", instance="i")
