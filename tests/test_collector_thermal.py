from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import FIXTURES, as_dict, copy_fixture

from ortel.collectors import thermal
from ortel.collectors.base import CollectorOptions, NoDataError
from ortel.core import catalog

SYSFS = FIXTURES / "sysfs"
CPU = "devices/system/cpu"


def series(got: dict, metric) -> dict[tuple[str, ...], float]:
    return {lab: v for (n, lab), v in got.items() if n == metric.name}


def bump(sysfs: Path, cpu: int, scope: str, by: int = 1) -> None:
    f = sysfs / CPU / f"cpu{cpu}" / "thermal_throttle" / f"{scope}_throttle_count"
    f.write_text(f"{int(f.read_text()) + by}\n")


def test_zones_and_cooling_devices():
    got = as_dict(thermal.ThermalCollector(SYSFS).collect())
    assert os.readlink(SYSFS / "class/thermal/thermal_zone1") == (
        "../../devices/virtual/thermal/thermal_zone1"
    )
    assert series(got, catalog.THERMAL_ZONE_TEMPERATURE) == {
        ("0", "acpitz"): 27.8,
        ("1", "x86_pkg_temp"): 52.0,
        ("2", "iwlwifi_1"): 41.0,
    }
    assert series(got, catalog.COOLING_DEVICE_STATE) == {
        ("0", "Processor"): 0,
        ("1", "Processor"): 0,
        ("2", "TCC Offset"): 5,
        ("3", "Fan"): 1,
    }
    assert series(got, catalog.COOLING_DEVICE_MAX_STATE)[("2", "TCC Offset")] == 63


def test_throttle_counts_per_core_and_once_per_package():
    got = as_dict(thermal.ThermalCollector(SYSFS).collect())
    assert series(got, catalog.CPU_THROTTLES) == {
        ("0", "core"): 3,
        ("1", "core"): 0,
        ("2", "core"): 12,
        ("3", "core"): 0,
        ("0", "package"): 17,  # all four CPUs are package 0 and show 17: reported once
    }
    # Whether throttling happens needs two samples.
    assert series(got, catalog.THERMAL_THROTTLING) == {}


def test_throttling_is_1_only_while_a_count_rises(tmp_path):
    sysfs = copy_fixture("sysfs", tmp_path)
    c = thermal.ThermalCollector(sysfs)
    list(c.collect())
    assert series(as_dict(c.collect()), catalog.THERMAL_THROTTLING) == {
        ("core",): 0,
        ("package",): 0,
    }
    bump(sysfs, 3, "core")
    got = as_dict(c.collect())
    assert series(got, catalog.THERMAL_THROTTLING) == {("core",): 1, ("package",): 0}
    assert series(got, catalog.CPU_THROTTLES)[("3", "core")] == 1
    for n in range(4):
        bump(sysfs, n, "package", 2)
    got = as_dict(c.collect())
    assert series(got, catalog.THERMAL_THROTTLING) == {("core",): 0, ("package",): 1}
    assert series(got, catalog.CPU_THROTTLES)[("0", "package")] == 19


def test_package_counts_per_cpu_without_topology(tmp_path):
    sysfs = copy_fixture("sysfs", tmp_path)
    for n in range(4):
        (sysfs / CPU / f"cpu{n}/topology/physical_package_id").unlink()
    got = as_dict(thermal.ThermalCollector(sysfs).collect())
    package = {k: v for k, v in series(got, catalog.CPU_THROTTLES).items() if k[1] == "package"}
    assert package == {(str(n), "package"): 17 for n in range(4)}


def test_cpufreq_limits_in_hertz():
    got = as_dict(thermal.ThermalCollector(SYSFS).collect())
    assert series(got, catalog.CPU_FREQUENCY_MIN) == {(str(n),): 800e6 for n in range(4)}
    assert series(got, catalog.CPU_FREQUENCY_MAX) == {(str(n),): 3.4e9 for n in range(4)}


def test_unreadable_values_are_skipped(tmp_path):
    sysfs = copy_fixture("sysfs", tmp_path)
    zone = sysfs / "class/thermal/thermal_zone2"
    (zone / "temp").unlink()
    (zone / "temp").mkdir()  # reading fails, like iwlwifi's ENODATA while the radio is off
    (sysfs / "class/thermal/cooling_device1/cur_state").write_text("-1\n")  # intel_powerclamp idle
    got = as_dict(thermal.ThermalCollector(sysfs).collect())
    assert ("2", "iwlwifi_1") not in series(got, catalog.THERMAL_ZONE_TEMPERATURE)
    assert ("1", "Processor") not in series(got, catalog.COOLING_DEVICE_STATE)
    assert series(got, catalog.COOLING_DEVICE_MAX_STATE)[("1", "Processor")] == 3


def test_nothing_thermal_is_no_data(tmp_path):
    (tmp_path / CPU / "cpu0").mkdir(parents=True)  # a VM: CPUs, but no cpufreq or throttle files
    with pytest.raises(NoDataError, match="no thermal zones"):
        list(thermal.ThermalCollector(tmp_path).collect())


def test_spec_factory_uses_options():
    assert thermal.SPEC.name == "thermal" and thermal.SPEC.enabled_by_default
    c = thermal.SPEC.factory(CollectorOptions(sysfs=SYSFS))
    assert isinstance(c, thermal.ThermalCollector) and c.sysfs == SYSFS
    list(c.collect())
    assert {r.metric for r in c.collect()} == set(thermal.SPEC.metrics)
