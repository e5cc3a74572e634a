from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from harness import require_tool
from helpers import FIXTURES, as_dict, copy_fixture
from hypothesis import given, settings
from hypothesis import strategies as st

from ortel.collectors import rapl
from ortel.collectors.base import CollectorOptions, NoDataError
from ortel.core import catalog

SYSFS = FIXTURES / "sysfs"
POWERCAP = SYSFS / "class" / "powercap"
RANGE = 262143328850  # max_energy_range_uj of every fixture zone but dram
# (index, name) -> energy_uj in the fixture; intel-rapl-mmio:0 repeats package-0.
FIXTURE = {
    ("0", "package-0"): 81234567890,
    ("0:0", "core"): 40617283945,
    ("0:1", "uncore"): 1234567890,
    ("0:2", "dram"): 9876543210,
    ("1", "psys"): 150000000000,
}


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def energy(got: dict) -> dict[tuple[str, str], float]:
    return {(lab[1], lab[0]): v for (n, lab), v in got.items() if n == catalog.RAPL_ENERGY.name}


def power(got: dict) -> dict[tuple[str, str], float]:
    return {(lab[1], lab[2]): v for (n, lab), v in got.items() if n == catalog.POWER.name}


def write_uj(sysfs: Path, zone: str, value: int) -> None:
    # Through the class/ symlink, as a reader would see it.
    (sysfs / "class" / "powercap" / zone / "energy_uj").write_text(f"{value}\n")


def test_fixture_is_laid_out_with_symlinks_like_sysfs():
    link = POWERCAP / "intel-rapl:0:1"
    assert link.is_symlink()
    assert (
        os.readlink(link) == "../../devices/virtual/powercap/intel-rapl/intel-rapl:0/intel-rapl:0:1"
    )
    assert (link / "name").read_text() == "uncore\n"


def test_first_sample_equals_the_files_and_counts_mmio_once():
    got = as_dict(rapl.RaplCollector(SYSFS, clock=Clock()).collect())
    assert energy(got) == {k: uj / 1e6 for k, uj in FIXTURE.items()}
    assert not any(idx.startswith("mmio") for idx, _ in energy(got))
    assert power(got) == {}  # a rate needs two samples


def test_zones_are_sorted_numerically(tmp_path):
    sysfs = copy_fixture("sysfs", tmp_path)
    src = sysfs / "devices/virtual/powercap/intel-rapl/intel-rapl:1"
    for n in (2, 10):
        shutil.copytree(src, src.with_name(f"intel-rapl:{n}"))
        (src.with_name(f"intel-rapl:{n}") / "name").write_text(f"package-{n}\n")
        os.symlink(
            f"../../devices/virtual/powercap/intel-rapl/intel-rapl:{n}",
            sysfs / "class/powercap" / f"intel-rapl:{n}",
        )
    indexes = [z.index for z in rapl.discover(sysfs)]
    assert indexes == ["0", "0:0", "0:1", "0:2", "1", "2", "10"]


def test_power_from_two_samples(tmp_path):
    sysfs = copy_fixture("sysfs", tmp_path)
    clock = Clock()
    c = rapl.RaplCollector(sysfs, clock=clock)
    list(c.collect())
    write_uj(sysfs, "intel-rapl:0", FIXTURE[("0", "package-0")] + 25_000_000)  # 25 J
    write_uj(sysfs, "intel-rapl:0:2", FIXTURE[("0:2", "dram")] + 3_000_000)
    clock.t += 2.0
    got = as_dict(c.collect())
    watts = power(got)
    assert watts[("0", "package-0")] == pytest.approx(12.5)
    assert watts[("0:2", "dram")] == pytest.approx(1.5)
    assert watts[("0:0", "core")] == 0.0
    assert energy(got)[("0", "package-0")] == pytest.approx(81259.56789)
    key = (catalog.POWER.name, ("rapl", "0", "package-0"))
    assert key in got  # labels: source, device (the zone index), zone (its name)


