"""Power and energy during a run, from the daemon's collectors used in-process."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest
from helpers import FIXTURES

from ortel.collectors import power as en
from ortel.core import catalog as c
from ortel.core.readings import reading


def test_rapl_psys_only_where_there_is_no_package_zone():
    rs = [
        reading(c.RAPL_ENERGY, 100.0, zone="package-0", index="0"),
        reading(c.RAPL_ENERGY, 40.0, zone="core", index="0:0"),
        reading(c.RAPL_ENERGY, 10.0, zone="dram", index="0:2"),
        reading(c.RAPL_ENERGY, 300.0, zone="psys", index="1"),
    ]
    assert en.parts_from_readings(rs) == {en.Part("cpu (rapl: dram, package-0)", False): 110.0}
    assert en.parts_from_readings(rs[3:]) == {en.Part("cpu (rapl: psys)", False): 300.0}


def test_rapl_packages_plus_dram_never_core():
    rs = [
        reading(c.RAPL_ENERGY, 100.0, zone="package-0", index="0"),
        reading(c.RAPL_ENERGY, 50.0, zone="package-1", index="1"),
        reading(c.RAPL_ENERGY, 40.0, zone="core", index="0:0"),
        reading(c.RAPL_ENERGY, 10.0, zone="dram", index="0:2"),
    ]
    (part, joules), = en.parts_from_readings(rs).items()  # fmt: skip
    assert joules == 160.0 and not part.estimated
    assert part.name == "cpu (rapl: dram, package-0, package-1)"


def test_estimated_and_gpu_parts_are_labelled():
    rs = [
        reading(c.ENERGY, 12.0, source="estimated", device="cpu", zone="package"),
        reading(c.POWER, 7.0, source="estimated", device="cpu", zone="package"),
        reading(c.GPU_ENERGY, 5.0, gpu="0", uuid="GPU-a", name="H100"),
        reading(c.GPU_ENERGY, 6.0, gpu="1", uuid="GPU-b", name="H100"),
    ]
    got = en.parts_from_readings(rs)
    assert got == {
        en.Part("cpu (estimated: package)", True): 12.0,
        en.Part("gpu (nvml: 2 GPUs)", False): 11.0,
    }
    assert en.source_label(p.estimated for p in got) == "estimated+measured"


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_energy_between_two_times_is_interpolated():
    clock = FakeClock()
    part = en.Part("cpu (rapl: psys)", False)
    joules = [0.0]
    mon = en.PowerMonitor(lambda: {part: joules[0]}, interval=1.0, clock=clock)
    for step_w in (10, 10, 30, 30):  # watts during each one-second interval
        mon._take()
        clock.t += 1
        joules[0] += step_w
    mon._take()
    e = mon.energy(1000.5, 1003.5)  # half of 10 W, 10 W, 30 W, half of 30 W
    assert e.joules == pytest.approx(5 + 10 + 30 + 15)
    assert e.average_watts == pytest.approx(60 / 3)
    assert e.peak_watts == 30 and e.source == "measured"
    assert e.parts == {"cpu (rapl: psys)": pytest.approx(60)}
    assert [w for _, w in mon.timeline()] == [10, 10, 30, 30]
    assert mon.energy(999.0, 1001.0) is None  # before the first sample: unknown, not zero
    assert mon.energy(1002.0, 1002.0) is None


def test_a_failing_sample_loses_power_data_not_the_run():
    calls = [0]

    def sample():
        calls[0] += 1
        raise OSError("driver went away")

    mon = en.PowerMonitor(sample, interval=0.01).start()
    time.sleep(0.05)
    mon.stop()
    assert calls[0] >= 2 and mon.timeline() == [] and mon.source() == "none"


class Hardware:
    """Advances energy_uj files of a copied powercap tree like the CPU would."""

    def __init__(self, zones: dict[Path, float]) -> None:
        self.zones = zones  # energy_uj path -> watts
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(0.005):
            now = time.monotonic()
            for path, watts in self.zones.items():
                uj = int(path.read_text()) + int(watts * (now - last) * 1e6)
                tmp = path.with_name(".energy_uj")
                tmp.write_text(f"{uj}\n")
                tmp.replace(path)
            last = now

    def __enter__(self) -> Hardware:
        self._t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join()


def rapl_tree(tmp_path: Path, psys: bool) -> Path:
    sysfs = tmp_path / "sysfs"
    shutil.copytree(FIXTURES / "sysfs", sysfs, symlinks=True)
    if not psys:
        link = sysfs / "class" / "powercap" / "intel-rapl:1"
        shutil.rmtree(link.resolve())
        link.unlink()
    return sysfs


def zone(sysfs: Path, name: str) -> Path:
    return sysfs / "class" / "powercap" / name / "energy_uj"


@pytest.mark.parametrize("psys", [True, False])
def test_measured_energy_through_the_real_rapl_collector(tmp_path: Path, psys: bool):
    sysfs = rapl_tree(tmp_path, psys)
    watts = {
        zone(sysfs, "intel-rapl:0"): 30.0,  # package-0
        zone(sysfs, "intel-rapl:0:0"): 20.0,  # core: inside the package, never added
        zone(sysfs, "intel-rapl:0:2"): 4.0,  # dram
    }
    if psys:
        watts[zone(sysfs, "intel-rapl:1")] = 50.0
    sample, why = en.collector_sampler(sysfs, FIXTURES / "procfs", interval=0.05)
    assert sample is not None, why
    with Hardware(watts):
        mon = en.PowerMonitor(sample, interval=0.05).start()
        time.sleep(0.1)
        t0 = time.time()
        time.sleep(0.5)
        t1 = time.time()
        time.sleep(0.1)
        mon.stop()
    e = mon.energy(t0, t1)
    expect = 34.0  # package + DRAM, whether or not a psys zone surrounds them
    assert e.source == "measured"
    assert e.average_watts == pytest.approx(expect, rel=0.25)
    assert e.joules == pytest.approx(expect * (t1 - t0), rel=0.25)
    assert list(e.parts) == ["cpu (rapl: dram, package-0)"]


def test_estimate_where_nothing_measures(tmp_path: Path):
    empty = tmp_path / "sysfs"
    empty.mkdir()
    sample, why = en.collector_sampler(empty, Path("/proc"), interval=0.05)
    assert sample is not None
    assert any(w.startswith("rapl:") for w in why)
    mon = en.PowerMonitor(sample, interval=0.05).start()
    t0 = time.time()
    time.sleep(0.4)
    t1 = time.time()
    mon.stop()
    e = mon.energy(t0 + 0.1, t1 - 0.05)
    assert e.source == "estimated"
    import os

    n = os.cpu_count() or 1
    assert 0.74 * n * 0.9 <= e.average_watts <= 3.5 * n * 1.1


def test_no_source_at_all_is_no_power_data(tmp_path: Path):
    sample, why = en.collector_sampler(tmp_path / "nosys", tmp_path / "noproc", interval=0.05)
    assert sample is None
    assert why and all(":" in w for w in why)
