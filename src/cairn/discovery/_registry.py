"""The registry API every backend shares, and the cache that makes lookups cheap.

A backend supplies writes and one read primitive, Consul's blocking query
(:meth:`Registry._query`: "answer when the service changed since ``index``,
or after ``wait``"). The base class turns it into a watched cache: the first
:meth:`Registry.instances` for a service starts a watch task and waits for
its first answer; later calls are a dictionary lookup returning a prebuilt,
shared :class:`InstanceSet`. The protection threshold is applied here, once,
for every backend.
"""

from __future__ import annotations

import abc
import asyncio
import contextvars
import logging
import os
from collections.abc import AsyncIterator, Iterable
from typing import Any, ClassVar

from cairn.discovery._errors import DiscoveryError
from cairn.discovery._model import Entry, Health, Instance, InstanceSet
from cairn.resilience._clock import DEFAULT_CLOCK, Clock

__all__ = ["DEFAULT_REGISTRY_URL", "Registry"]

DEFAULT_REGISTRY_URL = "sqlite:///.cairn/registry.db"
"""The registry used when neither ``url`` nor ``CAIRN_REGISTRY`` says otherwise."""

_log = logging.getLogger("cairn.discovery")

Tags = tuple[str, ...] | frozenset[str]
_Key = tuple[str, bool, Any]


class _Watch:
    """One watched service: its latest raw answer and the views built from it."""

    __slots__ = (
        "changed",
        "entries",
        "first",
        "index",
        "keys",
        "last_good",
        "protected",
        "task",
    )

    def __init__(self) -> None:
        self.entries: tuple[Entry, ...] = ()
        self.index = 0
        self.last_good: tuple[Instance, ...] = ()
        self.protected: tuple[Instance, ...] | None = None
        self.keys: set[_Key] = set()
        self.changed = asyncio.Event()
        self.first: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.task: asyncio.Task[None] | None = None


