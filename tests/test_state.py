"""SeriesState: exact merging, structural copies, the window, and the readings it yields."""

from __future__ import annotations

import bisect
import json
import math
import struct

import numpy as np
import pytest
from helpers import as_dict
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ortel.core import catalog as c
from ortel.core import snapshot
from ortel.core.hist import Hist
from ortel.core.opstate import OperatorSample, OperatorState
from ortel.core.readings import HistogramValue, SummaryValue
from ortel.core.sketch import LogSketch, index_of
from ortel.core.state import (
    GenerationState,
    SeriesState,
    Stamped,
    busy_ns,
    merge_all,
    readings,
)
from ortel.core.window import COUNT, MIN_NS, Window, slice_key

HYPOTHESIS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

BOUNDS = (0.001, 0.01, 0.1, 1.0)
NOW = 1_000.0  # slice 200; a 60 s window holds slices 189 ... 200
ML = ("resnet", "cpu")


def build(
    durations: list[tuple[int, float]],
    *,
    bounds: tuple[float, ...] = BOUNDS,
    sla: float | None = None,
    errors: list[tuple[float, str]] = (),
    items: int = 0,
    model: str = "resnet",
    provider: str = "cpu",
) -> SeriesState:
    """A state as a recorder would fold it: ``durations`` are (slice key, seconds)."""
    s = SeriesState(model, provider, bounds, sla)
    for key, secs in durations:
        ns = round(secs * 1e9)
        s.ok.counts[bisect.bisect_left(bounds, secs)] += 1
        s.ok.sum_ns += ns
        s.ok.count += 1
        viol = int(sla is not None and secs > sla)
        s.window.add(key, (1, ns, viol, ns, ns), secs * secs, index_of(secs), np.array([1]))
        s.sla_violations += viol
    for secs, name in errors:
        s.error.counts[bisect.bisect_left(bounds, secs)] += 1
        s.error.sum_ns += round(secs * 1e9)
        s.error.count += 1
        s.error_types[name] = s.error_types.get(name, 0) + 1
    s.items = items
    return s


def _sketch(*values: float) -> LogSketch:
    sk = LogSketch()
    for v in values:
        sk.add(v)
    return sk


def roundtrip(s: SeriesState) -> SeriesState:
    (back,) = snapshot.decode(snapshot.encode(snapshot.Snapshot([s]))).series
    return back


def series_meta(s: SeriesState) -> list[dict]:
    """The metadata the snapshot format writes for ``s`` (the JSON document after the header)."""
    data = snapshot.encode(snapshot.Snapshot([s]))
    (n,) = struct.unpack_from("<I", data, 12)
    return json.loads(data[16 : 16 + n])["series"]


def _without_window(s: SeriesState) -> SeriesState:
    out = s.copy()
    out.window = Window()
    return out


def same_counts(a: SeriesState, b: SeriesState) -> None:
    """Equal in everything; the window's float sums of squares only to rounding (summation
    order changes their last bits)."""
    assert _without_window(a) == _without_window(b)
    wa, wb = a.window.trimmed(), b.window.trimmed()
    assert wa.keys.tolist() == wb.keys.tolist()
    assert wa.ints.tolist() == wb.ints.tolist()
    assert wa.sketch.tolist() == wb.sketch.tolist()
    assert wa.offset == wb.offset or not wa.sketch.size
    assert wa.sumsq.tolist() == pytest.approx(wb.sumsq.tolist(), rel=1e-12)


def row(s: SeriesState, key: int) -> np.ndarray:
    """The window's integer columns of slice ``key``."""
    (i,) = np.flatnonzero(s.window.keys == key)
    return s.window.ints[i]


def sketch_counts(s: SeriesState, key: int) -> dict[int, int]:
    """Sketch counts of slice ``key`` by sketch index."""
    (i,) = np.flatnonzero(s.window.keys == key)
    w = s.window
    return {w.offset + j: int(n) for j, n in enumerate(w.sketch[i]) if n}


# --- round trip and copies ---------------------------------------------------------------------


def full_state() -> SeriesState:
    s = build(
        [(200, 0.05), (200, 0.2), (195, 0.8), (150, 2.0)],
        sla=0.5,
        errors=[(0.3, "TimeoutError")],
        items=12,
    )
    s.load = Stamped(1.5, 990.0)
    s.first_inference = Stamped(0.25, 991.0)
    return s


def test_snapshot_round_trip_preserves_everything():
    s = full_state()
    back = roundtrip(s)
    assert back == s
    assert back.bounds == s.bounds and back.key == s.key
    assert back.load == s.load and back.first_inference == s.first_inference
    assert sketch_counts(back, 195) == sketch_counts(s, 195) == {index_of(0.8): 1}
    assert back.window.sumsq.tolist() == s.window.sumsq.tolist()  # floats travel bit for bit


