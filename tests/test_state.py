"""SeriesState: JSON round trip, exact merging, validated parsing, and the readings it yields."""

from __future__ import annotations

import bisect
import copy
import json
import math

import pytest
from helpers import as_dict
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ortel.core import catalog as c
from ortel.core.readings import HistogramValue, SummaryValue
from ortel.core.sketch import LogSketch
from ortel.core.state import (
    SeriesState,
    Slice,
    Stamped,
    merge_all,
    readings,
    slice_key,
)

HYPOTHESIS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PARSE_ERRORS = (ValueError, KeyError, TypeError)

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
        sl = s.slices.setdefault(key, Slice())
        sl.merge(
            Slice(1, ns, secs * secs, ns, ns, int(sla is not None and secs > sla), _sketch(secs))
        )
        if sla is not None and secs > sla:
            s.sla_violations += 1
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
    return SeriesState.from_json(json.loads(json.dumps(s.to_json())))


def without_sumsq(d: dict) -> tuple[dict, list[float]]:
    """The JSON form minus the float sums of squares (summation order changes their last bits)."""
    d = copy.deepcopy(d)
    sumsq = [d["slices"][k].pop("sumsq") for k in sorted(d["slices"])]
    return d, sumsq


def same_counts(a: SeriesState, b: SeriesState) -> None:
    da, sa = without_sumsq(a.to_json())
    db, sb = without_sumsq(b.to_json())
    da["slices"] = dict(sorted(da["slices"].items()))
    db["slices"] = dict(sorted(db["slices"].items()))
    assert da == db
    assert sa == pytest.approx(sb, rel=1e-12)


# --- round trip --------------------------------------------------------------------------------


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


def test_json_round_trip_preserves_everything():
    s = full_state()
    back = roundtrip(s)
    assert back.to_json() == s.to_json()
    assert back.bounds == s.bounds and back.key == s.key
    assert back.load == s.load and back.first_inference == s.first_inference
    assert back.slices[195].sketch.counts == s.slices[195].sketch.counts


def test_empty_state_round_trips():
    s = SeriesState("m", "p")
    assert roundtrip(s).to_json() == s.to_json()


def test_copy_does_not_alias():
    s = full_state()
    dup = s.copy()
    dup.ok.counts[0] += 5
    dup.slices[200].sketch.add(1.0)
    dup.error_types["X"] = 1
    assert s.to_json() == full_state().to_json()


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
    assert a.slices[200].count == 2 and a.slices[200].min_ns == 50_000_000


def test_merge_all_does_not_modify_its_inputs():
    a, b = build([(200, 0.05)]), build([(200, 0.5), (199, 0.1)])
    before = (a.to_json(), b.to_json())
    merged = merge_all([[a], [b]])
    merged[ML].slices[200].sketch.add(9.0)
    merged[ML].ok.counts[0] += 1
    assert (a.to_json(), b.to_json()) == before


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


# --- parsing -----------------------------------------------------------------------------------

VALID = full_state().to_json()


def _paths(obj: object, prefix: tuple = ()) -> list[tuple]:
    out = [prefix] if prefix else []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, prefix + (i,))
    return out


PATHS = _paths(VALID)
NASTY = [
    -1,
    -0.5,
    0,
    1.5,
    math.nan,
    math.inf,
    -math.inf,
    10**400,
    -(10**400),
    True,
    False,
    None,
    "",
    "7",
    "x" * 5000,
    [],
    {},
    [1, 2],
    [[1], [-1]],
    [[10**6], [1]],
    {"a": 1},
]
json_st = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
value_st = st.sampled_from(NASTY) | json_st


def _mutate(doc: dict, path: tuple, value: object, delete: bool) -> None:
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value


def parses_or_rejects(doc: object) -> None:
    """from_json either rejects with the documented errors, or gives a usable state."""
    try:
        s = SeriesState.from_json(doc)
    except PARSE_ERRORS:
        return
    assert roundtrip(s).to_json() == s.to_json()
    list(readings([s], NOW))  # anything accepted must also be reportable
    s.copy().merge(s)


@HYPOTHESIS
@given(json_st)
def test_from_json_rejects_random_structures_cleanly(doc):
    parses_or_rejects(doc)


