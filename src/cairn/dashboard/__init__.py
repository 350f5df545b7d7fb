"""The web dashboard: services, logs, traces, metrics, the registry and lab runs.

::

    from cairn.dashboard import DashboardConfig, create_app

    app = create_app(DashboardConfig(collector="http://127.0.0.1:4318", token="s3cret"))

``cairn dashboard`` serves it on 127.0.0.1:18888. The browser talks only to the
dashboard; the dashboard reads the collector's and the registry's HTTP APIs.
"""

from __future__ import annotations

from cairn.dashboard._app import DashboardConfig, create_app
from cairn.dashboard._sources import UpstreamError

__all__ = ["DashboardConfig", "UpstreamError", "create_app"]
