"""The one energy rule (ortel.core.energy), through the three paths that count energy: an
``energy()`` block's counters, ``ortel profile``'s power parts and the daemon's attribution. Fed
the same two samples of collector readings from each kind of host, all three count the same
joules between them."""

from __future__ import annotations

import pytest
from helpers import FIXTURES

from ortel.collectors.hwmon import HwmonCollector
from ortel.collectors.power import Part, parts_from_readings
from ortel.core import catalog as c
from ortel.core.energy import energy_counters
from ortel.core.readings import Reading, reading
from ortel.exporter.attribution import Attribution
from ortel.instrumentation.meter import counters

GPU = {"gpu": "0", "uuid": "GPU-0", "name": "H100"}


def psys_host(t: int) -> list[Reading]:
    # psys surrounds package and DRAM; core is inside the package: counted once, as package+DRAM.
    return [
        reading(c.RAPL_ENERGY, 100.0 + 30 * t, zone="package-0", index="0"),
        reading(c.RAPL_ENERGY, 40.0 + 20 * t, zone="core", index="0:0"),
        reading(c.RAPL_ENERGY, 10.0 + 4 * t, zone="dram", index="0:2"),
        reading(c.RAPL_ENERGY, 300.0 + 50 * t, zone="psys", index="1"),
    ]


def rapl_host(t: int) -> list[Reading]:
    return [
        reading(c.RAPL_ENERGY, 100.0 + 30 * t, zone="package-0", index="0"),
        reading(c.RAPL_ENERGY, 70.0 + 25 * t, zone="package-1", index="1"),
        reading(c.RAPL_ENERGY, 10.0 + 4 * t, zone="dram", index="0:2"),
        reading(c.RAPL_ENERGY, 5.0 + 2 * t, zone="uncore", index="0:1"),
    ]


def macos_host(t: int) -> list[Reading]:
    labels = {"source": "powermetrics", "device": "soc"}
    return [
        reading(c.ENERGY, 20.0 + 6 * t, zone="cpu", **labels),
        reading(c.ENERGY, 9.0 + 3 * t, zone="gpu", **labels),
        reading(c.ENERGY, 1.0 + 0.5 * t, zone="ane", **labels),
    ]


def hwmon_host(t: int) -> list[Reading]:
    # An EPYC host with amd_energy and no RAPL powercap: the socket counters count; the per-core
    # counters inside them do not, nor does the estimate beside them.
    return [
        reading(
            c.HWMON_ENERGY, 1000.0 + 40 * t, chip="amd_energy", sensor="energy1", label="Ecore000"
        ),
        reading(
            c.HWMON_ENERGY, 900.0 + 30 * t, chip="amd_energy", sensor="energy33", label="Esocket0"
        ),
        reading(
            c.HWMON_ENERGY, 800.0 + 20 * t, chip="amd_energy", sensor="energy34", label="Esocket1"
        ),
        reading(c.ENERGY, 12.0 + 7 * t, source="estimated", device="cpu", zone="package"),
    ]


def estimate_vm(t: int) -> list[Reading]:
    labels = {"source": "estimated", "device": "cpu", "zone": "package"}
    return [reading(c.ENERGY, 12.0 + 7 * t, **labels)]


def gpu_host(t: int) -> list[Reading]:
    return [*rapl_host(t), reading(c.GPU_ENERGY, 500.0 + 300 * t, **GPU)]


HOSTS = {
    # host: (samples, joules the rule counts between them, by (device, source))
    "psys": (psys_host, {("cpu", "measured"): 34.0}),
    "rapl package+dram": (rapl_host, {("cpu", "measured"): 59.0}),
    "macOS powermetrics": (
        macos_host,
        {("cpu", "measured"): 6.0, ("gpu", "measured"): 3.0, ("npu", "measured"): 0.5},
    ),
    "estimate-only VM": (estimate_vm, {("cpu", "estimated"): 7.0}),
    "hwmon amd_energy": (hwmon_host, {("cpu", "measured"): 50.0}),
    "NVML GPU": (gpu_host, {("cpu", "measured"): 59.0, ("gpu", "measured"): 300.0}),
}


