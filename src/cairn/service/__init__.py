"""Service lifecycle: register, heartbeat, health endpoints, graceful drain on SIGTERM.

::

    from cairn.service import serve

    await serve(app, name="inventory", port=0, registry="sqlite:///.cairn/registry.db")

or, under plain uvicorn, ``app = Service(app, name="inventory", port=8000)``.
On start the service sets up cairn.observability, registers its real address
and port, heartbeats its TTL check and answers ``/health/live``,
``/health/ready`` and ``/metrics``; on SIGTERM it turns not ready,
deregisters, drains requests in flight, then exits. A killed process drops
out of the registry one TTL later.
"""

from __future__ import annotations

from cairn.service._serve import run, serve
from cairn.service._service import Service

__all__ = ["Service", "run", "serve"]
