"""The Prometheus rules of `ortel rules`: the committed file current, `promtool check rules`
clean, every alert unit-tested with `promtool test rules` (quiet on a healthy system, firing at the
expected time on its fault) over series named and labelled as a real `ortel serve --demo` scrape
shows them, and a real Prometheus evaluating every rule without error while scraping the demo."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness import OrtelServe, Prometheus, http_get, require_tool
from prometheus_client.parser import text_string_to_metric_families
from test_dashboards import live_sysfs

from ortel.core import catalog as c
from ortel.exporter import rules as r

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "dashboards" / "ortel-rules.yml"
ALERTS = sorted({a["alert"] for a in r.alert_rules(r.Slo())})


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    launcher = "import sys; from ortel.exporter.cli import main; sys.exit(main())"
    return subprocess.run(
        [sys.executable, "-c", launcher, "rules", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    exe = require_tool("promtool")
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=300, cwd=cwd)


# --- the generated file -----------------------------------------------------------------------
def test_committed_rules_are_current():
    """dashboards/ortel-rules.yml and the Helm chart's copy, which its PrometheusRule reads."""
    assert r.main(["--check"]) == 0, "run: python -m ortel.exporter.rules --write"
    assert r.CHART_COPY == ROOT / "helm" / "ortel" / "rules" / "ortel-rules.yml"
    assert r.CHART_COPY.read_text() == COMMITTED.read_text()


def test_check_reports_a_stale_file(tmp_path):
    stale = tmp_path / "rules.yml"
    stale.write_text(COMMITTED.read_text().replace(c.INFERENCES.name, "ortel_old_total"))
    fresh = tmp_path / "fresh.yml"
    fresh.write_text(COMMITTED.read_text())
    assert r.main(["--check", str(fresh), str(stale)]) == 1
    assert r.main(["--write", str(stale)]) == 0
    assert r.main(["--check", str(fresh), str(stale)]) == 0


def test_cli_prints_the_committed_file():
    out = run_cli()
    assert out.returncode == 0, out.stderr
    assert out.stdout == COMMITTED.read_text()


def test_rules_reference_only_catalogue_metrics():
    names = {m.name for m in c.all_metrics()}
    hist = {f"{m.name}_{s}" for m in c.all_metrics() if m.kind == "histogram" for s in ("bucket",
            "count", "sum")}  # fmt: skip
    recorded = {
        rule["record"] for g in r.groups(r.Slo()) for rule in g["rules"] if "record" in rule
    }
    for g in r.groups(r.Slo()):
        for rule in g["rules"]:
            for word in re.findall(
                r"\bortel_[a-z_]+\b|\b[a-z_]+:[a-z_0-9]+:[a-z_0-9]+\b", rule["expr"]
            ):
                assert word in names | hist | recorded, f"{word} in {rule['expr']}"


def test_promtool_check_rules_is_clean(tmp_path):
    variants = {
        "default": [],
        "overrides": [
            "--slo-latency-threshold",
            "0.05",
            "--slo-overrides",
            "bert.v2:availability=99.5:latency_threshold=0.5,gpt:latency_target=95",
        ],
    }
    for name, args in variants.items():
        path = tmp_path / f"{name}.yml"
        out = run_cli(*args)
        assert out.returncode == 0, out.stderr
        path.write_text(out.stdout)
        check = promtool("check", "rules", str(path))
        assert check.returncode == 0, check.stdout + check.stderr
        assert "SUCCESS" in check.stdout and "WARNING" not in check.stdout + check.stderr


def test_every_alert_has_severity_summary_description_and_runbook():
    anchors = set(re.findall(r"^## (\w+)", (ROOT / "docs" / "alerts.md").read_text(), re.M))
    for rule in r.alert_rules(r.Slo()):
        assert rule["labels"]["severity"] in ("critical", "warning")
        ann = rule["annotations"]
        assert ann["summary"] and ann["description"]
        assert "{{ $labels.instance }}" in ann["description"] or "absent" in rule["expr"]
        assert ann["runbook_url"] == f"docs/alerts.md#{rule['alert'].lower()}"
        assert rule["alert"] in anchors, f"docs/alerts.md lacks a '## {rule['alert']}' section"