def test_empty_state_round_trips():
    s = SeriesState("m", "p")
    assert roundtrip(s) == s


def test_copy_is_equal_and_does_not_alias():
    s = full_state()
    dup = s.copy()
    assert dup == s
    dup.ok.counts[0] += 5
    dup.error.counts[0] += 1
    dup.window.ints[0, COUNT] += 1
    dup.window.sketch[0] += 1
    dup.window.sumsq[0] += 1.0
    dup.window.add(200, (1, 1, 0, 1, 1), 1.0, index_of(1.0), np.array([1]))
    dup.error_types["X"] = 1
    dup.block_energy[("cpu", "measured")] = 1.0
    assert s == full_state()


def test_copy_of_generation_and_operators_does_not_alias():
    s = full_state()
    s.generation = GenerationState()
    s.generation.ttft.counts[0] = s.generation.ttft.count = 1
    s.operators = OperatorState()
    s.operators.add(OperatorSample([("Conv", "cpu", 1_000)], {"cpu": 3}, 0, 5.0))
    dup = s.copy()
    assert dup == s
    dup.generation.ttft.counts[0] += 1
    dup.generation.generated_tokens += 1
    dup.operators.hists[("Conv", "cpu")].counts[0] += 1
    dup.operators.nodes["cpu"] = 9
    assert s.generation.ttft.counts[0] == 1 and s.generation.generated_tokens == 0
    assert s.operators.hists[("Conv", "cpu")].count == 1
    assert sum(s.operators.hists[("Conv", "cpu")].counts) == 1
    assert s.operators.nodes == {"cpu": 3}


# --- merging -----------------------------------------------------------------------------------

durations_st = st.lists(
    st.tuples(st.integers(190, 200), st.floats(1e-6, 100.0, allow_nan=False)), max_size=40
)


@HYPOTHESIS
@given(durations_st, st.lists(st.integers(0, 4), max_size=40), st.randoms(use_true_random=False))
def test_merging_split_durations_equals_recording_them_in_one_state(durations, parts, rnd):
    groups: list[list[tuple[int, float]]] = [[] for _ in range(5)]
    for i, d in enumerate(durations):
        groups[parts[i] if i < len(parts) else 0].append(d)
    states = [build(g, sla=0.01) for g in groups]
    whole = build(durations, sla=0.01)

    (merged,) = merge_all([states]).values()
    same_counts(merged, whole)

    # Commutative: any order; associative: any grouping into sources.
    shuffled = states[:]
    rnd.shuffle(shuffled)
    cut = rnd.randint(0, len(shuffled))
    (regrouped,) = merge_all([shuffled[:cut], shuffled[cut:]]).values()
    same_counts(regrouped, whole)

    left = states[0].copy()
    for s in states[1:]:
        left.merge(s)
    right = states[-1].copy()
    for s in reversed(states[:-1]):
        right.merge(s)
    same_counts(left, right)


def test_merge_sums_errors_items_and_keeps_newest_gauges():
    a = build([(200, 0.05)], errors=[(0.3, "TimeoutError")], items=3)
    b = build([(200, 0.5)], errors=[(0.3, "TimeoutError"), (0.2, "ValueError")], items=4)
    a.load, b.load = Stamped(1.0, 10.0), Stamped(2.0, 20.0)
    b.first_inference = Stamped(0.7, 5.0)
    a.merge(b)
    assert a.items == 7
    assert a.error_types == {"TimeoutError": 2, "ValueError": 1}
    assert a.error.count == 3 and sum(a.error.counts) == 3
    assert a.load == Stamped(2.0, 20.0)
    assert a.first_inference == Stamped(0.7, 5.0)
    assert row(a, 200)[COUNT] == 2 and row(a, 200)[MIN_NS] == 50_000_000
    assert sketch_counts(a, 200) == {index_of(0.05): 1, index_of(0.5): 1}


def test_merge_all_does_not_modify_its_inputs():
    a, b = build([(200, 0.05)]), build([(200, 0.5), (199, 0.1)])
    before = (a.copy(), b.copy())
    merged = merge_all([[a], [b]])
    w = merged[ML].window
    w.add(200, (1, 9, 0, 9, 9), 81.0, index_of(9.0), np.array([1]))
    w.ints[:, COUNT] += 1
    w.sketch += 1
    w.sumsq += 1.0
    merged[ML].ok.counts[0] += 1
    merged[ML].error_types["X"] = 1
    assert (a, b) == before


