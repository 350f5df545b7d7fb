"""The Consul backend: Consul's HTTP API over httpx (cairn's registry server or a real Consul).

Checks are run by the agent (cairn's server or Consul), not by this process:
a TTL check is registered as Consul's ``TTL`` check and :meth:`heartbeat`
updates it; an HTTP check becomes Consul's ``HTTP`` check. Lookups are
blocking queries on ``/v1/health/service/<name>``.
"""

from __future__ import annotations

from typing import Any

try:
    import httpx
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "the Consul registry backend needs httpx: pip install 'cairn[discovery]'"
    ) from exc

from cairn.discovery._consul_json import check_id, check_payload, entry_from_health
from cairn.discovery._errors import RegistryRefused, RegistryUnavailable, UnknownInstance
from cairn.discovery._health import format_duration
from cairn.discovery._http import plumbing_transport
from cairn.discovery._model import Entry, Health, Instance
from cairn.discovery._registry import Registry
from cairn.resilience._clock import Clock

__all__ = ["ConsulRegistry"]

_VERBS = {Health.PASSING: "pass", Health.WARNING: "warn", Health.CRITICAL: "fail"}


class ConsulRegistry(Registry):
    """A registry behind Consul's HTTP API (``consul://host:port``).

    ``token``: sent as ``X-Consul-Token`` on every request. ``timeout``:
    seconds for one request (a blocking query adds its wait).
    """

    scheme = "consul"

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8500",
        *,
        token: str | None = None,
        timeout: float = 10.0,
        protection_threshold: float | None = None,
        wait: float = 30.0,
        clock: Clock | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(protection_threshold=protection_threshold, wait=wait, clock=clock)
        if not 0.01 <= timeout <= 600.0:
            raise ValueError(f"timeout must be between 0.01 and 600 seconds, not {timeout!r}")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        headers = {"X-Consul-Token": token} if token else {}
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers=headers,
            timeout=timeout,
            transport=transport or plumbing_transport(),
        )

    def __repr__(self) -> str:
        return f"ConsulRegistry({self.base_url!r})"

    async def _call(
        self, method: str, path: str, *, timeout: float | None = None, **kwargs: Any
    ) -> httpx.Response:
        try:
            response = await self._http.request(
                method, path, timeout=self.timeout if timeout is None else timeout, **kwargs
            )
        except httpx.HTTPError as exc:
            raise RegistryUnavailable(self.base_url, f"{type(exc).__name__}: {exc}") from exc
        if (
            response.status_code in (401, 403)
            or response.status_code == 400
            or response.status_code == 413
        ):
            raise RegistryRefused(response.status_code, response.text)
        return response

    @staticmethod
    def _ok(response: httpx.Response) -> None:
        if response.status_code >= 300:
            raise RegistryRefused(response.status_code, response.text)

    async def register(self, instance: Instance) -> None:
        payload: dict[str, Any] = {
            "Name": instance.service,
            "ID": instance.id,
            "Address": instance.address,
            "Port": instance.port,
            "Tags": list(instance.tags),
            "Meta": dict(instance.meta),
        }
        if instance.check is not None:
            payload["Check"] = check_payload(instance.check, instance=instance)
        self._ok(await self._call("PUT", "/v1/agent/service/register", json=payload))

    async def deregister(self, instance: Instance | str) -> bool:
        instance_id = instance if isinstance(instance, str) else instance.id
        response = await self._call("PUT", f"/v1/agent/service/deregister/{instance_id}")
        if response.status_code == 404:
            return False
        self._ok(response)
        return True

    async def heartbeat(
        self, instance_id: str, *, health: Health = Health.PASSING, output: str = ""
    ) -> None:
        params = {"note": output} if output else None
        response = await self._call(
            "PUT", f"/v1/agent/check/{_VERBS[health]}/{check_id(instance_id)}", params=params
        )
        if response.status_code == 404 or (
            response.status_code == 500 and "unknown" in response.text.lower()
        ):
            raise UnknownInstance(instance_id)
        if response.status_code == 500 and "TTL" in response.text:
            raise ValueError(f"instance {instance_id!r} has no TTL check to heartbeat")
        self._ok(response)

    async def services(self) -> tuple[str, ...]:
        response = await self._call("GET", "/v1/catalog/services")
        self._ok(response)
        return tuple(sorted(response.json()))

    async def _query(
        self, service: str, *, index: int, wait: float
    ) -> tuple[int, tuple[Entry, ...]]:
        params: dict[str, str] = {}
        timeout = self.timeout
        if index:
            params = {"index": str(index), "wait": format_duration(max(wait, 0.001))}
            # Consul may add up to wait/16 of jitter before answering.
            timeout += wait + wait / 16
        response = await self._call(
            "GET", f"/v1/health/service/{service}", params=params, timeout=timeout
        )
        self._ok(response)
        try:
            new_index = int(response.headers.get("X-Consul-Index", "0"))
            entries = tuple(
                sorted((entry_from_health(i) for i in response.json()), key=lambda e: e.instance.id)
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise RegistryUnavailable(self.base_url, f"unreadable answer: {exc}") from exc
        return new_index, entries

    async def _close(self) -> None:
        await self._http.aclose()
