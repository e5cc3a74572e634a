"""Hardware counters of every instrumented process through perf_event_open(2), called with ctypes.

Cycles, instructions, cache references and misses, and last-level-cache loads and load misses, per
process (all its threads). Each thread present when the process is first seen gets one counting
event per counter with ``inherit`` set, so threads it creates later are counted too and reading the
event sums them (what ``perf stat -p`` does). Counts are user-space only (``exclude_kernel``), the
most ``kernel.perf_event_paranoid`` = 2 (the usual default) lets an unprivileged daemon count, so
the numbers mean the same thing on every host.

"No data" rather than an error: a kernel without perf events, ``perf_event_paranoid`` = 3 (Debian's
"no unprivileged perf" setting) for a non-root daemon, and machines without a PMU (most VMs), where
the kernel answers ENOENT for hardware events.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import platform
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ortel.core import catalog
from ortel.core.catalog import MetricDef
from ortel.core.multiproc_files import instrumented_pids, process_start_ticks
from ortel.core.readings import Reading, reading

from .base import Collector, CollectorSpec, NoDataError
from .process import parse_pid_stat

log = logging.getLogger("ortel.exporter")

# include/uapi/linux/perf_event.h
PERF_TYPE_HARDWARE = 0
PERF_TYPE_SOFTWARE = 1
PERF_TYPE_HW_CACHE = 3
PERF_COUNT_HW_CPU_CYCLES = 0
PERF_COUNT_HW_INSTRUCTIONS = 1
PERF_COUNT_HW_CACHE_REFERENCES = 2
PERF_COUNT_HW_CACHE_MISSES = 3
PERF_COUNT_HW_CACHE_LL = 2
PERF_COUNT_HW_CACHE_OP_READ = 0
PERF_COUNT_HW_CACHE_RESULT_ACCESS = 0
PERF_COUNT_HW_CACHE_RESULT_MISS = 1
PERF_FORMAT_TOTAL_TIME_ENABLED = 1 << 0
PERF_FORMAT_TOTAL_TIME_RUNNING = 1 << 1
FLAG_INHERIT = 1 << 1
FLAG_EXCLUDE_KERNEL = 1 << 5
FLAG_EXCLUDE_HV = 1 << 6
PERF_FLAG_FD_CLOEXEC = 1 << 3

# __NR_perf_event_open per architecture (asm/unistd*.h).
SYSCALL_NUMBERS = {
    "x86_64": 298,
    "amd64": 298,
    "i386": 336,
    "i686": 336,
    "aarch64": 241,
    "arm64": 241,
    "riscv64": 241,
    "loongarch64": 241,
    "armv7l": 364,
    "ppc64le": 319,
    "ppc64": 319,
    "s390x": 331,
}

# Errors meaning "this machine cannot count hardware events", not "something broke".
_NO_PMU = {errno.ENOENT, errno.EOPNOTSUPP, errno.ENODEV, errno.ENOSYS}
_FORBIDDEN = {errno.EACCES, errno.EPERM}


class PerfEventAttr(ctypes.Structure):
    """``struct perf_event_attr`` up to ``config2`` (PERF_ATTR_SIZE_VER1, 72 bytes); the bit
    fields after ``read_format`` are one 64-bit ``flags`` word."""

    _fields_ = [
        ("type", ctypes.c_uint32),
        ("size", ctypes.c_uint32),
        ("config", ctypes.c_uint64),
        ("sample_period", ctypes.c_uint64),
        ("sample_type", ctypes.c_uint64),
        ("read_format", ctypes.c_uint64),
        ("flags", ctypes.c_uint64),
        ("wakeup_events", ctypes.c_uint32),
        ("bp_type", ctypes.c_uint32),
        ("config1", ctypes.c_uint64),
        ("config2", ctypes.c_uint64),
    ]


def counting_attr(type_: int, config: int, inherit: bool = True) -> PerfEventAttr:
    """A counting (not sampling) user-space event that reports its enabled and running times."""
    attr = PerfEventAttr()
    attr.type = type_
    attr.size = ctypes.sizeof(PerfEventAttr)
    attr.config = config
    attr.read_format = PERF_FORMAT_TOTAL_TIME_ENABLED | PERF_FORMAT_TOTAL_TIME_RUNNING
    attr.flags = FLAG_EXCLUDE_KERNEL | FLAG_EXCLUDE_HV | (FLAG_INHERIT if inherit else 0)
    return attr


class PerfSyscalls:
    """The kernel boundary: perf_event_open(2), read(2) and close(2) on the event fds."""

    def __init__(self, machine: str | None = None) -> None:
        machine = machine or platform.machine()
        self.number = SYSCALL_NUMBERS.get(machine.lower())
        self._libc = ctypes.CDLL(None, use_errno=True) if self.number is not None else None

    def open(self, attr: PerfEventAttr, pid: int, cpu: int = -1) -> int:
        """An event fd; raises OSError with the kernel's errno."""
        if self._libc is None or self.number is None:
            raise OSError(errno.ENOSYS, "perf_event_open: unknown syscall number on this CPU")
        fd = self._libc.syscall(
            self.number, ctypes.byref(attr), pid, cpu, -1, ctypes.c_ulong(PERF_FLAG_FD_CLOEXEC)
        )
        if fd < 0:
            e = ctypes.get_errno()
            raise OSError(e, f"perf_event_open: {os.strerror(e)}")
        return int(fd)

    def read(self, fd: int) -> tuple[int, int, int]:
        """(count, time enabled ns, time running ns) for PERF_FORMAT_TOTAL_TIME_ENABLED|RUNNING."""
        raw = os.read(fd, 24)
        if len(raw) != 24:
            raise OSError(errno.EIO, f"perf event read returned {len(raw)} bytes, expected 24")
        value, enabled, running = struct.unpack("=QQQ", raw)
        return value, enabled, running

    def close(self, fd: int) -> None:
        os.close(fd)


