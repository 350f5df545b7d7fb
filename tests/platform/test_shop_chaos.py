"""The shop under a real ``cairn up``: ``cairn chaos`` and ``cairn load`` against it.

One run (a copy of examples/shop, no collector or dashboard): an inventory
instance fails every request and the orders service's breaker for it opens
while load sees no error; latency is injected and restored; an instance is
killed and started again; purchases go on throughout.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from cairn.platform._chaos_cli import chaos_command
from cairn.platform._load_cli import load_command
from shop_support import running_shop, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def shop_run(tmp_path: Path) -> Iterator[Path]:
    with running_shop(tmp_path, "--no-collector", "--no-dashboard", wanted=()) as shop:
        yield shop.run_file


def _invoke(command: Any, *args: str) -> Any:
    result = CliRunner().invoke(command, list(args))
    assert result.exit_code == 0, result.output
    return result


def _metric(url: str, name: str, **labels: str) -> float | None:
    text = httpx.get(url + "/metrics", timeout=5).text
    wanted = [f'{k}="{v}"' for k, v in labels.items()]
    for line in text.splitlines():
        if line.startswith(name + "{") and all(w in line for w in wanted):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_chaos_and_load_on_the_shop(shop_run: Path) -> None:
    run_file = str(shop_run)
    chaos = ["--run-file", run_file]
    load = ["--run-file", run_file, "--rate", "20/s", "--duration", "2s", "--json", "-q"]
    run = json.loads(shop_run.read_text())
    orders_url = next(i["url"] for i in run["instances"] if i["service"] == "orders")

    status = _invoke(chaos_command, *chaos, "status").output
    assert status.count("no fault") == 4

    # inventory-1 fails everything: orders retries on inventory-2, the breaker opens.
    failing = _invoke(chaos_command, *chaos, "errors", "inventory-1", "--rate", "1")
    assert "inventory-1" in failing.output
    assert "100% errors (503)" in failing.output
    result = _invoke(load_command, *load, "--mix", "GET /orders/{id}")
    summary = json.loads(result.stdout)
    assert summary["requests"] == summary["completed"] == 40
    assert summary["error_count"] == 0
    assert summary["statuses"] == {"200": 40}
    opened = _metric(
        orders_url, "cairn_breaker_state", policy="inventory/inventory-1", state="open"
    )
    assert opened == 1.0
    # A breaker's series appears with its first transition: inventory-2's never left CLOSED.
    other = _metric(orders_url, "cairn_breaker_state", policy="inventory/inventory-2", state="open")
    assert other in (None, 0.0)

    # Latency on the whole service keeps the errors of inventory-1 (faults merge).
    slowed = _invoke(chaos_command, *chaos, "latency", "inventory", "--ms", "50")
    assert "inventory-1" in slowed.output
    assert "inventory-2" in slowed.output
    assert "+50 ms, 100% errors" in slowed.output
    status_json = json.loads(_invoke(chaos_command, *chaos, "status", "--json").output)
    faults = {row["instance_id"]: row["fault"] for row in status_json["instances"]}
    assert faults["inventory-2"]["latency_ms"] == 50
    assert faults["users-1"]["latency_ms"] == 0
    restored = _invoke(chaos_command, *chaos, "restore")
    assert restored.output.count("no fault") == 4

    # inventory-1's breaker lets a trial call through after its 5 s and closes again.
    def closed_again() -> bool:
        assert httpx.get(orders_url + "/orders/1", timeout=10).status_code == 200
        state = "closed"
        return (
            _metric(orders_url, "cairn_breaker_state", policy="inventory/inventory-1", state=state)
            == 1.0
        )

    wait_for(closed_again, "inventory-1's breaker to close", timeout=30)

    # Kill inventory-2: purchases go on through inventory-1; start it again.
    killed = _invoke(chaos_command, *chaos, "kill", "inventory-2")
    assert "stopped" in killed.output
    assert "stopped" in _invoke(chaos_command, *chaos, "status", "inventory-2").output
    mix = 'POST /orders {"user_id": {id}, "item_id": {int:1-20}, "quantity": 1}'
    summary = json.loads(_invoke(load_command, *load, "--mix", mix).stdout)
    assert summary["statuses"] == {"201": 40}
    _invoke(chaos_command, *chaos, "start", "inventory-2")

    def back() -> bool:
        rows = json.loads(_invoke(chaos_command, *chaos, "status", "--json").output)
        row = next(r for r in rows["instances"] if r["instance_id"] == "inventory-2")
        return bool(row["health"] == "passing" and row["fault"] is not None)

    wait_for(back, "inventory-2 passing again")

    # Mistakes get clear messages.
    wrong = CliRunner().invoke(chaos_command, [*chaos, "kill", "inventory"])
    assert wrong.exit_code == 1
    assert "inventory is a service: name one of inventory-1, inventory-2" in wrong.output
    unknown = CliRunner().invoke(chaos_command, [*chaos, "latency", "nope", "--ms", "1"])
    assert "no service or instance 'nope'" in unknown.output
