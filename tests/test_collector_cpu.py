from __future__ import annotations

from pathlib import Path

import pytest
from helpers import FIXTURES, as_dict, copy_fixture

from ortel.collectors import cpu
from ortel.collectors.base import CollectorOptions, NoDataError
from ortel.core import catalog

PROCFS, SYSFS = FIXTURES / "procfs", FIXTURES / "sysfs"
MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
# The fixture's aggregate cpu line, in MODES order.
TOTAL = (47350, 560, 16100, 1003000, 3550, 0, 585, 170)


def collector(procfs: Path = PROCFS, sysfs: Path = SYSFS, per_core: bool = False):
    return cpu.CpuCollector(procfs, sysfs, per_core=per_core, clk_tck=100)


def names(d: dict) -> set[str]:
    return {name for name, _ in d}


def advance(procfs: Path, deltas: dict[str, tuple[int, ...]]) -> None:
    """Rewrite <procfs>/stat adding ``deltas[line name]`` (per mode) to its cpu lines."""
    lines = []
    for line in (procfs / "stat").read_text().splitlines():
        key, *fields = line.split()
        if key in deltas:
            pad = (0,) * (len(fields) - len(deltas[key]))
            ticks = [int(f) + d for f, d in zip(fields, deltas[key] + pad, strict=True)]
            line = " ".join([key, *map(str, ticks)])
        lines.append(line)
    (procfs / "stat").write_text("\n".join(lines) + "\n")


def test_first_collect_counters_and_no_utilisation():
    got = as_dict(collector().collect())
    for mode, ticks in zip(MODES, TOTAL, strict=True):
        assert got[(catalog.CPU_SECONDS.name, (mode,))] == ticks / 100
    assert got[(catalog.CPU_SECONDS.name, ("user",))] == 473.5
    assert got[(catalog.CPU_COUNT.name, ())] == 4
    assert got[(catalog.CONTEXT_SWITCHES.name, ())] == 23456789
    assert got[(catalog.INTERRUPTS.name, ())] == 9876543
    # A rate needs two samples.
    assert catalog.CPU_UTILIZATION.name not in names(got)
    assert catalog.CPU_CORE_UTILIZATION.name not in names(got)


def test_frequency_khz_to_hz_per_cpu():
    got = as_dict(collector().collect())
    freqs = {labels: v for (name, labels), v in got.items() if name == catalog.CPU_FREQUENCY.name}
    # cpufreq/ and cpuidle/ beside cpu0..cpu3 are not CPUs.
    assert freqs == {("0",): 2.4e9, ("1",): 3.1e9, ("2",): 0.8e9, ("3",): 2_999_998_000.0}


def test_no_cpufreq_means_no_frequency_but_everything_else(tmp_path):
    got = as_dict(collector(sysfs=tmp_path / "no-such-sysfs").collect())
    assert catalog.CPU_FREQUENCY.name not in names(got)
    assert got[(catalog.CPU_COUNT.name, ())] == 4

    # A sysfs that has the CPUs but no cpufreq driver, as on most VMs.
    bare = tmp_path / "sys" / "devices" / "system" / "cpu"
    for n in range(4):
        (bare / f"cpu{n}").mkdir(parents=True)
    got = as_dict(collector(sysfs=tmp_path / "sys").collect())
    assert catalog.CPU_FREQUENCY.name not in names(got)
    assert got[(catalog.CPU_SECONDS.name, ("idle",))] == 10030.0


