"""Readings derived at scrape time from the latest readings of every collector.

A derivation is any callable ``(readings) -> new readings``; the daemon applies each in order to
what the sampler holds and exports the union (``Derived``). Derivations may keep state (a counter
must never go backwards, and its inputs can vanish for a sample or restart), so they are objects;
``Derived`` serialises the scrapes that call them, so each sees readings in time order.

Carbon: ``ortel_carbon_grams_total{source}`` is energy × grid intensity. It follows its input
energy counters by their increases, so it stays monotonic when an input series disappears for a
while (a collector failing) or restarts from a lower value (the daemon's counters do not survive
a restart; a driver reload resets a GPU's counter).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from ortel.core import catalog
from ortel.core.catalog import MetricDef
from ortel.core.readings import Reading

# World average CO2 intensity of electricity generation: 475 g/kWh (IEA, Global Energy & CO2
# Status Report 2019). Set your grid's figure with --grid-intensity-g-per-kwh.
DEFAULT_GRID_INTENSITY = 475.0
JOULES_PER_KWH = 3.6e6

Derivation = Callable[[Sequence[Reading]], list[Reading]]
DERIVED_METRICS: tuple[MetricDef, ...] = (catalog.CARBON,)  # what derivations emit (for the docs)


def _rapl_source(labels: tuple[str, ...]) -> str | None:
    # Package and DRAM zones are disjoint and together cover what RAPL measures; core and uncore
    # are parts of the package and psys contains it, so counting them would count twice.
    zone = labels[catalog.RAPL_ENERGY.labels.index("zone")]
    return "rapl" if zone.startswith("package") or zone == "dram" else None


def _energy_source(labels: tuple[str, ...]) -> str | None:
    return labels[catalog.ENERGY.labels.index("source")]


# Energy counters that carbon counts, each mapped to its source (None: not counted). hwmon energy
# is left out: its sensors (per core and per socket on amd_energy) overlap in ways no file states.
CARBON_INPUTS: dict[str, tuple[MetricDef, Callable[[tuple[str, ...]], str | None]]] = {
    catalog.RAPL_ENERGY.name: (catalog.RAPL_ENERGY, _rapl_source),
    catalog.GPU_ENERGY.name: (catalog.GPU_ENERGY, lambda _labels: "nvml"),
    catalog.ENERGY.name: (catalog.ENERGY, _energy_source),
}


class Carbon:
    """ortel_carbon_grams_total{source}: the energy counted so far times the grid intensity."""

    def __init__(self, grams_per_kwh: float = DEFAULT_GRID_INTENSITY) -> None:
        self._lock = threading.Lock()
        self.set_intensity(grams_per_kwh)
        self._last: dict[tuple[str, tuple[str, ...]], float] = {}  # input series -> joules
        self._grams: dict[str, float] = {}  # source -> grams so far

    def set_intensity(self, grams_per_kwh: float) -> None:
        """Use a new intensity for energy counted from now on (the total so far stays)."""
        if not grams_per_kwh >= 0:
            raise ValueError(f"grid intensity must be >= 0, got {grams_per_kwh}")
        with self._lock:
            self.grams_per_joule = grams_per_kwh / JOULES_PER_KWH

    def __call__(self, readings: Sequence[Reading]) -> list[Reading]:
        with self._lock:
            for r in readings:
                entry = CARBON_INPUTS.get(r.metric.name)
                if entry is None or not isinstance(r.value, int | float):
                    continue
                source = entry[1](r.labels)
                if source is None:
                    continue
                key = (r.metric.name, r.labels)
                joules = float(r.value)
                last = self._last.get(key)
                # First sight: all of it; a drop: the counter restarted, all of the new value.
                added = joules if last is None or joules < last else joules - last
                self._last[key] = joules
                self._grams[source] = self._grams.get(source, 0.0) + added * self.grams_per_joule
            return [Reading(catalog.CARBON, (s,), g) for s, g in self._grams.items()]


def apply_derivations(
    readings: Sequence[Reading], derivations: Sequence[Derivation]
) -> list[Reading]:
    """The readings followed by what each derivation makes of them (in order)."""
    out = list(readings)
    for derive in derivations:
        out += derive(out)
    return out


class Derived:
    """``source()`` plus what the derivations make of it, taken and derived under one lock.

    Concurrent scrapes must hand the stateful derivations their readings in the order they were
    taken: a slower scrape's older (lower) counter would otherwise look like a restart.
    """

    def __init__(
        self, source: Callable[[], Sequence[Reading]], derivations: Sequence[Derivation]
    ) -> None:
        self.source = source
        self.derivations = list(derivations)
        self._lock = threading.Lock()

    def __call__(self) -> list[Reading]:
        with self._lock:
            return apply_derivations(self.source(), self.derivations)
