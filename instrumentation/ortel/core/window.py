"""The sliding window of one series, stored by columns: one row per wall-clock slice.

A row holds what the successful calls folded during one ``SLICE_SECONDS`` slice add up to: count,
integer-nanosecond sum, SLA violations, min, max, sum of squares (seconds²) and a dense row of
quantile-sketch counts. Every row shares one sketch index range, so merging windows from many
processes, taking the window of the last minute and encoding it are a few array operations
rather than a loop over slices and sketch buckets (the daemon merges hundreds of these per
sample). Rows exist only for slices with at least one call, so min and max are always set.
"""

from __future__ import annotations

import math

import numpy as np

from .sketch import value_of

SLICE_SECONDS = 5.0  # the sliding window is made of slices this long, keyed by wall-clock index
# Columns of ``Window.ints``.
COUNT, SUM_NS, VIOLATIONS, MIN_NS, MAX_NS = range(5)
N_INTS = 5
# Sketch indices a window may hold: GAMMA**10_000 ~ 1e43; durations of 1 ns ... 292 years lie
# within ±2,300. Bounds what a snapshot may make a reader allocate.
MAX_SKETCH_INDEX = 10_000


def slice_key(now: float) -> int:
    return int(now // SLICE_SECONDS)


def window_keys(window_seconds: float) -> int:
    return max(1, math.ceil(window_seconds / SLICE_SECONDS))


def oldest_key(now: float, window_seconds: float) -> int:
    return slice_key(now) - window_keys(window_seconds) + 1


class Window:
    """Slices of one series. ``keys`` ascend; ``sketch[:, j]`` counts sketch index
    ``offset + j``. A window decoded from a snapshot holds read-only views into the file, its
    sketch in whatever unsigned type the file used: anything that changes a window first makes
    it its own int64 arrays (``_own``, ``copy``)."""

    __slots__ = ("keys", "ints", "sumsq", "offset", "sketch")

    def __init__(
        self,
        keys: np.ndarray | None = None,
        ints: np.ndarray | None = None,
        sumsq: np.ndarray | None = None,
        offset: int = 0,
        sketch: np.ndarray | None = None,
    ) -> None:
        self.keys = np.zeros(0, np.int64) if keys is None else keys
        self.ints = np.zeros((0, N_INTS), np.int64) if ints is None else ints
        self.sumsq = np.zeros(0, np.float64) if sumsq is None else sumsq
        self.offset = offset
        self.sketch = np.zeros((len(self.keys), 0), np.int64) if sketch is None else sketch

    def __len__(self) -> int:
        return len(self.keys)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Window):
            return NotImplemented
        a, b = self.trimmed(), other.trimmed()
        return (
            np.array_equal(a.keys, b.keys)
            and np.array_equal(a.ints, b.ints)
            and np.array_equal(a.sumsq, b.sumsq)
            and (a.sketch.size == 0 or a.offset == b.offset)
            and np.array_equal(a.sketch, b.sketch)
        )

    def copy(self) -> Window:
        return Window(
            self.keys.copy(),
            self.ints.copy(),
            self.sumsq.copy(),
            self.offset,
            self.sketch.astype(np.int64),
        )

    # -- the recorder's fold ---------------------------------------------------------------------
    def add(
        self,
        key: int,
        ints: tuple[int, int, int, int, int],
        sumsq: float,
        base: int,
        per: np.ndarray,
    ) -> None:
        """Add one folded batch to slice ``key``: (count, sum_ns, violations, min_ns, max_ns),
        its sum of squares, and sketch counts ``per`` for indices ``base, base+1, ...``."""
        self._own()
        row = self._row(key)
        self._cover(base, base + len(per))
        r = self.ints[row]
        first = r[COUNT] == 0
        r[COUNT] += ints[COUNT]
        r[SUM_NS] += ints[SUM_NS]
        r[VIOLATIONS] += ints[VIOLATIONS]
        r[MIN_NS] = ints[MIN_NS] if first else min(int(r[MIN_NS]), ints[MIN_NS])
        r[MAX_NS] = max(int(r[MAX_NS]), ints[MAX_NS])
        self.sumsq[row] += sumsq
        j = base - self.offset
        self.sketch[row, j : j + len(per)] += per

    def _own(self) -> None:
        """Copy arrays that are read-only views into a decoded snapshot before changing them."""
        if not (
            self.ints.flags.writeable
            and self.sketch.flags.writeable
            and self.sketch.dtype == np.int64
        ):
            self.keys, self.ints, self.sumsq = self.keys.copy(), self.ints.copy(), self.sumsq.copy()
            self.sketch = self.sketch.astype(np.int64)

    def _row(self, key: int) -> int:
        keys = self.keys
        if len(keys) and keys[-1] == key:
            return len(keys) - 1
        i = int(np.searchsorted(keys, key))
        if i < len(keys) and keys[i] == key:
            return i
        self.keys = np.insert(keys, i, key)
        self.ints = np.insert(self.ints, i, 0, axis=0)
        self.sumsq = np.insert(self.sumsq, i, 0.0)
        self.sketch = np.insert(self.sketch, i, 0, axis=0)
        return i

    def _cover(self, lo: int, hi: int) -> None:
        """Widen the sketch columns to hold indices ``lo ... hi - 1``."""
        w = self.sketch.shape[1]
        if w == 0:
            self.offset = lo
            self.sketch = np.zeros((len(self.keys), hi - lo), np.int64)
            return
        if lo >= self.offset and hi <= self.offset + w:
            return
        new_lo, new_hi = min(lo, self.offset), max(hi, self.offset + w)
        grown = np.zeros((len(self.keys), new_hi - new_lo), np.int64)
        grown[:, self.offset - new_lo : self.offset - new_lo + w] = self.sketch
        self.offset, self.sketch = new_lo, grown

    # -- merging and the window ------------------------------------------------------------------
    def merge(self, o: Window) -> None:
        if not len(o):
            return
        self._own()
        if o.sketch.shape[1]:
            self._cover(o.offset, o.offset + o.sketch.shape[1])
        if not np.array_equal(self.keys, o.keys):
            keys = np.union1d(self.keys, o.keys)
            if len(keys) != len(self.keys):
                self._reindex(keys)
            rows: np.ndarray | slice = np.searchsorted(self.keys, o.keys)
        else:
            rows = slice(None)
        mine = self.ints[rows]
        fresh = mine[:, COUNT] == 0
        merged = mine + o.ints
        merged[:, MIN_NS] = np.where(
            fresh, o.ints[:, MIN_NS], np.minimum(mine[:, MIN_NS], o.ints[:, MIN_NS])
        )
        merged[:, MAX_NS] = np.maximum(mine[:, MAX_NS], o.ints[:, MAX_NS])
        self.ints[rows] = merged
        self.sumsq[rows] += o.sumsq
        if o.sketch.shape[1]:
            j = o.offset - self.offset
            self.sketch[rows, j : j + o.sketch.shape[1]] += o.sketch

    @classmethod
    def merged(cls, windows: list[Window]) -> Window:
        """One window holding all of ``windows`` (left unchanged). Processes fold on the same
        wall-clock slices, so their keys usually agree: then the merge is a few stacked
        reductions rather than one pairwise merge per window."""
        full = [w for w in windows if len(w)]
        if not full:
            return Window()
        keys = full[0].keys
        raw = keys.tobytes()  # cheaper than array_equal for a dozen keys
        if any(w.keys.tobytes() != raw for w in full[1:]):
            out = full[0].copy()
            for w in full[1:]:
                out.merge(w)
            return out
        stack = np.stack([w.ints for w in full])
        ints = stack.sum(axis=0)
        ints[:, MIN_NS] = stack[:, :, MIN_NS].min(axis=0)
        ints[:, MAX_NS] = stack[:, :, MAX_NS].max(axis=0)
        lo = min(w.offset for w in full)
        hi = max(w.offset + w.sketch.shape[1] for w in full)
        sketch = np.zeros((len(keys), hi - lo), np.int64)
        for w in full:
            j = w.offset - lo
            sketch[:, j : j + w.sketch.shape[1]] += w.sketch
        sumsq = np.sum([w.sumsq for w in full], axis=0)
        return Window(keys.copy(), ints, sumsq, lo, sketch)

    def _reindex(self, keys: np.ndarray) -> None:
        at = np.searchsorted(keys, self.keys)
        ints = np.zeros((len(keys), N_INTS), np.int64)
        ints[at] = self.ints
        sumsq = np.zeros(len(keys), np.float64)
        sumsq[at] = self.sumsq
        sketch = np.zeros((len(keys), self.sketch.shape[1]), np.int64)
        sketch[at] = self.sketch
        self.keys, self.ints, self.sumsq, self.sketch = keys, ints, sumsq, sketch

    def prune(self, oldest: int) -> None:
        """Drop slices older than key ``oldest``."""
        if len(self.keys) and self.keys[0] < oldest:
            keep = self.keys >= oldest
            self.keys, self.ints = self.keys[keep], self.ints[keep]
            self.sumsq, self.sketch = self.sumsq[keep], self.sketch[keep]

    def trimmed(self) -> Window:
        """The same window with all-zero sketch columns cut from both ends (for encoding)."""
        if not len(self.keys):
            return Window()
        if not self.sketch.size:
            return self
        used = np.flatnonzero(self.sketch.any(axis=0))
        if not len(used):
            return Window(self.keys, self.ints, self.sumsq, 0, self.sketch[:, :0])
        lo, hi = int(used[0]), int(used[-1]) + 1
        if lo == 0 and hi == self.sketch.shape[1]:
            return self
        return Window(self.keys, self.ints, self.sumsq, self.offset + lo, self.sketch[:, lo:hi])

    def stats(self, oldest: int) -> WindowStats:
        """What the slices from key ``oldest`` on add up to."""
        sel = self.keys >= oldest
        if not sel.any():
            return WindowStats()
        ints = self.ints[sel]
        return WindowStats(
            count=int(ints[:, COUNT].sum()),
            sum_ns=int(ints[:, SUM_NS].sum()),
            violations=int(ints[:, VIOLATIONS].sum()),
            min_ns=int(ints[:, MIN_NS].min()),
            max_ns=int(ints[:, MAX_NS].max()),
            sumsq=float(self.sumsq[sel].sum()),
            offset=self.offset,
            sketch=self.sketch[sel].sum(axis=0, dtype=np.int64),
        )


