"""The nvml collector against a fake NVML at nvidia-ml-py's function boundary.

The fake answers the pynvml functions the collector calls, from per-GPU tables, with pynvml's own
structures, constants and exception classes (NVMLError_NotSupported and friends), so only the
driver underneath is pretended. A last test runs the real pynvml: on a machine without the NVIDIA
driver it must report "no data"; with one it must read every GPU.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys
import threading
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pynvml
import pytest
from helpers import as_dict

from ortel.collectors import nvml
from ortel.collectors.base import CollectorOptions, NoDataError
from ortel.core import catalog
from ortel.exporter.sampler import Sampler

NOT_SUPPORTED = pynvml.NVML_ERROR_NOT_SUPPORTED


@dataclass
class FakeGpu:
    uuid: str
    name: str
    util: tuple[int, int] = (87, 41)  # gpu %, memory %
    memory: tuple[int, int] = (30 * 2**30, 80 * 2**30)  # used, total bytes
    power_mw: int = 312_500
    limit_mw: int = 700_000
    energy_mj: int | None = 9_876_543_210  # None: no counter (pre-Volta)
    temp: int = 64
    mem_temp: int | None = 71
    clocks: dict[int, int] = field(
        default_factory=lambda: {pynvml.NVML_CLOCK_SM: 1980, pynvml.NVML_CLOCK_MEM: 2619}
    )
    reasons: int = (
        pynvml.nvmlClocksEventReasonSwPowerCap | pynvml.nvmlClocksEventReasonHwThermalSlowdown
    )
    pcie_kbs: dict[int, int] = field(
        default_factory=lambda: {
            pynvml.NVML_PCIE_UTIL_TX_BYTES: 2000,
            pynvml.NVML_PCIE_UTIL_RX_BYTES: 500,
        }
    )
    processes: list[tuple[int, int | None]] = field(default_factory=list)  # (pid, bytes)
    process_samples: list[tuple[int, int, int]] = field(default_factory=list)  # (pid, µs, sm %)
    gpm: dict[int, float] | None = None  # metric id -> percent; None: no GPM
    unsupported: set[str] = field(default_factory=set)  # function names answering NotSupported
    errors: dict[str, int] = field(default_factory=dict)  # function name -> NVML error code


class FakeNvml:
    """pynvml's functions (the ones ortel calls), answering from FakeGpu tables."""

    def __init__(self, gpus: list[FakeGpu], init_error: int | None = None, lost: set[int] = ()):
        for name in dir(pynvml):  # constants, structures and exception classes: the real ones
            if name.startswith(("NVML", "nvmlClocks", "c_nvml", "struct_c_nvml")):
                setattr(self, name, getattr(pynvml, name))
        self.gpus = gpus
        self.init_error = init_error
        self.lost = set(lost)
        self.calls: list[str] = []
        self.process_ts_asked: list[int] = []
        self._gpm_samples: dict[int, dict[int, float]] = {}

    def _answer(self, fn: str, gpu: FakeGpu) -> None:
        self.calls.append(fn)
        if fn in gpu.unsupported:
            raise pynvml.NVMLError(NOT_SUPPORTED)
        if fn in gpu.errors:
            raise pynvml.NVMLError(gpu.errors[fn])

    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise pynvml.NVMLError(self.init_error)

    def nvmlShutdown(self) -> None:
        self.calls.append("nvmlShutdown")

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> FakeGpu:
        if i in self.lost:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)
        return self.gpus[i]

    def nvmlDeviceGetUUID(self, h: FakeGpu) -> str:
        return h.uuid

    def nvmlDeviceGetName(self, h: FakeGpu) -> str:
        return h.name

    def nvmlDeviceGetUtilizationRates(self, h: FakeGpu):
        self._answer("nvmlDeviceGetUtilizationRates", h)
        return pynvml.c_nvmlUtilization_t(gpu=h.util[0], memory=h.util[1])

    def nvmlDeviceGetMemoryInfo(self, h: FakeGpu):
        self._answer("nvmlDeviceGetMemoryInfo", h)
        used, total = h.memory
        return pynvml.c_nvmlMemory_t(total=total, free=total - used, used=used)

    def nvmlDeviceGetPowerUsage(self, h: FakeGpu) -> int:
        self._answer("nvmlDeviceGetPowerUsage", h)
        return h.power_mw

    def nvmlDeviceGetEnforcedPowerLimit(self, h: FakeGpu) -> int:
        self._answer("nvmlDeviceGetEnforcedPowerLimit", h)
        return h.limit_mw

    def nvmlDeviceGetTotalEnergyConsumption(self, h: FakeGpu) -> int:
        self._answer("nvmlDeviceGetTotalEnergyConsumption", h)
        if h.energy_mj is None:
            raise pynvml.NVMLError(NOT_SUPPORTED)
        return h.energy_mj

    def nvmlDeviceGetTemperature(self, h: FakeGpu, sensor: int) -> int:
        self._answer("nvmlDeviceGetTemperature", h)
        assert sensor == pynvml.NVML_TEMPERATURE_GPU
        return h.temp

    def nvmlDeviceGetFieldValues(self, h: FakeGpu, field_ids: list[int]):
        self._answer("nvmlDeviceGetFieldValues", h)
        values = (pynvml.c_nvmlFieldValue_t * len(field_ids))()
        for v, fid in zip(values, field_ids):
            v.fieldId = fid
            if fid == pynvml.NVML_FI_DEV_MEMORY_TEMP and h.mem_temp is not None:
                v.valueType = pynvml.NVML_VALUE_TYPE_UNSIGNED_INT
                v.value.uiVal = h.mem_temp
                v.nvmlReturn = pynvml.NVML_SUCCESS
            else:  # per-field failure: the call succeeds, the field says why
                v.nvmlReturn = NOT_SUPPORTED
        return values

    def nvmlDeviceGetClockInfo(self, h: FakeGpu, kind: int) -> int:
        self._answer("nvmlDeviceGetClockInfo", h)
        return h.clocks[kind]

    def nvmlDeviceGetCurrentClocksEventReasons(self, h: FakeGpu) -> int:
        self._answer("nvmlDeviceGetCurrentClocksEventReasons", h)
        return h.reasons

    def nvmlDeviceGetPcieThroughput(self, h: FakeGpu, counter: int) -> int:
        self._answer("nvmlDeviceGetPcieThroughput", h)
        return h.pcie_kbs[counter]

    def nvmlDeviceGetComputeRunningProcesses(self, h: FakeGpu) -> list[Any]:
        self._answer("nvmlDeviceGetComputeRunningProcesses", h)
        return [SimpleNamespace(pid=p, usedGpuMemory=b) for p, b in h.processes]

    def nvmlDeviceGetProcessUtilization(self, h: FakeGpu, ts: int) -> list[Any]:
        self._answer("nvmlDeviceGetProcessUtilization", h)
        self.process_ts_asked.append(ts)
        out = [
            pynvml.c_nvmlProcessUtilizationSample_t(pid=p, timeStamp=t, smUtil=sm, memUtil=0)
            for p, t, sm in h.process_samples
            if t > ts
        ]
        if not out:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_FOUND)
        return out

    def nvmlGpmQueryDeviceSupport(self, h: FakeGpu):
        support = pynvml.c_nvmlGpmSupport_t()
        support.isSupportedDevice = 1 if h.gpm is not None else 0
        return support

    def nvmlGpmSampleAlloc(self):
        return pynvml.c_nvmlGpmSample_t(pynvml.struct_c_nvmlGpmSample_t())

    def nvmlGpmSampleGet(self, h: FakeGpu, sample) -> None:
        self._answer("nvmlGpmSampleGet", h)
        self._gpm_samples[ctypes.addressof(sample.contents)] = dict(h.gpm or {})

    def nvmlGpmMetricsGet(self, mg):
        first = self._gpm_samples[ctypes.addressof(mg.sample1.contents)]
        second = self._gpm_samples[ctypes.addressof(mg.sample2.contents)]
        assert mg.version == pynvml.NVML_GPM_METRICS_GET_VERSION
        for i in range(mg.numMetrics):
            m = mg.metrics[i]
            if m.metricId in second:
                # The fake's "sample" holds each metric's value at that moment: over the
                # interval NVML reports the later one, and it must differ from the first.
                assert first is not second
                m.value, m.nvmlReturn = second[m.metricId], pynvml.NVML_SUCCESS
            else:
                m.nvmlReturn = NOT_SUPPORTED
        return mg


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


