from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers import FIXTURES, as_dict, copy_fixture

from ortel.collectors import process
from ortel.collectors.base import CollectorOptions, NoDataError
from ortel.core import catalog

PROCFS = FIXTURES / "procfs"
PAGE = 4096


def collector(pids=(1234, 4321), procfs=PROCFS):
    return process.ProcessCollector(
        procfs, pids=lambda: pids, self_pid=777, clk_tck=100, page_size=PAGE
    )


def series(
    pid: int,
    name: str,
    role: str,
    rss_pages: int,
    utime: int,
    stime: int,
    threads: int,
    vol: int,
    invol: int,
    minflt: int,
    majflt: int,
    read_bytes: int,
    write_bytes: int,
) -> dict:
    pl = (str(pid), name, role)
    return {
        (catalog.PROCESS_RSS.name, pl): rss_pages * PAGE,
        (catalog.PROCESS_CPU.name, pl + ("user",)): utime / 100,
        (catalog.PROCESS_CPU.name, pl + ("system",)): stime / 100,
        (catalog.PROCESS_THREADS.name, pl): threads,
        (catalog.PROCESS_CTX.name, pl + ("voluntary",)): vol,
        (catalog.PROCESS_CTX.name, pl + ("involuntary",)): invol,
        (catalog.PROCESS_FAULTS.name, pl + ("minor",)): minflt,
        (catalog.PROCESS_FAULTS.name, pl + ("major",)): majflt,
        (catalog.PROCESS_DISK_IO.name, pl + ("read",)): read_bytes,
        (catalog.PROCESS_DISK_IO.name, pl + ("write",)): write_bytes,
    }


# The numbers are those written in the fixture files (tests/fixtures/README.md).
DAEMON = series(
    777, "ortel-exporter", "daemon", 10240, 250, 75, 3, 530, 41, 4096, 12, 2097152, 40960
)
PYTHON = series(
    1234, "python3", "instrumented", 131072, 1873, 245, 17, 10423, 387, 52731, 412,
    421527552, 16777216,
)  # fmt: skip
WORKER = series(4321, "my) (worker)", "instrumented", 25600, 455, 60, 4, 2210, 95, 8812, 3, 0, 8192)


def without_io(s: dict) -> dict:
    return {k: v for k, v in s.items() if k[0] != catalog.PROCESS_DISK_IO.name}


def test_daemon_and_instrumented_processes():
    assert as_dict(collector().collect()) == {**DAEMON, **PYTHON, **WORKER}


def test_comm_with_parenthesis_and_space_is_split_at_last_paren():
    stat = process.parse_pid_stat((PROCFS / "4321" / "stat").read_text())
    assert stat == process.ProcStat(
        name="my) (worker)", minflt=8812, majflt=3, utime=455, stime=60, threads=4
    )
    # The name is the kernel's comm, the same as <pid>/comm.
    assert stat.name == (PROCFS / "4321" / "comm").read_text().rstrip("\n")


def test_dead_pid_is_skipped():
    got = as_dict(collector(pids=(1234, 99999)).collect())
    assert got == {**DAEMON, **PYTHON}


def test_process_exiting_between_reads_is_skipped(tmp_path):
    # /proc/<pid>/stat read, then the process is reaped before status: gone, not a failure.
    procfs = copy_fixture("procfs", tmp_path)
    (procfs / "4321" / "status").unlink()
    assert as_dict(collector(procfs=procfs).collect()) == {**DAEMON, **PYTHON}


def test_self_pid_and_duplicates_are_reported_once():
    got = as_dict(collector(pids=(777, 1234, 1234)).collect())
    assert got == {**DAEMON, **PYTHON}


def test_no_instrumented_processes_reports_the_daemon():
    assert as_dict(collector(pids=()).collect()) == DAEMON


def test_pids_are_asked_for_on_every_collect():
    live = [1234]
    c = process.ProcessCollector(
        PROCFS, pids=lambda: live, self_pid=777, clk_tck=100, page_size=PAGE
    )
    assert as_dict(c.collect()) == {**DAEMON, **PYTHON}
    live.append(4321)
    assert as_dict(c.collect()) == {**DAEMON, **PYTHON, **WORKER}


