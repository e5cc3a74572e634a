"""Peak RSS per configuration (VmHWM, reset through clear_refs)."""

from __future__ import annotations

from pathlib import Path

from ortel.profiling.memory import PeakRss

# As the kernel shows it right after a reset: the peak is (about) the current RSS.
STATUS = """Name:\tpython3
VmPeak:\t 1000000 kB
VmHWM:\t  104448 kB
VmRSS:\t  102400 kB
Threads:\t4
"""
# A kernel or sandbox that accepted the write and ignored it: the old peak stays.
IGNORED = STATUS.replace("104448", "204800")


def fake_proc(tmp_path: Path, writable: bool = True, status: str = STATUS) -> Path:
    d = tmp_path / "proc" / "self"
    d.mkdir(parents=True)
    (d / "status").write_text(status)
    if writable:
        (d / "clear_refs").write_text("")
    return tmp_path / "proc"


def test_reads_vmhwm_and_vmrss(tmp_path: Path):
    m = PeakRss(fake_proc(tmp_path))
    assert m.reset()
    assert (tmp_path / "proc" / "self" / "clear_refs").read_text() == "5"
    p = m.peak()
    assert p.bytes == 104448 * 1024 and p.since_reset
    assert m.current() == 102400 * 1024


def test_an_ignored_reset_is_not_believed(tmp_path: Path):
    m = PeakRss(fake_proc(tmp_path, status=IGNORED))
    assert not m.reset()
    p = m.peak()
    assert p.bytes == 204800 * 1024 and not p.since_reset


def test_a_refused_reset_is_the_peak_since_start(tmp_path: Path):
    root = fake_proc(tmp_path, writable=False)
    (root / "self" / "clear_refs").mkdir()  # writing to a directory fails like EACCES would
    m = PeakRss(root)
    assert not m.reset()
    assert not m.peak().since_reset


def test_no_procfs_falls_back_to_getrusage(tmp_path: Path):
    p = PeakRss(tmp_path / "nothing").peak()
    assert p.bytes is not None and p.bytes > 0 and not p.since_reset


def test_real_reset_lowers_the_peak_after_a_big_allocation():
    import mmap

    m = PeakRss()
    # An anonymous mapping, not a bytearray: unmapping it returns the pages to the kernel
    # whatever the allocator would have kept.
    big = mmap.mmap(-1, 64 * 1024 * 1024)
    for off in range(0, len(big), 4096):
        big[off] = 1
    high = m.peak().bytes
    big.close()
    if not m.reset():  # a kernel or sandbox that refuses or ignores clear_refs: said so
        assert not m.peak().since_reset
        return
    assert m.peak().bytes < high - 32 * 1024 * 1024 and m.peak().since_reset