def test_counter_wraps_between_two_samples_and_stays_monotonic(tmp_path):
    sysfs = copy_fixture("sysfs", tmp_path)
    clock = Clock()
    c = rapl.RaplCollector(sysfs, clock=clock)
    write_uj(sysfs, "intel-rapl:0", RANGE - 10_000_000)  # 10 J before the wrap
    first = energy(as_dict(c.collect()))[("0", "package-0")]
    write_uj(sysfs, "intel-rapl:0", 30_000_000)  # ... and 30 J after it
    clock.t += 1.0
    got = as_dict(c.collect())
    assert energy(got)[("0", "package-0")] == pytest.approx(first + 40.0)
    assert power(got)[("0", "package-0")] == pytest.approx(40.0)
    # node_exporter would show 30 J here (a drop of ~262 kJ); Scaphandre would drop the sample.


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=RANGE - 1), min_size=1, max_size=30))
def test_accumulated_energy_is_the_sum_of_increments_across_any_number_of_wraps(
    tmp_path_factory, increments
):
    sysfs = tmp_path_factory.mktemp("w")
    zone = sysfs / "class/powercap/intel-rapl:0"
    zone.mkdir(parents=True)
    (zone / "name").write_text("package-0\n")
    (zone / "max_energy_range_uj").write_text(f"{RANGE}\n")
    clock = Clock()
    c = rapl.RaplCollector(sysfs, clock=clock)
    raw = 250_000_000_000
    write_uj(sysfs, "intel-rapl:0", raw)
    start = energy(as_dict(c.collect()))[("0", "package-0")]
    previous = start
    for inc in increments:  # at most one wrap per interval, as the docs require
        raw = (raw + inc) % RANGE
        write_uj(sysfs, "intel-rapl:0", raw)
        clock.t += 1.0
        now = energy(as_dict(c.collect()))[("0", "package-0")]
        assert now >= previous
        previous = now
    assert previous == pytest.approx(start + sum(increments) / 1e6, rel=1e-12)


def test_drop_without_a_known_range_counts_nothing_rather_than_going_back(tmp_path):
    sysfs = copy_fixture("sysfs", tmp_path)
    (sysfs / "class/powercap/intel-rapl:1/max_energy_range_uj").unlink()
    clock = Clock()
    c = rapl.RaplCollector(sysfs, clock=clock)
    before = energy(as_dict(c.collect()))[("1", "psys")]
    write_uj(sysfs, "intel-rapl:1", 5)
    clock.t += 1.0
    got = as_dict(c.collect())
    assert energy(got)[("1", "psys")] == before
    assert power(got)[("1", "psys")] == 0.0


def test_mmio_zone_is_used_when_it_has_no_msr_twin(tmp_path):
    sysfs = copy_fixture("sysfs", tmp_path)
    for name in os.listdir(sysfs / "class/powercap"):
        if not name.startswith("intel-rapl-mmio"):
            (sysfs / "class/powercap" / name).unlink()
    got = energy(as_dict(rapl.RaplCollector(sysfs, clock=Clock()).collect()))
    assert got == {("mmio:0", "package-0"): 81234.0}


def test_no_powercap_is_no_data(tmp_path):
    with pytest.raises(NoDataError, match="powercap"):
        list(rapl.RaplCollector(tmp_path).collect())
    (tmp_path / "class/powercap/intel-rapl").mkdir(parents=True)  # control type, no zones
    with pytest.raises(NoDataError, match="no RAPL zones"):
        list(rapl.RaplCollector(tmp_path).collect())
    assert not rapl.readable(tmp_path)
    assert rapl.readable(SYSFS)


