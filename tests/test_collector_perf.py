from __future__ import annotations

import errno
import os
import re
from pathlib import Path

import pytest
from helpers import FIXTURES, as_dict, copy_fixture

from ortel.collectors import perf
from ortel.collectors.base import CollectorOptions, NoDataError
from ortel.core import catalog

PROCFS = FIXTURES / "procfs"
PYTHON_TIDS = [1234, *range(1235, 1251)]  # tests/fixtures/procfs/1234/task
WORKER_TIDS = [4321, 4322, 4323, 4330]
PERF_COUNT_SW_TASK_CLOCK = 1
linux_only = pytest.mark.skipif(
    not Path("/proc/sys/kernel").is_dir(), reason="perf_event_open(2) is Linux's"
)


class FakeKernel:
    """Stands in for PerfSyscalls at the syscall boundary: perf_event_open, read and close.

    ``counts[(tid, event)]`` is what reading that thread's event returns: (value, enabled ns,
    running ns). ``fail[(tid, event)]`` or ``fail[event]`` makes the open fail with that errno.
    """

    def __init__(self) -> None:
        self.counts: dict[tuple[int, str], tuple[int, int, int]] = {}
        self.fail: dict[object, int] = {}
        self.open_fds: dict[int, tuple[int, str, perf.PerfEventAttr]] = {}
        self.closed: list[int] = []
        self._next = 100

    @staticmethod
    def event_of(attr: perf.PerfEventAttr) -> str:
        return next(
            c.event for c in perf.COUNTERS if (c.type, c.config) == (attr.type, attr.config)
        )

    def open(self, attr: perf.PerfEventAttr, pid: int, cpu: int = -1) -> int:
        ev = self.event_of(attr)
        code = self.fail.get((pid, ev), self.fail.get(ev))
        if code is not None:
            raise OSError(code, os.strerror(code))
        self._next += 1
        self.open_fds[self._next] = (pid, ev, attr)
        return self._next

    def read(self, fd: int) -> tuple[int, int, int]:
        tid, ev, _ = self.open_fds[fd]
        return self.counts.get((tid, ev), (0, 1000, 1000))

    def close(self, fd: int) -> None:
        del self.open_fds[fd]
        self.closed.append(fd)

    def attached_tids(self, event: str) -> list[int]:
        return sorted(t for t, ev, _ in self.open_fds.values() if ev == event)


def collector(kernel: FakeKernel, pids=(1234,), procfs: Path = PROCFS) -> perf.PerfCollector:
    live = list(pids)
    c = perf.PerfCollector(procfs, pids=lambda: live, syscalls=kernel, is_root=False)
    c.live = live  # type: ignore[attr-defined]  # the test edits it to start/stop processes
    return c


def put(kernel: FakeKernel, tids, event: str, value: int, enabled=1000, running=1000) -> None:
    """Give each thread ``value`` of the event (so the process total is value × len(tids))."""
    for t in tids:
        kernel.counts[(t, event)] = (value, enabled, running)


def key(metric, pid=1234, name="python3", *extra):
    return (metric.name, (str(pid), name, "instrumented", *extra))


# -- the real kernel ---------------------------------------------------------------------------


@linux_only
def test_real_syscall_counts_a_software_event():
    # The struct layout, the syscall number and the read format, checked against this kernel with a
    # software counter (every kernel has those, PMU or not).
    sys = perf.PerfSyscalls()
    attr = perf.counting_attr(perf.PERF_TYPE_SOFTWARE, PERF_COUNT_SW_TASK_CLOCK, inherit=False)
    assert perf.ctypes.sizeof(attr) == 72
    fd = sys.open(attr, 0)
    try:
        sum(range(200_000))
        value, enabled, running = sys.read(fd)
    finally:
        sys.close(fd)
    assert value > 0 and enabled >= running > 0
    assert value <= enabled * 1.1  # task-clock counts nanoseconds on the CPU


