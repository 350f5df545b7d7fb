"""The embedded registry: one SQLite file, shared by every process on the machine.

No server: each process opens the file (WAL mode, so readers never block
writers; a busy timeout, so two writers queue instead of failing). Health is
stored as a verdict with an expiry on the system-wide monotonic clock: a TTL
heartbeat sets ``expires_at = now + ttl``; an HTTP probe's verdict lasts two
intervals. Every reader derives the current health from it, so an instance
whose process died turns critical without anyone noticing the death, and a
reader removes instances critical for longer than ``deregister_after``.

HTTP checks are probed by the process that registered the instance (the
embedded equivalent of a Consul agent on the same host).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from pathlib import Path
from typing import Any

from cairn.discovery._codec import dumps_instance, loads_instance
from cairn.discovery._errors import RegistryUnavailable, UnknownInstance
from cairn.discovery._health import Probe, Prober
from cairn.discovery._model import Entry, Health, HTTPCheck, Instance, TTLCheck
from cairn.discovery._registry import Registry
from cairn.resilience._clock import Clock

__all__ = ["SQLiteRegistry"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS instances (
    id TEXT PRIMARY KEY,
    service TEXT NOT NULL,
    record TEXT NOT NULL,
    health TEXT NOT NULL,
    output TEXT NOT NULL DEFAULT '',
    expires_at REAL,
    critical_since REAL,
    deregister_after REAL,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS instances_by_service ON instances (service, id);
CREATE TABLE IF NOT EXISTS counter (one INTEGER PRIMARY KEY CHECK (one = 1), seq INTEGER NOT NULL);
INSERT OR IGNORE INTO counter (one, seq) VALUES (1, 0);
"""

_MEMORY = ":memory:"
# Another process's clock reading can be a hair ahead of ours; more than this
# means the row was written before the machine booted (monotonic restarted).
_CLOCK_SLACK = 1.0


def _effective(
    health: str, expires_at: float | None, critical_since: float | None, now: float
) -> tuple[Health, float | None]:
    """The health a stored verdict means at ``now``, and since when it is critical."""
    if expires_at is not None and now >= expires_at:
        since = (
            critical_since
            if health == Health.CRITICAL.value and critical_since is not None
            else expires_at
        )
        return Health.CRITICAL, since
    state = Health(health)
    return state, (critical_since if state is Health.CRITICAL else None)


