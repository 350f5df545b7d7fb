"""Run a ``command`` service so that it stops if ``cairn up`` dies without stopping it.

``python -m cairn.platform._guard COMMAND [ARGS…]`` becomes ``COMMAND`` (the
same process: it is ``exec``-ed, so ``cairn up`` keeps its pid, its output
and its exit status) after leaving behind a watcher: a small process in the
command's process group, but not its child (it is detached by a double fork,
so a command that reaps every child never sees it). The watcher waits on
both processes; if ``cairn up`` goes first (killed outright: SIGKILL, a
crash), it sends the whole group SIGTERM, then SIGKILL after a grace period,
as ``cairn up`` would have. If the command ends first, the watcher just
exits. Python services get the same guarantee from
:func:`cairn.platform._orphan.watch_parent`.

Without ``$CAIRN_SUPERVISOR_PID`` naming the parent (run by hand), or where
the kernel has no ``pidfd_open`` (Linux before 5.3), it only execs.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys

__all__ = ["main"]

GRACE = 10.0
"""Seconds between SIGTERM and SIGKILL, as ``cairn up --stop-timeout``'s default."""


def _watch(supervisor: int, command: int, grace: float) -> None:
    """Wait for either process to end; if the supervisor ended first, stop the group."""
    try:
        fds = {os.pidfd_open(supervisor): "supervisor", os.pidfd_open(command): "command"}
    except OSError:  # one of them is already gone, or no pidfd support
        return
    ready, _, _ = select.select(list(fds), [], [])
    if any(fds[fd] == "command" for fd in ready):
        return
    group = os.getpgid(0)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the group signal is not for us
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGTERM)
    command_fd = next(fd for fd, who in fds.items() if who == "command")
    if not select.select([command_fd], [], [], grace)[0]:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)  # takes this watcher too


def _detach_watcher(supervisor: int, grace: float) -> None:
    """Start the watcher as a grandchild of this process, then reap the child between."""
    command = os.getpid()  # the command keeps this pid once exec-ed
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the forked processes
        try:
            if os.fork() == 0:
                # Hold none of the command's streams: its log ends when it does.
                devnull = os.open(os.devnull, os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(devnull, fd)
                _watch(supervisor, command, grace)
        finally:
            os._exit(0)
    os.waitpid(child, 0)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("usage: python -m cairn.platform._guard COMMAND [ARGS…]", file=sys.stderr)
        return 2
    expected = os.environ.get("CAIRN_SUPERVISOR_PID")
    if expected and expected == str(os.getppid()) and hasattr(os, "pidfd_open"):
        _detach_watcher(int(expected), GRACE)
    try:
        os.execvp(args[0], args)
    except OSError as exc:
        print(f"cairn: cannot run {args[0]!r}: {exc.strerror}", file=sys.stderr)
        return 127


if __name__ == "__main__":  # pragma: no cover - run as a module
    sys.exit(main())
