"""The pure arithmetic of the benchmark: median/min/max of repeated runs,
and the binary search for the smallest working crashkernel=."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Callable


@dataclass(frozen=True)
class Stats:
    n: int
    median: float
    min: float
    max: float


def summarize(values: list[float]) -> Stats | None:
    """Median, min and max of the values (None if there are none)."""
    if not values:
        return None
    return Stats(len(values), statistics.median(values), min(values), max(values))


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, or None when either is missing or b is zero."""
    if a is None or b is None or b == 0:
        return None
    return a / b


@dataclass
class Search:
    """The outcome of a search over ascending candidates: the smallest that
    works (None if even the largest failed), and every probe in order."""

    smallest: int | None
    probes: list[tuple[int, bool]] = field(default_factory=list)


def smallest_working(candidates: list[int], works: Callable[[int], bool]) -> Search:
    """The smallest candidate for which `works` holds, assuming that every
    candidate above a working one works too. Probes the largest first (if
    that fails there is no answer), then bisects: about log2(len) probes."""
    s = Search(None)
    if not candidates:
        return s

    def probe(i: int) -> bool:
        ok = bool(works(candidates[i]))
        s.probes.append((candidates[i], ok))
        return ok

    hi = len(candidates) - 1  # known to work
    if not probe(hi):
        return s
    lo = -1  # known to fail (or below the range)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if probe(mid):
            hi = mid
        else:
            lo = mid
    s.smallest = candidates[hi]
    return s