@dataclass(frozen=True)
class Counter:
    event: str  # the label on ortel_process_hw_counter_running_ratio
    type: int
    config: int
    metric: MetricDef


def _cache(result: int) -> int:
    return (
        PERF_COUNT_HW_CACHE_LL
        | (PERF_COUNT_HW_CACHE_OP_READ << 8)
        | (result << 16)  # (id) | (op << 8) | (result << 16), perf_event_open(2)
    )


COUNTERS: tuple[Counter, ...] = (
    Counter("cycles", PERF_TYPE_HARDWARE, PERF_COUNT_HW_CPU_CYCLES, catalog.PROCESS_CYCLES),
    Counter(
        "instructions", PERF_TYPE_HARDWARE, PERF_COUNT_HW_INSTRUCTIONS, catalog.PROCESS_INSTRUCTIONS
    ),
    Counter(
        "cache_references",
        PERF_TYPE_HARDWARE,
        PERF_COUNT_HW_CACHE_REFERENCES,
        catalog.PROCESS_CACHE_REFERENCES,
    ),
    Counter(
        "cache_misses", PERF_TYPE_HARDWARE, PERF_COUNT_HW_CACHE_MISSES, catalog.PROCESS_CACHE_MISSES
    ),
    Counter(
        "llc_loads",
        PERF_TYPE_HW_CACHE,
        _cache(PERF_COUNT_HW_CACHE_RESULT_ACCESS),
        catalog.PROCESS_LLC_LOADS,
    ),
    Counter(
        "llc_load_misses",
        PERF_TYPE_HW_CACHE,
        _cache(PERF_COUNT_HW_CACHE_RESULT_MISS),
        catalog.PROCESS_LLC_LOAD_MISSES,
    ),
)


@dataclass
class Attached:
    """The event fds of one process, per counter (one fd per thread present at attach time)."""

    pid: int
    start: int  # start ticks: a reused pid is a different process
    name: str
    fds: dict[str, list[int]] = field(default_factory=dict)
    last: dict[str, float] = field(default_factory=dict)  # last exported total, per counter
    previous: tuple[float, float] | None = None  # (instructions, cycles) at the last collect


