"""The platform: ``cairn up`` runs a manifest's services as supervised processes.

::

    from cairn.platform import Supervisor, load_manifest

    async with Supervisor(load_manifest("cairn.toml")) as sup:   # every instance passing
        print(sup.registry_url, sup.snapshot())
        await sup.wait_for_stop()

The manifest (``cairn.toml``), the run file (``.cairn/run.json``, found with
:func:`find_run`) and the control API are described in ``docs/platform.md``.
"""

from __future__ import annotations

from cairn.platform._errors import ManifestError, NoRunError, PlatformError, StartupError
from cairn.platform._manifest import (
    RESTART_POLICIES,
    CollectorSpec,
    Manifest,
    ServiceSpec,
    load_manifest,
)
from cairn.platform._state import InstanceRecord, RunState, find_run
from cairn.platform._supervisor import Supervisor

__all__ = [
    "RESTART_POLICIES",
    "CollectorSpec",
    "InstanceRecord",
    "Manifest",
    "ManifestError",
    "NoRunError",
    "PlatformError",
    "RunState",
    "ServiceSpec",
    "StartupError",
    "Supervisor",
    "find_run",
    "load_manifest",
]
