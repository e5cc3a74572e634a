"""Prometheus recording rules and alerts generated from the metric catalogue.

Every metric name comes from ``ortel.core.catalog``, so a renamed metric cannot leave a rule
behind. Burn-rate alerts follow the Google SRE workbook (multi-window, multi-burn-rate), recording
rules are named ``level:metric:operations``. docs/alerts.md explains each alert::

    ortel rules > ortel-rules.yml
    ortel rules --format prometheusrule > ortel-prometheusrule.yaml
    python -m ortel.exporter.rules --check  # exit 1: a committed copy is stale (--write fixes)
"""

from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client.utils import floatToGoString

from ortel.core import catalog as c

DEFAULT_AVAILABILITY = 99.9  # percent of calls that do not raise
DEFAULT_LATENCY_TARGET = 99.0  # percent of successful calls within the latency threshold
DEFAULT_SELECTOR = 'job=~".*ortel.*"'  # finds ortel's scrape jobs for the up/absent alerts
# Where runbook_url points; --runbook-url makes it absolute for Alertmanager receivers.
RUNBOOK = "docs/alerts.md"
COMMITTED = Path(__file__).resolve().parents[3] / "dashboards" / "ortel-rules.yml"
# The Helm chart's copy, which its PrometheusRule template reads (.Files.Get).
CHART_COPY = COMMITTED.parents[1] / "helm" / "ortel" / "rules" / "ortel-rules.yml"

RATE = "5m"
# SLI windows the burn-rate pairs need: (long, short, burn factor, severity).
BURN_PAIRS = (
    ("1h", "5m", 14.4, "critical"),
    ("6h", "30m", 6.0, "critical"),
    ("1d", "2h", 3.0, "warning"),
    ("3d", "6h", 1.0, "warning"),
)
WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
QUANTILES = (0.5, 0.9, 0.99)

ML = "job, instance, model, provider"
M = "job, instance, model"


@dataclass(frozen=True)
class Objective:
    availability: float = DEFAULT_AVAILABILITY  # percent
    # Seconds, a bucket bound of ortel_inference_duration_seconds; None: the shim's own per-model
    # target (ortel_sla_violations_total), so rules and shim agree on what "slow" means.
    latency_threshold: float | None = None
    latency_target: float = DEFAULT_LATENCY_TARGET  # percent


@dataclass(frozen=True)
class Slo:
    default: Objective = Objective()
    overrides: tuple[tuple[str, Objective], ...] = ()  # (model, objective)
    selector: str = DEFAULT_SELECTOR
    # Divides every SLI window (1 = as the workbook says). Only for tests that cannot wait days.
    window_scale: float = 1.0
    runbook: str = RUNBOOK


# --- options ---------------------------------------------------------------------------------
def _percent(name: str, value: float) -> float:
    if not 0 < value < 100:
        raise ValueError(f"{name} must be a percentage strictly between 0 and 100, got {value:g}")
    return value


def _threshold(name: str, value: float) -> float:
    bounds = c.INFERENCE_DURATION.buckets or ()
    if value not in bounds:
        near = sorted(bounds, key=lambda b: abs(math.log(b / value)) if value > 0 else b)[:2]
        raise ValueError(
            f"{name} {value:g} s is not a bucket bound of {c.INFERENCE_DURATION.name}; "
            f"nearest: {', '.join(f'{b:g}' for b in sorted(near))}"
        )
    return value


def parse_overrides(text: str, default: Objective) -> tuple[tuple[str, Objective], ...]:
    """``MODEL:KEY=VALUE[:KEY=VALUE],...`` with KEY availability, latency_threshold or
    latency_target; keys not given keep the default objective's values."""
    out: dict[str, Objective] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        model, *pairs = part.split(":")
        if not model or not pairs:
            raise ValueError(f"{part!r}: expected MODEL:KEY=VALUE[:KEY=VALUE]")
        if '"' in model or "\\" in model:
            raise ValueError(f"{part!r}: a model name with a quote or backslash")
        values: dict[str, float] = {}
        for pair in pairs:
            key, sep, raw = pair.partition("=")
            key = key.strip().replace("-", "_")
            if not sep or key not in ("availability", "latency_threshold", "latency_target"):
                raise ValueError(
                    f"{pair!r}: expected availability=, latency_threshold= or latency_target="
                )
            try:
                values[key] = float(raw)
            except ValueError:
                raise ValueError(f"{pair!r}: {raw!r} is not a number") from None
        objective = Objective(
            availability=_percent(
                f"{model} availability", values.get("availability", default.availability)
            ),
            latency_threshold=(
                _threshold(f"{model} latency_threshold", values["latency_threshold"])
                if "latency_threshold" in values
                else default.latency_threshold
            ),
            latency_target=_percent(
                f"{model} latency_target", values.get("latency_target", default.latency_target)
            ),
        )
        out[model.strip()] = objective
    return tuple(out.items())