def test_prometheusrule_format_wraps_the_same_groups():
    out = run_cli("--format", "prometheusrule")
    assert out.returncode == 0, out.stderr
    doc = yaml.safe_load(out.stdout)
    assert doc["apiVersion"] == "monitoring.coreos.com/v1" and doc["kind"] == "PrometheusRule"
    assert doc["spec"]["groups"] == yaml.safe_load(COMMITTED.read_text())["groups"]


def test_slo_options_flags_env_and_config_file(tmp_path):
    def burn_limit(text: str) -> str:
        alert = next(
            a for g in yaml.safe_load(text)["groups"] for a in g["rules"] if a.get("alert")
        )
        return alert["expr"].split(">")[1].split("\n")[0].strip()

    assert burn_limit(run_cli().stdout) == "14.4 * 0.001"
    assert burn_limit(run_cli("--slo-availability", "99").stdout) == "14.4 * 0.01"
    env = dict(os.environ, ORTEL_SLO_AVAILABILITY="99.5")
    assert burn_limit(run_cli(env=env).stdout) == "14.4 * 0.005"
    cfg = tmp_path / "ortel.yaml"
    cfg.write_text("listen: 127.0.0.1:9464\nslo_availability: 95\n")  # serve's keys too
    assert burn_limit(run_cli("--config", str(cfg)).stdout) == "14.4 * 0.05"
    # serve accepts the same file
    launcher = "import sys; from ortel.exporter.cli import main; sys.exit(main())"
    serve = subprocess.run(
        [sys.executable, "-c", launcher, "serve", "--config", str(cfg), "--check-config"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert serve.returncode == 0, serve.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--slo-availability", "100"], "strictly between 0 and 100"),
        (["--slo-latency-threshold", "0.06"], "nearest: 0.05, 0.0889"),
        (["--slo-overrides", "bert"], "expected MODEL:KEY=VALUE"),
        (["--slo-overrides", "bert:speed=1"], "expected availability="),
        (["--slo-overrides", "bert:availability=x"], "is not a number"),
    ],
)
def test_bad_slo_options_are_one_line_errors(args, message):
    out = run_cli(*args)
    assert out.returncode == 2
    assert message in out.stderr and len(out.stderr.strip().splitlines()) == 1


# --- promtool test rules over the demo's real series -------------------------------------------
INSTANCE = "10.0.0.7:9464"
JOB = "ortel"
NEEDED = {
    c.INFERENCES.name: {"status": "ok"},
    c.SLA_VIOLATIONS.name: {},
    c.INFERENCE_ENERGY.name: {},
    c.COLLECTOR_SUCCESS.name: {},
    c.CPU_THROTTLES.name: {},
    c.TEMPERATURE.name: {},
    c.TEMPERATURE_CRITICAL.name: {},
    c.LABEL_VALUES_DROPPED.name: {},
    c.MULTIPROC_BAD_FILES.name: {},
}


@pytest.fixture(scope="module")
def demo_series(tmp_path_factory) -> dict[str, list[dict[str, str]]]:
    """Sample name -> label sets, from a real scrape of `ortel serve --demo` (fixture sysfs with
    energy counters rising, so attribution runs)."""
    tmp = tmp_path_factory.mktemp("demo")
    with live_sysfs(tmp) as sysfs, OrtelServe("--demo", "--sysfs", str(sysfs)) as url:
        deadline = time.monotonic() + 40
        while True:
            _, _, body = http_get(f"{url}/metrics")
            found: dict[str, list[dict[str, str]]] = {}
            for fam in text_string_to_metric_families(body):
                for s in fam.samples:
                    found.setdefault(s.name, []).append(dict(s.labels))
            missing = [n for n in NEEDED if n not in found]
            if not missing:
                return found
            assert time.monotonic() < deadline, f"the demo never exported {missing}"
            time.sleep(0.5)