H100 = dict(uuid="GPU-8e6b6d4e-0c3a-4b5e-9a61-1f0c2d3e4f50", name="NVIDIA H100 80GB HBM3")
T4 = dict(uuid="GPU-11111111-2222-3333-4444-555555555555", name="Tesla P4")


def series(got: dict, metric) -> dict[tuple[str, ...], float]:
    return {lab: v for (n, lab), v in got.items() if n == metric.name}


def h100(**kw) -> FakeGpu:
    return FakeGpu(
        **H100,
        gpm={
            pynvml.NVML_GPM_METRIC_SM_OCCUPANCY: 37.5,
            pynvml.NVML_GPM_METRIC_ANY_TENSOR_UTIL: 62.0,
        },
        **kw,
    )


def test_every_field_in_base_units():
    fake = FakeNvml([h100()])
    got = as_dict(nvml.NvmlCollector(fake).collect())
    g = ("0", H100["uuid"], H100["name"])
    assert got[(catalog.GPU_UTILIZATION.name, g)] == 0.87
    assert got[(catalog.GPU_MEMORY_UTILIZATION.name, g)] == 0.41
    assert got[(catalog.GPU_MEMORY_USED.name, g)] == 30 * 2**30
    assert got[(catalog.GPU_MEMORY_TOTAL.name, g)] == 80 * 2**30
    assert got[(catalog.GPU_POWER.name, g)] == 312.5
    assert got[(catalog.GPU_POWER_LIMIT.name, g)] == 700.0
    assert got[(catalog.GPU_ENERGY.name, g)] == 9_876_543.21  # mJ -> J
    assert got[(catalog.GPU_TEMPERATURE.name, g)] == 64
    assert got[(catalog.GPU_MEMORY_TEMPERATURE.name, g)] == 71
    assert series(got, catalog.GPU_CLOCK) == {(*g, "sm"): 1.98e9, (*g, "memory"): 2.619e9}
    assert series(got, catalog.GPU_PCIE_THROUGHPUT) == {
        (*g, "tx"): 2000 * 1024,
        (*g, "rx"): 500 * 1024,
    }
    reasons = {lab[-1]: v for lab, v in series(got, catalog.GPU_THROTTLE_REASON).items()}
    assert reasons == {
        r: 1 if r in ("sw_power_cap", "hw_thermal") else 0 for r, _ in nvml.THROTTLE_REASONS
    }


