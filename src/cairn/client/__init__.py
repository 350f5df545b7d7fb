"""The service client: call services by name, with balancing, retries and breakers.

::

    from cairn.client import ServiceClient

    async with ServiceClient("sqlite:///.cairn/registry.db") as client:
        response = await client.get("inventory", "/inventory/items")

A name is resolved from the registry's watched cache, an instance is picked
(round robin, random, smooth weighted or power-of-two-choices least
outstanding), and the call runs through a total timeout, retries to other
instances (with backoff, ``Retry-After`` and a retry budget), a per-instance
circuit breaker and an attempt timeout. Outlier ejection stops traffic to a
failing instance before the registry notices. Needs httpx:
``pip install 'cairn[discovery]'``.
"""

from __future__ import annotations

from cairn.client._async import ServiceClient
from cairn.client._balance import (
    Balancer,
    LeastOutstanding,
    RandomChoice,
    RoundRobin,
    WeightedRoundRobin,
)
from cairn.client._core import (
    DEFAULT_RETRY_STATUSES,
    IDEMPOTENT_METHODS,
    BreakerFactory,
    InstanceStats,
    Options,
)
from cairn.client._errors import ClientError, NoHealthyInstance
from cairn.client._outlier import InstanceEjected, OutlierDetection
from cairn.client._sync import SyncServiceClient

__all__ = [
    "DEFAULT_RETRY_STATUSES",
    "IDEMPOTENT_METHODS",
    "Balancer",
    "BreakerFactory",
    "ClientError",
    "InstanceEjected",
    "InstanceStats",
    "LeastOutstanding",
    "NoHealthyInstance",
    "Options",
    "OutlierDetection",
    "RandomChoice",
    "RoundRobin",
    "ServiceClient",
    "SyncServiceClient",
    "WeightedRoundRobin",
]