def series(found: dict[str, list[dict[str, str]]], name: str, **want: str) -> dict[str, str]:
    """The first label set of `name` in the scrape that has `want`, as Prometheus would store it
    (job and instance added; `want` may override a value, e.g. status)."""
    for labels in found[name]:
        if all(labels.get(k) == v for k, v in want.items() if not k.startswith("_")):
            return {**labels, "job": JOB, "instance": INSTANCE}
    raise AssertionError(f"the demo's scrape has no {name} with {want}: {found.get(name)}")


def sel(name: str, labels: dict[str, str]) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return f"{name}{{{inner}}}"


def counter(rate: float, minutes: int, then: float | None = None, after: int = 0) -> str:
    """promtool's expanding notation: rising `rate` a minute, then `then` a minute."""
    out = f"0+{rate:g}x{minutes}"
    if then is not None:
        out += f" {rate * minutes + then:g}+{then:g}x{after}"
    return out


def gauge(value: float, minutes: int, then: float | None = None, after: int = 0) -> str:
    out = f"{value:g}x{minutes}"
    if then is not None:
        out += f" {then:g}x{after}"
    return out


DAYS3 = 3 * 24 * 60  # minutes: the longest SLO window, filled before a fault starts
CALLS = 100_000  # a minute


def healthy_inputs(found: dict[str, Any], minutes: int) -> list[dict[str, str]]:
    """Errors 1 in 100,000 calls, no call slower than the SLA, energy flowing, every collector
    up, no throttling, sensors cool, no label values dropped, no bad snapshot files, two
    instrumented processes reporting."""
    ok = series(found, c.INFERENCES.name, status="ok")
    err = {**ok, "status": "error"}
    model = ok["model"]
    out = [
        (sel(c.INFERENCES.name, ok), counter(CALLS - 1, minutes)),
        (sel(c.INFERENCES.name, err), counter(1, minutes)),
        (sel(c.SLA_VIOLATIONS.name, series(found, c.SLA_VIOLATIONS.name, model=model)),
         counter(0, minutes)),
        (sel(c.INFERENCE_ENERGY.name, series(found, c.INFERENCE_ENERGY.name, model=model)),
         counter(60, minutes)),
        (sel("up", {"job": JOB, "instance": INSTANCE}), gauge(1, minutes)),
        (sel(c.MULTIPROC_BAD_FILES.name, series(found, c.MULTIPROC_BAD_FILES.name)),
         gauge(0, minutes)),
        (sel(c.MULTIPROC_PROCESSES.name, series(found, c.MULTIPROC_PROCESSES.name, state="live")),
         gauge(2, minutes)),
    ]  # fmt: skip
    for labels in found[c.COLLECTOR_SUCCESS.name]:
        out.append((sel(c.COLLECTOR_SUCCESS.name, {**labels, "job": JOB, "instance": INSTANCE}),
                    gauge(1, minutes)))  # fmt: skip
    for labels in found[c.CPU_THROTTLES.name]:
        out.append((sel(c.CPU_THROTTLES.name, {**labels, "job": JOB, "instance": INSTANCE}),
                    gauge(7, minutes)))  # fmt: skip
    for labels in found[c.TEMPERATURE_CRITICAL.name]:
        full = {**labels, "job": JOB, "instance": INSTANCE}
        out.append((sel(c.TEMPERATURE.name, full), gauge(45, minutes)))
        out.append((sel(c.TEMPERATURE_CRITICAL.name, full), gauge(100, minutes)))
    for labels in found[c.LABEL_VALUES_DROPPED.name]:
        out.append((sel(c.LABEL_VALUES_DROPPED.name, {**labels, "job": JOB, "instance": INSTANCE}),
                    gauge(0, minutes)))  # fmt: skip
    return [{"series": s, "values": v} for s, v in out]


def replace(inputs: list[dict[str, str]], name: str, labels: dict[str, str], values: str) -> None:
    key = sel(name, labels)
    hits = [i for i in inputs if i["series"] == key]
    assert len(hits) == 1, key
    hits[0]["values"] = values