@linux_only
def test_this_machine_counts_or_says_why_not():
    # On a host with a PMU the collector counts this process; on one without (this project's VM),
    # the kernel answers ENOENT for hardware events and the collector reports "no data".
    sys = perf.PerfSyscalls()
    try:
        fd = sys.open(perf.counting_attr(perf.PERF_TYPE_HARDWARE, 0, inherit=False), 0)
    except OSError as e:
        has_pmu, why = False, e.errno
    else:
        sys.close(fd)
        has_pmu, why = True, 0
    c = perf.PerfCollector(Path("/proc"), pids=lambda: [os.getpid()])
    if not has_pmu:
        assert why in (errno.ENOENT, errno.EOPNOTSUPP, errno.ENODEV, errno.EACCES, errno.EPERM)
        with pytest.raises(NoDataError, match="perf_event|performance counters|paranoid"):
            list(c.collect())
        return
    try:
        sum(range(500_000))
        got = as_dict(c.collect())
    finally:
        c.close()
    name = Path("/proc/self/comm").read_text().strip()
    assert got[key(catalog.PROCESS_CYCLES, os.getpid(), name, "counted")] > 0


def test_unknown_cpu_has_no_syscall_number():
    with pytest.raises(OSError) as e:
        perf.PerfSyscalls(machine="pdp11").open(perf.counting_attr(0, 0), 0)
    assert e.value.errno == errno.ENOSYS


# -- availability ------------------------------------------------------------------------------


def test_no_perf_events_in_kernel_is_no_data(tmp_path):
    c = perf.PerfCollector(tmp_path, pids=list, syscalls=FakeKernel(), is_root=False)
    with pytest.raises(NoDataError, match="perf_event_paranoid does not exist"):
        list(c.collect())


@pytest.mark.parametrize("root", [False, True])
def test_paranoid_3_forbids_unprivileged(tmp_path, root):
    procfs = copy_fixture("procfs", tmp_path)
    (procfs / "sys" / "kernel" / "perf_event_paranoid").write_text("3\n")
    kernel = FakeKernel()
    c = perf.PerfCollector(procfs, pids=lambda: [1234], syscalls=kernel, is_root=root)
    if root:
        assert key(catalog.PROCESS_CYCLES, 1234, "python3", "counted") in as_dict(c.collect())
    else:
        with pytest.raises(NoDataError, match="perf_event_paranoid = 3"):
            list(c.collect())


def test_no_pmu_is_no_data():
    kernel = FakeKernel()
    for c in perf.COUNTERS:
        kernel.fail[c.event] = errno.ENOENT
    with pytest.raises(NoDataError, match="no hardware performance counters"):
        list(collector(kernel).collect())
    assert not kernel.open_fds


def test_refused_probe_is_no_data():
    kernel = FakeKernel()
    kernel.fail["cycles"] = errno.EACCES
    with pytest.raises(NoDataError, match="EACCES"):
        list(collector(kernel).collect())


def test_unexpected_errno_is_a_failure():
    kernel = FakeKernel()
    kernel.fail["cycles"] = errno.EINVAL
    with pytest.raises(OSError):
        list(collector(kernel).collect())


# -- counting ----------------------------------------------------------------------------------


def test_every_thread_gets_an_inherited_user_space_counter():
    kernel = FakeKernel()
    list(collector(kernel).collect())
    # The probe opened one event of each kind on the daemon itself (pid 0) and closed it again.
    assert len(kernel.closed) == 6 and all(t != 0 for t, _, _ in kernel.open_fds.values())
    for c in perf.COUNTERS:
        assert kernel.attached_tids(c.event) == PYTHON_TIDS
    for _, _, attr in kernel.open_fds.values():
        assert attr.flags & perf.FLAG_INHERIT
        assert attr.flags & perf.FLAG_EXCLUDE_KERNEL
        assert attr.read_format == 3 and attr.size == 72
    llc = {(a.type, a.config) for _, ev, a in kernel.open_fds.values() if ev.startswith("llc")}
    assert llc == {(3, 0x00002), (3, 0x10002)}  # LL | READ << 8 | ACCESS/MISS << 16