class WindowStats:
    """The merged slices of a window: totals plus one dense sketch."""

    __slots__ = ("count", "sum_ns", "violations", "min_ns", "max_ns", "sumsq", "offset", "sketch")

    def __init__(
        self,
        count: int = 0,
        sum_ns: int = 0,
        violations: int = 0,
        min_ns: int = 0,
        max_ns: int = 0,
        sumsq: float = 0.0,
        offset: int = 0,
        sketch: np.ndarray | None = None,
    ) -> None:
        self.count, self.sum_ns, self.violations = count, sum_ns, violations
        self.min_ns, self.max_ns, self.sumsq = min_ns, max_ns, sumsq
        self.offset = offset
        self.sketch = np.zeros(0, np.int64) if sketch is None else sketch

    def quantiles(self, qs: tuple[float, ...]) -> tuple[float, ...]:
        """Estimates with numpy's default (linear) percentile rank convention, each within the
        sketch's relative accuracy of the true value."""
        if self.count == 0:
            return tuple(0.0 for _ in qs)
        cum = np.cumsum(self.sketch)
        last = int(np.flatnonzero(self.sketch)[-1])
        out = []
        for q in qs:
            rank = q * (self.count - 1)
            lo = int(rank)
            frac = rank - lo
            i_lo = int(np.searchsorted(cum, lo, side="right"))
            lo_v = value_of(self.offset + i_lo)
            if frac == 0.0:
                out.append(lo_v)
                continue
            i_hi = min(int(np.searchsorted(cum, lo + 1, side="right")), last)
            out.append(lo_v + frac * (value_of(self.offset + i_hi) - lo_v))
        return tuple(out)