def render(template: str, labels: dict[str, str], value: str = "") -> str:
    """The alert templates' subset of Go templating: labels, if-label, $value."""
    out = re.sub(
        r"\{\{ if \$labels\.(\w+) \}\}(.*?)\{\{ end \}\}",
        lambda m: m.group(2) if labels.get(m.group(1)) else "",
        template,
    )
    out = re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels.get(m.group(1), ""), out)
    return re.sub(r"\{\{ \$value[^}]*\}\}", value, out)


def expected(name: str, labels: dict[str, str], value: str = "", **which: str) -> dict[str, Any]:
    rule = next(
        a
        for a in r.alert_rules(r.Slo())
        if a["alert"] == name and all(a["labels"].get(k) == v for k, v in which.items())
    )
    all_labels = {**labels, **rule["labels"]}
    ann = {k: render(v, all_labels, value) for k, v in rule["annotations"].items()}
    return {"exp_labels": all_labels, "exp_annotations": ann}


def quiet(at: str, names: list[str] = ALERTS) -> list[dict[str, Any]]:
    return [{"eval_time": at, "alertname": n, "exp_alerts": []} for n in names]


def burn_pair(long: str) -> dict[str, str]:
    pair = next(p for p in r.BURN_PAIRS if p[0] == long)
    return {"long": pair[0], "short": pair[1], "severity": pair[3]}


