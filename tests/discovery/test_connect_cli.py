"""connect(url) and CAIRN_REGISTRY; extras named when missing; the ``registry`` CLI group."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import cairn.discovery as discovery
from cairn.discovery import (
    DEFAULT_REGISTRY_URL,
    Instance,
    SQLiteRegistry,
    TTLCheck,
    connect,
)
from cairn.discovery._cli import registry as registry_cli
from cairn.discovery._consul import ConsulRegistry
from cairn.discovery._etcd import EtcdRegistry


async def test_sqlite_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CAIRN_REGISTRY", raising=False)
    default = connect()
    assert isinstance(default, SQLiteRegistry)
    assert default.path == ".cairn/registry.db" == DEFAULT_REGISTRY_URL.removeprefix("sqlite:///")
    assert (tmp_path / ".cairn" / "registry.db").exists()
    absolute = connect(f"sqlite:///{tmp_path}/abs.db?poll=0.5&protection=0.4&wait=2")
    assert isinstance(absolute, SQLiteRegistry)
    assert absolute.path == f"{tmp_path}/abs.db"
    assert (absolute.poll_interval, absolute.protection_threshold, absolute.wait) == (0.5, 0.4, 2.0)
    memory = connect("sqlite://", wait=3.0)
    assert isinstance(memory, SQLiteRegistry)
    assert memory.path == ":memory:"
    assert memory.wait == 3.0
    monkeypatch.setenv("CAIRN_REGISTRY", "sqlite:///from-env.db")
    from_env = connect()
    assert isinstance(from_env, SQLiteRegistry)
    assert from_env.path == "from-env.db"
    for registry in (default, absolute, memory, from_env):
        await registry.aclose()


async def test_consul_and_etcd_urls() -> None:
    plain = connect("consul://10.1.2.3?token=abc&protection=0.5")
    assert isinstance(plain, ConsulRegistry)
    assert plain.base_url == "http://10.1.2.3:8500"
    assert plain.protection_threshold == 0.5
    assert plain._http.headers["X-Consul-Token"] == "abc"
    tls = connect("consul+https://registry.example:8501")
    assert isinstance(tls, ConsulRegistry)
    assert tls.base_url == "https://registry.example:8501"
    etcd = connect("etcd://10.0.0.1,10.0.0.2:2380?prefix=/svc/")
    assert isinstance(etcd, EtcdRegistry)
    assert etcd.endpoints == ["http://10.0.0.1:2379", "http://10.0.0.2:2380"]
    assert etcd.prefix == "/svc/"
    for registry in (plain, tls, etcd):
        await registry.aclose()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://localhost", "unknown scheme"),
        ("sqlite://host/x.db", "no host"),
        ("sqlite:///x.db?colour=blue", "unknown parameter"),
        ("sqlite:///x.db?wait=soon", "must be a number"),
        ("consul://", "needs a host"),
        ("etcd://", "needs a host"),
    ],
)
def test_bad_urls_say_what_to_do(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        connect(url)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"endpoints": []}, "endpoints"),
        ({"prefix": "cairn"}, "prefix"),
        ({"timeout": 0}, "timeout"),
    ],
)
def test_etcd_settings_are_checked(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EtcdRegistry(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("module", ["cairn.discovery._consul", "cairn.discovery._etcd"])
def test_a_backend_without_its_extra_names_the_extra(
    module: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "httpx", None)
    monkeypatch.delitem(sys.modules, module)
    with pytest.raises(ImportError, match=r"pip install 'cairn\[discovery\]'"):
        importlib.import_module(module)


def test_lazy_exports_resolve() -> None:
    assert discovery.ConsulRegistry is ConsulRegistry
    assert discovery.EtcdRegistry is EtcdRegistry
    with pytest.raises(AttributeError):
        discovery.NoSuchThing  # noqa: B018


def test_cli_list_shows_services_and_health(tmp_path: Path) -> None:
    import asyncio

    url = f"sqlite:///{tmp_path}/r.db"

    async def fill() -> None:
        async with connect(url) as registry:
            await registry.register(Instance("web", "web-1", "10.0.0.1", 80, tags=("blue",)))
            await registry.register(
                Instance("web", "web-2", "10.0.0.2", 80, check=TTLCheck(ttl=0.05))
            )
            await registry.register(Instance("db", "db-1", "10.0.0.9", 5432))

    asyncio.run(fill())
    result = CliRunner().invoke(registry_cli, ["list", "--url", url])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "db  (1/1 passing)"
    assert "web  (" in lines[2]
    assert "  web-1  10.0.0.1:80  passing  [blue]" in lines


def test_cli_serve_refuses_an_empty_token() -> None:
    result = CliRunner().invoke(registry_cli, ["serve", "--token", ""])
    assert result.exit_code != 0
    assert "must not be empty" in result.output


def test_cli_serve_builds_a_local_server_with_the_token(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import uvicorn

    seen: dict[str, object] = {}

    def fake_run(self: uvicorn.Server) -> None:
        seen["host"], seen["port"] = self.config.host, self.config.port
        seen["token"] = self.config.app.state.registry_server.token

    monkeypatch.setattr(uvicorn.Server, "run", fake_run)
    result = CliRunner().invoke(
        registry_cli, ["serve", "--port", "0", "--data", str(tmp_path / "r.db"), "--token", "t"]
    )
    assert result.exit_code == 0, result.output
    assert seen == {"host": "127.0.0.1", "port": 0, "token": "t"}
    assert "writes need a token" in result.output
    assert (tmp_path / "r.db").exists()
