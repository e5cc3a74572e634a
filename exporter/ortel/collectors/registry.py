"""Every collector the daemon knows, with whether it runs by default.

The CLI's --collectors / --disable-collectors choices and the docs are generated from this list.
"""

from __future__ import annotations

from . import (
    cpu,
    disk,
    estimate,
    etw,
    hwmon,
    inference,
    memory,
    nvml,
    perf,
    power_supply,
    powermetrics,
    process,
    rapl,
    thermal,
)
from .base import CollectorSpec

SPECS: tuple[CollectorSpec, ...] = (
    cpu.SPEC,
    memory.SPEC,
    process.SPEC,
    inference.SPEC,
    # power, energy, thermal, GPU (issue 3)
    rapl.SPEC,
    hwmon.SPEC,
    thermal.SPEC,
    power_supply.SPEC,
    nvml.SPEC,
    powermetrics.SPEC,
    estimate.SPEC,
    # kernel and runtime events (issue 10)
    disk.SPEC,
    perf.SPEC,
    etw.SPEC,
)
BY_NAME: dict[str, CollectorSpec] = {s.name: s for s in SPECS}
