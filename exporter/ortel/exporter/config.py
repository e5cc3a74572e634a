"""Settings for ``ortel serve``: one table of options gives the flags, the ORTEL_* environment
variables and the config-file keys, so the three can never drift apart.

Precedence: flag > environment > config file > default (click's own value-source order, with the
file loaded into ``default_map``).
"""

from __future__ import annotations

import ipaddress
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from ortel.collectors.base import CollectorOptions
from ortel.collectors.estimate import DEFAULT_IDLE_WATTS, DEFAULT_MAX_WATTS
from ortel.collectors.registry import BY_NAME, SPECS
from ortel.core.cardinality import DEFAULT_LIMITS, format_limits, parse_limits
from ortel.core.serving import DEFAULT_MAX_REQUESTS

from .derive import DEFAULT_GRID_INTENSITY
from .otlp_push import OtlpSettings
from .otlp_push import settings_from as otlp_settings_from
from .rules import DEFAULT_AVAILABILITY, DEFAULT_LATENCY_TARGET, DEFAULT_SELECTOR, RUNBOOK

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class ConfigError(Exception):
    """Bad settings: reported as one line, exit code 2."""


@dataclass(frozen=True)
class Option:
    name: str
    type: Any
    default: Any
    help: str
    flag: bool = False
    aliases: tuple[str, ...] = ()  # other spellings of the flag (node_exporter's)

    @property
    def envvar(self) -> str:
        return "ORTEL_" + self.name.upper()

    @property
    def opt(self) -> str:
        return "--" + self.name.replace("_", "-")


