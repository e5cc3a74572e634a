"""Grafana dashboards, generated from the metric catalogue: the one source of truth.

Each dashboard is a compact list of rows and panels below; every query names its metrics through
``catalog`` MetricDefs, so a metric's name is never spelled here and a panel for a metric that
does not exist yet cannot be written. Adding a panel is one line in a row.

    python -m ortel.exporter.dashboards --write dashboards helm/ortel/dashboards
    python -m ortel.exporter.dashboards --check dashboards helm/ortel/dashboards  # exit 1: stale

Queries use three template variables: ``$datasource`` (a Prometheus data source), ``$instance``
and, where the metrics carry it, ``$model``; ``$__rate_interval`` is Grafana's built-in.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ortel.core import catalog as c
from ortel.core.catalog import MetricDef
from ortel.exporter import rules as r

# Grafana 11.0's dashboard schema; newer Grafana migrates it on load, older Grafana cannot read
# newer schemas, so this is the oldest version that has every panel option used here.
SCHEMA_VERSION = 39
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
TAG = "ortel"
RATE = "$__rate_interval"

_SUFFIXES = {"histogram": ("bucket", "sum", "count"), "summary": ("sum", "count")}


# --- query building -----------------------------------------------------------------------------
def sel(m: MetricDef, *matchers: str, suffix: str = "") -> str:
    """``name{instance=~"$instance", model=~"$model", matchers...}`` for one metric.

    ``$model`` is added only when the metric has a model label; ``suffix`` picks a histogram or
    summary series (bucket, sum, count).
    """
    name = m.name
    if suffix:
        if suffix not in _SUFFIXES.get(m.kind, ()):
            raise ValueError(f"{m.name} ({m.kind}) has no _{suffix} series")
        name = f"{m.name}_{suffix}"
    implicit = {"histogram": ("le",), "summary": ("quantile",)}.get(m.kind, ())
    for matcher in matchers:
        label = re.split(r"[=!~]", matcher, maxsplit=1)[0]
        if label not in m.labels + implicit:
            raise ValueError(f"{m.name} has no label {label!r}")
    parts = ['instance=~"$instance"']
    if "model" in m.labels:
        parts.append('model=~"$model"')
    parts += matchers
    return f"{name}{{{','.join(parts)}}}"


def _by(by: tuple[str, ...] | str) -> str:
    labels = (by,) if isinstance(by, str) else by
    return f"sum by ({', '.join(labels)}) " if labels else "sum "


def rate(m: MetricDef, *matchers: str, by: tuple[str, ...] | str = (), suffix: str = "") -> str:
    """Per-second rate of a counter (or a histogram/summary series), summed by ``by``."""
    if m.kind == "gauge":
        raise ValueError(f"{m.name} is a gauge: rate() of it means nothing")
    return f"{_by(by)}(rate({sel(m, *matchers, suffix=suffix)}[{RATE}]))"


def quantile(q: float, m: MetricDef, *matchers: str, by: tuple[str, ...] | str = ()) -> str:
    """``histogram_quantile`` over the histogram's buckets: aggregates across instances."""
    if m.kind != "histogram":
        raise ValueError(f"{m.name} is not a histogram")
    labels = ((by,) if isinstance(by, str) else by) + ("le",)
    return f"histogram_quantile({q:g}, {rate(m, *matchers, by=labels, suffix='bucket')})"


def agg(m: MetricDef, *matchers: str, by: tuple[str, ...] | str = (), op: str = "sum") -> str:
    """A gauge aggregated by ``by`` (``max by (model) (...)`` and friends)."""
    labels = (by,) if isinstance(by, str) else by
    group = f" by ({', '.join(labels)})" if labels else ""
    return f"{op}{group} ({sel(m, *matchers)})"


def per(numerator: str, denominator: str) -> str:
    """``numerator / denominator`` where the denominator is one series (an un-grouped sum) and
    the numerator may be grouped (``by (source)``): every numerator series divided by it."""
    return f"{numerator} / on() group_left() {denominator}"


def any_of(*selectors: str) -> str:
    """The union of several metrics' series (``a or b``), e.g. every temperature reading."""
    return " or ".join(selectors)


# --- the compact spec ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Q:
    """One query of a panel."""

    expr: str
    legend: str = ""
    fmt: str = "time_series"  # time_series | heatmap | table
    instant: bool = False


@dataclass(frozen=True)
class Panel:
    title: str
    queries: tuple[Q, ...]
    unit: str = "short"
    kind: str = "timeseries"  # timeseries | stat | heatmap | table
    width: int = 12
    height: int = 8
    description: str = ""  # default: the catalogue's help of every metric the queries use
    stack: bool = False
    min: float | None = 0  # every ortel metric is non-negative
    max: float | None = None
    thresholds: tuple[tuple[float | None, str], ...] = ()  # (from value, colour); None = base
    threshold_lines: bool = False  # draw the thresholds on a time series (dashed)
    soft_max: float | None = None  # the y axis reaches at least this: a threshold line shows


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...]


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    rows: tuple[Row, ...]
    refresh: str = "30s"
    time_from: str = "now-1h"
    extra_tags: tuple[str, ...] = field(default=())
    one_instance: bool = False  # host views: sums over several hosts would mean nothing
    model_source: MetricDef = c.INFERENCES  # where $model's values come from

    @property
    def filename(self) -> str:
        return f"{self.uid}.json"


def P(title: str, *queries: Q | str, **kw: Any) -> Panel:  # noqa: N802 - reads like a table row
    """A panel; bare strings are queries without a legend."""
    return Panel(title, tuple(q if isinstance(q, Q) else Q(q) for q in queries), **kw)


# --- the dashboards -----------------------------------------------------------------------------
OK = 'status="ok"'
ERR = 'status="error"'
M = "model"
MP = ("model", "provider")
GOOD = ((None, "red"), (0.95, "orange"), (0.99, "green"))  # SLA compliance colours

