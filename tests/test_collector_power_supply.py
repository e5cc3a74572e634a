from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import pytest
from harness import promtool_check_metrics
from helpers import FIXTURES, as_dict

from ortel.collectors import hwmon, power_supply
from ortel.collectors.base import CollectorOptions, NoDataError
from ortel.core import catalog
from ortel.core.exposition import render

LAPTOP = FIXTURES / "hosts" / "laptop" / "sysfs"
SUPPLIES = LAPTOP / "class" / "power_supply"
# Documentation/ABI/testing/sysfs-class-power: file -> (metric, factor to the base unit), written
# out here rather than taken from the collector so the test checks its conversions.
ABI = {
    "online": (catalog.POWER_SUPPLY_ONLINE, Fraction(1)),
    "capacity": (catalog.POWER_SUPPLY_CAPACITY, Fraction(1, 100)),  # % -> ratio
    "power_now": (catalog.POWER_SUPPLY_POWER, Fraction(1, 1_000_000)),  # µW -> W
    "energy_now": (catalog.POWER_SUPPLY_ENERGY, Fraction(3600, 1_000_000)),  # µWh -> J
    "energy_full": (catalog.POWER_SUPPLY_ENERGY_FULL, Fraction(3600, 1_000_000)),
    "energy_full_design": (catalog.POWER_SUPPLY_ENERGY_FULL_DESIGN, Fraction(3600, 1_000_000)),
    "voltage_now": (catalog.POWER_SUPPLY_VOLTAGE, Fraction(1, 1_000_000)),  # µV -> V
    "current_now": (catalog.POWER_SUPPLY_CURRENT, Fraction(1, 1_000_000)),  # µA -> A
}
KERNEL_STATUSES = ("Unknown", "Charging", "Discharging", "Not charging", "Full")


def collect(sysfs: Path = LAPTOP) -> dict:
    return as_dict(power_supply.PowerSupplyCollector(sysfs).collect())


def series(got: dict, metric) -> dict[tuple[str, ...], float]:
    return {lab: v for (n, lab), v in got.items() if n == metric.name}


def expected_from_files(sysfs: Path) -> dict:
    """Every file of every supply, converted by the ABI table; type and status as labels."""
    want: dict = {}
    for d in (sysfs / "class/power_supply").iterdir():
        if (d / "type").exists():
            key = (d.name, (d / "type").read_text().strip())
            want[(catalog.POWER_SUPPLY_INFO.name, key)] = 1
        for fname, (metric, factor) in ABI.items():
            if (d / fname).exists():
                value = float(int((d / fname).read_text()) * factor)
                want[(metric.name, (d.name,))] = value
        if (d / "status").exists():
            now = (d / "status").read_text().strip()
            for s in dict.fromkeys((*KERNEL_STATUSES, now)):
                label = s.lower().replace(" ", "_")
                want[(catalog.POWER_SUPPLY_STATUS.name, (d.name, label))] = int(s == now)
    return want


def test_fixture_supplies_are_symlinks_into_devices():
    assert {p.name for p in SUPPLIES.iterdir()} == {"AC", "BAT0", "ucsi-source-psy-USBC000:001"}
    assert os.readlink(SUPPLIES / "BAT0").endswith("/PNP0C0A:00/power_supply/BAT0")


def test_every_file_of_the_laptop_equals_its_metric():
    got = collect()
    assert got == expected_from_files(LAPTOP)
    assert len(got) == 18  # 3 info, 2 online, BAT0: 6 values + 5 statuses, USB-C: volts, amps


def test_laptop_values_in_base_units():
    got = collect()
    bat = ("BAT0",)
    assert series(got, catalog.POWER_SUPPLY_POWER) == {bat: 9.81}  # 9810000 µW
    assert series(got, catalog.POWER_SUPPLY_ENERGY) == {bat: 148428.0}  # 41.23 Wh
    assert series(got, catalog.POWER_SUPPLY_ENERGY_FULL) == {bat: 183456.0}  # 50.96 Wh
    assert series(got, catalog.POWER_SUPPLY_ENERGY_FULL_DESIGN) == {bat: 205200.0}  # 57 Wh
    assert series(got, catalog.POWER_SUPPLY_CAPACITY) == {bat: 0.81}
    usbc = ("ucsi-source-psy-USBC000:001",)
    assert series(got, catalog.POWER_SUPPLY_VOLTAGE) == {bat: 12.384, usbc: 5.0}
    assert series(got, catalog.POWER_SUPPLY_CURRENT) == {usbc: 0.0}
    assert series(got, catalog.POWER_SUPPLY_ONLINE) == {("AC",): 0, usbc: 0}
    assert series(got, catalog.POWER_SUPPLY_INFO) == {
        ("AC", "Mains"): 1,
        ("BAT0", "Battery"): 1,
        (usbc[0], "USB"): 1,
    }
    status = series(got, catalog.POWER_SUPPLY_STATUS)
    assert {k[1] for k, v in status.items() if v == 1} == {"discharging"}
    assert set(status) == {("BAT0", s) for s in power_supply.STATUSES}


