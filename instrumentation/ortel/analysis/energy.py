"""Energy per node: E = P × t, and a compute vs data-movement split from per-operation energies.

**P × t.** P is the host's average power while the profiled runs executed: given
(``--power-w``), else measured by the daemon's power collectors used in-process (RAPL, NVML,
powermetrics; through ``ortel.collectors.power``, which reads the collector registry), else the
registry's utilisation-based estimate, else ``threads × 3.5 W`` (Cloud Carbon Footprint's
per-vCPU maximum). The source is always reported: ``given``, ``measured`` or ``estimated``.
Every node gets ``P × its time``: the whole host's power is attributed by time, which is what a
bill or a battery sees.

**Compute vs data movement** (a design view, not a measurement): ``flops × pJ/FLOP`` and
``bytes × pJ/byte`` with the 45 nm figures of Horowitz, "Computing's energy problem (and what we
can do about it)", ISSCC 2014, doi:10.1109/ISSCC.2014.6757323 (also Table 1 of Han et al.,
"Learning both Weights and Connections for Efficient Neural Networks", NeurIPS 2015): a 32-bit
float multiply costs 3.7 pJ and an add 0.9 pJ, so 2.3 pJ per FLOP averaged over a
multiply-accumulate; a 32-bit DRAM access 640 pJ, 160 pJ per byte. Both are configurable
(``--pj-per-flop``, ``--pj-per-byte``): newer processes are cheaper per operation, and bytes
served from caches cost 10-100x less than DRAM.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("ortel.analysis")

DEFAULT_PJ_PER_FLOP = 2.3  # (3.7 pJ fp32 multiply + 0.9 pJ fp32 add) / 2 FLOPs, Horowitz 2014
DEFAULT_PJ_PER_BYTE = 160.0  # 640 pJ per 32-bit DRAM access / 4 bytes, Horowitz 2014
FALLBACK_WATTS_PER_THREAD = 3.5  # Cloud Carbon Footprint's per-vCPU maximum (AWS average)


@dataclass(frozen=True)
class Power:
    watts: float
    source: str  # given | measured | estimated
    detail: str  # what measured or estimated it

    def to_json(self) -> dict[str, Any]:
        return {"watts": self.watts, "source": self.source, "detail": self.detail}


def joules(power: Power | None, seconds: float | None) -> float | None:
    if power is None or seconds is None:
        return None
    return power.watts * seconds


def split(
    flops: int | None,
    bytes_moved: int | None,
    pj_per_flop: float = DEFAULT_PJ_PER_FLOP,
    pj_per_byte: float = DEFAULT_PJ_PER_BYTE,
) -> tuple[float | None, float | None]:
    """(compute joules, data-movement joules) of one node's FLOPs and bytes."""
    c = None if flops is None else flops * pj_per_flop * 1e-12
    d = None if bytes_moved is None else bytes_moved * pj_per_byte * 1e-12
    return c, d


class PowerMeter:
    """Samples the power collectors around a piece of work: ``start()``, the work, ``stop()``,
    then ``power()``. Falls back quietly when the collectors are absent or give nothing."""

    def __init__(
        self,
        sysfs: Path = Path("/sys"),
        procfs: Path = Path("/proc"),
        interval: float = 0.1,
        threads: int = 1,
    ) -> None:
        self.sysfs, self.procfs, self.interval, self.threads = sysfs, procfs, interval, threads
        self.why: list[str] = []
        self._monitor: Any = None
        self._t0 = self._t1 = 0.0

    def start(self) -> PowerMeter:
        try:
            from ortel.collectors.power import PowerMonitor, collector_sampler
        except ImportError as e:
            self.why.append(f"power collectors unavailable: {e}")
        else:
            try:
                sample, why = collector_sampler(self.sysfs, self.procfs, self.interval)
                self.why += why
                if sample is not None:
                    self._monitor = PowerMonitor(sample, self.interval).start()
            except Exception as e:  # analysis never fails for want of power data
                self.why.append(f"power collectors failed: {type(e).__name__}: {e}")
        self._t0 = time.time()
        return self

    def stop(self) -> None:
        self._t1 = time.time()
        if self._monitor is not None:
            self._monitor.stop()

    def power(self) -> Power:
        if self._monitor is not None:
            e = self._monitor.energy(self._t0, self._t1)
            if e is not None and e.seconds > 0:
                source = "estimated" if "estimated" in e.source else "measured"
                return Power(e.average_watts, source, ", ".join(sorted(e.parts)))
            self.why.append("the run was shorter than the power sampling interval")
        watts = self.threads * FALLBACK_WATTS_PER_THREAD
        why = "; ".join(self.why) or "no power source"
        return Power(
            watts,
            "estimated",
            f"{self.threads} busy thread(s) x {FALLBACK_WATTS_PER_THREAD} W ({why})",
        )