# Disjoint power domains that together make the host's CPU (or SoC) and memory power: RAPL's package
# and DRAM zones, the estimate's package, powermetrics' cpu, gpu and ane (docs/power.md). RAPL's
# core, uncore and psys zones nest inside or around these and would count twice.
HOST_POWER_ZONES = "package.*|dram|cpu|gpu|ane"
HOST_POWER = agg(c.POWER, f'zone=~"{HOST_POWER_ZONES}"', by="source")
INFERENCE_RATE = rate(c.INFERENCES)
TEMPERATURES = any_of(sel(c.TEMPERATURE), sel(c.THERMAL_ZONE_TEMPERATURE), sel(c.GPU_TEMPERATURE))
NOT_ATTRIBUTED = (
    " This is the whole host's CPU and memory power (by source: measured, or 'estimated') divided "
    "by the rate of the selected models: everything else the host runs is included, so it is an "
    "upper bound, not a per-model attribution."
)
HOT = ((None, "green"), (80, "orange"), (95, "red"))
GPU_DEVICE = 'device="gpu"'

OVERVIEW = Dashboard(
    "ortel-overview",
    "ortel / Overview",
    "What inference costs right now: throughput, latency, errors and SLA compliance per model.",
    (
        Row(
            "Now",
            (
                P(
                    "Throughput",
                    Q(rate(c.INFERENCES)),
                    unit="ops",
                    kind="stat",
                    width=4,
                    height=4,
                ),
                P(
                    "p50 latency",
                    Q(quantile(0.5, c.INFERENCE_DURATION, OK)),
                    unit="s",
                    kind="stat",
                    width=4,
                    height=4,
                ),
                P(
                    "p99 latency",
                    Q(quantile(0.99, c.INFERENCE_DURATION, OK)),
                    unit="s",
                    kind="stat",
                    width=4,
                    height=4,
                ),
                P(
                    "Error ratio",
                    Q(f"{rate(c.INFERENCES, ERR)} / {rate(c.INFERENCES)}"),
                    unit="percentunit",
                    kind="stat",
                    width=4,
                    height=4,
                    thresholds=((None, "green"), (0.001, "orange"), (0.01, "red")),
                    description="Share of inference calls that raised, all selected models.",
                ),
                P(
                    "Worst SLA compliance",
                    Q(agg(c.SLA_COMPLIANCE, op="min")),
                    unit="percentunit",
                    kind="stat",
                    width=4,
                    height=4,
                    thresholds=GOOD,
                ),
                P(
                    "Instances",
                    Q(f"count({sel(c.BUILD_INFO)})"),
                    kind="stat",
                    width=4,
                    height=4,
                    description="ortel daemons (or instrumented processes serving their own "
                    "/metrics) reporting.",
                ),
                P(
                    "CPU+DRAM power",
                    Q(HOST_POWER, "{{source}}"),
                    unit="watt",
                    kind="stat",
                    width=8,
                    height=4,
                    description="Host CPU package and memory power by source: rapl, hwmon and "
                    "powermetrics are measurements, 'estimated' is a model of CPU power from "
                    "utilisation.",
                ),
                P(
                    "Energy per inference",
                    Q(
                        agg(c.ENERGY_PER_INFERENCE, by=(M, "source"), op="max"),
                        "{{model}} ({{source}})",
                    ),
                    unit="joule",
                    kind="stat",
                    width=8,
                    height=4,
                ),
                P(
                    "Hottest temperature",
                    Q(f"max({TEMPERATURES})"),
                    unit="celsius",
                    kind="stat",
                    width=8,
                    height=4,
                    thresholds=HOT,
                    description="The hottest of every temperature sensor: hwmon, thermal zones "
                    "and GPUs.",
                ),
            ),
        ),
        Row(
            "Inference",
            (
                P("Throughput by model", Q(rate(c.INFERENCES, by=M), "{{model}}"), unit="ops"),
                P(
                    "Latency p50 / p99 by model",
                    Q(quantile(0.5, c.INFERENCE_DURATION, OK, by=M), "{{model}} p50"),
                    Q(quantile(0.99, c.INFERENCE_DURATION, OK, by=M), "{{model}} p99"),
                    unit="s",
                ),
                P(
                    "Errors by model and type",
                    Q(rate(c.INFERENCE_ERRORS, by=(M, "error_type")), "{{model}} {{error_type}}"),
                    unit="ops",
                ),
                P(
                    "SLA compliance by model",
                    Q(agg(c.SLA_COMPLIANCE, by=M, op="min"), "{{model}}"),
                    unit="percentunit",
                    max=1,
                ),
                P(
                    "Energy per inference by model",
                    Q(
                        agg(c.ENERGY_PER_INFERENCE, by=(M, "source"), op="max"),
                        "{{model}} ({{source}})",
                    ),
                    unit="joule",
                ),
                P(
                    "Efficiency score",
                    Q(
                        agg(c.EFFICIENCY_SCORE, by=(M, "source"), op="min"),
                        "{{model}} ({{source}})",
                    ),
                    max=100,
                ),
                P("Batch items per second", Q(rate(c.INFERENCE_ITEMS, by=M), "{{model}}")),
                P(
                    "Mean batch size",
                    Q(
                        f"{rate(c.INFERENCE_ITEMS, by=M)} / {rate(c.INFERENCES, OK, by=M)}",
                        "{{model}}",
                    ),
                    description="Items per successful inference (leading dimension of the first "
                    "input, where known).",
                ),
            ),
        ),
    ),
)

