"""The one energy rule: which cumulative energy counters in one sample of the power collectors'
readings add up to what the host used, each joule counted once.

``energy()`` blocks, ``ortel profile`` / ``ortel analyze`` and the daemon's attribution all read
energy through ``energy_counters``, so the same machine gives the same joules in each:

- CPU measured by RAPL (``ortel_rapl_energy_joules_total``): every package zone plus DRAM, which
  are disjoint (core and uncore lie inside the package). psys, the platform zone around them,
  counts only where no package zone is readable.
- CPU measured by an hwmon energy counter (``ortel_hwmon_energy_joules_total``, source "hwmon"):
  only where RAPL gives nothing, and only the counters that span a whole package (amd_energy's
  ``Esocket*``; its per-core ``Ecore*`` counters lie inside them).
- Measured by another source (``ortel_energy_joules_total``, e.g. macOS powermetrics): each zone
  that names a device (cpu, gpu, ane: the Neural Engine counts as an ``npu``); a zone "package"
  stands for its device.
- CPU estimated from utilisation (``source="estimated"``): only where nothing measured the CPU,
  so measured and estimated joules never count the same device.
- GPUs measured by NVML (``ortel_gpu_energy_joules_total``): each GPU.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from . import catalog as c
from .readings import Reading

DEVICES = ("cpu", "gpu", "npu")  # what energy is counted for
# The collectors whose readings this rule counts (by their registry names), for everything that
# opens them: energy() blocks, ortel profile.
ENERGY_COLLECTORS = ("rapl", "hwmon", "nvml", "powermetrics", "estimate")
MEASURED, ESTIMATED = "measured", "estimated"
# A zone of ortel_energy_joules_total -> the device it measures ("package": the source's device).
_ZONE_DEVICE = {"cpu": "cpu", "gpu": "gpu", "ane": "npu", "package": None}
# hwmon chip name -> the label prefix of its counters that each measure one whole CPU package.
# Other chips' energy sensors (per core, per rail) overlap in ways no file states: not counted.
_HWMON_CPU_PACKAGE = {"amd_energy": "Esocket"}


def _hwmon_package(chip: str, label: str) -> bool:
    # A chip sharing its name with another is labelled name_device: match on the name.
    return any(
        (chip == name or chip.startswith(name + "_")) and label.startswith(prefix)
        for name, prefix in _HWMON_CPU_PACKAGE.items()
    )


@dataclass(frozen=True)
class Counter:
    """One cumulative energy counter the rule counts."""

    device: str  # cpu, gpu or npu
    source: str  # measured | estimated
    origin: str  # the collector: rapl, nvml, powermetrics, estimated, ...
    unit: str  # which counter of that collector: a RAPL zone, a GPU's uuid, a zone
    # The labels of this counter's ortel_power_watts series (None: NVML's own gauge, or none).
    power_labels: tuple[str, str, str] | None = None


def energy_counters(readings: Iterable[Reading]) -> dict[Counter, float]:
    """Cumulative joules per counter the rule counts, in one sample of readings."""
    rapl: dict[Counter, float] = {}
    psys: dict[Counter, float] = {}
    hwmon: dict[Counter, float] = {}
    other: dict[Counter, float] = {}
    estimated: dict[Counter, float] = {}
    out: dict[Counter, float] = {}
    for r in readings:
        v = r.value
        if not isinstance(v, int | float) or not math.isfinite(v):
            continue
        name = r.metric.name
        lab = dict(zip(r.metric.labels, r.labels))
        if name == c.RAPL_ENERGY.name:
            zone, index = lab["zone"], lab["index"]
            k = Counter("cpu", MEASURED, "rapl", f"{zone}@{index}", ("rapl", index, zone))
            if zone.startswith("package") or zone == "dram":
                rapl[k] = float(v)
            elif zone.startswith("psys"):
                psys[k] = float(v)
        elif name == c.ENERGY.name:
            source, device, zone = lab["source"], lab["device"], lab["zone"]
            if source == ESTIMATED:
                if device == "cpu" and zone == "package":
                    k = Counter("cpu", ESTIMATED, source, zone, (source, device, zone))
                    estimated[k] = float(v)
                continue
            dev = _ZONE_DEVICE.get(zone, "") if zone != "package" else device
            if dev in DEVICES:
                other[Counter(dev, MEASURED, source, zone, (source, device, zone))] = float(v)
        elif name == c.HWMON_ENERGY.name:
            chip, sensor, label = lab["chip"], lab["sensor"], lab["label"]
            if _hwmon_package(chip, label):
                hwmon[Counter("cpu", MEASURED, "hwmon", f"{label}@{chip}/{sensor}")] = float(v)
        elif name == c.GPU_ENERGY.name:
            out[Counter("gpu", MEASURED, "nvml", lab["uuid"] or lab["gpu"])] = float(v)
    out.update(rapl or psys or hwmon)
    out.update(other)
    if not any(k.device == "cpu" for k in out):
        out.update(estimated)
    return out


def totals(counters: Mapping[Counter, float]) -> dict[tuple[str, str], float]:
    """Joules per (device, source)."""
    out: dict[tuple[str, str], float] = {}
    for k, j in counters.items():
        out[(k.device, k.source)] = out.get((k.device, k.source), 0.0) + j
    return out


def source_label(sources: Iterable[str]) -> str | None:
    """measured, estimated, or estimated+measured (a CPU estimate beside a measured GPU); None
    when nothing was counted."""
    kinds = sorted(set(sources))
    return "+".join(kinds) if kinds else None
