from __future__ import annotations

from pathlib import Path

import pytest
from helpers import FIXTURES, as_dict, copy_fixture

from ortel.collectors import disk
from ortel.collectors.base import CollectorOptions, NoDataError
from ortel.core import catalog

PROCFS, SYSFS = FIXTURES / "procfs", FIXTURES / "sysfs"


def expected(device: str, reads: int, rsect: int, writes: int, wsect: int) -> dict:
    return {
        (catalog.DISK_IO.name, (device, "read")): rsect * 512,
        (catalog.DISK_OPERATIONS.name, (device, "read")): reads,
        (catalog.DISK_IO.name, (device, "write")): wsect * 512,
        (catalog.DISK_OPERATIONS.name, (device, "write")): writes,
    }


# Fields 4, 6, 8 and 10 of the fixture's diskstats lines.
SDA = expected("sda", 48210, 6523904, 91342, 12902816)
NVME = expected("nvme0n1", 1024000, 204800000, 204800, 40960000)
DM = expected("dm-0", 10, 80, 0, 0)


def test_whole_disks_only():
    # Partitions (sda1, nvme0n1p1), loop and zram devices are left out; dm-0 is a disk in sysfs.
    got = as_dict(disk.DiskCollector(PROCFS, SYSFS).collect())
    assert got == {**SDA, **NVME, **DM}


def test_without_sysfs_partitions_are_recognised_by_name(tmp_path):
    got = as_dict(disk.DiskCollector(PROCFS, tmp_path / "nosys").collect())
    assert got == {**SDA, **NVME, **DM}


def test_old_kernel_14_field_lines(tmp_path):
    procfs = copy_fixture("procfs", tmp_path)
    (procfs / "diskstats").write_text("   8       0 sda 10 0 80 5 20 0 160 9 0 14 14\n")
    got = as_dict(disk.DiskCollector(procfs, SYSFS).collect())
    assert got == expected("sda", 10, 80, 20, 160)


def test_truncated_line_is_a_failure(tmp_path):
    procfs = copy_fixture("procfs", tmp_path)
    (procfs / "diskstats").write_text("   8       0 sda 10 0 80\n")
    with pytest.raises(ValueError):
        list(disk.DiskCollector(procfs, SYSFS).collect())


def test_no_diskstats_is_no_data(tmp_path):
    with pytest.raises(NoDataError):
        list(disk.DiskCollector(tmp_path, SYSFS).collect())


def test_this_machine():
    # Whatever disks this host has, every series is a whole disk with non-negative counters.
    if not Path("/proc/diskstats").exists():
        pytest.skip("no /proc/diskstats here")
    got = as_dict(disk.DiskCollector(Path("/proc"), Path("/sys")).collect())
    devices = {labels[0] for _, labels in got}
    assert not any(disk._VIRTUAL.match(d) for d in devices)
    assert all(v >= 0 for v in got.values())


def test_spec():
    assert disk.SPEC.name == "disk" and disk.SPEC.enabled_by_default
    c = disk.SPEC.factory(CollectorOptions(procfs=PROCFS, sysfs=SYSFS))
    assert isinstance(c, disk.DiskCollector)
    assert as_dict(c.collect()) == {**SDA, **NVME, **DM}
