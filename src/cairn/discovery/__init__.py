"""Service discovery: one registry API over embedded, Consul-compatible and etcd backends.

::

    from cairn.discovery import Instance, TTLCheck, connect

    registry = connect()  # $CAIRN_REGISTRY, default sqlite:///.cairn/registry.db
    await registry.register(
        Instance("user-service", "user-service-1", "10.0.1.5", 8000, check=TTLCheck(ttl=10))
    )
    await registry.heartbeat("user-service-1")  # at least once per ttl
    users = await registry.instances("user-service")  # passing only, from a watched cache

Backends by URL: ``sqlite:///path`` (embedded, the default),
``consul://host:port`` (cairn's registry server, ``cairn registry serve``,
or a real Consul) and ``etcd://host:port``. HTTP checks need the extra:
``pip install 'cairn[discovery]'``.
"""

from __future__ import annotations

from typing import Any

from cairn.discovery._connect import connect
from cairn.discovery._errors import (
    DiscoveryError,
    RegistryRefused,
    RegistryUnavailable,
    UnknownInstance,
)
from cairn.discovery._model import Check, Health, HTTPCheck, Instance, InstanceSet, TTLCheck
from cairn.discovery._registry import DEFAULT_REGISTRY_URL, Registry
from cairn.discovery._sqlite import SQLiteRegistry

__all__ = [
    "DEFAULT_REGISTRY_URL",
    "Check",
    "ConsulRegistry",
    "DiscoveryError",
    "EtcdRegistry",
    "HTTPCheck",
    "Health",
    "Instance",
    "InstanceSet",
    "Registry",
    "RegistryRefused",
    "RegistryUnavailable",
    "SQLiteRegistry",
    "TTLCheck",
    "UnknownInstance",
    "connect",
]

# These need httpx (the extra); importing cairn.discovery must not.
_LAZY = {
    "ConsulRegistry": "cairn.discovery._consul",
    "EtcdRegistry": "cairn.discovery._etcd",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
