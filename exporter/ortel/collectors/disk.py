"""Host storage I/O per whole disk: bytes and completed operations (``<procfs>/diskstats``).

The host-wide counterpart of the per-process ``/proc/<pid>/io`` bytes, and what the ETW collector
reports from DiskIO events on Windows under the same names. Partitions are left out (their I/O is
already in their disk's line), and so are RAM-backed and loop devices, as node_exporter does.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ortel.core import catalog
from ortel.core.readings import Reading, reading

from .base import Collector, CollectorSpec, NoDataError

SECTOR = 512  # diskstats counts 512-byte sectors whatever the device's own sector size

# Not storage (RAM disks, compressed swap in RAM, loop files, floppies).
_VIRTUAL = re.compile(r"^(z?ram|loop|fd)\d+$")
# Partitions, for when sysfs cannot tell (node_exporter's default pattern).
_PARTITION = re.compile(r"^((h|s|v|xv)d[a-z]+\d+|nvme\d+n\d+p\d+|mmcblk\d+p\d+)$")


@dataclass(frozen=True)
class DiskStats:
    device: str
    reads: int
    sectors_read: int
    writes: int
    sectors_written: int


def parse_diskstats(text: str) -> list[DiskStats]:
    """One entry per line. Kernels print 14 (< 4.18), 18 (< 5.5) or 20 fields; the first 7 counters
    after the name have the same meaning in all of them."""
    out: list[DiskStats] = []
    for line in text.splitlines():
        f = line.split()
        if not f:
            continue
        if len(f) < 14:
            raise ValueError(f"diskstats: {len(f)} fields, expected at least 14 in {line!r}")
        out.append(DiskStats(f[2], int(f[3]), int(f[5]), int(f[7]), int(f[9])))
    return out


class DiskCollector(Collector):
    name = "disk"

    def __init__(self, procfs: Path, sysfs: Path) -> None:
        self.procfs = Path(procfs)
        self.sysfs = Path(sysfs)

    def _whole_disks(self) -> set[str] | None:
        """Names in ``<sysfs>/block`` (whole disks only; '/' in a name is '!' there), or None."""
        try:
            return {p.name.replace("!", "/") for p in (self.sysfs / "block").iterdir()}
        except OSError:
            return None

    def collect(self) -> Iterator[Reading]:
        path = self.procfs / "diskstats"
        try:
            text = path.read_text()
        except (FileNotFoundError, NotADirectoryError, PermissionError) as e:
            raise NoDataError(f"cannot read {path}: {e.strerror or e}") from e
        disks = self._whole_disks()
        out: list[Reading] = []
        for d in parse_diskstats(text):
            if _VIRTUAL.match(d.device):
                continue
            if (d.device not in disks) if disks is not None else _PARTITION.match(d.device):
                continue
            for direction, ops, sectors in (
                ("read", d.reads, d.sectors_read),
                ("write", d.writes, d.sectors_written),
            ):
                out.append(
                    reading(catalog.DISK_IO, sectors * SECTOR, device=d.device, direction=direction)
                )
                out.append(
                    reading(catalog.DISK_OPERATIONS, ops, device=d.device, direction=direction)
                )
        yield from out


SPEC = CollectorSpec(
    name="disk",
    enabled_by_default=True,
    factory=lambda o: DiskCollector(o.procfs, o.sysfs),
    help="Bytes and completed operations read and written per whole disk (/proc/diskstats).",
)
