"""Window: a series' sliding-window slices by columns; adding, merging, pruning, statistics."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ortel.core.sketch import ALPHA, LogSketch, index_of, value_of
from ortel.core.window import (
    COUNT,
    MAX_NS,
    MIN_NS,
    N_INTS,
    SUM_NS,
    VIOLATIONS,
    Window,
    WindowStats,
    oldest_key,
    slice_key,
    window_keys,
)

HYPOTHESIS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
QS = (0.0, 0.01, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 1.0)
SLA_NS = 10_000_000  # 10 ms


def add_call(w: Window, t: float, ns: int, sla_ns: int | None = SLA_NS) -> None:
    """One call of ``ns`` nanoseconds at wall time ``t``, as the recorder folds it."""
    secs = ns * 1e-9
    viol = int(sla_ns is not None and ns > sla_ns)
    w.add(slice_key(t), (1, ns, viol, ns, ns), secs * secs, index_of(secs), np.array([1]))


def window_of(calls: list[tuple[float, int]]) -> Window:
    w = Window()
    for t, ns in calls:
        add_call(w, t, ns)
    return w


def assert_same(a: Window, b: Window) -> None:
    """Equal in every integer, sums of squares to rounding (summation order differs)."""
    ta, tb = a.trimmed(), b.trimmed()
    assert ta.keys.tolist() == tb.keys.tolist()
    assert ta.ints.tolist() == tb.ints.tolist()
    assert ta.sketch.tolist() == tb.sketch.tolist()
    if ta.sketch.size:
        assert ta.offset == tb.offset
    assert ta.sumsq.tolist() == pytest.approx(tb.sumsq.tolist(), rel=1e-12)


def expected_stats(calls: list[tuple[float, int]], oldest: int) -> dict:
    inside = [ns for t, ns in calls if slice_key(t) >= oldest]
    if not inside:
        return {"count": 0}
    return {
        "count": len(inside),
        "sum_ns": sum(inside),
        "violations": sum(ns > SLA_NS for ns in inside),
        "min_ns": min(inside),
        "max_ns": max(inside),
    }


# --- keys ----------------------------------------------------------------------------------------


def test_slice_keys_and_the_oldest_key_of_a_window():
    assert slice_key(1000.0) == 200 and slice_key(1004.999) == 200 and slice_key(1005.0) == 201
    assert window_keys(60.0) == 12 and window_keys(61.0) == 13 and window_keys(0.0) == 1
    assert oldest_key(1000.0, 60.0) == 189  # slices 189 ... 200
    assert oldest_key(1000.0, 1.0) == 200


# --- add -----------------------------------------------------------------------------------------


def test_an_empty_window():
    w = Window()
    assert len(w) == 0 and w.keys.dtype == np.int64 and w.ints.shape == (0, N_INTS)
    assert w.sketch.shape == (0, 0) and w.sumsq.shape == (0,)
    s = w.stats(0)
    assert (s.count, s.sum_ns, s.violations, s.min_ns, s.max_ns, s.sumsq) == (0, 0, 0, 0, 0, 0.0)
    assert s.quantiles(QS) == (0.0,) * len(QS)
    assert w == Window() and w.trimmed() == w


def test_add_keeps_keys_ascending_and_one_row_per_slice():
    w = Window()
    for t, ns in [(1000.0, 5_000_000), (990.0, 20_000_000), (1003.0, 1_000_000), (995.0, 7)]:
        add_call(w, t, ns)
    assert w.keys.tolist() == [198, 199, 200]
    assert w.ints[:, COUNT].tolist() == [1, 1, 2]
    assert w.ints[2].tolist() == [2, 6_000_000, 0, 1_000_000, 5_000_000]
    assert w.ints[0].tolist() == [1, 20_000_000, 1, 20_000_000, 20_000_000]
    assert w.ints[1, MIN_NS] == w.ints[1, MAX_NS] == 7
    assert w.sumsq.tolist() == pytest.approx([4e-4, 49e-18, 25e-6 + 1e-6])
    assert (w.sketch.sum(axis=1) == w.ints[:, COUNT]).all()
    # Column j counts sketch index offset + j.
    for row, ns in ((0, 20_000_000), (1, 7)):
        j = index_of(ns * 1e-9) - w.offset
        assert w.sketch[row, j] == 1


def test_add_a_folded_batch_with_its_sketch_counts():
    w = Window()
    per = np.array([2, 0, 3])
    w.add(7, (5, 500, 1, 10, 300), 0.25, -40, per)
    w.add(7, (1, 2, 0, 2, 2), 0.5, -45, np.array([1]))  # widens the sketch downwards
    w.add(7, (2, 1000, 2, 400, 600), 0.125, -30, np.array([0, 2]))  # and upwards
    assert w.keys.tolist() == [7]
    assert w.ints.tolist() == [[8, 1502, 3, 2, 600]]
    assert w.sumsq.tolist() == [0.875]
    assert w.offset == -45 and w.sketch.shape == (1, 17)
    counts = {w.offset + j: int(n) for j, n in enumerate(w.sketch[0]) if n}
    assert counts == {-45: 1, -40: 2, -38: 3, -29: 2}


def test_a_new_slice_gets_zero_sketch_counts_in_the_shared_columns():
    w = Window()
    w.add(1, (1, 1, 0, 1, 1), 0.0, 0, np.array([1, 0, 0, 0]))
    w.add(2, (1, 1, 0, 1, 1), 0.0, 2, np.array([1]))
    assert w.sketch.tolist() == [[1, 0, 0, 0], [0, 0, 1, 0]]
    w.add(0, (1, 1, 0, 1, 1), 0.0, 5, np.array([1]))  # a slice before the others
    assert w.keys.tolist() == [0, 1, 2]
    assert w.sketch.tolist() == [[0, 0, 0, 0, 0, 1], [1, 0, 0, 0, 0, 0], [0, 0, 1, 0, 0, 0]]


# --- merge ---------------------------------------------------------------------------------------


def test_merge_with_different_keys_and_sketch_ranges_equals_adding_everything_to_one():
    a_calls = [(1000.0, 1_000), (1000.5, 2_000), (985.0, 3_000_000_000)]
    b_calls = [(1001.0, 50_000_000), (1010.0, 7_000_000), (970.0, 11)]  # other keys, wider range
    a, b = window_of(a_calls), window_of(b_calls)
    assert a.offset != b.offset and a.sketch.shape[1] != b.sketch.shape[1]
    merged = a.copy()
    merged.merge(b)
    assert_same(merged, window_of(a_calls + b_calls))
    other_way = b.copy()
    other_way.merge(a)
    assert_same(other_way, merged)
    assert merged.keys.tolist() == [194, 197, 200, 202]


def test_merge_into_an_empty_window_and_of_an_empty_window():
    a = window_of([(1000.0, 1_000), (990.0, 2_000_000)])
    empty = Window()
    empty.merge(a)
    assert empty == a
    before = a.copy()
    a.merge(Window())
    assert a == before


def test_merge_keeps_min_of_the_slices_it_meets_and_takes_new_slices_as_they_are():
    a = window_of([(1000.0, 5_000), (995.0, 9_000)])
    b = window_of([(1000.0, 3_000), (1005.0, 8_000)])
    a.merge(b)
    assert a.keys.tolist() == [199, 200, 201]
    assert a.ints[:, MIN_NS].tolist() == [9_000, 3_000, 8_000]
    assert a.ints[:, MAX_NS].tolist() == [9_000, 5_000, 8_000]
    assert a.ints[:, SUM_NS].tolist() == [9_000, 8_000, 8_000]


def test_merge_does_not_alias_its_argument():
    a, b = window_of([(1000.0, 1_000)]), window_of([(1000.0, 2_000), (990.0, 3_000)])
    b_before = b.copy()
    a.merge(b)
    a.ints[:, COUNT] += 1
    a.sketch += 1
    a.sumsq += 1.0
    assert b == b_before


calls_st = st.lists(
    st.tuples(st.floats(0.0, 300.0, allow_nan=False), st.integers(1_000, 100_000_000_000)),
    max_size=60,
)


@HYPOTHESIS
@given(calls_st, st.lists(st.integers(0, 4), max_size=60), st.integers(1, 5), st.randoms())
def test_merging_split_calls_equals_one_window_fed_everything(calls, parts, n, rnd):
    groups: list[list[tuple[float, int]]] = [[] for _ in range(n)]
    for i, call in enumerate(calls):
        groups[(parts[i] if i < len(parts) else 0) % n].append(call)
    windows = [window_of(g) for g in groups]
    whole = window_of(calls)

    merged = Window()
    for w in windows:
        merged.merge(w)
    assert_same(merged, whole)

    rnd.shuffle(windows)  # any order, any grouping
    left = windows[0].copy()
    for w in windows[1:]:
        left.merge(w)
    assert_same(left, whole)

    oldest = rnd.randint(0, 61)
    got, want = merged.stats(oldest), expected_stats(calls, oldest)
    assert got.count == want["count"]
    if want["count"]:
        assert (got.sum_ns, got.violations, got.min_ns, got.max_ns) == (
            want["sum_ns"],
            want["violations"],
            want["min_ns"],
            want["max_ns"],
        )
        secs = [ns * 1e-9 for t, ns in calls if slice_key(t) >= oldest]
        assert got.sumsq == pytest.approx(sum(x * x for x in secs), rel=1e-9)


@HYPOTHESIS
@given(calls_st.filter(bool), st.integers(0, 61))
def test_window_quantiles_are_within_one_percent_and_match_log_sketch(calls, oldest):
    w = window_of(calls)
    secs = [ns * 1e-9 for t, ns in calls if slice_key(t) >= oldest]
    stats = w.stats(oldest)
    assert stats.count == len(secs)
    if not secs:
        assert stats.quantiles(QS) == (0.0,) * len(QS)
        return
    got = stats.quantiles(QS)
    want = [float(np.percentile(secs, 100 * q, method="linear")) for q in QS]
    for q, g, x in zip(QS, got, want):
        assert g == pytest.approx(x, rel=0.01), q
    sketch = LogSketch()
    for x in secs:
        sketch.add(x)
    assert got == tuple(sketch.quantile(q) for q in QS)


def test_quantiles_of_known_values():
    values_ns = [1_000_000 * k for k in range(1, 101)]  # 1 ms ... 100 ms
    w = window_of([(1000.0 + i % 5, ns) for i, ns in enumerate(values_ns)])
    p50, p99, p100 = w.stats(0).quantiles((0.5, 0.99, 1.0))
    assert p50 == pytest.approx(0.0505, rel=ALPHA)
    assert p99 == pytest.approx(0.09901, rel=ALPHA)
    assert p100 == value_of(index_of(0.1))


def test_stats_of_a_handful_of_slices():
    calls = [(900.0, 4_000), (995.0, 20_000_000), (1000.0, 5_000), (1004.0, 6_000)]
    w = window_of(calls)
    s = w.stats(199)
    assert isinstance(s, WindowStats)
    assert (s.count, s.sum_ns, s.violations, s.min_ns, s.max_ns) == (3, 20_011_000, 1, 5_000, 2e7)
    assert s.sumsq == pytest.approx(4e-4 + 25e-12 + 36e-12)
    assert s.sketch.ndim == 1 and int(s.sketch.sum()) == 3 and s.offset == w.offset
    assert w.stats(201).count == 0
    assert w.stats(0).count == 4


# --- prune, trimmed, copy ------------------------------------------------------------------------


def test_prune_drops_older_slices_only():
    w = window_of([(940.0, 1_000), (945.0, 2_000), (1000.0, 3_000)])
    w.prune(189)
    assert w.keys.tolist() == [189, 200]
    assert w.ints[:, SUM_NS].tolist() == [2_000, 3_000]
    assert len(w.sumsq) == 2 and w.sketch.shape[0] == 2
    w.prune(150)  # nothing older
    assert w.keys.tolist() == [189, 200]
    w.prune(201)
    assert len(w) == 0 and w.stats(0).count == 0


def test_a_fully_pruned_window_equals_an_empty_one():
    w = window_of([(1000.0, 1_000)])
    w.prune(201)
    assert w == Window()
    assert w.trimmed().sketch.shape == (0, 0)


def test_trimmed_cuts_unused_sketch_columns_and_keeps_the_rest():
    w = Window()
    w.add(3, (1, 1, 0, 1, 1), 0.0, 10, np.array([0, 0, 1, 0]))
    w.add(4, (2, 2, 0, 1, 1), 0.0, 5, np.array([0, 2, 0]))
    assert (w.offset, w.sketch.shape) == (5, (2, 9))
    t = w.trimmed()
    assert t.offset == 6 and t.sketch.tolist() == [[0, 0, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 0, 0]]
    assert t == w and t.trimmed() is t
    assert t.stats(0).quantiles(QS) == w.stats(0).quantiles(QS)


def test_windows_differing_only_in_unused_columns_are_equal():
    a, b = Window(), Window()
    a.add(1, (1, 5, 0, 5, 5), 0.5, 3, np.array([1]))
    b.add(1, (1, 5, 0, 5, 5), 0.5, 0, np.array([0, 0, 0, 1, 0, 0]))
    assert a == b
    c = a.copy()
    c.sumsq[0] = 0.25
    assert a != c
    d = a.copy()
    d.ints[0, VIOLATIONS] = 1
    assert a != d
    e = Window()
    e.add(1, (1, 5, 0, 5, 5), 0.5, 4, np.array([1]))  # another sketch index
    assert a != e
    assert a != "window"


def test_copy_is_independent():
    w = window_of([(1000.0, 1_000), (990.0, 2_000)])
    before = window_of([(1000.0, 1_000), (990.0, 2_000)])
    dup = w.copy()
    dup.ints[0, COUNT] += 1
    dup.sketch[0, 0] += 1
    dup.sumsq[0] += 1.0
    dup.keys[0] = 7
    add_call(dup, 1000.0, 5)
    assert w == before
