"""What a replica shares with both store engines: its peers, and replies to clients."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from typing import Any

from cairn.lab._wire import Connection, LinkDown, Message

__all__ = ["Peers", "fail", "ok"]


def ok(value: Any = None) -> Message:
    """A successful answer to a client."""
    return {"ok": True, "value": value}


def fail(error: str, *, definite: bool) -> Message:
    """A failed answer: ``definite`` when the operation certainly did not take effect."""
    return {"ok": False, "error": error, "definite": definite}


class Peers:
    """Connections from replica ``node`` to the others (through the lab's network layer)."""

    def __init__(self, node: int, addresses: dict[int, int], *, host: str = "127.0.0.1") -> None:
        self.node = node
        self.conns = {peer: Connection(host, port) for peer, port in addresses.items()}

    @property
    def ids(self) -> list[int]:
        """The other replicas' ids."""
        return sorted(self.conns)

    @property
    def majority(self) -> int:
        """How many replicas, this one included, make a majority."""
        return (len(self.conns) + 1) // 2 + 1

    async def ask(self, peer: int, message: Message, *, timeout: float) -> Message | None:
        """``peer``'s answer, or ``None`` if it did not come (cut, dead, lost or slow)."""
        try:
            return await self.conns[peer].request(message, timeout=timeout)
        except (LinkDown, TimeoutError):
            return None

    async def gather(
        self,
        message: Message,
        *,
        local: Message,
        timeout: float,
        enough: Callable[[list[Message]], bool],
        peers: Iterable[int] | None = None,
    ) -> list[Message]:
        """Send ``message`` to ``peers`` (all by default) and collect answers, ``local`` first.

        Returns as soon as ``enough(answers)`` holds, every peer answered or
        failed, or ``timeout`` passed; later answers are dropped.
        """
        answers = [local]
        if enough(answers):
            return answers
        tasks = [
            asyncio.create_task(self.ask(peer, message, timeout=timeout))
            for peer in (self.ids if peers is None else peers)
        ]
        try:
            for next_done in asyncio.as_completed(tasks):
                answer = await next_done
                if answer is not None:
                    answers.append(answer)
                    if enough(answers):
                        break
        finally:
            for task in tasks:
                task.cancel()
        return answers

    async def close(self) -> None:
        """Close every peer connection."""
        for conn in self.conns.values():
            with contextlib.suppress(Exception):
                await conn.close()