LATENCY = Dashboard(
    "ortel-latency",
    "ortel / Latency",
    "Latency distribution, quantiles, jitter, SLA and cold start per model.",
    (
        Row(
            "Distribution",
            (
                P(
                    "Latency heatmap",
                    Q(
                        rate(c.INFERENCE_DURATION, OK, by="le", suffix="bucket"),
                        "{{le}}",
                        fmt="heatmap",
                    ),
                    unit="s",
                    kind="heatmap",
                    width=24,
                    height=10,
                ),
                P(
                    "Quantiles (histogram, all instances)",
                    *(
                        Q(quantile(q, c.INFERENCE_DURATION, OK, by=M), f"{{{{model}}}} p{p}")
                        for q, p in ((0.5, "50"), (0.9, "90"), (0.99, "99"), (0.999, "99.9"))
                    ),
                    unit="s",
                ),
                P(
                    "Quantiles (sliding window, per instance)",
                    Q(
                        agg(
                            c.LATENCY_QUANTILE,
                            'quantile=~"0.5|0.99|0.999"',
                            by=(M, "quantile"),
                            op="max",
                        ),
                        "{{model}} q{{quantile}}",
                    ),
                    unit="s",
                ),
                P(
                    "Mean and jitter (sliding window)",
                    Q(agg(c.LATENCY_MEAN, by=MP, op="max"), "{{model}} mean"),
                    Q(agg(c.LATENCY_STDDEV, by=MP, op="max"), "{{model}} stddev"),
                    unit="s",
                ),
                P(
                    "Min and max (sliding window)",
                    Q(agg(c.LATENCY_MIN, by=MP, op="min"), "{{model}} min"),
                    Q(agg(c.LATENCY_MAX, by=MP, op="max"), "{{model}} max"),
                    unit="s",
                ),
                P(
                    "Mean latency by outcome",
                    Q(
                        f"{rate(c.INFERENCE_DURATION, by=(M, 'status'), suffix='sum')} / "
                        f"{rate(c.INFERENCE_DURATION, by=(M, 'status'), suffix='count')}",
                        "{{model}} {{status}}",
                    ),
                    unit="s",
                ),
                P(
                    "Inferences in the window",
                    Q(agg(c.WINDOW_INFERENCES, by=M), "{{model}}"),
                ),
            ),
        ),
        Row(
            "SLA",
            (
                P(
                    "p99 against the target",
                    Q(quantile(0.99, c.INFERENCE_DURATION, OK, by=M), "{{model}} p99"),
                    Q(agg(c.SLA_TARGET, by=M, op="max"), "{{model}} target"),
                    unit="s",
                ),
                P(
                    "SLA violations",
                    Q(rate(c.SLA_VIOLATIONS, by=M), "{{model}}"),
                    unit="ops",
                ),
            ),
        ),
        Row(
            "Cold start",
            (
                P(
                    "First (cold) inference",
                    Q(agg(c.FIRST_INFERENCE, by=MP, op="max"), "{{model}} {{provider}}"),
                    unit="s",
                ),
                P(
                    "Session load time",
                    Q(agg(c.SESSION_LOAD, by=MP, op="max"), "{{model}} {{provider}}"),
                    unit="s",
                ),
            ),
        ),
    ),
)

HOST = Dashboard(
    "ortel-host",
    "ortel / Host",
    "The host under the inference: CPU, memory, instrumented processes, and the daemon's own "
    "health.",
    one_instance=True,
    rows=(
        Row(
            "CPU",
            (
                P(
                    "CPU utilisation by mode",
                    Q(agg(c.CPU_UTILIZATION, 'mode!="idle"', by="mode"), "{{mode}}"),
                    unit="percentunit",
                    stack=True,
                    max=1,
                ),
                P(
                    "Busy share per CPU",
                    Q(agg(c.CPU_CORE_UTILIZATION, by="cpu", op="max"), "cpu {{cpu}}"),
                    unit="percentunit",
                    max=1,
                ),
                P(
                    "CPU frequency",
                    Q(agg(c.CPU_FREQUENCY, by="cpu", op="max"), "cpu {{cpu}}"),
                    unit="hertz",
                ),
                P(
                    "Context switches and interrupts",
                    Q(rate(c.CONTEXT_SWITCHES), "context switches"),
                    Q(rate(c.INTERRUPTS), "interrupts"),
                    unit="ops",
                ),
                P(
                    "Logical CPUs",
                    Q(agg(c.CPU_COUNT, op="max")),
                    kind="stat",
                    width=6,
                    height=4,
                ),
                P(
                    "CPU time by mode",
                    Q(rate(c.CPU_SECONDS, 'mode!="idle"', by="mode"), "{{mode}}"),
                    unit="s",
                    kind="timeseries",
                    width=18,
                    height=4,
                    stack=True,
                    description="CPU-seconds per second in each mode, all CPUs (a busy 4-CPU "
                    "host reads 4).",
                ),
            ),
        ),
        Row(
            "Memory",
            (
                P(
                    "Memory",
                    Q(agg(c.MEMORY_USED), "used"),
                    Q(agg(c.MEMORY_AVAILABLE), "available"),
                    Q(agg(c.MEMORY_TOTAL), "total"),
                    unit="bytes",
                ),
                P(
                    "Swap",
                    Q(agg(c.SWAP_USED), "used"),
                    Q(agg(c.SWAP_TOTAL), "total"),
                    unit="bytes",
                    width=6,
                ),
                P(
                    "Page faults",
                    Q(rate(c.PAGE_FAULTS, by="type"), "{{type}}"),
                    unit="ops",
                    width=6,
                ),
            ),
        ),
        Row(
            "Processes",
            (
                P(
                    "Resident memory",
                    Q(
                        agg(c.PROCESS_RSS, by=("name", "pid", "role")),
                        "{{name}} {{pid}} ({{role}})",
                    ),
                    unit="bytes",
                ),
                P(
                    "CPU",
                    Q(
                        rate(c.PROCESS_CPU, by=("name", "pid", "role")),
                        "{{name}} {{pid}} ({{role}})",
                    ),
                    unit="percentunit",
                    description="CPU-seconds per second (user + system): 1 is one CPU busy.",
                ),
                P(
                    "Threads",
                    Q(agg(c.PROCESS_THREADS, by=("name", "pid")), "{{name}} {{pid}}"),
                    width=8,
                ),
                P(
                    "Context switches",
                    Q(rate(c.PROCESS_CTX, by=("name", "pid", "type")), "{{name}} {{pid}} {{type}}"),
                    unit="ops",
                    width=8,
                ),
                P(
                    "Page faults",
                    Q(
                        rate(c.PROCESS_FAULTS, by=("name", "pid", "type")),
                        "{{name}} {{pid}} {{type}}",
                    ),
                    unit="ops",
                    width=8,
                ),
            ),
        ),
        Row(
            "ortel daemon",
            (
                P(
                    "Collector success",
                    Q(agg(c.COLLECTOR_SUCCESS, by="collector", op="min"), "{{collector}}"),
                    max=1,
                    width=8,
                ),
                P(
                    "Collector found data",
                    Q(agg(c.COLLECTOR_HAS_DATA, by="collector", op="min"), "{{collector}}"),
                    max=1,
                    width=8,
                ),
                P(
                    "Collector duration",
                    Q(agg(c.COLLECTOR_DURATION, by="collector", op="max"), "{{collector}}"),
                    unit="s",
                    width=8,
                ),
                P(
                    "Instrumented processes",
                    Q(agg(c.MULTIPROC_PROCESSES, by="state"), "{{state}}"),
                    width=8,
                ),
                P(
                    "Bad snapshot files",
                    Q(rate(c.MULTIPROC_BAD_FILES, by="instance"), "{{instance}}"),
                    unit="ops",
                    width=8,
                ),
                P(
                    "Versions",
                    Q(sel(c.BUILD_INFO), fmt="table", instant=True),
                    kind="table",
                    width=8,
                ),
            ),
        ),
    ),
)