def test_utilisation_from_two_snapshots(tmp_path):
    procfs = copy_fixture("procfs", tmp_path)
    c = collector(procfs, per_core=True)
    list(c.collect())
    # Each CPU gains 200 ticks: user 60, system 20, idle 100, iowait 10, softirq 5, steal 5
    # — except cpu1, which stays idle the whole interval.
    busy = (60, 0, 20, 100, 10, 0, 5, 5)
    idle = (0, 0, 0, 200, 0, 0, 0, 0)
    agg = tuple(3 * b + i for b, i in zip(busy, idle, strict=True))
    advance(procfs, {"cpu": agg, "cpu0": busy, "cpu1": idle, "cpu2": busy, "cpu3": busy})
    got = as_dict(c.collect())

    util = {lab[0]: v for (n, lab), v in got.items() if n == catalog.CPU_UTILIZATION.name}
    assert util == pytest.approx(
        {
            "user": 180 / 800,
            "nice": 0.0,
            "system": 60 / 800,
            "idle": 500 / 800,
            "iowait": 30 / 800,
            "irq": 0.0,
            "softirq": 15 / 800,
            "steal": 15 / 800,
        }
    )
    assert sum(util.values()) == pytest.approx(1.0)
    # Busy = everything but idle and iowait.
    core = {lab[0]: v for (n, lab), v in got.items() if n == catalog.CPU_CORE_UTILIZATION.name}
    assert core == pytest.approx({"0": 0.45, "1": 0.0, "2": 0.45, "3": 0.45})
    assert got[(catalog.CPU_SECONDS.name, ("user",))] == (47350 + 180) / 100


def test_per_core_off_emits_no_core_utilisation(tmp_path):
    procfs = copy_fixture("procfs", tmp_path)
    c = collector(procfs, per_core=False)
    list(c.collect())
    advance(procfs, {"cpu": (40, 0, 0, 40), "cpu0": (10, 0, 0, 10)})
    got = as_dict(c.collect())
    assert catalog.CPU_CORE_UTILIZATION.name not in names(got)
    assert got[(catalog.CPU_UTILIZATION.name, ("user",))] == 0.5


def test_no_elapsed_ticks_means_no_utilisation():
    c = collector(per_core=True)
    list(c.collect())
    got = as_dict(c.collect())  # same file: zero ticks elapsed, nothing to divide by
    assert catalog.CPU_UTILIZATION.name not in names(got)
    assert catalog.CPU_CORE_UTILIZATION.name not in names(got)
    assert got[(catalog.CPU_COUNT.name, ())] == 4


def test_counter_stepping_back_is_clamped(tmp_path):
    # iowait is documented to decrease occasionally; it must not produce a negative share.
    procfs = copy_fixture("procfs", tmp_path)
    c = collector(procfs)
    list(c.collect())
    advance(procfs, {"cpu": (100, 0, 0, 100, -50)})
    got = as_dict(c.collect())
    assert got[(catalog.CPU_UTILIZATION.name, ("iowait",))] == 0.0
    assert got[(catalog.CPU_UTILIZATION.name, ("user",))] == 0.5


def test_missing_proc_stat_is_no_data(tmp_path):
    with pytest.raises(NoDataError, match="stat"):
        list(collector(procfs=tmp_path).collect())


@pytest.mark.parametrize(
    "content",
    [
        "intr 1 0\nctxt 5\n",  # no aggregate cpu line
        "cpu  1 2 3\n",  # too few columns
        "cpu  1 2 three 4 5 6 7 8 0 0\n",
        "cpu  1 2 3 4 5 6 7 8 0 0\nctxt lots\n",
    ],
)
def test_malformed_proc_stat_is_a_failure(tmp_path, content):
    (tmp_path / "stat").write_text(content)
    with pytest.raises(ValueError):
        list(collector(procfs=tmp_path).collect())


def test_failed_collect_keeps_previous_snapshot(tmp_path):
    procfs = copy_fixture("procfs", tmp_path)
    c = collector(procfs)
    list(c.collect())
    good = (procfs / "stat").read_text()
    (procfs / "stat").write_text("garbage\n")
    with pytest.raises(ValueError):
        list(c.collect())
    (procfs / "stat").write_text(good)
    advance(procfs, {"cpu": (10, 0, 0, 30)})
    got = as_dict(c.collect())
    assert got[(catalog.CPU_UTILIZATION.name, ("user",))] == 0.25


def test_spec_factory_uses_options():
    assert cpu.SPEC.name == "cpu" and cpu.SPEC.enabled_by_default
    c = cpu.SPEC.factory(CollectorOptions(procfs=PROCFS, sysfs=SYSFS, per_core=True))
    assert isinstance(c, cpu.CpuCollector)
    assert (c.procfs, c.sysfs, c.per_core) == (PROCFS, SYSFS, True)
    assert c.clk_tck > 0
