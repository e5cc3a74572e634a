"""A mergeable relative-error quantile sketch (the DDSketch idea, logarithmic buckets).

Why this and not a t-digest or fixed buckets: latency spans five decades, users ask for p99.9, and
the daemon must merge sketches from many processes exactly. With logarithmic buckets every value
in bucket ``i`` lies in ``(gamma**(i-1), gamma**i]``; reporting ``2*gamma**i/(gamma+1)`` is within
``ALPHA`` relative error of it, and merging is adding counts per index, lossless and associative.
Memory is bounded by the dynamic range: 1 µs … 100 s is at most ~1,850 buckets at ALPHA = 0.5%,
a typical latency distribution occupies a few dozen to a few hundred.

Pure Python on purpose: the daemon merges sketches and must not need numpy; the shim adds values
in bulk through ``add_indexed`` with indices it computed vectorised (see recorder.py).
"""

from __future__ import annotations

import math

ALPHA = 0.005  # relative accuracy; half the 1% the product promises, so interpolation stays inside
GAMMA = (1 + ALPHA) / (1 - ALPHA)
LN_GAMMA = math.log(GAMMA)
MIN_VALUE = 1e-9  # 1 ns: durations are never below the clock's resolution


def index_of(value: float) -> int:
    return math.ceil(math.log(max(value, MIN_VALUE)) / LN_GAMMA)


def value_of(index: int) -> float:
    """Representative value of a bucket: the point with equal relative error to both edges."""
    return 2.0 * GAMMA**index / (GAMMA + 1.0)


class LogSketch:
    __slots__ = ("counts", "count")

    def __init__(self, counts: dict[int, int] | None = None) -> None:
        self.counts: dict[int, int] = dict(counts) if counts else {}
        self.count = sum(self.counts.values())

    def add(self, value: float, n: int = 1) -> None:
        i = index_of(value)
        self.counts[i] = self.counts.get(i, 0) + n
        self.count += n

    def add_indexed(self, indices: list[int], counts: list[int]) -> None:
        c = self.counts
        for i, n in zip(indices, counts):
            c[i] = c.get(i, 0) + n
        self.count += sum(counts)

    def merge(self, other: LogSketch) -> None:
        self.add_indexed(list(other.counts), list(other.counts.values()))

    def quantile(self, q: float) -> float | None:
        """Estimate with the same rank convention as numpy's default (linear) percentile."""
        if self.count == 0:
            return None
        rank = q * (self.count - 1)
        lo = int(rank)
        frac = rank - lo
        lo_v = hi_v = None
        seen = 0
        for i in sorted(self.counts):
            seen += self.counts[i]
            if lo_v is None and seen > lo:
                lo_v = value_of(i)
            if seen > lo + 1 or (seen > lo and frac == 0.0):
                hi_v = value_of(i)
                break
        assert lo_v is not None
        if hi_v is None:  # lo is the last element
            hi_v = lo_v
        return lo_v + frac * (hi_v - lo_v)

    def to_json(self) -> list[list[int]]:
        keys = sorted(self.counts)
        return [keys, [self.counts[k] for k in keys]]

    @classmethod
    def from_json(cls, data: object) -> LogSketch:
        if not (isinstance(data, list) and len(data) == 2):
            raise ValueError("sketch must be [indices, counts]")
        keys, counts = data
        if not (isinstance(keys, list) and isinstance(counts, list) and len(keys) == len(counts)):
            raise ValueError("sketch indices and counts differ in length")
        out = cls()
        for k, n in zip(keys, counts):
            if type(k) is not int or type(n) is not int or n < 0:
                raise ValueError("sketch entries must be non-negative integers")
            out.counts[k] = out.counts.get(k, 0) + n
        out.count = sum(out.counts.values())
        return out