ENERGY = Dashboard(
    "ortel-energy",
    "ortel / Energy & thermal",
    "Power by source and zone, measured against estimated, energy per inference, carbon, "
    "temperatures, throttling and cooling.",
    one_instance=True,
    rows=(
        Row(
            "Power",
            (
                P(
                    "Power by domain (measured)",
                    Q(
                        agg(
                            c.POWER,
                            'source!="estimated"',
                            by=("source", "zone", "device"),
                            op="max",
                        ),
                        "{{source}} {{zone}} ({{device}})",
                    ),
                    unit="watt",
                    description="Every measured host power domain. RAPL zones nest (core and "
                    "uncore are parts of package-N, psys contains it): do not add them up.",
                ),
                P(
                    "Power, estimated (no meter)",
                    Q(
                        agg(c.POWER, 'source="estimated"', by=("zone", "device"), op="max"),
                        "{{zone}} ({{device}})",
                    ),
                    unit="watt",
                    description="CPU power modelled from utilisation where nothing measures it "
                    "(no readable RAPL): an estimate, not a measurement.",
                ),
                P(
                    "CPU+DRAM power: measured vs estimated",
                    Q(HOST_POWER, "{{source}}"),
                    unit="watt",
                    description="The host's disjoint CPU package and memory domains, summed by "
                    "source: 'estimated' is the only source that is not a measurement.",
                ),
                P(
                    "RAPL energy counters as power",
                    Q(rate(c.RAPL_ENERGY, by=("zone", "index")), "{{zone}} ({{index}})"),
                    unit="watt",
                ),
                P(
                    "hwmon energy counters as power",
                    Q(rate(c.HWMON_ENERGY, by=("chip", "sensor")), "{{chip}} {{sensor}}"),
                    unit="watt",
                ),
                P(
                    "Integrated energy (no hardware counter)",
                    Q(rate(c.ENERGY, by=("source", "zone")), "{{source}} {{zone}}"),
                    unit="watt",
                    description="Power ortel integrated itself for sources without an energy "
                    "counter (estimated, powermetrics), as joules per second.",
                ),
            ),
        ),
        Row(
            "Attribution",
            (
                P(
                    "Energy per inference (attributed)",
                    Q(
                        agg(c.ENERGY_PER_INFERENCE, by=(M, "source"), op="max"),
                        "{{model}} ({{source}})",
                    ),
                    unit="joule",
                    width=8,
                ),
                P(
                    "Inferences per joule (attributed)",
                    Q(
                        agg(c.INFERENCES_PER_JOULE, by=(M, "source"), op="max"),
                        "{{model}} ({{source}})",
                    ),
                    width=8,
                ),
                P(
                    "Carbon per inference",
                    Q(
                        agg(c.CARBON_PER_INFERENCE, by=(M, "source"), op="max"),
                        "{{model}} ({{source}})",
                    ),
                    unit="massg",
                    width=8,
                ),
                P(
                    "Attributed power by model",
                    Q(
                        rate(c.INFERENCE_ENERGY, by=(M, "device", "source")),
                        "{{model}} {{device}} ({{source}})",
                    ),
                    unit="watt",
                    stack=True,
                ),
                P(
                    "Where the energy went",
                    Q(
                        rate(c.ENERGY_ATTRIBUTION, by=("part", "device", "source")),
                        "{{part}} {{device}} ({{source}})",
                    ),
                    unit="watt",
                    stack=True,
                ),
                P(
                    "Efficiency score",
                    Q(
                        agg(c.EFFICIENCY_SCORE, by=(M, "source"), op="min"),
                        "{{model}} ({{source}})",
                    ),
                    max=100,
                ),
                P(
                    "Efficiency components",
                    Q(
                        agg(c.EFFICIENCY_COMPONENT, by=(M, "component"), op="min"),
                        "{{model}} {{component}}",
                    ),
                    unit="percentunit",
                    max=1,
                ),
            ),
        ),
        Row(
            "Whole host and carbon",
            (
                P(
                    "Energy per inference (host)",
                    Q(per(HOST_POWER, INFERENCE_RATE), "{{source}}"),
                    unit="joule",
                    width=8,
                    description="Joules per inference call." + NOT_ATTRIBUTED,
                ),
                P(
                    "Inferences per joule (host)",
                    Q(f"{INFERENCE_RATE} / on() group_right() {HOST_POWER}", "{{source}}"),
                    width=8,
                    description="Inference calls per joule." + NOT_ATTRIBUTED,
                ),
                P(
                    "Carbon",
                    Q(f"{rate(c.CARBON, by='source')} * 3600", "{{source}}"),
                    unit="massg",
                    width=8,
                    description="Grams of CO2-equivalent per hour: energy times the configured "
                    "grid intensity (--grid-intensity-g-per-kwh), by the energy's source.",
                ),
            ),
        ),
        Row(
            "Thermal",
            (
                P(
                    "Hottest temperature",
                    Q(f"max({TEMPERATURES})"),
                    unit="celsius",
                    kind="stat",
                    width=6,
                    height=4,
                    thresholds=HOT,
                    description="The hottest of every temperature sensor: hwmon, thermal zones "
                    "and GPUs.",
                ),
                P(
                    "Thermal throttling now",
                    Q(agg(c.THERMAL_THROTTLING, by="scope", op="max"), "{{scope}}"),
                    kind="stat",
                    width=6,
                    height=4,
                    thresholds=((None, "green"), (1, "red")),
                ),
                P(
                    "Throttle events",
                    Q(rate(c.CPU_THROTTLES, by="scope"), "{{scope}}"),
                    unit="ops",
                    width=12,
                    height=4,
                ),
                P(
                    "hwmon temperatures",
                    Q(
                        agg(c.TEMPERATURE, by=("chip", "label", "sensor"), op="max"),
                        "{{chip}} {{label}} {{sensor}}",
                    ),
                    unit="celsius",
                    min=None,
                ),
                P(
                    "Headroom to critical",
                    Q(
                        f"min by (chip, label, sensor) ({sel(c.TEMPERATURE_CRITICAL)} - "
                        f"{sel(c.TEMPERATURE)})",
                        "{{chip}} {{label}} {{sensor}}",
                    ),
                    unit="celsius",
                    min=None,
                    description="Degrees left before each sensor's critical trip point "
                    "(tempN_crit minus tempN_input).",
                ),
                P(
                    "Thermal zones",
                    Q(
                        agg(c.THERMAL_ZONE_TEMPERATURE, by=("type", "zone"), op="max"),
                        "{{type}} {{zone}}",
                    ),
                    unit="celsius",
                    min=None,
                ),
                P(
                    "Fans",
                    Q(
                        agg(c.FAN_SPEED, by=("chip", "label", "sensor"), op="max"),
                        "{{chip}} {{label}} {{sensor}}",
                    ),
                    unit="rotrpm",
                ),
                P(
                    "Cooling devices",
                    Q(
                        f"max by (type, device) ({sel(c.COOLING_DEVICE_STATE)} / "
                        f"{sel(c.COOLING_DEVICE_MAX_STATE)} > -1)",
                        "{{type}} {{device}}",
                    ),
                    unit="percentunit",
                    max=1,
                    description="Each kernel cooling device's state as a share of its maximum "
                    "(devices with no states are left out).",
                ),
                P(
                    "CPU frequency against its range",
                    Q(agg(c.CPU_FREQUENCY, by="cpu", op="max"), "cpu {{cpu}}"),
                    Q(agg(c.CPU_FREQUENCY_MAX, op="max"), "maximum"),
                    Q(agg(c.CPU_FREQUENCY_MIN, op="min"), "minimum"),
                    unit="hertz",
                ),
            ),
        ),
    ),
)

