"""A real 3-node etcd cluster, started by the lab, its peer traffic through the lab's network.

Each member advertises the port of the lab's proxy in front of its real peer
port, so every raft message between members crosses
:meth:`cairn.lab._net.Network.http_proxy`, which the nemesis can cut (the
proxy knows the sender from etcd's ``X-Server-From`` header) or slow down.
Clients reach each member directly through etcd's v3 JSON gateway (httpx):

- ``read``: ``/v3/kv/range`` (linearizable: etcd's default);
- ``write``: ``/v3/kv/put``;
- ``cas [from, to]``: ``/v3/kv/txn`` comparing the value (or version 0 for
  ``from = null``) and putting ``to``.

Every request carries the gRPC metadata ``hasleader: true``, so a member
that knows no leader (the minority side, once its election timer fires)
refuses at once with ``etcdserver: no leader``, a definite failure. A
request that times out inside etcd (``request timed out``) or whose answer
is lost is indeterminate. Values are JSON, stored as etcd values.

Needs the ``etcd`` program (Debian: ``apt-get install etcd-server``) and
httpx (``pip install 'cairn[lab]'``). Member ports are chosen free just
before the start; another program could take one in between (rare; the
start then fails with a clear error).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import shutil
import socket
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from cairn.lab._cluster import Engine, Reply, reap
from cairn.lab._errors import LabError
from cairn.lab._history import OpType
from cairn.lab._net import Network

if TYPE_CHECKING:
    import httpx

__all__ = ["EtcdCluster", "etcd_program"]

_READY_TIMEOUT = 30.0
_HEADERS = {"Grpc-Metadata-hasleader": "true"}
_DEFINITE = ("no leader", "not capable", "too many requests")


def etcd_program() -> str | None:
    """The path of the ``etcd`` program, or ``None`` if it is not installed."""
    return shutil.which("etcd")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _b64(data: str) -> str:
    return base64.b64encode(data.encode()).decode()


def _encode(value: Any) -> str:
    return _b64(json.dumps(value, separators=(",", ":")))


class EtcdCluster(Engine):
    """``nodes`` etcd members on 127.0.0.1, with data under ``data``."""

    def __init__(
        self,
        *,
        nodes: int = 3,
        data: Path,
        seed: int = 0,
        heartbeat_ms: int = 50,
        election_ms: int = 500,
    ) -> None:
        if not 3 <= nodes <= 7:
            raise ValueError(f"an etcd cluster here has 3 to 7 members, not {nodes}")
        if not 10 <= heartbeat_ms < election_ms <= 10_000:
            raise ValueError("need 10 <= heartbeat_ms < election_ms <= 10000 (etcd's own rule: 5x)")
        self.name = "etcd"
        self.nodes = list(range(1, nodes + 1))
        self.data = data
        self.network = Network(self.nodes, seed=seed)
        self._timing = [f"--heartbeat-interval={heartbeat_ms}", f"--election-timeout={election_ms}"]
        self._client_ports: dict[int, int] = {}
        self._peer_ports: dict[int, int] = {}
        self._proxy_ports: dict[int, int] = {}
        self._members: dict[str, int] = {}
        self._procs: dict[int, asyncio.subprocess.Process] = {}
        self._logs: dict[int, IO[bytes]] = {}
        self._http: httpx.AsyncClient | None = None

    @property
    def pids(self) -> dict[int, int]:
        """The process id of each running member."""
        return {node: p.pid for node, p in self._procs.items() if p.returncode is None}

    def client_url(self, node: int) -> str:
        """The client URL of member ``node``."""
        return f"http://127.0.0.1:{self._client_ports[node]}"

    async def start(self) -> None:
        program = etcd_program()
        if program is None:
            raise LabError(
                "the etcd program is not installed (Debian: apt-get install etcd-server)"
            )
        try:
            import httpx
        except ImportError as e:  # pragma: no cover - a dev install has httpx
            raise LabError("the etcd engine needs httpx: pip install 'cairn[lab]'") from e
        self._http = httpx.AsyncClient(headers=_HEADERS)
        self.data.mkdir(parents=True, exist_ok=True)
        for node in self.nodes:
            self._client_ports[node] = _free_port()
            self._peer_ports[node] = _free_port()
            self.network.targets[node] = self._peer_ports[node]
            self._proxy_ports[node] = await self.network.http_proxy(node, sender=self._members.get)
        await asyncio.gather(*(self._spawn(program, node) for node in self.nodes))
        await asyncio.gather(*(self._wait_healthy(node) for node in self.nodes))
        await self._learn_members()
        # Dropping the unidentified streams shakes the cluster: wait until a
        # linearizable read works on every member again.
        await asyncio.gather(*(self._wait_serving(node) for node in self.nodes))

    def _argv(self, program: str, node: int) -> list[str]:
        cluster = ",".join(f"n{n}=http://127.0.0.1:{self._proxy_ports[n]}" for n in self.nodes)
        client = self.client_url(node)
        return [
            program,
            f"--name=n{node}",
            f"--data-dir={self.data / f'n{node}'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls=http://127.0.0.1:{self._peer_ports[node]}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{self._proxy_ports[node]}",
            f"--initial-cluster={cluster}",
            "--initial-cluster-token=cairn-lab",
            "--initial-cluster-state=new",
            *self._timing,
        ]

    async def _spawn(self, program: str, node: int) -> None:
        log = self._logs.get(node) or (self.data / f"etcd-n{node}.log").open("ab")
        self._logs[node] = log
        self._procs[node] = await asyncio.create_subprocess_exec(
            *self._argv(program, node),
            stdin=asyncio.subprocess.PIPE,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )

    async def _wait_healthy(self, node: int) -> None:
        assert self._http is not None
        deadline = time.monotonic() + _READY_TIMEOUT
        while time.monotonic() < deadline:
            proc = self._procs[node]
            if proc.returncode is not None:
                raise LabError(
                    f"etcd n{node} exited with {proc.returncode}; see {self._logs[node].name}"
                )
            with contextlib.suppress(Exception):
                answer = await self._http.get(f"{self.client_url(node)}/health", timeout=1.0)
                if answer.status_code == 200 and answer.json().get("health") == "true":
                    return
            await asyncio.sleep(0.05)  # a poll interval, bounded by the deadline above
        raise LabError(f"etcd n{node} was not healthy within {_READY_TIMEOUT:.0f} s")

    async def _wait_serving(self, node: int) -> None:
        deadline = time.monotonic() + _READY_TIMEOUT
        while time.monotonic() < deadline:
            if (
                await self.op(node, "read", "cairn-lab-probe", None, timeout=1.0)
            ).type is OpType.OK:
                return
            await asyncio.sleep(0.05)  # a poll interval, bounded by the deadline above
        raise LabError(f"etcd n{node} did not serve reads within {_READY_TIMEOUT:.0f} s")

    async def _learn_members(self) -> None:
        assert self._http is not None
        answer = await self._http.post(
            f"{self.client_url(self.nodes[0])}/v3/cluster/member/list", json={}, timeout=5.0
        )
        for member in answer.json().get("members", []):
            name = str(member.get("name", ""))
            if name.startswith("n"):
                self._members[format(int(member["ID"]), "x")] = int(name[1:])
        if len(self._members) != len(self.nodes):
            raise LabError(
                f"etcd reported members {sorted(self._members.values())}, not {self.nodes}"
            )
        # Streams opened while the members were unknown would escape the nemesis.
        self.network.drop_unknown()

    async def stop(self) -> None:
        await asyncio.gather(*(reap(p, grace=5.0) for p in self._procs.values()))
        if self._http is not None:
            await self._http.aclose()
        await self.network.close()
        for log in self._logs.values():
            log.close()

    async def kill(self, node: int) -> None:
        proc = self._procs.get(node)
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()

    async def restart(self, node: int) -> None:
        proc = self._procs.get(node)
        program = etcd_program()
        if program is None or (proc is not None and proc.returncode is None):
            return
        await self._spawn(program, node)

    async def op(self, node: int, f: str, key: str, value: Any, *, timeout: float) -> Reply:
        import httpx

        assert self._http is not None
        k = _b64(key)
        body: dict[str, Any]
        if f == "read":
            path, body = "range", {"key": k}
        elif f == "write":
            path, body = "put", {"key": k, "value": _encode(value)}
        else:
            expected, new = value
            compare: dict[str, Any] = {"key": k, "result": "EQUAL"}
            if expected is None:
                compare |= {"target": "VERSION", "version": "0"}
            else:
                compare |= {"target": "VALUE", "value": _encode(expected)}
            put = {"request_put": {"key": k, "value": _encode(new)}}
            path, body = "txn", {"compare": [compare], "success": [put]}
        try:
            answer = await self._http.post(
                f"{self.client_url(node)}/v3/kv/{path}", json=body, timeout=timeout
            )
        except httpx.ConnectError:
            return Reply(OpType.FAIL, error="connection refused")
        except httpx.TimeoutException:
            return Reply(OpType.INFO, error="timeout")
        except httpx.HTTPError as e:
            return Reply(OpType.INFO, error=f"{type(e).__name__}")
        data = answer.json() if answer.content else {}
        if answer.status_code != 200:
            error = str(data.get("error") or data.get("message") or answer.status_code)
            definite = any(word in error for word in _DEFINITE)
            return Reply(OpType.FAIL if definite else OpType.INFO, error=error)
        if f == "read":
            kvs = data.get("kvs") or []
            raw = kvs[0].get("value") if kvs else None
            return Reply(OpType.OK, None if raw is None else json.loads(base64.b64decode(raw)))
        if f == "cas" and not data.get("succeeded"):
            return Reply(OpType.FAIL, error="mismatch")
        return Reply(OpType.OK, value)
