"""A non-Python client: OpenTelemetry JS (from npm, on Node.js) sends a trace and a log."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
from receiver_support import running, wait_for

JS = Path(__file__).parent / "js"


@pytest.fixture(scope="module")
def node() -> str:
    """The node binary, with tests/collector/js/node_modules installed by ``npm ci`` once."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.skip("node and npm are needed for the OpenTelemetry JS client test")
    installed = JS / "node_modules" / ".package-lock.json"
    lock = JS / "package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        try:
            result = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=JS,
                capture_output=True,
                text=True,
                timeout=240,
            )
        except subprocess.TimeoutExpired:
            pytest.skip("npm ci timed out: is the npm registry reachable?")
        if result.returncode != 0:
            pytest.skip(f"npm ci failed (registry unreachable?): {result.stderr.strip()[-500:]}")
    return node


def test_opentelemetry_js_trace_and_log_come_back_intact(node: str) -> None:
    with running() as (url, _), httpx.Client() as client:
        result = subprocess.run(
            [node, "send.mjs", url], cwd=JS, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stderr
        ids = json.loads(result.stdout.strip().splitlines()[-1])

        def stored() -> dict | None:
            reply = client.get(f"{url}/api/traces/{ids['trace_id']}")
            body = reply.json() if reply.status_code == 200 else None
            return body if body and len(body["spans"]) == 2 and body["logs"] else None

        trace = wait_for(stored, what="the JS trace and log")
        spans = {s["name"]: s for s in trace["spans"]}
        root, child = spans["GET /cart"], spans["load cart"]
        assert (root["span_id"], child["span_id"]) == (ids["root"], ids["child"])
        assert child["parent_span_id"] == root["span_id"]
        assert root["parent_span_id"] is None
        assert root["service"] == "js-shop"
        assert root["kind"] == "server"
        assert child["kind"] == "client"
        assert root["attributes"] == {"user_id": 42, "cart.items": ["apple", "pear"]}
        assert [(e["name"], e["attributes"]) for e in root["events"]] == [
            ("cache_miss", {"key": "cart:42"})
        ]
        assert (child["status"], child["status_message"]) == ("error", "db timeout")
        [log] = trace["logs"]
        assert (log["level"], log["body"], log["service"]) == ("warning", "cart_slow", "js-shop")
        assert log["attributes"] == {"user_id": 42}
        assert log["span_id"] == ids["child"]
