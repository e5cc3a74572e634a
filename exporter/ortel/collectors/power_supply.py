"""Linux power supplies: batteries, AC adapters, USB-C ports (``<sysfs>/class/power_supply``).

Each supply directory's files (Documentation/ABI/testing/sysfs-class-power) in base units: power
(µW), stored energy (µWh), voltage (µV), current (µA), capacity (%), online, status. A file the
supply lacks, or that its driver cannot answer right now (ENODATA while a battery is absent), is
left out; the rest of the supply is still reported.
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

from ortel.core import catalog
from ortel.core.cardinality import clean_label
from ortel.core.catalog import MetricDef
from ortel.core.readings import Reading, reading

from .base import Collector, CollectorSpec, NoDataError

# file -> (metric, factor to the base unit). Exact fractions so that the exported float is the
# one nearest the true value (µWh -> J is x0.0036, which a float cannot hold exactly).
VALUES: dict[str, tuple[MetricDef, Fraction]] = {
    "online": (catalog.POWER_SUPPLY_ONLINE, Fraction(1)),
    "capacity": (catalog.POWER_SUPPLY_CAPACITY, Fraction(1, 100)),
    "power_now": (catalog.POWER_SUPPLY_POWER, Fraction(1, 10**6)),
    "energy_now": (catalog.POWER_SUPPLY_ENERGY, Fraction(36, 10**4)),
    "energy_full": (catalog.POWER_SUPPLY_ENERGY_FULL, Fraction(36, 10**4)),
    "energy_full_design": (catalog.POWER_SUPPLY_ENERGY_FULL_DESIGN, Fraction(36, 10**4)),
    "voltage_now": (catalog.POWER_SUPPLY_VOLTAGE, Fraction(1, 10**6)),
    "current_now": (catalog.POWER_SUPPLY_CURRENT, Fraction(1, 10**6)),
}
# The status file's values (power_supply_sysfs.c); label values without spaces.
STATUSES = ("unknown", "charging", "discharging", "not_charging", "full")


def _text(path: Path) -> str | None:
    try:
        return path.read_bytes().decode(errors="replace").strip()
    except OSError:
        return None  # absent, or the driver answers ENODATA/EIO for now


def _status_value(text: str) -> str:
    return "_".join(text.lower().split())


class PowerSupplyCollector(Collector):
    name = "power_supply"

    def __init__(self, sysfs: Path) -> None:
        self.sysfs = Path(sysfs)

    def _supply(self, d: Path) -> list[Reading]:
        supply = clean_label(d.name)
        out: list[Reading] = []
        kind = _text(d / "type")
        if kind is not None:
            out.append(reading(catalog.POWER_SUPPLY_INFO, 1, power_supply=supply, type=kind))
        for fname, (metric, factor) in VALUES.items():
            text = _text(d / fname)
            try:
                raw = None if text is None else int(text)
            except ValueError:
                continue
            if raw is not None:
                out.append(reading(metric, float(raw * factor), power_supply=supply))
        status = _text(d / "status")
        if status:
            current = _status_value(status)
            # A status outside the kernel's list still gets its series, at 1.
            for s in dict.fromkeys((*STATUSES, current)):
                value = 1 if s == current else 0
                out.append(
                    reading(catalog.POWER_SUPPLY_STATUS, value, power_supply=supply, status=s)
                )
        return out

    def collect(self) -> Iterator[Reading]:
        base = self.sysfs / "class" / "power_supply"
        try:
            supplies = sorted(base.iterdir())
        except OSError as e:
            raise NoDataError(f"no power supplies in {base}: {e.strerror or e}") from e
        out = [r for d in supplies for r in self._supply(d)]
        if not out:
            raise NoDataError(f"no power supply in {base} reports anything")
        yield from out


SPEC = CollectorSpec(
    name="power_supply",
    enabled_by_default=True,
    factory=lambda o: PowerSupplyCollector(o.sysfs),
    help="Batteries, AC adapters and USB power: power, stored energy, voltage, current, charge, "
    "online and charging status (/sys/class/power_supply).",
    metrics=(
        catalog.POWER_SUPPLY_INFO,
        catalog.POWER_SUPPLY_STATUS,
        catalog.POWER_SUPPLY_ONLINE,
        catalog.POWER_SUPPLY_CAPACITY,
        catalog.POWER_SUPPLY_POWER,
        catalog.POWER_SUPPLY_ENERGY,
        catalog.POWER_SUPPLY_ENERGY_FULL,
        catalog.POWER_SUPPLY_ENERGY_FULL_DESIGN,
        catalog.POWER_SUPPLY_VOLTAGE,
        catalog.POWER_SUPPLY_CURRENT,
    ),
)