def test_agrees_with_the_power_supply_hwmon_bridge():
    # power_supply registers an hwmon chip per supply whose in0/curr1 mirror voltage_now and
    # current_now: both collectors must read the same volts and amperes.
    volts = series(as_dict(hwmon.HwmonCollector(LAPTOP).collect()), catalog.VOLTAGE)
    psu = series(collect(), catalog.POWER_SUPPLY_VOLTAGE)
    assert psu[("BAT0",)] == volts[("BAT0", "in0", "")]
    usbc = "ucsi-source-psy-USBC000:001"
    assert psu[(usbc,)] == volts[(usbc.replace("-", "_"), "in0", "")]


def test_exposition_is_promtool_clean():
    body = render(power_supply.PowerSupplyCollector(LAPTOP).collect()).decode()
    assert "# TYPE ortel_power_supply_energy_joules gauge" in body  # stored energy: no _total
    res = promtool_check_metrics(body)
    assert res.returncode == 0, res.stderr + res.stdout
    assert res.stderr.strip() == "", res.stderr


def charge_battery(sysfs: Path, files: dict[str, str]) -> Path:
    """A battery as drivers that count charge (µAh) lay it out: current_now, no power_now."""
    dev = sysfs / "devices/platform/test-battery/power_supply/BAT1"
    dev.mkdir(parents=True)
    for name, value in files.items():
        (dev / name).write_text(value + "\n")
    (sysfs / "class/power_supply").mkdir(parents=True, exist_ok=True)
    os.symlink(
        "../../devices/platform/test-battery/power_supply/BAT1", sysfs / "class/power_supply/BAT1"
    )
    return dev


def test_every_file_of_the_abi_and_signed_current(tmp_path):
    files = {f: str((i + 1) * 1234567) for i, f in enumerate(ABI)}
    files["current_now"] = "-1530000"  # drivers that sign it report discharge as negative
    files |= {"type": "Battery", "status": "Not charging", "charge_now": "3000000"}
    charge_battery(tmp_path, files)
    got = collect(tmp_path)
    assert got == expected_from_files(tmp_path)
    assert series(got, catalog.POWER_SUPPLY_CURRENT) == {("BAT1",): -1.53}
    status = series(got, catalog.POWER_SUPPLY_STATUS)
    assert status[("BAT1", "not_charging")] == 1 and sum(status.values()) == 1
    # The float nearest the exact joules (µWh x 36 / 10000), whatever x3.6e-3 would round to.
    exact = Fraction(int(files["energy_now"]) * 36, 10_000)
    assert got[(catalog.POWER_SUPPLY_ENERGY.name, ("BAT1",))] == float(exact)


def test_a_status_outside_the_kernel_list_still_gets_its_series(tmp_path):
    charge_battery(tmp_path, {"type": "Battery", "status": "Pending Charge"})
    status = series(collect(tmp_path), catalog.POWER_SUPPLY_STATUS)
    assert status[("BAT1", "pending_charge")] == 1
    assert len(status) == len(power_supply.STATUSES) + 1 and sum(status.values()) == 1


def test_unreadable_or_malformed_files_are_skipped(tmp_path):
    dev = charge_battery(tmp_path, {"type": "Battery", "capacity": "55", "voltage_now": "n/a"})
    (dev / "power_now").mkdir()  # reading fails (EISDIR), as ENODATA does while a battery is out
    os.symlink("gone", dev / "energy_now")  # ENOENT
    got = collect(tmp_path)
    assert got == {
        (catalog.POWER_SUPPLY_INFO.name, ("BAT1", "Battery")): 1,
        (catalog.POWER_SUPPLY_CAPACITY.name, ("BAT1",)): 0.55,
    }


@pytest.mark.parametrize(
    "sysfs",
    [FIXTURES / "sysfs", FIXTURES / "hosts" / "epyc-server" / "sysfs"],
    ids=lambda p: p.parent.name,
)
def test_machines_without_power_supplies_are_no_data(sysfs):
    assert not (sysfs / "class/power_supply").exists()
    with pytest.raises(NoDataError, match="no power supplies"):
        list(power_supply.PowerSupplyCollector(sysfs).collect())


def test_supplies_with_nothing_readable_are_no_data(tmp_path):
    (tmp_path / "class/power_supply/hidpp_battery_0").mkdir(parents=True)
    with pytest.raises(NoDataError, match="reports anything"):
        list(power_supply.PowerSupplyCollector(tmp_path).collect())


def test_spec_factory_uses_options(tmp_path):
    spec = power_supply.SPEC
    assert spec.name == "power_supply" and spec.enabled_by_default and not spec.estimated
    c = spec.factory(CollectorOptions(sysfs=LAPTOP))
    assert isinstance(c, power_supply.PowerSupplyCollector) and c.sysfs == LAPTOP
    charge_battery(tmp_path, {f: "1" for f in ABI} | {"type": "Battery", "status": "Full"})
    emitted = {r.metric for r in c.collect()} | {
        r.metric for r in spec.factory(CollectorOptions(sysfs=tmp_path)).collect()
    }
    assert emitted == set(spec.metrics)
