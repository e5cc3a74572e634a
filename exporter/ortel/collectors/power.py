"""The energy collectors used in-process: opened from the registry, and sampled over time.

``open_energy_collectors`` opens whichever energy collectors can be read here (``energy()``
blocks read them once per block; ``ortel profile`` and ``ortel analyze`` sample them). A
``PowerMonitor`` samples them on a thread every ``interval`` and keeps each part's cumulative
energy counter; a phase's energy is the counters' difference between its start and end (linearly
interpolated between samples), its power timeline the difference between consecutive samples.

What is counted comes from the one energy rule (``ortel.core.energy``), grouped into parts by
device and collector: "cpu (rapl: dram, package-0)", "cpu (hwmon: Esocket0, Esocket1)",
"cpu (estimated: package)", "gpu (nvml: 2 GPUs)". Without any of them the run reports "no power
data", never zero.
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

from ortel.core.energy import ENERGY_COLLECTORS, Counter, energy_counters
from ortel.core.energy import source_label as _source_label

from .base import Collector, CollectorOptions, NoDataError
from .registry import BY_NAME

log = logging.getLogger("ortel.profiling")


@dataclass(frozen=True)
class Part:
    name: str  # "cpu (rapl: package-0, dram)", "gpu (nvml: 2 GPUs)", …
    estimated: bool


def parts_from_readings(readings: Iterable[Any]) -> dict[Part, float]:
    """Cumulative joules per part from one sample of the power collectors' readings."""
    groups: dict[tuple[str, str, str], list[tuple[Counter, float]]] = {}
    for k, j in energy_counters(readings).items():
        groups.setdefault((k.device, k.origin, k.source), []).append((k, j))
    out: dict[Part, float] = {}
    for (device, origin, source), items in sorted(groups.items()):
        if origin == "nvml":
            n = len(items)
            what = f"{n} GPU{'s' if n > 1 else ''}"
        else:
            what = ", ".join(sorted({k.unit.split("@")[0] for k, _ in items}))
        out[Part(f"{device} ({origin}: {what})", source == "estimated")] = sum(j for _, j in items)
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
    return _source_label("estimated" if e else "measured" for e in estimated) or "none"


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


def open_energy_collectors(
    names: Sequence[str], **options: Any
) -> tuple[list[Collector], list[str]]:
    """The named collectors that give energy here, each sampled once (which primes counters and
    proves the source is there), and why each other one gave nothing (one line each)."""
    opts = CollectorOptions(**options)
    found: list[Collector] = []
    why: list[str] = []
    for name in names:
        spec = BY_NAME.get(name)
        if spec is None:
            why.append(f"{name}: no such collector")
            continue
        try:
            col = spec.factory(opts)
            first = list(col.collect())
        except NoDataError as e:
            why.append(f"{name}: {e}")
            continue
        except Exception as e:  # a broken or absent driver (NVML) is "no energy here"
            why.append(f"{name}: {type(e).__name__}: {e}")
            continue
        if energy_counters(first):
            found.append(col)
        else:
            why.append(f"{name}: no energy counter in its readings")
    return found, why


def collector_sampler(
    sysfs: Path = Path("/sys"),
    procfs: Path = Path("/proc"),
    interval: float = 0.2,
    names: Sequence[str] = ENERGY_COLLECTORS,
) -> tuple[Callable[[], dict[Part, float]] | None, list[str]]:
    """A sample function over whichever power collectors can be read here, and why the others
    gave nothing (one line each). None when nothing gives power data."""
    collectors, why = open_energy_collectors(
        names, sysfs=Path(sysfs), procfs=Path(procfs), interval=interval
    )
    if not collectors:
        return None, why

    def sample() -> dict[Part, float]:
        readings: list[Any] = []
        for col in collectors:
            try:
                readings.extend(col.collect())
            except Exception:  # this collector's sample is missing; the others still count
                continue
        return parts_from_readings(readings)

    return sample, why