GPU = Dashboard(
    "ortel-gpu",
    "ortel / GPU",
    "NVIDIA GPUs through NVML: utilisation, memory, power and energy, temperatures, clocks, "
    "throttle reasons, PCIe and per-process use.",
    one_instance=True,
    rows=(
        Row(
            "Load",
            (
                P(
                    "Utilisation",
                    Q(agg(c.GPU_UTILIZATION, by=("gpu", "name"), op="max"), "{{gpu}} {{name}}"),
                    unit="percentunit",
                    max=1,
                ),
                P(
                    "Memory controller utilisation",
                    Q(
                        agg(c.GPU_MEMORY_UTILIZATION, by=("gpu", "name"), op="max"),
                        "{{gpu}} {{name}}",
                    ),
                    unit="percentunit",
                    max=1,
                ),
                P(
                    "SM occupancy and tensor activity",
                    Q(agg(c.GPU_SM_OCCUPANCY, by="gpu", op="max"), "{{gpu}} SM occupancy"),
                    Q(agg(c.GPU_TENSOR_ACTIVITY, by="gpu", op="max"), "{{gpu}} tensor"),
                    unit="percentunit",
                    max=1,
                ),
                P(
                    "Memory",
                    Q(agg(c.GPU_MEMORY_USED, by="gpu", op="max"), "{{gpu}} used"),
                    Q(agg(c.GPU_MEMORY_TOTAL, by="gpu", op="max"), "{{gpu}} total"),
                    unit="bytes",
                ),
                P(
                    "Memory by process",
                    Q(
                        agg(c.GPU_PROCESS_MEMORY, by=("gpu", "pid"), op="max"),
                        "{{gpu}} pid {{pid}}",
                    ),
                    unit="bytes",
                ),
                P(
                    "Utilisation by process",
                    Q(
                        agg(c.GPU_PROCESS_UTILIZATION, by=("gpu", "pid"), op="max"),
                        "{{gpu}} pid {{pid}}",
                    ),
                    unit="percentunit",
                    max=1,
                ),
            ),
        ),
        Row(
            "Power and heat",
            (
                P(
                    "Power against the limit",
                    Q(agg(c.GPU_POWER, by="gpu", op="max"), "{{gpu}} power"),
                    Q(agg(c.GPU_POWER_LIMIT, by="gpu", op="max"), "{{gpu}} limit"),
                    unit="watt",
                ),
                P(
                    "GPU energy per inference",
                    Q(per(rate(c.GPU_ENERGY), INFERENCE_RATE), "all GPUs"),
                    unit="joule",
                    description="Joules per inference call: every GPU's energy divided by the "
                    "rate of the selected models, so other GPU work is included (an upper bound, "
                    "not a per-model attribution).",
                ),
                P(
                    "GPU energy per inference by model (attributed)",
                    Q(
                        f"{rate(c.INFERENCE_ENERGY, GPU_DEVICE, by=M)} / "
                        f"{rate(c.INFERENCES, by=M)}",
                        "{{model}}",
                    ),
                    unit="joule",
                    description="GPU joules attributed to each model (its processes' share of "
                    "the GPU's energy above idle, docs/energy.md) per inference call.",
                ),
                P(
                    "Temperatures",
                    Q(agg(c.GPU_TEMPERATURE, by="gpu", op="max"), "{{gpu}} core"),
                    Q(agg(c.GPU_MEMORY_TEMPERATURE, by="gpu", op="max"), "{{gpu}} memory"),
                    unit="celsius",
                ),
                P(
                    "Clocks",
                    Q(agg(c.GPU_CLOCK, by=("gpu", "clock"), op="max"), "{{gpu}} {{clock}}"),
                    unit="hertz",
                ),
                P(
                    "Throttle reasons",
                    Q(
                        agg(c.GPU_THROTTLE_REASON, by=("gpu", "reason"), op="max"),
                        "{{gpu}} {{reason}}",
                    ),
                    max=1,
                    stack=True,
                ),
                P(
                    "PCIe throughput",
                    Q(
                        agg(c.GPU_PCIE_THROUGHPUT, by=("gpu", "direction"), op="max"),
                        "{{gpu}} {{direction}}",
                    ),
                    unit="binBps",
                ),
            ),
        ),
    ),
)

