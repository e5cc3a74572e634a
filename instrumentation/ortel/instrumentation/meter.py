"""Energy of one block, measured in-process, for processes without the daemon::

    with ortel.instrumentation.energy(model="resnet50") as e:
        for batch in batches:
            session.run(None, {"input": batch})
    print(e.joules, e.source)  # e.g. 41.7 measured

The block reads the energy counters the daemon's collectors read (through the collector
registry, imported only when the first block runs) and counts them by the one energy rule the
daemon and ``ortel profile`` use too (``ortel.core.energy``): RAPL package and DRAM zones or
macOS powermetrics (measured), else the CPU estimate from utilisation (estimated), and every
NVIDIA GPU's energy counter (measured). ``e.joules`` is what those counters rose by while the
block ran: the whole host's (and GPUs') energy, everything else it ran included, not a share
attributed to this process (the daemon does that: docs/energy.md). It is also added to
``ortel_inference_block_energy_joules_total{model, device, source}`` of this process, which the
daemon merges like every other series and ``start_http_server`` serves.

Unknown is never 0: where no counter can be read, or none moved during the block (blocks
shorter than a counter's update period: RAPL about 1 ms, the estimate one /proc/stat tick, 10 ms),
``e.joules`` is None; ``e.why`` says why.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from time import perf_counter
from typing import Any

from ortel.core.energy import ENERGY_COLLECTORS, energy_counters, totals
from ortel.core.energy import source_label as _source_label
from ortel.core.readings import Reading

from .recorder import RECORDER, Recorder, Series

Part = tuple[str, str]  # (device, source)


def counters(readings: Iterable[Reading]) -> dict[Part, float]:
    """Cumulative joules per (device, source) in one sample of the energy collectors' readings,
    by the one energy rule (``ortel.core.energy``)."""
    return totals(energy_counters(readings))


def source_label(parts: Iterable[Part]) -> str | None:
    """measured, estimated, or estimated+measured (a CPU estimate beside a measured GPU)."""
    return _source_label(source for _, source in parts)


def _env_float(name: str) -> float | None:
    value = os.environ.get(name)
    try:
        return float(value) if value else None
    except ValueError:
        return None


class EnergyMeter:
    """The energy collectors that can be read here, opened on first use and primed once.

    ``sysfs``/``procfs`` default to ORTEL_SYSFS/ORTEL_PROCFS (as for ``ortel serve``), else
    /sys and /proc; the estimate's profile to ORTEL_CPU_IDLE_WATTS/ORTEL_CPU_MAX_WATTS, else the
    daemon's defaults.
    """

    def __init__(
        self,
        sysfs: str | Path | None = None,
        procfs: str | Path | None = None,
        collectors: Sequence[str] = ENERGY_COLLECTORS,
        cpu_idle_watts: float | None = None,
        cpu_max_watts: float | None = None,
    ) -> None:
        self.sysfs = Path(sysfs or os.environ.get("ORTEL_SYSFS") or "/sys")
        self.procfs = Path(procfs or os.environ.get("ORTEL_PROCFS") or "/proc")
        self.names = tuple(collectors)
        self.cpu_idle_watts = cpu_idle_watts or _env_float("ORTEL_CPU_IDLE_WATTS")
        self.cpu_max_watts = cpu_max_watts or _env_float("ORTEL_CPU_MAX_WATTS")
        self.unavailable: list[str] = []  # "collector: why" for each that gives no energy here
        self._collectors: list[Any] | None = None
        self._lock = threading.Lock()

    def _open(self) -> list[Any]:
        # Imported here, not at module import: the shim stays free of the collectors until
        # someone measures energy.
        from ortel.collectors.power import open_energy_collectors

        kw: dict[str, Any] = {"sysfs": self.sysfs, "procfs": self.procfs}
        if self.cpu_idle_watts is not None:
            kw["cpu_idle_watts"] = self.cpu_idle_watts
        if self.cpu_max_watts is not None:
            kw["cpu_max_watts"] = self.cpu_max_watts
        found, why = open_energy_collectors(self.names, **kw)
        self.unavailable.extend(why)
        return found

    def read(self) -> dict[Part, float]:
        """Every readable counter now (cumulative joules); a collector that fails is left out."""
        with self._lock:
            if self._collectors is None:
                self._collectors = self._open()
            readings: list[Reading] = []
            for col in self._collectors:
                try:
                    readings.extend(col.collect())
                except Exception:  # this part is unknown for this block; the others count
                    continue
            return counters(readings)

    def close(self) -> None:
        with self._lock:
            for col in self._collectors or ():
                col.close()
            self._collectors = None


_DEFAULT: EnergyMeter | None = None
_DEFAULT_LOCK = threading.Lock()


def default_meter() -> EnergyMeter:
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = EnergyMeter()
        return _DEFAULT


class energy:  # noqa: N801 - used like a function: ``with energy(model=...) as e``
    """Measure the host's energy while a block runs; see the module docstring.

    After the block: ``joules`` (None when unknown), ``source`` (measured, estimated,
    estimated+measured, or None), ``parts`` ({(device, source): joules}), ``seconds``, ``why``.
    With ``record=True`` (default) the joules are added to the model's
    ``ortel_inference_block_energy_joules_total``, also when the block raised (the energy was
    spent).
    """

    __slots__ = (
        *("_meter", "_series", "_recorder", "_before", "_t0"),
        *("joules", "source", "parts", "seconds"),
    )

    def __init__(
        self,
        model: str,
        *,
        provider: str = "unknown",
        meter: EnergyMeter | None = None,
        record: bool = True,
        recorder: Recorder = RECORDER,
    ) -> None:
        self._meter = meter or default_meter()
        self._recorder = recorder
        self._series: Series | None = recorder.series(model, provider) if record else None
        self._before: dict[Part, float] = {}
        self._t0 = 0.0
        self.joules: float | None = None
        self.source: str | None = None
        self.parts: dict[Part, float] = {}
        self.seconds = 0.0

    @property
    def why(self) -> str:
        """Why ``joules`` is None ("" when it is known)."""
        if self.joules is not None:
            return ""
        if self._meter.unavailable and not self._before:
            return "no energy counter here: " + "; ".join(self._meter.unavailable)
        return "no counter moved during the block (shorter than its update period?)"

    def __enter__(self) -> energy:
        self._before = self._meter.read()
        self._t0 = perf_counter()
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.seconds = perf_counter() - self._t0
        after = self._meter.read()
        # A counter that did not move measured nothing (hardware always draws power; the
        # estimate needs a clock tick): unknown, not 0 J.
        self.parts = {
            k: after[k] - v for k, v in self._before.items() if k in after and after[k] > v
        }
        self.joules = sum(self.parts.values()) if self.parts else None
        self.source = source_label(self.parts)
        if self._series is not None and self.parts:
            self._recorder.record_energy(self._series, self.parts)

    async def __aenter__(self) -> energy:
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.__exit__(exc_type, exc, tb)
