"""Metric arithmetic over stored samples: counter increases, rates, histogram quantiles.

Pure functions over time-sorted ``(time_ns, value)`` points, so the maths is tested
without a store. Semantics (also in ``docs/collector-store.md``):

- **increase**: the sum of the rises between consecutive points; a fall is a counter
  reset, after which the new value is all increase (Prometheus's rule).
- **rate**: increase divided by the seconds between the first and the last point (no
  extrapolation to the window's edges, unlike Prometheus's ``rate()``).
- **quantile**: Prometheus's ``histogram_quantile`` — linear interpolation inside the
  bucket the rank falls in, the lowest bucket starting at 0, the ``+Inf`` bucket
  answering with the highest finite bound.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Sequence

__all__ = ["histogram_quantile", "increase", "latest", "rate", "step_increase"]

Point = tuple[int, float]


def increase(points: Sequence[Point]) -> float:
    """How much a counter rose over ``points``, counting through resets."""
    total = 0.0
    for (_, before), (_, after) in itertools.pairwise(points):
        total += after - before if after >= before else after
    return total


def rate(points: Sequence[Point]) -> float | None:
    """Per-second increase between the first and last point (``None`` below two points)."""
    if len(points) < 2 or points[-1][0] <= points[0][0]:
        return None
    return increase(points) / ((points[-1][0] - points[0][0]) / 1e9)


def latest(points: Sequence[Point], at_ns: int | None = None, lookback_ns: int = 0) -> float | None:
    """The last value (at or before ``at_ns``, no older than ``lookback_ns`` when given)."""
    if at_ns is None:
        return points[-1][1] if points else None
    index = bisect.bisect_right(points, (at_ns, math.inf)) - 1
    if index < 0 or (lookback_ns and points[index][0] <= at_ns - lookback_ns):
        return None
    return points[index][1]


def step_increase(points: Sequence[Point], start_ns: int, end_ns: int) -> float | None:
    """The increase over ``(start_ns, end_ns]``: each rise whose later point lies inside,
    measured from the point before it (which may be older than ``start_ns``).

    ``None`` when no point lies inside the interval.
    """
    total: float | None = None
    first = bisect.bisect_right(points, (start_ns, math.inf))
    for i in range(first, len(points)):
        time_ns, value = points[i]
        if time_ns > end_ns:
            break
        total = total or 0.0
        if i > 0:
            before = points[i - 1][1]
            total += value - before if value >= before else value
    return total


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """The ``q`` quantile from cumulative ``(upper_bound, count)`` buckets.

    As Prometheus: ``None`` (its NaN) without a ``+Inf`` bucket, with fewer than two
    buckets, or with no observations; counts that fall with a rising bound are raised to
    keep the buckets monotonic; a rank in the ``+Inf`` bucket answers the highest finite
    bound; in the first bucket interpolation starts at 0 (unless that bound is <= 0).
    """
    ordered = sorted(buckets)
    if len(ordered) < 2 or not math.isinf(ordered[-1][0]):
        return None
    bounds = [bound for bound, _ in ordered]
    counts: list[float] = []
    for _, count in ordered:
        counts.append(max(count, counts[-1]) if counts else count)
    total = counts[-1]
    if total <= 0:
        return None
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    rank = q * total
    index = next(i for i, count in enumerate(counts) if count >= rank)
    if index == len(bounds) - 1:
        return bounds[-2]
    if index == 0 and bounds[0] <= 0:
        return bounds[0]
    start = 0.0 if index == 0 else bounds[index - 1]
    below = 0.0 if index == 0 else counts[index - 1]
    inside = counts[index] - below
    if inside <= 0:
        return bounds[index]
    return start + (bounds[index] - start) * ((rank - below) / inside)
