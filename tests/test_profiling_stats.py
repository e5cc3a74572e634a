"""Latency statistics, steady state, Mann–Whitney U and the bootstrap of a relative change."""

from __future__ import annotations

import numpy as np
import pytest

from ortel.profiling import stats


def test_latency_stats_are_numpys_over_every_sample():
    rng = np.random.default_rng(3)
    a = rng.lognormal(-7, 0.4, 5001)
    got = stats.latency_stats(a)
    assert set(got) == set(stats.STAT_KEYS)
    for k, q in stats.PERCENTILES.items():
        assert got[k] == pytest.approx(np.percentile(a, q), rel=1e-12)
    assert got["mean"] == pytest.approx(a.mean())
    assert got["stddev"] == pytest.approx(a.std(ddof=1))
    assert got["min"] == a.min() and got["max"] == a.max()


def test_empty_samples_are_unknown_not_zero():
    assert stats.latency_stats([]) == dict.fromkeys(stats.STAT_KEYS)
    assert stats.latency_stats([0.5])["stddev"] == 0.0


@pytest.mark.parametrize(
    ("n", "untrusted"),
    [(99, ["p90", "p95", "p99", "p999"]), (100, ["p95", "p99", "p999"]),
     (999, ["p99", "p999"]), (1000, ["p999"]), (10_000, [])],
)  # fmt: skip
def test_untrusted_percentiles_need_ten_samples_beyond_them(n, untrusted):
    assert stats.untrusted_percentiles(n) == untrusted


def test_samples_needed():
    assert stats.samples_needed("p99") == 1000
    assert stats.samples_needed("p999") == 10_000


@pytest.mark.parametrize(
    ("values", "tol", "ok"),
    [([1.0, 1.05, 0.97], 0.1, True), ([1.0, 1.3, 1.0], 0.1, False), ([], 0.1, False),
     ([0.0, 0.0, 0.0], 0.1, True)],
)  # fmt: skip
def test_stable(values, tol, ok):
    assert stats.stable(values, tol) is ok


def test_mann_whitney_matches_a_known_answer_with_ties():
    # Reference: scipy.stats.mannwhitneyu(b, a, method="asymptotic", use_continuity=True).
    a = [1.1, 2.3, 2.3, 3.0, 4.2, 5.5, 6.1, 7.7]
    b = [2.3, 3.9, 4.4, 5.0, 6.6, 7.0, 8.8, 9.1, 9.9]
    r = stats.mann_whitney_u(a, b)
    assert r.u == 54.0
    assert r.p_value == pytest.approx(0.09139571552351716, rel=1e-9)
    assert r.prob_b_greater == pytest.approx(54 / 72)


def test_rankdata_averages_ties():
    ranks = stats._rankdata(np.array([3.0, 1.0, 3.0, 2.0, 3.0]))
    assert ranks.tolist() == [4.0, 1.0, 4.0, 2.0, 4.0]


def test_mann_whitney_identical_samples_is_not_significant():
    r = stats.mann_whitney_u([1.0] * 10, [1.0] * 12)
    assert r.p_value == 1.0


def test_mann_whitney_needs_samples():
    with pytest.raises(ValueError):
        stats.mann_whitney_u([], [1.0])


@pytest.mark.parametrize("statistic", ["p50", "p99", "mean"])
def test_bootstrap_interval_matches_brute_force_resampling(statistic):
    rng = np.random.default_rng(1)
    a = rng.lognormal(0, 0.3, 300)
    b = rng.lognormal(0.05, 0.3, 400)
    got = stats.bootstrap_change(a, b, statistic, resamples=4000, seed=2)
    # Brute force: resample both, recompute the statistic, take the ratio.
    ia, ib = rng.integers(0, 300, (4000, 300)), rng.integers(0, 400, (4000, 400))
    if statistic == "mean":
        ratios = b[ib].mean(1) / a[ia].mean(1) - 1
        point = b.mean() / a.mean() - 1
    else:
        q = stats.PERCENTILES[statistic]
        ratios = np.percentile(b[ib], q, axis=1) / np.percentile(a[ia], q, axis=1) - 1
        point = np.percentile(b, q) / np.percentile(a, q) - 1
    lo, hi = np.percentile(ratios, [2.5, 97.5])
    assert got.point == pytest.approx(point)
    width = hi - lo
    assert got.low == pytest.approx(lo, abs=0.1 * width)
    assert got.high == pytest.approx(hi, abs=0.1 * width)


def test_bootstrap_of_a_million_samples_is_fast_and_tight():
    rng = np.random.default_rng(0)
    a = rng.lognormal(0, 0.2, 1_000_000)
    b = a * 1.02
    r = stats.bootstrap_change(a, b, "p99")
    assert r.low < 0.02 < r.high and r.high - r.low < 0.01


def test_bootstrap_rejects_a_zero_baseline():
    with pytest.raises(ValueError):
        stats.bootstrap_change([0.0, 0.0], [1.0, 1.0], "p50")