def test_emits_exactly_what_its_spec_declares():
    gpu = h100(processes=[(7, 1)], process_samples=[(7, 5, 10)])
    c = nvml.NvmlCollector(FakeNvml([gpu]), pids=lambda: [7])
    list(c.collect())
    gpu.process_samples.append((7, 9, 20))
    assert {r.metric for r in c.collect()} == set(nvml.SPEC.metrics)


def test_gpm_needs_two_samples():
    fake = FakeNvml([h100()])
    c = nvml.NvmlCollector(fake)
    assert series(as_dict(c.collect()), catalog.GPU_SM_OCCUPANCY) == {}
    got = as_dict(c.collect())
    g = ("0", H100["uuid"], H100["name"])
    assert got[(catalog.GPU_SM_OCCUPANCY.name, g)] == 0.375
    assert got[(catalog.GPU_TENSOR_ACTIVITY.name, g)] == 0.62
    fake.gpus[0].gpm = {pynvml.NVML_GPM_METRIC_SM_OCCUPANCY: 10.0}  # tensor metric now refused
    got = as_dict(c.collect())
    assert got[(catalog.GPU_SM_OCCUPANCY.name, g)] == 0.1
    assert (catalog.GPU_TENSOR_ACTIVITY.name, g) not in got


def test_per_process_memory_and_sm_share_only_for_instrumented_pids():
    gpu = h100(
        processes=[(4242, 6 * 2**30), (999, 2**30), (4243, None)],
        process_samples=[(4242, 1_000, 30), (4242, 2_000, 55), (999, 2_000, 40)],
    )
    fake = FakeNvml([gpu])
    c = nvml.NvmlCollector(fake, pids=lambda: [4242, 4243])
    got = as_dict(c.collect())
    g = ("0", H100["uuid"], H100["name"])
    # 999 is not instrumented; 4243's memory the driver cannot tell (None) is left out, not 0.
    assert series(got, catalog.GPU_PROCESS_MEMORY) == {(*g, "4242"): 6 * 2**30}
    assert series(got, catalog.GPU_PROCESS_UTILIZATION) == {(*g, "4242"): 0.55}  # newest sample
    # The next call asks only for samples newer than those seen; none: no reading, no error.
    got = as_dict(c.collect())
    assert fake.process_ts_asked == [0, 2_000]
    assert series(got, catalog.GPU_PROCESS_UTILIZATION) == {}
    assert got[(catalog.GPU_POWER.name, g)] == 312.5


