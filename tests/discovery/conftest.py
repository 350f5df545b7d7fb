"""Fixtures: one harness per backend, so the contract suite runs against each.

- ``sqlite``: the embedded registry in virtual time (a VirtualClock, a fake probe);
- ``server``: the Consul backend against cairn's registry server (real time);
- ``etcd``: the etcd backend against a real etcd (real time; skipped without the binary).

Real-time backends use short TTLs (1 s) and every wait is bounded.
"""

from __future__ import annotations

import contextlib
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from disc_support import Etcd, Harness, StatusTarget, registry_server, wait_for

from cairn.discovery import Registry
from cairn.discovery._consul import ConsulRegistry
from cairn.discovery._etcd import EtcdRegistry
from cairn.discovery._sqlite import SQLiteRegistry
from cairn.resilience._clock import SYSTEM_CLOCK
from cairn.testing import VirtualClock

BACKENDS = ["sqlite", "server", "etcd"]


@pytest.fixture(scope="session")
def etcd() -> Iterator[Etcd]:
    if shutil.which("etcd") is None:
        pytest.skip("etcd is not installed (Debian: apt-get install etcd-server)")
    server = Etcd()
    try:
        wait_for(server.ready, timeout=30, what="etcd to answer")
        yield server
    finally:
        server.stop()


@pytest.fixture(params=BACKENDS)
async def harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    name = request.param
    stack = contextlib.ExitStack()
    if name == "sqlite":
        clock = VirtualClock()
        path = tmp_path / "registry.db"
        h: Harness

        def make_sqlite(**kwargs: Any) -> Registry:
            return SQLiteRegistry(path, clock=clock, probe=h.fake_probe, **kwargs)

        h = Harness(name, clock, 10.0, make_sqlite)
    elif name == "server":
        server = stack.enter_context(registry_server())

        def make_consul(**kwargs: Any) -> Registry:
            return ConsulRegistry(server.url, wait=5.0, **kwargs)

        h = Harness(name, SYSTEM_CLOCK, 1.0, make_consul)
        h.target = stack.enter_context(StatusTarget())
    else:
        etcd: Etcd = request.getfixturevalue("etcd")
        prefix = f"/cairn-{uuid.uuid4().hex[:12]}/"

        def make_etcd(**kwargs: Any) -> Registry:
            return EtcdRegistry(etcd.url, prefix=prefix, wait=5.0, **kwargs)

        h = Harness(name, SYSTEM_CLOCK, 1.0, make_etcd)
        h.target = stack.enter_context(StatusTarget())
    try:
        yield h
    finally:
        await h.close()
        stack.close()
