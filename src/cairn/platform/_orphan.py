"""Children of ``cairn up`` stop themselves if ``cairn up`` dies without stopping them.

``cairn up`` stops its children in order on Ctrl-C, SIGTERM or SIGHUP; but
if it is killed outright (SIGKILL, a crash), nothing would. Each child it
starts with Python runs :func:`watch_parent`: a daemon thread that, once
the parent is gone (the child was re-parented), sends the child itself
SIGTERM, so it drains and leaves the registry as on a normal stop.
"""

from __future__ import annotations

import os
import signal
import threading

__all__ = ["BOOTSTRAP", "watch_parent"]

BOOTSTRAP = (
    "import sys; from cairn.platform._orphan import watch_parent; watch_parent(); "
    "from cairn._cli import main; sys.exit(main(prog_name='cairn'))"
)
"""``python -c BOOTSTRAP ARGS…`` runs ``cairn ARGS…`` guarded by :func:`watch_parent`."""


def watch_parent(interval: float = 0.5) -> threading.Thread | None:
    """SIGTERM this process once its parent is gone; checks every ``interval`` s.

    Does nothing unless ``$CAIRN_SUPERVISOR_PID`` names the current parent
    (so a program run by hand is never affected).
    """
    expected = os.environ.get("CAIRN_SUPERVISOR_PID")
    if not expected or str(os.getppid()) != expected:
        return None
    parent = os.getppid()
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(interval):
            if os.getppid() != parent:
                os.kill(os.getpid(), signal.SIGTERM)
                return

    thread = threading.Thread(target=watch, name="cairn-parent-watch", daemon=True)
    thread.start()
    return thread
