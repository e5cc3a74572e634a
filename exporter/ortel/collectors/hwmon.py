"""Hardware monitoring chips: ``<sysfs>/class/hwmon/hwmon*``.

Temperatures with their human-readable ``tempN_label`` (node_exporter#2664 asks for exactly this),
critical and max thresholds, fans, power (``powerN_average``, else ``powerN_input``) and energy
counters, converted from the kernel's milli-degrees, µW and µJ to base units. A sensor file that
cannot be read (drivers answer EIO/ENODATA while a device sleeps) is skipped, not an error.
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
_ATTR_RE = re.compile(r"^(temp|fan|power|energy)(\d+)_([a-z_]+)$")
_KIND_ORDER = {"temp": 0, "fan": 1, "power": 2, "energy": 3}


@dataclass(frozen=True)
class Chip:
    label: str  # the chip label value: its name, made unique with its device where names repeat
    attrs: Path  # the directory holding the sensor files


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
    found: list[tuple[int, str, str, Path]] = []  # (N, name, device, attribute dir)
    for entry in entries:
        m = _HWMON_RE.match(entry.name)
        if not m:
            continue
        # Old drivers (before Linux 3.x conversions) keep name and sensors in hwmonN/device/.
        attrs = entry if (entry / "name").exists() else entry / "device"
        name = _text(attrs / "name") or entry.name
        if (entry / "device").exists():
            device = os.path.basename(os.path.realpath(entry / "device"))
        else:
            device = entry.name  # virtual chips have no device: hwmonN is all there is
        found.append((int(m.group(1)), name, device, attrs))
    found.sort()
    # Two chips with one name (two NVMe drives, two coretemp sockets) get their device appended;
    # the device name survives reboots, hwmonN numbering does not.
    repeats = Counter(name for _, name, _, _ in found)
    return [
        Chip(name if repeats[name] == 1 else f"{name}_{device}", attrs)
        for _, name, device, attrs in found
    ]


def _sensors(attrs: Path) -> dict[tuple[str, int], dict[str, Path]]:
    sensors: dict[tuple[str, int], dict[str, Path]] = {}
    try:
        names = os.listdir(attrs)
    except OSError:
        return sensors
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
        if kind == "temp":
            for attr, metric in (
                ("input", catalog.TEMPERATURE),
                ("crit", catalog.TEMPERATURE_CRITICAL),
                ("max", catalog.TEMPERATURE_MAX),
            ):
                if attr in files and (v := _int(files[attr])) is not None:
                    out.append(reading(metric, v / 1000.0, **hw))  # millidegree Celsius
        elif kind == "fan":
            if "input" in files and (v := _int(files["input"])) is not None:
                out.append(reading(catalog.FAN_SPEED, v, **hw))
        elif kind == "power":
            # average covers the driver's averaging interval; input is instantaneous.
            for attr in ("average", "input"):
                if attr in files and (v := _int(files[attr])) is not None:
                    out.append(
                        reading(
                            catalog.POWER, v / 1e6, source="hwmon", device=chip.label, zone=sensor
                        )
                    )
                    break
        elif kind == "energy" and "input" in files and (v := _int(files["input"])) is not None:
            out.append(reading(catalog.HWMON_ENERGY, v / 1e6, chip=chip.label, sensor=sensor))
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
    help="Measured temperatures (with sensor labels) and thresholds, fan speeds, power and energy "
    "sensors of hardware monitoring chips (/sys/class/hwmon).",
    metrics=(
        catalog.TEMPERATURE,
        catalog.TEMPERATURE_CRITICAL,
        catalog.TEMPERATURE_MAX,
        catalog.FAN_SPEED,
        catalog.POWER,
        catalog.HWMON_ENERGY,
    ),
)
