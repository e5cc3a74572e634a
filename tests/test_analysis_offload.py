"""Offload candidates and Amdahl's law."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from ortel.analysis.offload import amdahl, chains, find


@dataclass
class R:
    key: str
    op_type: str
    family: str
    time_us: float
    flops: float | None = 0
    activation_bytes_read: float | None = 100
    weight_bytes_read: float | None = 0
    bytes_written: float | None = 100
    energy_j: float | None = None


def test_amdahl():
    assert amdahl(0.0, 10) == 1 and amdahl(1.0, 10) == pytest.approx(10)
    assert amdahl(0.5, 10) == pytest.approx(1 / (0.5 + 0.05))
    assert amdahl(0.9, 1e9) == pytest.approx(10)


def graph():
    rows = [
        R("conv", "Conv", "conv", 60, flops=1e6, weight_bytes_read=1000, energy_j=0.6),
        R("relu", "Relu", "elementwise", 10, flops=100, energy_j=0.1),
        R("pool", "MaxPool", "reduction", 5, flops=100, energy_j=0.05),
        R("gemm", "Gemm", "matmul", 2, flops=1e5, weight_bytes_read=100, energy_j=0.02),
        R("add", "Add", "elementwise", 20, flops=100, energy_j=0.2),
        R("small", "MatMul", "matmul", 3, flops=10, energy_j=0.03),  # not intense
    ]
    succ = {"conv": ["relu"], "relu": ["pool"], "pool": ["gemm"], "gemm": ["add"]}
    preds = {"relu": 1, "pool": 1, "gemm": 1, "add": 2}  # add also reads a graph input elsewhere
    return rows, succ, preds


def test_chains_take_only_single_consumer_epilogues():
    rows, succ, preds = graph()
    got = [[r.key for r in c] for c in chains(rows, succ, preds)]
    # the pool is a reduction, not an epilogue; add has two producers
    assert got == [["conv", "relu"], ["pool"], ["gemm"], ["add"], ["small"]]


def test_candidates_groups_and_the_chosen_set():
    rows, succ, preds = graph()
    total_t, total_e = 100.0, 1.0
    res = find(rows, succ, preds, total_t, total_e, accel_speedup=10, threshold=0.05)
    assert res.eligible == 2  # conv+relu and gemm; "small" is below the intensity floor
    (c,) = res.candidates  # gemm is only 2 % of the time
    assert c.nodes == ["conv", "relu"] and c.share_time == pytest.approx(0.7)
    assert c.arithmetic_intensity == pytest.approx((1e6 + 100) / (100 + 100 + 1000))
    assert c.speedup_latency == pytest.approx(amdahl(0.7, 10))
    assert c.share_energy == pytest.approx(0.7)
    assert res.set_share_time == pytest.approx(0.72)
    assert res.set_speedup_latency == pytest.approx(amdahl(0.72, 10))
    assert [g.op_type for g in res.groups] == ["Conv", "Gemm"]


def test_unknown_cost_is_not_offloaded_and_no_time_means_nothing():
    rows = [R("x", "Conv", "conv", 50, flops=None)]
    res = find(rows, {}, {}, 50, None)
    assert res.eligible == 0 and any("unknown" in n for n in res.notes)
    assert find(rows, {}, {}, 0, None).notes == ["no measured node time: nothing to offload"]
