from __future__ import annotations

import itertools
import threading
import time

import pytest

from ortel.core import catalog as c
from ortel.core.readings import Reading, reading
from ortel.exporter.derive import (
    DEFAULT_GRID_INTENSITY,
    JOULES_PER_KWH,
    Carbon,
    Derived,
    apply_derivations,
)

G = DEFAULT_GRID_INTENSITY / JOULES_PER_KWH  # grams per joule at the default intensity


def rapl(zone: str, index: str, joules: float) -> Reading:
    return reading(c.RAPL_ENERGY, joules, zone=zone, index=index)


def gpu(n: int, joules: float) -> Reading:
    return reading(c.GPU_ENERGY, joules, gpu=str(n), uuid=f"GPU-{n}", name="H100")


def integrated(source: str, zone: str, joules: float) -> Reading:
    return reading(c.ENERGY, joules, source=source, device="cpu", zone=zone)


def grams(readings: list[Reading]) -> dict[str, float]:
    out = {r.labels[0]: r.value for r in readings if r.metric is c.CARBON}
    assert len(out) == len([r for r in readings if r.metric is c.CARBON])
    return out


def test_default_intensity_is_the_iea_world_average():
    assert DEFAULT_GRID_INTENSITY == 475.0


def test_carbon_is_energy_times_intensity_by_source():
    carbon = Carbon()
    got = grams(
        carbon(
            [
                rapl("package-0", "0", 1000.0),
                rapl("core", "0:0", 600.0),  # part of the package: not counted again
                rapl("uncore", "0:1", 50.0),
                rapl("dram", "0:2", 200.0),
                rapl("psys", "1", 5000.0),  # contains the package
                rapl("package-1", "1", 400.0),
                gpu(0, 3.6e6),
                gpu(1, 1.8e6),
                integrated("powermetrics", "cpu", 10.0),
                integrated("powermetrics", "gpu", 5.0),
                reading(c.HWMON_ENERGY, 9999.0, chip="amd_energy", sensor="energy1", label=""),
                reading(c.POWER, 300.0, source="rapl", device="0", zone="package-0"),
            ]
        )
    )
    assert got == pytest.approx({"rapl": 1600.0 * G, "nvml": 5.4e6 * G, "powermetrics": 15 * G})
    assert got["nvml"] == pytest.approx(1.5 * 475.0)  # 1.5 kWh


def test_monotonic_when_inputs_vanish_or_restart():
    carbon = Carbon(grams_per_kwh=360.0)  # 1e-4 g per joule
    assert grams(carbon([integrated("estimated", "package", 100.0)])) == {"estimated": 0.01}
    # The collector fails for a while: its series is gone, carbon holds.
    assert grams(carbon([])) == {"estimated": 0.01}
    assert grams(carbon([integrated("estimated", "package", 150.0)])) == pytest.approx(
        {"estimated": 0.015}
    )
    # The counter restarted (a GPU driver reload): its new value is all new energy.
    assert grams(carbon([integrated("estimated", "package", 20.0)])) == pytest.approx(
        {"estimated": 0.017}
    )
    # The same readings scraped twice add nothing.
    assert grams(carbon([integrated("estimated", "package", 20.0)])) == pytest.approx(
        {"estimated": 0.017}
    )


def test_new_intensity_applies_from_now_on():
    carbon = Carbon(grams_per_kwh=360.0)
    carbon([gpu(0, 1000.0)])
    carbon.set_intensity(720.0)
    assert grams(carbon([gpu(0, 2000.0)])) == pytest.approx({"nvml": 0.1 + 0.2})
    with pytest.raises(ValueError):
        carbon.set_intensity(-1.0)
    with pytest.raises(ValueError):
        Carbon(float("nan"))


def test_apply_appends_each_derivation_in_order():
    base = [gpu(0, 3600.0)]
    seen = []

    def count(readings):
        seen.append(len(readings))
        return []

    out = apply_derivations(base, [Carbon(1000.0), count])
    assert out[0] is base[0] and grams(out) == pytest.approx({"nvml": 1.0})
    assert seen == [2]  # the later derivation sees the earlier one's readings


def test_concurrent_scrapes_count_each_joule_once():
    carbon = Carbon(grams_per_kwh=JOULES_PER_KWH)  # 1 g per joule
    joules = itertools.count(1)

    def sampler() -> list[Reading]:
        # Each look finds the counter a joule higher; the pause lets another scrape overtake.
        value = float(next(joules))
        time.sleep(0.0002)
        return [integrated("estimated", "package", value)]

    derived = Derived(sampler, [carbon])
    barrier = threading.Barrier(4)

    def scrape() -> None:
        barrier.wait()
        for _ in range(50):
            derived()

    threads = [threading.Thread(target=scrape) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # 200 scrapes saw 1..200 J. Taken and derived out of order, a lower value would pass for a
    # restart and be counted again (it does without Derived's lock).
    last = derived()
    assert grams(last) == {"estimated": 201.0}
    assert last[0].value == 201.0
