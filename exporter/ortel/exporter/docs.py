"""Generated parts of the docs: metric catalogue, collectors, options (README.md) and the
Prometheus <-> OpenTelemetry mapping (docs/otel.md).

python -m ortel.exporter.docs --write README.md   # regenerate
python -m ortel.exporter.docs --check README.md   # exit 1 when stale (a test runs this)
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

from ortel.collectors.base import CollectorSpec
from ortel.collectors.registry import SPECS
from ortel.core import catalog

from .attribution import DERIVED_METRICS as ATTRIBUTED
from .config import OPTIONS
from .derive import DERIVED_METRICS


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def metrics_table() -> str:
    rows = ["| metric | type | labels | OTel name | description |", "|---|---|---|---|---|"]
    for m in catalog.all_metrics():
        labels = ", ".join(m.labels) or "—"
        rows.append(f"| `{m.name}` | {m.kind} | {labels} | `{m.otel_name}` | {_cell(m.help)} |")
    b = ", ".join(f"{x:g}" for x in catalog.DEFAULT_LATENCY_BUCKETS)
    rows.append("")
    rows.append(f"Default latency buckets (seconds): {b}.")
    return "\n".join(rows)


def collectors_table() -> str:
    rows = ["| collector | default | what it reads |", "|---|---|---|"]
    for s in SPECS:
        rows.append(f"| `{s.name}` | {'on' if s.enabled_by_default else 'off'} | {_cell(s.help)} |")
    return "\n".join(rows)


def options_table() -> str:
    rows = ["| flag | environment | default | meaning |", "|---|---|---|---|"]
    for o in OPTIONS:
        default = "off" if o.flag and not o.default else o.default
        default = "—" if default is None else f"`{default}`"
        rows.append(f"| `{o.opt}` | `{o.envvar}` | {default} | {_cell(o.help)} |")
    rows.append("| `--config` | `ORTEL_CONFIG` | — | YAML, JSON or TOML file with these keys. |")
    return "\n".join(rows)


def _attributes(m: catalog.MetricDef) -> str:
    parts = []
    for attr, source in m.otel_plan():
        if source.startswith("="):
            parts.append(f"`{attr}`=`{source[1:]}`")
        elif source == attr:
            parts.append(f"`{attr}`")
        else:
            parts.append(f"`{attr}` ← `{source}`")
    if m.kind == "summary":
        parts.append("`ortel.quantile` (a point per quantile)")
    return ", ".join(parts) or "—"


def otel_table() -> str:
    """Every metric's OTLP form: name, instrument, UCUM unit, attributes from labels."""
    rows = [
        "| Prometheus | OTel name | instrument | unit | attributes (← Prometheus label) |",
        "|---|---|---|---|---|",
    ]
    for m in catalog.all_metrics():
        assert m.otel_name is not None  # every catalogue metric has one (tests/test_catalog.py)
        semconv = "" if m.otel_name.startswith("ortel.") else " (semconv)"
        rows.append(
            f"| `{m.name}` | `{m.otel_name}`{semconv} | {m.otel_instrument} | `{m.otel_unit}` "
            f"| {_cell(_attributes(m))} |"
        )
    return "\n".join(rows)


def power_table() -> str:
    """Every metric the collectors that declare their metrics emit (the power, thermal and GPU
    ones), with unit, labels, which collector emits it and whether it is measured or estimated;
    then the metrics the daemon derives at scrape time."""
    emitters: dict[str, list[CollectorSpec]] = {}
    for s in SPECS:
        for m in s.metrics:
            emitters.setdefault(m.name, []).append(s)
    rows = [
        "| metric | type | unit | labels | emitted by | measured or estimated |",
        "|---|---|---|---|---|---|",
    ]
    for m in catalog.all_metrics():
        specs = emitters.get(m.name)
        if specs is None and m not in DERIVED_METRICS:
            continue
        if specs is None:
            by, what = "the daemon, at scrape time (derive.py)", "derived from the energy counters"
        else:
            by = ", ".join(f"`{s.name}`" for s in specs)
            measured = [s.name for s in specs if not s.estimated]
            estimated = [s.name for s in specs if s.estimated]
            what = "measured" if measured else "estimated"
            if measured and estimated:
                what = f"measured ({', '.join(measured)}); estimated ({', '.join(estimated)})"
        labels = ", ".join(m.labels) or "—"
        rows.append(
            f"| `{m.name}` | {m.kind} | `{m.otel_unit}` | {labels} | {by} | {_cell(what)} |"
        )
    return "\n".join(rows)


def energy_table() -> str:
    """The energy-per-inference metrics (docs/energy.md): what the daemon's attribution derives
    every interval, and what the shim's ``energy()`` blocks record."""
    rows = [
        "| metric | type | unit | labels | computed by | description |",
        "|---|---|---|---|---|---|",
    ]
    for m in (*ATTRIBUTED, catalog.BLOCK_ENERGY):
        by = "the shim (`energy()` blocks)" if m.source == "shim" else "the daemon, every interval"
        labels = ", ".join(m.labels) or "—"
        rows.append(
            f"| `{m.name}` | {m.kind} | `{m.otel_unit}` | {labels} | {by} | {_cell(m.help)} |"
        )
    return "\n".join(rows)


SECTIONS: dict[str, Callable[[], str]] = {
    "metrics": metrics_table,
    "collectors": collectors_table,
    "options": options_table,
    "otel": otel_table,
    "power": power_table,
    "energy": energy_table,
}


def _between_markers(body: str) -> Callable[[re.Match[str]], str]:
    """A re.sub replacement: body (taken literally, no backslash escapes) between the two kept
    marker groups."""
    return lambda m: m.group(1) + body + "\n" + m.group(2)


def render(text: str) -> str:
    """Regenerate every generated block the text has (README.md: metrics, collectors, options;
    docs/otel.md: otel); a text with none is an error."""
    found = 0
    for name, make in SECTIONS.items():
        pattern = re.compile(
            rf"(<!-- generated:{name} -->\n).*?(<!-- /generated:{name} -->)", re.DOTALL
        )
        if not pattern.search(text):
            continue
        found += 1
        text = pattern.sub(_between_markers(make()), text)
    if not found:
        raise ValueError("no <!-- generated:NAME --> block to render")
    return text


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("--check", "--write"):
        print("usage: python -m ortel.exporter.docs --check|--write README.md", file=sys.stderr)
        return 2
    path = Path(argv[1])
    old = path.read_text()
    new = render(old)
    if argv[0] == "--write":
        path.write_text(new)
        return 0
    if new != old:
        print(f"{path} is stale: run python -m ortel.exporter.docs --write {path}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