def test_no_procfs_is_no_data(tmp_path):
    with pytest.raises(NoDataError):
        list(collector(procfs=tmp_path / "proc").collect())


def test_malformed_stat_is_a_failure(tmp_path):
    procfs = copy_fixture("procfs", tmp_path)
    (procfs / "1234" / "stat").write_text("1234 (python3) S 1 2 3\n")
    with pytest.raises(ValueError):
        list(collector(procfs=procfs).collect())


def test_zombie_without_memory_lines(tmp_path):
    # A zombie keeps stat and status but has no mm: statm is all zeros, status has no VmRSS.
    procfs = copy_fixture("procfs", tmp_path)
    (procfs / "4321" / "statm").write_text("0 0 0 0 0 0 0\n")
    got = as_dict(collector(procfs=procfs).collect())
    assert got[(catalog.PROCESS_RSS.name, ("4321", "my) (worker)", "instrumented"))] == 0


def test_self_pid_defaults_to_procfs_self(tmp_path):
    # In a container with the host's /proc mounted, only <procfs>/self knows the daemon's pid.
    procfs = tmp_path / "proc"
    shutil.copytree(PROCFS, procfs)
    (procfs / "self").symlink_to("777")
    assert process.ProcessCollector(procfs, pids=list).self_pid == 777


def test_spec_factory_reads_multiproc_dir(tmp_path):
    assert process.SPEC.name == "process" and process.SPEC.enabled_by_default
    (tmp_path / "ortel-1234-5000.json").write_text("{}")
    (tmp_path / "ortel-99999-0.json").write_text("{}")
    (tmp_path / "unrelated.txt").write_text("")
    c = process.SPEC.factory(CollectorOptions(procfs=PROCFS, multiproc_dir=tmp_path))
    assert isinstance(c, process.ProcessCollector)
    assert list(c.pids()) == [1234, 99999]
    roles = {labels[2] for _, labels in as_dict(c.collect())}
    assert "instrumented" in roles  # 1234 found; 99999 is not in the fixture and skipped


def test_parse_io_reads_every_field():
    io = process.parse_io((PROCFS / "1234" / "io").read_text())
    assert io == {
        "rchar": 913742090,
        "wchar": 2415790,
        "syscr": 87012,
        "syscw": 9401,
        "read_bytes": 421527552,
        "write_bytes": 16777216,
        "cancelled_write_bytes": 4096,
    }


def test_unreadable_io_leaves_io_out_not_zero(tmp_path, monkeypatch):
    # /proc/<pid>/io of another user's process fails with EACCES on read: its I/O is unknown,
    # everything else about it is still reported.
    procfs = copy_fixture("procfs", tmp_path)
    denied = procfs / "1234" / "io"
    real_read_text = type(denied).read_text

    def read_text(self, *a, **kw):
        if self == denied:
            raise PermissionError(13, "Permission denied", str(self))
        return real_read_text(self, *a, **kw)

    monkeypatch.setattr(type(denied), "read_text", read_text)
    got = as_dict(collector(procfs=procfs).collect())
    assert got == {**DAEMON, **without_io(PYTHON), **WORKER}


def test_kernel_without_io_accounting_leaves_io_out(tmp_path):
    procfs = copy_fixture("procfs", tmp_path)
    for pid in ("777", "1234", "4321"):
        (procfs / pid / "io").unlink()
    got = as_dict(collector(procfs=procfs).collect())
    assert got == {**without_io(DAEMON), **without_io(PYTHON), **without_io(WORKER)}


def test_malformed_io_is_a_failure(tmp_path):
    procfs = copy_fixture("procfs", tmp_path)
    (procfs / "1234" / "io").write_text("read_bytes: lots\n")
    with pytest.raises(ValueError):
        list(collector(procfs=procfs).collect())


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="no /proc/<pid>/io here")
def test_io_of_this_process_is_read_for_real():
    # The live /proc: reading a file we just wrote may hit the page cache, but rchar grows and the
    # storage counters are present and non-negative.
    c = process.ProcessCollector(Path("/proc"), pids=list)
    got = as_dict(c.collect())
    mine = {k: v for k, v in got.items() if k[0] == catalog.PROCESS_DISK_IO.name}
    assert {k[1][-1] for k in mine} == {"read", "write"}
    assert all(v >= 0 for v in mine.values())