@HYPOTHESIS
@given(st.fixed_dictionaries({k: value_st for k in VALID}))
def test_from_json_rejects_random_values_under_the_right_keys_cleanly(doc):
    parses_or_rejects(doc)


@HYPOTHESIS
@given(st.lists(st.tuples(st.sampled_from(PATHS), st.booleans(), value_st), min_size=1, max_size=3))
def test_from_json_rejects_mutated_snapshots_cleanly(mutations):
    doc = copy.deepcopy(VALID)
    for path, delete, value in mutations:
        try:
            _mutate(doc, path, value, delete)
        except (KeyError, IndexError, TypeError):
            pass  # an earlier mutation removed or replaced this path
    parses_or_rejects(doc)


def _with(path: tuple, value: object) -> dict:
    doc = copy.deepcopy(VALID)
    _mutate(doc, path, value, False)
    return doc


MALFORMED = {
    "negative count": _with(("items",), -1),
    "count beyond float": _with(("items",), 10**400),
    "bool as count": _with(("items",), True),
    "nan sla": _with(("sla_seconds",), math.nan),
    "bound beyond float": _with(("bounds",), [10**400]),
    "decreasing bounds": _with(("bounds",), [0.1, 0.01]),
    "no bounds": _with(("bounds",), []),
    "wrong bucket count": _with(("ok", "counts"), [1, 2]),
    "count differs from buckets": _with(("ok", "count"), 99),
    "infinite sumsq": _with(("slices", "200", "sumsq"), math.inf),
    "slice count differs from sketch": _with(("slices", "200", "count"), 5),
    "more violations than calls": _with(("slices", "200", "violations"), 3),
    "sketch index beyond float": _with(("slices", "200", "sketch"), [[10**6], [2]]),
    "slices as list": _with(("slices",), []),
    "slices as number": _with(("slices",), 3),
    "non-numeric slice key": _with(("slices",), {"soon": VALID["slices"]["200"]}),
    "negative error count": _with(("error_types",), {"X": -1}),
    "huge error type": _with(("error_types",), {"E" * 100_000: 1}),
    "numeric model": _with(("model",), 7),
    "huge model": _with(("model",), "m" * 100_000),
    "huge provider": _with(("provider",), "p" * 100_000),
    "short stamp": _with(("load",), [1.0]),
    "list": [],
    "none": None,
    "string": "resnet",
}


@pytest.mark.parametrize("doc", MALFORMED.values(), ids=MALFORMED.keys())
def test_from_json_rejects_known_malformations(doc):
    with pytest.raises(PARSE_ERRORS):
        SeriesState.from_json(doc)


@pytest.mark.parametrize("key", sorted(VALID))
def test_from_json_requires_every_key(key):
    doc = copy.deepcopy(VALID)
    del doc[key]
    with pytest.raises(KeyError):
        SeriesState.from_json(doc)


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
    assert sorted(s.slices) == [189, 200]
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
    assert "flops" not in b.to_json() and "block_energy" not in SeriesState("m", "p").to_json()
    merged = merge_all([[b], [a]])[ML]
    assert merged.flops == 4e9  # the one that declared them
    assert merged.block_energy == {("cpu", "measured"): 15.0, ("gpu", "measured"): 2.5}
    got = as_dict(readings([merged, SeriesState("resnet", "cuda", BOUNDS)], NOW))
    assert got[(c.BLOCK_ENERGY.name, ("resnet", "cpu", "measured"))] == 15.0
    assert got[(c.BLOCK_ENERGY.name, ("resnet", "gpu", "measured"))] == 2.5


@pytest.mark.parametrize(
    "block",
    [[1.0], {"cpu": 1.0}, {"cpu/guessed": 1.0}, {"tpu/measured": 1.0}, {"cpu/measured": -1.0}],
)
def test_malformed_block_energy_is_rejected(block):
    doc = SeriesState("m", "p").to_json()
    doc["block_energy"] = block
    with pytest.raises(ValueError):
        SeriesState.from_json(doc)
    doc = SeriesState("m", "p").to_json()
    doc["flops"] = -1
    with pytest.raises(ValueError):
        SeriesState.from_json(doc)
