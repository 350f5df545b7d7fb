"""Consul's JSON shapes: reading registrations, writing health and catalog entries.

Shared by the server (which speaks Consul's API) and the Consul backend
(which reads it). Consul matches request keys case-insensitively (py-consul
sends ``name``, ``id``; Consul's own docs write ``Name``, ``ID``), so keys
are folded before reading.
"""

from __future__ import annotations

from typing import Any

from cairn.discovery._health import format_duration, parse_duration
from cairn.discovery._model import Check, Entry, Health, HTTPCheck, Instance, TTLCheck

__all__ = [
    "NODE",
    "check_id",
    "check_payload",
    "entry_from_health",
    "health_entry",
    "instance_from_register",
    "node_json",
    "service_json",
]

NODE = "cairn"
"""The one node cairn's registry server pretends to be."""

_SERF: dict[str, Any] = {
    "Node": NODE,
    "CheckID": "serfHealth",
    "Name": "Serf Health Status",
    "Status": "passing",
    "Notes": "",
    "Output": "Agent alive and reachable",
    "ServiceID": "",
    "ServiceName": "",
    "ServiceTags": [],
    "Type": "",
}


def _fold(data: Any, what: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValueError(f"{what} must be a JSON object")
    return {str(k).lower(): v for k, v in data.items()}


def check_id(instance_id: str) -> str:
    """The id Consul gives the check of a service registered with one check."""
    return f"service:{instance_id}"


def _check_from_register(raw: Any) -> tuple[Check, Health, str | None]:
    data = _fold(raw, "Check")
    dereg_raw = data.get("deregistercriticalserviceafter")
    dereg = parse_duration(dereg_raw) if dereg_raw else None
    status = Health(str(data.get("status") or "critical").lower())
    custom = data.get("checkid") or data.get("id")
    if data.get("ttl"):
        return TTLCheck(ttl=parse_duration(data["ttl"]), deregister_after=dereg), status, custom
    if data.get("http"):
        check = HTTPCheck(
            url=str(data["http"]),
            interval=parse_duration(data.get("interval") or "10s"),
            timeout=parse_duration(data.get("timeout") or "10s"),
            failures_before_critical=max(1, int(data.get("failuresbeforecritical") or 1)),
            successes_before_passing=max(1, int(data.get("successbeforepassing") or 1)),
            deregister_after=dereg,
        )
        return check, status, custom
    raise ValueError("cairn's registry supports TTL and HTTP checks only (no script, TCP or gRPC)")


def instance_from_register(
    body: Any, *, default_address: str
) -> tuple[Instance, Health | None, str | None]:
    """An :class:`Instance` from ``PUT /v1/agent/service/register``'s body.

    Also returns the check's initial status (``None`` without a check) and a
    custom check id, if the client named one.
    """
    data = _fold(body, "the service definition")
    name = data.get("name")
    if not name:
        raise ValueError("missing service Name")
    checks: list[Any] = []
    if data.get("check"):
        checks.append(data["check"])
    checks.extend(data.get("checks") or [])
    if len(checks) > 1:
        raise ValueError("cairn's registry supports one check per service")
    check: Check | None = None
    status: Health | None = None
    custom: str | None = None
    if checks:
        check, status, custom = _check_from_register(checks[0])
    instance = Instance(
        service=str(name),
        id=str(data.get("id") or name),
        address=str(data.get("address") or default_address),
        port=int(data.get("port") or 0),
        tags=tuple(str(t) for t in data.get("tags") or ()),
        meta={str(k): str(v) for k, v in (data.get("meta") or {}).items()},
        check=check,
    )
    return instance, status, custom


def check_payload(check: Check, *, instance: Instance) -> dict[str, Any]:
    """The ``Check`` object the Consul backend registers for ``check``."""
    payload: dict[str, Any] = {"CheckID": check_id(instance.id), "Name": f"cairn {instance.id}"}
    if isinstance(check, TTLCheck):
        payload.update(TTL=format_duration(check.ttl), Status="passing")
    else:
        payload.update(
            HTTP=check.url,
            Interval=format_duration(check.interval),
            Timeout=format_duration(check.timeout),
            FailuresBeforeCritical=check.failures_before_critical,
            SuccessBeforePassing=check.successes_before_passing,
        )
    if check.deregister_after is not None:
        payload["DeregisterCriticalServiceAfter"] = format_duration(check.deregister_after)
    return payload


def node_json(address: str) -> dict[str, Any]:
    return {
        "ID": "00000000-0000-0000-0000-00000000ca17",
        "Node": NODE,
        "Address": address,
        "Datacenter": "dc1",
        "TaggedAddresses": {"lan": address, "wan": address},
        "Meta": {},
    }


def service_json(instance: Instance) -> dict[str, Any]:
    return {
        "ID": instance.id,
        "Service": instance.service,
        "Tags": list(instance.tags),
        "Address": instance.address,
        "Meta": dict(instance.meta),
        "Port": instance.port,
        "Weights": {"Passing": 1, "Warning": 1},
        "EnableTagOverride": False,
    }


def _check_json(entry: Entry, custom: str | None) -> dict[str, Any]:
    instance = entry.instance
    kind = "ttl" if isinstance(instance.check, TTLCheck) else "http"
    return {
        "Node": NODE,
        "CheckID": custom or check_id(instance.id),
        "Name": f"Service '{instance.service}' check",
        "Status": entry.health.value,
        "Notes": "",
        "Output": entry.output,
        "ServiceID": instance.id,
        "ServiceName": instance.service,
        "ServiceTags": list(instance.tags),
        "Type": kind,
    }


def health_entry(
    entry: Entry, *, node_address: str, custom_check: str | None, index: int
) -> dict[str, Any]:
    """One element of ``GET /v1/health/service/<name>``."""
    checks = [dict(_SERF)]
    if entry.instance.check is not None:
        checks.append(_check_json(entry, custom_check))
    for item in checks:
        item["CreateIndex"] = item["ModifyIndex"] = index
    service = service_json(entry.instance)
    service["CreateIndex"] = service["ModifyIndex"] = index
    return {"Node": node_json(node_address), "Service": service, "Checks": checks}


def entry_from_health(item: dict[str, Any]) -> Entry:
    """Read one element of ``GET /v1/health/service/<name>`` (from any Consul)."""
    service = item["Service"]
    address = service.get("Address") or item.get("Node", {}).get("Address") or ""
    instance = Instance(
        service=service["Service"],
        id=service["ID"],
        address=address,
        port=int(service.get("Port") or 0),
        tags=tuple(service.get("Tags") or ()),
        meta=service.get("Meta") or {},
    )
    worst = Health.PASSING
    outputs: list[str] = []
    order = (Health.PASSING, Health.WARNING, Health.CRITICAL)
    for check in item.get("Checks") or ():
        status = Health(check.get("Status", "critical"))
        if order.index(status) > order.index(worst):
            worst = status
        if status is not Health.PASSING and check.get("Output"):
            outputs.append(str(check["Output"]))
    return Entry(instance, worst, "; ".join(outputs))
