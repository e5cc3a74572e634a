"""Roofline placement of one node."""

from __future__ import annotations

import math

import pytest

from ortel.analysis.roofline import Roof, place

ROOF = Roof(peak_flops=100e9, mem_bw=10e9)  # ridge at 10 FLOP/byte


def test_ridge_and_bounds():
    assert ROOF.ridge == 10
    mem = place(flops=1_000_000, bytes_moved=1_000_000, seconds=1e-3, roof=ROOF)
    assert mem.bound == "memory" and mem.arithmetic_intensity == 1
    assert mem.attainable_flops == 10e9 and mem.achieved_flops == 1e9
    assert mem.pct_of_roof == pytest.approx(10)
    comp = place(flops=100_000_000, bytes_moved=1_000_000, seconds=2e-3, roof=ROOF)
    assert comp.bound == "compute" and comp.attainable_flops == 100e9
    assert comp.pct_of_roof == pytest.approx(50)
    at_ridge = place(10, 1, None, ROOF)
    assert at_ridge.bound == "compute" and at_ridge.achieved_flops is None


def test_data_movement_is_memory_bound_and_unknown_stays_unknown():
    copy = place(0, 4096, 1e-6, ROOF)
    assert copy.bound == "memory" and copy.arithmetic_intensity == 0
    assert copy.pct_of_roof is None  # no arithmetic: a share of a FLOP roof means nothing
    assert place(None, 100, 1e-6, ROOF).bound == "unknown"
    assert place(10, None, 1e-6, ROOF).bound == "unknown"
    pure = place(10, 0, 1e-6, ROOF)
    assert math.isinf(pure.arithmetic_intensity) and pure.bound == "compute"
    assert place(0, 0, 1e-6, ROOF).bound == "unknown"