def test_malformed_counter_is_a_failure_and_keeps_the_state(tmp_path):
    sysfs = copy_fixture("sysfs", tmp_path)
    clock = Clock()
    c = rapl.RaplCollector(sysfs, clock=clock)
    list(c.collect())
    write_uj(sysfs, "intel-rapl:0", 0)
    (sysfs / "class/powercap/intel-rapl:0:1/energy_uj").write_text("garbage\n")
    with pytest.raises(ValueError):
        list(c.collect())
    (sysfs / "class/powercap/intel-rapl:0:1/energy_uj").write_text("1234567890\n")
    write_uj(sysfs, "intel-rapl:0", FIXTURE[("0", "package-0")] + 1_000_000)
    clock.t += 1.0
    got = as_dict(c.collect())
    # The failed sample's 0 was never taken for a wrap.
    assert power(got)[("0", "package-0")] == pytest.approx(1.0)


def test_warns_once_when_the_interval_allows_more_than_one_wrap(tmp_path, caplog):
    sysfs = copy_fixture("sysfs", tmp_path)
    # A 90 J range at the package's 45 W maximum wraps every 2 s.
    (sysfs / "class/powercap/intel-rapl:0/max_energy_range_uj").write_text("90000000\n")
    write_uj(sysfs, "intel-rapl:0", 1)
    clock = Clock()
    c = rapl.RaplCollector(sysfs, interval=1.0, clock=clock)
    with caplog.at_level("WARNING", logger="ortel.exporter"):
        list(c.collect())
        clock.t += 1.0
        list(c.collect())
        assert not caplog.records  # 1 s is safe
        for _ in range(2):
            clock.t += 3.0
            list(c.collect())
    (record,) = caplog.records
    assert "wraps every 2 s" in record.getMessage() and "zone 0 (package-0)" in record.getMessage()


_EACCES_SCRIPT = textwrap.dedent(
    """
    import sys
    from ortel.collectors.base import NoDataError
    from ortel.collectors.rapl import RaplCollector
    try:
        list(RaplCollector(sys.argv[1]).collect())
    except NoDataError as e:
        print(e)
    else:
        print("read it")
    """
)


def _collect_without_read_permission(sysfs: Path) -> str:
    """The collector's NoData message when energy_uj is root-only and we are not allowed in."""
    for zone in (sysfs / "devices/virtual/powercap").glob("**/energy_uj"):
        zone.chmod(0o400 if os.geteuid() != 0 else 0o000)
    if os.geteuid() != 0:
        try:
            list(rapl.RaplCollector(sysfs).collect())
        except NoDataError as e:
            return str(e)
        return "read it"
    # Root reads anything: drop the capabilities that let it (CAP_DAC_*), the kernel then
    # answers EACCES exactly as it does to an unprivileged daemon.
    setpriv = require_tool("setpriv")
    res = subprocess.run(
        [setpriv, "--bounding-set", "-dac_override,-dac_read_search", sys.executable, "-c"]
        + [_EACCES_SCRIPT, str(sysfs)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


def test_unreadable_energy_uj_is_no_data_with_a_grant_hint(tmp_path):
    sysfs = copy_fixture("sysfs", tmp_path)
    message = _collect_without_read_permission(sysfs)
    assert "Permission denied" in message
    assert "root only since Linux 5.10" in message
    assert f"sudo chmod a+r {sysfs}/class/powercap/intel-rapl:*/energy_uj" in message
    assert "\n" not in message  # one line


def test_spec_factory_uses_options():
    assert rapl.SPEC.name == "rapl" and rapl.SPEC.enabled_by_default
    c = rapl.SPEC.factory(CollectorOptions(sysfs=SYSFS, interval=0.5))
    assert isinstance(c, rapl.RaplCollector)
    assert (c.sysfs, c.interval) == (SYSFS, 0.5)


def test_emits_only_what_its_spec_declares(tmp_path):
    sysfs = copy_fixture("sysfs", tmp_path)
    clock = Clock()
    c = rapl.RaplCollector(sysfs, clock=clock)
    list(c.collect())
    clock.t += 1
    assert {r.metric for r in c.collect()} == set(rapl.SPEC.metrics)