LLM = Dashboard(
    "ortel-llm",
    "ortel / LLM generation",
    "Time to first token, inter-token latency, tokens per second and energy per token of tracked "
    "generations.",
    model_source=c.GENERATED_TOKENS,
    rows=(
        Row(
            "Latency",
            (
                P(
                    "Time to first token",
                    Q(quantile(0.5, c.TIME_TO_FIRST_TOKEN, by=M), "{{model}} p50"),
                    Q(quantile(0.99, c.TIME_TO_FIRST_TOKEN, by=M), "{{model}} p99"),
                    unit="s",
                ),
                P(
                    "Inter-token latency (TPOT)",
                    Q(quantile(0.5, c.INTER_TOKEN_LATENCY, by=M), "{{model}} p50"),
                    Q(quantile(0.99, c.INTER_TOKEN_LATENCY, by=M), "{{model}} p99"),
                    unit="s",
                ),
                P(
                    "Time to first token heatmap",
                    Q(
                        rate(c.TIME_TO_FIRST_TOKEN, by="le", suffix="bucket"),
                        "{{le}}",
                        fmt="heatmap",
                    ),
                    unit="s",
                    kind="heatmap",
                    width=24,
                ),
            ),
        ),
        Row(
            "Throughput and energy",
            (
                P(
                    "Tokens per second",
                    Q(rate(c.GENERATED_TOKENS, by=M), "{{model}} generated"),
                    Q(rate(c.PROMPT_TOKENS, by=M), "{{model}} prompt"),
                    width=8,
                ),
                P(
                    "Mean tokens per generation",
                    Q(
                        f"{rate(c.GENERATED_TOKENS, by=M)} / "
                        f"{rate(c.TIME_TO_FIRST_TOKEN, by=M, suffix='count')}",
                        "{{model}}",
                    ),
                    width=8,
                    description="Generated tokens per generation that produced a first token.",
                ),
                P(
                    "Energy per generated token (attributed)",
                    Q(
                        agg(c.ENERGY_PER_TOKEN, by=(M, "source"), op="max"),
                        "{{model}} ({{source}})",
                    ),
                    unit="joule",
                    width=8,
                ),
                P(
                    "Energy per generated token (host)",
                    Q(per(HOST_POWER, rate(c.GENERATED_TOKENS)), "{{source}}"),
                    unit="joule",
                    width=8,
                    description="Joules per generated token: the whole host's CPU and memory "
                    "power (by source: measured, or 'estimated') divided by the selected models' "
                    "token rate; everything else the host runs is included (an upper bound).",
                ),
            ),
        ),
    ),
)

OPS_PER_SAMPLE = rate(c.OPERATOR_SAMPLES)
OPERATORS = Dashboard(
    "ortel-operators",
    "ortel / Operators",
    "Where inference time goes, by operator type and execution provider, from the shim's "
    "sampled profiling (ORTEL_OP_SAMPLE_SECONDS).",
    model_source=c.OPERATOR_SAMPLES,
    rows=(
        Row(
            "Operator types",
            (
                P(
                    "Top operator types by time",
                    Q(
                        "topk(10, "
                        + per(rate(c.OPERATOR_DURATION, by="op_type", suffix="sum"), OPS_PER_SAMPLE)
                        + ")",
                        "{{op_type}}",
                    ),
                    unit="s",
                    stack=True,
                    description="Seconds each operator type takes per sampled inference (the "
                    "ten largest), all selected models.",
                ),
                P(
                    "Share of operator time",
                    Q(agg(c.OPERATOR_SHARE, by=(M, "op_type"), op="max"), "{{model}} {{op_type}}"),
                    unit="percentunit",
                    max=1,
                    stack=True,
                ),
                P(
                    "Operator p99 by type",
                    Q(quantile(0.99, c.OPERATOR_DURATION, by="op_type"), "{{op_type}}"),
                    unit="s",
                ),
                P(
                    "Sampled inferences",
                    Q(rate(c.OPERATOR_SAMPLES, by=M), "{{model}}"),
                    unit="ops",
                    description="Inferences profiled per second: every other number here comes "
                    "from these samples only.",
                ),
            ),
        ),
        Row(
            "Execution providers",
            (
                P(
                    "Operator time by provider",
                    Q(
                        per(rate(c.OPERATOR_DURATION, by="provider", suffix="sum"), OPS_PER_SAMPLE),
                        "{{provider}}",
                    ),
                    unit="s",
                    stack=True,
                    description="Seconds per sampled inference spent in each execution provider.",
                ),
                P(
                    "Graph nodes by provider",
                    Q(agg(c.GRAPH_NODES, by=(M, "provider"), op="max"), "{{model}} {{provider}}"),
                    stack=True,
                ),
                P(
                    "Provider transitions (memcpy nodes)",
                    Q(agg(c.GRAPH_MEMCPY_NODES, by=M, op="max"), "{{model}}"),
                    width=24,
                ),
            ),
        ),
    ),
)

# SLOs, from the recording rules of `ortel rules` (Prometheus must load them, docs/alerts.md):
# budgets and SLIs come from the rules, so per-model objectives and overrides hold here too.
SLO_PERIOD = "30d"  # the period the workbook's burn factors (14.4, 6, 3, 1) assume
SLO_SEL = '{instance=~"$instance",model=~"$model"}'


def _burn(sli: str, budget: str, on: str, by: str) -> str:
    """The SLI in units of the budget (1: spent exactly over the SLO period), worst instance."""
    return f"max by ({by}) ({sli}{SLO_SEL} / on ({on}) {budget}{SLO_SEL})"


def _burn_panels(
    what: str, alert: str, sli: Callable[[str], str], budget: str, on: str, by: str
) -> list[Panel]:
    legend = " ".join(f"{{{{{label}}}}}" for label in by.split(", "))
    out = []
    for long, short, factor, severity in r.BURN_PAIRS:
        out.append(
            P(
                f"{what} burn {long} / {short}: {severity} above {factor:g}x",
                Q(_burn(sli(long), budget, on, by), f"{legend} {long}"),
                Q(_burn(sli(short), budget, on, by), f"{legend} {short}"),
                unit="suffix:x",
                width=6,
                thresholds=(
                    (None, "green"),
                    (factor, "red" if severity == "critical" else "orange"),
                ),
                threshold_lines=True,
                soft_max=factor * 1.25,
                description=f"How fast the {what.lower()} budget burns over the {long} and {short} "
                f"windows (1x spends it exactly in {SLO_PERIOD}), worst instance. {alert} "
                f"({severity}) fires while both lines are above the dashed line at {factor:g}x.",
            )
        )
    return out


def _budget_left(ratio: str, budget: str) -> str:
    return f"1 - (\n{ratio}\n) / max by (model) ({budget}{SLO_SEL})"


def _over_period(expr: str) -> str:
    return f"sum by (model) ({expr}[{SLO_PERIOD}]))"