def unit_tests(found: dict[str, Any]) -> list[dict[str, Any]]:
    ok = series(found, c.INFERENCES.name, status="ok")
    err = {**ok, "status": "error"}
    where = {k: ok[k] for k in ("job", "instance", "model", "provider")}
    tests = []

    ratio = f"model_provider:{c.INFERENCES.family_name}:error_ratio_rate5m"
    joules = f"model:{c.INFERENCE_ENERGY.family_name}:per_inference_rate5m"
    # Healthy for 3 days and 30 minutes: no alert at any point the windows fill.
    tests.append(
        {
            "name": "healthy",
            "interval": "1m",
            "input_series": healthy_inputs(found, DAYS3 + 30),
            "alert_rule_test": [t for at in ("10m", "6h", "1d", "3d30m") for t in quiet(at)],
            "promql_expr_test": [
                {
                    "expr": f"round(model_provider:{c.INFERENCES.family_name}:rate5m * 60)",
                    "eval_time": "1h",
                    "exp_samples": [{"labels": sel("", where)[0:], "value": CALLS}],
                },
                {
                    "expr": f"round({ratio} * 1e7)",
                    "eval_time": "1h",
                    "exp_samples": [{"labels": sel("", where), "value": 100}],
                },
                {
                    "expr": f"round({joules} * 1e7)",
                    "eval_time": "1h",
                    "exp_samples": [
                        {
                            "labels": sel("", {k: where[k] for k in ("job", "instance", "model")}),
                            "value": round(60 / CALLS * 1e7),
                        }
                    ],
                },  # fmt: skip
            ],
        }
    )

    # 20 % of calls raise from 3 days on: each burn-rate pair fires once its windows cross.
    inputs = healthy_inputs(found, DAYS3 + 30)
    replace(inputs, c.INFERENCES.name, ok, counter(CALLS - 1, DAYS3, CALLS * 0.8, 30))
    replace(inputs, c.INFERENCES.name, err, counter(1, DAYS3, CALLS * 0.2, 30))
    # $value is the long window's ratio, exact for these counters (the alert shows it).
    values = {
        "3d6m": {"1h": "2.001%"},
        "3d13m": {"1h": "4.334%", "6h": "0.7232%"},
        "3d25m": {"1h": "8.333%", "6h": "1.39%", "1d": "0.3482%", "3d": "0.1167%"},
    }
    burn = {
        at: [expected("OrtelErrorBudgetBurn", where, v, **burn_pair(lg)) for lg, v in vs.items()]
        for at, vs in values.items()
    }
    tests.append(
        {
            "name": "errors 20 %",
            "interval": "1m",
            "input_series": inputs,
            "alert_rule_test": [
                *quiet("3d3m"),
                *({"eval_time": at, "alertname": "OrtelErrorBudgetBurn", "exp_alerts": alerts}
                  for at, alerts in burn.items()),
                *quiet("3d25m", [a for a in ALERTS if a != "OrtelErrorBudgetBurn"]),
            ],
        }
    )  # fmt: skip

    # Half the successful calls slower than the model's SLA target from 3 days on: the fast pair
    # (14.4 x a 1 % budget) fires once the 1h window passes 14.4 %, after about 17 minutes.
    inputs = healthy_inputs(found, DAYS3 + 30)
    sla = series(found, c.SLA_VIOLATIONS.name, model=ok["model"])
    replace(inputs, c.SLA_VIOLATIONS.name, sla, counter(0, DAYS3, (CALLS - 1) * 0.5, 30))
    slow = expected("OrtelLatencyBudgetBurn", {k: where[k] for k in ("job", "instance", "model")},
                    "16.67%", **burn_pair("1h"))  # fmt: skip
    tests.append(
        {
            "name": "half the calls slow",
            "interval": "1m",
            "input_series": inputs,
            "alert_rule_test": [
                *quiet("3d15m"),
                {"eval_time": "3d20m", "alertname": "OrtelLatencyBudgetBurn", "exp_alerts": [slow]},
                *quiet("3d20m", [a for a in ALERTS if a != "OrtelLatencyBudgetBurn"]),
            ],
        }
    )  # fmt: skip

    # Short faults, each from minute 21 of an otherwise healthy hour.
    def fault(name: str, change: tuple[str, dict[str, str], str], checks: list[Any]) -> None:
        inputs = healthy_inputs(found, 60)
        replace(inputs, *change)
        others = [a for a in ALERTS if a not in {x["alertname"] for x in checks}]
        tests.append(
            {
                "name": name,
                "interval": "1m",
                "input_series": inputs,
                "alert_rule_test": checks + quiet("59m", others),
            }
        )

    def fires(name: str, before: str, at: str, alerts: list[dict[str, Any]]) -> list[Any]:
        return [
            {"eval_time": before, "alertname": name, "exp_alerts": []},
            {"eval_time": at, "alertname": name, "exp_alerts": alerts},
        ]

    coll = series(found, c.COLLECTOR_SUCCESS.name, collector="rapl")
    fault(
        "collector fails",
        (c.COLLECTOR_SUCCESS.name, coll, gauge(1, 20, 0, 40)),
        fires("OrtelCollectorFailing", "30m", "32m",
              [expected("OrtelCollectorFailing", {k: coll[k] for k in coll})]),
    )  # fmt: skip
    up = {"job": JOB, "instance": INSTANCE}
    fault(
        "exporter down",
        ("up", up, gauge(1, 20, 0, 40)),
        fires("OrtelExporterDown", "25m", "27m", [expected("OrtelExporterDown", up)]),
    )
    thr = series(found, c.CPU_THROTTLES.name, scope="package")
    fault(
        "thermal throttling",
        (c.CPU_THROTTLES.name, thr, f"7x20 {counter(1, 40)}".replace(" 0+", " 8+")),
        fires("OrtelThermalThrottling", "30m", "34m",
              [expected("OrtelThermalThrottling", {**up, "scope": "package"}, "5")]),
    )  # fmt: skip
    hot = next({**lb, **up} for lb in found[c.TEMPERATURE_CRITICAL.name] if lb.get("label"))
    fault(
        "sensor past critical",
        (c.TEMPERATURE.name, hot, gauge(45, 20, 105, 40)),
        fires("OrtelSensorCritical", "22m", "24m", [expected("OrtelSensorCritical", hot, "105")]),
    )
    drop = series(found, c.LABEL_VALUES_DROPPED.name, label="model")
    fault(
        "label cap overflow",
        (c.LABEL_VALUES_DROPPED.name, drop, f"0x20 {counter(1, 40)}".replace(" 0+", " 1+")),
        fires("OrtelLabelValuesDropped", "20m", "23m",
              [expected("OrtelLabelValuesDropped", drop)]),
    )  # fmt: skip
    bad = series(found, c.MULTIPROC_BAD_FILES.name)
    fault(
        "bad snapshot files",
        (c.MULTIPROC_BAD_FILES.name, bad, f"0x20 {counter(1, 40)}".replace(" 0+", " 1+")),
        fires("OrtelSnapshotsBad", "20m", "23m", [expected("OrtelSnapshotsBad", bad, "3")]),
    )

    live = series(found, c.MULTIPROC_PROCESSES.name, state="live")
    fault(
        "instrumented processes stop reporting",
        (c.MULTIPROC_PROCESSES.name, live, gauge(2, 20, 0, 40)),
        fires("OrtelInstrumentedProcessesGone", "29m", "31m",
              [expected("OrtelInstrumentedProcessesGone", live, "2")]),
    )  # fmt: skip

    # Every ortel target gone from discovery: only another job's `up` left.
    inputs = [i for i in healthy_inputs(found, 60) if not i["series"].startswith("up{")]
    inputs.append({"series": 'up{job="node",instance="10.0.0.8:9100"}', "values": gauge(1, 60)})
    tests.append(
        {
            "name": "exporter absent",
            "interval": "1m",
            "input_series": inputs,
            "alert_rule_test": fires("OrtelExporterAbsent", "14m", "16m",
                                     [expected("OrtelExporterAbsent", {})]),
        }
    )  # fmt: skip
    return tests


