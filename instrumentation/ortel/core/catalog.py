"""The metric catalogue: every metric ortel exports, defined once.

Prometheus name, kind, base unit, help text, label names, bucket boundaries and the OTel name all
live here. The shim, the daemon's collectors, exposition, the README catalogue and the dashboards
read from (or are tested against) this module, so a name is never spelled twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["counter", "gauge", "histogram", "summary"]
OtelInstrument = Literal["counter", "updowncounter", "gauge", "histogram"]


def log_buckets(low: float, high: float, per_decade: int) -> tuple[float, ...]:
    """Log-spaced bucket upper bounds from ``low`` to ``high`` (the last bound is ``high``),
    rounded to 3 significant digits so the ``le`` labels stay readable."""
    bounds: list[float] = []
    i = 0
    while (v := float(f"{low * 10 ** (i / per_decade):.3g}")) < high:
        bounds.append(v)
        i += 1
    bounds.append(float(high))
    return tuple(bounds)


# 50 µs … 60 s, four buckets per decade: 26 buckets, fine enough for heatmaps, cheap to merge.
DEFAULT_LATENCY_BUCKETS = log_buckets(50e-6, 60.0, 4)

QUANTILES = (0.5, 0.9, 0.95, 0.99, 0.999)


@dataclass(frozen=True)
class MetricDef:
    name: str  # Prometheus name as scraped (counters end in _total)
    kind: Kind
    unit: str  # base unit ("seconds", "bytes", "ratio", "hertz", ...) or "" for counts
    help: str
    labels: tuple[str, ...] = ()
    otel_name: str | None = None  # OTel semconv name, or ortel.* where semconv lacks one
    buckets: tuple[float, ...] | None = None
    source: Literal["shim", "daemon"] = "daemon"
    # OTLP side (see OTEL_UNITS / OTEL_ATTRIBUTES below for the defaults; docs/otel.md shows all):
    otel_unit: str | None = None  # UCUM unit; None: from unit, "1" for plain counts
    otel_instrument: OtelInstrument | None = None  # None: from kind (a summary -> quantile gauge)
    # (attribute, label or "{label}/{label}" template) replacing the default for those labels
    otel_attributes: tuple[tuple[str, str], ...] = ()
    otel_constants: tuple[tuple[str, str], ...] = ()  # fixed attributes semconv asks for

    def __post_init__(self) -> None:
        if self.otel_unit is None:
            object.__setattr__(self, "otel_unit", OTEL_UNITS.get(self.unit, "1"))
        if self.otel_instrument is None:
            derived = {"summary": "gauge"}.get(self.kind, self.kind)
            object.__setattr__(self, "otel_instrument", derived)

    @property
    def family_name(self) -> str:
        """Name without the counter suffix, as prometheus_client metric families expect."""
        return self.name[: -len("_total")] if self.kind == "counter" else self.name

    def otel_plan(self) -> tuple[tuple[str, str], ...]:
        """(attribute, source) for every OTel attribute of a point: source is a label name, a
        ``{label}`` template, or ``=value`` for a constant."""
        used = {lbl for _, src in self.otel_attributes for lbl in _template_labels(src)}
        plan = [(a, lbl) for lbl in self.labels if lbl not in used for a in (otel_attr(lbl),)]
        plan += list(self.otel_attributes)
        plan += [(a, "=" + v) for a, v in self.otel_constants]
        return tuple(plan)


# Prometheus base unit -> UCUM unit, as OTLP carries it.
OTEL_UNITS = {
    "seconds": "s",
    "bytes": "By",
    "joules": "J",
    "watts": "W",
    "volts": "V",
    "amperes": "A",
    "celsius": "Cel",
    "hertz": "Hz",
    "ratio": "1",
}
# Prometheus label -> OTel attribute (semconv where it has one), unless a metric says otherwise.
OTEL_ATTRIBUTES = {
    "model": "ortel.model",
    "provider": "ortel.provider",
    "status": "ortel.status",
    "error_type": "error.type",
    "pid": "process.pid",
    "name": "process.executable.name",
    "role": "ortel.process.role",
    "cpu": "cpu.logical_number",
    "mode": "cpu.mode",
    "quantile": "ortel.quantile",
}
# Attributes whose semconv type is int (Prometheus label values are strings).
OTEL_INT_ATTRIBUTES = frozenset({"process.pid", "cpu.logical_number"})


def otel_attr(label: str) -> str:
    return OTEL_ATTRIBUTES.get(label, "ortel." + label)


def _template_labels(source: str) -> list[str]:
    if source.startswith("="):
        return []
    if "{" not in source:
        return [source]
    return [part.split("}", 1)[0] for part in source.split("{")[1:]]


_ALL: dict[str, MetricDef] = {}


def _define(*args, **kwargs) -> MetricDef:
    m = MetricDef(*args, **kwargs)
    if m.name in _ALL:
        raise ValueError(f"metric {m.name} defined twice")
    _ALL[m.name] = m
    return m


# OTel: GPUs are hw.* components (hw.id = the GPU's UUID) and generation metrics carry what the
# gen_ai semconv requires; defined before the metrics that use them.
GPU_OTEL = (("hw.id", "uuid"), ("hw.name", "name"), ("ortel.gpu.index", "gpu"))
GPU_HW = (("hw.type", "gpu"),)
GEN_AI_OTEL = (("gen_ai.request.model", "model"),)
GEN_AI_CONSTANTS = (
    ("gen_ai.operation.name", "text_completion"),
    ("gen_ai.provider.name", "onnxruntime"),
)


# --- inference (recorded by the shim, merged by the daemon) -----------------------------------
ML = ("model", "provider")
INFERENCE_DURATION = _define(
    "ortel_inference_duration_seconds",
    "histogram",
    "seconds",
    "Wall time of one inference call, by outcome.",
    ML + ("status",),
    "ortel.inference.duration",
    DEFAULT_LATENCY_BUCKETS,
    source="shim",
)
INFERENCES = _define(
    "ortel_inferences_total",
    "counter",
    "",
    "Inference calls completed, by outcome.",
    ML + ("status",),
    "ortel.inference.count",
    source="shim",
    otel_unit="{inference}",
)
INFERENCE_ITEMS = _define(
    "ortel_inference_items_total",
    "counter",
    "",
    "Batch items processed (leading dimension of the first input, where known).",
    ML,
    "ortel.inference.items",
    source="shim",
    otel_unit="{item}",
)
INFERENCE_ERRORS = _define(
    "ortel_inference_errors_total",
    "counter",
    "",
    "Inference calls that raised, by exception type.",
    ("model", "error_type"),
    "ortel.inference.errors",
    source="shim",
    otel_unit="{error}",
)
LATENCY_QUANTILE = _define(
    "ortel_inference_latency_seconds",
    "summary",
    "seconds",
    "Latency of successful inferences: quantiles over the sliding window (relative error <= 0.5%),"
    " _count and _sum since start.",
    ML,
    "ortel.inference.latency.quantile",
    source="shim",
)
LATENCY_MEAN = _define(
    "ortel_inference_latency_mean_seconds",
    "gauge",
    "seconds",
    "Mean latency of successful inferences over the sliding window.",
    ML,
    "ortel.inference.latency.mean",
    source="shim",
)
LATENCY_STDDEV = _define(
    "ortel_inference_latency_stddev_seconds",
    "gauge",
    "seconds",
    "Standard deviation (jitter) of latency over the sliding window.",
    ML,
    "ortel.inference.latency.stddev",
    source="shim",
)
LATENCY_MIN = _define(
    "ortel_inference_latency_min_seconds",
    "gauge",
    "seconds",
    "Fastest successful inference in the sliding window.",
    ML,
    "ortel.inference.latency.min",
    source="shim",
)
LATENCY_MAX = _define(
    "ortel_inference_latency_max_seconds",
    "gauge",
    "seconds",
    "Slowest successful inference in the sliding window.",
    ML,
    "ortel.inference.latency.max",
    source="shim",
)
WINDOW_INFERENCES = _define(
    "ortel_inference_window_inferences",
    "gauge",
    "",
    "Successful inferences counted in the sliding window the latency gauges describe.",
    ML,
    "ortel.inference.window.count",
    source="shim",
    otel_unit="{inference}",
)
SESSION_LOAD = _define(
    "ortel_session_load_seconds",
    "gauge",
    "seconds",
    "Time to create the inference session (model load and graph compilation), latest session.",
    ML,
    "ortel.session.load.duration",
    source="shim",
)
FIRST_INFERENCE = _define(
    "ortel_first_inference_seconds",
    "gauge",
    "seconds",
    "Duration of the first (cold) inference of the latest session.",
    ML,
    "ortel.inference.first.duration",
    source="shim",
)
SLA_TARGET = _define(
    "ortel_sla_target_seconds",
    "gauge",
    "seconds",
    "Configured latency target for the model.",
    ("model",),
    "ortel.sla.target",
    source="shim",
)
SLA_VIOLATIONS = _define(
    "ortel_sla_violations_total",
    "counter",
    "",
    "Successful inferences slower than the model's latency target.",
    ("model",),
    "ortel.sla.violations",
    source="shim",
    otel_unit="{inference}",
)
SLA_COMPLIANCE = _define(
    "ortel_sla_compliance_ratio",
    "gauge",
    "ratio",
    "Share of successful inferences within the latency target over the sliding window.",
    ("model",),
    "ortel.sla.compliance",
    source="shim",
)

# --- host: cpu ---------------------------------------------------------------------------------
CPU_SECONDS = _define(
    "ortel_cpu_seconds_total",
    "counter",
    "seconds",
    "CPU time spent in each mode, summed over all CPUs (from /proc/stat).",
    ("mode",),
    "system.cpu.time",
)
CPU_UTILIZATION = _define(
    "ortel_cpu_utilization_ratio",
    "gauge",
    "ratio",
    "Share of CPU time in each mode over the last sampling interval, all CPUs.",
    ("mode",),
    "system.cpu.utilization",
)
CPU_CORE_UTILIZATION = _define(
    "ortel_cpu_core_utilization_ratio",
    "gauge",
    "ratio",
    "Busy share of one CPU over the last sampling interval (with --per-core).",
    ("cpu",),
    "ortel.cpu.core.utilization",
)
CPU_FREQUENCY = _define(
    "ortel_cpu_frequency_hertz",
    "gauge",
    "hertz",
    "Current frequency of each CPU (cpufreq scaling_cur_freq).",
    ("cpu",),
    "system.cpu.frequency",
)
CPU_COUNT = _define(
    "ortel_cpu_logical_processors",
    "gauge",
    "",
    "Logical CPUs seen in /proc/stat.",
    (),
    "system.cpu.logical.count",
    otel_unit="{cpu}",
    otel_instrument="updowncounter",
)
CONTEXT_SWITCHES = _define(
    "ortel_context_switches_total",
    "counter",
    "",
    "Context switches on the host since boot (/proc/stat; Windows: ETW CSwitch events since the "
    "daemon's session started).",
    (),
    "ortel.system.context_switches",
    otel_unit="{context_switch}",
)
INTERRUPTS = _define(
    "ortel_interrupts_total",
    "counter",
    "",
    "Interrupts serviced on the host since boot.",
    (),
    "ortel.system.interrupts",
    otel_unit="{interrupt}",
)

# --- host: memory ------------------------------------------------------------------------------
MEMORY_TOTAL = _define(
    "ortel_memory_total_bytes",
    "gauge",
    "bytes",
    "Physical memory (MemTotal).",
    (),
    "system.memory.limit",
    otel_instrument="updowncounter",
)
MEMORY_AVAILABLE = _define(
    "ortel_memory_available_bytes",
    "gauge",
    "bytes",
    "Memory available for new work without swapping (MemAvailable).",
    (),
    "system.memory.linux.available",
    otel_instrument="updowncounter",
)
MEMORY_USED = _define(
    "ortel_memory_used_bytes",
    "gauge",
    "bytes",
    "MemTotal minus MemAvailable.",
    (),
    "system.memory.usage",
    otel_instrument="updowncounter",
    otel_constants=(("system.memory.state", "used"),),
)
SWAP_TOTAL = _define(
    "ortel_swap_total_bytes", "gauge", "bytes", "Swap space (SwapTotal).", (), "ortel.swap.limit"
)
SWAP_USED = _define(
    "ortel_swap_used_bytes",
    "gauge",
    "bytes",
    "SwapTotal minus SwapFree.",
    (),
    "system.paging.usage",
    otel_instrument="updowncounter",
    otel_constants=(("system.paging.state", "used"),),
)
PAGE_FAULTS = _define(
    "ortel_page_faults_total",
    "counter",
    "",
    "Page faults on the host since boot (/proc/vmstat; Windows: ETW PageFault events since the "
    "daemon's session started), minor or major.",
    ("type",),
    "system.paging.faults",
    otel_unit="{fault}",
    otel_attributes=(("system.paging.fault.type", "type"),),
)

# --- processes (the daemon and every instrumented process) ------------------------------------
PL = ("pid", "name", "role")
PROCESS_RSS = _define(
    "ortel_process_resident_memory_bytes",
    "gauge",
    "bytes",
    "Resident set size.",
    PL,
    "process.memory.usage",
    otel_instrument="updowncounter",
)
PROCESS_CPU = _define(
    "ortel_process_cpu_seconds_total",
    "counter",
    "seconds",
    "CPU time, user and system.",
    PL + ("mode",),
    "process.cpu.time",
)
PROCESS_THREADS = _define(
    "ortel_process_threads",
    "gauge",
    "",
    "Threads in the process.",
    PL,
    "process.thread.count",
    otel_unit="{thread}",
    otel_instrument="updowncounter",
)
PROCESS_CTX = _define(
    "ortel_process_context_switches_total",
    "counter",
    "",
    "Context switches of the process, voluntary or involuntary.",
    PL + ("type",),
    "process.context_switches",
    otel_unit="{context_switch}",
    otel_attributes=(("process.context_switch.type", "type"),),
)
PROCESS_FAULTS = _define(
    "ortel_process_page_faults_total",
    "counter",
    "",
    "Page faults of the process, minor or major.",
    PL + ("type",),
    "process.paging.faults",
    otel_unit="{fault}",
    otel_attributes=(("system.paging.fault.type", "type"),),
)

# --- power, energy, thermal, GPU (issue 3: rapl, hwmon, thermal, nvml, powermetrics, estimate) -
# (anchor: power metrics go here)
# Host power domains share one label set so every source fits one metric: source is what measured
# it (rapl, hwmon, powermetrics) or "estimated"; device names the package/chip within the source;
# zone the part of it. NVIDIA GPUs have their own ortel_gpu_* metrics with gpu, uuid and name.
POWER_LABELS = ("source", "device", "zone")
POWER = _define(
    "ortel_power_watts",
    "gauge",
    "watts",
    "Power of one host power domain. source: rapl, hwmon, powermetrics, or estimated (a model, "
    "not a measurement); device: RAPL zone index, hwmon chip, soc (powermetrics), cpu "
    "(estimated); zone: RAPL zone name, hwmon sensor, cpu/gpu/ane, package. RAPL zones nest "
    "(core is part of package): do not sum across zones.",
    POWER_LABELS,
    "ortel.power",
)
ENERGY = _define(
    "ortel_energy_joules_total",
    "counter",
    "joules",
    "Energy integrated by ortel from the power of sources without a hardware energy counter "
    "(estimated, powermetrics); same labels as ortel_power_watts.",
    POWER_LABELS,
    "ortel.energy",
)
RAPL_ENERGY = _define(
    "ortel_rapl_energy_joules_total",
    "counter",
    "joules",
    "Energy of one RAPL powercap zone (energy_uj), monotonic across the hardware counter's "
    "wraparound. zone: the zone's name (package-0, core, uncore, dram, psys); index: its powercap "
    "id (0, 0:1; mmio:0 for an intel-rapl-mmio zone with no MSR twin).",
    ("zone", "index"),
    "ortel.rapl.energy",
)
HWMON_LABELS = ("chip", "sensor", "label")
HWMON_ENERGY = _define(
    "ortel_hwmon_energy_joules_total",
    "counter",
    "joules",
    "Energy counter of an hwmon sensor (energyN_input), as the driver reports it.",
    HWMON_LABELS,
    "ortel.hwmon.energy",
)
TEMPERATURE = _define(
    "ortel_temperature_celsius",
    "gauge",
    "celsius",
    "Temperature of an hwmon sensor (tempN_input). chip: the chip's name (suffixed with its "
    "device when several chips share a name); label: the driver's tempN_label, empty if none.",
    HWMON_LABELS,
    "hw.temperature",
    otel_attributes=(("hw.id", "{chip}/{sensor}"), ("hw.name", "label")),
    otel_constants=(("hw.type", "temperature"), ("ortel.source", "hwmon")),
)
TEMPERATURE_CRITICAL = _define(
    "ortel_temperature_critical_celsius",
    "gauge",
    "celsius",
    "Critical temperature threshold of an hwmon sensor (tempN_crit).",
    HWMON_LABELS,
    "ortel.hwmon.temperature.critical",
)
TEMPERATURE_MAX = _define(
    "ortel_temperature_max_celsius",
    "gauge",
    "celsius",
    "Maximum (high) temperature threshold of an hwmon sensor (tempN_max).",
    HWMON_LABELS,
    "ortel.hwmon.temperature.max",
)
FAN_SPEED = _define(
    "ortel_fan_speed_rpm",
    "gauge",
    "",
    "Fan speed in revolutions per minute, as hwmon reports it (fanN_input).",
    HWMON_LABELS,
    "hw.fan.speed",
    otel_unit="rpm",
    otel_attributes=(("hw.id", "{chip}/{sensor}"), ("hw.name", "label")),
    otel_constants=(("hw.type", "fan"),),
)
TEMPERATURE_MIN = _define(
    "ortel_temperature_min_celsius",
    "gauge",
    "celsius",
    "Minimum (low) temperature threshold of an hwmon sensor (tempN_min).",
    HWMON_LABELS,
    "ortel.hwmon.temperature.min",
)
FAN_SPEED_MIN = _define(
    "ortel_fan_speed_min_rpm",
    "gauge",
    "",
    "Minimum fan speed threshold in revolutions per minute (fanN_min).",
    HWMON_LABELS,
    "ortel.hwmon.fan.speed.min",
    otel_unit="rpm",
)
FAN_SPEED_MAX = _define(
    "ortel_fan_speed_max_rpm",
    "gauge",
    "",
    "Maximum fan speed threshold in revolutions per minute (fanN_max).",
    HWMON_LABELS,
    "ortel.hwmon.fan.speed.max",
    otel_unit="rpm",
)
VOLTAGE = _define(
    "ortel_voltage_volts",
    "gauge",
    "volts",
    "Voltage of an hwmon sensor (inN_input, converted from millivolts).",
    HWMON_LABELS,
    "ortel.hwmon.voltage",
)
VOLTAGE_MIN = _define(
    "ortel_voltage_min_volts",
    "gauge",
    "volts",
    "Minimum voltage threshold of an hwmon sensor (inN_min).",
    HWMON_LABELS,
    "ortel.hwmon.voltage.min",
)
VOLTAGE_MAX = _define(
    "ortel_voltage_max_volts",
    "gauge",
    "volts",
    "Maximum voltage threshold of an hwmon sensor (inN_max).",
    HWMON_LABELS,
    "ortel.hwmon.voltage.max",
)
VOLTAGE_CRITICAL = _define(
    "ortel_voltage_critical_volts",
    "gauge",
    "volts",
    "Critical voltage threshold of an hwmon sensor (inN_crit).",
    HWMON_LABELS,
    "ortel.hwmon.voltage.critical",
)
CURRENT = _define(
    "ortel_current_amperes",
    "gauge",
    "amperes",
    "Current of an hwmon sensor (currN_input, converted from milliamperes).",
    HWMON_LABELS,
    "ortel.hwmon.current",
)
CURRENT_MIN = _define(
    "ortel_current_min_amperes",
    "gauge",
    "amperes",
    "Minimum current threshold of an hwmon sensor (currN_min).",
    HWMON_LABELS,
    "ortel.hwmon.current.min",
)
CURRENT_MAX = _define(
    "ortel_current_max_amperes",
    "gauge",
    "amperes",
    "Maximum current threshold of an hwmon sensor (currN_max).",
    HWMON_LABELS,
    "ortel.hwmon.current.max",
)
CURRENT_CRITICAL = _define(
    "ortel_current_critical_amperes",
    "gauge",
    "amperes",
    "Critical current threshold of an hwmon sensor (currN_crit).",
    HWMON_LABELS,
    "ortel.hwmon.current.critical",
)
HWMON_POWER = _define(
    "ortel_hwmon_power_watts",
    "gauge",
    "watts",
    "Instantaneous power of an hwmon sensor (powerN_input, converted from microwatts).",
    HWMON_LABELS,
    "ortel.hwmon.power",
)
HWMON_POWER_AVERAGE = _define(
    "ortel_hwmon_power_average_watts",
    "gauge",
    "watts",
    "Power of an hwmon sensor averaged over the driver's interval (powerN_average).",
    HWMON_LABELS,
    "ortel.hwmon.power.average",
)
HWMON_POWER_MAX = _define(
    "ortel_hwmon_power_max_watts",
    "gauge",
    "watts",
    "Maximum power threshold of an hwmon sensor (powerN_max).",
    HWMON_LABELS,
    "ortel.hwmon.power.max",
)
HWMON_POWER_CRITICAL = _define(
    "ortel_hwmon_power_critical_watts",
    "gauge",
    "watts",
    "Critical power threshold of an hwmon sensor (powerN_crit).",
    HWMON_LABELS,
    "ortel.hwmon.power.critical",
)
THERMAL_ZONE_TEMPERATURE = _define(
    "ortel_thermal_zone_temperature_celsius",
    "gauge",
    "celsius",
    "Temperature of a kernel thermal zone (thermal_zoneN/temp); type is the zone's driver type.",
    ("zone", "type"),
    "hw.temperature",
    otel_attributes=(("hw.id", "{zone}"), ("hw.name", "type")),
    otel_constants=(("hw.type", "temperature"), ("ortel.source", "thermal")),
)
COOLING_DEVICE_STATE = _define(
    "ortel_cooling_device_state",
    "gauge",
    "",
    "Current state of a kernel cooling device (cur_state; 0 is no cooling, higher is more).",
    ("device", "type"),
    "ortel.thermal.cooling_device.state",
)
COOLING_DEVICE_MAX_STATE = _define(
    "ortel_cooling_device_max_state",
    "gauge",
    "",
    "Highest state of a kernel cooling device (max_state).",
    ("device", "type"),
    "ortel.thermal.cooling_device.max_state",
)
CPU_THROTTLES = _define(
    "ortel_cpu_throttles_total",
    "counter",
    "",
    "Thermal throttling events counted by the kernel (thermal_throttle/*_throttle_count). "
    "scope=core: per CPU; scope=package: per package, under the package's first CPU.",
    ("cpu", "scope"),
    "ortel.cpu.throttles",
)
THERMAL_THROTTLING = _define(
    "ortel_thermal_throttling",
    "gauge",
    "",
    "1 if any CPU's throttle count of this scope rose during the last sampling interval, else 0.",
    ("scope",),
    "ortel.thermal.throttling",
)
CPU_FREQUENCY_MIN = _define(
    "ortel_cpu_frequency_min_hertz",
    "gauge",
    "hertz",
    "Lowest frequency the cpufreq policy allows the CPU (scaling_min_freq).",
    ("cpu",),
    "ortel.cpu.frequency.min",
)
CPU_FREQUENCY_MAX = _define(
    "ortel_cpu_frequency_max_hertz",
    "gauge",
    "hertz",
    "Highest frequency the cpufreq policy allows the CPU now (scaling_max_freq; thermal "
    "cooling lowers it).",
    ("cpu",),
    "ortel.cpu.frequency.max",
)
# Linux power supplies (power_supply collector): batteries, AC adapters, USB-C ports, UPSes.
# power_supply is the supply's directory under /sys/class/power_supply (BAT0, AC, ...). Kept apart
# from ortel_power_watts: a battery's discharge is the whole machine's draw, overlapping RAPL.
PSU = ("power_supply",)
POWER_SUPPLY_INFO = _define(
    "ortel_power_supply_info",
    "gauge",
    "",
    "Always 1 for each power supply the kernel lists; type is its type file (Battery, Mains, USB, "
    "UPS, Wireless).",
    PSU + ("type",),
    "ortel.power_supply.info",
)
POWER_SUPPLY_STATUS = _define(
    "ortel_power_supply_status",
    "gauge",
    "",
    "1 for the supply's current status file value (charging, discharging, not_charging, full, "
    "unknown), 0 for the others; for supplies that have a status file (batteries).",
    PSU + ("status",),
    "ortel.power_supply.status",
    # Not ortel.status: that attribute is an inference's outcome (ok, error).
    otel_attributes=(("ortel.power_supply.status", "status"),),
)
POWER_SUPPLY_ONLINE = _define(
    "ortel_power_supply_online",
    "gauge",
    "",
    "The supply's online file: 0 offline, 1 online, 2 online and programmable (USB); AC adapters "
    "and USB ports.",
    PSU,
    "ortel.power_supply.online",
)
POWER_SUPPLY_CAPACITY = _define(
    "ortel_power_supply_capacity_ratio",
    "gauge",
    "ratio",
    "Charge of a battery as a share of its full charge (capacity, converted from percent).",
    PSU,
    "hw.battery.charge",
    otel_attributes=(("hw.id", "power_supply"),),
    otel_constants=(("hw.type", "battery"),),
)
POWER_SUPPLY_POWER = _define(
    "ortel_power_supply_power_watts",
    "gauge",
    "watts",
    "Power flowing into or out of the supply (power_now, converted from microwatts); a "
    "discharging battery's is the whole machine's draw.",
    PSU,
    "ortel.power_supply.power",
)
POWER_SUPPLY_ENERGY = _define(
    "ortel_power_supply_energy_joules",
    "gauge",
    "joules",
    "Energy stored in a battery now (energy_now, converted from microwatt-hours).",
    PSU,
    "ortel.power_supply.energy",
)
POWER_SUPPLY_ENERGY_FULL = _define(
    "ortel_power_supply_energy_full_joules",
    "gauge",
    "joules",
    "Energy a battery holds when full, as it has aged (energy_full, converted from "
    "microwatt-hours).",
    PSU,
    "ortel.power_supply.energy.full",
)
POWER_SUPPLY_ENERGY_FULL_DESIGN = _define(
    "ortel_power_supply_energy_full_design_joules",
    "gauge",
    "joules",
    "Energy a battery was designed to hold when full (energy_full_design, converted from "
    "microwatt-hours).",
    PSU,
    "ortel.power_supply.energy.full_design",
)
POWER_SUPPLY_VOLTAGE = _define(
    "ortel_power_supply_voltage_volts",
    "gauge",
    "volts",
    "Voltage of the supply now (voltage_now, converted from microvolts).",
    PSU,
    "ortel.power_supply.voltage",
)
POWER_SUPPLY_CURRENT = _define(
    "ortel_power_supply_current_amperes",
    "gauge",
    "amperes",
    "Current flowing into or out of the supply (current_now, converted from microamperes).",
    PSU,
    "ortel.power_supply.current",
)
# NVIDIA GPUs (nvml collector): gpu is the NVML index, uuid the stable id, name the model.
GPU_LABELS = ("gpu", "uuid", "name")
GPU_UTILIZATION = _define(
    "ortel_gpu_utilization_ratio",
    "gauge",
    "ratio",
    "Share of the driver's last sample period during which a kernel ran on the GPU.",
    GPU_LABELS,
    "hw.gpu.utilization",
    otel_attributes=GPU_OTEL,
    otel_constants=GPU_HW,
)
GPU_MEMORY_UTILIZATION = _define(
    "ortel_gpu_memory_utilization_ratio",
    "gauge",
    "ratio",
    "Share of the driver's last sample period during which GPU memory was read or written.",
    GPU_LABELS,
    "hw.gpu.memory.utilization",
    otel_attributes=GPU_OTEL,
    otel_constants=GPU_HW,
)
GPU_MEMORY_USED = _define(
    "ortel_gpu_memory_used_bytes",
    "gauge",
    "bytes",
    "GPU memory in use.",
    GPU_LABELS,
    "hw.gpu.memory.usage",
    otel_instrument="updowncounter",
    otel_attributes=GPU_OTEL,
    otel_constants=GPU_HW,
)
GPU_MEMORY_TOTAL = _define(
    "ortel_gpu_memory_total_bytes",
    "gauge",
    "bytes",
    "GPU memory installed.",
    GPU_LABELS,
    "hw.gpu.memory.limit",
    otel_instrument="updowncounter",
    otel_attributes=GPU_OTEL,
    otel_constants=GPU_HW,
)
GPU_POWER = _define(
    "ortel_gpu_power_watts",
    "gauge",
    "watts",
    "GPU board power draw.",
    GPU_LABELS,
    "hw.power",
    otel_attributes=GPU_OTEL,
    otel_constants=GPU_HW,
)
GPU_POWER_LIMIT = _define(
    "ortel_gpu_power_limit_watts",
    "gauge",
    "watts",
    "Power limit the GPU enforces now.",
    GPU_LABELS,
    "ortel.gpu.power.limit",
)
GPU_ENERGY = _define(
    "ortel_gpu_energy_joules_total",
    "counter",
    "joules",
    "GPU energy: the driver's total energy counter where the GPU has one (Volta and newer), "
    "else board power integrated over the sampling interval by ortel.",
    GPU_LABELS,
    "hw.energy",
    otel_attributes=GPU_OTEL,
    otel_constants=GPU_HW,
)
GPU_TEMPERATURE = _define(
    "ortel_gpu_temperature_celsius",
    "gauge",
    "celsius",
    "GPU core temperature.",
    GPU_LABELS,
    "hw.temperature",
    otel_attributes=GPU_OTEL,
    otel_constants=GPU_HW,
)
GPU_MEMORY_TEMPERATURE = _define(
    "ortel_gpu_memory_temperature_celsius",
    "gauge",
    "celsius",
    "GPU memory (HBM) temperature, where the GPU reports it.",
    GPU_LABELS,
    "ortel.gpu.memory.temperature",
)
GPU_CLOCK = _define(
    "ortel_gpu_clock_hertz",
    "gauge",
    "hertz",
    "Current GPU clock, clock=sm or memory.",
    GPU_LABELS + ("clock",),
    "ortel.gpu.clock",
)
GPU_THROTTLE_REASON = _define(
    "ortel_gpu_throttle_reason",
    "gauge",
    "",
    "1 while the reason holds the GPU's clocks down (NVML clock event reasons), else 0.",
    GPU_LABELS + ("reason",),
    "ortel.gpu.throttle_reason",
)
GPU_PCIE_THROUGHPUT = _define(
    "ortel_gpu_pcie_bytes_per_second",
    "gauge",
    "",
    "PCIe traffic of the GPU in bytes per second over the driver's last 20 ms sample, "
    "direction=tx (from the GPU) or rx (to the GPU).",
    GPU_LABELS + ("direction",),
    "ortel.gpu.pcie.throughput",
    otel_unit="By/s",
)
GPU_PROCESS_MEMORY = _define(
    "ortel_gpu_process_memory_bytes",
    "gauge",
    "bytes",
    "GPU memory used by an instrumented process (pid as the driver sees it).",
    GPU_LABELS + ("pid",),
    "ortel.gpu.process.memory.used",
)
GPU_PROCESS_UTILIZATION = _define(
    "ortel_gpu_process_utilization_ratio",
    "gauge",
    "ratio",
    "Share of the GPU's SM time used by an instrumented process over the last sampling interval.",
    GPU_LABELS + ("pid",),
    "ortel.gpu.process.utilization",
)
GPU_SM_OCCUPANCY = _define(
    "ortel_gpu_sm_occupancy_ratio",
    "gauge",
    "ratio",
    "Resident warps as a share of the theoretical maximum over the last sampling interval "
    "(GPM: Hopper and newer).",
    GPU_LABELS,
    "ortel.gpu.sm.occupancy",
)
GPU_TENSOR_ACTIVITY = _define(
    "ortel_gpu_tensor_activity_ratio",
    "gauge",
    "ratio",
    "Share of the last sampling interval the SMs ran any tensor-core instruction (GPM: Hopper "
    "and newer).",
    GPU_LABELS,
    "ortel.gpu.tensor.activity",
)
CARBON = _define(
    "ortel_carbon_grams_total",
    "counter",
    "",
    "CO2-equivalent grams emitted for the energy counted so far: energy times "
    "--grid-intensity-g-per-kwh, by the energy's source (rapl: package and dram zones; nvml; "
    "estimated; powermetrics).",
    ("source",),
    "ortel.carbon.emissions",
    otel_unit="g",
)

# --- energy attribution (issue 4) ---------------------------------------------------------------
# (anchor: attribution metrics go here)
# The daemon splits each energy source's measured (or estimated) energy every sampling interval
# (exporter/ortel/exporter/attribution.py, docs/energy.md). source is "measured" or "estimated";
# the window gauges say "estimated" as soon as any of the energy they divide is an estimate.
INFERENCE_ENERGY = _define(
    "ortel_inference_energy_joules_total",
    "counter",
    "joules",
    "Energy attributed to the model's inferences: each interval's non-idle energy of a source, "
    "shared among processes by CPU time (CPU) or GPU utilisation (GPU), then within a process "
    "among models by inference busy time. device: cpu or gpu; source: measured or estimated.",
    ("model", "device", "source"),
    "ortel.inference.energy",
)
ENERGY_ATTRIBUTION = _define(
    "ortel_energy_attribution_joules_total",
    "counter",
    "joules",
    "Every joule the attribution took in, by part: attributed (the sum of "
    "ortel_inference_energy_joules_total), idle (the source's idle power), unattributed (other "
    "processes, instrumented processes outside inference, intervals without data). The parts "
    "add up to what the source measured since the daemon's first interval.",
    ("device", "source", "part"),
    "ortel.energy.attribution",
)
ENERGY_PER_INFERENCE = _define(
    "ortel_inference_energy_per_inference_joules",
    "gauge",
    "joules",
    "Attributed joules per inference call (ok and error) of the model over the sliding window.",
    ("model", "source"),
    "ortel.inference.energy_per_inference",
)
INFERENCES_PER_JOULE = _define(
    "ortel_inferences_per_joule",
    "gauge",
    "",
    "Inference calls of the model per attributed joule over the sliding window.",
    ("model", "source"),
    "ortel.inference.per_joule",
    otel_unit="{inference}",
)
ENERGY_PER_TOKEN = _define(
    "ortel_energy_per_token_joules",
    "gauge",
    "joules",
    "Attributed joules per generated token (ortel_generated_tokens_total) of the model over "
    "the sliding window.",
    ("model", "source"),
    "ortel.gen_ai.energy_per_token",
)
FLOPS_PER_WATT = _define(
    "ortel_flops_per_watt",
    "gauge",
    "",
    "Floating-point operations per attributed joule (FLOP/s per watt) of the model over the "
    "sliding window: the FLOPs per inference declared with flops= times its successful "
    "inferences, divided by its attributed energy.",
    ("model", "source"),
    "ortel.inference.flops_per_watt",
    otel_unit="{flop}",
)
INFERENCE_CARBON = _define(
    "ortel_inference_carbon_grams_total",
    "counter",
    "",
    "CO2-equivalent grams of the energy attributed to the model's inferences "
    "(--grid-intensity-g-per-kwh at the time).",
    ("model", "source"),
    "ortel.inference.carbon",
    otel_unit="g",
)
CARBON_PER_INFERENCE = _define(
    "ortel_inference_carbon_per_inference_grams",
    "gauge",
    "",
    "CO2-equivalent grams per inference call of the model over the sliding window.",
    ("model", "source"),
    "ortel.inference.carbon_per_inference",
    otel_unit="g",
)
EFFICIENCY_COMPONENT = _define(
    "ortel_efficiency_component_ratio",
    "gauge",
    "ratio",
    "One component of ortel_efficiency_score over the sliding window (docs/energy.md): "
    "active_energy (share of the measured energy above idle, host), inference_energy (share of "
    "that active energy attributed to inference, host), energy_per_inference (the model's best "
    "window joules per inference since the daemon started over the current one), sla_compliance "
    "(where a latency target is set).",
    ("model", "source", "component"),
    "ortel.efficiency.component",
)
EFFICIENCY_SCORE = _define(
    "ortel_efficiency_score",
    "gauge",
    "",
    "Efficiency score from 0 to 100: 100 times the mean of the model's "
    "ortel_efficiency_component_ratio components (equal weights; docs/energy.md).",
    ("model", "source"),
    "ortel.efficiency.score",
)
BLOCK_ENERGY = _define(
    "ortel_inference_block_energy_joules_total",
    "counter",
    "joules",
    "Energy the host's counters measured during the model's ortel.instrumentation.energy() "
    "blocks, read in-process: the whole host's (device cpu) or GPUs' (device gpu) energy while "
    "the block ran, other work included; not attributed.",
    ("model", "device", "source"),
    "ortel.inference.block_energy",
    source="shim",
)

# --- operators and generation (issues 5, 6) -----------------------------------------------------
# (anchor: operator and LLM metrics go here)
# Per-operator timings: the shim's sampled profiling (issue 5) and ONNX Runtime's ETW provider on
# Windows (issue 10, collectors/etw.py) fold into the same histograms.
OPERATOR_DURATION = _define(
    "ortel_operator_duration_seconds",
    "histogram",
    "seconds",
    "Time spent in one operator (graph node) of an inference, by operator type.",
    ("model", "op_type", "provider"),
    "ortel.operator.duration",
    # Kernels run for microseconds: the latency grid extended two decades down (0.5 µs … 60 s,
    # four per decade; every default latency bound is also a bound here).
    log_buckets(5e-7, 60.0, 4),
)
# The shim's operator sampling (issue 5): ORTEL_OP_SAMPLE_SECONDS / instrument_session(...,
# op_sample_seconds=N) profiles one inference every N seconds on a separate profiling session.
OPERATOR_SHARE = _define(
    "ortel_operator_share_ratio",
    "gauge",
    "ratio",
    "Share of the summed operator time of sampled inferences spent in each operator type, "
    "since start.",
    ("model", "op_type"),
    "ortel.operator.share",
    source="shim",
)
OPERATOR_SAMPLES = _define(
    "ortel_operator_sampled_inferences_total",
    "counter",
    "",
    "Inferences whose operator timings were sampled (ORTEL_OP_SAMPLE_SECONDS).",
    ("model",),
    "ortel.operator.samples",
    source="shim",
)
GRAPH_NODES = _define(
    "ortel_graph_nodes",
    "gauge",
    "",
    "Graph nodes the latest sampled inference ran, by execution provider.",
    ("model", "provider"),
    "ortel.graph.nodes",
    source="shim",
)
GRAPH_MEMCPY_NODES = _define(
    "ortel_graph_memcpy_nodes",
    "gauge",
    "",
    "Memcpy nodes (copies between execution providers: provider transitions) the latest "
    "sampled inference ran.",
    ("model",),
    "ortel.graph.memcpy_nodes",
    source="shim",
)
# LLM generation (issue 6), recorded by track_generation. Buckets: the OTel gen_ai semconv advice.
TTFT_BUCKETS = (
    *(0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1),
    *(0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0),
)
TPOT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)
TIME_TO_FIRST_TOKEN = _define(
    "ortel_time_to_first_token_seconds",
    "histogram",
    "seconds",
    "Time from the start of a generation to its first output token (prefill included).",
    ML,
    "gen_ai.server.time_to_first_token",
    TTFT_BUCKETS,
    source="shim",
    otel_attributes=GEN_AI_OTEL,
    otel_constants=GEN_AI_CONSTANTS,
)
INTER_TOKEN_LATENCY = _define(
    "ortel_inter_token_latency_seconds",
    "histogram",
    "seconds",
    "Time between consecutive output tokens of a generation (decode step, TPOT).",
    ML,
    "gen_ai.server.time_per_output_token",
    TPOT_BUCKETS,
    source="shim",
    otel_attributes=GEN_AI_OTEL,
    otel_constants=GEN_AI_CONSTANTS,
)
GENERATED_TOKENS = _define(
    "ortel_generated_tokens_total",
    "counter",
    "",
    "Output tokens produced by tracked generations.",
    ML,
    "ortel.gen_ai.tokens.generated",
    source="shim",
    otel_unit="{token}",
)
PROMPT_TOKENS = _define(
    "ortel_prompt_tokens_total",
    "counter",
    "",
    "Prompt (input) tokens of tracked generations, where the caller gave the count.",
    ML,
    "ortel.gen_ai.tokens.prompt",
    source="shim",
    otel_unit="{token}",
)

# --- kernel and runtime events (issue 10) -------------------------------------------------------
# (anchor: event metrics go here)
# Per-process counters share PL with the process collector so that Linux (procfs, perf_event) and
# Windows (ETW) answer with the same names.
PROCESS_DISK_IO = _define(
    "ortel_process_disk_io_bytes_total",
    "counter",
    "bytes",
    "Bytes the process read from or wrote to storage (Linux /proc/<pid>/io read_bytes and "
    "write_bytes; Windows ETW DiskIO events since the daemon's session started).",
    PL + ("direction",),
    "process.disk.io",
    otel_attributes=(("disk.io.direction", "direction"),),
)
DISK_IO = _define(
    "ortel_disk_io_bytes_total",
    "counter",
    "bytes",
    "Bytes read from or written to each whole disk (Linux /proc/diskstats; Windows ETW DiskIO "
    "events since the daemon's session started).",
    ("device", "direction"),
    "system.disk.io",
    otel_attributes=(("system.device", "device"), ("disk.io.direction", "direction")),
)
DISK_OPERATIONS = _define(
    "ortel_disk_operations_total",
    "counter",
    "",
    "Completed reads or writes of each whole disk (Linux /proc/diskstats; Windows ETW DiskIO "
    "events since the daemon's session started).",
    ("device", "direction"),
    "system.disk.operations",
    otel_unit="{operation}",
    otel_attributes=(("system.device", "device"), ("disk.io.direction", "direction")),
)
# Hardware counters. method="counted": Linux perf_event counting (scaled by enabled/running time
# when the PMU multiplexes, see ortel_process_hw_counter_running_ratio); method="sampled": Windows
# PMC sampling, samples x sampling interval (an estimate).
HL = PL + ("method",)
PROCESS_CYCLES = _define(
    "ortel_process_cpu_cycles_total",
    "counter",
    "",
    "CPU cycles spent by the process's threads (hardware counter).",
    HL,
    "ortel.process.cpu.cycles",
)
PROCESS_INSTRUCTIONS = _define(
    "ortel_process_instructions_total",
    "counter",
    "",
    "Instructions retired by the process's threads (hardware counter).",
    HL,
    "ortel.process.cpu.instructions",
)
PROCESS_CACHE_REFERENCES = _define(
    "ortel_process_cache_references_total",
    "counter",
    "",
    "Cache references of the process (hardware counter; usually last-level cache accesses).",
    HL,
    "ortel.process.cache.references",
)
PROCESS_CACHE_MISSES = _define(
    "ortel_process_cache_misses_total",
    "counter",
    "",
    "Cache misses of the process (hardware counter; usually last-level cache misses).",
    HL,
    "ortel.process.cache.misses",
)
PROCESS_LLC_LOADS = _define(
    "ortel_process_llc_loads_total",
    "counter",
    "",
    "Last-level cache read accesses of the process (hardware cache counter).",
    HL,
    "ortel.process.cache.llc.loads",
)
PROCESS_LLC_LOAD_MISSES = _define(
    "ortel_process_llc_load_misses_total",
    "counter",
    "",
    "Last-level cache read misses of the process (hardware cache counter).",
    HL,
    "ortel.process.cache.llc.load_misses",
)
PROCESS_IPC = _define(
    "ortel_process_instructions_per_cycle",
    "gauge",
    "",
    "Instructions retired per CPU cycle by the process over the last sampling interval.",
    HL,
    "ortel.process.cpu.ipc",
)
PROCESS_HW_RUNNING = _define(
    "ortel_process_hw_counter_running_ratio",
    "gauge",
    "ratio",
    "Share of the time since it was attached that a hardware counter was on the PMU; below 1 "
    "the totals are scaled up from the time it ran (perf multiplexing).",
    PL + ("event",),
    "ortel.process.hw_counter.running",
)
ETW_EVENTS = _define(
    "ortel_etw_events_total",
    "counter",
    "",
    "ETW events the daemon's sessions delivered, by provider (Windows).",
    ("provider",),
    "ortel.etw.events",
)
ETW_EVENTS_LOST = _define(
    "ortel_etw_events_lost_total",
    "counter",
    "",
    "ETW events the daemon's sessions dropped because their buffers were full (Windows).",
    ("session",),
    "ortel.etw.events.lost",
)

# --- security and reliability (issue 9) --------------------------------------------------------
# (anchor: reliability metrics go here)
LABEL_VALUES_DROPPED = _define(
    "ortel_label_values_dropped_total",
    "counter",
    "",
    "Distinct label values replaced by __other__ because the label reached its cap of distinct "
    "values (--label-limits, ORTEL_LABEL_LIMITS), shim and daemon together.",
    ("label",),
    "ortel.label.values.dropped",
    otel_unit="{value}",
)
COLLECTOR_LAST_SUCCESS = _define(
    "ortel_collector_last_success_timestamp_seconds",
    "gauge",
    "seconds",
    "Unix time the collector's latest successful sample finished; absent until one has. A failed "
    "or hung collector's readings are not served: this tells how old its last good ones are.",
    ("collector",),
    "ortel.collector.last_success",
)
CONFIG_RELOAD_SUCCESS = _define(
    "ortel_config_last_reload_success",
    "gauge",
    "",
    "1 if the latest load of the config file (SIGHUP) or web config (on change) succeeded, 0 if "
    "it failed and the previous settings stay in force.",
    ("config",),
    "ortel.config.reload.success",
)

# --- OTLP export (issue 7) ---------------------------------------------------------------------
OTLP_DROPPED = _define(
    "ortel_otlp_dropped_total",
    "counter",
    "",
    "Telemetry this process gave up on exporting over OTLP. signal: spans or metrics; reason: "
    "queue_full (the span queue was full: inference never waits for the exporter) or "
    "export_failed (the exporter failed after its retries; for metrics, the data points of that "
    "export, which the next cumulative export carries again).",
    ("signal", "reason"),
    "ortel.otlp.dropped",
    otel_unit="{item}",
)

# --- the daemon's own health -------------------------------------------------------------------
COLLECTOR_DURATION = _define(
    "ortel_scrape_collector_duration_seconds",
    "gauge",
    "seconds",
    "How long the collector's latest sample took.",
    ("collector",),
    "ortel.collector.duration",
)
COLLECTOR_SUCCESS = _define(
    "ortel_scrape_collector_success",
    "gauge",
    "",
    "1 if the collector's latest sample succeeded (including 'no data on this machine'), 0 if it "
    "failed.",
    ("collector",),
    "ortel.collector.success",
)
COLLECTOR_HAS_DATA = _define(
    "ortel_scrape_collector_has_data",
    "gauge",
    "",
    "1 if the collector found its data source on this machine, 0 for 'no data here'.",
    ("collector",),
    "ortel.collector.has_data",
)
MULTIPROC_PROCESSES = _define(
    "ortel_multiproc_processes",
    "gauge",
    "",
    "Instrumented processes whose snapshots the daemon merged, live or compacted.",
    ("state",),
    "ortel.multiproc.processes",
    otel_unit="{process}",
)
MULTIPROC_BAD_FILES = _define(
    "ortel_multiproc_bad_files_total",
    "counter",
    "",
    "Unreadable or malformed snapshot files skipped in the multiprocess directory.",
    (),
    "ortel.multiproc.bad_files",
    otel_unit="{file}",
)
SCRAPES_REJECTED = _define(
    "ortel_scrapes_rejected_total",
    "counter",
    "",
    "Scrapes of /metrics answered 503 at once because the server already had its limit of "
    "scrapes in flight (--web-max-requests; max_requests of start_http_server).",
    (),
    "ortel.scrapes.rejected",
    otel_unit="{request}",
)
BUILD_INFO = _define(
    "ortel_build_info",
    "gauge",
    "",
    "Always 1; labels carry the ortel and Python versions.",
    ("version", "python"),
    "ortel.build.info",
    otel_attributes=(("process.runtime.version", "python"),),
)


def all_metrics() -> tuple[MetricDef, ...]:
    return tuple(_ALL.values())


def get(name: str) -> MetricDef:
    return _ALL[name]
