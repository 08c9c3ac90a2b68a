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
    """The smallest candidate for which `works` holds. Probes the largest
    first; while that fails, about half of it (the first kernel cannot
    reserve a crash region that is too large a share of its RAM, so the top
    of the range may fail too); below the largest that works it bisects,
    assuming that every candidate above a working one works there too.
    About log2(len) probes either way. Halving finds the working sizes when
    they span a factor of two or more (a crash region that must be over
    half of the largest reservable one is missed)."""
    s = Search(None)
    if not candidates:
        return s

    def probe(i: int) -> bool:
        ok = bool(works(candidates[i]))
        s.probes.append((candidates[i], ok))
        return ok

    hi = len(candidates) - 1
    while not probe(hi):
        if hi == 0:
            return s
        hi //= 2
    lo = -1  # below the range: known to fail
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if probe(mid):
            hi = mid
        else:
            lo = mid
    s.smallest = candidates[hi]
    return s