class PerfCollector(Collector):
    name = "perf"

    def __init__(
        self,
        procfs: Path,
        pids: Callable[[], Iterable[int]],
        syscalls: PerfSyscalls | None = None,
        is_root: bool | None = None,
    ) -> None:
        self.procfs = Path(procfs)
        self.pids = pids
        self.sys = syscalls if syscalls is not None else PerfSyscalls()
        self.is_root = is_root if is_root is not None else os.geteuid() == 0
        self.supported: tuple[Counter, ...] | None = None  # known after the first probe
        self.attached: dict[int, Attached] = {}
        self.refused: set[tuple[int, int]] = set()  # (pid, start) we may not count: not retried

    # -- availability --------------------------------------------------------------------------
    def paranoid(self) -> int:
        path = self.procfs / "sys" / "kernel" / "perf_event_paranoid"
        try:
            return int(path.read_text().strip())
        except FileNotFoundError:
            raise NoDataError(f"{path} does not exist: kernel built without perf events") from None

    def probe(self) -> tuple[Counter, ...]:
        """The counters this machine can count for this daemon, or NoDataError saying why not."""
        level = self.paranoid()
        if level >= 3 and not self.is_root:
            raise NoDataError(
                f"kernel.perf_event_paranoid = {level} forbids perf events to unprivileged "
                "processes: run the daemon as root or set it to 2"
            )
        ok: list[Counter] = []
        for c in COUNTERS:
            try:
                fd = self.sys.open(counting_attr(c.type, c.config, inherit=False), 0)
            except OSError as e:
                if e.errno in _FORBIDDEN:
                    raise NoDataError(
                        f"perf_event_open refused ({errno.errorcode.get(e.errno, e.errno)}) with "
                        f"kernel.perf_event_paranoid = {level}"
                    ) from None
                if e.errno in _NO_PMU:
                    continue  # this counter is not on this CPU (or there is no PMU at all)
                raise
            self.sys.close(fd)
            ok.append(c)
        if not ok:
            raise NoDataError(
                "no hardware performance counters: perf_event_open answers ENOENT for hardware "
                "events (a VM without PMU passthrough, or a CPU the kernel has no PMU driver for)"
            )
        return tuple(ok)

    # -- per process ---------------------------------------------------------------------------
    def _threads(self, pid: int) -> list[int]:
        return sorted(int(p.name) for p in (self.procfs / str(pid) / "task").iterdir())

    def _attach(self, pid: int, start: int, counters: tuple[Counter, ...]) -> Attached | None:
        try:
            name = parse_pid_stat((self.procfs / str(pid) / "stat").read_text()).name
            tids = self._threads(pid)
        except (FileNotFoundError, ProcessLookupError):
            return None  # exited
        a = Attached(pid, start, name)
        try:
            for c in counters:
                fds = a.fds.setdefault(c.event, [])
                for tid in tids:
                    try:
                        fds.append(self.sys.open(counting_attr(c.type, c.config), tid))
                    except OSError as e:
                        if e.errno != errno.ESRCH:  # ESRCH: that thread just exited
                            raise
        except OSError as e:
            self._close(a)
            if e.errno in _FORBIDDEN:
                log.info("perf: not allowed to count pid %d (another user's process?)", pid)
                self.refused.add((pid, start))
                return None
            if e.errno in (errno.EMFILE, errno.ENFILE):  # one fd per thread and counter
                log.warning(
                    "perf: out of file descriptors counting pid %d (%d threads x %d counters): "
                    "raise the daemon's open-file limit (ulimit -n, LimitNOFILE=)",
                    pid,
                    len(tids),
                    len(counters),
                )
                self.refused.add((pid, start))
                return None
            raise
        return a

    def _close(self, a: Attached) -> None:
        for fds in a.fds.values():
            for fd in fds:
                try:
                    self.sys.close(fd)
                except OSError:
                    pass
        a.fds.clear()

    def _read(self, a: Attached, counters: tuple[Counter, ...]) -> list[Reading]:
        pl = {"pid": str(a.pid), "name": a.name, "role": "instrumented"}
        out: list[Reading] = []
        totals: dict[str, float] = {}
        for c in counters:
            fds = a.fds.get(c.event)
            if not fds:
                continue
            value = enabled = running = 0
            for fd in fds:
                v, en, run = self.sys.read(fd)
                value, enabled, running = value + v, enabled + en, running + run
            if running == 0:
                continue  # never got onto the PMU: unknown, not 0
            # Scale up for multiplexing, as perf stat does; never let the exported total go down
            # (a counter that decreases would read as a reset).
            total = max(value * enabled / running if running < enabled else float(value), 0.0)
            total = max(total, a.last.get(c.event, 0.0))
            a.last[c.event] = totals[c.event] = total
            out.append(reading(c.metric, total, method="counted", **pl))
            out.append(reading(catalog.PROCESS_HW_RUNNING, running / enabled, event=c.event, **pl))
        if "instructions" in totals and "cycles" in totals:
            now = (totals["instructions"], totals["cycles"])
            if a.previous is not None and now[1] > a.previous[1]:
                ipc = (now[0] - a.previous[0]) / (now[1] - a.previous[1])
                out.append(reading(catalog.PROCESS_IPC, ipc, method="counted", **pl))
            a.previous = now
        return out

    def collect(self) -> Iterator[Reading]:
        if self.supported is None:
            self.supported = self.probe()
        counters = self.supported
        wanted = set(self.pids())
        out: list[Reading] = []
        for pid in sorted(wanted | set(self.attached)):
            a = self.attached.get(pid)
            start = process_start_ticks(pid, self.procfs) if pid in wanted else 0
            if a is not None and (pid not in wanted or a.start != start):
                self._close(a)  # gone, or the pid now belongs to another process
                del self.attached[pid]
                a = None
            if a is None and pid in wanted and start and (pid, start) not in self.refused:
                a = self._attach(pid, start, counters)
                if a is None:
                    continue
                self.attached[pid] = a
            if a is not None:
                out += self._read(a, counters)
        yield from out

    def close(self) -> None:
        for a in self.attached.values():
            self._close(a)
        self.attached.clear()


SPEC = CollectorSpec(
    name="perf",
    enabled_by_default=True,
    factory=lambda o: PerfCollector(o.procfs, pids=lambda: instrumented_pids(o.multiproc_dir)),
    help="Hardware counters of every instrumented process: cycles, instructions (IPC), cache "
    "references and misses, LLC loads and misses (perf_event_open; user space only; no data "
    "without a PMU or when perf_event_paranoid forbids it).",
)