def test_no_instrumented_pids_no_process_calls():
    fake = FakeNvml([h100(processes=[(1, 1)])])
    list(nvml.NvmlCollector(fake).collect())
    assert "nvmlDeviceGetComputeRunningProcesses" not in fake.calls


def test_older_gpu_integrates_power_and_skips_what_it_lacks(caplog):
    gpu = FakeGpu(
        **T4,
        energy_mj=None,
        mem_temp=None,
        unsupported={"nvmlDeviceGetPcieThroughput", "nvmlDeviceGetCurrentClocksEventReasons"},
    )
    fake = FakeNvml([h100(), gpu])
    clock = Clock()
    c = nvml.NvmlCollector(fake, clock=clock)
    g = ("1", T4["uuid"], T4["name"])
    with caplog.at_level(logging.INFO, logger="ortel.exporter"):
        gpu.power_mw = 60_000
        got = as_dict(c.collect())
        assert got[(catalog.GPU_ENERGY.name, g)] == 0.0  # integrated since the first sample
        gpu.power_mw = 70_000
        clock.t += 2.0
        got = as_dict(c.collect())
        assert got[(catalog.GPU_ENERGY.name, g)] == pytest.approx(130.0)  # (60 + 70) / 2 W x 2 s
        gpu.power_mw = 50_000
        clock.t += 1.0
        got = as_dict(c.collect())
        assert got[(catalog.GPU_ENERGY.name, g)] == pytest.approx(190.0)
    assert (catalog.GPU_MEMORY_TEMPERATURE.name, g) not in got
    assert not [k for k in series(got, catalog.GPU_PCIE_THROUGHPUT) if k[0] == "1"]
    assert not [k for k in series(got, catalog.GPU_THROTTLE_REASON) if k[0] == "1"]
    assert got[(catalog.GPU_TEMPERATURE.name, g)] == 64  # everything else still there
    # The H100 beside it keeps its hardware counter.
    assert got[(catalog.GPU_ENERGY.name, ("0", H100["uuid"], H100["name"]))] == 9_876_543.21
    # Each missing field is said once, not at every sample.
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == len(set(lines)) == 5, lines  # energy, memory temp, reasons, tx, rx
    assert any("GPU 1: no energy counter (Not Supported); integrating" in m for m in lines)
    assert any("GPU 1: pcie tx skipped (Not Supported)" in m for m in lines)


def test_a_passing_energy_error_skips_one_sample_and_keeps_the_counter():
    gpu = h100()
    fake = FakeNvml([gpu])
    c = nvml.NvmlCollector(fake)
    g = ("0", H100["uuid"], H100["name"])
    list(c.collect())
    gpu.errors["nvmlDeviceGetTotalEnergyConsumption"] = pynvml.NVML_ERROR_UNKNOWN
    got = as_dict(c.collect())
    assert (catalog.GPU_ENERGY.name, g) not in got
    del gpu.errors["nvmlDeviceGetTotalEnergyConsumption"]
    gpu.energy_mj += 5_000
    assert as_dict(c.collect())[(catalog.GPU_ENERGY.name, g)] == 9_876_548.21


