"""Where the dashboard's data comes from: the collector's and the registry's HTTP APIs.

The browser only ever talks to the dashboard; these calls are made server-side with one
shared ``httpx.AsyncClient``. :class:`Upstream` turns an unreachable or failing upstream
into an :class:`UpstreamError` that says which one and what to do.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx

from cairn._errors import CairnError

__all__ = ["Upstream", "UpstreamError"]


# How reads relate to writes in each backend the dashboard can read, as the
# registry page states it.
_CONSISTENCY = {
    "cairn": (
        "one node: every read sees every acknowledged write (linearizable), "
        "but the registry is a single point of failure"
    ),
    "Consul": (
        "Consul's default read mode, answered by the leader: linearizable except for a "
        "brief window after a leader change (the dashboard does not ask for ?consistent)"
    ),
}


class UpstreamError(CairnError):
    """The collector or the registry could not answer; ``status`` is what to return."""

    def __init__(self, message: str, *, status: int = 502, body: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.body = body if body is not None else {"error": message}


def _worst(statuses: list[str]) -> str:
    order = ["passing", "warning", "critical"]
    worst = 0
    for status in statuses:
        worst = max(worst, order.index(status) if status in order else 2)
    return order[worst]


class Upstream:
    """Read-only client of the collector (``collector``) and the registry (``registry``).

    ``registry=None`` means there is none: registry views show that instead of failing.
    """

    def __init__(
        self,
        *,
        collector: str,
        registry: str | None,
        timeout: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.collector = collector.rstrip("/")
        self.registry = registry.rstrip("/") if registry else None
        self._client = httpx.AsyncClient(timeout=timeout, transport=transport)
        self._backend: dict[str, Any] | None = None

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _get(self, what: str, url: str, params: Mapping[str, str] | None) -> httpx.Response:
        try:
            return await self._client.get(url, params=params)
        except httpx.HTTPError as exc:
            hint = (
                "start it with `cairn collector` or pass --collector URL"
                if what == "collector"
                else "start it with `cairn registry serve` or pass --registry URL"
            )
            raise UpstreamError(f"cannot reach the {what} at {url}: {exc!s}; {hint}") from exc

    async def collector_get(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        """GET ``path`` from the collector; its 4xx answers pass through unchanged."""
        response = await self._get("collector", self.collector + path, params)
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code >= 400:
            if response.status_code < 500 and isinstance(body, dict):
                raise UpstreamError(
                    str(body.get("error", "")), status=response.status_code, body=body
                )
            raise UpstreamError(
                f"the collector answered {response.status_code} for {path}: {response.text[:200]}"
            )
        if body is None:
            raise UpstreamError(f"the collector sent no JSON for {path}")
        return body

    async def exemplars(
        self, metric: str, *, service: str | None, since: str, limit: int = 200
    ) -> list[dict[str, Any]]:
        """The collector's stored exemplars of ``metric`` (newest first); ``[]`` when it
        has none for that metric, or is too old to keep exemplars (404)."""
        params = {"since": since, "limit": str(limit)}
        if service:
            params["service"] = service
        try:
            body = await self.collector_get(
                f"/api/metrics/{quote(metric, safe='')}/exemplars", params
            )
        except UpstreamError as exc:
            if exc.status == 404:
                return []
            raise
        found = body.get("exemplars") if isinstance(body, dict) else None
        return [e for e in found if isinstance(e, dict)] if isinstance(found, list) else []

    async def _registry_get(self, path: str) -> Any:
        if self.registry is None:
            raise UpstreamError("no registry configured; pass --registry URL", status=503)
        response = await self._get("registry", self.registry + path, None)
        if response.status_code >= 400:
            raise UpstreamError(
                f"the registry answered {response.status_code} for {path}: {response.text[:200]}"
            )
        return response.json()

    async def backend(self) -> dict[str, Any]:
        """Which registry this is: cairn's own server or a Consul agent (asked once)."""
        if self._backend is None:
            assert self.registry is not None
            kind, version = "cairn registry server (Consul HTTP API)", ""
            try:
                response = await self._client.get(self.registry + "/v1/agent/self")
                if response.status_code == 200:
                    config = response.json().get("Config", {})
                    kind, version = "Consul", str(config.get("Version", ""))
            except (httpx.HTTPError, ValueError, AttributeError):
                pass
            self._backend = {
                "url": self.registry,
                "kind": kind,
                "version": version,
                "consistency": _CONSISTENCY["Consul" if kind == "Consul" else "cairn"],
            }
        return self._backend

    async def instances(self) -> list[dict[str, Any]]:
        """Every registered instance with its checks, tags, meta and overall health."""
        names = sorted(await self._registry_get("/v1/catalog/services"))
        answers = await asyncio.gather(
            *(self._registry_get(f"/v1/health/service/{quote(n, safe='')}") for n in names)
        )
        found = []
        for items in answers:
            for item in items:
                service = item.get("Service") or {}
                checks = [
                    {
                        "id": str(c.get("CheckID", "")),
                        "name": str(c.get("Name", "")),
                        "status": str(c.get("Status", "critical")),
                        "output": str(c.get("Output", "")),
                        "type": str(c.get("Type", "")),
                    }
                    for c in item.get("Checks") or ()
                ]
                meta = {str(k): str(v) for k, v in (service.get("Meta") or {}).items()}
                address = service.get("Address") or (item.get("Node") or {}).get("Address", "")
                found.append(
                    {
                        "service": str(service.get("Service", "")),
                        "id": str(service.get("ID", "")),
                        "address": f"{address}:{service.get('Port', 0)}",
                        "tags": [str(t) for t in service.get("Tags") or ()],
                        "meta": meta,
                        "version": meta.get("version", ""),
                        "checks": checks,
                        "health": _worst([c["status"] for c in checks]),
                    }
                )
        return found
