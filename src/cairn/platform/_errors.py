"""The platform's errors, under :class:`cairn.CairnError`.

::

    CairnError
     └── PlatformError            (cairn.platform)
          ├── ManifestError       a cairn.toml that cannot be used (file, line, what to fix)
          ├── StartupError        a child did not come up; ``cairn up`` stopped everything
          └── NoRunError          no ``cairn up`` is running for this folder
"""

from __future__ import annotations

from pathlib import Path

from cairn._errors import CairnError

__all__ = ["ManifestError", "NoRunError", "PlatformError", "StartupError"]


class PlatformError(CairnError):
    """Base class of the errors ``cairn up`` and its helpers raise."""


class ManifestError(PlatformError, ValueError):
    """The manifest is missing or wrong; the message names the file, line and fix."""

    def __init__(self, message: str, *, path: Path | None = None, line: int | None = None) -> None:
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(where + message)
        self.path = path
        self.line = line


class StartupError(PlatformError):
    """A child process failed to start (or to turn ready in time).

    ``child`` is its name (``registry``, ``inventory-1`` …), ``log_tail`` its
    last output lines and ``log_path`` its full log.
    """

    def __init__(
        self,
        message: str,
        *,
        child: str | None = None,
        log_tail: tuple[str, ...] = (),
        log_path: Path | None = None,
    ) -> None:
        text = message
        if log_tail:
            text += "\n--- last lines of " + (child or "its") + " log ---\n" + "\n".join(log_tail)
        if log_path is not None:
            text += f"\n(full log: {log_path})"
        super().__init__(text)
        self.child = child
        self.log_tail = log_tail
        self.log_path = log_path


class NoRunError(PlatformError, LookupError):
    """No run file (``.cairn/run.json``) was found, or it belongs to a dead process."""
