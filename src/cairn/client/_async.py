"""The async service client: resolve, pick, and send through the resilience pipeline."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import httpx

from cairn.client._balance import Balancer
from cairn.client._base import ClientBase, check_request_kwargs
from cairn.client._core import (
    IDEMPOTENT_METHODS,
    UNSET,
    Endpoint,
    Options,
    ServiceState,
    Unset,
)
from cairn.discovery import Registry, connect
from cairn.resilience import Timeout, WaitFunc

__all__ = ["ServiceClient"]


class ServiceClient(ClientBase):
    """Call services by name: ``await client.get("inventory", "/inventory/items")``.

    Each call resolves the name from the registry's watched cache, picks an
    instance with the ``balancer`` (round robin by default), and runs the
    standard pipeline, outermost first:

    1. total timeout (``total_timeout``, 30 s);
    2. retry (``attempts``, 3; ``backoff``, full jitter from 50 ms; ``Retry-After``
       honoured up to ``max_retry_after``; a :class:`~cairn.resilience.RetryBudget`
       per service) on connection errors, timeouts and ``retry_statuses``
       (408, 429, 500, 502, 503, 504). Calls with a method that is not
       idempotent (POST, PATCH) are retried only when the request never left
       (connection refused, breaker open) unless the call says
       ``idempotent=True``. Each retry goes to another instance when there is one;
    3. the instance's circuit breaker (``breaker``: a factory, or ``None``);
    4. attempt timeout (``attempt_timeout``, 10 s).

    Consecutive failures on an instance eject it for a growing period
    (``outliers``), ahead of the registry's own health checks. Every
    default can be changed per client and per call. No instance to send to
    raises :class:`~cairn.client.NoHealthyInstance`.

    ``registry``: a :class:`~cairn.discovery.Registry`, a registry URL, or
    ``None`` for ``$CAIRN_REGISTRY``. ``http``: an ``httpx.AsyncClient`` to send
    with (default: one of the client's own, closed by :meth:`aclose`).
    ``metrics``: ``None`` (cairn.observability's registry if set up), ``False``
    or a ``prometheus_client.CollectorRegistry``. ``listeners``: called with
    :class:`~cairn.client.InstanceEjected` events (retry and breaker events go
    to ``cairn.resilience.subscribe`` listeners as usual).
    """

    def __init__(
        self,
        registry: Registry | str | None = None,
        *,
        http: httpx.AsyncClient | None = None,
        **settings: Any,
    ) -> None:
        super().__init__(**settings)
        if registry is not None and not isinstance(registry, Registry | str):
            raise ValueError(f"registry must be a Registry, a URL or None, not {registry!r}")
        self._owns_registry = not isinstance(registry, Registry)
        self.registry: Registry = registry if isinstance(registry, Registry) else connect(registry)
        self._owns_http = http is None
        self._http = (
            httpx.AsyncClient(timeout=httpx.Timeout(None, connect=self.connect_timeout))
            if http is None
            else http
        )
        self._timeouts: dict[tuple[str, float], Timeout] = {}

    async def aclose(self) -> None:
        """Close the HTTP client and the registry, if this client made them."""
        if self._owns_http:
            await self._http.aclose()
        if self._owns_registry:
            await self.registry.aclose()

    async def __aenter__(self) -> ServiceClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _timeout(self, name: str, seconds: float) -> Timeout:
        key = (name, seconds)
        policy = self._timeouts.get(key)
        if policy is None:
            if len(self._timeouts) > 256:
                self._timeouts.clear()
            policy = self._timeouts[key] = Timeout(seconds=seconds, name=name, clock=self._clock)
        return policy

    async def request(
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
        """Send ``method path`` to an instance of ``service``; returns the final response.

        ``kwargs`` go to httpx (``params``, ``headers``, ``json``, ``content`` …;
        a body must be bytes, text or JSON to be sent again on retry).
        ``tags``: only instances carrying all of them. ``idempotent``: whether
        a retry may repeat the request (default: by method). Every other
        option overrides the client's for this call. A response with a
        retryable status is returned when retries run out.
        """
        check_request_kwargs(kwargs)
        state = self._states.get(service) or self._state(service)
        options = self._call_options(
            attempts, backoff, total_timeout, attempt_timeout, retry_statuses, balancer
        )
        method = method.upper()
        safe = method in IDEMPOTENT_METHODS if idempotent is None else bool(idempotent)
        wanted = tags if isinstance(tags, tuple) else tuple(tags)
        metrics = self._metrics
        start = self._clock.monotonic() if metrics is not None else 0.0
        status: int | None = None
        try:
            total = options.total_timeout
            if total is None:
                response = await self._attempts(state, options, safe, method, path, wanted, kwargs)
            else:
                response = await self._timeout(f"{service}.total", total).acall(
                    self._attempts, state, options, safe, method, path, wanted, kwargs
                )
            status = response.status_code
            return response
        finally:
            if metrics is not None:
                metrics.call(service, status, self._clock.monotonic() - start)

    async def _attempts(
        self,
        state: ServiceState,
        options: Options,
        safe: bool,
        method: str,
        path: str,
        tags: tuple[str, ...],
        kwargs: dict[str, Any],
    ) -> httpx.Response:
        registry = self.registry
        service = state.name
        limit = options.attempt_timeout
        guard = None if limit is None else self._timeout(f"{service}.attempt", limit)
        tried: set[str] | None = None
        response: httpx.Response | None = None
        async for attempt in state.retry(options, safe).attempts():
            with attempt:
                view = registry.cached(service, tags=tags)
                if view is None:
                    view = await registry.instances(service, tags=tags)
                endpoint = state.pick(view, tags, options, tried)
                try:
                    response = await self._send(state, endpoint, guard, method, path, kwargs)
                except Exception:
                    tried = (tried or set()) | {endpoint.instance.id}
                    raise
                if response.status_code >= 500 or response.status_code in options.retry_statuses:
                    tried = (tried or set()) | {endpoint.instance.id}
                attempt.set_result(response)
        assert response is not None  # the loop ran at least once and did not raise
        return response

    async def _send(
        self,
        state: ServiceState,
        endpoint: Endpoint,
        guard: Timeout | None,
        method: str,
        path: str,
        kwargs: dict[str, Any],
    ) -> httpx.Response:
        request = self._http.build_request(method, endpoint.base + path, **kwargs)
        state.begin(endpoint)
        status: int | None = None
        error: BaseException | None = None
        try:
            breaker = endpoint.breaker
            if breaker is not None:
                response = await breaker.acall(self._transmit, request, guard)
            else:
                response = await self._transmit(request, guard)
            status = response.status_code
            return response
        except BaseException as exc:
            error = exc
            raise
        finally:
            state.end(endpoint, status, error)
            del error

    async def _transmit(self, request: httpx.Request, guard: Timeout | None) -> httpx.Response:
        if guard is None:
            return await self._http.send(request)
        return await guard.acall(self._http.send, request)

    async def get(self, service: str, path: str, **options: Any) -> httpx.Response:
        """``GET path`` on an instance of ``service`` (see :meth:`request`)."""
        return await self.request("GET", service, path, **options)

    async def head(self, service: str, path: str, **options: Any) -> httpx.Response:
        """``HEAD path`` (see :meth:`request`)."""
        return await self.request("HEAD", service, path, **options)

    async def options(self, service: str, path: str, **options: Any) -> httpx.Response:
        """``OPTIONS path`` (see :meth:`request`)."""
        return await self.request("OPTIONS", service, path, **options)

    async def post(self, service: str, path: str, **options: Any) -> httpx.Response:
        """``POST path`` (not retried once sent unless ``idempotent=True``; see :meth:`request`)."""
        return await self.request("POST", service, path, **options)

    async def put(self, service: str, path: str, **options: Any) -> httpx.Response:
        """``PUT path`` (see :meth:`request`)."""
        return await self.request("PUT", service, path, **options)

    async def patch(self, service: str, path: str, **options: Any) -> httpx.Response:
        """``PATCH path`` (not retried once sent unless ``idempotent=True``)."""
        return await self.request("PATCH", service, path, **options)

    async def delete(self, service: str, path: str, **options: Any) -> httpx.Response:
        """``DELETE path`` (see :meth:`request`)."""
        return await self.request("DELETE", service, path, **options)