ERRORS_IN_PERIOD = _over_period(f"increase({sel(c.INFERENCES, ERR)}")
CALLS_IN_PERIOD = _over_period(f"increase({sel(c.INFERENCES)}")
ERROR_BUDGET_LEFT = _budget_left(
    f"({ERRORS_IN_PERIOD} or {CALLS_IN_PERIOD} * 0)\n/\n{CALLS_IN_PERIOD}", r.ERROR_BUDGET
)
LATENCY_BUDGET_LEFT = _budget_left(
    f"{_over_period(f'sum_over_time({r.SLOW_CALLS}{SLO_SEL}')}\n/\n"
    f"{_over_period(f'sum_over_time({r.LATENCY_CALLS}{SLO_SEL}')}",
    r.LATENCY_BUDGET,
)
BUDGET_LEFT = ((None, "red"), (0.25, "orange"), (0.5, "green"))
ML_ON = "job, instance, model, provider"
M_ON = "job, instance, model"


def _slo_row(
    title: str,
    objective: tuple[str, str, str],
    budget_left: tuple[str, str, str],
    burn: tuple[str, str, Callable[[str], str], str, str, str],
) -> Row:
    """One objective: its target, the budget left over the period (each a (title, query,
    description)) and its burn-rate panels."""
    (o_title, o_query, o_help), (b_title, b_query, b_help) = objective, budget_left
    stat: dict[str, Any] = {"unit": "percentunit", "kind": "stat", "height": 5}
    return Row(
        title,
        (
            P(o_title, Q(o_query, "{{model}}", instant=True), width=8, description=o_help, **stat),
            P(
                b_title,
                Q(b_query, "{{model}}", instant=True),
                width=16,
                min=None,
                max=1,
                thresholds=BUDGET_LEFT,
                description=b_help,
                **stat,
            ),
            *_burn_panels(*burn),
        ),
    )


SLO = Dashboard(
    "ortel-slo",
    "ortel / SLOs",
    "Error and latency budgets per model and how fast they burn, against the thresholds of the "
    "burn-rate alerts. Needs the recording rules of `ortel rules` in Prometheus.",
    (
        _slo_row(
            "Availability: calls that do not raise",
            (
                "Availability objective",
                f"1 - max by (model) ({r.ERROR_BUDGET}{SLO_SEL})",
                "Share of calls that must not raise (ortel rules --slo-availability, "
                "--slo-overrides).",
            ),
            (
                f"Error budget left ({SLO_PERIOD})",
                ERROR_BUDGET_LEFT,
                f"Share of the error budget not yet spent over the last {SLO_PERIOD}, all "
                "instances: 1 - error ratio / (1 - objective). Below 0: the SLO is broken.",
            ),
            (
                "Error budget",
                "OrtelErrorBudgetBurn",
                r.error_sli,
                r.ERROR_BUDGET,
                ML_ON,
                "model, provider",
            ),
        ),  # fmt: skip
        _slo_row(
            "Latency: successful calls within the threshold",
            (
                "Latency objective",
                f"1 - max by (model) ({r.LATENCY_BUDGET}{SLO_SEL})",
                "Share of successful calls that must be within the latency threshold (ortel "
                "rules --slo-latency-target; the threshold is each model's SLA target unless "
                "--slo-latency-threshold).",
            ),
            (
                f"Latency budget left ({SLO_PERIOD})",
                LATENCY_BUDGET_LEFT,
                f"Share of the latency budget not yet spent over the last {SLO_PERIOD}, all "
                "instances: 1 - slow share / (1 - objective). Only models with a latency "
                "threshold (an SLA target) have one.",
            ),
            (
                "Latency budget",
                "OrtelLatencyBudgetBurn",
                r.latency_sli,
                r.LATENCY_BUDGET,
                M_ON,
                "model",
            ),
        ),  # fmt: skip
    ),
    time_from="now-6h",
    extra_tags=("slo",),
)

DASHBOARDS: tuple[Dashboard, ...] = (OVERVIEW, LATENCY, SLO, HOST, ENERGY, OPERATORS, LLM, GPU)


# --- rendering to Grafana JSON -------------------------------------------------------------------
_METRIC_RE = re.compile(r"(?<!:)\bortel_[a-z0-9_]+\b")  # not inside a recorded level:name:ops
_RECORDED_RE = re.compile(r"\b[a-z_]+:ortel_[a-z0-9_]+:[a-z0-9_]+\b")


def metric_names(expr: str) -> list[str]:
    """Every ortel metric name (with any _bucket/_sum/_count suffix) an expression reads."""
    return _METRIC_RE.findall(expr)


def recorded_names(expr: str) -> list[str]:
    """Every series of ortel's recording rules (``level:metric:operations``) an expression reads."""
    return _RECORDED_RE.findall(expr)


def base_metric(series: str) -> MetricDef | None:
    """The catalogue entry behind a series name, or None when the catalogue has no such metric."""
    try:
        return c.get(series)
    except KeyError:
        pass
    stem, _, suffix = series.rpartition("_")
    try:
        m = c.get(stem)
    except KeyError:
        return None
    return m if suffix in _SUFFIXES.get(m.kind, ()) else None


def _description(panel: Panel) -> str:
    if panel.description:
        return panel.description
    helps: list[str] = []
    for q in panel.queries:
        for name in metric_names(q.expr):
            m = base_metric(name)
            if m is not None and m.help not in helps:
                helps.append(m.help)
    return " ".join(helps)


def _thresholds(panel: Panel) -> dict[str, Any]:
    steps = panel.thresholds or ((None, "green"),)
    return {"mode": "absolute", "steps": [{"color": col, "value": v} for v, col in steps]}


def _target(q: Q, ref: str) -> dict[str, Any]:
    t: dict[str, Any] = {
        "datasource": DATASOURCE,
        "editorMode": "code",
        "expr": q.expr,
        "format": q.fmt,
        "legendFormat": q.legend or "__auto",
        "range": not q.instant,
        "instant": q.instant,
        "refId": ref,
    }
    return t


