"""Operator-timing state: folding samples, merging processes, snapshots, readings."""

from __future__ import annotations

import json

import pytest
from helpers import as_dict

from ortel.core import catalog as c
from ortel.core import snapshot
from ortel.core.opstate import MAX_OP_SERIES, OperatorSample, OperatorState
from ortel.core.state import SeriesState, merge_all, readings

CPU = "CPUExecutionProvider"


def sample(at=1.0, nodes=None, memcpy=0, ops=None):
    ops = ops or [("Conv", CPU, 3_000), ("Conv", CPU, 400_000), ("Relu", CPU, 1_000)]
    return OperatorSample(ops, nodes or {CPU: 3}, memcpy, at)


def test_samples_fold_into_histograms():
    st = OperatorState()
    st.add(sample())
    conv = st.hists[("Conv", CPU)]
    bounds = c.OPERATOR_DURATION.buckets
    assert conv.count == 2 and conv.sum_ns == 403_000
    assert conv.counts[bounds.index(5e-6)] == 1  # 3 µs: in (2.81 µs, 5 µs]
    assert conv.counts[bounds.index(0.0005)] == 1  # 400 µs: in (281 µs, 500 µs]
    assert st.samples == 1 and st.nodes == {CPU: 3}
    edge = OperatorState()
    edge.add(sample(ops=[("Add", CPU, 5_000)]))  # exactly on a bound: that bucket (le)
    assert edge.hists[("Add", CPU)].counts[bounds.index(5e-6)] == 1


def test_merge_adds_histograms_and_keeps_the_newest_graph_facts():
    a, b = OperatorState(), OperatorState()
    a.add(sample(at=10, nodes={CPU: 3}, memcpy=0))
    b.add(sample(at=20, nodes={CPU: 2, "CUDAExecutionProvider": 5}, memcpy=2))
    a.merge(b)
    assert a.samples == 2 and a.hists[("Conv", CPU)].count == 4
    assert a.nodes == {CPU: 2, "CUDAExecutionProvider": 5} and a.memcpy == 2
    b.merge(OperatorState())  # an empty one changes nothing
    assert b.samples == 1


def test_snapshot_round_trip_and_validation():
    st = OperatorState()
    st.add(sample())
    doc = snapshot._operators_out(st)
    assert snapshot._operators_in(json.loads(json.dumps(doc))) == st
    bad = json.loads(json.dumps(doc))
    bad["hists"][0][2][2] = 99  # the count no longer matches the buckets
    with pytest.raises(ValueError):
        snapshot._operators_in(bad)
    for broken in ({**doc, "nodes": []}, {**doc, "hists": [["x"]]}):
        with pytest.raises(ValueError):
            snapshot._operators_in(broken)


def test_copies_are_independent():
    st = OperatorState()
    st.add(sample())
    dup = st.copy()
    dup.add(sample())
    assert st.samples == 1 and dup.samples == 2
    assert st.hists != dup.hists


def test_op_type_cardinality_is_bounded():
    st = OperatorState()
    st.add(sample(ops=[(f"Op{i}", CPU, 1000) for i in range(MAX_OP_SERIES + 50)]))
    assert len(st.hists) == MAX_OP_SERIES + 1 and st.hists[("other", CPU)].count == 50


def series(provider, with_ops=True):
    s = SeriesState("cnn", provider)
    if with_ops:
        s.operators = OperatorState()
        s.operators.add(sample(ops=[("Conv", provider, 3_000), ("Relu", provider, 1_000)]))
    return s


def test_snapshots_carry_operators_and_series_without_them_parse():
    def round_trip(s):
        (back,) = snapshot.decode(snapshot.encode(snapshot.Snapshot([s]))).series
        return back

    s = series(CPU)
    assert round_trip(s).operators == s.operators
    assert round_trip(series(CPU, with_ops=False)).operators is None
    merged = merge_all([[series(CPU)], [series(CPU)], [series(CPU, with_ops=False)]])
    assert merged[("cnn", CPU)].operators.samples == 2


def test_readings_per_model_over_providers_and_processes():
    got = as_dict(readings([series(CPU), series("CUDAExecutionProvider")], now=100.0))
    conv = got[(c.OPERATOR_DURATION.name, ("cnn", "Conv", CPU))]
    assert conv.count == 1 and conv.sum == pytest.approx(3e-6)
    assert (c.OPERATOR_DURATION.name, ("cnn", "Conv", "CUDAExecutionProvider")) in got
    assert got[(c.OPERATOR_SHARE.name, ("cnn", "Conv"))] == pytest.approx(0.75)
    assert got[(c.OPERATOR_SHARE.name, ("cnn", "Relu"))] == pytest.approx(0.25)
    assert got[(c.OPERATOR_SAMPLES.name, ("cnn",))] == 2
    assert got[(c.GRAPH_MEMCPY_NODES.name, ("cnn",))] == 0
    without = as_dict(readings([series(CPU, with_ops=False)], now=100.0))
    assert not any(k[0].startswith("ortel_operator") for k in without)
