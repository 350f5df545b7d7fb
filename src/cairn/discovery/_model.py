"""What a registry holds and answers: instances, their checks, their health.

Records are frozen and slotted: a snapshot handed to a thousand callers is
shared, never copied, and nobody can change it under another's feet.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import cast, overload
from urllib.parse import urlsplit

__all__ = [
    "Check",
    "HTTPCheck",
    "Health",
    "Instance",
    "InstanceSet",
    "TTLCheck",
]

# Names travel in URLs and etcd keys: no slash, no space, nothing to escape.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,199}")
_MAX_TAGS = 64
_MAX_META = 64


def _check_name(kind: str, value: object) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ValueError(
            f"{kind} must be 1-200 characters of letters, digits and . _ : @ - "
            f"starting with a letter or digit, not {value!r}"
        )
    return value


def _check_seconds(kind: str, value: float, *, low: float, high: float) -> float:
    if not isinstance(value, int | float) or math.isnan(value) or not low <= value <= high:
        raise ValueError(f"{kind} must be between {low} and {high} seconds, not {value!r}")
    return float(value)


class Health(enum.Enum):
    """The health of an instance, in Consul's words (worst last)."""

    PASSING = "passing"
    WARNING = "warning"
    CRITICAL = "critical"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class TTLCheck:
    """Healthy while heartbeats arrive: critical ``ttl`` seconds after the last one.

    ``deregister_after``: remove the instance once it has been critical that
    long (``None``: keep it, critical, until deregistered).
    """

    ttl: float = 10.0
    deregister_after: float | None = None

    def __post_init__(self) -> None:
        _check_seconds("TTLCheck.ttl", self.ttl, low=0.05, high=86_400.0)
        if self.deregister_after is not None:
            _check_seconds(
                "TTLCheck.deregister_after", self.deregister_after, low=0.0, high=30 * 86_400.0
            )


