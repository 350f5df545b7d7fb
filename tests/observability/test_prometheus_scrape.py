"""A real Prometheus scrapes a cairn service, OpenMetrics exemplars included.

promtool 2.42 (Debian's) checks only the Prometheus text format, so the
OpenMetrics exposition is proven the stronger way: a real Prometheus scrapes
it (it asks for OpenMetrics first), stores the exemplars, and answers them
with the request's trace id.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from obs_servers import uvicorn_server, wait_for

from prometheus_support import MISSING, PROMETHEUS, prometheus

pytestmark = [pytest.mark.slow, pytest.mark.skipif(PROMETHEUS is None, reason=MISSING)]

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


def test_prometheus_scrapes_openmetrics_and_keeps_the_trace_exemplar(tmp_path: Path) -> None:
    with uvicorn_server("inventory", env={}, log_path=tmp_path / "inventory.log") as server:
        response = httpx.get(
            f"{server.url}/inventory/items",
            params={"id": 1},
            headers={"traceparent": TRACEPARENT},
            timeout=10,
        )
        assert response.status_code == 200
        target = server.url.removeprefix("http://")
        scrape = f"  - job_name: inventory\n    static_configs:\n      - targets: ['{target}']\n"
        with prometheus(tmp_path, scrape, features=("exemplar-storage",)) as url:

            def exemplar() -> dict[str, Any] | None:
                now = time.time()
                try:
                    answer = httpx.get(
                        f"{url}/api/v1/query_exemplars",
                        params={
                            "query": "http_request_duration_seconds_bucket",
                            "start": now - 600,
                            "end": now + 60,
                        },
                        timeout=5,
                    ).json()
                except (httpx.HTTPError, ValueError):
                    return None  # Prometheus is still starting (refused, or not ready: 503 text)
                for series in answer.get("data") or []:
                    for found in series["exemplars"]:
                        return {"series": series["seriesLabels"], **found}
                return None

            found = wait_for(exemplar, timeout=30, what="an exemplar stored by Prometheus")
            targets = httpx.get(f"{url}/api/v1/targets", timeout=5).json()["data"]
            count = httpx.get(
                f"{url}/api/v1/query",
                params={"query": 'http_requests_total{endpoint="/inventory/items"}'},
                timeout=5,
            ).json()["data"]["result"]
    assert found["labels"] == {"trace_id": TRACE_ID}
    assert found["series"]["endpoint"] == "/inventory/items"
    (active,) = targets["activeTargets"]
    assert active["health"] == "up", active.get("lastError")
    assert [float(sample["value"][1]) for sample in count] == [1.0]