def _panel(panel: Panel, pid: int, x: int, y: int) -> dict[str, Any]:
    defaults: dict[str, Any] = {"unit": panel.unit, "thresholds": _thresholds(panel)}
    if panel.min is not None:
        defaults["min"] = panel.min
    if panel.max is not None:
        defaults["max"] = panel.max
    defaults["color"] = {"mode": "thresholds" if panel.kind == "stat" else "palette-classic"}
    options: dict[str, Any]
    if panel.kind == "timeseries":
        defaults["custom"] = {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 20 if panel.stack else 10,
            "showPoints": "never",
            "spanNulls": False,
            "stacking": {"mode": "normal" if panel.stack else "none", "group": "A"},
        }
        if panel.threshold_lines:
            defaults["custom"]["thresholdsStyle"] = {"mode": "dashed"}
        if panel.soft_max is not None:
            defaults["custom"]["axisSoftMax"] = panel.soft_max
        options = {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    elif panel.kind == "stat":
        options = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "area",
            "justifyMode": "auto",
            "orientation": "auto",
            "textMode": "auto",
        }
    elif panel.kind == "heatmap":
        defaults = {"custom": {"scaleDistribution": {"type": "linear"}}}
        options = {
            "calculate": False,
            "cellGap": 1,
            "color": {
                "mode": "scheme",
                "scheme": "Oranges",
                "scale": "exponential",
                "exponent": 0.5,
                "steps": 64,
                "reverse": False,
            },
            "filterValues": {"le": 1e-9},
            "rowsFrame": {"layout": "auto"},
            "yAxis": {"axisPlacement": "left", "unit": panel.unit, "reverse": False},
            "tooltip": {"mode": "single", "yHistogram": True, "showColorScale": False},
            "legend": {"show": True},
            "exemplars": {"color": "rgba(255,0,255,0.7)"},
        }
    elif panel.kind == "table":
        options = {"showHeader": True, "cellHeight": "sm"}
    else:
        raise ValueError(f"panel {panel.title!r}: unknown kind {panel.kind!r}")
    out: dict[str, Any] = {
        "id": pid,
        "type": panel.kind,
        "title": panel.title,
        "description": _description(panel),
        "datasource": DATASOURCE,
        "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": options,
        "targets": [_target(q, chr(ord("A") + i)) for i, q in enumerate(panel.queries)],
    }
    if panel.kind == "table":
        out["transformations"] = [
            {
                "id": "organize",
                "options": {"excludeByName": {"Time": True, "Value": True, "__name__": True}},
            }
        ]
    return out


def _uses(dash: Dashboard, var: str) -> bool:
    return any(f"${var}" in q.expr for r in dash.rows for p in r.panels for q in p.queries)


def _query_variable(name: str, label: str, query: str, multi: bool = True) -> dict[str, Any]:
    var: dict[str, Any] = {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "definition": query,
        "query": {"qryType": 1, "query": query, "refId": "PrometheusVariableQueryEditor"},
        "refresh": 2,  # on time range change: new instances and models show up
        "includeAll": multi,
        "multi": multi,
        "current": {},
        "options": [],
        "regex": "",
        "sort": 1,
        "hide": 0,
    }
    if multi:
        var["allValue"] = ".*"
        var["current"] = {"selected": True, "text": ["All"], "value": ["$__all"]}
    return var


def variables(dash: Dashboard) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {
            "name": "datasource",
            "label": "Data source",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
            "options": [],
            "refresh": 1,
            "regex": "",
            "hide": 0,
        },
        _query_variable(
            "instance",
            "Instance",
            f"label_values({c.BUILD_INFO.name}, instance)",
            multi=not dash.one_instance,
        ),
    ]
    if _uses(dash, "model"):
        q = f'label_values({dash.model_source.name}{{instance=~"$instance"}}, model)'
        out.append(_query_variable("model", "Model", q))
    return out


def render(dash: Dashboard) -> dict[str, Any]:
    """The dashboard as Grafana JSON (panels laid out left to right, rows top to bottom)."""
    panels: list[dict[str, Any]] = []
    pid, y = 1, 0
    for row in dash.rows:
        panels.append(
            {
                "id": pid,
                "type": "row",
                "title": row.title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                "panels": [],
            }
        )
        pid, y = pid + 1, y + 1
        x, line_h = 0, 0
        for p in row.panels:
            if not 0 < p.width <= 24:
                raise ValueError(f"panel {p.title!r}: width {p.width} outside 1..24")
            if x + p.width > 24:
                x, y, line_h = 0, y + line_h, 0
            panels.append(_panel(p, pid, x, y))
            pid, x, line_h = pid + 1, x + p.width, max(line_h, p.height)
        y += line_h
    return {
        "uid": dash.uid,
        "title": dash.title,
        "description": dash.description,
        "tags": [TAG, *dash.extra_tags],
        "editable": True,
        "graphTooltip": 1,  # shared crosshair
        "timezone": "browser",
        "refresh": dash.refresh,
        "time": {"from": dash.time_from, "to": "now"},
        "timepicker": {},
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "weekStart": "",
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "links": [
            {
                "type": "dashboards",
                "tags": [TAG],
                "asDropdown": True,
                "title": "ortel dashboards",
                "includeVars": True,
                "keepTime": True,
                "icon": "external link",
                "targetBlank": False,
                "tooltip": "",
                "url": "",
            }
        ],
        "templating": {"list": variables(dash)},
        "panels": panels,
    }


def files() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {d.filename: json.dumps(render(d), indent=2) + "\n" for d in DASHBOARDS}


def _stale(directory: Path) -> list[str]:
    """What differs between ``directory`` and the generated files (missing, changed, extra)."""
    want = files()
    problems = []
    for name, text in want.items():
        path = directory / name
        if not path.is_file():
            problems.append(f"{path} is missing")
        elif path.read_text() != text:
            problems.append(f"{path} is stale")
    for path in sorted(directory.glob("*.json")):
        if path.name not in want:
            problems.append(f"{path} is not generated by any dashboard (remove it)")
    return problems


def write(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    want = files()
    for name, text in want.items():
        (directory / name).write_text(text)
    for path in directory.glob("*.json"):
        if path.name not in want:
            path.unlink()


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in ("--check", "--write"):
        print(
            "usage: python -m ortel.exporter.dashboards --check|--write DIR [DIR...]",
            file=sys.stderr,
        )
        return 2
    dirs = [Path(a) for a in argv[1:]]
    if argv[0] == "--write":
        for d in dirs:
            write(d)
        return 0
    problems = [p for d in dirs for p in _stale(d)]
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        print(
            f"run: python -m ortel.exporter.dashboards --write {' '.join(argv[1:])}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
