"""RAPL energy and power from Linux powercap: ``<sysfs>/class/powercap/intel-rapl*``.

The kernel's RAPL driver serves Intel and AMD (family 17h and newer) under the same ``intel-rapl``
control type. Every zone and sub-zone is read (package, core, uncore, dram, psys). ``energy_uj``
is a hardware counter that wraps at ``max_energy_range_uj``: the collector keeps the last raw
value and an accumulated total per zone, so ``ortel_rapl_energy_joules_total`` keeps rising across
a wrap (node_exporter exports the raw counter, which falls back to 0; Scaphandre drops the sample).
One wrap between two samples is recovered exactly; two cannot be told apart from one, so the
sampling interval must stay below ``max_energy_range_uj / max power`` (about 1,300 s for a 200 W
package with the usual 262,143 J range; see docs/power.md). A longer observed interval is logged.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ortel.core import catalog
from ortel.core.readings import Reading, reading

from .base import Collector, CollectorSpec, NoDataError

log = logging.getLogger("ortel.exporter")

# intel-rapl:0, intel-rapl:0:1, intel-rapl-mmio:0 (the bare "intel-rapl" is the control type).
_ZONE_RE = re.compile(r"^(intel-rapl(?:-mmio)?):(\d+(?::\d+)*)$")


@dataclass(frozen=True)
class Zone:
    path: Path
    name: str  # the zone's own name file: package-0, core, uncore, dram, psys
    index: str  # powercap id without the control type: "0", "0:1"; "mmio:0" for MMIO zones
    sort_key: tuple[int, ...]


def grant_hint(sysfs: Path) -> str:
    base = Path(sysfs) / "class" / "powercap"
    return (
        "energy_uj is readable by root only since Linux 5.10; grant read access with "
        f"'sudo chmod a+r {base}/intel-rapl:*/energy_uj {base}/intel-rapl:*:*/energy_uj' "
        "(until reboot; docs/power.md has a udev rule) or run ortel serve as root"
    )


def discover(sysfs: Path) -> list[Zone]:
    """Every RAPL zone under ``<sysfs>/class/powercap``, each physical counter once, sorted."""
    base = Path(sysfs) / "class" / "powercap"
    try:
        entries = list(base.iterdir())
    except OSError as e:
        raise NoDataError(f"no powercap in {base}: {e.strerror or e}") from e
    msr: list[Zone] = []
    mmio: list[Zone] = []
    for entry in entries:
        m = _ZONE_RE.match(entry.name)
        if not m:
            continue
        try:
            name = (entry / "name").read_bytes().decode(errors="replace").strip()
        except OSError:
            continue  # a zone being removed (driver unload): not there any more
        key = tuple(int(n) for n in m.group(2).split(":"))
        if m.group(1) == "intel-rapl":
            msr.append(Zone(entry, name, m.group(2), key))
        else:
            mmio.append(Zone(entry, name, "mmio:" + m.group(2), key))
    # processor_thermal_device exposes the package counter a second time through MMIO; where the
    # MSR interface has the same zone, counting both would double the package's energy.
    have = {z.name for z in msr}
    zones = sorted(msr, key=lambda z: z.sort_key)
    zones += sorted((z for z in mmio if z.name not in have), key=lambda z: z.sort_key)
    return zones


def readable(sysfs: Path) -> bool:
    """True if at least one RAPL zone's energy counter can be read (a measured CPU source)."""
    try:
        zones = discover(sysfs)
    except NoDataError:
        return False
    for z in zones:
        try:
            int((z.path / "energy_uj").read_text())
        except (OSError, ValueError):
            continue
        return True
    return False


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return None


@dataclass
class _State:
    raw: int  # last energy_uj read
    total_uj: int  # accumulated, never decreases
    at: float  # monotonic time of that read


class RaplCollector(Collector):
    name = "rapl"

    def __init__(
        self,
        sysfs: Path,
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sysfs = Path(sysfs)
        self.interval = interval
        self.clock = clock
        self._state: dict[str, _State] = {}
        self._warned: set[str] = set()

    def _max_power_watts(self, zone: Zone) -> float | None:
        """The zone's highest constraint max power, if the driver reports one (package zones)."""
        best = None
        for n in range(4):
            uw = _read_int(zone.path / f"constraint_{n}_max_power_uw")
            if uw is not None and uw > 0:
                best = max(best or 0.0, uw / 1e6)
        return best

    def _check_interval(self, zone: Zone, range_uj: int | None, elapsed: float) -> None:
        if range_uj is None or zone.index in self._warned:
            return
        watts = self._max_power_watts(zone)
        if watts is None:
            return
        wrap_s = range_uj / 1e6 / watts
        if elapsed >= wrap_s:
            self._warned.add(zone.index)
            log.warning(
                "rapl zone %s (%s): %.0f s between samples, but at its %.0f W maximum the "
                "counter wraps every %.0f s: energy may be undercounted; lower --interval",
                zone.index,
                zone.name,
                elapsed,
                watts,
                wrap_s,
            )

    def collect(self) -> Iterator[Reading]:
        zones = discover(self.sysfs)
        if not zones:
            raise NoDataError(f"no RAPL zones in {self.sysfs / 'class' / 'powercap'}")
        # Read every counter before touching any state, so a failed sample changes nothing.
        now = self.clock()
        reads: list[tuple[Zone, int, int | None]] = []
        for z in zones:
            path = z.path / "energy_uj"
            try:
                raw = int(path.read_text())
            except PermissionError as e:
                raise NoDataError(
                    f"cannot read {path}: {e.strerror}; {grant_hint(self.sysfs)}"
                ) from e
            reads.append((z, raw, _read_int(z.path / "max_energy_range_uj")))

        out: list[Reading] = []
        for z, raw, range_uj in reads:
            st = self._state.get(z.index)
            watts = None
            if st is None:
                # Start from the hardware value, so the first sample equals the file's value.
                st = self._state[z.index] = _State(raw, raw, now)
                self._check_interval(z, range_uj, self.interval)
            else:
                delta = raw - st.raw
                if delta < 0:
                    # Wrapped once (more cannot be seen); without a known range, count nothing
                    # rather than going backwards.
                    delta = range_uj - st.raw + raw if range_uj else 0
                elapsed = now - st.at
                if elapsed > 0:
                    watts = delta / 1e6 / elapsed
                    self._check_interval(z, range_uj, elapsed)
                st.raw, st.total_uj, st.at = raw, st.total_uj + delta, now
            out.append(reading(catalog.RAPL_ENERGY, st.total_uj / 1e6, zone=z.name, index=z.index))
            if watts is not None:
                out.append(
                    reading(catalog.POWER, watts, source="rapl", device=z.index, zone=z.name)
                )
        yield from out


SPEC = CollectorSpec(
    name="rapl",
    enabled_by_default=True,
    factory=lambda o: RaplCollector(o.sysfs, interval=o.interval),
    help="Measured CPU package/core/uncore/DRAM/platform energy and power from RAPL "
    "(/sys/class/powercap/intel-rapl*, Intel and AMD); monotonic across counter wraps.",
    metrics=(catalog.RAPL_ENERGY, catalog.POWER),
)
