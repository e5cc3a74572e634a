"""Host CPU: time per mode, utilisation, per-core busy share, frequency, context switches, IRQs.

Reads ``<procfs>/stat`` and ``<sysfs>/devices/system/cpu/cpu*/cpufreq`` directly, the way
node_exporter does; no psutil.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ortel.core import catalog
from ortel.core.readings import Reading, reading

from .base import Collector, CollectorSpec, NoDataError

# The first eight columns of a cpu line (present since Linux 2.6.11). guest and guest_nice follow
# but are already included in user and nice, so counting them would count that time twice.
MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
_IDLE_MODES = ("idle", "iowait")

_CPU_DIR_RE = re.compile(r"^cpu(\d+)$")


@dataclass(frozen=True)
class CpuStat:
    total: tuple[int, ...]  # ticks per mode, in MODES order, all CPUs
    per_cpu: dict[str, tuple[int, ...]]  # cpu number ("0", "1", ...) -> ticks per mode
    ctxt: int | None
    intr: int | None


def _ticks(line: str) -> tuple[int, ...]:
    fields = line.split()[1:]
    if len(fields) < len(MODES):
        raise ValueError(f"/proc/stat: short cpu line {line!r}")
    return tuple(int(f) for f in fields[: len(MODES)])


def parse_stat(text: str) -> CpuStat:
    """Parse /proc/stat; raises ValueError when the content is not what the kernel writes."""
    total: tuple[int, ...] | None = None
    per_cpu: dict[str, tuple[int, ...]] = {}
    ctxt = intr = None
    for line in text.splitlines():
        key, _, rest = line.partition(" ")
        if key == "cpu":
            total = _ticks(line)
        elif key.startswith("cpu") and key[3:].isdigit():
            per_cpu[key[3:]] = _ticks(line)
        elif key == "ctxt":
            ctxt = int(rest)
        elif key == "intr":
            intr = int(rest.split()[0])  # the first column is the total over all IRQs
    if total is None:
        raise ValueError("/proc/stat: no aggregate 'cpu' line")
    return CpuStat(total, per_cpu, ctxt, intr)


def _shares(prev: tuple[int, ...], cur: tuple[int, ...]) -> tuple[float, ...] | None:
    """Per-mode share of the ticks elapsed between two samples, or None if none elapsed."""
    # Clamp at 0: iowait is known to step backwards on some kernels, and a hot-plugged CPU
    # restarts its counters.
    deltas = [max(c - p, 0) for p, c in zip(prev, cur, strict=True)]
    elapsed = sum(deltas)
    if elapsed <= 0:
        return None
    return tuple(d / elapsed for d in deltas)


def _default_clk_tck() -> int:
    return os.sysconf("SC_CLK_TCK")


class CpuCollector(Collector):
    name = "cpu"

    def __init__(
        self,
        procfs: Path,
        sysfs: Path,
        per_core: bool = False,
        clk_tck: int | None = None,
    ) -> None:
        self.procfs = Path(procfs)
        self.sysfs = Path(sysfs)
        self.per_core = per_core
        # Resolved lazily rather than as a default argument so importing stays portable.
        self.clk_tck = clk_tck if clk_tck is not None else _default_clk_tck()
        self._prev: CpuStat | None = None

    def _read_stat(self) -> CpuStat:
        path = self.procfs / "stat"
        try:
            text = path.read_text()
        except (FileNotFoundError, NotADirectoryError, PermissionError) as e:
            raise NoDataError(f"cannot read {path}: {e.strerror or e}") from e
        return parse_stat(text)

    def _frequencies(self) -> list[tuple[str, float]]:
        base = self.sysfs / "devices" / "system" / "cpu"
        try:
            entries = list(base.iterdir())
        except OSError:
            return []  # no sysfs (containers, non-Linux): simply no frequency readings
        found: list[tuple[int, float]] = []
        for entry in entries:
            m = _CPU_DIR_RE.match(entry.name)
            if not m:
                continue
            try:
                khz = (entry / "cpufreq" / "scaling_cur_freq").read_text()
            except OSError:
                continue  # no cpufreq driver (most VMs) or the CPU is offline
            found.append((int(m.group(1)), int(khz) * 1000.0))
        return [(str(n), hz) for n, hz in sorted(found)]

    def collect(self) -> Iterator[Reading]:
        # Read and parse everything before the first yield, so a failure yields nothing.
        cur = self._read_stat()
        freqs = self._frequencies()
        prev, self._prev = self._prev, cur

        for mode, ticks in zip(MODES, cur.total, strict=True):
            yield reading(catalog.CPU_SECONDS, ticks / self.clk_tck, mode=mode)
        if prev is not None and (shares := _shares(prev.total, cur.total)) is not None:
            for mode, share in zip(MODES, shares, strict=True):
                yield reading(catalog.CPU_UTILIZATION, share, mode=mode)
        if self.per_core and prev is not None:
            idle = [MODES.index(m) for m in _IDLE_MODES]
            for cpu, cpu_ticks in cur.per_cpu.items():
                before = prev.per_cpu.get(cpu)
                if before is None or (shares := _shares(before, cpu_ticks)) is None:
                    continue  # CPU came online since the last sample, or no ticks elapsed
                yield reading(
                    catalog.CPU_CORE_UTILIZATION, 1.0 - sum(shares[i] for i in idle), cpu=cpu
                )
        yield reading(catalog.CPU_COUNT, len(cur.per_cpu))
        if cur.ctxt is not None:
            yield reading(catalog.CONTEXT_SWITCHES, cur.ctxt)
        if cur.intr is not None:
            yield reading(catalog.INTERRUPTS, cur.intr)
        for cpu, hz in freqs:
            yield reading(catalog.CPU_FREQUENCY, hz, cpu=cpu)


SPEC = CollectorSpec(
    name="cpu",
    enabled_by_default=True,
    factory=lambda o: CpuCollector(o.procfs, o.sysfs, per_core=o.per_core),
    help="Host CPU time and utilisation per mode, CPU count, frequency, context switches and "
    "interrupts (/proc/stat, cpufreq). Per-core utilisation with --per-core.",
)
