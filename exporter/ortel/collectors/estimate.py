"""Estimated CPU power where nothing measures it (VMs, containers, machines without RAPL access).

    power = n_cpus × (idle_watts + (max_watts − idle_watts) × utilisation)

with the utilisation of all CPUs between two samples of ``<procfs>/stat`` (everything but idle and
iowait, as the cpu collector counts it) and n_cpus the logical CPUs listed there. The defaults are
Cloud Carbon Footprint's per-vCPU averages for AWS (0.74 W idle, 3.5 W at full load, from the
SPECpower results of the processors AWS runs). Energy is the power integrated over each interval.

Exported as ``source="estimated"`` and only while no RAPL counter can be read through the same
sysfs root: a measured source, where one exists, is never mixed with a model.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

from ortel.core import catalog
from ortel.core.readings import Reading, reading

from . import rapl
from .base import Collector, CollectorSpec, NoDataError
from .cpu import _IDLE_MODES, MODES, CpuStat, _shares, parse_stat

DEFAULT_IDLE_WATTS = 0.74  # per logical CPU: CCF's AWS average minimum
DEFAULT_MAX_WATTS = 3.5  # per logical CPU: CCF's AWS average maximum

LABELS = {"source": "estimated", "device": "cpu", "zone": "package"}


def busy_share(prev: CpuStat, cur: CpuStat) -> float | None:
    """Share of CPU time not idle between two /proc/stat snapshots, or None if none elapsed."""
    shares = _shares(prev.total, cur.total)
    if shares is None:
        return None
    idle = sum(shares[MODES.index(m)] for m in _IDLE_MODES)
    return min(max(1.0 - idle, 0.0), 1.0)


def power_watts(n_cpus: int, idle_watts: float, max_watts: float, utilisation: float) -> float:
    return n_cpus * (idle_watts + (max_watts - idle_watts) * utilisation)


class EstimateCollector(Collector):
    name = "estimate"

    def __init__(
        self,
        procfs: Path,
        sysfs: Path,
        idle_watts: float = DEFAULT_IDLE_WATTS,
        max_watts: float = DEFAULT_MAX_WATTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 <= idle_watts <= max_watts:
            raise ValueError(f"need 0 <= idle watts ({idle_watts}) <= max watts ({max_watts})")
        self.procfs = Path(procfs)
        self.sysfs = Path(sysfs)
        self.idle_watts = idle_watts
        self.max_watts = max_watts
        self.clock = clock
        self._prev: tuple[CpuStat, float] | None = None
        self._joules = 0.0

    def collect(self) -> Iterator[Reading]:
        if rapl.readable(self.sysfs):
            self._prev = None  # if RAPL goes away again, start a fresh interval
            raise NoDataError("RAPL measures CPU power here (rapl collector): nothing to estimate")
        path = self.procfs / "stat"
        try:
            text = path.read_text()
        except (FileNotFoundError, NotADirectoryError, PermissionError) as e:
            raise NoDataError(f"cannot read {path}: {e.strerror or e}") from e
        cur, now = parse_stat(text), self.clock()
        prev, self._prev = self._prev, (cur, now)
        watts = None
        if prev is not None and (util := busy_share(prev[0], cur)) is not None:
            n_cpus = len(cur.per_cpu) or 1
            watts = power_watts(n_cpus, self.idle_watts, self.max_watts, util)
            # The utilisation is the interval's average, so power × time is the interval's energy.
            self._joules += watts * max(now - prev[1], 0.0)
        if watts is not None:
            yield reading(catalog.POWER, watts, **LABELS)
        yield reading(catalog.ENERGY, self._joules, **LABELS)


SPEC = CollectorSpec(
    name="estimate",
    enabled_by_default=True,
    factory=lambda o: EstimateCollector(
        o.procfs, o.sysfs, idle_watts=o.cpu_idle_watts, max_watts=o.cpu_max_watts
    ),
    help='Estimated CPU power and energy (source="estimated") from utilisation and a per-CPU '
    "idle/max power profile (--cpu-idle-watts, --cpu-max-watts), only where no RAPL counter is "
    "readable.",
    metrics=(catalog.POWER, catalog.ENERGY),
    estimated=True,
)