@pytest.mark.slow
def test_promtool_unit_tests_cover_every_alert(demo_series, tmp_path):
    tests = unit_tests(demo_series)
    covered = {t["alertname"] for u in tests for t in u["alert_rule_test"] if t["exp_alerts"]}
    assert covered == set(ALERTS), f"alerts no test fires: {set(ALERTS) - covered}"
    (tmp_path / "ortel-rules.yml").write_text(COMMITTED.read_text())
    # promtool evaluates groups in no fixed order; Prometheus runs them side by side. Recorded
    # SLIs first, then the alerts that read them, so each $value is this minute's, not the last.
    order = [g["name"] for g in r.groups(r.Slo())]
    spec = {
        "rule_files": ["ortel-rules.yml"],
        "evaluation_interval": "1m",
        "group_eval_order": order,
        "tests": tests,
    }
    (tmp_path / "tests.yml").write_text(json.dumps(spec, indent=1))  # JSON is valid YAML
    out = promtool("test", "rules", "tests.yml", cwd=tmp_path)
    assert out.returncode == 0, (out.stdout + out.stderr)[-30000:]


# --- a real Prometheus ------------------------------------------------------------------------
def rule_states(prom: Prometheus) -> Iterator[dict[str, Any]]:
    for group in prom.api("/api/v1/rules")["groups"]:
        yield from group["rules"]


@pytest.mark.slow
def test_real_prometheus_evaluates_every_rule_ok_on_the_demo(tmp_path):
    rules = tmp_path / "ortel-rules.yml"
    rules.write_text(COMMITTED.read_text())
    with live_sysfs(tmp_path) as sysfs:
        serve = OrtelServe("--demo", "--sysfs", str(sysfs))
        with Prometheus([serve.target], rule_files=[rules]) as prom, serve:
            prom.wait_for(f'up{{instance="{serve.target}"}} == 1', timeout=30)
            want = sum(len(g["rules"]) for g in r.groups(r.Slo()))
            deadline = time.monotonic() + 30
            while True:
                states = list(rule_states(prom))
                evaluated = [s for s in states if s.get("lastEvaluation", "").startswith("20")]
                if len(states) == want and len(evaluated) == want:
                    break
                assert time.monotonic() < deadline, f"{len(evaluated)}/{want} rules evaluated"
                time.sleep(0.5)
            bad = [(s["name"], s.get("lastError")) for s in states if s["health"] != "ok"]
            assert not bad, bad
            # The recording rules answer on the live demo, not just evaluate.
            prom.wait_for(f"model_provider:{c.INFERENCES.family_name}:rate5m > 0", timeout=30)
            prom.wait_for(r.error_sli("5m"), timeout=30)
