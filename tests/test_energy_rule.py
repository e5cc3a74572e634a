"""The one energy rule (ortel.core.energy), through the three paths that count energy: an
``energy()`` block's counters, ``ortel profile``'s power parts and the daemon's attribution. Fed
the same two samples of collector readings from each kind of host, all three count the same
joules between them."""

from __future__ import annotations

import pytest

from ortel.collectors.power import parts_from_readings
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
