"""One supervised child process: its own process group, its output kept in a log file.

A child is started in a new session (so a Ctrl-C at the terminal reaches
only ``cairn up``, which then stops children in order) and stopped by
signalling its whole process group, so nothing it started outlives it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import signal
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

__all__ = ["Child"]

_TAIL = 40


class Child:
    """A process ``cairn up`` runs: the registry, the collector, the dashboard or an instance."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        kind: str,
        cwd: Path,
        env: Mapping[str, str],
        log_path: Path,
        service: str | None = None,
        restart: str = "no",
        port: int | None = None,
        echo: Callable[[str], None] | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.kind = kind
        self.cwd = cwd
        self.env = dict(env)
        self.log_path = log_path
        self.service = service
        self.restart = restart
        self.port = port
        self.echo = echo
        self.proc: asyncio.subprocess.Process | None = None
        self.state = "new"
        self.restarts = 0
        self.held = False
        """Killed through the control API: kept down until started again."""
        self.started_at = 0.0
        self.failures = 0
        self.recent_restarts: collections.deque[float] = collections.deque()
        self.tail: collections.deque[str] = collections.deque(maxlen=_TAIL)
        self._pump: asyncio.Task[None] | None = None
        self._partial = b""

    @property
    def pid(self) -> int | None:
        """The pid of the current process, or ``None`` when it is not running."""
        if self.proc is None or self.proc.returncode is not None:
            return None
        return self.proc.pid

    @property
    def running(self) -> bool:
        """Whether a process was started and has not exited yet."""
        return self.proc is not None and self.proc.returncode is None

    @property
    def returncode(self) -> int | None:
        """The exit status of the last process (negative: killed by that signal)."""
        return None if self.proc is None else self.proc.returncode

    async def spawn(self) -> None:
        """Start the process (again), appending its output to the log file."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115, ASYNC230 - closed by the pump; appending is quick
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                cwd=self.cwd,
                env=self.env,
                start_new_session=True,
            )
        except BaseException:
            log.close()
            raise
        self.started_at = asyncio.get_running_loop().time()
        self.state = "starting"
        self._partial = b""
        self._pump = asyncio.get_running_loop().create_task(
            self._copy(self.proc, log), name=f"cairn-log-{self.name}"
        )

    async def _copy(self, proc: asyncio.subprocess.Process, log: IO[bytes]) -> None:
        assert proc.stdout is not None
        try:
            while chunk := await proc.stdout.read(65536):
                log.write(chunk)
                log.flush()
                self._lines(chunk)
            if self._partial:
                self._line(self._partial)
                self._partial = b""
        finally:
            log.close()

    def _lines(self, chunk: bytes) -> None:
        data = self._partial + chunk
        *complete, self._partial = data.split(b"\n")
        for raw in complete:
            self._line(raw)
        if len(self._partial) > 65536:  # a line without end: show what there is
            self._line(self._partial)
            self._partial = b""

    def _line(self, raw: bytes) -> None:
        text = raw.decode("utf-8", "replace").rstrip("\r")
        self.tail.append(text)
        if self.echo is not None:
            self.echo(f"{self.name} | {text}")

    async def wait(self) -> int:
        """Wait for the process to exit and its output to be written; its exit status."""
        assert self.proc is not None, "spawn() first"
        code = await self.proc.wait()
        if self._pump is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._pump), 5.0)
        return code

    def signal_group(self, signum: int) -> None:
        """Send ``signum`` to the child's process group (nothing if it is gone)."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signum)

    async def terminate(self, timeout: float, force: asyncio.Event | None = None) -> None:
        """SIGTERM the group, wait up to ``timeout`` s (or until ``force`` is set), then SIGKILL."""
        proc = self.proc
        if proc is None:
            return
        if proc.returncode is None:
            self.signal_group(signal.SIGTERM)
            waiters: set[asyncio.Future[object]] = {asyncio.ensure_future(proc.wait())}
            if force is not None:
                waiters.add(asyncio.ensure_future(force.wait()))
            try:
                await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()
            if proc.returncode is None:
                self.signal_group(signal.SIGKILL)
        await self.wait()
        # Whatever it started in its group (a shell's children, say) goes too.
        self.signal_group(signal.SIGKILL)
