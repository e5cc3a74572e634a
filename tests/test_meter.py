"""``ortel.instrumentation.energy``: one block's energy, read in-process through the daemon's
collectors (meter.py), over copies of the fixture trees whose counters a test advances."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import as_dict, copy_fixture

import ortel.instrumentation
from ortel.core import catalog as c
from ortel.core.readings import reading
from ortel.instrumentation.meter import EnergyMeter, counters, energy, source_label
from ortel.instrumentation.recorder import Recorder

POWERCAP = Path("class") / "powercap"


def add_uj(sysfs: Path, zone: str, uj: int) -> None:
    f = sysfs / POWERCAP / zone / "energy_uj"
    f.write_text(f"{int(f.read_text()) + uj}\n")


@pytest.fixture
def trees(tmp_path: Path) -> tuple[Path, Path]:
    return copy_fixture("sysfs", tmp_path), copy_fixture("procfs", tmp_path)


def test_a_block_reads_rapl_package_and_dram_never_core_or_psys(trees):
    sysfs, procfs = trees
    rec = Recorder()
    meter = EnergyMeter(sysfs, procfs)
    with energy("resnet", meter=meter, recorder=rec) as e:
        add_uj(sysfs, "intel-rapl:0", 30_000_000)  # package: 30 J
        add_uj(sysfs, "intel-rapl:0:0", 20_000_000)  # core, inside the package
        add_uj(sysfs, "intel-rapl:0:2", 4_000_000)  # dram: 4 J
        add_uj(sysfs, "intel-rapl:1", 50_000_000)  # psys, around both
    assert e.joules == pytest.approx(34.0)
    assert (e.source, e.parts, e.why) == ("measured", {("cpu", "measured"): 34.0}, "")
    assert e.seconds > 0
    # The estimate stays out where RAPL is readable; no GPU here.
    assert any(u.startswith("estimate:") for u in meter.unavailable)
    got = as_dict(rec.readings())
    assert got[(c.BLOCK_ENERGY.name, ("resnet", "cpu", "measured"))] == pytest.approx(34.0)
    # A block-only series has no all-zero inference series.
    assert not any(name == c.INFERENCES.name for name, _ in got)
    with energy("resnet", meter=meter, recorder=rec):
        add_uj(sysfs, "intel-rapl:0", 6_000_000)
    got = as_dict(rec.readings())
    assert got[(c.BLOCK_ENERGY.name, ("resnet", "cpu", "measured"))] == pytest.approx(40.0)


def test_a_block_that_raises_is_still_counted_and_the_error_propagates(trees):
    sysfs, procfs = trees
    rec = Recorder()
    meter = EnergyMeter(sysfs, procfs, collectors=("rapl",))
    with pytest.raises(KeyError), energy("m", meter=meter, recorder=rec) as e:
        add_uj(sysfs, "intel-rapl:0", 1_000_000)
        raise KeyError("x")
    assert e.joules == pytest.approx(1.0)
    assert as_dict(rec.readings())[(c.BLOCK_ENERGY.name, ("m", "cpu", "measured"))] == 1.0


def test_a_block_on_a_host_without_rapl_reads_amd_energy_sockets_not_cores(trees):
    sysfs, procfs = trees
    shutil.rmtree(sysfs / POWERCAP)
    chip = sysfs / "class" / "hwmon" / "hwmon6"  # amd_energy: Ecore000, Ecore001, Esocket0

    def add(n: int, uj: int) -> None:
        f = chip / f"energy{n}_input"
        f.write_text(f"{int(f.read_text()) + uj}\n")

    rec = Recorder()
    with energy("m", meter=EnergyMeter(sysfs, procfs), recorder=rec) as e:
        add(1, 3_000_000)  # a core, inside the socket
        add(3, 12_000_000)  # the socket: 12 J
    assert (e.source, e.joules) == ("measured", pytest.approx(12.0))
    assert e.parts == {("cpu", "measured"): pytest.approx(12.0)}
    assert as_dict(rec.readings())[(c.BLOCK_ENERGY.name, ("m", "cpu", "measured"))] == 12.0


def test_estimate_only_is_labelled_estimated(trees):
    sysfs, procfs = trees
    shutil.rmtree(sysfs / POWERCAP)
    shutil.rmtree(sysfs / "class" / "hwmon")  # its amd_energy chip measures the CPU too
    rec = Recorder()
    meter = EnergyMeter(sysfs, procfs, cpu_idle_watts=1.0, cpu_max_watts=5.0)
    stat = procfs / "stat"
    lines = stat.read_text().splitlines()
    with energy("m", meter=meter, recorder=rec) as e:
        # Every CPU fully busy for 100 ticks: 4 CPUs x 5 W = 20 W while the block runs.
        cpu = lines[0].split()
        cpu[1] = str(int(cpu[1]) + 400)
        stat.write_text("\n".join([" ".join(cpu), *lines[1:]]) + "\n")
        time.sleep(0.2)
    assert e.source == "estimated" and set(e.parts) == {("cpu", "estimated")}
    # 20 W over the block, plus the moment its two reads take.
    assert 20.0 * e.seconds <= e.joules <= 20.0 * e.seconds * 1.25
    assert (c.BLOCK_ENERGY.name, ("m", "cpu", "estimated")) in as_dict(rec.readings())


def test_no_counter_here_is_unknown_never_zero(trees, tmp_path):
    sysfs, procfs = trees
    rec = Recorder()
    meter = EnergyMeter(tmp_path / "nothing", procfs, collectors=("rapl", "nvml"))
    with energy("m", meter=meter, recorder=rec) as e:
        pass
    assert (e.joules, e.source, e.parts) == (None, None, {})
    assert e.why.startswith("no energy counter here: rapl: ")
    assert not any(r.metric is c.BLOCK_ENERGY for r in rec.readings())


def test_a_counter_that_did_not_move_is_unknown(trees):
    sysfs, procfs = trees
    rec = Recorder()
    with energy("m", meter=EnergyMeter(sysfs, procfs, collectors=("rapl",)), recorder=rec) as e:
        pass  # the fixture's counters stand still
    assert e.joules is None and "no counter moved" in e.why


def test_record_false_measures_without_recording(trees):
    sysfs, procfs = trees
    rec = Recorder()
    with energy("m", meter=EnergyMeter(sysfs, procfs), recorder=rec, record=False) as e:
        add_uj(sysfs, "intel-rapl:0:2", 2_000_000)
    assert e.joules == pytest.approx(2.0)
    assert rec.readings() == [r for r in rec.readings() if r.metric is c.LABEL_VALUES_DROPPED]


async def _async_block(meter: EnergyMeter, rec: Recorder, sysfs: Path) -> float | None:
    async with energy("m", meter=meter, recorder=rec) as e:
        add_uj(sysfs, "intel-rapl:0", 3_000_000)
    return e.joules


def test_async_with(trees):
    import asyncio

    sysfs, procfs = trees
    joules = asyncio.run(_async_block(EnergyMeter(sysfs, procfs), Recorder(), sysfs))
    assert joules == pytest.approx(3.0)


def test_counters_and_source_labels():
    g = {"gpu": "0", "uuid": "GPU-0", "name": "H100"}
    rs = [
        reading(c.RAPL_ENERGY, 10.0, zone="package-1", index="1"),
        reading(c.RAPL_ENERGY, 5.0, zone="uncore", index="0:1"),
        reading(c.ENERGY, 7.0, source="estimated", device="cpu", zone="package"),
        reading(c.ENERGY, 9.0, source="powermetrics", device="soc", zone="cpu"),
        reading(c.GPU_ENERGY, 100.0, **g),
        reading(c.GPU_ENERGY, 50.0, gpu="1", uuid="GPU-1", name="H100"),
    ]
    # The one energy rule: measured CPU sources (RAPL's package, powermetrics' cpu zone; never
    # uncore, inside the package) and no estimate beside them; every GPU.
    assert counters(rs) == {("cpu", "measured"): 19.0, ("gpu", "measured"): 150.0}
    assert counters(rs[2:3]) == {("cpu", "estimated"): 7.0}  # the estimate where nothing measures
    assert source_label([("cpu", "estimated"), ("gpu", "measured")]) == "estimated+measured"
    assert source_label([("gpu", "measured")]) == "measured"
    assert source_label([]) is None


def test_it_is_exported_lazily_and_the_shim_does_not_load_the_daemon():
    assert ortel.instrumentation.energy is energy
    code = (
        "import sys, ortel.instrumentation as oi, ortel.instrumentation.meter;"
        "oi.energy; print('ortel.exporter' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
