"""The dashboard's server side over real HTTP: API, security, lab files, CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from dash_support import (
    BUY_TRACE,
    SLOW_TRACE,
    Served,
    fake_collector,
    free_port,
    real_collector,
    set_health,
    shop_registry,
    wait_for,
)

from cairn.dashboard import DashboardConfig, create_app
from cairn.dashboard._overview import HealthHistory
from cairn.dashboard._security import COOKIE, CSP


@pytest.fixture(scope="module")
def collector() -> Iterator[Served]:
    with Served(fake_collector()) as server:
        yield server


@pytest.fixture(scope="module")
def registry() -> Iterator[Served]:
    with shop_registry() as server:
        yield server


@pytest.fixture
def lab_dir(tmp_path: Path) -> Path:
    run = tmp_path / "lab" / "cp-partition"
    run.mkdir(parents=True)
    (run / "report.html").write_text(
        "<html><body><h1>cairn lab: cp &amp; friends</h1></body></html>", encoding="utf-8"
    )
    (run / "history.jsonl").write_text('{"op": "read"}\n', encoding="utf-8")
    (tmp_path / "secret.txt").write_text("do not serve", encoding="utf-8")
    (run / "escape").symlink_to(tmp_path / "secret.txt")
    return tmp_path / "lab"


def serve(collector: Served, registry: Served | None, lab_dir: Path, **kw: object) -> Served:
    config = DashboardConfig(
        collector=collector.url,
        registry=registry.url if registry else None,
        lab_dir=lab_dir,
        poll_interval=0.05,
        **kw,  # type: ignore[arg-type]
    )
    return Served(create_app(config))


@pytest.fixture
def dash(collector: Served, registry: Served, lab_dir: Path) -> Iterator[httpx.Client]:
    with serve(collector, registry, lab_dir) as server, httpx.Client(base_url=server.url) as c:
        yield c


def test_page_and_assets_are_local_with_strict_headers(dash: httpx.Client) -> None:
    page = dash.get("/")
    assert page.status_code == 200
    assert '<script type="module" src="/static/app.js">' in page.text
    assert "http" not in page.text.replace("http-equiv", "")  # nothing from another origin
    assert page.headers["content-security-policy"] == CSP
    assert "frame-ancestors 'none'" in CSP
    assert "unsafe-inline" not in CSP
    assert page.headers["x-content-type-options"] == "nosniff"
    for asset in ("app.js", "dom.js", "logs.js", "traces.js", "metrics.js", "app.css"):
        response = dash.get(f"/static/{asset}")
        assert response.status_code == 200, asset
        assert "innerHTML" not in response.text, asset
        assert "//cdn" not in response.text, asset
        assert "https://" not in response.text, asset
    assert dash.get("/api/overview").headers["cache-control"] == "no-store"


def test_logs_pass_the_query_and_cap_the_limit(dash: httpx.Client, collector: Served) -> None:
    body = dash.get("/api/logs", params={"q": "event:purchase_completed", "limit": 10**9}).json()
    assert [r["body"] for r in body["records"]] == ["purchase_completed"]
    assert body["records"][0]["trace_id"] == BUY_TRACE
    assert collector.server.config.app.state.seen[-1]["limit"] == "1000"


def test_a_query_error_keeps_its_column(dash: httpx.Client) -> None:
    response = dash.get("/api/logs", params={"q": "level:(error"})
    assert response.status_code == 400
    assert response.json()["column"] >= 1
    assert response.json()["error"]


def test_traces_and_one_trace(dash: httpx.Client) -> None:
    found = dash.get("/api/traces", params={"service": "inventory"}).json()["traces"]
    assert [t["trace_id"] for t in found] == [BUY_TRACE]
    trace = dash.get(f"/api/traces/{BUY_TRACE}").json()
    assert {s["name"] for s in trace["spans"]} >= {"db.query", "inventory.check"}
    assert [r["body"] for r in trace["logs"]] == ["purchase_completed"]
    assert dash.get("/api/traces/not-a-trace!").status_code == 400
    assert dash.get("/api/traces/" + "f" * 32).status_code == 404


def test_exemplars_are_the_slowest_traces(dash: httpx.Client) -> None:
    body = dash.get("/api/exemplars", params={"service": "frontend"}).json()
    durations = [t["duration_ns"] for t in body["traces"]]
    assert durations == sorted(durations, reverse=True)
    assert len(durations) == 2
    only = dash.get("/api/exemplars", params={"service": "frontend", "endpoint": "/buy"}).json()
    assert [t["trace_id"] for t in only["traces"]] == [BUY_TRACE]


def test_exemplars_pass_the_collectors_exemplars_through(
    dash: httpx.Client, collector: Served
) -> None:
    body = dash.get("/api/exemplars", params={"service": "orders", "since": "15m"}).json()
    assert body["source"] == "exemplars"
    assert body["traces"] == []
    assert [(e["trace_id"], e["value"]) for e in body["exemplars"]] == [
        (BUY_TRACE, 0.042),
        (SLOW_TRACE, 0.35),
    ]
    first = body["exemplars"][0]
    assert first["labels"]["endpoint"] == "/orders"
    assert first["name"] == "/orders"
    assert first["span_id"] == "b" * 16
    assert first["time_ns"] > 0
    seen = collector.server.config.app.state.seen
    asked = [q for q in seen if q.get("service") == "orders" and "q" not in q][-1]
    assert asked == {"service": "orders", "since": "15m", "limit": "200"}
    none = dash.get("/api/exemplars", params={"service": "orders", "endpoint": "/nowhere"})
    assert none.json()["source"] == "slowest traces"  # no exemplar there: traces stand in


def test_exemplars_fall_back_to_slowest_traces_in_the_same_shape(dash: httpx.Client) -> None:
    body = dash.get("/api/exemplars", params={"service": "frontend"}).json()
    assert body["source"] == "slowest traces"
    assert [e["trace_id"] for e in body["exemplars"]] == [t["trace_id"] for t in body["traces"]]
    assert all(
        e["value"] == t["duration_ns"] / 1e9 and e["time_ns"] == t["start_ns"]
        for e, t in zip(body["exemplars"], body["traces"], strict=True)
    )


def test_overview_joins_registry_metrics_and_breakers(dash: httpx.Client) -> None:
    body = dash.get("/api/overview").json()
    assert body["errors"] == {}
    services = {s["name"]: s for s in body["services"]}
    assert set(services) >= {"orders", "inventory", "frontend"}
    orders = services["orders"]
    assert orders["rate"] == pytest.approx(10.0)
    assert orders["error_rate"] == pytest.approx(0.1)
    (inst,) = orders["instances"]
    assert inst["id"] == "orders-1"
    assert inst["version"] == "2.1.0"
    assert inst["health"] == "passing"
    assert inst["address"] == "127.0.0.1:9101"
    assert inst["p99_ms"] == pytest.approx(250.0)
    assert inst["breakers"] == [{"policy": "inventory/inventory-1", "state": "open"}]
    assert [i["id"] for i in services["inventory"]["instances"]] == ["inventory-1", "inventory-2"]


def test_registry_history_follows_health_changes(dash: httpx.Client, registry: Served) -> None:
    body = dash.get("/api/registry").json()
    assert body["backend"]["kind"].startswith("cairn registry")
    assert body["backend"]["consistency"].startswith(
        "one node: every read sees every acknowledged write"
    )
    ids = {i["id"]: i for i in body["instances"]}
    assert ids["inventory-2"]["meta"]["zone"] == "local"
    assert ids["inventory-2"]["checks"][-1]["type"] == "ttl"
    set_health(registry.url, "inventory-2", "fail")
    try:

        def changed() -> list[dict[str, object]]:
            history = dash.get("/api/registry").json()["history"]
            return [c for c in history if c["instance"] == "inventory-2" and c["to"] == "critical"]

        (change,) = wait_for(changed, what="the health change in the history")
        assert change["from"] == "passing"
    finally:
        set_health(registry.url, "inventory-2", "pass")


def test_health_history_records_registrations_and_removals() -> None:
    history = HealthHistory(limit=10)
    a = {"id": "a-1", "service": "a", "health": "passing"}
    history.observe([a], now=1.0)
    history.observe([a, {"id": "a-2", "service": "a", "health": "critical"}], now=2.0)
    history.observe([{**a, "health": "warning"}], now=3.0)
    got = [(c["instance"], c["from"], c["to"]) for c in history.changes]
    assert got == [
        ("a-1", None, "passing"),
        ("a-2", "absent", "critical"),
        ("a-1", "passing", "warning"),
        ("a-2", "critical", "deregistered"),
    ]


def test_lab_runs_and_files_are_traversal_safe(dash: httpx.Client) -> None:
    (run,) = dash.get("/api/lab").json()["runs"]
    assert run["name"] == "cp-partition"
    assert run["title"] == "cairn lab: cp & friends"
    assert run["report"] == "cp-partition/report.html"
    report = dash.get("/lab/files/cp-partition/report.html")
    assert report.status_code == 200
    assert "cairn lab" in report.text
    assert "sandbox" in report.headers["content-security-policy"]
    for bad in (
        "/lab/files/../secret.txt",
        "/lab/files/cp-partition/%2e%2e/%2e%2e/secret.txt",
        "/lab/files/cp-partition/..%2f..%2fsecret.txt",
        "/lab/files/cp-partition/escape",
        "/lab/files//etc/passwd",
        "/lab/files/cp-partition",
    ):
        response = dash.get(bad)
        assert response.status_code == 404, bad
        assert "do not serve" not in response.text


def test_an_unreachable_collector_is_a_clear_502(registry: Served, lab_dir: Path) -> None:
    config = DashboardConfig(
        collector=f"http://127.0.0.1:{free_port()}", registry=registry.url, lab_dir=lab_dir
    )
    with Served(create_app(config)) as server:
        # The dashboard bounds its call to the collector (5 s); wait longer than that.
        response = httpx.get(server.url + "/api/logs", timeout=30)
        assert response.status_code == 502
        assert "cannot reach the collector" in response.json()["error"]
        assert "cairn collector" in response.json()["error"]
        overview = httpx.get(server.url + "/api/overview", timeout=30).json()
        assert "collector" in overview["errors"]
        assert {s["name"] for s in overview["services"]} == {"orders", "inventory"}


def test_token_guards_every_page_and_api_call(collector: Served, lab_dir: Path) -> None:
    token = "t0ken-" + "x" * 20
    with serve(collector, None, lab_dir, token=token) as server:
        for path in ("/", "/static/app.js", "/api/logs", "/api/lab", "/lab/files/x"):
            response = httpx.get(server.url + path)
            assert response.status_code == 401, path
            assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        assert httpx.get(server.url + "/", params={"token": "wrong"}).status_code == 401
        bad = httpx.get(server.url + "/api/lab", headers={"Authorization": "Bearer nope"})
        assert bad.status_code == 401
        good = httpx.get(server.url + "/api/lab", headers={"Authorization": f"Bearer {token}"})
        assert good.status_code == 200
        with httpx.Client(base_url=server.url) as browser:
            login = browser.get("/", params={"token": token, "x": "1"})
            assert login.status_code == 303
            assert login.headers["location"] == "/?x=1"
            assert token not in login.headers["set-cookie"]
            assert "HttpOnly" in login.headers["set-cookie"]
            assert browser.cookies.get(COOKIE)
            assert browser.get("/api/lab").status_code == 200
        forged = httpx.get(server.url + "/api/lab", cookies={COOKIE: "0" * 64})
        assert forged.status_code == 401


def test_login_redirect_stays_on_this_site(collector: Served, lab_dir: Path) -> None:
    with serve(collector, None, lab_dir, token="abc") as server:
        response = httpx.get(server.url + "//evil.example/?token=abc")
        assert response.headers["location"].startswith("/evil.example")


def test_foreign_host_header_is_refused(dash: httpx.Client) -> None:
    assert dash.get("/", headers={"Host": "evil.example"}).status_code == 421
    assert dash.get("/", headers={"Host": "localhost:18888"}).status_code == 200


def test_config_rejects_bad_urls() -> None:
    with pytest.raises(ValueError, match="--collector must be an http"):
        DashboardConfig(collector="127.0.0.1:4318")


def test_cli_prints_its_url_and_serves(tmp_path: Path, collector: Served) -> None:
    env = {**os.environ, "CAIRN_TOKEN": "from-env"}
    code = "from cairn.dashboard._cli import dashboard_command; dashboard_command()"
    args = [sys.executable, "-c", code, "--port", "0", "--collector", collector.url,
            "--registry", collector.url, "--lab-dir", str(tmp_path)]  # fmt: skip
    with subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path
    ) as proc:
        try:
            assert proc.stdout is not None
            first = proc.stdout.readline()
            assert first.startswith("cairn dashboard on http://127.0.0.1:"), first
            url = first.split(" on ", 1)[1].strip()

            def answered() -> int:
                try:
                    return httpx.get(url + "api/lab").status_code
                except httpx.TransportError:
                    return 0

            assert wait_for(answered, what="the dashboard to answer") == 401
            ok = httpx.get(url + "api/lab", headers={"Authorization": "Bearer from-env"})
            assert ok.status_code == 200
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def test_against_the_real_collector(lab_dir: Path) -> None:
    with real_collector() as url:
        config = DashboardConfig(collector=url, registry=None, lab_dir=lab_dir)
        with Served(create_app(config)) as server, httpx.Client(base_url=server.url) as c:
            logs = c.get("/api/logs", params={"q": "event:purchase_completed", "since": "1h"})
            assert [r["trace_id"] for r in logs.json()["records"]] == [BUY_TRACE]
            trace = c.get(f"/api/traces/{BUY_TRACE}").json()
            assert {s["name"] for s in trace["spans"]} >= {"db.query", "inventory.check"}
            bad = c.get("/api/logs", params={"q": "level:(error"})
            assert bad.status_code == 400
            assert bad.json()["column"] >= 1
            found = c.get("/api/traces", params={"service": "inventory", "since": "1h"}).json()
            assert [t["trace_id"] for t in found["traces"]] == [BUY_TRACE]
