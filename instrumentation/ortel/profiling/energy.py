"""Power and energy during a run, from the daemon's own collectors used in-process.

A background thread samples the power collectors the registry has (RAPL, NVIDIA GPUs,
powermetrics, the utilisation-based estimate) every ``interval`` and keeps each part's cumulative
energy counter. A phase's energy is the counters' difference between its start and end (linearly
interpolated between samples), its power timeline the difference between consecutive samples.

Parts and what is summed, so nothing is counted twice:
- CPU, measured (RAPL): the psys (platform) zone where the machine has one, else every
  package zone plus DRAM (the package counter excludes DRAM; core and uncore are inside it).
- CPU, other sources (``ortel_energy_joules_total``): per source and device the package zone
  where there is one, else the sum of its zones. ``source="estimated"`` is a model, labelled so.
- GPUs (``ortel_gpu_energy_joules_total``): every GPU, summed.
Without any of them the run reports "no power data", never zero.
"""

from __future__ import annotations

import logging
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("ortel.profiling")

POWER_COLLECTORS = ("rapl", "nvml", "powermetrics", "estimate")


@dataclass(frozen=True)
class Part:
    name: str  # "cpu (rapl: package-0, dram)", "gpu (nvml: 2 GPUs)", …
    estimated: bool


def parts_from_readings(readings: Iterable[Any]) -> dict[Part, float]:
    """Cumulative joules per part from one sample of the power collectors' readings."""
    rapl: dict[str, float] = {}  # zone name -> joules, summed over indexes of that name
    other: dict[tuple[str, str], dict[str, float]] = {}
    gpus: dict[str, float] = {}
    for r in readings:
        name = r.metric.name
        labels = dict(zip(r.metric.labels, r.labels))
        if name == "ortel_rapl_energy_joules_total":
            zone = labels["zone"]
            key = f"{zone}@{labels.get('index', '')}"
            rapl[key] = float(r.value)
        elif name == "ortel_energy_joules_total":
            other.setdefault((labels["source"], labels["device"]), {})[labels["zone"]] = float(
                r.value
            )
        elif name == "ortel_gpu_energy_joules_total":
            gpus[labels.get("uuid") or labels.get("gpu", "?")] = float(r.value)
    out: dict[Part, float] = {}
    if rapl:
        psys = {k: v for k, v in rapl.items() if k.startswith("psys@")}
        chosen = psys or {
            k: v for k, v in rapl.items() if k.startswith("package") or k.startswith("dram@")
        }
        if chosen:
            zones = ", ".join(sorted({k.split("@")[0] for k in chosen}))
            out[Part(f"cpu (rapl: {zones})", False)] = sum(chosen.values())
    for (source, device), zones in sorted(other.items()):
        if source == "rapl":
            continue  # RAPL's own counters are read above
        pick = {"package": zones["package"]} if "package" in zones else zones
        label = f"{device} ({source}: {', '.join(sorted(pick))})"
        out[Part(label, source == "estimated")] = sum(pick.values())
    if gpus:
        n = len(gpus)
        out[Part(f"gpu (nvml: {n} GPU{'s' if n > 1 else ''})", False)] = sum(gpus.values())
    return out


@dataclass
class Energy:
    """Energy over one interval of the run."""

    joules: float
    seconds: float
    average_watts: float
    peak_watts: float | None  # highest sampled interval (None: under one sampling interval)
    source: str  # measured, estimated, or "measured+estimated"
    parts: dict[str, float] = field(default_factory=dict)  # part -> joules

    def to_json(self) -> dict[str, Any]:
        return {
            "joules": self.joules,
            "seconds": self.seconds,
            "average_watts": self.average_watts,
            "peak_watts": self.peak_watts,
            "source": self.source,
            "parts": self.parts,
        }


def source_label(estimated: Iterable[bool]) -> str:
    kinds = {"estimated" if e else "measured" for e in estimated}
    return "+".join(sorted(kinds)) if len(kinds) > 1 else (kinds.pop() if kinds else "none")