def slo_from(p: dict[str, Any]) -> Slo:
    """The SLO settings from option values (keys as in config.RULE_OPTIONS); ValueError if bad."""
    threshold = p.get("slo_latency_threshold")
    default = Objective(
        availability=_percent("--slo-availability", float(p["slo_availability"])),
        latency_threshold=(
            None if threshold is None else _threshold("--slo-latency-threshold", float(threshold))
        ),
        latency_target=_percent("--slo-latency-target", float(p["slo_latency_target"])),
    )
    scale = float(p.get("slo_window_scale") or 1.0)
    if not 1.0 <= scale <= 10_000:
        raise ValueError(f"--slo-window-scale must be in [1, 10000], got {scale:g}")
    return Slo(
        default=default,
        overrides=parse_overrides(p.get("slo_overrides") or "", default),
        selector=p.get("rules_selector") or DEFAULT_SELECTOR,
        window_scale=scale,
        runbook=p.get("runbook_url") or RUNBOOK,
    )


# --- PromQL ----------------------------------------------------------------------------------
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _seconds(window: str) -> int:
    return int(window[:-1]) * _UNIT[window[-1]]


def _range(window: str, slo: Slo) -> str:
    """The PromQL range of an SLI window, shortened by --slo-window-scale."""
    if slo.window_scale == 1.0:
        return window
    return f"{max(1, round(_seconds(window) / slo.window_scale))}s"


def _sel(matchers: str, extra: str = "") -> str:
    both = ", ".join(m for m in (matchers, extra) if m)
    return "{" + both + "}" if both else ""


def _rate(metric: str, by: str, window: str, matchers: str = "") -> str:
    return f"sum by ({by}) (rate({metric}{_sel(matchers)}[{window}]))"


def _error_ratio(by: str, window: str, matchers: str = "") -> str:
    """Share of calls that raised. An error series appears only after the first error: ``or``
    a zero of the same labels keeps the ratio at 0, not empty, on a healthy model."""
    n = c.INFERENCES.name
    errors = _rate(n, by, window, ", ".join(m for m in (matchers, 'status="error"') if m))
    total = _rate(n, by, window, matchers)
    return f"({errors} or {total} * 0)\n/\n{total}"


def _model_matchers(slo: Slo) -> list[tuple[str, Objective]]:
    """(label matcher, objective): overridden models one by one, then every other model."""
    out = [(f'model="{m}"', o) for m, o in slo.overrides]
    if slo.overrides:
        # RE2 metacharacters escaped, the backslash doubled for the PromQL string literal.
        others = "|".join(re.sub(r"([.+*?()\[\]{}|^$])", r"\\\\\1", m) for m, _ in slo.overrides)
        out.append((f'model!~"{others}"', slo.default))
    else:
        out.append(("", slo.default))
    return out


def _slow_ratio(o: Objective, window: str, matchers: str) -> str:
    """Share of successful calls slower than the latency threshold."""
    ok = ", ".join(m for m in (matchers, 'status="ok"') if m)
    if o.latency_threshold is None:
        slow = _rate(c.SLA_VIOLATIONS.name, M, window, matchers)
        return f"{slow}\n/\n{_rate(c.INFERENCES.name, M, window, ok)}"
    h = c.INFERENCE_DURATION.name
    le = f'le="{floatToGoString(o.latency_threshold)}"'
    fast = _rate(f"{h}_bucket", M, window, f"{ok}, {le}")
    return f"1 - (\n{fast}\n/\n{_rate(f'{h}_count', M, window, ok)}\n)"


