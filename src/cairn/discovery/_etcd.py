"""The etcd backend: etcd v3's JSON gateway over httpx (leases, prefix watch).

The ``etcd3`` package no longer imports with current protobuf, so this talks
to the gRPC-JSON gateway every etcd v3.4+ serves under ``/v3/`` (keys and
values base64, 64-bit numbers as strings).

Layout under ``prefix`` (default ``/cairn/``), per instance::

    <prefix><service>/<id>/r   the registration (JSON); on a lease of ttl + deregister_after
    <prefix><service>/<id>/h   its health (JSON); on a lease of the check's ttl

A heartbeat keeps both leases alive. When the process dies, the health key
lapses first (the instance turns critical, as in Consul) and the
registration follows ``deregister_after`` later. One prefix range reads a
service; one prefix watch waits for its next change. etcd's TTLs are whole
seconds: a check's ttl is rounded up.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
from typing import Any

try:
    import httpx
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "the etcd registry backend needs httpx: pip install 'cairn[discovery]'"
    ) from exc

from cairn.discovery._codec import dumps_instance, loads_instance
from cairn.discovery._errors import RegistryRefused, RegistryUnavailable, UnknownInstance
from cairn.discovery._health import Probe, Prober
from cairn.discovery._http import plumbing_transport
from cairn.discovery._model import Entry, Health, HTTPCheck, Instance, TTLCheck
from cairn.discovery._registry import Registry
from cairn.resilience._clock import Clock

__all__ = ["EtcdRegistry"]


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _unb64(text: str) -> str:
    return base64.b64decode(text).decode()


def _range_end(prefix: str) -> str:
    raw = bytearray(prefix.encode())
    raw[-1] += 1
    return base64.b64encode(bytes(raw)).decode()


class _Owned:
    """What this process keeps for an instance it registered: its leases."""

    __slots__ = ("health_lease", "instance", "reg_lease")

    def __init__(self, instance: Instance, reg_lease: int, health_lease: int) -> None:
        self.instance = instance
        self.reg_lease = reg_lease
        self.health_lease = health_lease


class EtcdRegistry(Registry):
    """A registry in etcd v3 (``etcd://host:port[,host:port]``); tries endpoints in turn."""

    scheme = "etcd"

    def __init__(
        self,
        endpoints: list[str] | str = "http://127.0.0.1:2379",
        *,
        prefix: str = "/cairn/",
        timeout: float = 5.0,
        probe: Probe | None = None,
        protection_threshold: float | None = None,
        wait: float = 30.0,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(protection_threshold=protection_threshold, wait=wait, clock=clock)
        self.endpoints = [endpoints] if isinstance(endpoints, str) else list(endpoints)
        if not self.endpoints:
            raise ValueError("endpoints must name at least one etcd, e.g. http://127.0.0.1:2379")
        if not prefix.startswith("/") or not prefix.endswith("/"):
            raise ValueError(f"prefix must start and end with '/', not {prefix!r}")
        if not 0.01 <= timeout <= 600.0:
            raise ValueError(f"timeout must be between 0.01 and 600 seconds, not {timeout!r}")
        self.prefix = prefix
        self.timeout = timeout
        self._current = 0
        self._http = httpx.AsyncClient(timeout=timeout, transport=plumbing_transport())
        self._owned: dict[str, _Owned] = {}
        self._prober = Prober(
            report=self._report, expire=self._expire, clock=self._clock, probe=probe
        )

    def __repr__(self) -> str:
        return f"EtcdRegistry({self.endpoints!r}, prefix={self.prefix!r})"

    # -- the gateway -------------------------------------------------------

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        last: Exception | None = None
        for attempt in range(len(self.endpoints)):
            endpoint = self.endpoints[(self._current + attempt) % len(self.endpoints)]
            try:
                response = await self._http.post(f"{endpoint}/v3/{path}", json=body)
            except httpx.HTTPError as exc:
                last = exc
                continue
            self._current = (self._current + attempt) % len(self.endpoints)
            data: dict[str, Any] = response.json()
            if response.status_code >= 400:
                raise RegistryRefused(response.status_code, str(data.get("message") or data))
            return data
        raise RegistryUnavailable(",".join(self.endpoints), f"{type(last).__name__}: {last}")

    async def _grant(self, ttl: float) -> int:
        data = await self._post("lease/grant", {"TTL": max(1, math.ceil(ttl))})
        return int(data["ID"])

    async def _keepalive(self, lease: int) -> bool:
        """Refresh ``lease``; ``False`` if it already expired."""
        data = await self._post("lease/keepalive", {"ID": lease})
        return int(data.get("result", {}).get("TTL", 0)) > 0

    async def _revoke(self, lease: int) -> None:
        with contextlib.suppress(RegistryRefused):
            await self._post("lease/revoke", {"ID": lease})

    async def _put(self, key: str, value: str, lease: int = 0) -> None:
        body: dict[str, Any] = {"key": _b64(key), "value": _b64(value)}
        if lease:
            body["lease"] = lease
        await self._post("kv/put", body)

    def _key(self, instance: Instance, part: str) -> str:
        return f"{self.prefix}{instance.service}/{instance.id}/{part}"

    # -- writes ------------------------------------------------------------

    async def register(self, instance: Instance) -> None:
        previous = self._owned.pop(instance.id, None)
        if previous is not None and previous.instance.service != instance.service:
            await self.deregister(previous.instance)
        check = instance.check
        reg_lease = health_lease = 0
        if check is not None and check.deregister_after is not None:
            span = check.ttl if isinstance(check, TTLCheck) else check.lapse
            reg_lease = await self._grant(span + check.deregister_after)
        await self._put(self._key(instance, "r"), dumps_instance(instance), reg_lease)
        if isinstance(check, TTLCheck):
            health_lease = await self._grant(check.ttl)
            await self._put(
                self._key(instance, "h"),
                json.dumps({"health": "passing", "output": ""}),
                health_lease,
            )
        self._owned[instance.id] = _Owned(instance, reg_lease, health_lease)
        if previous is not None:
            for lease in (previous.reg_lease, previous.health_lease):
                if lease:
                    await self._revoke(lease)
        if isinstance(check, HTTPCheck):
            self._prober.start(instance)
        else:
            self._prober.stop(instance.id)

    async def _find(self, instance_id: str) -> Instance | None:
        owned = self._owned.get(instance_id)
        if owned is not None:
            return owned.instance
        data = await self._post(
            "kv/range", {"key": _b64(self.prefix), "range_end": _range_end(self.prefix)}
        )
        for kv in data.get("kvs", ()):
            key = _unb64(kv["key"])
            if key.endswith(f"/{instance_id}/r"):
                return loads_instance(_unb64(kv["value"]))
        return None

    async def deregister(self, instance: Instance | str) -> bool:
        instance_id = instance if isinstance(instance, str) else instance.id
        self._prober.stop(instance_id)
        found = instance if isinstance(instance, Instance) else await self._find(instance_id)
        owned = self._owned.pop(instance_id, None)
        if found is None:
            return False
        prefix = f"{self.prefix}{found.service}/{found.id}/"
        data = await self._post(
            "kv/deleterange", {"key": _b64(prefix), "range_end": _range_end(prefix)}
        )
        if owned is not None:
            for lease in (owned.reg_lease, owned.health_lease):
                if lease:
                    await self._revoke(lease)
        return int(data.get("deleted", 0)) > 0

    async def heartbeat(
        self, instance_id: str, *, health: Health = Health.PASSING, output: str = ""
    ) -> None:
        owned = self._owned.get(instance_id)
        instance = owned.instance if owned is not None else await self._find(instance_id)
        if instance is None:
            raise UnknownInstance(instance_id)
        if not isinstance(instance.check, TTLCheck):
            raise ValueError(f"instance {instance_id!r} has no TTL check to heartbeat")
        if owned is None:
            owned = self._owned[instance_id] = _Owned(instance, 0, 0)
        await self._refresh(owned, health, output, instance.check.ttl)

    async def _refresh(self, owned: _Owned, health: Health, output: str, ttl: float) -> None:
        instance = owned.instance
        if owned.reg_lease and not await self._keepalive(owned.reg_lease):
            self._owned.pop(instance.id, None)
            self._prober.stop(instance.id)
            raise UnknownInstance(instance.id)
        exists = await self._post(
            "kv/range", {"key": _b64(self._key(instance, "r")), "count_only": True}
        )
        if int(exists.get("count", 0)) == 0:
            self._owned.pop(instance.id, None)
            self._prober.stop(instance.id)
            raise UnknownInstance(instance.id)
        if not owned.health_lease or not await self._keepalive(owned.health_lease):
            owned.health_lease = await self._grant(ttl)
        value = json.dumps({"health": health.value, "output": output[:4096]})
        await self._put(self._key(instance, "h"), value, owned.health_lease)

    async def _report(
        self, instance: Instance, health: Health, output: str, valid_for: float
    ) -> None:
        owned = self._owned.get(instance.id)
        if owned is None:
            return
        try:
            await self._refresh(owned, health, output, valid_for)
        except UnknownInstance:
            return

    async def _expire(self, instance: Instance) -> None:
        await self.deregister(instance)

    # -- reads -------------------------------------------------------------

    async def _read(self, service: str) -> tuple[int, tuple[Entry, ...]]:
        prefix = f"{self.prefix}{service}/"
        data = await self._post("kv/range", {"key": _b64(prefix), "range_end": _range_end(prefix)})
        records: dict[str, Instance] = {}
        healths: dict[str, tuple[Health, str]] = {}
        for kv in data.get("kvs", ()):
            key = _unb64(kv["key"])[len(prefix) :]
            instance_id, _, part = key.rpartition("/")
            value = _unb64(kv.get("value", ""))
            if part == "r":
                records[instance_id] = loads_instance(value)
            elif part == "h":
                state = json.loads(value)
                healths[instance_id] = (Health(state["health"]), state.get("output", ""))
        entries = []
        for instance_id in sorted(records):
            instance = records[instance_id]
            if instance.check is None:
                entries.append(Entry(instance, Health.PASSING))
            elif instance_id in healths:
                entries.append(Entry(instance, *healths[instance_id]))
            else:
                expired = (
                    "TTL expired" if isinstance(instance.check, TTLCheck) else "not probed yet"
                )
                entries.append(Entry(instance, Health.CRITICAL, expired))
        return int(data["header"]["revision"]), tuple(entries)

    async def _query(
        self, service: str, *, index: int, wait: float
    ) -> tuple[int, tuple[Entry, ...]]:
        if index:
            await self._next_event(service, index, wait)
        return await self._read(service)

    async def _next_event(self, service: str, index: int, wait: float) -> None:
        """Return at the first change to the service's keys after revision ``index``, or after ``wait``."""
        prefix = f"{self.prefix}{service}/"
        body = {
            "create_request": {
                "key": _b64(prefix),
                "range_end": _range_end(prefix),
                "start_revision": index + 1,
            }
        }
        endpoint = self.endpoints[self._current]
        # The watch stream is silent until a change, so the read timeout is the
        # blocking query's wait. (Cancelling an httpx stream from outside, as
        # asyncio.wait_for does, can leave the task stuck closing it.)
        timeout = httpx.Timeout(self.timeout, read=max(wait, 0.001))
        try:
            async with self._http.stream(
                "POST", f"{endpoint}/v3/watch", json=body, timeout=timeout
            ) as response:
                async for line in response.aiter_lines():
                    if not line.strip():
                        continue
                    result = json.loads(line).get("result", {})
                    if (
                        result.get("events")
                        or result.get("canceled")
                        or result.get("compact_revision")
                    ):
                        return
        except httpx.ReadTimeout:
            return
        except httpx.HTTPError as exc:
            raise RegistryUnavailable(
                endpoint, f"watch failed: {type(exc).__name__}: {exc}"
            ) from exc
        # The stream ended without an event (etcd restarting?): don't spin.
        await self._clock.asleep(min(wait, 0.1))

    async def services(self) -> tuple[str, ...]:
        data = await self._post(
            "kv/range",
            {"key": _b64(self.prefix), "range_end": _range_end(self.prefix), "keys_only": True},
        )
        names = {
            _unb64(kv["key"])[len(self.prefix) :].split("/", 1)[0] for kv in data.get("kvs", ())
        }
        return tuple(sorted(names))

    async def _close(self) -> None:
        await self._prober.aclose()
        await self._http.aclose()