def test_a_gpu_that_cannot_be_opened_is_left_out(caplog):
    fake = FakeNvml([h100(), FakeGpu(**T4)], lost={0})
    with caplog.at_level(logging.WARNING, logger="ortel.exporter"):
        got = as_dict(nvml.NvmlCollector(fake).collect())
    assert {lab[0] for lab in series(got, catalog.GPU_POWER)} == {"1"}
    assert "GPU 0 cannot be opened (GPU is lost)" in caplog.text


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (pynvml.NVML_ERROR_LIBRARY_NOT_FOUND, "NVML not available: NVML Shared Library Not Found"),
        (pynvml.NVML_ERROR_DRIVER_NOT_LOADED, "NVML not available: Driver Not Loaded"),
    ],
)
def test_no_driver_is_no_data(error, message):
    with pytest.raises(NoDataError, match=message):
        list(nvml.NvmlCollector(FakeNvml([], init_error=error)).collect())


def test_no_gpu_is_no_data():
    fake = FakeNvml([])
    with pytest.raises(NoDataError, match="no usable NVIDIA GPU"):
        list(nvml.NvmlCollector(fake).collect())
    assert fake.calls == ["nvmlShutdown"]


def test_missing_library_is_no_data(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # `import pynvml` raises ImportError
    with pytest.raises(
        NoDataError, match=r"nvidia-ml-py is not installed \(pip install 'ortel\[gpu\]'\)"
    ):
        list(nvml.NvmlCollector().collect())


def test_real_nvml_library():
    """nvidia-ml-py for real: no driver here means 'no data'; with a driver, every GPU is read."""
    c = nvml.NvmlCollector()
    if ctypes.util.find_library("nvidia-ml") is None:
        with pytest.raises(NoDataError, match="NVML not available"):
            list(c.collect())
        return
    got = as_dict(c.collect())
    gpus = series(got, catalog.GPU_MEMORY_TOTAL)
    assert gpus and all(v > 0 for v in gpus.values())
    assert all(0 <= v <= 1 for v in series(got, catalog.GPU_UTILIZATION).values())


def test_a_hanging_nvml_call_never_blocks_a_scrape():
    fake = FakeNvml([h100()])
    gate = threading.Event()
    calls = []
    power = fake.nvmlDeviceGetPowerUsage

    def hang_after_the_first(h):  # a GPU falling off the bus: NVML blocks
        calls.append(time.monotonic())
        if len(calls) > 1:
            gate.wait(20)
        return power(h)

    fake.nvmlDeviceGetPowerUsage = hang_after_the_first
    sampler = Sampler([nvml.NvmlCollector(fake)], interval=0.1, timeout=0.3)
    sampler.start(wait=5)
    try:
        first = {r.metric.name for r in sampler.readings()}
        assert catalog.GPU_POWER.name in first
        while len(calls) < 2 or time.monotonic() - calls[1] < 0.5:
            time.sleep(0.05)
        t0 = time.monotonic()
        got = {(r.metric.name, r.labels): r.value for r in sampler.readings()}
        assert time.monotonic() - t0 < 0.2  # the scrape did not wait for NVML
        assert got[(catalog.COLLECTOR_SUCCESS.name, ("nvml",))] == 0.0
        assert not [k for k in got if k[0].startswith("ortel_gpu_")]  # no stale values
    finally:
        gate.set()
        sampler.stop()


def test_spec_factory_takes_pids_from_the_multiprocess_dir(tmp_path):
    assert nvml.SPEC.name == "nvml" and nvml.SPEC.enabled_by_default
    (tmp_path / "ortel-4242-123.json").write_text("{}")
    c = nvml.SPEC.factory(CollectorOptions(multiproc_dir=tmp_path))
    assert isinstance(c, nvml.NvmlCollector)
    assert list(c.pids()) == [4242]