class PowerMonitor:
    """Samples ``sample()`` (cumulative joules per part) on a thread every ``interval``."""

    def __init__(
        self,
        sample: Callable[[], dict[Part, float]],
        interval: float = 0.2,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._sample = sample
        self.interval = interval
        self.clock = clock
        self.times: list[float] = []
        self.values: list[dict[Part, float]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _take(self) -> None:
        try:
            v = self._sample()
        except Exception as e:  # a failing collector loses power data, never the run
            log.debug("power sample failed: %s", e)
            return
        t = self.clock()
        if v:
            with self._lock:
                self.times.append(t)
                self.values.append(v)

    def start(self) -> PowerMonitor:
        self._take()
        self._thread = threading.Thread(target=self._loop, name="ortel-power", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._take()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 5)
        self._take()

    @property
    def parts(self) -> list[Part]:
        with self._lock:
            seen: dict[Part, None] = {}
            for v in self.values:
                seen.update(dict.fromkeys(v))
            return list(seen)

    def _at(self, part: Part, t: float) -> float | None:
        """The part's cumulative joules at time t, interpolated; None outside the samples."""
        ts = [x for x, v in zip(self.times, self.values) if part in v]
        vs = [v[part] for v in self.values if part in v]
        if len(ts) < 2 or t < ts[0] or t > ts[-1]:
            return None
        i = bisect_left(ts, t)
        if ts[i] == t:
            return vs[i]
        f = (t - ts[i - 1]) / (ts[i] - ts[i - 1])
        return vs[i - 1] + f * (vs[i] - vs[i - 1])

    def energy(self, t0: float, t1: float) -> Energy | None:
        """Energy between two wall-clock times; None without samples covering both ends."""
        if t1 <= t0:
            return None
        with self._lock:
            parts: dict[str, float] = {}
            estimated = []
            for p in {p for v in self.values for p in v}:
                a, b = self._at(p, t0), self._at(p, t1)
                # A counter that did not move cannot have measured anything (hardware always
                # draws power; the estimate needs CPU time to pass): unknown, not 0 J.
                if a is None or b is None or b <= a:
                    continue
                parts[p.name] = b - a
                estimated.append(p.estimated)
            if not parts:
                return None
            total = sum(parts.values())
            peaks = [w for t, w in self._timeline() if t0 <= t <= t1 + self.interval]
        return Energy(
            total,
            t1 - t0,
            total / (t1 - t0),
            max(peaks) if peaks else None,
            source_label(estimated),
            parts,
        )

    def _timeline(self) -> list[tuple[float, float]]:
        out = []
        for i in range(1, len(self.times)):
            dt = self.times[i] - self.times[i - 1]
            if dt <= 0:
                continue
            common = set(self.values[i]) & set(self.values[i - 1])
            if not common:
                continue
            w = sum(max(self.values[i][p] - self.values[i - 1][p], 0.0) for p in common) / dt
            out.append((self.times[i], w))
        return out

    def timeline(self) -> list[tuple[float, float]]:
        """(wall time at the end of a sampling interval, watts over it), all parts summed."""
        with self._lock:
            return self._timeline()

    def source(self) -> str:
        return source_label(p.estimated for p in self.parts)


def collector_sampler(
    sysfs: Path = Path("/sys"),
    procfs: Path = Path("/proc"),
    interval: float = 0.2,
    names: Sequence[str] = POWER_COLLECTORS,
) -> tuple[Callable[[], dict[Part, float]] | None, list[str]]:
    """A sample function over whichever power collectors the registry has and can read here,
    and why the others gave nothing (one line each). None when nothing gives power data."""
    try:
        from ortel.exporter.collectors.base import CollectorOptions, NoDataError
        from ortel.exporter.collectors.registry import BY_NAME
    except ImportError as e:
        return None, [f"the daemon's collectors are not importable: {e}"]
    opts = CollectorOptions(sysfs=Path(sysfs), procfs=Path(procfs), interval=interval)
    collectors = []
    why: list[str] = []
    for name in names:
        spec = BY_NAME.get(name)
        if spec is None:
            continue
        try:
            col = spec.factory(opts)
            first = list(col.collect())  # primes counters (and proves the source is there)
        except NoDataError as e:
            why.append(f"{name}: {e}")
            continue
        except Exception as e:  # a broken or absent driver (NVML) is "no data" for a profile
            why.append(f"{name}: {type(e).__name__}: {e}")
            continue
        if parts_from_readings(first):
            collectors.append(col)
        else:
            why.append(f"{name}: no energy counter in its readings")
    if not collectors:
        return None, why

    def sample() -> dict[Part, float]:
        out: dict[Part, float] = {}
        for col in collectors:
            try:
                out.update(parts_from_readings(col.collect()))
            except Exception:  # this collector's sample is missing; the others still count
                continue
        return out

    return sample, why
