"""``cairn.toml``: what ``cairn up`` runs, read strictly.

Every key is checked: an unknown one (a typo such as ``replica``) is an
error naming the key and, when it can be found, its line, rather than a
setting silently ignored.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cairn.platform._errors import ManifestError

__all__ = [
    "RESTART_POLICIES",
    "CollectorSpec",
    "Manifest",
    "ServiceSpec",
    "load_manifest",
]

RESTART_POLICIES = ("no", "on-failure", "always")
"""The values of a service's ``restart`` key."""

RestartPolicy = Literal["no", "on-failure", "always"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_DOTTED = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
_APP = re.compile(rf"^{_DOTTED}:{_DOTTED}$")

_TOP_KEYS = {"name", "registry", "collector", "dashboard", "services"}
_REGISTRY_KEYS = {"port"}
_COLLECTOR_KEYS = {"port", "data", "scrape_interval"}
_DASHBOARD_KEYS = {"port"}
_SERVICE_KEYS = {"app", "command", "replicas", "env", "restart", "depends_on", "ttl"}


@dataclass(frozen=True, slots=True)
class CollectorSpec:
    """The ``[collector]`` table: its port, data folder (absolute) and how often it
    scrapes ``/metrics`` of every passing instance (seconds)."""

    port: int
    data: Path
    scrape_interval: float = 5.0


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """One ``[services.NAME]`` table.

    Exactly one of ``app`` (``module:attribute`` of an ASGI app, run by
    ``python -m cairn.platform.worker``) and ``command`` (argv of a process
    that reads ``$PORT`` and registers itself) is set.
    """

    name: str
    app: str | None = None
    command: tuple[str, ...] | None = None
    replicas: int = 1
    env: Mapping[str, str] = field(default_factory=dict)
    restart: RestartPolicy = "on-failure"
    depends_on: tuple[str, ...] = ()
    ttl: float | None = None
    """The registry TTL of its instances (seconds); ``None``: the service default (10 s)."""

    def instance_ids(self) -> list[str]:
        """``<name>-1`` … ``<name>-<replicas>``."""
        return [f"{self.name}-{n}" for n in range(1, self.replicas + 1)]


@dataclass(frozen=True, slots=True)
class Manifest:
    """A parsed ``cairn.toml``. Ports of 0 mean "any free port"."""

    path: Path
    name: str
    collector: CollectorSpec
    registry_port: int = 8500
    dashboard_port: int = 18888
    services: Mapping[str, ServiceSpec] = field(default_factory=dict)

    @property
    def folder(self) -> Path:
        """The manifest's folder: the working directory of every instance."""
        return self.path.parent

    def levels(self) -> list[list[ServiceSpec]]:
        """Services in start order: each level depends only on earlier ones."""
        done: set[str] = set()
        left = dict(self.services)
        result: list[list[ServiceSpec]] = []
        while left:
            level = [s for s in left.values() if set(s.depends_on) <= done]
            if not level:  # load_manifest rejects cycles; keep this total anyway
                raise ManifestError(
                    f"services depend on each other: {sorted(left)}", path=self.path
                )
            result.append(level)
            for s in level:
                done.add(s.name)
                del left[s.name]
        return result


def _line_of(text: str, key: str, table: str | None = None) -> int | None:
    """Best effort: the first line defining ``key`` (after the header of ``table``)."""
    lines = text.splitlines()
    start = 0
    if table is not None:
        header = re.compile(rf"^\s*\[\s*{re.escape(table)}\s*\]")
        for number, line in enumerate(lines):
            if header.match(line):
                start = number
                break
    pattern = re.compile(rf"""^\s*["']?{re.escape(key)}["']?\s*=|[\[.]\s*{re.escape(key)}\s*\]""")
    inline = re.compile(rf"""[{{,]\s*["']?{re.escape(key)}["']?\s*=""")
    for number in range(start, len(lines)):
        if pattern.search(lines[number]) or inline.search(lines[number]):
            return number + 1
    return None


class _Reader:
    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.text = text

    def fail(self, message: str, key: str | None = None, table: str | None = None) -> ManifestError:
        line = _line_of(self.text, key, table) if key is not None else None
        return ManifestError(message, path=self.path, line=line)

    def table(self, value: object, where: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(f"`{where}` must be a table, e.g. [{where}]", where.split(".")[-1])
        return value

    def keys(self, data: Mapping[str, Any], allowed: set[str], where: str | None) -> None:
        for key in data:
            if key not in allowed:
                place = f"in [{where}]" if where else "at the top level"
                raise self.fail(
                    f"unknown key `{key}` {place}; allowed: {', '.join(sorted(allowed))}",
                    key,
                    where,
                )

    def port(self, data: Mapping[str, Any], where: str, default: int) -> int:
        value = data.get("port", default)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
            raise self.fail(
                f"[{where}] port must be an integer from 0 (any free port) to 65535, not {value!r}",
                "port",
                where,
            )
        return value

    def service(self, name: str, raw: object) -> ServiceSpec:
        where = f"services.{name}"
        if not _NAME.match(name):
            raise self.fail(
                f"service name {name!r} must be letters, digits, '.', '_' or '-'", name, None
            )
        data = self.table(raw, where)
        self.keys(data, _SERVICE_KEYS, where)
        app = data.get("app")
        command = data.get("command")
        if (app is None) == (command is None):
            raise self.fail(
                f'[{where}] needs exactly one of `app = "module:attribute"` or `command = [...]`',
                name,
            )
        if app is not None and (not isinstance(app, str) or not _APP.match(app)):
            raise self.fail(
                f'[{where}] app must be "module:attribute" (e.g. "inventory:app"), not {app!r}',
                "app",
                where,
            )
        argv: tuple[str, ...] | None = None
        if command is not None:
            if (
                not isinstance(command, list)
                or not command
                or not all(isinstance(part, str) and part for part in command)
            ):
                raise self.fail(
                    f'[{where}] command must be a non-empty list of strings, e.g. ["python", "-m", "mypkg"]',
                    "command",
                    where,
                )
            argv = tuple(command)
        replicas = data.get("replicas", 1)
        if isinstance(replicas, bool) or not isinstance(replicas, int) or not 1 <= replicas <= 64:
            raise self.fail(
                f"[{where}] replicas must be an integer from 1 to 64, not {replicas!r}",
                "replicas",
                where,
            )
        env = data.get("env", {})
        if not isinstance(env, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in env.items()
        ):
            raise self.fail(
                f'[{where}] env must be a table of strings, e.g. env = {{ KEY = "value" }}',
                "env",
                where,
            )
        restart = data.get("restart", "on-failure")
        if restart not in RESTART_POLICIES:
            raise self.fail(
                f"[{where}] restart must be one of {', '.join(map(repr, RESTART_POLICIES))}, not {restart!r}",
                "restart",
                where,
            )
        depends = data.get("depends_on", [])
        if not isinstance(depends, list) or not all(isinstance(d, str) for d in depends):
            raise self.fail(
                f'[{where}] depends_on must be a list of service names, e.g. ["inventory"]',
                "depends_on",
                where,
            )
        ttl = data.get("ttl")
        if ttl is not None and (
            isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0.1 <= ttl <= 3600
        ):
            raise self.fail(
                f"[{where}] ttl must be seconds from 0.1 to 3600, not {ttl!r}", "ttl", where
            )
        return ServiceSpec(
            name=name,
            app=app,
            command=argv,
            replicas=replicas,
            env=dict(env),
            restart=restart,
            depends_on=tuple(dict.fromkeys(depends)),
            ttl=None if ttl is None else float(ttl),
        )


def _find_cycle(services: Mapping[str, ServiceSpec]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = 1
        path.append(name)
        for dep in services[name].depends_on:
            if state.get(dep) == 1:
                return [*path[path.index(dep) :], dep]
            if dep not in state and (found := visit(dep)) is not None:
                return found
        path.pop()
        state[name] = 2
        return None

    for name in services:
        if name not in state and (found := visit(name)) is not None:
            return found
    return None


def load_manifest(path: str | Path) -> Manifest:
    """Read and check a ``cairn.toml`` (or the ``cairn.toml`` in folder ``path``).

    Raises :class:`ManifestError` naming the file, the line when it can, and
    what to change: unknown keys, bad values, unknown or cyclic
    ``depends_on``, a missing file.
    """
    given = Path(path)
    file = given / "cairn.toml" if given.is_dir() else given
    file = file.absolute()
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(
            "no manifest here: create a cairn.toml (see docs/platform.md) or pass its path",
            path=file,
        ) from None
    except OSError as exc:
        raise ManifestError(f"cannot read the manifest: {exc.strerror}", path=file) from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(f"not valid TOML: {exc}", path=file) from exc
    reader = _Reader(file, text)
    reader.keys(data, _TOP_KEYS, None)
    name = data.get("name", file.parent.name)
    if not isinstance(name, str) or not name:
        raise reader.fail(f"name must be a non-empty string, not {name!r}", "name")

    registry = reader.table(data.get("registry", {}), "registry")
    reader.keys(registry, _REGISTRY_KEYS, "registry")
    dashboard = reader.table(data.get("dashboard", {}), "dashboard")
    reader.keys(dashboard, _DASHBOARD_KEYS, "dashboard")
    collector_raw = reader.table(data.get("collector", {}), "collector")
    reader.keys(collector_raw, _COLLECTOR_KEYS, "collector")
    data_dir = collector_raw.get("data", ".cairn/collector")
    if not isinstance(data_dir, str) or not data_dir:
        raise reader.fail("[collector] data must be a folder path", "data", "collector")
    interval = collector_raw.get("scrape_interval", 5)
    if (
        isinstance(interval, bool)
        or not isinstance(interval, int | float)
        or not 0.5 <= interval <= 3600
    ):
        raise reader.fail(
            f"[collector] scrape_interval must be seconds from 0.5 to 3600, not {interval!r}",
            "scrape_interval",
            "collector",
        )
    collector = CollectorSpec(
        port=reader.port(collector_raw, "collector", 4318),
        data=(file.parent / data_dir).absolute(),
        scrape_interval=float(interval),
    )

    services_raw = reader.table(data.get("services", {}), "services")
    services = {key: reader.service(key, value) for key, value in services_raw.items()}
    for spec in services.values():
        for dep in spec.depends_on:
            if dep == spec.name:
                raise reader.fail(
                    f"[services.{spec.name}] depends on itself",
                    "depends_on",
                    f"services.{spec.name}",
                )
            if dep not in services:
                raise reader.fail(
                    f"[services.{spec.name}] depends_on names {dep!r}, which is not a service here "
                    f"(services: {', '.join(sorted(services)) or 'none'})",
                    "depends_on",
                    f"services.{spec.name}",
                )
    cycle = _find_cycle(services)
    if cycle is not None:
        raise reader.fail(
            "services depend on each other in a cycle: "
            + " -> ".join(cycle)
            + "; remove one of these depends_on entries",
            "depends_on",
            f"services.{cycle[0]}",
        )
    return Manifest(
        path=file,
        name=name,
        registry_port=reader.port(registry, "registry", 8500),
        collector=collector,
        dashboard_port=reader.port(dashboard, "dashboard", 18888),
        services=services,
    )
