"""The root of every error cairn raises on purpose.

::

    CairnError
     ├── ResilienceError                 (cairn.resilience)
     │    ├── CircuitOpenError           a breaker refused the call
     │    ├── RetryError                 retries gave up (when not re-raising)
     │    ├── BulkheadFullError          no slot and no queue room
     │    └── TimeoutExceeded            also a built-in TimeoutError
     ├── DiscoveryError                  (cairn.discovery)
     │    ├── RegistryUnavailable        the registry cannot be reached
     │    ├── RegistryRefused            it answered no (e.g. a wrong token)
     │    └── UnknownInstance            no such instance (also a KeyError)
     ├── ClientError                     (cairn.client)
     │    └── NoHealthyInstance          nothing passing to send a request to
     ├── QueryError                      (cairn.collector) a query that does not parse;
     │                                   also a ValueError, with the column
     ├── CollectorError                  (cairn.collector) talking to a collector
     │    ├── CollectorUnavailable       nothing answers at its URL
     │    └── CollectorRefused           it answered with an error status
     ├── PlatformError                   (cairn.platform)
     │    ├── ManifestError              a cairn.toml that cannot be used (path, line)
     │    ├── StartupError               a child did not come up (its log tail)
     │    └── NoRunError                 no `cairn up` running here
     ├── UpstreamError                   (cairn.dashboard) collector or registry unreachable
     └── LabError                        (cairn.lab)
          └── HistoryError               a history file that cannot be read

Each subsystem hangs its own branch here, so ``except cairn.CairnError`` catches everything cairn decided to raise, and
nothing it merely let through from user code.
"""

from __future__ import annotations

__all__ = ["CairnError"]


class CairnError(Exception):
    """Base class of every error raised by cairn itself."""
