"""Errors raised by the registry.

::

    CairnError
     └── DiscoveryError
          ├── RegistryUnavailable    (backend, reason) the backend cannot be reached
          ├── UnknownInstance        (instance_id) heartbeat for an instance not registered
          └── RegistryRefused        (status, detail) the backend said no (bad token, bad request)
"""

from __future__ import annotations

from cairn._errors import CairnError

__all__ = ["DiscoveryError", "RegistryRefused", "RegistryUnavailable", "UnknownInstance"]


class DiscoveryError(CairnError):
    """Base class of the errors raised by ``cairn.discovery``."""


class RegistryUnavailable(DiscoveryError):
    """The registry backend could not be reached or did not answer in time."""

    def __init__(self, backend: str, reason: str) -> None:
        super().__init__(backend, reason)
        self.backend = backend
        self.reason = reason

    def __str__(self) -> str:
        return (
            f"registry {self.backend} is unavailable ({self.reason}); "
            "check that it runs and that CAIRN_REGISTRY points at it"
        )


class UnknownInstance(DiscoveryError, KeyError):
    """A heartbeat named an instance the registry does not hold (any more).

    It may have been removed after being critical for ``deregister_after``:
    register it again.
    """

    def __init__(self, instance_id: str) -> None:
        super().__init__(instance_id)
        self.instance_id = instance_id

    def __str__(self) -> str:
        return (
            f"instance {self.instance_id!r} is not registered (it may have been removed after "
            "being critical too long); register it again"
        )


class RegistryRefused(DiscoveryError):
    """The registry backend rejected the request (HTTP ``status``)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(status, detail)
        self.status = status
        self.detail = detail

    def __str__(self) -> str:
        hint = " (wrong or missing token?)" if self.status in (401, 403) else ""
        return f"registry refused the request: HTTP {self.status}{hint}: {self.detail}"
