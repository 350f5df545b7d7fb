"""A cluster under test: the lab store's replica processes, behind the lab's network.

:class:`Engine` is what the workload and the nemesis drive; :class:`StoreCluster`
runs the lab's own store, :class:`cairn.lab._etcd.EtcdCluster` a real etcd.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from cairn.lab._errors import LabError
from cairn.lab._history import OpType
from cairn.lab._net import Link, Network
from cairn.lab._wire import Connection, LinkDown

__all__ = ["Engine", "Reply", "StoreCluster", "spawn_ready"]

_START_TIMEOUT = 15.0


@dataclass(frozen=True, slots=True)
class Reply:
    """How one client operation ended: ``ok`` with a value, ``fail`` or ``info`` with an error."""

    type: OpType
    value: Any = None
    error: str | None = None


class Engine(abc.ABC):
    """A replicated store the lab can drive: client operations and faults."""

    name: str
    nodes: list[int]
    network: Network

    @abc.abstractmethod
    async def start(self) -> None:
        """Start every node and wait until each answers."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop every node and the network; leaves no process behind."""

    @abc.abstractmethod
    async def op(self, node: int, f: str, key: str, value: Any, *, timeout: float) -> Reply:
        """Run a client's ``read``, ``write`` or ``cas`` on ``node``."""

    @abc.abstractmethod
    async def kill(self, node: int) -> None:
        """Kill ``node`` (SIGKILL)."""

    @abc.abstractmethod
    async def restart(self, node: int) -> None:
        """Start ``node`` again after a kill, with its data."""

    async def states(self) -> dict[int, dict[str, Any]] | None:
        """Each live node's local values, to watch convergence; ``None`` if not readable."""
        return None

    async def skew(self, node: int, ms: int) -> bool:
        """Make ``node``'s clock run ``ms`` ahead; ``False`` if the engine has no such knob."""
        return False

    def partition(self, cut: set[Link]) -> None:
        """Cut exactly the directed links ``cut``."""
        self.network.cut(cut)

    def heal(self) -> None:
        """Restore every link."""
        self.network.heal()

    async def __aenter__(self) -> Engine:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def spawn_ready(
    argv: list[str], *, log: IO[bytes] | int, ready: bytes
) -> tuple[asyncio.subprocess.Process, bytes]:
    """Start ``argv`` and wait for an output line starting with ``ready``; returns it.

    The child gets a pipe on standard input that closes when the lab exits.
    """
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=log,
        start_new_session=True,
    )
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(_START_TIMEOUT):
            while line := await proc.stdout.readline():
                if line.startswith(ready):
                    return proc, line
    except TimeoutError:
        pass
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    await proc.wait()
    raise LabError(f"{argv[0]} did not start (see its log); command: {' '.join(argv)}")


async def reap(proc: asyncio.subprocess.Process, *, grace: float = 2.0) -> None:
    """End ``proc``: close its stdin, ask it to stop, kill it if it lingers."""
    if proc.returncode is None:
        if proc.stdin is not None:
            proc.stdin.close()
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


