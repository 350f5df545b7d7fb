"""The seed's own Consul code (py-consul) against ``cairn registry serve``, unchanged but host and port."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import consul
import httpx
import pytest
from disc_support import cairn_cli, free_port, wait_for

pytestmark = pytest.mark.slow


@dataclass
class Served:
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _serve(*extra: str) -> Iterator[Served]:
    port = free_port()
    proc = subprocess.Popen(
        cairn_cli("serve", "--port", str(port), *extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    served = Served(port, proc)

    def up() -> bool:
        if proc.poll() is not None:
            out = proc.stdout.read().decode() if proc.stdout else ""
            raise AssertionError(f"cairn registry serve exited: {out}")
        try:
            return httpx.get(f"{served.url}/v1/status/leader", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(up, timeout=20, what="cairn registry serve")
        yield served
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout:
            proc.stdout.close()


@pytest.fixture
def served() -> Iterator[Served]:
    yield from _serve()


@pytest.fixture
def served_with_token() -> Iterator[Served]:
    yield from _serve("--token", "s3cret")


def test_seed_snippet_runs_with_py_consul_against_cairn_registry_serve(served: Served) -> None:
    # The seed, verbatim but for host and port:
    c = consul.Consul(host="127.0.0.1", port=served.port)
    c.agent.service.register(
        "user-service", service_id="user-service-1", address="10.0.1.5", port=8000
    )
    index, nodes = c.health.service("user-service", passing=True)

    assert int(index) > 0
    assert len(nodes) == 1
    node = nodes[0]
    assert node["Service"]["ID"] == "user-service-1"
    assert node["Service"]["Service"] == "user-service"
    assert (node["Service"]["Address"], node["Service"]["Port"]) == ("10.0.1.5", 8000)
    assert node["Node"]["Node"]
    assert node["Node"]["Address"]
    assert all(check["Status"] == "passing" for check in node["Checks"])

    assert "user-service" in c.catalog.services()[1]
    assert "user-service-1" in c.agent.services()
    assert c.agent.service.deregister("user-service-1") is True
    assert c.health.service("user-service", passing=True)[1] == []


def test_py_consul_ttl_check_blocking_query_and_index(served: Served) -> None:
    c = consul.Consul(host="127.0.0.1", port=served.port)
    c.agent.service.register(
        "orders",
        service_id="orders-1",
        address="10.0.2.1",
        port=9000,
        check=consul.Check.ttl("30s"),
    )
    # Consul starts a check critical until its first update.
    index, nodes = c.health.service("orders", passing=True)
    assert nodes == []
    assert c.agent.check.ttl_pass("service:orders-1", notes="warmed up") is True

    started = time.monotonic()
    new_index, nodes = c.health.service("orders", index=index, wait="10s", passing=True)
    assert time.monotonic() - started < 5, "a change must end a blocking query early"
    assert int(new_index) > int(index)
    assert [n["Service"]["ID"] for n in nodes] == ["orders-1"]
    ttl = next(ch for ch in nodes[0]["Checks"] if ch["CheckID"] == "service:orders-1")
    assert (ttl["Status"], ttl["Output"], ttl["Type"]) == ("passing", "warmed up", "ttl")

    # No change: the query waits its full wait, then answers with the same index.
    started = time.monotonic()
    same_index, _ = c.health.service("orders", index=new_index, wait="300ms")
    assert time.monotonic() - started >= 0.25
    assert same_index == new_index

    assert c.agent.check.ttl_warn("service:orders-1") is True
    assert c.health.service("orders", passing=True)[1] == []
    assert c.health.service("orders")[1][0]["Checks"][1]["Status"] == "warning"


def test_writes_need_the_token_and_a_refusal_changes_nothing(served_with_token: Served) -> None:
    url = served_with_token.url
    anonymous = consul.Consul(host="127.0.0.1", port=served_with_token.port)
    wrong = consul.Consul(host="127.0.0.1", port=served_with_token.port, token="guess")
    right = consul.Consul(host="127.0.0.1", port=served_with_token.port, token="s3cret")

    for client in (anonymous, wrong):
        with pytest.raises(consul.ACLPermissionDenied):
            client.agent.service.register("pay", service_id="pay-1", address="10.0.3.1", port=1)
    assert anonymous.health.service("pay")[1] == []

    assert (
        right.agent.service.register("pay", service_id="pay-1", address="10.0.3.1", port=1) is True
    )
    # Reads stay open; writes by query parameter work too (Consul's ?token=).
    assert [n["Service"]["ID"] for n in anonymous.health.service("pay")[1]] == ["pay-1"]
    with pytest.raises(consul.ACLPermissionDenied):
        anonymous.agent.service.deregister("pay-1")
    refused = httpx.put(f"{url}/v1/agent/service/deregister/pay-1", params={"token": "nope"})
    assert refused.status_code == 403
    assert [n["Service"]["ID"] for n in anonymous.health.service("pay")[1]] == ["pay-1"]
    accepted = httpx.put(f"{url}/v1/agent/service/deregister/pay-1", params={"token": "s3cret"})
    assert accepted.status_code == 200
    assert anonymous.health.service("pay")[1] == []