def test_merge_all_returns_new_states_even_for_a_single_source():
    a, b = build([(200, 0.05)]), build([(200, 0.5)])
    alone = merge_all([[a]])[ML]
    assert alone == a and alone is not a and alone.window is not a.window
    both = merge_all([[a], [b]])[ML]
    assert both is not a and both is not b
    assert (a.ok.count, b.ok.count, both.ok.count) == (1, 1, 2)


def test_merge_of_generation_operators_and_busy_time():
    a, b = build([(200, 0.05)]), build([(200, 0.5)], errors=[(0.25, "E")])
    assert busy_ns(b) == 750_000_000
    b.generation = GenerationState(generated_tokens=10, prompt_tokens=3)
    b.generation.ttft = Hist([1] + [0] * len(c.TTFT_BUCKETS), 2_000_000_000, 1)
    assert busy_ns(b) == 2_000_000_000  # the generation's time is more than the calls'
    b.operators = OperatorState()
    b.operators.add(OperatorSample([("Conv", "cpu", 1_000)], {"cpu": 3}, 1, 5.0))
    a.merge(b)
    assert a.generation == b.generation and a.generation is not b.generation
    assert a.operators == b.operators and a.operators is not b.operators
    a.merge(b)
    assert (a.generation.generated_tokens, a.generation.prompt_tokens) == (20, 6)
    assert a.generation.ttft.count == 2 and a.generation.ttft.sum_ns == 4_000_000_000
    assert a.operators.samples == 2 and a.operators.hists[("Conv", "cpu")].count == 2
    assert b.operators.samples == 1 and b.generation.generated_tokens == 10  # b untouched
    none = build([])
    assert (none.generation, none.operators, busy_ns(none)) == (None, None, 0)


def test_merge_all_keeps_series_apart_by_model_and_provider():
    merged = merge_all(
        [[build([(200, 0.1)])], [build([(200, 0.1)], provider="cuda")], [build([(200, 0.1)])]]
    )
    assert merged[ML].ok.count == 2
    assert merged[("resnet", "cuda")].ok.count == 1


def test_merging_different_bucket_bounds_raises():
    a = build([(200, 0.1)])
    b = build([(200, 0.1)], bounds=(0.002, 0.02))
    with pytest.raises(ValueError, match="buckets"):
        a.copy().merge(b)
    with pytest.raises(ValueError, match="buckets"):
        merge_all([[a], [b]])


# --- readings ----------------------------------------------------------------------------------


def test_readings_of_a_hand_built_state_are_exact():
    got = as_dict(readings([full_state()], NOW, 60.0))
    ok, err = ML + ("ok",), ML + ("error",)

    hist = got.pop((c.INFERENCE_DURATION.name, ok))
    assert isinstance(hist, HistogramValue)
    assert (hist.bounds, hist.counts, hist.count) == (BOUNDS, (0, 0, 1, 2, 1), 4)
    assert hist.sum == pytest.approx(3.05)
    err_hist = got.pop((c.INFERENCE_DURATION.name, err))
    assert (err_hist.counts, err_hist.count) == ((0, 0, 0, 1, 0), 1)
    assert err_hist.sum == pytest.approx(0.3)

    summary = got.pop((c.LATENCY_QUANTILE.name, ML))
    assert isinstance(summary, SummaryValue)
    assert (summary.count, summary.sum) == (4, pytest.approx(3.05))
    window = _sketch(0.05, 0.2, 0.8)  # the 2.0 s call is outside the window
    assert summary.quantiles == tuple((q, window.quantile(q)) for q in c.QUANTILES)
    assert dict(summary.quantiles)[0.5] == pytest.approx(0.2, rel=0.005)

    expected = {
        (c.INFERENCES.name, ok): 4.0,
        (c.INFERENCES.name, err): 1.0,
        (c.INFERENCE_ITEMS.name, ML): 12.0,
        (c.SESSION_LOAD.name, ML): 1.5,
        (c.FIRST_INFERENCE.name, ML): 0.25,
        (c.WINDOW_INFERENCES.name, ML): 3.0,
        (c.LATENCY_MEAN.name, ML): pytest.approx(0.35),
        (c.LATENCY_STDDEV.name, ML): pytest.approx(math.sqrt(0.105)),
        (c.LATENCY_MIN.name, ML): pytest.approx(0.05),
        (c.LATENCY_MAX.name, ML): pytest.approx(0.8),
        (c.INFERENCE_ERRORS.name, ("resnet", "TimeoutError")): 1.0,
        (c.SLA_TARGET.name, ("resnet",)): 0.5,
        (c.SLA_VIOLATIONS.name, ("resnet",)): 2.0,  # since start, the old slice included
        (c.SLA_COMPLIANCE.name, ("resnet",)): pytest.approx(2 / 3),  # 1 of 3 in the window
    }
    assert got == expected


