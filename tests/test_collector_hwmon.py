from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from helpers import FIXTURES, as_dict, copy_fixture

from ortel.collectors import hwmon
from ortel.collectors.base import CollectorOptions, NoDataError
from ortel.core import catalog

SYSFS = FIXTURES / "sysfs"
HWMON = SYSFS / "class" / "hwmon"
CHIPS = {  # hwmonN -> chip label
    "hwmon0": "coretemp",
    "hwmon1": "acpitz",
    "hwmon2": "nvme_nvme0",  # two chips named nvme: each gets its device appended
    "hwmon3": "nvme_nvme1",
    "hwmon4": "nct6798",
    "hwmon5": "power_meter",
    "hwmon6": "amd_energy",
    "hwmon7": "amdgpu",
}


def collect(sysfs: Path = SYSFS) -> dict:
    return as_dict(hwmon.HwmonCollector(sysfs).collect())


def series(got: dict, metric) -> dict[tuple[str, ...], float]:
    return {lab: v for (n, lab), v in got.items() if n == metric.name}


def test_fixture_chips_are_symlinks_into_devices():
    assert os.readlink(HWMON / "hwmon0") == "../../devices/platform/coretemp.0/hwmon/hwmon0"
    assert (HWMON / "hwmon0" / "device").resolve().name == "coretemp.0"


def test_temperatures_with_their_labels():
    temps = series(collect(), catalog.TEMPERATURE)
    assert temps[("coretemp", "temp1", "Package id 0")] == 52.0
    assert temps[("coretemp", "temp2", "Core 0")] == 50.0
    assert temps[("nvme_nvme0", "temp1", "Composite")] == 38.85
    assert temps[("nvme_nvme1", "temp1", "Composite")] == 41.85
    # A chip without labels: the label is empty, the reading is still there.
    assert temps[("acpitz", "temp1", "")] == 27.8


def test_every_sensor_file_is_exported_after_unit_conversion():
    got = collect()
    checks = {
        "temp": ("input", catalog.TEMPERATURE, 1e3),
        "temp_crit": ("crit", catalog.TEMPERATURE_CRITICAL, 1e3),
        "temp_max": ("max", catalog.TEMPERATURE_MAX, 1e3),
        "fan": ("input", catalog.FAN_SPEED, 1),
        "energy": ("input", catalog.HWMON_ENERGY, 1e6),
    }
    seen = 0
    for hw, chip in CHIPS.items():
        for f in sorted((HWMON / hw).iterdir()):
            m = re.fullmatch(r"(temp|fan|energy)(\d+)_(input)|(temp)(\d+)_(crit|max)", f.name)
            if not m:
                continue
            kind, n, attr = m.groups()[:3] if m.group(1) else m.groups()[3:]
            key = kind if attr == "input" else f"{kind}_{attr}"
            _, metric, scale = checks[key]
            label_file = HWMON / hw / f"{kind}{n}_label"
            label = label_file.read_text().strip() if label_file.exists() else ""
            labels = (chip, f"{kind}{n}") if kind == "energy" else (chip, f"{kind}{n}", label)
            assert got[(metric.name, labels)] == int(f.read_text()) / scale, f
            seen += 1
    assert seen == 33  # 11 inputs, 9 crit, 7 max, 3 fans, 3 energy counters


def test_thresholds_and_fans():
    got = collect()
    assert series(got, catalog.TEMPERATURE_CRITICAL)[("acpitz", "temp1", "")] == 119.0
    assert series(got, catalog.TEMPERATURE_MAX)[("coretemp", "temp1", "Package id 0")] == 84.0
    fans = series(got, catalog.FAN_SPEED)
    assert fans == {
        ("nct6798", "fan1", ""): 1045,
        ("nct6798", "fan2", ""): 0,  # a stopped fan is 0 rpm, a real value
        ("amdgpu", "fan1", ""): 0,
    }


def test_power_in_watts_average_preferred_and_energy_in_joules():
    got = collect()
    assert series(got, catalog.POWER) == {
        ("hwmon", "power_meter", "power1"): 187.0,
        ("hwmon", "amdgpu", "power1"): 35.0,  # power1_average (35 W), not power1_input (36 W)
    }
    assert series(got, catalog.HWMON_ENERGY) == {
        ("amd_energy", "energy1"): 123456.789012,
        ("amd_energy", "energy2"): 98765.432109,
        ("amd_energy", "energy3"): 876543.210987,
    }


def test_power_input_when_there_is_no_average(tmp_path):
    sysfs = copy_fixture("sysfs", tmp_path)
    (sysfs / "class/hwmon/hwmon7/power1_average").unlink()
    assert series(collect(sysfs), catalog.POWER)[("hwmon", "amdgpu", "power1")] == 36.0


def test_unreadable_sensor_files_are_skipped(tmp_path):
    sysfs = copy_fixture("sysfs", tmp_path)
    chip = sysfs / "class/hwmon/hwmon0"
    (chip / "temp2_input").unlink()
    (
        chip / "temp2_input"
    ).mkdir()  # reading it fails (EISDIR), as EIO/ENODATA do on sleeping devices
    (chip / "temp3_input").unlink()
    os.symlink("gone", chip / "temp3_input")  # ENOENT: the device went away mid-read
    (chip / "temp1_label").write_bytes(b"Package \xff\n")  # not UTF-8
    got = collect(sysfs)
    temps = series(got, catalog.TEMPERATURE)
    assert ("coretemp", "temp2", "Core 0") not in temps
    assert not any(k[:2] == ("coretemp", "temp3") for k in temps)
    assert series(got, catalog.TEMPERATURE_CRITICAL)[("coretemp", "temp2", "Core 0")] == 100.0
    assert temps[("nvme_nvme0", "temp1", "Composite")] == 38.85
    assert temps[("coretemp", "temp1", "Package \ufffd")] == 52.0


def test_attributes_under_device_as_old_drivers_lay_them_out(tmp_path):
    dev = tmp_path / "devices/platform/it87.656"
    (dev / "hwmon/hwmon0").mkdir(parents=True)
    for name, value in {"name": "it8728", "temp1_input": "41000", "fan1_input": "900"}.items():
        (dev / name).write_text(value + "\n")
    os.symlink("../../../it87.656", dev / "hwmon/hwmon0/device")
    (tmp_path / "class/hwmon").mkdir(parents=True)
    os.symlink("../../devices/platform/it87.656/hwmon/hwmon0", tmp_path / "class/hwmon/hwmon0")
    got = collect(tmp_path)
    assert series(got, catalog.TEMPERATURE) == {("it8728", "temp1", ""): 41.0}
    assert series(got, catalog.FAN_SPEED) == {("it8728", "fan1", ""): 900}


def test_no_hwmon_is_no_data(tmp_path):
    with pytest.raises(NoDataError, match="hwmon"):
        list(hwmon.HwmonCollector(tmp_path).collect())
    (tmp_path / "class/hwmon").mkdir(parents=True)
    with pytest.raises(NoDataError, match="no hwmon chips"):
        list(hwmon.HwmonCollector(tmp_path).collect())


def test_spec_factory_uses_options():
    assert hwmon.SPEC.name == "hwmon" and hwmon.SPEC.enabled_by_default
    c = hwmon.SPEC.factory(CollectorOptions(sysfs=SYSFS))
    assert isinstance(c, hwmon.HwmonCollector) and c.sysfs == SYSFS
    assert {r.metric for r in c.collect()} == set(hwmon.SPEC.metrics)
