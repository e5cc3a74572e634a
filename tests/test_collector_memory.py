from __future__ import annotations

import pytest
from helpers import FIXTURES, as_dict, copy_fixture

from ortel.collectors import memory
from ortel.collectors.base import CollectorOptions, NoDataError
from ortel.core import catalog

PROCFS = FIXTURES / "procfs"
KIB = 1024


def test_meminfo_and_vmstat_in_bytes_and_counts():
    got = as_dict(memory.MemoryCollector(PROCFS).collect())
    assert got == {
        (catalog.MEMORY_TOTAL.name, ()): 16384000 * KIB,
        (catalog.MEMORY_AVAILABLE.name, ()): 10240000 * KIB,
        (catalog.MEMORY_USED.name, ()): (16384000 - 10240000) * KIB,
        (catalog.SWAP_TOTAL.name, ()): 2097148 * KIB,
        (catalog.SWAP_USED.name, ()): (2097148 - 1835004) * KIB,
        # pgfault includes the major faults.
        (catalog.PAGE_FAULTS.name, ("minor",)): 987654321 - 12345,
        (catalog.PAGE_FAULTS.name, ("major",)): 12345,
    }


def test_missing_meminfo_is_no_data(tmp_path):
    with pytest.raises(NoDataError, match="meminfo"):
        list(memory.MemoryCollector(tmp_path).collect())


def test_missing_vmstat_still_reports_memory(tmp_path):
    procfs = copy_fixture("procfs", tmp_path)
    (procfs / "vmstat").unlink()
    got = as_dict(memory.MemoryCollector(procfs).collect())
    assert got[(catalog.MEMORY_TOTAL.name, ())] == 16384000 * KIB
    assert not any(name == catalog.PAGE_FAULTS.name for name, _ in got)


def test_no_memavailable_falls_back_to_free_plus_cache(tmp_path):
    # Kernels before 3.14 have no MemAvailable.
    procfs = copy_fixture("procfs", tmp_path)
    text = (procfs / "meminfo").read_text()
    (procfs / "meminfo").write_text(
        "".join(line for line in text.splitlines(True) if not line.startswith("MemAvailable:"))
    )
    got = as_dict(memory.MemoryCollector(procfs).collect())
    available = (3276800 + 412344 + 6718904) * KIB
    assert got[(catalog.MEMORY_AVAILABLE.name, ())] == available
    assert got[(catalog.MEMORY_USED.name, ())] == 16384000 * KIB - available


@pytest.mark.parametrize(
    "meminfo",
    [
        "MemFree: 1 kB\n",  # no MemTotal
        "MemTotal: lots kB\n",
        "MemTotal 16384000 kB\n",
    ],
)
def test_malformed_meminfo_is_a_failure(tmp_path, meminfo):
    (tmp_path / "meminfo").write_text(meminfo)
    with pytest.raises(ValueError):
        list(memory.MemoryCollector(tmp_path).collect())


def test_malformed_vmstat_is_a_failure(tmp_path):
    procfs = copy_fixture("procfs", tmp_path)
    (procfs / "vmstat").write_text("pgfault 12 extra\n")
    with pytest.raises(ValueError):
        list(memory.MemoryCollector(procfs).collect())


def test_spec_factory_uses_options():
    assert memory.SPEC.name == "memory" and memory.SPEC.enabled_by_default
    c = memory.SPEC.factory(CollectorOptions(procfs=PROCFS))
    assert isinstance(c, memory.MemoryCollector) and c.procfs == PROCFS
