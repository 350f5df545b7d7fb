"""Hybrid logical clocks (Kulkarni et al., 2014) for the AP store's last-writer-wins.

A timestamp is ``(wall, logical, node)``: ``wall`` follows the largest
physical time seen (ms), ``logical`` counts events within one ``wall``, and
``node`` breaks the remaining ties, so timestamps are totally ordered. An
event that happens after another one it knows of (here or in a received
message) always gets a larger timestamp, whatever the physical clocks say.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["HLC", "Timestamp"]

Timestamp = tuple[int, int, int]


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class HLC:
    """A hybrid logical clock for node ``node``.

    ``physical`` reads the wall clock in ms; ``skew_ms`` is added to it, so
    the lab can give one replica a clock that runs ahead or behind.
    """

    def __init__(self, node: int, *, physical: Callable[[], int] = _wall_ms) -> None:
        self.node = node
        self.skew_ms = 0
        self._physical = physical
        self._wall = 0
        self._logical = 0

    def now(self) -> Timestamp:
        """A timestamp for a local event (a write), larger than every one seen so far."""
        pt = self._physical() + self.skew_ms
        if pt > self._wall:
            self._wall, self._logical = pt, 0
        else:
            self._logical += 1
        return (self._wall, self._logical, self.node)

    def observe(self, seen: Timestamp) -> None:
        """Fold in a timestamp received from another node."""
        wall, logical = seen[0], seen[1]
        if wall > self._wall:
            self._wall, self._logical = wall, logical
        elif wall == self._wall and logical > self._logical:
            self._logical = logical