class SQLiteRegistry(Registry):
    """The embedded registry (``sqlite:///path``; ``sqlite://`` for one in memory).

    ``poll_interval``: how often a watch looks for changes made by other
    processes (changes made through this object wake watches at once).
    """

    scheme = "sqlite"

    def __init__(
        self,
        path: str | Path = ".cairn/registry.db",
        *,
        poll_interval: float = 0.05,
        busy_timeout: float = 5.0,
        probe: Probe | None = None,
        protection_threshold: float | None = None,
        wait: float = 30.0,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(protection_threshold=protection_threshold, wait=wait, clock=clock)
        if not 0.001 <= poll_interval <= 60.0:
            raise ValueError(
                f"poll_interval must be between 0.001 and 60 seconds, not {poll_interval!r}"
            )
        if not 0.0 <= busy_timeout <= 600.0:
            raise ValueError(
                f"busy_timeout must be between 0 and 600 seconds, not {busy_timeout!r}"
            )
        self.path = str(path)
        self.poll_interval = poll_interval
        if self.path != _MEMORY:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(
                self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
            if self.path != _MEMORY:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise RegistryUnavailable(f"sqlite:///{self.path}", str(exc)) from exc
        self._lock = threading.Lock()
        self._prober = Prober(
            report=self._report, expire=self._expire, clock=self._clock, probe=probe
        )
        self._seen: dict[str, tuple[tuple[Entry, ...], int]] = {}
        self._counter = self._seq()
        self._local: asyncio.Event | None = None
        self._forget_previous_boot()

    def __repr__(self) -> str:
        return f"SQLiteRegistry({self.path!r})"

    # -- storage -----------------------------------------------------------

    def _run(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise RegistryUnavailable(f"sqlite:///{self.path}", str(exc)) from exc

    def _write(self, statements: list[tuple[str, tuple[Any, ...]]]) -> list[int]:
        """Run statements in one write transaction, bumping the change counter."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    counts = [self._db.execute(sql, args).rowcount for sql, args in statements]
                    if any(counts):
                        self._db.execute("UPDATE counter SET seq = seq + 1")
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise RegistryUnavailable(f"sqlite:///{self.path}", str(exc)) from exc
        self._wake()
        return counts

    def _seq(self) -> int:
        return int(self._run("SELECT seq FROM counter")[0][0])

    def _wake(self) -> None:
        if self._local is not None:
            event, self._local = self._local, None
            event.set()

    def _forget_previous_boot(self) -> None:
        now = self._clock.monotonic()
        # Rows stamped after "now" were written before a reboot: their expiry
        # times mean nothing on this boot's clock. Those with a TTL lapse now.
        self._write(
            [
                (
                    "UPDATE instances SET expires_at = ?, critical_since = NULL, updated = ? "
                    "WHERE updated > ? AND expires_at IS NOT NULL",
                    (now, now, now + _CLOCK_SLACK),
                ),
                ("UPDATE instances SET updated = ? WHERE updated > ?", (now, now + _CLOCK_SLACK)),
            ]
        )

    # -- writes ------------------------------------------------------------

    async def register(self, instance: Instance) -> None:
        now = self._clock.monotonic()
        check = instance.check
        expires: float | None = None
        health = Health.PASSING
        since: float | None = None
        dereg = check.deregister_after if check is not None else None
        if isinstance(check, TTLCheck):
            expires = now + check.ttl
        elif isinstance(check, HTTPCheck):
            # Not served before its first successful probe, as in Consul.
            health, since, expires = Health.CRITICAL, now, now + check.lapse
        self._write(
            [
                (
                    "INSERT OR REPLACE INTO instances (id, service, record, health, output, "
                    "expires_at, critical_since, deregister_after, updated) "
                    "VALUES (?, ?, ?, ?, '', ?, ?, ?, ?)",
                    (
                        instance.id,
                        instance.service,
                        dumps_instance(instance),
                        health.value,
                        expires,
                        since,
                        dereg,
                        now,
                    ),
                )
            ]
        )
        if isinstance(check, HTTPCheck):
            self._prober.start(instance)
        else:
            self._prober.stop(instance.id)

    async def deregister(self, instance: Instance | str) -> bool:
        instance_id = instance if isinstance(instance, str) else instance.id
        self._prober.stop(instance_id)
        (count,) = self._write([("DELETE FROM instances WHERE id = ?", (instance_id,))])
        return count > 0

    async def heartbeat(
        self, instance_id: str, *, health: Health = Health.PASSING, output: str = ""
    ) -> None:
        now = self._clock.monotonic()
        rows = self._run(
            "SELECT record, health, expires_at, critical_since, deregister_after FROM instances WHERE id = ?",
            (instance_id,),
        )
        if not rows:
            raise UnknownInstance(instance_id)
        record, stored, expires_at, critical_since, dereg = rows[0]
        check = loads_instance(record).check
        if not isinstance(check, TTLCheck):
            raise ValueError(f"instance {instance_id!r} has no TTL check to heartbeat")
        current, since = _effective(stored, expires_at, critical_since, now)
        if since is not None and dereg is not None and now - since >= dereg:
            self._write([("DELETE FROM instances WHERE id = ?", (instance_id,))])
            raise UnknownInstance(instance_id)
        if health is Health.CRITICAL:
            since = since if current is Health.CRITICAL else now
        else:
            since = None
        (count,) = self._write(
            [
                (
                    "UPDATE instances SET health = ?, output = ?, expires_at = ?, critical_since = ?, "
                    "updated = ? WHERE id = ?",
                    (health.value, output[:4096], now + check.ttl, since, now, instance_id),
                )
            ]
        )
        if count == 0:
            raise UnknownInstance(instance_id)

    async def _report(
        self, instance: Instance, health: Health, output: str, valid_for: float
    ) -> None:
        now = self._clock.monotonic()
        self._write(
            [
                (
                    "UPDATE instances SET health = ?, output = ?, expires_at = ?, "
                    "critical_since = CASE WHEN ? THEN COALESCE(critical_since, ?) ELSE NULL END, "
                    "updated = ? WHERE id = ?",
                    (
                        health.value,
                        output[:4096],
                        now + valid_for,
                        health is Health.CRITICAL,
                        now,
                        now,
                        instance.id,
                    ),
                )
            ]
        )

    async def _expire(self, instance: Instance) -> None:
        self._write([("DELETE FROM instances WHERE id = ?", (instance.id,))])

    # -- reads -------------------------------------------------------------

    def read(self, service: str) -> tuple[Entry, ...]:
        """The service's entries now, removing those critical past ``deregister_after``."""
        now = self._clock.monotonic()
        rows = self._run(
            "SELECT id, record, health, output, expires_at, critical_since, deregister_after "
            "FROM instances WHERE service = ? ORDER BY id",
            (service,),
        )
        entries: list[Entry] = []
        overdue: list[str] = []
        for instance_id, record, stored, output, expires_at, critical_since, dereg in rows:
            health, since = _effective(stored, expires_at, critical_since, now)
            if since is not None and dereg is not None and now - since >= dereg:
                overdue.append(instance_id)
                continue
            if health is not Health(stored) and not output:
                output = "TTL expired"
            entries.append(Entry(loads_instance(record), health, output))
        if overdue:
            self._write([("DELETE FROM instances WHERE id = ?", (i,)) for i in overdue])
        return tuple(entries)

    def _index(self, service: str, entries: tuple[Entry, ...]) -> int:
        seen = self._seen.get(service)
        if seen is not None and seen[0] == entries:
            return seen[1]
        self._counter += 1
        self._seen[service] = (entries, self._counter)
        return self._counter

    async def _query(
        self, service: str, *, index: int, wait: float
    ) -> tuple[int, tuple[Entry, ...]]:
        deadline = self._clock.monotonic() + wait
        while True:
            entries = self.read(service)
            current = self._index(service, entries)
            remaining = deadline - self._clock.monotonic()
            if index == 0 or current != index or remaining <= 0:
                return current, entries
            await self._nap(min(self.poll_interval, remaining))

    async def query(
        self, service: str, *, index: int, wait: float
    ) -> tuple[int, tuple[Entry, ...]]:
        """Consul's blocking query, for the registry server."""
        return await self._query(service, index=index, wait=wait)

    @property
    def index(self) -> int:
        """The latest index handed out."""
        return self._counter

    async def _nap(self, seconds: float) -> None:
        """Sleep ``seconds``, or less if a write through this object comes first."""
        if self._local is None:
            self._local = asyncio.Event()
        woken = asyncio.ensure_future(self._local.wait())
        timer = asyncio.ensure_future(self._clock.asleep(seconds))
        try:
            await asyncio.wait((woken, timer), return_when=asyncio.FIRST_COMPLETED)
        finally:
            woken.cancel()
            timer.cancel()

    async def services(self) -> tuple[str, ...]:
        rows = self._run("SELECT DISTINCT service FROM instances ORDER BY service")
        return tuple(r[0] for r in rows)

    def all_entries(self) -> tuple[Entry, ...]:
        """Every service's entries (for the server's catalog and Prometheus SD)."""
        entries: list[Entry] = []
        for (service,) in self._run("SELECT DISTINCT service FROM instances ORDER BY service"):
            entries.extend(self.read(service))
        return tuple(entries)

    def find(self, instance_id: str) -> Entry | None:
        """The entry of ``instance_id`` now, or ``None``."""
        rows = self._run("SELECT service FROM instances WHERE id = ?", (instance_id,))
        if not rows:
            return None
        for entry in self.read(rows[0][0]):
            if entry.instance.id == instance_id:
                return entry
        return None

    async def _close(self) -> None:
        await self._prober.aclose()
        with self._lock, contextlib.suppress(sqlite3.Error):
            self._db.close()