class Registry(abc.ABC):
    """Where services find each other: register, deregister, heartbeat, look up, watch.

    Build one with :func:`cairn.discovery.connect` (it reads
    ``CAIRN_REGISTRY``). Keyword-only settings every backend shares:

    - ``protection_threshold``: a fraction in (0, 1], or ``None`` (off). When
      fewer than this fraction of a service's registered instances pass, as
      when a network blip fails every heartbeat at once, ``instances()`` keeps
      serving the last known healthy set and says so (``protected=True``),
      as Eureka's self-preservation and Nacos's protection threshold do;
    - ``wait``: how long one blocking query waits for a change (seconds);
    - ``clock``: time for TTLs, probes and retries (tests pass a
      :class:`cairn.testing.VirtualClock`).
    """

    scheme: ClassVar[str] = ""

    def __init__(
        self,
        *,
        protection_threshold: float | None = None,
        wait: float = 30.0,
        clock: Clock | None = None,
    ) -> None:
        if protection_threshold is not None and not 0.0 < protection_threshold <= 1.0:
            raise ValueError(
                "protection_threshold must be a fraction in (0, 1] (e.g. 0.5) or None to turn "
                f"it off, not {protection_threshold!r}"
            )
        if not 0.01 <= wait <= 600.0:
            raise ValueError(f"wait must be between 0.01 and 600 seconds, not {wait!r}")
        self.protection_threshold = protection_threshold
        self.wait = wait
        self._clock: Clock = DEFAULT_CLOCK if clock is None else clock
        self._views: dict[_Key, InstanceSet] = {}
        self._watches: dict[str, _Watch] = {}
        self._closed = False

    # -- what a backend provides ------------------------------------------

    @abc.abstractmethod
    async def register(self, instance: Instance) -> None:
        """Add ``instance`` (or replace the one with its id); it starts passing.

        A TTL-checked instance must then :meth:`heartbeat` at least once per
        ``ttl``; an HTTP-checked one is probed (by this process for the
        embedded and etcd backends, by the server for Consul's API).
        """

    @abc.abstractmethod
    async def deregister(self, instance: Instance | str) -> bool:
        """Remove an instance (by id or record); ``False`` if it was not registered."""

    @abc.abstractmethod
    async def heartbeat(
        self, instance_id: str, *, health: Health = Health.PASSING, output: str = ""
    ) -> None:
        """Report a TTL-checked instance alive (and its health): its TTL restarts.

        Raises :class:`UnknownInstance` if the instance is not registered any
        more (removed after ``deregister_after``): register it again.
        """

    @abc.abstractmethod
    async def services(self) -> tuple[str, ...]:
        """Names of the services with at least one registered instance, sorted."""

    @abc.abstractmethod
    async def _query(
        self, service: str, *, index: int, wait: float
    ) -> tuple[int, tuple[Entry, ...]]:
        """Blocking query: the service's entries once its index passes ``index``, or after ``wait``.

        ``index=0`` answers at once. The index grows with every change to the
        service's entries (health included).
        """

    async def _close(self) -> None:  # noqa: B027 - backends override when they hold resources
        """Release the backend's own resources."""

    # -- lookups -----------------------------------------------------------

    async def instances(
        self, service: str, *, passing: bool = True, tags: Iterable[str] = ()
    ) -> InstanceSet:
        """The instances of ``service`` (only passing ones unless ``passing=False``).

        ``tags``: only instances carrying all of them. Served from a cache the
        registry keeps current with a blocking-query watch; the first call for
        a service waits for the watch's first answer.
        """
        try:
            hit = self._views.get((service, passing, tags))
        except TypeError:  # unhashable tags, e.g. a list
            hit = None
        if hit is not None:
            return hit
        watch = await self._ensure(service)
        return self._view(service, watch, passing, tags)

    def cached(
        self, service: str, *, passing: bool = True, tags: Iterable[str] = ()
    ) -> InstanceSet | None:
        """What :meth:`instances` would answer, without waiting: ``None`` if not watched yet."""
        try:
            hit = self._views.get((service, passing, tags))
        except TypeError:
            hit = None
        if hit is not None:
            return hit
        watch = self._watches.get(service)
        if watch is None or not watch.first.done() or watch.first.exception() is not None:
            return None
        return self._view(service, watch, passing, tags)

    async def fetch(
        self, service: str, *, passing: bool = True, tags: Iterable[str] = ()
    ) -> InstanceSet:
        """A fresh read from the backend, bypassing (and not starting) the watch."""
        index, entries = await self._query(service, index=0, wait=0.0)
        scratch = _Watch()
        scratch.first.set_result(None)
        self._absorb(scratch, index, entries)
        return self._build(service, scratch, passing, frozenset(tags))

    async def watch(
        self, service: str, *, passing: bool = True, tags: Iterable[str] = ()
    ) -> AsyncIterator[InstanceSet]:
        """Yield the current :class:`InstanceSet`, then a new one whenever it changes."""
        watch = await self._ensure(service)
        wanted = frozenset(tags)
        last: InstanceSet | None = None
        while True:
            changed = watch.changed
            view = self._view(service, watch, passing, wanted)
            if view != last:
                last = view
                yield view
            await changed.wait()

    async def aclose(self) -> None:
        """Stop every watch and release the backend."""
        if self._closed:
            return
        self._closed = True
        watches = list(self._watches.values())
        self._watches.clear()
        self._views.clear()
        tasks = [w.task for w in watches if w.task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            # Bounded: a backend stuck closing a connection must not hang shutdown.
            await asyncio.wait(tasks, timeout=5.0)
        await self._close()

    async def __aenter__(self) -> Registry:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- the watched cache ---------------------------------------------------

    async def _ensure(self, service: str) -> _Watch:
        if self._closed:
            raise DiscoveryError("this registry is closed; connect() a new one")
        watch = self._watches.get(service)
        if watch is None:
            watch = _Watch()
            self._watches[service] = watch
            # A fresh context: the watch outlives the request that first asked,
            # and must not carry its trace (or anything else) along.
            watch.task = asyncio.get_running_loop().create_task(
                self._follow(service, watch),
                name=f"cairn-watch-{service}",
                context=contextvars.Context(),
            )
        try:
            await asyncio.shield(watch.first)
        except DiscoveryError:
            # Let the next call try again rather than remember the failure.
            if self._watches.get(service) is watch:
                del self._watches[service]
            raise
        return watch

    async def _follow(self, service: str, watch: _Watch) -> None:
        try:
            index, entries = await self._query(service, index=0, wait=0.0)
        except DiscoveryError as exc:
            watch.first.set_exception(exc)
            return
        except BaseException as exc:
            watch.first.set_exception(DiscoveryError(f"watching {service!r} failed: {exc!r}"))
            raise
        self._publish(service, watch, index, entries)
        watch.first.set_result(None)
        delay = 0.05
        while True:
            try:
                index, entries = await self._query(service, index=watch.index, wait=self.wait)
            except Exception as exc:
                # Keep serving the last known set; a registry outage must not
                # empty every client's view of the world.
                _log.warning("watch of %r failed, retrying in %.2fs: %s", service, delay, exc)
                await self._clock.asleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.05
            if index != watch.index or entries != watch.entries:
                self._publish(service, watch, index, entries)

    def _publish(self, service: str, watch: _Watch, index: int, entries: tuple[Entry, ...]) -> None:
        self._absorb(watch, index, entries)
        for key in watch.keys:
            self._views.pop(key, None)
        watch.keys.clear()
        changed, watch.changed = watch.changed, asyncio.Event()
        changed.set()

    def _absorb(self, watch: _Watch, index: int, entries: tuple[Entry, ...]) -> None:
        watch.index = index
        watch.entries = entries
        passing = tuple(e.instance for e in entries if e.health is Health.PASSING)
        threshold = self.protection_threshold
        if threshold is not None and entries and len(passing) < threshold * len(entries):
            registered = {e.instance.id for e in entries}
            kept = tuple(i for i in watch.last_good if i.id in registered)
            if len(kept) > len(passing):
                watch.protected = kept
                return
        watch.protected = None
        watch.last_good = passing

    def _view(self, service: str, watch: _Watch, passing: bool, tags: Any) -> InstanceSet:
        wanted = frozenset(tags)
        view = self._build(service, watch, passing, wanted)
        try:
            key = (service, passing, tags)
            self._views[key] = view
            watch.keys.add(key)
        except TypeError:
            pass
        return view

    def _build(
        self, service: str, watch: _Watch, passing: bool, wanted: frozenset[str]
    ) -> InstanceSet:
        entries = watch.entries
        protected = passing and watch.protected is not None
        if not passing:
            chosen: tuple[Instance, ...] = tuple(e.instance for e in entries)
        elif watch.protected is not None:
            chosen = watch.protected
        else:
            chosen = watch.last_good
        if wanted:
            chosen = tuple(i for i in chosen if wanted.issubset(i.tags))
        health = {e.instance.id: e.health for e in entries}
        return InstanceSet(
            service,
            chosen,
            health=health,
            version=watch.index,
            registered=len(entries),
            healthy=sum(1 for e in entries if e.health is Health.PASSING),
            protected=protected,
        )


def registry_url(url: str | None) -> str:
    """The URL to use: ``url``, else ``$CAIRN_REGISTRY``, else the embedded default."""
    if url:
        return url
    return os.environ.get("CAIRN_REGISTRY") or DEFAULT_REGISTRY_URL
