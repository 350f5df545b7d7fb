"""The run file, ``<manifest folder>/.cairn/run.json``: how other commands find ``cairn up``.

``cairn up`` writes it (mode 0600: it holds the control token) once all is
up, rewrites it when an instance changes, and removes it on exit.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cairn.platform._errors import NoRunError

__all__ = ["InstanceRecord", "RunState", "find_run", "remove_run", "run_path", "write_run"]

RUN_FILE = Path(".cairn") / "run.json"


@dataclass(frozen=True, slots=True)
class InstanceRecord:
    """One service instance as the run file and ``GET /status`` describe it."""

    service: str
    instance_id: str
    pid: int | None
    url: str | None
    state: str
    """``starting``, ``running``, ``backoff``, ``stopped`` (killed, kept down), ``exited``, ``crash-loop``."""
    health: str = "starting"
    """From the registry: ``passing``, ``critical``, ``warning``; else ``starting`` or ``stopped``."""
    restarts: int = 0

    def to_json(self) -> dict[str, Any]:
        """The JSON object of this instance."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> InstanceRecord:
        """Read one element of ``instances``."""
        return cls(
            service=str(data["service"]),
            instance_id=str(data["instance_id"]),
            pid=None if data.get("pid") is None else int(data["pid"]),
            url=data.get("url"),
            state=str(data.get("state", "running")),
            health=str(data.get("health", "starting")),
            restarts=int(data.get("restarts", 0)),
        )


@dataclass(frozen=True, slots=True)
class RunState:
    """The content of ``run.json``."""

    pid: int
    manifest: str
    started_at: str
    control: str
    token: str
    registry: str
    collector: str | None
    dashboard: str | None
    instances: list[InstanceRecord] = field(default_factory=list)

    @property
    def headers(self) -> dict[str, str]:
        """The ``Authorization`` header the control API wants."""
        return {"Authorization": f"Bearer {self.token}"}

    def instance(self, instance_id: str) -> InstanceRecord:
        """The instance with that id; :class:`KeyError` naming the known ones otherwise."""
        for record in self.instances:
            if record.instance_id == instance_id:
                return record
        known = ", ".join(r.instance_id for r in self.instances) or "none"
        raise KeyError(f"no instance {instance_id!r} in this run (instances: {known})")

    def to_json(self) -> dict[str, Any]:
        """The JSON object written to ``run.json``."""
        data = asdict(self)
        data["instances"] = [r.to_json() for r in self.instances]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunState:
        """Read a ``run.json`` object."""
        return cls(
            pid=int(data["pid"]),
            manifest=str(data["manifest"]),
            started_at=str(data["started_at"]),
            control=str(data["control"]),
            token=str(data["token"]),
            registry=str(data["registry"]),
            collector=data.get("collector"),
            dashboard=data.get("dashboard"),
            instances=[InstanceRecord.from_json(i) for i in data.get("instances", [])],
        )


def run_path(folder: Path) -> Path:
    """Where the run file of the manifest in ``folder`` lives."""
    return folder / RUN_FILE


def write_run(path: Path, state: RunState) -> None:
    """Write ``state`` atomically, readable by its owner only (0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(state.to_json(), out, indent=1)
            out.write("\n")
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
        _point_to(path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise


def runs_dir() -> Path:
    """Where running ``cairn up`` processes leave a pointer to their run file, so
    commands started elsewhere (``cairn chaos`` from the repository root while the
    shop runs from ``examples/shop``) find it: ``$CAIRN_RUNS_DIR``, else
    ``$XDG_RUNTIME_DIR/cairn/runs``, else ``~/.cache/cairn/runs``."""
    if os.environ.get("CAIRN_RUNS_DIR"):
        return Path(os.environ["CAIRN_RUNS_DIR"])
    if os.environ.get("XDG_RUNTIME_DIR"):
        return Path(os.environ["XDG_RUNTIME_DIR"]) / "cairn" / "runs"
    return Path.home() / ".cache" / "cairn" / "runs"


def _pointer() -> Path:
    return runs_dir() / f"{os.getpid()}.path"


def _point_to(path: Path) -> None:
    with contextlib.suppress(OSError):
        pointer = _pointer()
        pointer.parent.mkdir(parents=True, exist_ok=True)
        pointer.write_text(str(path.absolute()), encoding="utf-8")


def remove_run(path: Path) -> None:
    """Remove the run file (and this process's pointer to it) if they are there."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    with contextlib.suppress(OSError):
        _pointer().unlink()


def _elsewhere() -> list[Path]:
    """Run files of live ``cairn up`` processes, from their pointers (stale ones removed)."""
    found = []
    try:
        pointers = sorted(runs_dir().glob("*.path"))
    except OSError:
        return []
    for pointer in pointers:
        try:
            pid = int(pointer.stem)
            target = Path(pointer.read_text(encoding="utf-8").strip())
        except (OSError, ValueError):
            continue
        if _alive(pid) and target.is_file():
            if target not in found:
                found.append(target)
        else:
            with contextlib.suppress(OSError):
                pointer.unlink()
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def find_run(start: Path | None = None) -> RunState:
    """The state of the ``cairn up`` running for a manifest.

    ``start`` is a manifest file or folder; without it the current folder
    and its parents are searched, then the runs of this user started
    elsewhere (:func:`runs_dir`) — used when exactly one is live. Raises
    :class:`NoRunError` when there is no run file, when its process is gone
    (a stale file), or when several runs elsewhere make the choice ambiguous.
    """
    if start is not None:
        folder = start.absolute()
        if not folder.is_dir():
            folder = folder.parent
        candidates = [run_path(folder)]
    else:
        here = Path.cwd().absolute()
        candidates = [run_path(p) for p in (here, *here.parents)]
    for candidate in candidates:
        try:
            data = json.loads(candidate.read_text(encoding="utf-8"))
            state = RunState.from_json(data)
        except FileNotFoundError:
            continue
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise NoRunError(
                f"{candidate} cannot be read ({exc}); if no `cairn up` runs, delete it"
            ) from exc
        if not _alive(state.pid):
            raise NoRunError(
                f"{candidate} belongs to process {state.pid}, which is gone; "
                "delete the file and start again with `cairn up`"
            )
        return state
    if start is None:
        others = _elsewhere()
        if len(others) == 1:
            return find_run(others[0].parent.parent)
        if others:
            listed = ", ".join(str(o) for o in others)
            raise NoRunError(
                f"several `cairn up` runs are live ({listed}); pass --run-file to pick one"
            )
    raise NoRunError("no `cairn up` running here; start one with `cairn up`")
