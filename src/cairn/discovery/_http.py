"""The HTTP transport of the registry backends' own traffic.

Heartbeats, registrations and long-poll watches are plumbing: marked
``cairn_untraced``, they make no client spans when ``cairn.observability``
traces httpx (which reads the mark; discovery imports nothing of it).
"""

from __future__ import annotations

import httpx

__all__ = ["plumbing_transport"]


def plumbing_transport() -> httpx.AsyncHTTPTransport:
    """A default async transport that observability leaves untraced."""
    transport = httpx.AsyncHTTPTransport()
    setattr(transport, "cairn_untraced", True)  # noqa: B010 - a mark read by duck typing
    return transport
