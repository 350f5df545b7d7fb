"""The lab's network: every replica-to-replica link crosses a proxy in the lab process.

Replica ``a`` reaches replica ``b`` only through the proxy of link
``(a, b)``; the nemesis sets each directed link's state:

- ``cut``: messages are dropped silently (as an iptables DROP rule: the
  sender sees a timeout, not a refusal);
- ``delay``: seconds added to every message (order is kept);
- ``loss``: the probability that a message is dropped.

A connection opened by ``a`` to ``b`` carries ``a -> b`` requests and
``b -> a`` answers, so each direction obeys its own link. Two proxy kinds:

- :meth:`Network.line_proxy` for the lab store: it forwards whole JSON lines,
  so it can drop single messages;
- :meth:`Network.http_proxy` for etcd's peer port: one proxy per
  destination; it tells the sender from the ``X-Server-From`` header of the
  first request of each connection (etcd's rafthttp sends it) and, since a
  byte stream cannot lose a piece and stay valid, a cut *closes* the link's
  connections and refuses new ones. Requests without the header (version
  probes) pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["LinkState", "Network"]

Link = tuple[int, int]
_READ = 1 << 16
_FROM = re.compile(rb"\r\nX-Server-From:\s*([0-9a-fA-F]+)", re.IGNORECASE)


@dataclass(slots=True)
class LinkState:
    """The current faults of one directed link."""

    cut: bool = False
    delay: float = 0.0
    loss: float = 0.0


class Network:
    """Directed links between ``nodes`` and the proxies that obey them."""

    def __init__(self, nodes: list[int], *, seed: int = 0) -> None:
        self.nodes = list(nodes)
        self.links: dict[Link, LinkState] = {
            (a, b): LinkState() for a in nodes for b in nodes if a != b
        }
        self.targets: dict[int, int] = {}
        """The real port of each replica (set when it starts; changes on restart)."""
        self._rng = random.Random(seed)
        self._servers: list[asyncio.Server] = []
        self._conns: dict[Link | None, set[asyncio.StreamWriter]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # -- faults ---------------------------------------------------------------

    def cut(self, links: set[Link]) -> None:
        """Cut exactly ``links`` (directed); every other link is restored."""
        for link, state in self.links.items():
            state.cut = link in links
            if state.cut:
                for writer in self._conns.get(link, set()):
                    writer.close()

    def heal(self) -> None:
        """Restore every link: no cut, no delay, no loss."""
        for state in self.links.values():
            state.cut, state.delay, state.loss = False, 0.0, 0.0

    def slow(self, delay: float) -> None:
        """Add ``delay`` seconds to every link."""
        for state in self.links.values():
            state.delay = delay

    def lossy(self, loss: float) -> None:
        """Drop each message with probability ``loss`` on every link."""
        for state in self.links.values():
            state.loss = loss

    def drop_unknown(self) -> None:
        """Close the connections whose sender was not known, so they come back identified."""
        for writer in self._conns.get(None, set()):
            writer.close()

    def cut_links(self) -> set[Link]:
        """The links that are cut now."""
        return {link for link, state in self.links.items() if state.cut}

    def _passes(self, link: Link | None) -> bool:
        if link is None:
            return True
        state = self.links[link]
        return not state.cut and not (state.loss and self._rng.random() < state.loss)

    def _delay(self, link: Link | None) -> float:
        return 0.0 if link is None else self.links[link].delay

    # -- line proxies (the lab store) ------------------------------------------

    async def line_proxy(self, src: int, dst: int) -> int:
        """Start the proxy of link ``src -> dst`` for the lab store; returns its port."""

        async def connected(down_r: asyncio.StreamReader, down_w: asyncio.StreamWriter) -> None:
            up = await self._upstream(dst, down_w)
            if up is None:
                return
            up_r, up_w = up
            await self._pump_pair(
                (down_r, up_w, (src, dst), True), (up_r, down_w, (dst, src), True)
            )

        return await self._listen(connected)

    # -- HTTP proxies (etcd peers) ----------------------------------------------

    async def http_proxy(self, dst: int, *, sender: Callable[[str], int | None]) -> int:
        """Start the proxy in front of ``dst``'s peer port; returns its port.

        ``sender`` maps an ``X-Server-From`` member id (hex) to a node.
        """

        async def connected(down_r: asyncio.StreamReader, down_w: asyncio.StreamWriter) -> None:
            head = b""
            with contextlib.suppress(TimeoutError, ConnectionError, asyncio.IncompleteReadError):
                while b"\r\n\r\n" not in head and len(head) < _READ:
                    chunk = await asyncio.wait_for(down_r.read(_READ), 5.0)
                    if not chunk:
                        break
                    head += chunk
            m = _FROM.search(head)
            src = sender(m[1].decode().lower()) if m else None
            link = None if src is None or src == dst else (src, dst)
            back = None if link is None else (dst, link[0])
            # etcd answers and streams both ways on one connection: a cut either
            # way cuts the connection.
            if link is not None and (self.links[link].cut or self.links[(dst, link[0])].cut):
                down_w.close()
                return
            up = await self._upstream(dst, down_w)
            if up is None:
                return
            up_r, up_w = up
            up_w.write(head)
            await self._pump_pair(
                (down_r, up_w, link, False), (up_r, down_w, back, False), link, back
            )

        return await self._listen(connected)

    # -- plumbing ---------------------------------------------------------------

    async def _listen(
        self, connected: Callable[[asyncio.StreamReader, asyncio.StreamWriter], object]
    ) -> int:
        async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            self._tasks.add(task)
            try:
                await connected(reader, writer)  # type: ignore[misc]
            except asyncio.CancelledError:
                pass  # closing; see cairn.lab._wire.serve
            finally:
                self._tasks.discard(task)
                writer.close()

        server = await asyncio.start_server(tracked, "127.0.0.1", 0, limit=1 << 20)
        self._servers.append(server)
        port: int = server.sockets[0].getsockname()[1]
        return port

    async def _upstream(
        self, dst: int, down_w: asyncio.StreamWriter
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        port = self.targets.get(dst)
        try:
            if port is None:
                raise ConnectionRefusedError(f"replica {dst} is not running")
            return await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", port, limit=1 << 20), 1.0
            )
        except (OSError, TimeoutError):
            down_w.close()
            return None

    async def _pump_pair(
        self,
        forward: tuple[asyncio.StreamReader, asyncio.StreamWriter, Link | None, bool],
        backward: tuple[asyncio.StreamReader, asyncio.StreamWriter, Link | None, bool],
        *register: Link | None,
    ) -> None:
        writers = {forward[1], backward[1]}
        for link in register:  # None gathers the connections whose sender is unknown
            self._conns.setdefault(link, set()).update(writers)
        try:
            pumps = [
                asyncio.create_task(self._pump(*forward)),
                asyncio.create_task(self._pump(*backward)),
            ]
            # When either side closes, the whole connection goes.
            _, pending = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        finally:
            for writer in writers:
                writer.close()
            for link in register:
                self._conns.get(link, set()).difference_update(writers)

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        link: Link | None,
        lines: bool,
    ) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                # A cut made while the message was in flight drops it too.
                if not lines or link is None or not self.links[link].cut:
                    writer.write(data)
                    await writer.drain()

        sender = asyncio.create_task(deliver())
        try:
            while True:
                data = await (reader.readline() if lines else reader.read(_READ))
                if not data or sender.done():
                    return
                if lines and not self._passes(link):
                    continue
                queue.put_nowait((loop.time() + self._delay(link), data))
        except (ConnectionError, ValueError, asyncio.LimitOverrunError):
            return
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await sender

    async def close(self) -> None:
        """Stop every proxy and drop its connections."""
        for server in self._servers:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for server in self._servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()
        self._servers.clear()
