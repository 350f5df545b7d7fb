"""The lab store's wire protocol: one JSON object a line over TCP.

Requests carry an ``id``; the answer carries the same ``id``, so one
connection holds many requests in flight (answers may come out of order).
Clients and peers speak the same protocol; the lab's network layer reads the
same lines, so it can drop or delay whole messages rather than bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["Connection", "Handler", "LinkDown", "decode", "encode", "serve"]

Message = dict[str, Any]
Handler = Callable[[Message], Awaitable[Message]]

# Messages hold a few keys and values; a line this long is a bug or garbage.
_LIMIT = 1 << 20


class LinkDown(ConnectionError):
    """The request could not be delivered or its answer was lost.

    ``sent`` tells whether the request left this process: when it did not
    (connection refused), the operation certainly did not happen.
    """

    def __init__(self, message: str, *, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent


def encode(message: Message) -> bytes:
    """One message as a line of compact JSON."""
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def decode(line: bytes) -> Message:
    """The message on ``line``; raises ``ValueError`` if it is not a JSON object."""
    message = json.loads(line)
    if not isinstance(message, dict):
        raise ValueError("a message is a JSON object")
    return message


async def serve(handler: Handler, *, host: str = "127.0.0.1", port: int = 0) -> asyncio.Server:
    """Listen on ``host:port`` and answer each request line with ``handler``'s message."""

    async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tasks: set[asyncio.Task[None]] = set()

        async def answer(request: Message) -> None:
            reply = await handler(request)
            reply["id"] = request.get("id")
            with contextlib.suppress(ConnectionError, RuntimeError):
                writer.write(encode(reply))

        try:
            while line := await reader.readline():
                try:
                    request = decode(line)
                except ValueError:
                    break
                task = asyncio.create_task(answer(request))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        except (ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass
        except asyncio.CancelledError:
            # Shutting down. Returning (not re-raising) spares Python 3.11's
            # stream callback from logging the cancelled handler as an error.
            pass
        finally:
            for task in tasks:
                task.cancel()
            writer.close()

    return await asyncio.start_server(connected, host, port, limit=_LIMIT)


class Connection:
    """A client connection to one address, opened on first use and reopened after a failure."""

    def __init__(self, host: str, port: int, *, connect_timeout: float = 1.0) -> None:
        self.host = host
        self.port = port
        self._connect_timeout = connect_timeout
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[Message]] = {}
        self._ids = itertools.count(1)
        self._lock = asyncio.Lock()

    async def _open(self) -> asyncio.StreamWriter:
        async with self._lock:
            if self._writer is not None and not self._writer.is_closing():
                return self._writer
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(self.host, self.port, limit=_LIMIT),
                    self._connect_timeout,
                )
            except (OSError, TimeoutError) as e:
                raise LinkDown(f"cannot connect to {self.host}:{self.port}: {e}", sent=False) from e
            self._writer = writer
            self._reader_task = asyncio.create_task(self._read(reader, writer))
            return writer

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                try:
                    reply = decode(line)
                except ValueError:
                    break
                future = self._pending.pop(reply.get("id", -1), None)
                if future is not None and not future.done():
                    future.set_result(reply)
        except (ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            writer.close()
            if self._writer is writer:
                self._writer = None
            lost = LinkDown(f"connection to {self.host}:{self.port} closed", sent=True)
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(lost)
            self._pending.clear()

    async def request(self, message: Message, *, timeout: float) -> Message:
        """Send ``message`` and wait at most ``timeout`` seconds for its answer.

        Raises :class:`LinkDown` when the connection fails and ``TimeoutError``
        when no answer came in time (the request may still take effect).
        """
        writer = await self._open()
        rid = next(self._ids)
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._pending[rid] = future
        try:
            writer.write(encode({**message, "id": rid}))
            return await asyncio.wait_for(future, timeout)
        finally:
            self._pending.pop(rid, None)

    async def close(self) -> None:
        """Close the connection; pending requests fail with :class:`LinkDown`."""
        writer, task = self._writer, self._reader_task
        self._writer = None
        if writer is not None:
            writer.close()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await task
