"""A service's life in the registry: register, heartbeat, health, drain on SIGTERM.

:class:`Service` wraps an ASGI app (FastAPI, Starlette, anything). Its
lifespan startup sets up observability, connects to the registry and
registers the instance; a task heartbeats its TTL check. It answers
``/health/live`` and ``/health/ready`` itself; ``/metrics`` is served by
cairn.observability's middleware. On SIGTERM it turns not ready,
deregisters, keeps serving for ``drain_delay`` seconds while clients' caches
catch up, then hands the signal to the server (uvicorn), which stops
accepting connections and drains the requests in flight. A process killed
outright stops heartbeating and turns critical one TTL later.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import signal
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from types import FrameType
from typing import Any

from cairn.discovery import Instance, Registry, TTLCheck, UnknownInstance, connect
from cairn.resilience import DEFAULT_CLOCK, Clock
from cairn.service._chaos import Chaos

__all__ = ["Service"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
_Handler = Callable[[int, FrameType | None], Any] | int | None

_log = logging.getLogger("cairn.service")


def _seconds(name: str, value: float, *, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise ValueError(f"{name} must be a number of seconds, not {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high} seconds, not {value!r}")
    return float(value)


class Service:
    """An ASGI app that registers itself, heartbeats, reports health and drains on SIGTERM.

    ::

        app = Service(FastAPI(), name="inventory", port=8000)   # then: uvicorn mod:app --port 8000

    or let :func:`cairn.service.serve` run it (any port, ``port=0`` included).

    - ``name``: the service name clients resolve; ``instance_id`` defaults to
      ``<name>-<12 hex>``; ``address`` (127.0.0.1) and ``port`` are what
      clients connect to. Under plain uvicorn ``port`` must be given (the
      app cannot learn the bound port before it starts); ``serve()`` fills it in.
    - ``registry``: a :class:`~cairn.discovery.Registry`, a URL, or ``None``
      for ``$CAIRN_REGISTRY``.
    - ``ttl`` (10 s): the TTL check; heartbeats every ``ttl / 3``. A critical
      instance is removed after ``deregister_after`` (default ``max(60, 6·ttl)``).
    - ``drain_delay`` (1 s): after deregistering on SIGTERM, keep serving
      that long before the server stops accepting, so clients stop choosing
      this instance first. Bound the draining of requests in flight with
      uvicorn's ``timeout_graceful_shutdown`` (``serve(drain_timeout=)``).
    - ``observability``: ``True`` calls ``cairn.observability.setup(service=name)``
      (unless already set up) and instruments the app (``/metrics``); a dict
      gives ``setup()`` its arguments; ``False`` leaves it out.
    - ``handle_signals``: take SIGTERM/SIGINT (main thread only) to drain as above.
    - ``chaos_token`` (default ``$CAIRN_CHAOS_TOKEN``): when set, faults can be
      injected through ``/_cairn/chaos`` with this bearer token (``cairn chaos``).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        name: str,
        registry: Registry | str | None = None,
        instance_id: str | None = None,
        address: str = "127.0.0.1",
        port: int | None = None,
        tags: Iterable[str] = (),
        meta: Mapping[str, str] | None = None,
        ttl: float = 10.0,
        deregister_after: float | None = None,
        drain_delay: float = 1.0,
        observability: bool | Mapping[str, Any] = True,
        handle_signals: bool = True,
        clock: Clock = DEFAULT_CLOCK,
        chaos_token: str | None = None,
    ) -> None:
        ttl = _seconds("ttl", ttl, low=0.05, high=86_400.0)
        if deregister_after is None:
            deregister_after = max(60.0, 6 * ttl)
        # Validates name, id, address, port, tags and meta now, not at startup.
        self.check = TTLCheck(ttl=ttl, deregister_after=deregister_after)
        self.instance = Instance(
            name,
            instance_id or f"{name}-{uuid.uuid4().hex[:12]}",
            address,
            0 if port is None else port,
            tags=tuple(tags),
            meta=dict(meta or {}),
            check=self.check,
        )
        if registry is not None and not isinstance(registry, Registry | str):
            raise ValueError(f"registry must be a Registry, a URL or None, not {registry!r}")
        self.port_known = port is not None and port != 0
        self.drain_delay = _seconds("drain_delay", drain_delay, low=0.0, high=600.0)
        self.heartbeat_interval = ttl / 3
        self.handle_signals = handle_signals
        self._registry_spec = registry
        self.registry: Registry | None = registry if isinstance(registry, Registry) else None
        self._clock = clock
        self._observability = observability
        self.chaos = Chaos.from_env(chaos_token)
        """The fault injector (``None``: off), answering ``/_cairn/chaos``."""
        if self.chaos is not None:
            app = self.chaos.wrap(app)
        self.app = self._instrument(app) if observability is not False else app
        self.ready = False
        """Whether ``/health/ready`` answers 200: registered and not draining."""
        self.draining = False
        self.in_flight = 0
        """HTTP requests being answered right now."""
        self.registered = False
        self._heartbeat: asyncio.Task[None] | None = None
        self._drain: asyncio.Task[None] | None = None
        self._restore: list[tuple[int, _Handler]] = []

    @property
    def name(self) -> str:
        return self.instance.service

    @property
    def id(self) -> str:
        return self.instance.id

    def _instrument(self, app: ASGIApp) -> ASGIApp:
        try:
            from cairn.observability import DEFAULT_EXCLUDED_PATHS, CairnMiddleware, instrument
        except ImportError:
            if self._observability is True:
                _log.info("cairn.observability is not installed; serving without it")
                self._observability = False
                return app
            raise
        if isinstance(app, CairnMiddleware) or any(
            getattr(m, "cls", None) is CairnMiddleware for m in getattr(app, "user_middleware", ())
        ):
            return app  # instrumented already: a second middleware would trace twice
        excluded = (*DEFAULT_EXCLUDED_PATHS, "/health/live", "/health/ready")
        instrumented: ASGIApp = instrument(app, excluded_paths=excluded)
        return instrumented

    # -- lifecycle ----------------------------------------------------------

    async def start(self) -> None:
        """Set up observability, connect, and register if the port is known."""
        self._setup_observability()
        if self.registry is None:
            spec = self._registry_spec
            self.registry = connect(spec if isinstance(spec, str) else None)
        if self.handle_signals:
            self._install_signals()
        if self.port_known:
            await self.register()

    def _setup_observability(self) -> None:
        wanted = self._observability
        if wanted is False:
            return
        from cairn.observability import current, setup

        if current() is not None:
            return
        arguments = dict(wanted) if isinstance(wanted, Mapping) else {}
        arguments.setdefault("service", self.name)
        arguments.setdefault("instance_id", self.id)
        setup(**arguments)

    async def register(self, port: int | None = None) -> None:
        """Register the instance (at ``port`` if given: the port the server bound)
        and start heartbeating; ``/health/ready`` answers 200 from then on."""
        if port is not None:
            self.instance = Instance(
                self.instance.service,
                self.instance.id,
                self.instance.address,
                port,
                tags=self.instance.tags,
                meta=self.instance.meta,
                check=self.check,
            )
            self.port_known = True
        if not self.port_known:
            raise ValueError(
                "the service's port is unknown: pass port= (the port uvicorn listens on) "
                "or run it with cairn.service.serve()"
            )
        assert self.registry is not None, "start() first"
        await self.registry.register(self.instance)
        self.registered = True
        self.ready = not self.draining
        if self._heartbeat is None:
            self._heartbeat = asyncio.get_running_loop().create_task(
                self._beat(), name=f"cairn-heartbeat-{self.id}"
            )
        _log.info("registered %s at %s", self.id, self.instance.host_port)

    async def _beat(self) -> None:
        registry = self.registry
        assert registry is not None
        while True:
            await self._clock.asleep(self.heartbeat_interval)
            try:
                await registry.heartbeat(self.id)
            except UnknownInstance:
                # Reaped while we were slow (or the registry restarted): come back.
                if not self.draining:
                    await registry.register(self.instance)
            except Exception as exc:
                _log.warning("heartbeat of %s failed: %s", self.id, exc)

    async def deregister(self) -> None:
        """Turn not ready, stop heartbeating and leave the registry (idempotent)."""
        self.ready = False
        task, self._heartbeat = self._heartbeat, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.registered and self.registry is not None:
            self.registered = False
            try:
                async with asyncio.timeout(5.0):
                    await self.registry.deregister(self.id)
            except Exception as exc:
                # It will turn critical one TTL after the last heartbeat anyway.
                _log.warning("deregistering %s failed: %s", self.id, exc)

    async def drain(self) -> None:
        """Leave the registry, then keep serving ``drain_delay`` seconds."""
        self.draining = True
        await self.deregister()
        if self.drain_delay:
            await self._clock.asleep(self.drain_delay)

    async def stop(self) -> None:
        """Deregister if still registered, restore signal handlers, close the registry."""
        await self.deregister()
        self._uninstall_signals()
        if self.registry is not None and not isinstance(self._registry_spec, Registry):
            await self.registry.aclose()
            self.registry = None

    # -- signals ------------------------------------------------------------

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous = signal.getsignal(sig)

            def handler(
                signum: int, frame: FrameType | None, previous: _Handler = previous
            ) -> None:
                self._on_signal(loop, signum, frame, previous)

            signal.signal(sig, handler)
            self._restore.append((sig, previous))

    def _uninstall_signals(self) -> None:
        while self._restore:
            sig, previous = self._restore.pop()
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(sig, previous)

    def _on_signal(
        self,
        loop: asyncio.AbstractEventLoop,
        signum: int,
        frame: FrameType | None,
        previous: _Handler,
    ) -> None:
        if self._drain is not None or not self.registered:
            _pass_on(previous, signum, frame)  # a second signal, or nothing to drain: at once
            return

        async def drain_then_exit() -> None:
            try:
                await self.drain()
            finally:
                _pass_on(previous, signum, None)

        def begin() -> None:
            self._drain = loop.create_task(drain_then_exit(), name=f"cairn-drain-{self.id}")

        loop.call_soon_threadsafe(begin)

    # -- ASGI ---------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        if kind != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path == "/health/live":
            await _answer(send, 200, b'{"status":"live"}')
            return
        if path == "/health/ready":
            if self.ready:
                await _answer(send, 200, b'{"status":"ready"}')
            else:
                state = b"draining" if self.draining else b"starting"
                await _answer(send, 503, b'{"status":"' + state + b'"}')
            return
        if self.chaos is not None and path.startswith("/_cairn/"):
            await self.chaos.handle(scope, receive, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        inner_started = False

        async def inner_receive() -> Message:
            nonlocal inner_started
            inner_started = True
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                await self.stop()
            return message

        async def inner_send(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                try:
                    await self.start()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                    return
            await send(message)

        try:
            await self.app(scope, inner_receive, inner_send)
        except Exception:
            if inner_started:
                raise
            await self._own_lifespan(receive, send)  # the app takes no lifespan: run ours

    async def _own_lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.start()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return


def _pass_on(previous: _Handler, signum: int, frame: FrameType | None) -> None:
    if callable(previous):
        previous(signum, frame)
    elif previous == signal.SIG_DFL:
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)


async def _answer(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
