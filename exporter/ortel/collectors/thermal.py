"""Kernel thermal state: zones, cooling devices, CPU throttle counters and cpufreq limits.

Reads ``<sysfs>/class/thermal/{thermal_zone*,cooling_device*}``,
``<sysfs>/devices/system/cpu/cpu*/thermal_throttle/{core,package}_throttle_count`` and the cpufreq
policy limits ``scaling_{min,max}_freq`` (the current frequency is the cpu collector's). The
cpufreq cooling device lowers ``scaling_max_freq`` while it throttles, so the max is worth
watching next to the throttle counters.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from ortel.core import catalog
from ortel.core.readings import Reading, reading

from .base import Collector, CollectorSpec, NoDataError

_ZONE_RE = re.compile(r"^thermal_zone(\d+)$")
_CDEV_RE = re.compile(r"^cooling_device(\d+)$")
_CPU_RE = re.compile(r"^cpu(\d+)$")
SCOPES = ("core", "package")


def _text(path: Path) -> str | None:
    try:
        return path.read_bytes().decode(errors="replace").strip()
    except OSError:
        return None  # iwlwifi and friends answer ENODATA while the device is down


def _int(path: Path) -> int | None:
    text = _text(path)
    try:
        return None if text is None else int(text)
    except ValueError:
        return None


def _numbered(base: Path, pattern: re.Pattern[str]) -> list[tuple[int, Path]]:
    try:
        entries = list(base.iterdir())
    except OSError:
        return []
    found = [(int(m.group(1)), e) for e in entries if (m := pattern.match(e.name))]
    return sorted(found)


class ThermalCollector(Collector):
    name = "thermal"

    def __init__(self, sysfs: Path) -> None:
        self.sysfs = Path(sysfs)
        self._prev: dict[tuple[str, str], int] | None = None  # (scope, cpu) -> count

    def _throttle_counts(self, cpus: list[tuple[int, Path]]) -> dict[tuple[str, str], int]:
        """(scope, cpu) -> count; a package's count only under its first CPU."""
        counts: dict[tuple[str, str], int] = {}
        packages_seen: set[str] = set()
        for n, d in cpus:
            t = d / "thermal_throttle"
            core = _int(t / "core_throttle_count")
            if core is not None:
                counts[("core", str(n))] = core
            package = _int(t / "package_throttle_count")
            if package is not None:
                # Every CPU of a package shows the package's count: report it once.
                pkg = _text(d / "topology" / "physical_package_id") or f"cpu{n}"
                if pkg not in packages_seen:
                    packages_seen.add(pkg)
                    counts[("package", str(n))] = package
        return counts

    def collect(self) -> Iterator[Reading]:
        out: list[Reading] = []
        thermal = self.sysfs / "class" / "thermal"
        for n, d in _numbered(thermal, _ZONE_RE):
            millideg = _int(d / "temp")
            if millideg is not None:
                zone_type = _text(d / "type") or ""
                out.append(
                    reading(
                        catalog.THERMAL_ZONE_TEMPERATURE,
                        millideg / 1000.0,
                        zone=str(n),
                        type=zone_type,
                    )
                )
        for n, d in _numbered(thermal, _CDEV_RE):
            labels = {"device": str(n), "type": _text(d / "type") or ""}
            cur, top = _int(d / "cur_state"), _int(d / "max_state")
            # intel_powerclamp reads -1 while it is not injecting idle time: not a state.
            if cur is not None and cur >= 0:
                out.append(reading(catalog.COOLING_DEVICE_STATE, cur, **labels))
            if top is not None and top >= 0:
                out.append(reading(catalog.COOLING_DEVICE_MAX_STATE, top, **labels))

        cpus = _numbered(self.sysfs / "devices" / "system" / "cpu", _CPU_RE)
        counts = self._throttle_counts(cpus)
        for (scope, cpu), count in counts.items():
            out.append(reading(catalog.CPU_THROTTLES, count, cpu=cpu, scope=scope))
        prev, self._prev = self._prev, counts
        if prev is not None:
            for scope in SCOPES:
                keys = [k for k in counts if k[0] == scope and k in prev]
                if keys:  # no counters of this scope: unknown, not "not throttling"
                    rose = any(counts[k] > prev[k] for k in keys)
                    out.append(reading(catalog.THERMAL_THROTTLING, 1 if rose else 0, scope=scope))
        for n, d in cpus:
            for fname, metric in (
                ("scaling_min_freq", catalog.CPU_FREQUENCY_MIN),
                ("scaling_max_freq", catalog.CPU_FREQUENCY_MAX),
            ):
                khz = _int(d / "cpufreq" / fname)
                if khz is not None:
                    out.append(reading(metric, khz * 1000.0, cpu=str(n)))
        if not out:
            raise NoDataError(
                f"no thermal zones, cooling devices, throttle counters or cpufreq in {self.sysfs}"
            )
        yield from out


SPEC = CollectorSpec(
    name="thermal",
    enabled_by_default=True,
    factory=lambda o: ThermalCollector(o.sysfs),
    help="Thermal zone temperatures, cooling device states, CPU thermal throttle counts (and "
    "whether throttling is happening now), cpufreq min/max limits (/sys/class/thermal, "
    "/sys/devices/system/cpu).",
    metrics=(
        catalog.THERMAL_ZONE_TEMPERATURE,
        catalog.COOLING_DEVICE_STATE,
        catalog.COOLING_DEVICE_MAX_STATE,
        catalog.CPU_THROTTLES,
        catalog.THERMAL_THROTTLING,
        catalog.CPU_FREQUENCY_MIN,
        catalog.CPU_FREQUENCY_MAX,
    ),
)