@dataclass(frozen=True, slots=True)
class HTTPCheck:
    """Healthy while ``GET url`` answers 2xx (429 is a warning, the rest critical).

    Probed every ``interval`` seconds with a ``timeout``; it takes
    ``failures_before_critical`` failures in a row to turn critical and
    ``successes_before_passing`` successes in a row to come back.
    ``deregister_after``: remove the instance once critical that long.
    """

    url: str
    interval: float = 10.0
    timeout: float = 5.0
    failures_before_critical: int = 1
    successes_before_passing: int = 1
    deregister_after: float | None = None

    def __post_init__(self) -> None:
        parts = urlsplit(self.url) if isinstance(self.url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"HTTPCheck.url must be an http(s) URL with a host, not {self.url!r}")
        _check_seconds("HTTPCheck.interval", self.interval, low=0.01, high=86_400.0)
        _check_seconds("HTTPCheck.timeout", self.timeout, low=0.001, high=3_600.0)
        for name in ("failures_before_critical", "successes_before_passing"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 1 <= value <= 1_000:
                raise ValueError(f"HTTPCheck.{name} must be an int from 1 to 1000, not {value!r}")
        if self.deregister_after is not None:
            _check_seconds(
                "HTTPCheck.deregister_after", self.deregister_after, low=0.0, high=30 * 86_400.0
            )

    @property
    def lapse(self) -> float:
        """How long a reported status stays valid if nobody probes again."""
        # Two missed rounds: one late probe is not a death.
        return 2 * self.interval + self.timeout


Check = TTLCheck | HTTPCheck
"""A health check: by heartbeat (:class:`TTLCheck`) or by probe (:class:`HTTPCheck`)."""


@dataclass(frozen=True, slots=True)
class Instance:
    """One running copy of a service, where to reach it, and how its health is judged.

    ``id`` is unique in the registry. With ``check=None`` the instance is
    passing for as long as it is registered (Consul's service without checks).
    ``meta`` is copied into a read-only mapping.
    """

    service: str
    id: str
    address: str
    port: int
    tags: tuple[str, ...] = ()
    meta: Mapping[str, str] = field(default_factory=dict)
    check: Check | None = None

    def __post_init__(self) -> None:
        _check_name("Instance.service", self.service)
        _check_name("Instance.id", self.id)
        if not isinstance(self.address, str) or not 0 < len(self.address) <= 255:
            raise ValueError(f"Instance.address must be a host name or IP, not {self.address!r}")
        if (
            isinstance(self.port, bool)
            or not isinstance(self.port, int)
            or not 0 <= self.port < 65536
        ):
            raise ValueError(f"Instance.port must be an int from 0 to 65535, not {self.port!r}")
        if isinstance(cast(object, self.tags), str):
            raise ValueError(
                f"Instance.tags must be a sequence of strings, not the string {self.tags!r}"
            )
        tags = tuple(self.tags)
        if len(tags) > _MAX_TAGS or not all(isinstance(t, str) and 0 < len(t) <= 256 for t in tags):
            raise ValueError(
                f"Instance.tags must be at most {_MAX_TAGS} non-empty strings, not {tags!r}"
            )
        meta = dict(self.meta)
        if len(meta) > _MAX_META or not all(
            isinstance(k, str) and isinstance(v, str) and k and len(k) <= 128 and len(v) <= 512
            for k, v in meta.items()
        ):
            raise ValueError(
                f"Instance.meta must map at most {_MAX_META} string keys (<= 128 chars) "
                f"to string values (<= 512 chars), not {meta!r}"
            )
        if self.check is not None and not isinstance(self.check, TTLCheck | HTTPCheck):
            raise ValueError(
                f"Instance.check must be a TTLCheck, an HTTPCheck or None, not {self.check!r}"
            )
        object.__setattr__(self, "tags", tags)
        object.__setattr__(self, "meta", MappingProxyType(meta))

    def __hash__(self) -> int:
        return hash((self.service, self.id, self.address, self.port, self.tags))

    @property
    def host_port(self) -> str:
        """``address:port``, bracketing an IPv6 address."""
        if ":" in self.address:
            return f"[{self.address}]:{self.port}"
        return f"{self.address}:{self.port}"


@dataclass(frozen=True, slots=True)
class Entry:
    """An instance as the registry sees it now (internal: backends produce these)."""

    instance: Instance
    health: Health
    output: str = ""


class InstanceSet(Sequence[Instance]):
    """A registry's answer for one service: a read-only sequence of instances.

    Beyond the instances it says what the registry knew when it answered:
    ``registered`` (how many are registered, healthy or not), ``healthy`` (how
    many pass), each instance's :meth:`health`, the registry's ``version`` (its
    blocking-query index: it grows with every change), and ``protected``: the protection threshold is
    engaged, too many instances failed at once, and these are the last known
    healthy ones rather than the (too few) passing now.
    """

    __slots__ = ("_health", "_items", "healthy", "protected", "registered", "service", "version")

    def __init__(
        self,
        service: str,
        instances: Iterable[Instance],
        *,
        health: Mapping[str, Health],
        version: int,
        registered: int,
        healthy: int,
        protected: bool = False,
    ) -> None:
        self.service = service
        self._items = tuple(instances)
        self._health = health
        self.version = version
        self.registered = registered
        self.healthy = healthy
        self.protected = protected

    @overload
    def __getitem__(self, i: int) -> Instance: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[Instance]: ...
    def __getitem__(self, i: int | slice) -> Instance | Sequence[Instance]:
        return self._items[i]

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Instance]:
        return iter(self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, InstanceSet):
            return (
                self.service == other.service
                and self._items == other._items
                and self.protected == other.protected
                and dict(self._health) == dict(other._health)
            )
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def health(self, instance_id: str) -> Health | None:
        """The health of instance ``instance_id``, or ``None`` if it is not registered."""
        return self._health.get(instance_id)

    @property
    def ids(self) -> tuple[str, ...]:
        """The instances' ids, in order."""
        return tuple(i.id for i in self._items)

    def describe(self) -> str:
        """One line for an error message: what the registry said about the service."""
        text = f"{self.service!r}: {self.registered} registered, {self.healthy} passing"
        if self.protected:
            text += f"; protection threshold engaged, serving {len(self)} last known healthy"
        return text

    def __repr__(self) -> str:
        return f"InstanceSet({self.describe()}, version={self.version}, ids={list(self.ids)!r})"
