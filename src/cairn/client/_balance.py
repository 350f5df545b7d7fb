"""Balancers: which instance of a service gets the next attempt.

A balancer is a small strategy object. The client keeps one per service
(:meth:`Balancer.fork`), so round robin counts per service and two services
called in turn do not lock each other's rotation into step. Candidates come
already filtered (ejected instances and the instance that just failed are out).
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence

from cairn.discovery import Instance

__all__ = ["Balancer", "LeastOutstanding", "RandomChoice", "RoundRobin", "WeightedRoundRobin"]


def _rng(rng: random.Random | None) -> random.Random:
    if rng is not None and not isinstance(rng, random.Random):
        raise ValueError(f"rng must be a random.Random or None, not {rng!r}")
    return random.Random() if rng is None else rng


class Balancer(ABC):
    """Chooses one of ``candidates`` (never empty) for the next attempt.

    ``load`` maps an instance id to the number of this client's requests
    outstanding on it (missing means 0).
    """

    __slots__ = ()

    @abstractmethod
    def pick(self, candidates: Sequence[Instance], load: Mapping[str, int]) -> Instance:
        """The instance for the next attempt."""

    def fork(self) -> Balancer:
        """A balancer with these settings and state of its own (the client keeps one per service)."""
        return self


class RoundRobin(Balancer):
    """Each candidate in turn. The rotation starts at a random place, so many
    clients started together do not all hit the first instance first."""

    __slots__ = ("_next", "_rng")

    def __init__(self, *, rng: random.Random | None = None) -> None:
        self._rng = _rng(rng)
        self._next = self._rng.randrange(1 << 30)

    def pick(self, candidates: Sequence[Instance], load: Mapping[str, int]) -> Instance:
        i = self._next
        self._next = i + 1
        return candidates[i % len(candidates)]

    def fork(self) -> RoundRobin:
        return RoundRobin(rng=self._rng)

    def __repr__(self) -> str:
        return "RoundRobin()"


class RandomChoice(Balancer):
    """A uniformly random candidate."""

    __slots__ = ("_rng",)

    def __init__(self, *, rng: random.Random | None = None) -> None:
        self._rng = _rng(rng)

    def pick(self, candidates: Sequence[Instance], load: Mapping[str, int]) -> Instance:
        return candidates[int(self._rng.random() * len(candidates))]

    def fork(self) -> RandomChoice:
        return RandomChoice(rng=self._rng)

    def __repr__(self) -> str:
        return "RandomChoice()"


class WeightedRoundRobin(Balancer):
    """Smooth weighted round robin (nginx's): over any ``sum(weights)`` picks
    from a fixed set, each instance gets exactly its weight, interleaved rather
    than in bursts.

    An instance's weight is the integer in its ``meta[key]`` (default key
    ``"weight"``), else ``default``. Weight 0 takes no traffic while another
    candidate has weight; when every candidate weighs 0 they share equally.
    """

    __slots__ = ("_current", "_weights", "default", "key")

    def __init__(self, *, key: str = "weight", default: int = 1) -> None:
        if not isinstance(key, str) or not key:
            raise ValueError(f"key must be a non-empty meta key, not {key!r}")
        if isinstance(default, bool) or not isinstance(default, int) or not 0 <= default <= 10_000:
            raise ValueError(f"default must be an int weight from 0 to 10000, not {default!r}")
        self.key = key
        self.default = default
        self._current: dict[str, int] = {}
        self._weights: dict[Instance, int] = {}

    def weight(self, instance: Instance) -> int:
        """The weight of ``instance`` (parsed once per instance record)."""
        weight = self._weights.get(instance)
        if weight is None:
            text = instance.meta.get(self.key)
            try:
                weight = int(text) if text is not None else self.default
            except ValueError:
                weight = self.default
            weight = min(max(weight, 0), 10_000)
            if len(self._weights) > 4096:  # bounded: instances come and go
                self._weights.clear()
            self._weights[instance] = weight
        return weight

    def pick(self, candidates: Sequence[Instance], load: Mapping[str, int]) -> Instance:
        current = self._current
        weights = [self.weight(c) for c in candidates]
        total = sum(weights)
        if total == 0:
            weights = [1] * len(weights)
            total = len(weights)
        best = candidates[0]
        best_score = None
        for candidate, weight in zip(candidates, weights, strict=True):
            score = current.get(candidate.id, 0) + weight
            current[candidate.id] = score
            if best_score is None or score > best_score:
                best, best_score = candidate, score
        current[best.id] -= total
        if len(current) > 4 * len(candidates) + 64:
            # Forget instances gone for good; the survivors' scores stay.
            ids = {c.id for c in candidates}
            for key in [k for k in current if k not in ids]:
                del current[key]
        return best

    def fork(self) -> WeightedRoundRobin:
        return WeightedRoundRobin(key=self.key, default=self.default)

    def __repr__(self) -> str:
        return f"WeightedRoundRobin(key={self.key!r}, default={self.default!r})"


class LeastOutstanding(Balancer):
    """Power of two choices: sample two candidates, take the one with fewer
    requests outstanding from this client (Finagle's and Envoy's least-request).

    Nearly as good as always choosing the least loaded, without herding every
    client onto the same idle instance.
    """

    __slots__ = ("_rng",)

    def __init__(self, *, rng: random.Random | None = None) -> None:
        self._rng = _rng(rng)

    def pick(self, candidates: Sequence[Instance], load: Mapping[str, int]) -> Instance:
        n = len(candidates)
        if n == 1:
            return candidates[0]
        rand = self._rng.random
        i = int(rand() * n)
        j = int(rand() * (n - 1))
        if j >= i:
            j += 1
        a, b = candidates[i], candidates[j]
        return b if load.get(b.id, 0) < load.get(a.id, 0) else a

    def fork(self) -> LeastOutstanding:
        return LeastOutstanding(rng=self._rng)

    def __repr__(self) -> str:
        return "LeastOutstanding()"
