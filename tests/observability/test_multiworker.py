"""uvicorn --workers 2: metrics aggregated across workers, spans from each worker."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from obs_servers import OtlpReceiver, uvicorn_server, wait_for
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.slow


def test_metrics_are_aggregated_across_workers(tmp_path: Path) -> None:
    multiproc = tmp_path / "prometheus"
    multiproc.mkdir()
    with OtlpReceiver() as otlp:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": otlp.url, "PROMETHEUS_MULTIPROC_DIR": str(multiproc)}
        with uvicorn_server("pid", env=env, log_path=tmp_path / "w.log", workers=2) as server:
            pids: dict[int, int] = {}
            sent = 0
            # A new connection per request, so the kernel spreads them over
            # both workers' accept(); bounded.
            with httpx.Client(limits=httpx.Limits(max_keepalive_connections=0)) as client:
                while len(pids) < 2 and sent < 2000:
                    pid = client.get(server.url + "/pid").json()["pid"]
                    pids[pid] = pids.get(pid, 0) + 1
                    sent += 1
            assert len(pids) == 2, f"only one worker answered {sent} requests"
            body = httpx.get(server.url + "/metrics").text
            instances = wait_for(
                lambda: (
                    found
                    if len(
                        found := {s["instance"] for s in otlp.snapshot() if s["name"] == "GET /pid"}
                    )
                    == 2
                    else None
                ),
                what="spans from both workers",
            )
    families = {f.name: f for f in text_string_to_metric_families(body)}
    (total,) = [
        s.value
        for s in families["http_requests"].samples
        if s.name == "http_requests_total" and s.labels["endpoint"] == "/pid"
    ]
    # Whichever worker answered the scrape, it counted every worker's requests.
    assert total == sent
    (in_flight,) = families["active_connections"].samples
    assert in_flight.value == 0
    assert len(instances) == 2
