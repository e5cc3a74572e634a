"""NVIDIA GPUs through NVML (nvidia-ml-py, the ``gpu`` extra), one set of labels per GPU:
``gpu`` (NVML index), ``uuid``, ``name``.

Utilisation, memory, power and its limit, the total energy counter (mJ since the driver loaded;
Volta and newer) with a fallback that integrates power where the GPU has no counter (CodeCarbon
reports 0 there), temperatures, clocks, clock throttle reasons, PCIe throughput, per-process
memory and SM share for instrumented pids, and GPM SM occupancy / tensor activity on Hopper and
newer. No library, no driver or no GPU is "no data" with one log line; a field the GPU does not
support (``NVMLError_NotSupported``) or that fails is skipped and said once, never fatal. NVML can
hang: the sampler runs this collector on its own thread, so a hang only marks it stale.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ortel.core import catalog
from ortel.core.multiproc_files import instrumented_pids
from ortel.core.readings import Reading, reading

from .base import Collector, CollectorSpec, NoDataError

log = logging.getLogger("ortel.exporter")

# Clock event ("throttle") reason bits from nvml.h, a stable ABI; label names follow nvml.h.
THROTTLE_REASONS = (
    ("gpu_idle", 0x1),
    ("applications_clocks_setting", 0x2),
    ("sw_power_cap", 0x4),
    ("hw_slowdown", 0x8),
    ("sync_boost", 0x10),
    ("sw_thermal", 0x20),
    ("hw_thermal", 0x40),
    ("hw_power_brake", 0x80),
    ("display_clock_setting", 0x100),
)
# nvmlDeviceGetPcieThroughput answers in KB/s (1 KB = 1024 bytes, as nvidia-smi reads it).
_KIB = 1024


def _str(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


@dataclass
class _Gpu:
    index: int
    handle: Any
    uuid: str
    name: str
    energy_mode: str | None = None  # "counter" once the driver's counter answered, or "integrated"
    integrated_joules: float = 0.0
    last_power: tuple[float, float] | None = None  # (watts, monotonic time) for integration
    last_process_ts: int = 0  # newest process-utilisation sample seen (µs, NVML's clock)
    gpm_samples: list[Any] = field(default_factory=list)  # [previous, current] when supported
    gpm_primed: bool = False

    @property
    def labels(self) -> dict[str, str]:
        return {"gpu": str(self.index), "uuid": self.uuid, "name": self.name}


class NvmlCollector(Collector):
    name = "nvml"

    def __init__(
        self,
        nvml: Any = None,
        pids: Callable[[], Iterable[int]] = tuple,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._nvml = nvml  # the pynvml module, or a stand-in with its functions (tests)
        self.pids = pids
        self.clock = clock
        self._gpus: list[_Gpu] | None = None
        self._said: set[str] = set()

    def _say(self, key: str, message: str) -> None:
        if key not in self._said:
            self._said.add(key)
            log.info("collector nvml: %s", message)

    def _module(self) -> Any:
        if self._nvml is None:
            try:
                import pynvml
            except ImportError as e:
                raise NoDataError("nvidia-ml-py is not installed (pip install 'ortel[gpu]')") from e
            self._nvml = pynvml
        return self._nvml

    def _init(self) -> list[_Gpu]:
        nv = self._module()
        try:
            nv.nvmlInit()
            count = nv.nvmlDeviceGetCount()
        except nv.NVMLError as e:
            raise NoDataError(f"NVML not available: {e}") from e
        gpus: list[_Gpu] = []
        for i in range(count):
            try:
                h = nv.nvmlDeviceGetHandleByIndex(i)
                gpu = _Gpu(i, h, _str(nv.nvmlDeviceGetUUID(h)), _str(nv.nvmlDeviceGetName(h)))
            except nv.NVMLError as e:
                log.warning("collector nvml: GPU %d cannot be opened (%s): left out", i, e)
                continue
            self._init_gpm(gpu)
            gpus.append(gpu)
        if not gpus:
            nv.nvmlShutdown()
            raise NoDataError("NVML found no usable NVIDIA GPU")
        return gpus

    def _init_gpm(self, g: _Gpu) -> None:
        nv = self._nvml
        if not hasattr(nv, "nvmlGpmQueryDeviceSupport"):
            return  # nvidia-ml-py older than 12.520
        try:
            if nv.nvmlGpmQueryDeviceSupport(g.handle).isSupportedDevice:
                g.gpm_samples = [nv.nvmlGpmSampleAlloc(), nv.nvmlGpmSampleAlloc()]
        except nv.NVMLError as e:
            self._say(f"{g.index}:gpm", f"GPU {g.index}: no GPM metrics ({e})")

    def _call(self, g: _Gpu, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        """fn(handle, *args), or None (said once per GPU and field) when NVML refuses it."""
        try:
            return fn(g.handle, *args)
        except self._nvml.NVMLError as e:
            self._skip(g, what, e)
            return None

    def _skip(self, g: _Gpu, what: str, err: Exception) -> None:
        self._say(f"{g.index}:{what}", f"GPU {g.index}: {what} skipped ({err})")

    def _energy(self, g: _Gpu, watts: float | None) -> float | None:
        nv = self._nvml
        if g.energy_mode != "integrated":
            try:
                mj = nv.nvmlDeviceGetTotalEnergyConsumption(g.handle)
            except nv.NVMLError as e:
                if g.energy_mode is None and e.value == nv.NVML_ERROR_NOT_SUPPORTED:
                    g.energy_mode = "integrated"
                    self._say(
                        f"{g.index}:energy",
                        f"GPU {g.index}: no energy counter ({e}); integrating its power instead",
                    )
                else:  # a passing failure: skip this sample, never switch mid-series
                    self._skip(g, "energy", e)
                    return None
            else:
                g.energy_mode = "counter"
                return mj / 1000.0
        if watts is None:
            return g.integrated_joules if g.last_power is not None else None
        now = self.clock()
        if g.last_power is not None:
            w0, t0 = g.last_power
            g.integrated_joules += (w0 + watts) / 2 * max(now - t0, 0.0)  # trapezoid
        g.last_power = (watts, now)
        return g.integrated_joules

    def _field_value(self, value: Any) -> float:
        nv = self._nvml
        member = {
            nv.NVML_VALUE_TYPE_DOUBLE: "dVal",
            nv.NVML_VALUE_TYPE_UNSIGNED_INT: "uiVal",
            nv.NVML_VALUE_TYPE_UNSIGNED_LONG: "ulVal",
            nv.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG: "ullVal",
            nv.NVML_VALUE_TYPE_SIGNED_LONG_LONG: "sllVal",
            nv.NVML_VALUE_TYPE_SIGNED_INT: "siVal",
        }.get(value.valueType, "uiVal")
        return float(getattr(value.value, member))

    def _memory_temperature(self, g: _Gpu) -> float | None:
        nv = self._nvml
        values = self._call(
            g, "memory temperature", nv.nvmlDeviceGetFieldValues, [nv.NVML_FI_DEV_MEMORY_TEMP]
        )
        if not values:
            return None
        v = values[0]
        if v.nvmlReturn != nv.NVML_SUCCESS:
            self._skip(g, "memory temperature", nv.NVMLError(v.nvmlReturn))
            return None
        return self._field_value(v)

    def _processes(self, g: _Gpu, pids: set[int]) -> list[Reading]:
        nv = self._nvml
        out: list[Reading] = []
        used: dict[int, int] = {}
        for p in self._call(g, "process memory", nv.nvmlDeviceGetComputeRunningProcesses) or ():
            # usedGpuMemory is None where the driver cannot tell (Windows WDDM).
            if p.pid in pids and p.usedGpuMemory is not None:
                used[p.pid] = used.get(p.pid, 0) + p.usedGpuMemory  # MIG: one entry per instance
        for pid, nbytes in sorted(used.items()):
            out.append(reading(catalog.GPU_PROCESS_MEMORY, nbytes, pid=str(pid), **g.labels))
        try:
            samples = nv.nvmlDeviceGetProcessUtilization(g.handle, g.last_process_ts)
        except nv.NVMLError as e:
            if e.value != nv.NVML_ERROR_NOT_FOUND:  # NOT_FOUND: no sample since the last call
                self._skip(g, "process utilization", e)
            samples = []
        newest: dict[int, Any] = {}
        for s in samples:
            g.last_process_ts = max(g.last_process_ts, s.timeStamp)
            if s.pid in pids and (s.pid not in newest or s.timeStamp > newest[s.pid].timeStamp):
                newest[s.pid] = s
        for pid, s in sorted(newest.items()):
            out.append(
                reading(catalog.GPU_PROCESS_UTILIZATION, s.smUtil / 100.0, pid=str(pid), **g.labels)
            )
        return out

    def _gpm(self, g: _Gpu) -> list[Reading]:
        nv = self._nvml
        if not g.gpm_samples:
            return []
        prev, cur = g.gpm_samples
        out: list[Reading] = []
        try:
            nv.nvmlGpmSampleGet(g.handle, cur)
            if g.gpm_primed:
                mg = nv.c_nvmlGpmMetricsGet_t()
                mg.version = nv.NVML_GPM_METRICS_GET_VERSION
                mg.numMetrics = 2
                mg.sample1, mg.sample2 = prev, cur
                mg.metrics[0].metricId = nv.NVML_GPM_METRIC_SM_OCCUPANCY
                mg.metrics[1].metricId = nv.NVML_GPM_METRIC_ANY_TENSOR_UTIL
                nv.nvmlGpmMetricsGet(mg)
                for i, metric in ((0, catalog.GPU_SM_OCCUPANCY), (1, catalog.GPU_TENSOR_ACTIVITY)):
                    if mg.metrics[i].nvmlReturn == nv.NVML_SUCCESS:  # percent, 0..100
                        out.append(reading(metric, mg.metrics[i].value / 100.0, **g.labels))
        except nv.NVMLError as e:
            self._skip(g, "GPM metrics", e)
            g.gpm_primed = False
            return []
        g.gpm_samples = [cur, prev]
        g.gpm_primed = True
        return out

    def _gpu(self, g: _Gpu, pids: set[int]) -> list[Reading]:
        nv = self._nvml
        lab = g.labels
        out: list[Reading] = []
        if (rates := self._call(g, "utilization", nv.nvmlDeviceGetUtilizationRates)) is not None:
            out.append(reading(catalog.GPU_UTILIZATION, rates.gpu / 100.0, **lab))
            out.append(reading(catalog.GPU_MEMORY_UTILIZATION, rates.memory / 100.0, **lab))
        if (mem := self._call(g, "memory", nv.nvmlDeviceGetMemoryInfo)) is not None:
            out.append(reading(catalog.GPU_MEMORY_USED, mem.used, **lab))
            out.append(reading(catalog.GPU_MEMORY_TOTAL, mem.total, **lab))
        mw = self._call(g, "power", nv.nvmlDeviceGetPowerUsage)
        watts = None if mw is None else mw / 1000.0
        if watts is not None:
            out.append(reading(catalog.GPU_POWER, watts, **lab))
        if (limit := self._call(g, "power limit", nv.nvmlDeviceGetEnforcedPowerLimit)) is not None:
            out.append(reading(catalog.GPU_POWER_LIMIT, limit / 1000.0, **lab))
        if (joules := self._energy(g, watts)) is not None:
            out.append(reading(catalog.GPU_ENERGY, joules, **lab))
        temp = self._call(g, "temperature", nv.nvmlDeviceGetTemperature, nv.NVML_TEMPERATURE_GPU)
        if temp is not None:
            out.append(reading(catalog.GPU_TEMPERATURE, temp, **lab))
        if (mem_temp := self._memory_temperature(g)) is not None:
            out.append(reading(catalog.GPU_MEMORY_TEMPERATURE, mem_temp, **lab))
        for clock, kind in (("sm", nv.NVML_CLOCK_SM), ("memory", nv.NVML_CLOCK_MEM)):
            mhz = self._call(g, f"{clock} clock", nv.nvmlDeviceGetClockInfo, kind)
            if mhz is not None:
                out.append(reading(catalog.GPU_CLOCK, mhz * 1e6, clock=clock, **lab))
        # Renamed "event reasons" in NVML 12.2; the old name stays for older libraries.
        reasons_fn = getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None)
        if reasons_fn is None:
            reasons_fn = nv.nvmlDeviceGetCurrentClocksThrottleReasons
        if (mask := self._call(g, "throttle reasons", reasons_fn)) is not None:
            for reason, bit in THROTTLE_REASONS:
                held = 1 if mask & bit else 0
                out.append(reading(catalog.GPU_THROTTLE_REASON, held, reason=reason, **lab))
        for direction, counter in (
            ("tx", nv.NVML_PCIE_UTIL_TX_BYTES),
            ("rx", nv.NVML_PCIE_UTIL_RX_BYTES),
        ):
            kbs = self._call(g, f"pcie {direction}", nv.nvmlDeviceGetPcieThroughput, counter)
            if kbs is not None:
                out.append(
                    reading(catalog.GPU_PCIE_THROUGHPUT, kbs * _KIB, direction=direction, **lab)
                )
        if pids:
            out += self._processes(g, pids)
        out += self._gpm(g)
        return out

    def collect(self) -> Iterator[Reading]:
        if self._gpus is None:
            self._gpus = self._init()
        pids = set(self.pids())
        out: list[Reading] = []
        for g in self._gpus:
            out += self._gpu(g, pids)
        yield from out


SPEC = CollectorSpec(
    name="nvml",
    enabled_by_default=True,
    factory=lambda o: NvmlCollector(pids=lambda: instrumented_pids(o.multiproc_dir)),
    help="Measured NVIDIA GPU utilisation, memory, power, energy, temperatures, clocks, throttle "
    "reasons, PCIe throughput, per-process memory/SM share of instrumented processes, GPM "
    "occupancy (NVML; pip install 'ortel[gpu]').",
    metrics=tuple(m for m in catalog.all_metrics() if m.name.startswith("ortel_gpu_")),
)