class SafePath(click.Path):
    """click.Path that turns a NUL byte (which os.stat rejects with ValueError, not OSError)
    into click's own one-line parameter error."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if "\x00" in str(value):
            self.fail("a path cannot contain a NUL byte", param, ctx)
        return super().convert(value, param, ctx)


_KNOWN = ", ".join(s.name for s in SPECS)
_DEFAULT_ON = ",".join(s.name for s in SPECS if s.enabled_by_default)

OPTIONS: tuple[Option, ...] = (
    Option("listen", str, "127.0.0.1:9464", "HOST:PORT to serve /metrics on."),
    Option("interval", float, 1.0, "Seconds between samples of every collector."),
    Option("collectors", str, _DEFAULT_ON, f"Comma-separated collectors to run ({_KNOWN})."),
    Option("disable_collectors", str, "", "Comma-separated collectors to leave out."),
    Option("sysfs", SafePath(file_okay=False, path_type=Path), Path("/sys"), "sysfs root."),
    Option("procfs", SafePath(file_okay=False, path_type=Path), Path("/proc"), "procfs root."),
    Option(
        "multiproc_dir",
        SafePath(file_okay=False, path_type=Path),
        None,
        "Directory where instrumented processes write snapshots (ORTEL_MULTIPROC_DIR).",
    ),
    Option("window", float, 60.0, "Sliding window, in seconds, of the latency quantile gauges."),
    Option(
        "collector_timeout",
        float,
        None,
        "Seconds a collector's sample may run before it counts as failed (hung); default: twice "
        "--interval, at least 1.",
    ),
    Option(
        "label_limits",
        str,
        format_limits(DEFAULT_LIMITS),
        "Most distinct values per label (LABEL=N,...); later values become __other__.",
    ),
    Option(
        "web_config",
        SafePath(dir_okay=False, path_type=Path),
        None,
        "Web config file (exporter-toolkit format): TLS, client certificates, basic auth.",
    ),
    Option(
        "bearer_token_file",
        SafePath(dir_okay=False, path_type=Path),
        None,
        "File of accepted bearer tokens, one per line.",
    ),
    Option(
        "web_max_requests",
        click.IntRange(min=0),
        DEFAULT_MAX_REQUESTS,
        "Most scrapes of /metrics served at once; more get 503 at once, counted in "
        "ortel_scrapes_rejected_total (0: no limit; node_exporter's --web.max-requests works too).",
        aliases=("--web.max-requests",),
    ),
    Option(
        "cpu_idle_watts",
        float,
        DEFAULT_IDLE_WATTS,
        "Estimated power of one logical CPU at idle, for the estimate collector (default: Cloud "
        "Carbon Footprint's AWS average, from SPECpower).",
    ),
    Option(
        "cpu_max_watts",
        float,
        DEFAULT_MAX_WATTS,
        "Estimated power of one logical CPU at full load, for the estimate collector (same "
        "source).",
    ),
    Option(
        "grid_intensity_g_per_kwh",
        float,
        DEFAULT_GRID_INTENSITY,
        "Grams of CO2-equivalent per kWh of the electricity used, for ortel_carbon_grams_total "
        "(default: IEA world average).",
    ),
    Option(
        "etw_traceevent",
        SafePath(exists=True, dir_okay=False, path_type=Path),
        None,
        "Windows: Microsoft.Diagnostics.Tracing.TraceEvent.dll for the etw collector "
        "(docs/events.md).",
    ),
    Option(
        "otlp_endpoint",
        str,
        None,
        "Also push every metric to this OTLP endpoint (http://host:4317); default: "
        "OTEL_EXPORTER_OTLP_ENDPOINT when set (docs/otel.md).",
    ),
    Option(
        "otlp_protocol",
        click.Choice(["grpc", "http/protobuf"]),
        None,
        "OTLP protocol; default: OTEL_EXPORTER_OTLP_PROTOCOL, else grpc.",
    ),
    Option(
        "otlp_interval",
        float,
        None,
        "Seconds between OTLP pushes; default: OTEL_METRIC_EXPORT_INTERVAL, else 60.",
    ),
    Option("per_core", bool, False, "Also export utilisation per CPU.", flag=True),
    Option(
        "demo",
        bool,
        False,
        "Run a bundled demo model through the shim in a child process.",
        flag=True,
    ),
    Option(
        "log_level",
        click.Choice(["debug", "info", "warning", "error"]),
        "info",
        "Log verbosity (stderr).",
    ),
)
# `ortel rules`: the SLOs its alerts hold each model to. Same config file as serve (each command
# reads its own keys), so one file describes a deployment.
RULE_OPTIONS: tuple[Option, ...] = (
    Option(
        "slo_availability",
        float,
        DEFAULT_AVAILABILITY,
        "Availability SLO: percent of inference calls that must not raise.",
    ),
    Option(
        "slo_latency_threshold",
        float,
        None,
        "Latency SLO threshold in seconds, a bucket bound of ortel_inference_duration_seconds; "
        "default: each model's own target in the shim (ortel_sla_violations_total).",
    ),
    Option(
        "slo_latency_target",
        float,
        DEFAULT_LATENCY_TARGET,
        "Latency SLO: percent of successful calls that must be within the threshold.",
    ),
    Option(
        "slo_overrides",
        str,
        "",
        "Per-model SLOs: MODEL:KEY=VALUE[:KEY=VALUE],... with KEY availability, "
        "latency_threshold or latency_target.",
    ),
    Option(
        "rules_selector",
        str,
        DEFAULT_SELECTOR,
        "Label matchers of ortel's scrape jobs, for the exporter down/absent alerts.",
    ),
    Option("runbook_url", str, RUNBOOK, "Base URL of the alerts' runbook_url (docs/alerts.md)."),
    Option(
        "slo_window_scale",
        float,
        1.0,
        "Divide every SLO window by this (1h becomes 1h/N): for end-to-end tests only.",
    ),
)
BY_KEY = {o.name: o for o in OPTIONS}
FILE_KEYS = {**BY_KEY, **{o.name: o for o in RULE_OPTIONS}}


@dataclass(frozen=True)
class Settings:
    host: str
    port: int
    interval: float
    collectors: tuple[str, ...]
    options: CollectorOptions
    demo: bool
    log_level: str
    collector_timeout: float | None = None
    web_config: Path | None = None
    bearer_token_file: Path | None = None
    grid_intensity_g_per_kwh: float = DEFAULT_GRID_INTENSITY
    otlp: OtlpSettings | None = None  # None: no OTLP push
    web_max_requests: int = DEFAULT_MAX_REQUESTS


MAX_SECONDS = 1e9  # --interval/--window: below threading.TIMEOUT_MAX, and finite
MAX_WATTS = 1e4  # per logical CPU: far above any real CPU, and finite
MAX_INTENSITY = 1e4  # g CO2e/kWh: lignite is about 1,100


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port_s = value.rpartition(":")
    # isascii(): str.isdigit() is also true for "²" and friends, which int() rejects.
    if not sep or not (port_s.isascii() and port_s.isdigit()) or not 0 <= int(port_s) <= 65535:
        raise ConfigError(f"--listen {value!r}: expected HOST:PORT, e.g. 127.0.0.1:9464")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if host == "":
        host = "0.0.0.0"  # ":9464" means every interface, as in Prometheus's exporters
    elif host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ConfigError(f"--listen {value!r}: {host!r} is not an IP address") from None
    return host, int(port_s)


def _names(value: str) -> list[str]:
    return [n.strip() for n in value.split(",") if n.strip()]


def _number(p: dict[str, Any], key: str) -> float:
    """A float option's value; unset (or null in a config file) means its default."""
    value = p.get(key)
    if value is None:
        return float(BY_KEY[key].default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{BY_KEY[key].opt} must be a number, got {value!r}")
    return float(value)


def build_settings(p: dict[str, Any]) -> Settings:
    host, port = parse_listen(p["listen"])
    for key in ("interval", "window", "collector_timeout"):
        if key == "collector_timeout" and p.get(key) is None:
            continue
        flag = BY_KEY[key].opt
        if not p[key] > 0:
            raise ConfigError(f"{flag} must be greater than 0")
        if not p[key] <= MAX_SECONDS:  # inf overflows the sampler's waits and the window maths
            raise ConfigError(f"{flag} must be at most {MAX_SECONDS:g} seconds")
    wanted, off = _names(p["collectors"]), _names(p["disable_collectors"])
    for n in wanted + off:
        if n not in BY_NAME:
            raise ConfigError(f"unknown collector {n!r} (known: {_KNOWN})")
    chosen = tuple(dict.fromkeys(n for n in wanted if n not in off))  # "cpu,cpu": one cpu
    try:
        limits = parse_limits(p.get("label_limits") or "")
    except ValueError as e:
        raise ConfigError(f"--label-limits: {e}") from None
    idle_w = _number(p, "cpu_idle_watts")
    max_w = _number(p, "cpu_max_watts")
    intensity = _number(p, "grid_intensity_g_per_kwh")
    if not 0 <= idle_w <= max_w < MAX_WATTS:  # also false for NaN
        raise ConfigError(
            f"--cpu-idle-watts ({idle_w:g}) and --cpu-max-watts ({max_w:g}) need "
            f"0 <= idle <= max < {MAX_WATTS:g}"
        )
    if not 0 <= intensity < MAX_INTENSITY:
        raise ConfigError(f"--grid-intensity-g-per-kwh must be in [0, {MAX_INTENSITY:g})")
    try:
        otlp = otlp_settings_from(p)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    multiproc = p["multiproc_dir"]
    opts = CollectorOptions(
        sysfs=p["sysfs"],
        procfs=p["procfs"],
        multiproc_dir=multiproc,
        per_core=p["per_core"],
        interval=p["interval"],
        window_seconds=p["window"],
        label_limits=tuple(limits.items()),
        cpu_idle_watts=idle_w,
        cpu_max_watts=max_w,
        etw_traceevent=p.get("etw_traceevent"),
    )
    return Settings(
        host,
        port,
        p["interval"],
        chosen,
        opts,
        p["demo"],
        p["log_level"],
        collector_timeout=p.get("collector_timeout"),
        web_config=p.get("web_config"),
        bearer_token_file=p.get("bearer_token_file"),
        grid_intensity_g_per_kwh=intensity,
        otlp=otlp,
        web_max_requests=int(p.get("web_max_requests", DEFAULT_MAX_REQUESTS)),
    )


def load_file(path: Path) -> dict[str, Any]:
    """Read a YAML, JSON or TOML config file into option defaults (keys as in OPTIONS)."""
    try:
        text = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read config {path}: {e.strerror or e}") from None
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text.decode())
        elif path.suffix == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as e:  # every parser's error type: all mean "not valid"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"config {path} is not valid: {first}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config {path}: the top level must be a mapping of option: value")
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name not in FILE_KEYS:
            known = ", ".join(FILE_KEYS)
            raise ConfigError(f"config {path}: unknown key {key!r} (known: {known})")
        out[name] = _file_value(FILE_KEYS[name], f"config {path}: {key}", value)
    return out


def _scalar(v: object) -> bool:
    return isinstance(v, (str, int, float)) and not isinstance(v, bool)


def _file_value(o: Option, where: str, value: Any) -> Any:
    """A file value of a type the option's click type can take; anything else (a mapping, a
    date, a number where a path goes) is one clear error here, not a traceback in click."""
    if isinstance(value, list) and o.type is str:  # collectors: [cpu, memory] reads better
        if not all(_scalar(v) for v in value):
            raise ConfigError(f"{where} must be a list of names")
        return ",".join(str(v) for v in value)
    if value is None:
        raise ConfigError(f"{where} has no value")
    if o.flag:
        if isinstance(value, (bool, str)):
            return value
        raise ConfigError(f"{where} must be true or false")
    if isinstance(o.type, click.Path):
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where} must be a path")
        return value
    if not _scalar(value):
        raise ConfigError(f"{where} must be a single value")
    return value