def test_totals_sum_threads_and_ipc_is_per_interval():
    kernel = FakeKernel()
    c = collector(kernel)
    put(kernel, PYTHON_TIDS, "cycles", 1000)
    put(kernel, PYTHON_TIDS, "instructions", 1500)
    put(kernel, PYTHON_TIDS, "cache_references", 40)
    put(kernel, PYTHON_TIDS, "cache_misses", 10)
    put(kernel, PYTHON_TIDS, "llc_loads", 30)
    put(kernel, PYTHON_TIDS, "llc_load_misses", 6)
    first = as_dict(c.collect())
    kernel.closed.clear()  # the probe's own test events
    n = len(PYTHON_TIDS)
    assert first[key(catalog.PROCESS_CYCLES, 1234, "python3", "counted")] == 1000 * n
    assert first[key(catalog.PROCESS_INSTRUCTIONS, 1234, "python3", "counted")] == 1500 * n
    assert first[key(catalog.PROCESS_CACHE_REFERENCES, 1234, "python3", "counted")] == 40 * n
    assert first[key(catalog.PROCESS_CACHE_MISSES, 1234, "python3", "counted")] == 10 * n
    assert first[key(catalog.PROCESS_LLC_LOADS, 1234, "python3", "counted")] == 30 * n
    assert first[key(catalog.PROCESS_LLC_LOAD_MISSES, 1234, "python3", "counted")] == 6 * n
    assert first[key(catalog.PROCESS_HW_RUNNING, 1234, "python3", "cycles")] == 1.0
    assert key(catalog.PROCESS_IPC, 1234, "python3", "counted") not in first  # needs two reads

    put(kernel, PYTHON_TIDS, "cycles", 3000)  # +2000 per thread
    put(kernel, PYTHON_TIDS, "instructions", 2500)  # +1000 per thread
    second = as_dict(c.collect())
    assert second[key(catalog.PROCESS_IPC, 1234, "python3", "counted")] == pytest.approx(0.5)
    assert kernel.closed == []  # the same fds, read again


def test_multiplexed_counters_are_scaled_and_say_so():
    kernel = FakeKernel()
    put(kernel, PYTHON_TIDS, "cache_misses", 100, enabled=4000, running=1000)
    got = as_dict(collector(kernel).collect())
    n = len(PYTHON_TIDS)
    assert got[key(catalog.PROCESS_CACHE_MISSES, 1234, "python3", "counted")] == 400 * n
    assert got[key(catalog.PROCESS_HW_RUNNING, 1234, "python3", "cache_misses")] == 0.25


def test_scaled_total_never_goes_backwards():
    kernel = FakeKernel()
    c = collector(kernel)
    put(kernel, PYTHON_TIDS, "cache_misses", 100, enabled=4000, running=1000)  # 400 each
    list(c.collect())
    put(kernel, PYTHON_TIDS, "cache_misses", 110, enabled=5000, running=2000)  # 275 each
    got = as_dict(c.collect())
    assert got[key(catalog.PROCESS_CACHE_MISSES, 1234, "python3", "counted")] == 400 * 17


def test_counter_that_never_ran_is_unknown_not_zero():
    kernel = FakeKernel()
    put(kernel, PYTHON_TIDS, "llc_loads", 0, enabled=5000, running=0)
    got = as_dict(collector(kernel).collect())
    assert key(catalog.PROCESS_LLC_LOADS, 1234, "python3", "counted") not in got
    assert key(catalog.PROCESS_CYCLES, 1234, "python3", "counted") in got


