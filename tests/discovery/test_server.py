"""cairn's registry server: Consul's shapes, its limits, its refusals; the Consul backend's errors."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import httpx
import pytest
from disc_support import StatusTarget, ThreadedUvicorn, free_port, registry_server, wait_for

from cairn.discovery import (
    Health,
    HTTPCheck,
    Instance,
    RegistryRefused,
    RegistryUnavailable,
    TTLCheck,
    UnknownInstance,
)
from cairn.discovery._consul import ConsulRegistry
from cairn.discovery._server import MAX_BODY, RegistryServer, create_app
from cairn.discovery._sqlite import SQLiteRegistry


@pytest.fixture
def server() -> Iterator[ThreadedUvicorn]:
    with registry_server() as s:
        yield s


@pytest.fixture
def http(server: ThreadedUvicorn) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        yield client


def _register(http: httpx.Client, body: object) -> httpx.Response:
    return http.put("/v1/agent/service/register", content=json.dumps(body))


def _checks(http: httpx.Client, service: str) -> list[dict[str, object]]:
    return [c for n in http.get(f"/v1/health/service/{service}").json() for c in n["Checks"][1:]]


def test_bodies_over_the_limit_are_refused(http: httpx.Client) -> None:
    big = json.dumps({"Name": "x", "Meta": {"k": "v" * MAX_BODY}})
    assert _register(http, json.loads(big)).status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams
        for _ in range(MAX_BODY // 1024 + 2):
            yield b" " * 1024

    assert http.put("/v1/agent/service/register", content=chunks()).status_code == 413
    assert http.get("/v1/catalog/services").json() == {}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("{not json", "decode"),
        ("[]", "JSON object"),
        ('{"ID": "x"}', "Name"),
        ('{"Name": "a", "Check": {"TTL": "1s"}, "Checks": [{"TTL": "2s"}]}', "one check"),
        ('{"Name": "a", "Check": {"Args": ["true"], "Interval": "1s"}}', "TTL and HTTP"),
        ('{"Name": "a", "Port": 99999}', "port"),
    ],
)
def test_bad_definitions_get_400_and_change_nothing(
    http: httpx.Client, body: str, message: str
) -> None:
    response = http.put("/v1/agent/service/register", content=body)
    assert response.status_code == 400
    assert message in response.text
    assert http.get("/v1/catalog/services").json() == {}


def test_ttl_check_updates_by_verb_by_update_and_by_custom_id(http: httpx.Client) -> None:
    body = {
        "Name": "pay",
        "ID": "pay-1",
        "Port": 80,
        "Check": {"CheckID": "pay-alive", "TTL": "60s", "Status": "passing"},
    }
    assert _register(http, body).status_code == 200
    assert [c["CheckID"] for c in _checks(http, "pay")] == ["pay-alive"]
    assert http.get("/v1/agent/checks").json()["pay-alive"]["Status"] == "passing"

    assert http.put("/v1/agent/check/fail/pay-alive", params={"note": "db down"}).status_code == 200
    check = _checks(http, "pay")[0]
    assert (check["Status"], check["Output"]) == ("critical", "db down")
    assert http.get("/v1/health/service/pay", params={"passing": ""}).json() == []
    assert len(http.get("/v1/health/service/pay", params={"passing": "false"}).json()) == 1

    update = {"Status": "warning", "Output": "slow"}
    assert (
        http.put("/v1/agent/check/update/service:pay-1", content=json.dumps(update)).status_code
        == 200
    )
    assert _checks(http, "pay")[0]["Status"] == "warning"
    assert http.put("/v1/agent/check/pass/pay-1").status_code == 200
    assert _checks(http, "pay")[0]["Status"] == "passing"

    assert http.put("/v1/agent/check/explode/pay-alive").status_code == 400
    assert http.put("/v1/agent/check/pass/nobody").status_code == 404
    assert http.put("/v1/agent/service/deregister/pay-1").status_code == 200
    assert http.put("/v1/agent/check/pass/pay-alive").status_code == 404
    assert http.put("/v1/agent/service/deregister/pay-1").status_code == 404


def test_ttl_update_on_a_service_without_ttl_is_a_500_like_consul(http: httpx.Client) -> None:
    assert _register(http, {"Name": "web", "ID": "web-1", "Port": 80}).status_code == 200
    response = http.put("/v1/agent/check/pass/service:web-1")
    assert response.status_code == 500
    assert "TTL" in response.text


def test_http_check_registered_through_the_api_is_probed_by_the_server(http: httpx.Client) -> None:
    with StatusTarget() as target:
        body = {
            "name": "api",
            "id": "api-1",
            "port": target.port,
            "check": {"http": target.url, "interval": "100ms", "timeout": "1s"},
        }
        assert _register(http, body).status_code == 200
        wait_for(lambda: _checks(http, "api")[0]["Status"] == "passing", what="first probe")
        assert _checks(http, "api")[0]["Type"] == "http"
        target.status = 500
        wait_for(lambda: _checks(http, "api")[0]["Status"] == "critical", what="failing probe")
        assert "500" in str(_checks(http, "api")[0]["Output"])


def test_catalog_and_agent_reads(http: httpx.Client) -> None:
    _register(
        http, {"Name": "web", "ID": "web-1", "Address": "10.0.0.1", "Port": 80, "Tags": ["a"]}
    )
    _register(
        http, {"Name": "web", "ID": "web-2", "Address": "10.0.0.2", "Port": 80, "Tags": ["a", "b"]}
    )
    _register(http, {"Name": "db", "Port": 5432})

    services = http.get("/v1/catalog/services")
    assert services.json() == {"db": [], "web": ["a", "b"]}
    assert int(services.headers["X-Consul-Index"]) >= 1
    catalog = http.get("/v1/catalog/service/web", params={"tag": "b"}).json()
    assert [(c["ServiceID"], c["ServiceAddress"], c["ServicePort"]) for c in catalog] == [
        ("web-2", "10.0.0.2", 80)
    ]
    assert catalog[0]["Node"] == "cairn"
    # No ID: the name is the id; no Address: the node's.
    assert http.get("/v1/agent/service/db").json()["Address"] == "127.0.0.1"
    assert http.get("/v1/agent/service/nope").status_code == 404
    assert sorted(http.get("/v1/agent/services").json()) == ["db", "web-1", "web-2"]
    assert http.get("/v1/agent/checks").json() == {}
    assert http.get("/v1/health/checks/web").json() == []
    assert http.get("/v1/status/leader").json() == "127.0.0.1:8300"


def test_blocking_query_parameters_are_validated(http: httpx.Client) -> None:
    assert http.get("/v1/health/service/web", params={"index": "x"}).status_code == 400
    assert (
        http.get("/v1/health/service/web", params={"index": "3", "wait": "soon"}).status_code == 400
    )


def test_prometheus_sd_filters_and_metrics_path(http: httpx.Client) -> None:
    _register(
        http,
        {
            "Name": "web",
            "ID": "web-1",
            "Address": "10.0.0.1",
            "Port": 80,
            "Meta": {"metrics_path": "/m", "team-name": "x"},
        },
    )
    _register(
        http,
        {"Name": "db", "ID": "db-1", "Address": "10.0.0.9", "Port": 5432, "Check": {"TTL": "60s"}},
    )

    everything = http.get("/v1/prometheus/sd").json()
    assert [g["targets"] for g in everything] == [["10.0.0.9:5432"], ["10.0.0.1:80"]]
    web = everything[1]["labels"]
    assert web["__metrics_path__"] == "/m"
    assert web["__meta_cairn_meta_team_name"] == "x"
    assert everything[0]["labels"]["__meta_cairn_health"] == "critical"
    assert [
        g["targets"] for g in http.get("/v1/prometheus/sd", params={"passing": "1"}).json()
    ] == [["10.0.0.1:80"]]
    assert [
        g["targets"] for g in http.get("/v1/prometheus/sd", params={"service": "db"}).json()
    ] == [["10.0.0.9:5432"]]


def test_token_by_bearer_header_and_empty_token_refused() -> None:
    with registry_server(token="t0k") as server:
        url = f"{server.url}/v1/agent/service/register"
        body = json.dumps({"Name": "x"})
        assert (
            httpx.put(url, content=body, headers={"Authorization": "Bearer nope"}).status_code
            == 403
        )
        assert (
            httpx.put(url, content=body, headers={"Authorization": "Bearer t0k"}).status_code == 200
        )
    with pytest.raises(ValueError, match="token"):
        RegistryServer(SQLiteRegistry(":memory:"), token="")


async def test_consul_backend_errors() -> None:
    with registry_server(token="right") as server:
        wrong = ConsulRegistry(server.url, token="wrong")
        right = ConsulRegistry(server.url, token="right")
        try:
            with pytest.raises(RegistryRefused, match=r"403.*token"):
                await wrong.register(Instance("x", "x-1", "10.0.0.1", 1))
            await right.register(Instance("x", "x-1", "10.0.0.1", 1))
            with pytest.raises(ValueError, match="no TTL check"):
                await right.heartbeat("x-1")
            with pytest.raises(UnknownInstance):
                await right.heartbeat("x-404", health=Health.WARNING, output="hm")
            await right.register(Instance("x", "x-2", "10.0.0.2", 1, check=TTLCheck(ttl=30)))
            await right.heartbeat("x-2", health=Health.WARNING, output="slow")
            found = await right.fetch("x", passing=False)
            assert found.health("x-2") is Health.WARNING
            assert await right.services() == ("x",)
            await right.register(
                Instance(
                    "x", "x-3", "10.0.0.3", 1, check=HTTPCheck("http://127.0.0.1:1/", interval=60)
                )
            )
            assert (await right.fetch("x", passing=False)).health("x-3") is Health.CRITICAL
        finally:
            await wrong.aclose()
            await right.aclose()
    down = ConsulRegistry(f"http://127.0.0.1:{free_port()}", timeout=1)
    try:
        with pytest.raises(RegistryUnavailable, match="unavailable"):
            await down.instances("x")
        with pytest.raises(ValueError, match="timeout"):
            ConsulRegistry(timeout=0)
    finally:
        await down.aclose()


async def test_a_watch_keeps_the_last_answer_through_an_outage(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = SQLiteRegistry(":memory:", poll_interval=0.02)
    uvicorn_server = ThreadedUvicorn(create_app(store))
    with uvicorn_server:
        registry = ConsulRegistry(uvicorn_server.url, wait=0.2, timeout=1)
        await registry.register(Instance("x", "x-1", "10.0.0.1", 1))
        before = await registry.instances("x")
    try:
        # The server is gone: the watch fails, and lookups keep the last answer.
        deadline = asyncio.get_running_loop().time() + 10
        while not any("watch of 'x' failed" in r.getMessage() for r in caplog.records):
            assert asyncio.get_running_loop().time() < deadline, (
                "the watch never noticed the outage"
            )
            await asyncio.sleep(0.02)  # polling interval of the condition
        assert (await registry.instances("x")).ids == before.ids == ("x-1",)
    finally:
        await registry.aclose()