def _slow_counts(o: Objective, window: str, matchers: str) -> tuple[str, str]:
    """(slow, all) successful calls a second, as the latency SLI counts them."""
    ok = ", ".join(m for m in (matchers, 'status="ok"') if m)
    if o.latency_threshold is None:
        return _rate(c.SLA_VIOLATIONS.name, M, window, matchers), _rate(
            c.INFERENCES.name, M, window, ok
        )
    h = c.INFERENCE_DURATION.name
    le = f'le="{floatToGoString(o.latency_threshold)}"'
    count = _rate(f"{h}_count", M, window, ok)
    return f"{count}\n-\n{_rate(f'{h}_bucket', M, window, f'{ok}, {le}')}", count


def _either(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else "\n or\n".join(f"(\n{p}\n)" for p in parts)


def error_sli(w: str) -> str:
    return f"model_provider:ortel_slo_errors:ratio_rate{w}"


def latency_sli(w: str) -> str:
    return f"model:ortel_slo_slow_calls:ratio_rate{w}"


# For the SLO dashboard: each model's budgets as series (burn rate = SLI / budget, overrides
# included), and the latency SLI's counts, which add up over 30 days where ratios would not.
ERROR_BUDGET = "model_provider:ortel_slo_error_budget:ratio"
LATENCY_BUDGET = "model:ortel_slo_latency_budget:ratio"
SLOW_CALLS = f"model:ortel_slo_slow_calls:rate{RATE}"
LATENCY_CALLS = f"model:ortel_slo_latency_calls:rate{RATE}"


def recording_rules() -> list[dict[str, Any]]:
    inferences = c.INFERENCES.name
    energy = c.INFERENCE_ENERGY.name
    bucket = f"{c.INFERENCE_DURATION.name}_bucket"
    rules: list[dict[str, Any]] = [
        {
            "record": f"model_provider:{c.INFERENCES.family_name}:rate{RATE}",
            "expr": _rate(inferences, ML, RATE),
        },
        {
            "record": f"model_provider:{c.INFERENCES.family_name}:error_ratio_rate{RATE}",
            "expr": _error_ratio(ML, RATE),
        },
    ]
    quantile = f"model_provider:{c.INFERENCE_DURATION.name}:histogram_quantile_rate{RATE}"
    for q in QUANTILES:
        ok = _rate(bucket, ML + ", le", RATE, 'status="ok"')
        rules.append(
            {
                "record": quantile,
                "expr": f"histogram_quantile({q}, {ok})",
                "labels": {"quantile": str(q)},
            }
        )
    per_model_joules = _rate(energy, M, RATE)
    per_model_calls = _rate(inferences, M, RATE)
    rules += [
        {
            "record": f"model:{c.INFERENCE_ENERGY.family_name}:per_inference_rate{RATE}",
            "expr": f"{per_model_joules}\n/\n{per_model_calls}",
        },
        {
            "record": f"model:{c.INFERENCES.family_name}:per_joule_rate{RATE}",
            "expr": f"{per_model_calls}\n/\n{per_model_joules}",
        },
    ]
    return rules


def sli_rules(slo: Slo) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for w in WINDOWS:
        rng = _range(w, slo)
        rules.append({"record": error_sli(w), "expr": _error_ratio(ML, rng)})
        rules.append(
            {
                "record": latency_sli(w),
                "expr": _either([_slow_ratio(o, rng, m) for m, o in _model_matchers(slo)]),
            }
        )
    return rules


def _budget(percent: float) -> str:
    return f"{(100.0 - percent) / 100.0:.6g}"


def budget_rules(slo: Slo) -> list[dict[str, Any]]:
    matchers = _model_matchers(slo)

    def budget(by: str, attr: str) -> str:
        return _either(
            [
                f"{_budget(getattr(o, attr))} * group by ({by}) ({c.INFERENCES.name}{_sel(m)})"
                for m, o in matchers
            ]
        )

    counts = [_slow_counts(o, RATE, m) for m, o in matchers]
    return [
        {"record": ERROR_BUDGET, "expr": budget(ML, "availability")},
        {"record": LATENCY_BUDGET, "expr": budget(M, "latency_target")},
        {"record": SLOW_CALLS, "expr": _either([slow for slow, _ in counts])},
        {"record": LATENCY_CALLS, "expr": _either([total for _, total in counts])},
    ]


def _burn(sli: Any, slo: Slo, long: str, short: str, factor: float, attr: str) -> str:
    parts = []
    for m, o in _model_matchers(slo):
        limit = f"{factor:g} * {_budget(getattr(o, attr))}"
        sel = _sel(m)
        parts.append(f"{sli(long)}{sel} > {limit}\nand\n{sli(short)}{sel} > {limit}")
    return _either(parts)


def _alert(
    slo: Slo,
    name: str,
    expr: str,
    severity: str,
    summary: str,
    description: str,
    for_: str = "",
    **labels: str,
) -> dict[str, Any]:
    rule: dict[str, Any] = {"alert": name, "expr": expr}
    if for_:
        rule["for"] = for_
    rule["labels"] = {"severity": severity, **labels}
    rule["annotations"] = {
        "summary": summary,
        "description": description,
        "runbook_url": f"{slo.runbook}#{name.lower()}",
    }
    return rule


WHERE = "{{ $labels.model }} on {{ $labels.provider }} at {{ $labels.instance }}"
WHERE_MODEL = (
    "{{ $labels.model }}{{ if $labels.provider }} on {{ $labels.provider }}{{ end }}"
    " at {{ $labels.instance }}"
)


def alert_rules(slo: Slo) -> list[dict[str, Any]]:
    rules = []
    for long, short, factor, severity in BURN_PAIRS:
        rules.append(
            _alert(
                slo,
                "OrtelErrorBudgetBurn",
                _burn(error_sli, slo, long, short, factor, "availability"),
                severity,
                f"Model {WHERE} burns its error budget {factor:g}x too fast.",
                f"{{{{ $value | humanizePercentage }}}} of the calls of {WHERE} raised over the "
                f"last {long} and {short}: at this rate the availability SLO's error budget is "
                f"spent {factor:g}x faster than the SLO period allows.",
                long=long,
                short=short,
            )
        )
    for long, short, factor, severity in BURN_PAIRS:
        rules.append(
            _alert(
                slo,
                "OrtelLatencyBudgetBurn",
                _burn(latency_sli, slo, long, short, factor, "latency_target"),
                severity,
                f"Model {WHERE_MODEL} is slow too often: latency budget burns {factor:g}x.",
                f"{{{{ $value | humanizePercentage }}}} of the successful calls of {WHERE_MODEL} "
                f"were slower than the latency threshold over the last {long} and {short}: the "
                f"latency SLO's budget is spent {factor:g}x faster than the SLO period allows.",
                long=long,
                short=short,
            )
        )
    up = f"up{{{slo.selector}}}"
    rules += [
        _alert(
            slo,
            "OrtelCollectorFailing",
            f"{c.COLLECTOR_SUCCESS.name} == 0",
            "warning",
            "Collector {{ $labels.collector }} at {{ $labels.instance }} has failed for 10m.",
            "The {{ $labels.collector }} collector of the ortel daemon at {{ $labels.instance }} "
            "fails every sample: its metrics are not served (see the daemon's log).",
            "10m",
        ),
        _alert(
            slo,
            "OrtelExporterDown",
            f"{up} == 0",
            "critical",
            "ortel exporter {{ $labels.instance }} is down.",
            "Prometheus cannot scrape the ortel daemon at {{ $labels.instance }} (job "
            "{{ $labels.job }}) for 5m: no inference, energy or host metrics from it.",
            "5m",
        ),
        _alert(
            slo,
            "OrtelExporterAbsent",
            f"absent({up})",
            "critical",
            "No ortel exporter is discovered.",
            f"No target matches up{{{slo.selector}}} for 15m: every ortel daemon is gone from "
            "service discovery, so nothing about inference is monitored.",
            "15m",
        ),
        _alert(
            slo,
            "OrtelThermalThrottling",
            f"sum by (job, instance, scope) (increase({c.CPU_THROTTLES.name}[5m])) > 0",
            "warning",
            "CPUs at {{ $labels.instance }} are thermally throttled.",
            "The kernel counted {{ $value | humanize }} thermal throttling events ({{ "
            "$labels.scope }} scope) at {{ $labels.instance }} in 5m, for 10m: inference there "
            "runs at reduced clocks.",
            "10m",
        ),
        _alert(
            slo,
            "OrtelSensorCritical",
            f"{c.TEMPERATURE.name}\n>= on (job, instance, chip, sensor, label)\n"
            f"{c.TEMPERATURE_CRITICAL.name}",
            "warning",
            "Sensor {{ $labels.chip }}/{{ $labels.sensor }} at {{ $labels.instance }} is past "
            "its critical mark.",
            "{{ $labels.chip }}/{{ $labels.sensor }} {{ $labels.label }} at {{ $labels.instance }}"
            " reads {{ $value }} °C, at or above its critical threshold, for 2m.",
            "2m",
        ),
        _alert(
            slo,
            "OrtelLabelValuesDropped",
            f"increase({c.LABEL_VALUES_DROPPED.name}[10m]) > 0",
            "warning",
            "ortel at {{ $labels.instance }} drops values of label {{ $labels.label }}.",
            "Label {{ $labels.label }} reached its cap of distinct values at "
            "{{ $labels.instance }}: new values are exported as __other__ (--label-limits).",
        ),
        _alert(
            slo,
            "OrtelSnapshotsBad",
            f"increase({c.MULTIPROC_BAD_FILES.name}[10m]) > 0",
            "warning",
            "Instrumented processes' snapshots do not reach ortel at {{ $labels.instance }}.",
            "The daemon at {{ $labels.instance }} skipped {{ $value | humanize }} unreadable or "
            "malformed snapshot files in 10m: those processes' inference metrics are missing.",
        ),
        _alert(
            slo,
            "OrtelInstrumentedProcessesGone",
            # Had live writers within the hour, has none now: an instrumented service that
            # stopped, or whose snapshots no longer land in the directory the daemon reads.
            f'max_over_time({c.MULTIPROC_PROCESSES.name}{{state="live"}}[1h]) > 0\n'
            f'and {c.MULTIPROC_PROCESSES.name}{{state="live"}} == 0',
            "warning",
            "No instrumented process reports to ortel at {{ $labels.instance }}.",
            "{{ $value | humanize }} instrumented processes wrote snapshots to the daemon at "
            "{{ $labels.instance }} within the last hour; none has for 10m.",
            for_="10m",
        ),
    ]
    return rules


def groups(slo: Slo) -> list[dict[str, Any]]:
    return [
        {"name": "ortel.rules", "rules": recording_rules()},
        {"name": "ortel-slo.rules", "rules": sli_rules(slo) + budget_rules(slo)},
        {"name": "ortel.alerts", "rules": alert_rules(slo)},
    ]


def prometheus_rule(slo: Slo, name: str = "ortel") -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/name": "ortel"}},
        "spec": {"groups": groups(slo)},
    }