class StoreCluster(Engine):
    """The lab store: ``nodes`` replica processes in ``mode`` (cp, cp-local-reads, ap, ca)."""

    def __init__(
        self,
        mode: str,
        *,
        nodes: int = 3,
        data: Path,
        timeout: float = 0.5,
        sync_every: float = 0.2,
        r: int = 1,
        w: int = 1,
        seed: int = 0,
    ) -> None:
        from cairn.lab._replica import MODES

        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        if mode == "ca":
            nodes = 1
        elif not 3 <= nodes <= 9:
            raise ValueError(f"nodes must be between 3 and 9 for mode {mode}, not {nodes}")
        if not (1 <= r <= nodes and 1 <= w <= nodes):
            raise ValueError(f"r and w must be between 1 and nodes ({nodes}), not r={r}, w={w}")
        self.name = mode
        self.mode = mode
        self.nodes = list(range(1, nodes + 1))
        self.data = data
        self.network = Network(self.nodes, seed=seed)
        self._options = [
            f"--timeout={timeout}",
            f"--sync-every={sync_every}",
            f"-r={r}",
            f"-w={w}",
        ]
        self._proxies: dict[int, dict[int, int]] = {}
        self._procs: dict[int, asyncio.subprocess.Process] = {}
        self._clients: dict[int, Connection] = {}
        self._logs: dict[int, IO[bytes]] = {}

    @property
    def pids(self) -> dict[int, int]:
        """The process id of each running replica."""
        return {node: p.pid for node, p in self._procs.items() if p.returncode is None}

    async def start(self) -> None:
        self.data.mkdir(parents=True, exist_ok=True)
        for a in self.nodes:
            self._proxies[a] = {
                b: await self.network.line_proxy(a, b) for b in self.nodes if b != a
            }
        await asyncio.gather(*(self._spawn(node) for node in self.nodes))

    async def _spawn(self, node: int) -> None:
        peers = ",".join(f"{b}={port}" for b, port in self._proxies[node].items())
        argv = [
            sys.executable,
            "-m",
            "cairn.lab._replica",
            f"--node={node}",
            f"--mode={'cp' if self.mode == 'ca' else self.mode}",
            f"--peers={peers}",
            f"--data={self.data}",
            *self._options,
        ]
        log = self._logs.get(node) or (self.data / f"replica-{node}.log").open("ab")
        self._logs[node] = log
        proc, line = await spawn_ready(argv, log=log, ready=b"READY ")
        self._procs[node] = proc
        port = int(line.split()[1])
        self.network.targets[node] = port
        self._clients[node] = Connection("127.0.0.1", port)

    async def stop(self) -> None:
        for conn in self._clients.values():
            await conn.close()
        await asyncio.gather(*(reap(p) for p in self._procs.values()))
        await self.network.close()
        for log in self._logs.values():
            log.close()

    async def op(self, node: int, f: str, key: str, value: Any, *, timeout: float) -> Reply:
        conn = self._clients.get(node)
        if conn is None:
            return Reply(OpType.FAIL, error="not running")
        try:
            answer = await conn.request(
                {"type": "op", "op": f, "key": key, "value": value}, timeout=timeout
            )
        except LinkDown as e:
            return Reply(OpType.INFO if e.sent else OpType.FAIL, error="connection lost")
        except TimeoutError:
            return Reply(OpType.INFO, error="timeout")
        if answer.get("ok"):
            return Reply(OpType.OK, answer.get("value"))
        kind = OpType.FAIL if answer.get("definite") else OpType.INFO
        return Reply(kind, error=str(answer.get("error")))

    async def kill(self, node: int) -> None:
        proc = self._procs.get(node)
        if proc is None or proc.returncode is not None:
            return
        self.network.targets.pop(node, None)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        conn = self._clients.pop(node, None)
        if conn is not None:
            await conn.close()

    async def restart(self, node: int) -> None:
        proc = self._procs.get(node)
        if proc is not None and proc.returncode is None:
            return
        await self._spawn(node)

    async def _admin(self, node: int, message: dict[str, Any]) -> dict[str, Any] | None:
        conn = self._clients.get(node)
        if conn is None:
            return None
        try:
            return await conn.request(message, timeout=2.0)
        except (LinkDown, TimeoutError):
            return None

    async def states(self) -> dict[int, dict[str, Any]] | None:
        answers = await asyncio.gather(*(self._admin(n, {"type": "dump"}) for n in self.nodes))
        return {n: a["state"] for n, a in zip(self.nodes, answers, strict=True) if a is not None}

    async def skew(self, node: int, ms: int) -> bool:
        if self.mode != "ap":
            return False
        return await self._admin(node, {"type": "skew", "ms": ms}) is not None