def cpu_seconds(t: int) -> list[Reading]:
    return [
        reading(c.CPU_SECONDS, 100.0 + t, mode="user"),
        reading(c.CPU_SECONDS, 1e4, mode="idle"),
    ]


def by_device(joules: dict[tuple[str, str], float]) -> dict[tuple[str, str], float]:
    return {k: pytest.approx(v) for k, v in joules.items() if v}


@pytest.mark.parametrize("host", HOSTS)
def test_energy_blocks_count_what_the_rule_counts(host):
    samples, want = HOSTS[host]
    a, b = counters(samples(0)), counters(samples(1))
    assert by_device({k: b[k] - a.get(k, 0.0) for k in b}) == want


@pytest.mark.parametrize("host", HOSTS)
def test_profiles_count_what_the_rule_counts(host):
    samples, want = HOSTS[host]
    a, b = parts_from_readings(samples(0)), parts_from_readings(samples(1))
    total = sum(b[p] - a[p] for p in b)
    assert total == pytest.approx(sum(want.values()))
    assert {p.estimated for p in b} == {source == "estimated" for _, source in want}


@pytest.mark.parametrize("host", HOSTS)
def test_attribution_counts_what_the_rule_counts(host):
    """The daemon splits each source's energy into idle, attributed and unattributed parts: their
    sum is what the source used. It attributes the CPU and NVIDIA GPUs (macOS gives no
    per-process GPU share, so powermetrics' GPU and Neural Engine joules are not attributed)."""
    samples, want = HOSTS[host]
    clock = iter([0.0, 1.0, 2.0])
    att = Attribution(cpu_idle_watts=0.0, clock=lambda: next(clock))
    for t in (0, 1):
        att.step([*samples(t), *cpu_seconds(t), reading(c.CPU_COUNT, 4.0)], None)
    split: dict[tuple[str, str], float] = {}
    for r in att.readings():
        if r.metric is c.ENERGY_ATTRIBUTION:
            device, source, _ = r.labels
            split[(device, source)] = split.get((device, source), 0.0) + float(r.value)
    attributed = {k: v for k, v in want.items() if k[0] == "cpu" or host == "NVML GPU"}
    assert by_device(split) == attributed


def test_every_counter_the_rule_picks_is_named_once():
    counted = energy_counters(gpu_host(1))
    assert sorted((k.origin, k.unit) for k in counted) == [
        ("nvml", "GPU-0"),
        ("rapl", "dram@0:2"),
        ("rapl", "package-0@0"),
        ("rapl", "package-1@1"),
    ]


def test_hwmon_energy_counts_only_without_rapl_and_is_labelled_hwmon():
    counted = energy_counters(hwmon_host(1))
    assert sorted((k.origin, k.unit) for k in counted) == [
        ("hwmon", "Esocket0@amd_energy/energy33"),
        ("hwmon", "Esocket1@amd_energy/energy34"),
    ]
    assert list(parts_from_readings(hwmon_host(1))) == [
        Part("cpu (hwmon: Esocket0, Esocket1)", False)
    ]
    # RAPL measures the package where it is there: the hwmon counters would count it twice.
    both = energy_counters([*rapl_host(1), *hwmon_host(1)])
    assert {k.origin for k in both} == {"rapl"}


def test_the_epyc_fixture_through_the_collectors():
    """The amd_energy tree of tests/fixtures/hosts/epyc-server through the hwmon collector: the
    rule counts both sockets' counters, read from their files."""
    root = FIXTURES / "hosts/epyc-server/sysfs"
    readings = list(HwmonCollector(root).collect())
    chip = root / "class/hwmon/hwmon2"
    want = sum(int((chip / f"energy{n}_input").read_text()) / 1e6 for n in (33, 34))
    assert sum(energy_counters(readings).values()) == pytest.approx(want)
    assert {k.origin for k in energy_counters(readings)} == {"hwmon"}
