"""Errors raised by the consistency lab.

::

    CairnError
     └── LabError
          └── HistoryError        (source, line) — also a ValueError

A history that cannot be read, parsed or paired raises :class:`HistoryError`,
which names the file and line and says what was wrong there.
"""

from __future__ import annotations

from cairn._errors import CairnError

__all__ = ["HistoryError", "LabError"]


class LabError(CairnError):
    """Base class of the errors raised by ``cairn.lab``."""


class HistoryError(LabError, ValueError):
    """A history is malformed: bad syntax, a bad field, or events that do not pair.

    ``source`` names the file (or ``"<string>"``), ``line`` is the 1-based line
    of the offending event when known, and ``reason`` says what was wrong.
    """

    __slots__ = ("line", "reason", "source")

    def __init__(self, reason: str, *, source: str | None = None, line: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.source = source
        self.line = line

    def __str__(self) -> str:
        where = self.source or "<history>"
        if self.line is not None:
            where = f"{where}:{self.line}"
        return f"{where}: {self.reason}"
