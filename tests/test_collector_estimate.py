from __future__ import annotations

from pathlib import Path

import pytest
from helpers import FIXTURES, as_dict, copy_fixture

from ortel.collectors import estimate
from ortel.collectors.base import CollectorOptions, NoDataError
from ortel.collectors.registry import BY_NAME
from ortel.core import catalog

PROCFS, SYSFS = FIXTURES / "procfs", FIXTURES / "sysfs"
LABELS = ("estimated", "cpu", "package")
POWER = (catalog.POWER.name, LABELS)
ENERGY = (catalog.ENERGY.name, LABELS)


class Clock:
    def __init__(self) -> None:
        self.t = 50.0

    def __call__(self) -> float:
        return self.t


def add_ticks(procfs: Path, user: int, idle: int) -> None:
    """Add ticks to the aggregate cpu line of <procfs>/stat (user and idle columns)."""
    lines = (procfs / "stat").read_text().splitlines()
    key, *f = lines[0].split()
    assert key == "cpu"
    f[0], f[3] = str(int(f[0]) + user), str(int(f[3]) + idle)
    lines[0] = " ".join([key, *f])
    (procfs / "stat").write_text("\n".join(lines) + "\n")


def vm(tmp_path: Path, **kwargs) -> tuple[estimate.EstimateCollector, Path, Clock]:
    """A machine without RAPL (an empty sysfs) and a writable copy of the fixture procfs."""
    procfs = copy_fixture("procfs", tmp_path)
    clock = Clock()
    (tmp_path / "sys").mkdir()
    return (
        estimate.EstimateCollector(procfs, tmp_path / "sys", clock=clock, **kwargs),
        procfs,
        clock,
    )


def test_power_from_utilisation_and_the_default_profile(tmp_path):
    c, procfs, clock = vm(tmp_path)
    first = as_dict(c.collect())
    assert first == {ENERGY: 0.0}  # no interval yet: no power, nothing integrated
    add_ticks(procfs, user=300, idle=100)  # 75 % busy over the interval
    clock.t += 2.0
    got = as_dict(c.collect())
    # 4 logical CPUs x (0.74 + (3.5 - 0.74) x 0.75) W
    assert got[POWER] == pytest.approx(4 * (0.74 + 2.76 * 0.75))
    assert got[ENERGY] == pytest.approx(2.0 * 4 * (0.74 + 2.76 * 0.75))
    add_ticks(procfs, user=0, idle=400)  # idle
    clock.t += 1.0
    got2 = as_dict(c.collect())
    assert got2[POWER] == pytest.approx(4 * 0.74)
    assert got2[ENERGY] == pytest.approx(got[ENERGY] + 4 * 0.74)


def test_custom_profile(tmp_path):
    c, procfs, clock = vm(tmp_path, idle_watts=10.0, max_watts=30.0)
    list(c.collect())
    add_ticks(procfs, user=100, idle=100)
    clock.t += 1.0
    assert as_dict(c.collect())[POWER] == pytest.approx(4 * 20.0)


def test_no_elapsed_ticks_means_no_power_and_no_energy_added(tmp_path):
    c, _procfs, clock = vm(tmp_path)
    list(c.collect())
    clock.t += 1.0
    assert as_dict(c.collect()) == {ENERGY: 0.0}


def test_no_estimate_where_rapl_measures(tmp_path):
    c = estimate.EstimateCollector(PROCFS, SYSFS)
    with pytest.raises(NoDataError, match="RAPL measures CPU power here"):
        list(c.collect())


def test_estimate_where_rapl_exists_but_cannot_be_read(tmp_path):
    sysfs = copy_fixture("sysfs", tmp_path)
    for f in (sysfs / "devices/virtual/powercap").glob("**/energy_uj"):
        f.unlink()
        f.mkdir()  # every read fails, as EACCES does for a non-root daemon
    got = as_dict(estimate.EstimateCollector(PROCFS, sysfs).collect())
    assert got == {ENERGY: 0.0}


def test_missing_proc_stat_is_no_data(tmp_path):
    with pytest.raises(NoDataError, match="stat"):
        list(estimate.EstimateCollector(tmp_path, tmp_path).collect())


def test_profile_must_make_sense():
    with pytest.raises(ValueError):
        estimate.EstimateCollector(PROCFS, SYSFS, idle_watts=5.0, max_watts=1.0)
    with pytest.raises(ValueError):
        estimate.EstimateCollector(PROCFS, SYSFS, idle_watts=-1.0)


def test_spec_factory_uses_options():
    assert estimate.SPEC.name == "estimate" and estimate.SPEC.enabled_by_default
    defaults = CollectorOptions()
    assert (defaults.cpu_idle_watts, defaults.cpu_max_watts) == (
        estimate.DEFAULT_IDLE_WATTS,
        estimate.DEFAULT_MAX_WATTS,
    )
    c = estimate.SPEC.factory(
        CollectorOptions(procfs=PROCFS, sysfs=SYSFS, cpu_idle_watts=2.0, cpu_max_watts=9.0)
    )
    assert isinstance(c, estimate.EstimateCollector)
    assert (c.procfs, c.sysfs, c.idle_watts, c.max_watts) == (PROCFS, SYSFS, 2.0, 9.0)
    assert estimate.SPEC.estimated and not any(
        s.estimated for s in BY_NAME.values() if s.name != "estimate"
    )


def test_emits_only_what_its_spec_declares(tmp_path):
    c, procfs, clock = vm(tmp_path)
    list(c.collect())
    add_ticks(procfs, user=1, idle=1)
    clock.t += 1
    assert {r.metric for r in c.collect()} == set(estimate.SPEC.metrics)
