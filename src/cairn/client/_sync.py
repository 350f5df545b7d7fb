"""The sync service client: the async client's decisions, driven with blocking I/O.

The registry API is async (its watches are tasks), so the sync client runs
them on an event loop in a daemon thread of its own. A watch task per
(service, tags) stores each new view in a dictionary; a call reads it with one
dictionary lookup and never waits on the loop once the service was seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine, Iterable
from typing import Any, TypeVar

import httpx

from cairn.client._balance import Balancer
from cairn.client._base import ClientBase, check_request_kwargs
from cairn.client._core import IDEMPOTENT_METHODS, UNSET, Endpoint, Options, ServiceState, Unset
from cairn.discovery import InstanceSet, Registry, connect
from cairn.resilience import TimeoutExceeded, WaitFunc, deadline_scope, time_left

__all__ = ["SyncServiceClient"]

T = TypeVar("T")
_Key = tuple[str, tuple[str, ...]]


class _LoopThread:
    """An event loop in a daemon thread, for the registry's watches."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="cairn-client-registry", daemon=True
        )
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5.0)
        if not self.thread.is_alive():
            self.loop.close()


class SyncServiceClient(ClientBase):
    """The blocking twin of :class:`~cairn.client.ServiceClient`: same settings, same
    pipeline, same defaults; ``client.get("inventory", "/inventory/items")``.

    Timeouts are enforced through httpx's own per-request timeout, narrowed
    to the time left before the call's total deadline (a blocking call cannot
    be cancelled from outside). The registry, when given as an object, must
    not be used from another event loop: its watches run on this client's.
    Close the client (or use it as a context manager) to stop them.
    """

    def __init__(
        self,
        registry: Registry | str | None = None,
        *,
        http: httpx.Client | None = None,
        **settings: Any,
    ) -> None:
        super().__init__(**settings)
        if registry is not None and not isinstance(registry, Registry | str):
            raise ValueError(f"registry must be a Registry, a URL or None, not {registry!r}")
        self._owns_registry = not isinstance(registry, Registry)
        self._loop = _LoopThread()
        self.registry: Registry = registry if isinstance(registry, Registry) else connect(registry)
        self._owns_http = http is None
        self._http = httpx.Client(timeout=None) if http is None else http
        self._views: dict[_Key, InstanceSet] = {}
        self._watches: dict[_Key, asyncio.Task[None]] = {}
        self._lock = threading.Lock()
        self._closed = False

    def close(self) -> None:
        """Stop the watches; close the HTTP client and the registry if this client made them."""
        if self._closed:
            return
        self._closed = True
        self._loop.run(self._shutdown(), 10.0)
        self._loop.stop()
        if self._owns_http:
            self._http.close()

    async def _shutdown(self) -> None:
        tasks = list(self._watches.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._owns_registry:
            await self.registry.aclose()

    def __enter__(self) -> SyncServiceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- resolving --------------------------------------------------------

    def _view(self, service: str, tags: tuple[str, ...]) -> InstanceSet:
        key = (service, tags)
        view = self._views.get(key)
        if view is not None:
            return view
        if self._closed:
            raise RuntimeError("this SyncServiceClient is closed")
        with self._lock:  # one first lookup per service at a time
            view = self._views.get(key)
            if view is None:
                view = self._loop.run(self._first(key), self.registry.wait + 30.0)
        return view

    async def _first(self, key: _Key) -> InstanceSet:
        first: asyncio.Future[InstanceSet] = asyncio.get_running_loop().create_future()
        task = asyncio.get_running_loop().create_task(self._follow(key, first))
        self._watches[key] = task
        try:
            return await first
        except BaseException:
            self._watches.pop(key, None)
            raise

    async def _follow(self, key: _Key, first: asyncio.Future[InstanceSet]) -> None:
        service, tags = key
        try:
            async for view in self.registry.watch(service, tags=tags):
                self._views[key] = view
                if not first.done():
                    first.set_result(view)
        except Exception as exc:
            if not first.done():
                first.set_exception(exc)
            else:  # pragma: no cover - the registry's watch retries by itself
                raise

    # -- calls ------------------------------------------------------------

    def request(
        self,
        method: str,
        service: str,
        path: str,
        *,
        tags: Iterable[str] = (),
        idempotent: bool | None = None,
        attempts: int | Unset = UNSET,
        backoff: WaitFunc | Unset = UNSET,
        total_timeout: float | Unset | None = UNSET,
        attempt_timeout: float | Unset | None = UNSET,
        retry_statuses: Iterable[int] | Unset = UNSET,
        balancer: Balancer | Unset = UNSET,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send ``method path`` to an instance of ``service`` (see ``ServiceClient.request``)."""
        check_request_kwargs(kwargs)
        state = self._states.get(service) or self._state(service)
        options = self._call_options(
            attempts, backoff, total_timeout, attempt_timeout, retry_statuses, balancer
        )
        method = method.upper()
        safe = method in IDEMPOTENT_METHODS if idempotent is None else bool(idempotent)
        wanted = tags if isinstance(tags, tuple) else tuple(tags)
        metrics = self._metrics
        clock = self._clock
        start = clock.monotonic()
        status: int | None = None
        try:
            total = options.total_timeout
            if total is None:
                response = self._attempts(state, options, safe, method, path, wanted, kwargs)
            else:
                with deadline_scope(start + total):
                    try:
                        response = self._attempts(
                            state, options, safe, method, path, wanted, kwargs
                        )
                    except (httpx.TimeoutException, TimeoutExceeded) as exc:
                        if time_left(clock) == 0.0:
                            raise TimeoutExceeded(f"{service}.total", total) from exc
                        raise
            status = response.status_code
            return response
        finally:
            if metrics is not None:
                metrics.call(service, status, clock.monotonic() - start)

    def _attempts(
        self,
        state: ServiceState,
        options: Options,
        safe: bool,
        method: str,
        path: str,
        tags: tuple[str, ...],
        kwargs: dict[str, Any],
    ) -> httpx.Response:
        tried: set[str] | None = None
        response: httpx.Response | None = None
        for attempt in state.retry(options, safe).attempts():
            with attempt:
                view = self._view(state.name, tags)
                endpoint = state.pick(view, tags, options, tried)
                try:
                    response = self._send(state, endpoint, options, method, path, kwargs)
                except Exception:
                    tried = (tried or set()) | {endpoint.instance.id}
                    raise
                if response.status_code >= 500 or response.status_code in options.retry_statuses:
                    tried = (tried or set()) | {endpoint.instance.id}
                attempt.set_result(response)
        assert response is not None  # the loop ran at least once and did not raise
        return response

    def _limit(self, state: ServiceState, options: Options) -> httpx.Timeout:
        limit = options.attempt_timeout
        left = time_left(self._clock)
        if left is not None:
            if left <= 0.0:
                raise TimeoutExceeded(f"{state.name}.total", options.total_timeout or 0.0)
            limit = left if limit is None else min(limit, left)
        if limit is None:
            return httpx.Timeout(None, connect=self.connect_timeout)
        return httpx.Timeout(limit, connect=min(limit, self.connect_timeout))

    def _send(
        self,
        state: ServiceState,
        endpoint: Endpoint,
        options: Options,
        method: str,
        path: str,
        kwargs: dict[str, Any],
    ) -> httpx.Response:
        request = self._http.build_request(
            method, endpoint.base + path, timeout=self._limit(state, options), **kwargs
        )
        state.begin(endpoint)
        status: int | None = None
        error: BaseException | None = None
        try:
            breaker = endpoint.breaker
            if breaker is not None:
                response = breaker.call(self._http.send, request)
            else:
                response = self._http.send(request)
            status = response.status_code
            return response
        except BaseException as exc:
            error = exc
            raise
        finally:
            state.end(endpoint, status, error)
            del error

    def get(self, service: str, path: str, **options: Any) -> httpx.Response:
        """``GET path`` on an instance of ``service``."""
        return self.request("GET", service, path, **options)

    def head(self, service: str, path: str, **options: Any) -> httpx.Response:
        """``HEAD path``."""
        return self.request("HEAD", service, path, **options)

    def options(self, service: str, path: str, **options: Any) -> httpx.Response:
        """``OPTIONS path``."""
        return self.request("OPTIONS", service, path, **options)

    def post(self, service: str, path: str, **options: Any) -> httpx.Response:
        """``POST path`` (not retried once sent unless ``idempotent=True``)."""
        return self.request("POST", service, path, **options)

    def put(self, service: str, path: str, **options: Any) -> httpx.Response:
        """``PUT path``."""
        return self.request("PUT", service, path, **options)

    def patch(self, service: str, path: str, **options: Any) -> httpx.Response:
        """``PATCH path`` (not retried once sent unless ``idempotent=True``)."""
        return self.request("PATCH", service, path, **options)

    def delete(self, service: str, path: str, **options: Any) -> httpx.Response:
        """``DELETE path``."""
        return self.request("DELETE", service, path, **options)
