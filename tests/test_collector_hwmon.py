from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from harness import promtool_check_metrics
from helpers import FIXTURES, as_dict, copy_fixture

from ortel.collectors import hwmon
from ortel.collectors.base import CollectorOptions, NoDataError
from ortel.core import catalog
from ortel.core.exposition import render

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
        "temp_min": ("min", catalog.TEMPERATURE_MIN, 1e3),
        "energy": ("input", catalog.HWMON_ENERGY, 1e6),
    }
    seen = 0
    for hw, chip in CHIPS.items():
        for f in sorted((HWMON / hw).iterdir()):
            m = re.fullmatch(r"(temp|fan|energy)(\d+)_(input)|(temp)(\d+)_(crit|max|min)", f.name)
            if not m:
                continue
            kind, n, attr = m.groups()[:3] if m.group(1) else m.groups()[3:]
            key = kind if attr == "input" else f"{kind}_{attr}"
            _, metric, scale = checks[key]
            label_file = HWMON / hw / f"{kind}{n}_label"
            label = label_file.read_text().strip() if label_file.exists() else ""
            labels = (chip, f"{kind}{n}", label)
            assert got[(metric.name, labels)] == int(f.read_text()) / scale, f
            seen += 1
    assert seen == 36  # 11 inputs, 9 crit, 7 max, 3 min, 3 fans, 3 energy counters


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
        ("amd_energy", "energy1", "Ecore000"): 123456.789012,
        ("amd_energy", "energy2", "Ecore001"): 98765.432109,
        ("amd_energy", "energy3", "Esocket0"): 876543.210987,
    }
    # Both power readings are there under their own names as well.
    assert series(got, catalog.HWMON_POWER_AVERAGE)[("amdgpu", "power1", "PPT")] == 35.0
    assert series(got, catalog.HWMON_POWER)[("amdgpu", "power1", "PPT")] == 36.0
    assert series(got, catalog.FAN_SPEED_MAX)[("amdgpu", "fan1", "")] == 3300


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


def test_spec_factory_uses_options(tmp_path):
    assert hwmon.SPEC.name == "hwmon" and hwmon.SPEC.enabled_by_default
    c = hwmon.SPEC.factory(CollectorOptions(sysfs=SYSFS))
    assert isinstance(c, hwmon.HwmonCollector) and c.sysfs == SYSFS
    emitted = {r.metric for r in c.collect()}
    for host in HOST_CHIPS:
        emitted |= {r.metric for r in hwmon.HwmonCollector(HOSTS / host / "sysfs").collect()}
    emitted |= {r.metric for r in hwmon.HwmonCollector(every_attribute_tree(tmp_path)).collect()}
    assert emitted == set(hwmon.SPEC.metrics)


# --- real-machine layouts (tests/fixtures/hosts/README.md) ------------------------------------
HOSTS = FIXTURES / "hosts"
HOST_CHIPS = {  # host -> hwmonN -> chip label
    "epyc-server": {
        "hwmon0": "k10temp_0000:00:18.3",  # one k10temp per socket: told apart by device
        "hwmon1": "k10temp_0000:00:19.3",
        "hwmon2": "amd_energy",
        "hwmon3": "nvme",
        "hwmon4": "hwmon4",  # no name file, no device link: named after its directory
        "hwmon5": "power_meter",
    },
    "laptop": {
        "hwmon0": "acpitz",
        "hwmon1": "BAT0",
        "hwmon2": "ucsi_source_psy_USBC000:001",
        "hwmon3": "thinkpad",
        "hwmon4": "coretemp",
        "hwmon5": "iwlwifi_1",
        "hwmon6": "nvme",
    },
}
# The hwmon sysfs ABI (Documentation/hwmon/sysfs-interface): file -> (metric, divisor to base unit)
ABI = {
    ("temp", "input"): (catalog.TEMPERATURE, 1000),
    ("temp", "min"): (catalog.TEMPERATURE_MIN, 1000),
    ("temp", "max"): (catalog.TEMPERATURE_MAX, 1000),
    ("temp", "crit"): (catalog.TEMPERATURE_CRITICAL, 1000),
    ("in", "input"): (catalog.VOLTAGE, 1000),
    ("in", "min"): (catalog.VOLTAGE_MIN, 1000),
    ("in", "max"): (catalog.VOLTAGE_MAX, 1000),
    ("in", "crit"): (catalog.VOLTAGE_CRITICAL, 1000),
    ("curr", "input"): (catalog.CURRENT, 1000),
    ("curr", "min"): (catalog.CURRENT_MIN, 1000),
    ("curr", "max"): (catalog.CURRENT_MAX, 1000),
    ("curr", "crit"): (catalog.CURRENT_CRITICAL, 1000),
    ("power", "input"): (catalog.HWMON_POWER, 1e6),
    ("power", "average"): (catalog.HWMON_POWER_AVERAGE, 1e6),
    ("power", "max"): (catalog.HWMON_POWER_MAX, 1e6),
    ("power", "crit"): (catalog.HWMON_POWER_CRITICAL, 1e6),
    ("energy", "input"): (catalog.HWMON_ENERGY, 1e6),
    ("fan", "input"): (catalog.FAN_SPEED, 1),
    ("fan", "min"): (catalog.FAN_SPEED_MIN, 1),
    ("fan", "max"): (catalog.FAN_SPEED_MAX, 1),
}


