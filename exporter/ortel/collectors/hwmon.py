"""Hardware monitoring chips: ``<sysfs>/class/hwmon/hwmon*``.

Every sensor node_exporter's hwmon collector exports from the same files, with the same values:
temperatures, voltages (``inN``), currents, power, energy and fans, each with its min/max/crit
thresholds where the driver has them and its human-readable ``<sensor>_label``, converted from
the kernel's milli-degrees, mV, mA, µW and µJ to base units. A chip without a ``name`` file is
named after its ``hwmonN`` directory, as node_exporter does. A sensor file that cannot be read
(drivers answer EIO/ENODATA while a device sleeps) is skipped, not an error.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ortel.core import catalog
from ortel.core.readings import Reading, reading

from .base import Collector, CollectorSpec, NoDataError

_HWMON_RE = re.compile(r"^hwmon(\d+)$")
_ATTR_RE = re.compile(r"^(temp|in|curr|fan|power|energy)(\d+)_([a-z_]+)$")
# kind -> (what the sysfs unit is divided by for the base unit, attribute -> metric), in export
# order. Dividing (not multiplying by 0.001) keeps 38850 m°C exactly 38.85.
_KINDS: dict[str, tuple[int, dict[str, catalog.MetricDef]]] = {
    "temp": (
        1000,  # millidegree Celsius
        {
            "input": catalog.TEMPERATURE,
            "min": catalog.TEMPERATURE_MIN,
            "max": catalog.TEMPERATURE_MAX,
            "crit": catalog.TEMPERATURE_CRITICAL,
        },
    ),
    "in": (
        1000,  # millivolts
        {
            "input": catalog.VOLTAGE,
            "min": catalog.VOLTAGE_MIN,
            "max": catalog.VOLTAGE_MAX,
            "crit": catalog.VOLTAGE_CRITICAL,
        },
    ),
    "curr": (
        1000,  # milliamperes
        {
            "input": catalog.CURRENT,
            "min": catalog.CURRENT_MIN,
            "max": catalog.CURRENT_MAX,
            "crit": catalog.CURRENT_CRITICAL,
        },
    ),
    "fan": (
        1,  # rpm
        {"input": catalog.FAN_SPEED, "min": catalog.FAN_SPEED_MIN, "max": catalog.FAN_SPEED_MAX},
    ),
    "power": (
        1_000_000,  # microwatts
        {
            "input": catalog.HWMON_POWER,
            "average": catalog.HWMON_POWER_AVERAGE,
            "max": catalog.HWMON_POWER_MAX,
            "crit": catalog.HWMON_POWER_CRITICAL,
        },
    ),
    "energy": (1_000_000, {"input": catalog.HWMON_ENERGY}),  # microjoules
}
_KIND_ORDER = {kind: i for i, kind in enumerate(_KINDS)}


@dataclass(frozen=True)
class Chip:
    label: str  # the chip label value: its name, made unique with its device where names repeat
    attrs: Path  # hwmonN: its sensor files, or old drivers' in hwmonN/device


def _text(path: Path) -> str | None:
    try:
        return path.read_bytes().decode(errors="replace").strip()  # labels are drivers' bytes
    except OSError:
        return None


def _int(path: Path) -> int | None:
    text = _text(path)
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        return None


def discover(sysfs: Path) -> list[Chip]:
    base = Path(sysfs) / "class" / "hwmon"
    try:
        entries = list(base.iterdir())
    except OSError as e:
        raise NoDataError(f"no hwmon in {base}: {e.strerror or e}") from e
    found: list[tuple[int, str, str, Path]] = []  # (N, name, device, hwmonN)
    for entry in entries:
        m = _HWMON_RE.match(entry.name)
        if not m:
            continue
        # Old drivers (before Linux 3.x conversions) keep name and sensors in hwmonN/device/;
        # a chip with no name anywhere is called hwmonN, as node_exporter calls it.
        name = _text(entry / "name") or _text(entry / "device" / "name") or entry.name
        if (entry / "device").exists():
            device = os.path.basename(os.path.realpath(entry / "device"))
        else:
            device = entry.name  # virtual chips have no device: hwmonN is all there is
        found.append((int(m.group(1)), name, device, entry))
    found.sort()
    # Two chips with one name (two NVMe drives, two coretemp sockets) get their device appended;
    # the device name survives reboots, hwmonN numbering does not. Chips that share a device too
    # (several hwmon under one device) fall back to hwmonN so no series is emitted twice.
    repeats = Counter(name for _, name, _, _ in found)
    labels = [name if repeats[name] == 1 else f"{name}_{dev}" for _, name, dev, _ in found]
    clashes = Counter(labels)
    return [
        Chip(label if clashes[label] == 1 else f"{name}_{entry.name}", entry)
        for label, (_, name, _, entry) in zip(labels, found)
    ]


def _sensors(chip_dir: Path) -> dict[tuple[str, int], dict[str, Path]]:
    # Sensor files live in hwmonN/ (the current ABI) or hwmonN/device/ (old drivers): both are
    # read, as node_exporter reads both. Where both have a file, hwmonN's (the current ABI)
    # wins here; node_exporter takes device/'s. No real driver writes both.
    sensors: dict[tuple[str, int], dict[str, Path]] = {}
    for attrs in (chip_dir / "device", chip_dir):
        try:
            names = os.listdir(attrs)
        except OSError:
            continue
        for fname in names:
            m = _ATTR_RE.match(fname)
            if m:
                sensors.setdefault((m.group(1), int(m.group(2))), {})[m.group(3)] = attrs / fname
    return dict(sorted(sensors.items(), key=lambda kv: (_KIND_ORDER[kv[0][0]], kv[0][1])))


def chip_readings(chip: Chip) -> list[Reading]:
    out: list[Reading] = []
    for (kind, n), files in _sensors(chip.attrs).items():
        sensor = f"{kind}{n}"
        label = _text(files["label"]) if "label" in files else None
        hw = {"chip": chip.label, "sensor": sensor, "label": label or ""}
        scale, metrics = _KINDS[kind]
        values: dict[str, float] = {}
        for attr, metric in metrics.items():
            if attr in files and (v := _int(files[attr])) is not None:
                values[attr] = v / scale if scale != 1 else v
                out.append(reading(metric, values[attr], **hw))
        if kind == "power":
            # The host power domain view: average covers the driver's averaging interval, input
            # is instantaneous.
            w = values.get("average", values.get("input"))
            if w is not None:
                out.append(
                    reading(catalog.POWER, w, source="hwmon", device=chip.label, zone=sensor)
                )
    return out


class HwmonCollector(Collector):
    name = "hwmon"

    def __init__(self, sysfs: Path) -> None:
        self.sysfs = Path(sysfs)

    def collect(self) -> Iterator[Reading]:
        chips = discover(self.sysfs)
        if not chips:
            raise NoDataError(f"no hwmon chips in {self.sysfs / 'class' / 'hwmon'}")
        out: list[Reading] = []
        for chip in chips:
            out += chip_readings(chip)
        yield from out


SPEC = CollectorSpec(
    name="hwmon",
    enabled_by_default=True,
    factory=lambda o: HwmonCollector(o.sysfs),
    help="Measured temperatures, voltages, currents, fan speeds, power and energy of hardware "
    "monitoring chips (/sys/class/hwmon), with sensor labels and thresholds.",
    metrics=(catalog.POWER, *(m for _, metrics in _KINDS.values() for m in metrics.values())),
)
