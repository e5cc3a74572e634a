"""The metric catalogue: every metric ortel exports, defined once.

Prometheus name, kind, base unit, help text, label names, bucket boundaries and the OTel name all
live here. The shim, the daemon's collectors, exposition, the README catalogue and the dashboards
read from (or are tested against) this module, so a name is never spelled twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["counter", "gauge", "histogram", "summary"]


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

    @property
    def family_name(self) -> str:
        """Name without the counter suffix, as prometheus_client metric families expect."""
        return self.name[: -len("_total")] if self.kind == "counter" else self.name


_ALL: dict[str, MetricDef] = {}


def _define(*args, **kwargs) -> MetricDef:
    m = MetricDef(*args, **kwargs)
    if m.name in _ALL:
        raise ValueError(f"metric {m.name} defined twice")
    _ALL[m.name] = m
    return m


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
)
INFERENCE_ITEMS = _define(
    "ortel_inference_items_total",
    "counter",
    "",
    "Batch items processed (leading dimension of the first input, where known).",
    ML,
    "ortel.inference.items",
    source="shim",
)
INFERENCE_ERRORS = _define(
    "ortel_inference_errors_total",
    "counter",
    "",
    "Inference calls that raised, by exception type.",
    ("model", "error_type"),
    "ortel.inference.errors",
    source="shim",
)
LATENCY_QUANTILE = _define(
    "ortel_inference_latency_seconds",
    "summary",
    "seconds",
    "Latency of successful inferences: quantiles over the sliding window (relative error <= 0.5%),"
    " _count and _sum since start.",
    ML,
    "ortel.inference.latency",
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
)
CONTEXT_SWITCHES = _define(
    "ortel_context_switches_total",
    "counter",
    "",
    "Context switches on the host since boot.",
    (),
    "system.cpu.context_switches",
)
INTERRUPTS = _define(
    "ortel_interrupts_total",
    "counter",
    "",
    "Interrupts serviced on the host since boot.",
    (),
    "system.cpu.interrupts",
)

# --- host: memory ------------------------------------------------------------------------------
MEMORY_TOTAL = _define(
    "ortel_memory_total_bytes",
    "gauge",
    "bytes",
    "Physical memory (MemTotal).",
    (),
    "system.memory.limit",
)
MEMORY_AVAILABLE = _define(
    "ortel_memory_available_bytes",
    "gauge",
    "bytes",
    "Memory available for new work without swapping (MemAvailable).",
    (),
    "ortel.memory.available",
)
MEMORY_USED = _define(
    "ortel_memory_used_bytes",
    "gauge",
    "bytes",
    "MemTotal minus MemAvailable.",
    (),
    "system.memory.usage",
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
)
PAGE_FAULTS = _define(
    "ortel_page_faults_total",
    "counter",
    "",
    "Page faults on the host since boot (from /proc/vmstat), minor or major.",
    ("type",),
    "system.paging.faults",
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
    "ortel_process_threads", "gauge", "", "Threads in the process.", PL, "process.thread.count"
)
PROCESS_CTX = _define(
    "ortel_process_context_switches_total",
    "counter",
    "",
    "Context switches of the process, voluntary or involuntary.",
    PL + ("type",),
    "process.context_switches",
)
PROCESS_FAULTS = _define(
    "ortel_process_page_faults_total",
    "counter",
    "",
    "Page faults of the process, minor or major.",
    PL + ("type",),
    "process.paging.faults",
)

# --- power, energy, thermal, GPU (issue 3: rapl, hwmon, thermal, nvml, powermetrics, estimate) -
# (anchor: power metrics go here)

# --- energy attribution (issue 4) ---------------------------------------------------------------
# (anchor: attribution metrics go here)

# --- operators and generation (issues 5, 6) -----------------------------------------------------
# (anchor: operator and LLM metrics go here)

# --- kernel and runtime events (issue 10) -------------------------------------------------------
# (anchor: event metrics go here)

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
)
MULTIPROC_BAD_FILES = _define(
    "ortel_multiproc_bad_files_total",
    "counter",
    "",
    "Unreadable or malformed snapshot files skipped in the multiprocess directory.",
    (),
    "ortel.multiproc.bad_files",
)
BUILD_INFO = _define(
    "ortel_build_info",
    "gauge",
    "",
    "Always 1; labels carry the ortel and Python versions.",
    ("version", "python"),
    "ortel.build.info",
)


def all_metrics() -> tuple[MetricDef, ...]:
    return tuple(_ALL.values())


def get(name: str) -> MetricDef:
    return _ALL[name]
