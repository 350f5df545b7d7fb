"""Errors raised by the service client.

::

    CairnError
     └── ClientError
          └── NoHealthyInstance    (service, detail) nothing to send the request to
"""

from __future__ import annotations

from cairn._errors import CairnError

__all__ = ["ClientError", "NoHealthyInstance"]


class ClientError(CairnError):
    """Base class of the errors raised by ``cairn.client`` itself.

    Transport errors (``httpx.ConnectError``…) and resilience errors
    (``TimeoutExceeded``) that end a call are re-raised as they were.
    """


class NoHealthyInstance(ClientError):
    """The registry lists no instance of ``service`` to send the request to.

    ``detail`` is what the registry said, e.g. ``"0 of 2 instances passing"``,
    plus ``"; protection threshold engaged"`` when it was.
    """

    def __init__(self, service: str, detail: str) -> None:
        super().__init__(service, detail)
        self.service = service
        self.detail = detail

    def __str__(self) -> str:
        return (
            f"no healthy instance of {self.service!r}: {self.detail}; check that the service "
            "runs, heartbeats, and is registered in the registry this client reads"
        )
