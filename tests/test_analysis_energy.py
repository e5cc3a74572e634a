"""Energy per node and the power behind it."""

from __future__ import annotations

import time

import pytest

from ortel.analysis import energy as en


def test_power_times_time_and_the_compute_data_split():
    p = en.Power(50.0, "given", "--power-w")
    assert en.joules(p, 0.002) == pytest.approx(0.1)
    assert en.joules(None, 1.0) is None and en.joules(p, None) is None
    c, d = en.split(1_000_000, 1_000_000)
    assert c == pytest.approx(1e6 * 2.3e-12) and d == pytest.approx(1e6 * 160e-12)
    c, d = en.split(None, 10)
    assert c is None and d == pytest.approx(10 * 160e-12)
    c, d = en.split(10, 10, pj_per_flop=1.0, pj_per_byte=0.0)
    assert c == pytest.approx(1e-11) and d == 0


def test_without_any_power_source_the_estimate_is_labelled(tmp_path):
    meter = en.PowerMeter(sysfs=tmp_path, procfs=tmp_path, interval=0.05, threads=3).start()
    meter.stop()
    p = meter.power()
    assert p.source == "estimated" and p.watts == pytest.approx(3 * en.FALLBACK_WATTS_PER_THREAD)
    assert "3 busy thread(s)" in p.detail and "stat" in p.detail  # says why nothing measured


def test_collectors_on_this_machine_give_power_during_work():
    """The daemon's own power collectors, in-process: RAPL where readable (measured), else the
    utilisation-based estimate from /proc/stat (estimated)."""
    meter = en.PowerMeter(interval=0.05).start()
    end = time.perf_counter() + 0.4
    x = 0
    while time.perf_counter() < end:  # keep a CPU busy
        x += 1
    meter.stop()
    p = meter.power()
    assert p.source in ("measured", "estimated") and p.watts > 0
    if p.source == "estimated":
        assert "estimated" in p.detail or "busy thread" in p.detail