def test_slices_outside_the_window_are_excluded():
    s = build([(188, 0.05), (150, 0.2)], sla=0.1)
    got = as_dict(readings([s], NOW, 60.0))
    assert got[(c.WINDOW_INFERENCES.name, ML)] == 0.0
    assert got[(c.LATENCY_QUANTILE.name, ML)] == SummaryValue((), pytest.approx(0.25), 2)
    assert got[(c.INFERENCES.name, ML + ("ok",))] == 2.0
    assert got[(c.SLA_VIOLATIONS.name, ("resnet",))] == 1.0
    for m in (c.LATENCY_MEAN, c.LATENCY_STDDEV, c.LATENCY_MIN, c.LATENCY_MAX):
        assert (m.name, ML) not in got
    assert (c.SLA_COMPLIANCE.name, ("resnet",)) not in got  # nothing to judge in the window

    (edge,) = (r for r in readings([build([(189, 0.05)])], NOW) if r.metric is c.LATENCY_MIN)
    assert edge.value == pytest.approx(0.05)  # the oldest slice still inside counts


def test_a_model_without_sla_yields_no_sla_metrics():
    s = full_state()
    s.sla_seconds = None
    names = {r.metric.name for r in readings([s], NOW)}
    assert not names & {c.SLA_TARGET.name, c.SLA_VIOLATIONS.name, c.SLA_COMPLIANCE.name}
    assert c.LATENCY_MEAN.name in names


def test_sla_and_errors_are_per_model_across_providers():
    cpu = build([(200, 0.05), (200, 0.6)], sla=0.5, errors=[(0.1, "E")])
    cuda = build([(200, 0.7)], sla=0.5, errors=[(0.1, "E")], provider="cuda")
    other = build([(200, 0.7)], model="bert")
    got = as_dict(readings([cpu, cuda, other], NOW))
    assert got[(c.SLA_VIOLATIONS.name, ("resnet",))] == 2.0
    assert got[(c.SLA_COMPLIANCE.name, ("resnet",))] == pytest.approx(1 / 3)
    assert got[(c.INFERENCE_ERRORS.name, ("resnet", "E"))] == 2.0
    assert (c.SLA_TARGET.name, ("bert",)) not in got


def test_an_idle_series_reports_zero_ok_and_no_error_series():
    got = as_dict(readings([SeriesState("m", "p")], NOW))
    assert got[(c.INFERENCES.name, ("m", "p", "ok"))] == 0.0
    assert (c.INFERENCES.name, ("m", "p", "error")) not in got
    assert got[(c.WINDOW_INFERENCES.name, ("m", "p"))] == 0.0


def test_prune_drops_slices_outside_the_window():
    s = build([(188, 0.05), (189, 0.05), (200, 0.05)])
    s.prune(NOW, 60.0)
    assert s.window.keys.tolist() == [189, 200]
    assert s.window.ints[:, COUNT].tolist() == [1, 1]
    assert s.ok.count == 3  # totals are kept
    assert slice_key(NOW) == 200


# --- energy attribution inputs (issue 4) --------------------------------------------------------


def test_flops_and_block_energy_round_trip_merge_and_export():
    a = build([(200, 0.05)])
    a.flops = 4e9
    a.block_energy = {("cpu", "measured"): 10.0, ("gpu", "measured"): 2.5}
    b = build([(200, 0.05)])
    b.block_energy = {("cpu", "measured"): 5.0}
    assert roundtrip(a).flops == 4e9 and roundtrip(a).block_energy == a.block_energy
    ((meta_b,), (meta_empty,)) = series_meta(b), series_meta(SeriesState("m", "p"))
    assert "flops" not in meta_b and "block_energy" not in meta_empty  # absent, not null
    assert roundtrip(b).flops is None
    merged = merge_all([[b], [a]])[ML]
    assert merged.flops == 4e9  # the one that declared them
    assert merged.block_energy == {("cpu", "measured"): 15.0, ("gpu", "measured"): 2.5}
    got = as_dict(readings([merged, SeriesState("resnet", "cuda", BOUNDS)], NOW))
    assert got[(c.BLOCK_ENERGY.name, ("resnet", "cpu", "measured"))] == 15.0
    assert got[(c.BLOCK_ENERGY.name, ("resnet", "gpu", "measured"))] == 2.5
