"""cairn: observable, discoverable, resilient Python services.

Importing cairn configures nothing: no logging, no tracer, no global state.
Each subsystem is a subpackage with one public door:

- ``cairn.resilience``: retry, circuit breaker, timeout, bulkhead, fallback,
  hedging and the pipeline that composes them;
- ``cairn.observability``: one ``setup()`` for correlated logs, metrics and
  traces (extra ``cairn[observability]``);
- ``cairn.discovery``: a registry API over SQLite, a Consul-compatible server,
  Consul and etcd (extra ``cairn[discovery]`` for the networked backends);
- ``cairn.service`` / ``cairn.client``: a service that registers, heartbeats
  and drains on SIGTERM; a client that resolves, balances and calls through
  the resilience pipeline (extra ``cairn[discovery]``);
- ``cairn.lab``: CP/AP experiments under partitions, histories and a
  linearizability checker;
- ``cairn.testing``: a virtual clock and capture helpers for your tests.
"""

from __future__ import annotations

from cairn._errors import CairnError
from cairn._version import __version__

__all__ = ["CairnError", "__version__"]
