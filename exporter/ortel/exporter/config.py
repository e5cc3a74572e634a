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

from .collectors.base import CollectorOptions
from .collectors.registry import BY_NAME, SPECS

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

    @property
    def envvar(self) -> str:
        return "ORTEL_" + self.name.upper()

    @property
    def opt(self) -> str:
        return "--" + self.name.replace("_", "-")


_KNOWN = ", ".join(s.name for s in SPECS)
_DEFAULT_ON = ",".join(s.name for s in SPECS if s.enabled_by_default)

OPTIONS: tuple[Option, ...] = (
    Option("listen", str, "127.0.0.1:9464", "HOST:PORT to serve /metrics on."),
    Option("interval", float, 1.0, "Seconds between samples of every collector."),
    Option("collectors", str, _DEFAULT_ON, f"Comma-separated collectors to run ({_KNOWN})."),
    Option("disable_collectors", str, "", "Comma-separated collectors to leave out."),
    Option("sysfs", click.Path(file_okay=False, path_type=Path), Path("/sys"), "sysfs root."),
    Option("procfs", click.Path(file_okay=False, path_type=Path), Path("/proc"), "procfs root."),
    Option(
        "multiproc_dir",
        click.Path(file_okay=False, path_type=Path),
        None,
        "Directory where instrumented processes write snapshots (ORTEL_MULTIPROC_DIR).",
    ),
    Option("window", float, 60.0, "Sliding window, in seconds, of the latency quantile gauges."),
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
BY_KEY = {o.name: o for o in OPTIONS}


@dataclass(frozen=True)
class Settings:
    host: str
    port: int
    interval: float
    collectors: tuple[str, ...]
    options: CollectorOptions
    demo: bool
    log_level: str


MAX_SECONDS = 1e9  # --interval/--window: below threading.TIMEOUT_MAX, and finite


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


def build_settings(p: dict[str, Any]) -> Settings:
    host, port = parse_listen(p["listen"])
    for key in ("interval", "window"):
        if not p[key] > 0:
            raise ConfigError(f"--{key} must be greater than 0")
        if not p[key] <= MAX_SECONDS:  # inf overflows the sampler's waits and the window maths
            raise ConfigError(f"--{key} must be at most {MAX_SECONDS:g} seconds")
    wanted, off = _names(p["collectors"]), _names(p["disable_collectors"])
    for n in wanted + off:
        if n not in BY_NAME:
            raise ConfigError(f"unknown collector {n!r} (known: {_KNOWN})")
    chosen = tuple(dict.fromkeys(n for n in wanted if n not in off))  # "cpu,cpu": one cpu
    multiproc = p["multiproc_dir"]
    opts = CollectorOptions(
        sysfs=p["sysfs"],
        procfs=p["procfs"],
        multiproc_dir=multiproc,
        per_core=p["per_core"],
        interval=p["interval"],
        window_seconds=p["window"],
    )
    return Settings(host, port, p["interval"], chosen, opts, p["demo"], p["log_level"])


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
        if name not in BY_KEY:
            raise ConfigError(f"config {path}: unknown key {key!r} (known: {', '.join(BY_KEY)})")
        if isinstance(value, list):  # collectors: [cpu, memory] reads better than a string
            value = ",".join(str(v) for v in value)
        out[name] = value
    return out
