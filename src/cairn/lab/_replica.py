"""A replica of the lab store, run as its own process by the lab.

    python -m cairn.lab._replica --node 1 --mode cp --peers 2=41002,3=41003 --data DIR

It listens on a free port of 127.0.0.1 and prints ``READY <port>`` on
standard output. ``--peers`` maps each other replica to the port of the
lab's proxy for the link to it. The replica exits when its standard input
closes, so it never outlives the lab, even one that was killed.

Requests (one JSON object a line, see :mod:`cairn.lab._wire`):

- from clients: ``{"type": "op", "op": "read"|"write"|"cas", "key": K, "value": V}``;
- from the lab: ``{"type": "dump"}`` (every key's local value), ``{"type": "skew", "ms": N}``;
- from peers: whatever the engine speaks (prepare/accept, replicate/sync/get).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import threading
from pathlib import Path

from cairn.lab._ap import LwwStore
from cairn.lab._cp import CasPaxos
from cairn.lab._peers import Peers, fail
from cairn.lab._wire import Message, serve

__all__ = ["MODES", "Replica", "main", "start_replica"]

MODES = ("cp", "cp-local-reads", "ap", "ca")
"""Replica modes: ``ca`` is a single cp replica; ``cp-local-reads`` is deliberately broken."""


def _peer_map(text: str) -> dict[int, int]:
    pairs = (item.split("=") for item in text.split(",") if item)
    return {int(node): int(port) for node, port in pairs}


class Replica:
    """A running replica: its engine behind a server on ``port``."""

    def __init__(self, engine: CasPaxos | LwwStore, server: asyncio.Server) -> None:
        self.engine = engine
        self.server = server
        self.port: int = server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop serving and close the peer connections."""
        self.server.close()
        if isinstance(self.engine, LwwStore):
            await self.engine.stop()
        await self.engine.peers.close()


async def start_replica(
    *,
    node: int,
    mode: str,
    peers: dict[int, int],
    data: Path,
    timeout: float = 0.5,
    sync_every: float = 0.2,
    r: int = 1,
    w: int = 1,
) -> Replica:
    """Start replica ``node`` in this process (the lab runs each in its own, via :func:`main`)."""
    links = Peers(node, peers)
    engine: CasPaxos | LwwStore
    if mode == "ap":
        engine = LwwStore(links, data=data, timeout=timeout, sync_every=sync_every, r=r, w=w)
        engine.start()
    else:
        engine = CasPaxos(links, data=data, timeout=timeout, local_reads=mode == "cp-local-reads")

    async def handle(message: Message) -> Message:
        kind = message.get("type")
        try:
            if kind == "op":
                return await engine.execute(
                    message["op"], str(message["key"]), message.get("value")
                )
            if kind == "dump":
                return {"ok": True, "state": engine.dump()}
            if kind == "skew" and isinstance(engine, LwwStore):
                engine.hlc.skew_ms = int(message["ms"])
                return {"ok": True}
            return await engine.on_peer(message)
        except (KeyError, TypeError, ValueError, IndexError) as e:
            return fail(f"bad request: {e!r}", definite=True)

    return Replica(engine, await serve(handle))


async def _run(args: argparse.Namespace) -> None:
    replica = await start_replica(
        node=args.node,
        mode=args.mode,
        peers=_peer_map(args.peers),
        data=Path(args.data),
        timeout=args.timeout,
        sync_every=args.sync_every,
        r=args.r,
        w=args.w,
    )
    print(f"READY {replica.port}", flush=True)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    def watch_stdin() -> None:
        sys.stdin.buffer.read()
        with contextlib.suppress(RuntimeError):  # the loop is already closed
            loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=watch_stdin, daemon=True).start()
    await stop.wait()
    await replica.close()


def main(argv: list[str] | None = None) -> None:
    """Run one replica until its standard input closes or it is told to stop."""
    parser = argparse.ArgumentParser(prog="python -m cairn.lab._replica")
    parser.add_argument("--node", type=int, required=True)
    parser.add_argument("--mode", choices=MODES, default="cp")
    parser.add_argument("--peers", default="")
    parser.add_argument("--data", default=".")
    parser.add_argument("--timeout", type=float, default=0.5)
    parser.add_argument("--sync-every", type=float, default=0.2)
    parser.add_argument("-r", type=int, default=1)
    parser.add_argument("-w", type=int, default=1)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run(args))


if __name__ == "__main__":
    main()
