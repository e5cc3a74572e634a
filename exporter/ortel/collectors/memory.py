"""Host memory: total, available, used, swap, and page faults (``<procfs>/meminfo``, ``vmstat``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ortel.core import catalog
from ortel.core.readings import Reading, reading

from .base import Collector, CollectorSpec, NoDataError


def parse_meminfo(text: str) -> dict[str, int]:
    """``Key:  value [kB]`` lines to bytes (the HugePages_* counts have no unit and stay counts)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        key, sep, rest = line.partition(":")
        fields = rest.split()
        if not sep or not fields or len(fields) > 2:
            raise ValueError(f"meminfo: unexpected line {line!r}")
        value = int(fields[0])
        out[key] = value * 1024 if fields[1:] == ["kB"] else value
    return out


def parse_vmstat(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        key, value = line.split()  # ValueError unless exactly "name value"
        out[key] = int(value)
    return out


class MemoryCollector(Collector):
    name = "memory"

    def __init__(self, procfs: Path) -> None:
        self.procfs = Path(procfs)

    def collect(self) -> Iterator[Reading]:
        path = self.procfs / "meminfo"
        try:
            text = path.read_text()
        except (FileNotFoundError, NotADirectoryError, PermissionError) as e:
            raise NoDataError(f"cannot read {path}: {e.strerror or e}") from e
        mem = parse_meminfo(text)
        try:
            vmstat: dict[str, int] = parse_vmstat((self.procfs / "vmstat").read_text())
        except FileNotFoundError:
            vmstat = {}  # some sandboxes (gVisor, old containers) lack it: memory still reported

        try:
            total = mem["MemTotal"]
        except KeyError:
            raise ValueError("meminfo: no MemTotal") from None
        # MemAvailable exists since Linux 3.14; before that, free + buffers + page cache is the
        # usual estimate.
        available = mem.get("MemAvailable")
        if available is None:
            available = mem.get("MemFree", 0) + mem.get("Buffers", 0) + mem.get("Cached", 0)

        yield reading(catalog.MEMORY_TOTAL, total)
        yield reading(catalog.MEMORY_AVAILABLE, available)
        yield reading(catalog.MEMORY_USED, total - available)
        if "SwapTotal" in mem:
            swap = mem["SwapTotal"]
            yield reading(catalog.SWAP_TOTAL, swap)
            yield reading(catalog.SWAP_USED, swap - mem.get("SwapFree", swap))
        if "pgfault" in vmstat and "pgmajfault" in vmstat:
            # pgfault counts every fault, major ones included.
            yield reading(
                catalog.PAGE_FAULTS, vmstat["pgfault"] - vmstat["pgmajfault"], type="minor"
            )
            yield reading(catalog.PAGE_FAULTS, vmstat["pgmajfault"], type="major")


SPEC = CollectorSpec(
    name="memory",
    enabled_by_default=True,
    factory=lambda o: MemoryCollector(o.procfs),
    help="Host memory total/available/used, swap, and minor/major page faults "
    "(/proc/meminfo, /proc/vmstat).",
)
