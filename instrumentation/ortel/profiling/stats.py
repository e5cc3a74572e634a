"""Latency statistics, steady-state detection and the tests behind ``ortel compare``.

Percentiles are numpy's (linear interpolation), over every measured sample: no sketch, no
binning. The comparison statistics treat samples as independent draws; consecutive latencies on a
busy machine are not quite that, which is why the regression gate also needs a practical
threshold (``--fail-on-regression``) and not significance alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

# How reports read raw samples: (config id or None, kind) -> seconds.
Samples = Callable[[int | None, str], np.ndarray]

PERCENTILES: dict[str, float] = {"p50": 50, "p90": 90, "p95": 95, "p99": 99, "p999": 99.9}
STAT_KEYS = (*PERCENTILES, "mean", "stddev", "min", "max")
# A percentile is trusted when at least this many samples lie beyond it (p99 needs 1,000).
TAIL_SAMPLES = 10


def latency_stats(samples: Sequence[float] | np.ndarray) -> dict[str, float | None]:
    """p50 … p99.9, mean, stddev (sample, ddof=1), min, max in seconds; all None when empty."""
    a = np.asarray(samples, dtype=np.float64)
    if a.size == 0:
        return dict.fromkeys(STAT_KEYS)
    qs = np.percentile(a, list(PERCENTILES.values()))
    out: dict[str, float | None] = {k: float(v) for k, v in zip(PERCENTILES, qs)}
    out["mean"] = float(a.mean())
    out["stddev"] = float(a.std(ddof=1)) if a.size > 1 else 0.0
    out["min"] = float(a.min())
    out["max"] = float(a.max())
    return out


def untrusted_percentiles(n: int) -> list[str]:
    """Percentiles with fewer than TAIL_SAMPLES samples beyond them at ``n`` samples."""
    return [k for k in PERCENTILES if n < samples_needed(k)]


def samples_needed(percentile: str) -> int:
    """Samples for TAIL_SAMPLES to lie beyond the percentile (p99: 1,000; p99.9: 10,000)."""
    tail = round(100 - PERCENTILES[percentile], 9)  # 100 - 99.9 is 0.0999…: round it back
    return math.ceil(round(TAIL_SAMPLES * 100 / tail, 6))


def stable(values: Sequence[float], tolerance: float) -> bool:
    """True when every value lies within ``tolerance`` (relative) of their mean."""
    if not values:
        return False
    m = sum(values) / len(values)
    if m <= 0:
        return all(v == 0 for v in values)
    return max(abs(v - m) for v in values) / m <= tolerance


@dataclass(frozen=True)
class MannWhitney:
    u: float  # U statistic of the second sample (B) against the first (A)
    p_value: float  # two-sided, normal approximation with tie and continuity correction
    # P(B > A) + P(B = A)/2: 0.5 = no shift, > 0.5 = B tends to be slower
    prob_b_greater: float


def mann_whitney_u(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> MannWhitney:
    """Mann–Whitney U test (two-sided) of whether B's latencies are shifted against A's.

    Uses the normal approximation with tie correction, accurate for the sample counts a
    benchmark produces (tens and more per side).
    """
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    n1, n2 = x.size, y.size
    if n1 == 0 or n2 == 0:
        raise ValueError("both samples must be non-empty")
    both = np.concatenate([x, y])
    ranks = _rankdata(both)
    r2 = float(ranks[n1:].sum())
    u2 = r2 - n2 * (n2 + 1) / 2
    mu = n1 * n2 / 2
    _, counts = np.unique(both, return_counts=True)
    n = n1 + n2
    tie = float((counts**3 - counts).sum()) / (n * (n - 1)) if n > 1 else 0.0
    sigma = math.sqrt(n1 * n2 / 12 * ((n + 1) - tie))
    if sigma == 0:
        p = 1.0
    else:
        z = (abs(u2 - mu) - 0.5) / sigma
        p = min(1.0, math.erfc(max(z, 0.0) / math.sqrt(2)))
    return MannWhitney(u2, p, u2 / (n1 * n2))


def _rankdata(a: np.ndarray) -> np.ndarray:
    """Average ranks (1-based) with ties sharing their mean rank, like scipy.stats.rankdata."""
    order = np.argsort(a, kind="mergesort")
    s = a[order]
    first = np.concatenate([[True], s[1:] != s[:-1]])
    group = np.cumsum(first) - 1
    starts = np.flatnonzero(first)
    ends = np.concatenate([starts[1:], [s.size]])
    avg = (starts + ends + 1) / 2.0  # mean of 1-based ranks starts+1 … ends
    ranks = np.empty(a.size, dtype=np.float64)
    ranks[order] = avg[group]
    return ranks


@dataclass(frozen=True)
class RelativeChange:
    point: float  # stat(B) / stat(A) - 1
    low: float  # bootstrap confidence interval of the same
    high: float


def bootstrap_change(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    statistic: str,
    *,
    confidence: float = 0.95,
    resamples: int = 4000,
    seed: int = 0,
) -> RelativeChange:
    """Bootstrap CI of the relative change of ``statistic`` (p50 … p999 or mean) from A to B.

    A percentile's bootstrap distribution is sampled exactly and cheaply: the k-th order
    statistic of n draws from the empirical distribution is the empirical quantile at a
    Beta(k, n - k + 1) variate, so each resample costs O(1) instead of a sort of n values.
    """
    rng = np.random.default_rng(seed)
    xs = np.sort(np.asarray(a, dtype=np.float64))
    ys = np.sort(np.asarray(b, dtype=np.float64))
    if xs.size == 0 or ys.size == 0:
        raise ValueError("both samples must be non-empty")
    ra = _resampled(xs, statistic, resamples, rng)
    rb = _resampled(ys, statistic, resamples, rng)
    point_a, point_b = _point(xs, statistic), _point(ys, statistic)
    if point_a <= 0:
        raise ValueError(f"{statistic} of the baseline is not positive")
    ratios = rb / np.maximum(ra, np.finfo(np.float64).tiny) - 1
    tail = (1 - confidence) / 2 * 100
    lo, hi = np.percentile(ratios, [tail, 100 - tail])
    return RelativeChange(point_b / point_a - 1, float(lo), float(hi))


def _point(xs: np.ndarray, statistic: str) -> float:
    if statistic == "mean":
        return float(xs.mean())
    return float(np.percentile(xs, PERCENTILES[statistic]))


def _resampled(xs: np.ndarray, statistic: str, n_resamples: int, rng: np.random.Generator):
    n = xs.size
    if statistic == "mean":
        if n > 50_000:  # the CLT holds by far; resampling 50k+ values thousands of times is slow
            sd = xs.std(ddof=1) / math.sqrt(n)
            return xs.mean() + sd * rng.standard_normal(n_resamples)
        idx = rng.integers(0, n, size=(n_resamples, n))
        return xs[idx].mean(axis=1)
    q = PERCENTILES[statistic] / 100
    # numpy's linear percentile sits between order statistics k+1 and k+2 (1-based).
    h = (n - 1) * q
    k = int(math.floor(h))
    frac = h - k
    # Uniform order statistics, drawn jointly: U(k+1) ~ Beta(k+1, n-k); given it, the next one is
    # U(k+1) + (1 - U(k+1)) * Beta(1, n-k-1). Mapped through the empirical inverse CDF they are
    # the resample's order statistics.
    u1 = rng.beta(k + 1, n - k, size=n_resamples)
    lo = xs[_index(u1, n)]
    if frac == 0 or k + 2 > n:
        return lo
    u2 = u1 + (1 - u1) * rng.beta(1, n - k - 1, size=n_resamples)
    hi = xs[_index(u2, n)]
    return lo + frac * (hi - lo)


def _index(u: np.ndarray, n: int) -> np.ndarray:
    return np.clip(np.ceil(u * n).astype(np.int64) - 1, 0, n - 1)