def test_counters_this_cpu_lacks_are_left_out():
    kernel = FakeKernel()
    kernel.fail["llc_loads"] = kernel.fail["llc_load_misses"] = errno.ENOENT
    got = as_dict(collector(kernel).collect())
    names = {m for m, _ in got}
    assert catalog.PROCESS_LLC_LOADS.name not in names
    assert catalog.PROCESS_CYCLES.name in names


def test_exited_process_is_dropped_and_its_fds_closed():
    kernel = FakeKernel()
    c = collector(kernel, pids=(1234, 4321))
    got = as_dict(c.collect())
    kernel.closed.clear()  # the probe's own test events
    assert key(catalog.PROCESS_CYCLES, 4321, "my) (worker)", "counted") in got
    assert len(kernel.open_fds) == 6 * (len(PYTHON_TIDS) + len(WORKER_TIDS))
    c.live.remove(4321)
    got = as_dict(c.collect())
    assert {labels[0] for _, labels in got} == {"1234"}
    assert kernel.attached_tids("cycles") == PYTHON_TIDS
    assert len(kernel.closed) == 6 * len(WORKER_TIDS)


def test_listed_pid_without_process_is_skipped():
    kernel = FakeKernel()
    got = as_dict(collector(kernel, pids=(1234, 99999)).collect())
    assert {labels[0] for _, labels in got} == {"1234"}


def test_reused_pid_is_reattached(tmp_path):
    procfs = copy_fixture("procfs", tmp_path)
    kernel = FakeKernel()
    c = collector(kernel, procfs=procfs)
    list(c.collect())
    kernel.closed.clear()  # the probe's own test events
    before = set(kernel.open_fds)
    stat = procfs / "1234" / "stat"
    fields = stat.read_text().split(" ")
    fields[21] = str(int(fields[21]) + 5000)  # start time (field 22): a new process, same pid
    stat.write_text(" ".join(fields))
    list(c.collect())
    assert before.isdisjoint(kernel.open_fds) and sorted(kernel.closed) == sorted(before)
    assert kernel.attached_tids("cycles") == PYTHON_TIDS


def test_process_we_may_not_count_is_skipped_and_not_retried():
    kernel = FakeKernel()
    for t in WORKER_TIDS:
        kernel.fail[(t, "cycles")] = errno.EACCES
    c = collector(kernel, pids=(1234, 4321))
    got = as_dict(c.collect())
    assert {labels[0] for _, labels in got} == {"1234"}
    assert all(t in PYTHON_TIDS for t, _, _ in kernel.open_fds.values())  # nothing leaked
    opened = kernel._next
    list(c.collect())
    assert kernel._next == opened  # not asked again every interval


def test_running_out_of_fds_skips_that_process_and_leaks_nothing(caplog):
    kernel = FakeKernel()
    kernel.fail[(4330, "llc_load_misses")] = errno.EMFILE
    got = as_dict(collector(kernel, pids=(1234, 4321)).collect())
    assert {labels[0] for _, labels in got} == {"1234"}
    assert all(t in PYTHON_TIDS for t, _, _ in kernel.open_fds.values())
    assert "open-file limit" in caplog.text


def test_thread_exiting_during_attach_is_skipped():
    kernel = FakeKernel()
    for ev in ("cycles", "instructions"):
        kernel.fail[(1250, ev)] = errno.ESRCH
    list(collector(kernel).collect())
    assert kernel.attached_tids("cycles") == PYTHON_TIDS[:-1]
    assert kernel.attached_tids("cache_misses") == PYTHON_TIDS


def test_close_releases_every_fd():
    kernel = FakeKernel()
    c = collector(kernel, pids=(1234, 4321))
    list(c.collect())
    c.close()
    assert kernel.open_fds == {}


def test_spec():
    assert perf.SPEC.name == "perf"
    c = perf.SPEC.factory(CollectorOptions(procfs=PROCFS))
    assert isinstance(c, perf.PerfCollector) and list(c.pids()) == []
    assert re.search("perf_event_paranoid", perf.SPEC.help)