def expected_from_files(host: str) -> dict:
    """Every sensor file of the host's tree, converted by the ABI table above."""
    want: dict = {}
    for hw, chip in HOST_CHIPS[host].items():
        d = HOSTS / host / "sysfs/class/hwmon" / hw
        for f in d.iterdir():
            m = re.fullmatch(r"([a-z]+)(\d+)_([a-z]+)", f.name)
            if not m or (m[1], m[3]) not in ABI:
                continue
            metric, divisor = ABI[(m[1], m[3])]
            label_file = d / f"{m[1]}{m[2]}_label"
            label = label_file.read_text().strip() if label_file.exists() else ""
            want[(metric.name, (chip, f"{m[1]}{m[2]}", label))] = int(f.read_text()) / divisor
            if m[1] == "power" and (m[3] == "average" or not (d / f"power{m[2]}_average").exists()):
                key = ("hwmon", chip, f"power{m[2]}")
                want[(catalog.POWER.name, key)] = int(f.read_text()) / divisor
    return want


@pytest.mark.parametrize("host", HOST_CHIPS)
def test_every_sensor_of_a_real_layout_equals_its_file(host):
    got = collect(HOSTS / host / "sysfs")
    assert got == expected_from_files(host)


@pytest.mark.parametrize("host", HOST_CHIPS)
def test_real_layout_exposition_is_promtool_clean(host):
    body = render(hwmon.HwmonCollector(HOSTS / host / "sysfs").collect()).decode()
    res = promtool_check_metrics(body)
    assert res.returncode == 0, res.stderr + res.stdout
    assert res.stderr.strip() == "", res.stderr


def test_epyc_server_sensors():
    got = collect(HOSTS / "epyc-server" / "sysfs")
    temps = series(got, catalog.TEMPERATURE)
    assert temps[("k10temp_0000:00:18.3", "temp1", "Tctl")] == 48.25
    assert temps[("k10temp_0000:00:19.3", "temp9", "Tccd7")] == 48.75
    assert temps[("hwmon4", "temp1", "")] == 30.0 and temps[("hwmon4", "temp2", "")] == 31.5
    assert temps[("nvme", "temp1", "Composite")] == 35.85
    assert series(got, catalog.TEMPERATURE_MIN)[("nvme", "temp1", "Composite")] == -273.15
    assert series(got, catalog.TEMPERATURE_MAX)[("nvme", "temp2", "Sensor 1")] == 65261.85
    assert len(temps) == 2 * 5 + 3 + 2  # 15: two k10temp (Tctl + 4 Tccd), nvme, hwmon4
    energy = series(got, catalog.HWMON_ENERGY)
    assert len(energy) == 34
    assert energy[("amd_energy", "energy33", "Esocket0")] == 912345.678901
    assert energy[("amd_energy", "energy1", "Ecore000")] == 1000.000123
    assert series(got, catalog.POWER) == {("hwmon", "power_meter", "power1"): 312.0}


def test_laptop_sensors():
    got = collect(HOSTS / "laptop" / "sysfs")
    assert series(got, catalog.VOLTAGE) == {
        ("BAT0", "in0", ""): 12.384,
        ("ucsi_source_psy_USBC000:001", "in0", ""): 5.0,
    }
    usbc = ("ucsi_source_psy_USBC000:001", "in0", "")
    assert series(got, catalog.VOLTAGE_MIN)[usbc] == 5.0
    assert series(got, catalog.VOLTAGE_MAX)[usbc] == 20.0
    curr = ("ucsi_source_psy_USBC000:001", "curr1", "")
    assert series(got, catalog.CURRENT) == {curr: 0.0}
    assert series(got, catalog.CURRENT_MAX) == {curr: 3.25}
    assert series(got, catalog.FAN_SPEED) == {("thinkpad", "fan1", ""): 2950}
    temps = series(got, catalog.TEMPERATURE)
    assert temps[("coretemp", "temp1", "Package id 0")] == 53.0
    assert temps[("coretemp", "temp5", "Core 3")] == 50.0
    assert temps[("acpitz", "temp1", "")] == 47.0
    assert series(got, catalog.TEMPERATURE_CRITICAL)[("acpitz", "temp1", "")] == 128.0


def every_attribute_tree(sysfs: Path) -> Path:
    """One chip with every file of the ABI table (an ina3221-like power monitor would have most)."""
    chip = sysfs / "class/hwmon/hwmon0"
    chip.mkdir(parents=True)
    (chip / "name").write_text("every\n")
    for i, (kind, attr) in enumerate(ABI):
        (chip / f"{kind}1_{attr}").write_text(f"{(i + 1) * 1234}\n")
    return sysfs


def test_every_attribute_of_the_abi(tmp_path):
    got = collect(every_attribute_tree(tmp_path))
    for i, ((kind, _), (metric, divisor)) in enumerate(ABI.items()):
        assert got[(metric.name, ("every", f"{kind}1", ""))] == (i + 1) * 1234 / divisor


def test_chips_sharing_name_and_device_fall_back_to_their_directory(tmp_path):
    for n in (0, 1):
        chip = tmp_path / f"devices/platform/dual.0/hwmon/hwmon{n}"
        chip.mkdir(parents=True)
        (chip / "name").write_text("dual\n")
        (chip / "temp1_input").write_text(f"{40000 + n * 1000}\n")
        os.symlink("../../../dual.0", chip / "device")
        (tmp_path / "class/hwmon").mkdir(parents=True, exist_ok=True)
        os.symlink(
            f"../../devices/platform/dual.0/hwmon/hwmon{n}", tmp_path / f"class/hwmon/hwmon{n}"
        )
    assert series(collect(tmp_path), catalog.TEMPERATURE) == {
        ("dual_hwmon0", "temp1", ""): 40.0,
        ("dual_hwmon1", "temp1", ""): 41.0,
    }
