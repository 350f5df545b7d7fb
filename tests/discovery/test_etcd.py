"""etcd specifics: endpoint failover, leases renewed or lost, heartbeats from a non-owner."""

from __future__ import annotations

import uuid

import pytest
from disc_support import Etcd, free_port, until

from cairn.discovery import Health, Instance, RegistryUnavailable, TTLCheck, UnknownInstance
from cairn.discovery._etcd import EtcdRegistry

pytestmark = pytest.mark.slow


def _prefix() -> str:
    return f"/cairn-{uuid.uuid4().hex[:12]}/"


async def test_a_dead_endpoint_is_skipped_and_all_dead_is_unavailable(etcd: Etcd) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    registry = EtcdRegistry([dead, etcd.url], prefix=_prefix())
    nowhere = EtcdRegistry([dead], prefix=_prefix())
    try:
        assert "EtcdRegistry" in repr(registry)
        await registry.register(Instance("users", "u1", "10.0.0.1", 80))
        assert (await registry.instances("users")).ids == ("u1",)
        with pytest.raises(RegistryUnavailable, match="unavailable"):
            await nowhere.register(Instance("users", "u1", "10.0.0.1", 80))
    finally:
        await registry.aclose()
        await nowhere.aclose()


async def test_re_registering_moves_and_replaces_cleanly(etcd: Etcd) -> None:
    prefix = _prefix()
    registry = EtcdRegistry(etcd.url, prefix=prefix)
    try:
        await registry.register(
            Instance("users", "u1", "10.0.0.1", 80, check=TTLCheck(ttl=30, deregister_after=60))
        )
        await registry.register(
            Instance("users", "u1", "10.0.0.2", 80, check=TTLCheck(ttl=30, deregister_after=60))
        )
        assert [i.address for i in await registry.fetch("users")] == ["10.0.0.2"]
        await registry.register(Instance("accounts", "u1", "10.0.0.3", 80))
        assert await registry.services() == ("accounts",)
        assert len(await registry.fetch("users", passing=False)) == 0
    finally:
        await registry.aclose()


async def test_a_heartbeat_after_the_health_lease_lapsed_brings_it_back(etcd: Etcd) -> None:
    registry = EtcdRegistry(etcd.url, prefix=_prefix(), wait=5)
    try:
        await registry.register(Instance("users", "u1", "10.0.0.1", 80, check=TTLCheck(ttl=1)))
        await until(
            registry, "users", lambda v: v.registered == 1 and v.healthy == 0, passing=False
        )
        lapsed = await registry.instances("users", passing=False)
        assert lapsed.health("u1") is Health.CRITICAL
        await registry.heartbeat("u1")
        await until(registry, "users", lambda v: v.ids == ("u1",))
    finally:
        await registry.aclose()


async def test_any_process_can_heartbeat_or_deregister_by_id(etcd: Etcd) -> None:
    prefix = _prefix()
    owner = EtcdRegistry(etcd.url, prefix=prefix)
    other = EtcdRegistry(etcd.url, prefix=prefix)
    try:
        await owner.register(Instance("users", "u1", "10.0.0.1", 80, check=TTLCheck(ttl=30)))
        await owner.register(Instance("users", "u2", "10.0.0.2", 80))
        await other.heartbeat("u1", health=Health.WARNING, output="slow")
        assert (await owner.fetch("users", passing=False)).health("u1") is Health.WARNING
        with pytest.raises(ValueError, match="no TTL check"):
            await other.heartbeat("u2")
        with pytest.raises(UnknownInstance):
            await other.heartbeat("u404")
        assert await other.deregister("u2") is True
        assert await other.deregister("u2") is False
        assert (await owner.fetch("users", passing=False)).ids == ("u1",)
    finally:
        await owner.aclose()
        await other.aclose()
