"""Cumulative histogram state: counts per bucket, an exact integer-nanosecond sum, a count."""

from __future__ import annotations

from dataclasses import dataclass

from .readings import HistogramValue

NS = 1e-9


@dataclass
class Hist:
    """Histogram buckets (per bucket, last is +Inf), exact integer-nanosecond sum, count."""

    counts: list[int]
    sum_ns: int = 0
    count: int = 0

    @classmethod
    def empty(cls, bounds: tuple[float, ...]) -> Hist:
        return cls([0] * (len(bounds) + 1))

    def merge(self, o: Hist) -> None:
        if len(o.counts) != len(self.counts):
            raise ValueError("histograms with different buckets cannot be merged")
        self.counts = [a + b for a, b in zip(self.counts, o.counts)]
        self.sum_ns += o.sum_ns
        self.count += o.count

    def copy(self) -> Hist:
        return Hist(list(self.counts), self.sum_ns, self.count)

    def value(self, bounds: tuple[float, ...]) -> HistogramValue:
        return HistogramValue(bounds, tuple(self.counts), self.sum_ns * NS, self.count)