def render(slo: Slo, fmt: str = "rules") -> str:
    import yaml

    class _Dumper(yaml.SafeDumper):
        pass

    def _str(dumper: yaml.SafeDumper, s: str) -> yaml.ScalarNode:
        # Multi-line PromQL as literal blocks: the file reads like hand-written rules.
        style = "|" if "\n" in s else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", s, style=style)

    _Dumper.add_representer(str, _str)
    doc = prometheus_rule(slo) if fmt == "prometheusrule" else {"groups": groups(slo)}
    header = "# Generated by `ortel rules` from the metric catalogue: do not edit.\n"
    return header + yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=100)


def main(argv: list[str]) -> int:
    """``--check [FILE...]`` (exit 1 when a FILE differs from the defaults' rules) or
    ``--write [FILE...]``; no FILE: dashboards/ortel-rules.yml and the Helm chart's copy."""
    if not argv or argv[0] not in ("--check", "--write"):
        print("usage: python -m ortel.exporter.rules --check|--write [FILE...]", file=sys.stderr)
        return 2
    paths, want = [Path(a) for a in argv[1:]] or [COMMITTED, CHART_COPY], render(Slo())
    if argv[0] == "--write":
        for path in paths:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(want)
        return 0
    stale = [p for p in paths if not p.is_file() or p.read_text() != want]
    for path in stale:
        print(f"{path} is stale", file=sys.stderr)
    if stale:
        print(f"run: python -m ortel.exporter.rules --write {' '.join(argv[1:])}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
