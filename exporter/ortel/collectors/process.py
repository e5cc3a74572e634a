"""The daemon's own process and every instrumented process: RSS, CPU, threads, switches, faults,
storage I/O.

Reads ``<procfs>/<pid>/{stat,statm,status,io}`` directly, the way client_python's process collector
does. A pid from the multiprocess directory whose process has exited is skipped, not an error.
``io`` is only readable for processes the daemon may ptrace (same user, or CAP_SYS_PTRACE): where it
is not, that process's I/O series are left out (unknown), never reported as 0.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ortel.core import catalog
from ortel.core.multiproc_files import instrumented_pids
from ortel.core.readings import Reading, reading

from .base import Collector, CollectorSpec, NoDataError

# Errors that mean "the process is gone": its directory vanished (ENOENT) or it exited between
# open() and read() (ESRCH).
_GONE = (FileNotFoundError, ProcessLookupError)


@dataclass(frozen=True)
class ProcStat:
    name: str
    minflt: int
    majflt: int
    utime: int  # clock ticks
    stime: int
    threads: int


def parse_pid_stat(text: str) -> ProcStat:
    """Parse /proc/<pid>/stat. comm (field 2) may hold spaces and parentheses, so it runs from
    the first '(' to the LAST ')'; the numbered fields follow."""
    head, sep, tail = text.rpartition(")")
    _, lparen, name = head.partition("(")
    if not sep or not lparen:
        raise ValueError(f"/proc/<pid>/stat: no (comm) in {text[:80]!r}")
    rest = tail.split()  # rest[0] is field 3 (state): field n is rest[n - 3]
    if len(rest) < 18:
        raise ValueError(f"/proc/<pid>/stat: {len(rest) + 2} fields, expected at least 20")
    return ProcStat(
        name=name,
        minflt=int(rest[10 - 3]),
        majflt=int(rest[12 - 3]),
        utime=int(rest[14 - 3]),
        stime=int(rest[15 - 3]),
        threads=int(rest[20 - 3]),
    )


def parse_status(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key] = value.strip()
    return out


def parse_io(text: str) -> dict[str, int]:
    """``/proc/<pid>/io``: ``name: value`` lines (rchar, wchar, syscr, syscw, read_bytes, ...)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip()] = int(value)
    return out


def _own_pid(procfs: Path) -> int:
    # <procfs>/self names this process as that procfs sees it, which differs from os.getpid()
    # when the daemon runs in a container with the host's /proc mounted as its procfs.
    try:
        return int(os.readlink(procfs / "self"))
    except (OSError, ValueError):
        return os.getpid()


class ProcessCollector(Collector):
    name = "process"

    def __init__(
        self,
        procfs: Path,
        pids: Callable[[], Iterable[int]],
        self_pid: int | None = None,
        clk_tck: int | None = None,
        page_size: int | None = None,
    ) -> None:
        self.procfs = Path(procfs)
        self.pids = pids
        self.self_pid = self_pid if self_pid is not None else _own_pid(self.procfs)
        # Resolved here rather than as default arguments so importing stays portable.
        self.clk_tck = clk_tck if clk_tck is not None else os.sysconf("SC_CLK_TCK")
        self.page_size = page_size if page_size is not None else os.sysconf("SC_PAGE_SIZE")

    def _read(self, pid: int, role: str) -> list[Reading]:
        """Readings for one process; raises one of _GONE if it has exited."""
        d = self.procfs / str(pid)
        stat = parse_pid_stat((d / "stat").read_text())
        resident_pages = int((d / "statm").read_text().split()[1])
        status = parse_status((d / "status").read_text())
        pl = {"pid": str(pid), "name": stat.name, "role": role}
        out = [
            reading(catalog.PROCESS_RSS, resident_pages * self.page_size, **pl),
            reading(catalog.PROCESS_CPU, stat.utime / self.clk_tck, mode="user", **pl),
            reading(catalog.PROCESS_CPU, stat.stime / self.clk_tck, mode="system", **pl),
            reading(catalog.PROCESS_THREADS, stat.threads, **pl),
            reading(catalog.PROCESS_FAULTS, stat.minflt, type="minor", **pl),
            reading(catalog.PROCESS_FAULTS, stat.majflt, type="major", **pl),
        ]
        for key, kind in (
            ("voluntary_ctxt_switches", "voluntary"),
            ("nonvoluntary_ctxt_switches", "involuntary"),
        ):
            if key in status:  # absent before Linux 2.6.23
                out.append(reading(catalog.PROCESS_CTX, int(status[key]), type=kind, **pl))
        out += self._io(d, pl)
        return out

    def _io(self, d: Path, pl: dict[str, str]) -> list[Reading]:
        """Storage bytes from ``<pid>/io``; empty where the kernel or permissions hide them."""
        try:
            io = parse_io((d / "io").read_text())
        except PermissionError:
            return []  # another user's process: unknown, not 0
        except FileNotFoundError:
            if not d.is_dir():
                raise  # the process is gone
            return []  # kernel without CONFIG_TASK_IO_ACCOUNTING
        # read_bytes/write_bytes count what reached the storage layer, which is what ETW's DiskIO
        # events count on Windows; rchar/wchar would include page-cache hits and pipes.
        return [
            reading(catalog.PROCESS_DISK_IO, io[key], direction=direction, **pl)
            for key, direction in (("read_bytes", "read"), ("write_bytes", "write"))
            if key in io
        ]

    def collect(self) -> Iterator[Reading]:
        if not (self.procfs / "stat").is_file():
            raise NoDataError(f"{self.procfs} is not a mounted procfs")
        targets = [(self.self_pid, "daemon")]
        targets += [(p, "instrumented") for p in sorted(set(self.pids())) if p != self.self_pid]
        # Read every process before the first yield, so a failure yields nothing.
        out: list[Reading] = []
        for pid, role in targets:
            try:
                out += self._read(pid, role)
            except _GONE:
                continue  # exited since its snapshot was written: normal, not a failure
        yield from out


SPEC = CollectorSpec(
    name="process",
    enabled_by_default=True,
    factory=lambda o: ProcessCollector(o.procfs, pids=lambda: instrumented_pids(o.multiproc_dir)),
    help="RSS, CPU time, threads, context switches, page faults and storage I/O bytes of the "
    "daemon and of every instrumented process in the multiprocess directory (/proc/<pid>).",
)
