"""Instances to and from JSON, as the embedded and etcd backends store them."""

from __future__ import annotations

import json
from typing import Any

from cairn.discovery._model import Check, HTTPCheck, Instance, TTLCheck

__all__ = ["check_from_dict", "check_to_dict", "dumps_instance", "loads_instance"]


def check_to_dict(check: Check | None) -> dict[str, Any] | None:
    if check is None:
        return None
    if isinstance(check, TTLCheck):
        return {"kind": "ttl", "ttl": check.ttl, "deregister_after": check.deregister_after}
    return {
        "kind": "http",
        "url": check.url,
        "interval": check.interval,
        "timeout": check.timeout,
        "failures_before_critical": check.failures_before_critical,
        "successes_before_passing": check.successes_before_passing,
        "deregister_after": check.deregister_after,
    }


def check_from_dict(data: dict[str, Any] | None) -> Check | None:
    if data is None:
        return None
    fields = {k: v for k, v in data.items() if k != "kind"}
    if data.get("kind") == "ttl":
        return TTLCheck(**fields)
    return HTTPCheck(**fields)


def dumps_instance(instance: Instance) -> str:
    return json.dumps(
        {
            "service": instance.service,
            "id": instance.id,
            "address": instance.address,
            "port": instance.port,
            "tags": list(instance.tags),
            "meta": dict(instance.meta),
            "check": check_to_dict(instance.check),
        },
        separators=(",", ":"),
    )


def loads_instance(text: str | bytes) -> Instance:
    data = json.loads(text)
    return Instance(
        service=data["service"],
        id=data["id"],
        address=data["address"],
        port=data["port"],
        tags=tuple(data.get("tags", ())),
        meta=data.get("meta") or {},
        check=check_from_dict(data.get("check")),
    )
