"""``cairn load`` against a real tiny service (uvicorn on a free port, in a thread of its own)."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import uvicorn
from click.testing import CliRunner
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from cairn.platform._load import (
    DEFAULT_MIX,
    MixEntry,
    parse_duration,
    parse_mix,
    parse_rate,
    percentile,
    run_load,
)
from cairn.platform._load_cli import load_command


@dataclass
class Tiny:
    url: str
    hits: Counter[str] = field(default_factory=Counter)
    bodies: list[dict[str, int]] = field(default_factory=list)


def _app(tiny: Tiny) -> Starlette:
    async def get_order(request: Request) -> JSONResponse:
        order_id = int(request.path_params["order_id"])
        status = 503 if order_id % 10 == 0 else 200
        tiny.hits[f"GET {status}"] += 1
        return JSONResponse({"order_id": order_id}, status_code=status)

    async def post_order(request: Request) -> JSONResponse:
        body = await request.json()
        tiny.bodies.append(body)
        tiny.hits["POST 201"] += 1
        return JSONResponse(body, status_code=201)

    async def slow(request: Request) -> JSONResponse:
        tiny.hits["slow"] += 1
        await asyncio.sleep(0.2)  # the work being measured
        return JSONResponse({})

    return Starlette(
        routes=[
            Route("/orders/{order_id:int}", get_order),
            Route("/orders", post_order, methods=["POST"]),
            Route("/slow", slow),
        ]
    )


@pytest.fixture
def tiny() -> Iterator[Tiny]:
    holder = Tiny(url="")
    config = uvicorn.Config(
        _app(holder), host="127.0.0.1", port=0, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive(), "the server thread died"
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)  # polling a flag with a deadline, not waiting for things to settle
    port = server.servers[0].sockets[0].getsockname()[1]
    holder.url = f"http://127.0.0.1:{port}"
    try:
        yield holder
    finally:
        server.should_exit = True
        thread.join(15)


def test_parsers() -> None:
    assert parse_rate("20/s") == 20
    assert parse_rate("20") == 20
    assert parse_rate("600/m") == 10
    for bad in ("0/s", "x", "5/d", "-1", "nan/s", "30000/s"):
        with pytest.raises(ValueError, match="rate"):
            parse_rate(bad)
    assert parse_duration("30s") == 30
    assert parse_duration("2m") == 120
    assert parse_duration("500ms") == 0.5
    assert parse_duration("90") == 90
    for bad in ("0s", "1d", "abc", "2 days"):
        with pytest.raises(ValueError, match="duration"):
            parse_duration(bad)
    assert percentile([], 50) == 0
    assert percentile([1, 2, 3, 4], 50) == 2
    assert percentile([1, 2, 3, 4], 100) == 4
    assert percentile([5.0], 99) == 5.0


def test_mix_parsing_keeps_json_commas() -> None:
    mix = parse_mix(DEFAULT_MIX)
    assert [(e.method, e.path, e.weight) for e in mix] == [
        ("GET", "/orders/{id}", 8),
        ("POST", "/orders", 2),
    ]
    assert mix[1].body is not None
    assert json.loads(mix[1].body.replace("{id}", "1").replace("{int:1-20}", "2"))["quantity"] == 1
    assert parse_mix("get /a") == (MixEntry("GET", "/a"),)
    for bad, message in [
        ("", "empty"),
        ("FETCH /a", "METHOD /path"),
        ("GET a", "METHOD /path"),
        ("GET /a:0", "weight"),
        ("POST /a {nope}", "not JSON"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_mix(bad)


def test_render_fills_placeholders() -> None:
    import random

    entry = MixEntry("POST", "/o/{id}", '{"a": {id}, "b": {int:5-5}}')
    path, body = entry.render(random.Random(1), (7, 7))
    assert path == "/o/7"
    assert body is not None
    assert json.loads(body) == {"a": 7, "b": 5}


async def test_counts_and_summary_agree_with_the_server(tiny: Tiny) -> None:
    mix = parse_mix('GET /orders/{id}:3,POST /orders {"user_id": {id}, "item_id": {int:1-20}}:1')
    seen = []
    summary = await run_load(
        [tiny.url],
        mix,
        rate=50,
        duration=2.0,
        concurrency=8,
        seed=3,
        progress=seen.append,
        progress_interval=0.2,
    )
    assert summary.requests == 100
    assert summary.completed == 100
    assert sum(tiny.hits.values()) == 100  # every request reached the server once
    assert summary.statuses.get("503", 0) == tiny.hits["GET 503"]
    assert summary.statuses.get("200", 0) == tiny.hits["GET 200"]
    assert summary.statuses.get("201", 0) == tiny.hits["POST 201"] > 0
    assert summary.error_count == tiny.hits["GET 503"]
    assert summary.errors == ({"503": tiny.hits["GET 503"]} if tiny.hits["GET 503"] else {})
    get = summary.endpoints["GET /orders/{id}"]
    post = summary.endpoints["POST /orders"]
    assert get["requests"] + post["requests"] == 100
    assert all(1 <= b["user_id"] <= 100 and 1 <= b["item_id"] <= 20 for b in tiny.bodies)
    # The rate was held: 100 requests over at least the 2 s asked (and not absurdly longer).
    assert 2.0 <= summary.elapsed < 20
    assert summary.throughput <= 50.5
    ms = summary.latency_ms
    assert 0 < ms["p50"] <= ms["p90"] <= ms["p99"] <= ms["max"]
    assert seen
    assert seen[-1].sent == seen[-1].done == 100
    assert seen[-1].errors == summary.error_count


async def test_latency_counts_from_the_scheduled_time(tiny: Tiny) -> None:
    # One slot, 200 ms per request, 10 due per second: requests queue. A closed-loop
    # tool would report ~200 ms each; from the scheduled time the backlog shows.
    summary = await run_load(
        [tiny.url], parse_mix("GET /slow"), rate=10, duration=1.0, concurrency=1
    )
    assert summary.completed == 10
    assert summary.latency_ms["p50"] >= 200
    assert summary.latency_ms["max"] >= 1000  # the last waited for nine before it


async def test_connection_errors_and_unfinished_are_counted() -> None:
    summary = await run_load(
        ["http://127.0.0.1:9"], parse_mix("GET /x"), rate=20, duration=0.25, timeout=2
    )
    assert summary.requests == 5
    assert summary.error_count == 5
    assert "ConnectError" in summary.errors
    assert summary.latency_ms["max"] == 0


def test_cli_json_with_url_and_fail_on_error(tiny: Tiny) -> None:
    runner = CliRunner()
    args = ["--url", tiny.url, "--rate", "40/s", "--duration", "500ms", "--seed", "1"]
    result = runner.invoke(load_command, [*args, "--json", "--mix", "GET /orders/{id}"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["requests"] == data["completed"] == 20
    assert data["target"] == "orders"
    failing = runner.invoke(
        load_command, [*args, "-q", "--mix", "GET /orders/10", "--fail-on-error"]
    )
    assert failing.exit_code == 1
    assert "errors    20 (503: 20)" in failing.stdout
    assert "p99" in failing.stdout


def test_cli_finds_the_target_in_the_run_file(tiny: Tiny, tmp_path: Path) -> None:
    run_file = tmp_path / ".cairn" / "run.json"
    run_file.parent.mkdir()
    state = {
        "pid": os.getpid(),
        "manifest": str(tmp_path / "cairn.toml"),
        "started_at": "now",
        "control": "http://127.0.0.1:9",  # nothing listens: the file's instances are used
        "token": "t",
        "registry": "http://127.0.0.1:9",
        "instances": [
            {"service": "orders", "instance_id": "orders-1", "pid": 1, "url": tiny.url,
             "state": "running", "health": "passing"},
            {"service": "users", "instance_id": "users-1", "pid": 2, "url": None,
             "state": "stopped", "health": "stopped"},
        ],
    }  # fmt: skip
    run_file.write_text(json.dumps(state))
    runner = CliRunner()
    base = ["--run-file", str(run_file), "--rate", "20/s", "--duration", "250ms"]
    result = runner.invoke(load_command, [*base, "--mix", "GET /orders/{id}", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["targets"] == [tiny.url]
    stopped = runner.invoke(load_command, [*base, "--target", "users"])
    assert stopped.exit_code == 1
    assert "no running instance of 'users'" in stopped.output
    unknown = runner.invoke(load_command, [*base, "--target", "nope"])
    assert "services: orders, users" in unknown.output


def test_cli_without_a_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(load_command, ["--duration", "1s"])
    assert result.exit_code == 1
    assert "no `cairn up` running here" in result.output
    both = CliRunner().invoke(load_command, ["--url", "http://x", "--registry", "sqlite://"])
    assert both.exit_code == 2
    assert "at most one" in both.output
    bad = CliRunner().invoke(load_command, ["--url", "http://x", "--rate", "fast"])
    assert bad.exit_code == 2
    assert "rate 'fast'" in bad.output
