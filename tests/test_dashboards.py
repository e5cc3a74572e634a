"""The Grafana dashboards: generated files current, names from the catalogue (and from the
recording rules of ``ortel rules``), sound JSON, and every panel query answered with data by a real
Prometheus scraping a live ``ortel serve --demo`` with those rules loaded.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from harness import OrtelServe, Prometheus, http_get
from helpers import FIXTURES

from ortel.core import catalog
from ortel.exporter import dashboards as d
from ortel.exporter import rules as r

ROOT = Path(__file__).resolve().parents[1]
DASHBOARDS = ROOT / "dashboards"
RULES = DASHBOARDS / "ortel-rules.yml"
CHART_COPY = ROOT / "helm" / "ortel" / "dashboards"
BUILTIN_VARS = {"__rate_interval", "__interval", "__range"}

NO_GPU = "no NVIDIA GPU (NVML) on the test machine"
# (dashboard uid, panel title) -> why the test machine cannot produce data for it. Every other
# panel must return data in test_every_panel_query_returns_data, and these must return none (so
# the list shrinks when the machine or the fixtures can show them).
HARDWARE_ABSENT: dict[tuple[str, str], str] = {
    ("ortel-energy", "Power, estimated (no meter)"): "the estimate collector stays silent where "
    "RAPL measures CPU power, and the fixture tree has RAPL",
    ("ortel-energy", "Integrated energy (no hardware counter)"): "ortel integrates energy only for "
    "the estimate and powermetrics (macOS): neither reports here, the fixture tree has RAPL",
    ("ortel-gpu", "Utilisation"): NO_GPU,
    ("ortel-gpu", "Memory controller utilisation"): NO_GPU,
    ("ortel-gpu", "SM occupancy and tensor activity"): NO_GPU,
    ("ortel-gpu", "Memory"): NO_GPU,
    ("ortel-gpu", "Memory by process"): NO_GPU,
    ("ortel-gpu", "Utilisation by process"): NO_GPU,
    ("ortel-gpu", "Power against the limit"): NO_GPU,
    ("ortel-gpu", "GPU energy per inference"): NO_GPU,
    ("ortel-gpu", "GPU energy per inference by model (attributed)"): NO_GPU,
    ("ortel-gpu", "Temperatures"): NO_GPU,
    ("ortel-gpu", "Clocks"): NO_GPU,
    ("ortel-gpu", "Throttle reasons"): NO_GPU,
    ("ortel-gpu", "PCIe throughput"): NO_GPU,
}


def shipped() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


def panels(dash: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dash["panels"] if p["type"] != "row"]


def exprs(dash: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expr) of every query of every panel."""
    return [(p["title"], t["expr"]) for p in panels(dash) for t in p["targets"]]


# --- files ----------------------------------------------------------------------------------------
def test_generated_files_are_current():
    for directory in (DASHBOARDS, CHART_COPY):
        assert d._stale(directory) == [], (
            "run: python -m ortel.exporter.dashboards --write dashboards helm/ortel/dashboards"
        )


def test_chart_copy_is_identical_to_dashboards():
    ours = {p.name: p.read_bytes() for p in DASHBOARDS.glob("*.json")}
    chart = {p.name: p.read_bytes() for p in CHART_COPY.glob("*.json")}
    assert ours and chart == ours


def test_check_and_write(tmp_path, capsys):
    assert d.main(["--check", str(tmp_path)]) == 1
    assert "is missing" in capsys.readouterr().err
    assert d.main(["--write", str(tmp_path)]) == 0
    assert d.main(["--check", str(tmp_path)]) == 0
    first = sorted(tmp_path.glob("*.json"))[0]
    first.write_text(first.read_text().replace('"ortel', '"old', 1))
    (tmp_path / "extra.json").write_text("{}")
    assert d.main(["--check", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert f"{first} is stale" in err and "extra.json is not generated" in err
    assert d.main(["--write", str(tmp_path)]) == 0
    assert not (tmp_path / "extra.json").exists()
    assert d.main([]) == 2


# --- names and structure --------------------------------------------------------------------------
def test_every_metric_name_exists_in_the_catalogue():
    seen = set()
    for name, dash in shipped().items():
        texts = [e for _, e in exprs(dash)]
        texts += [v.get("definition", "") for v in dash["templating"]["list"]]
        for text in texts:
            for series in d.metric_names(text):
                m = d.base_metric(series)
                assert m is not None, f"{name}: {series!r} is not in ortel.core.catalog"
                seen.add(m.name)
    assert catalog.INFERENCES.name in seen and catalog.CPU_UTILIZATION.name in seen


def test_every_recorded_series_is_recorded_by_the_rules():
    """The SLO view reads the rules' series: a renamed rule cannot leave a panel behind."""
    recorded = {
        rule["record"] for g in r.groups(r.Slo()) for rule in g["rules"] if "record" in rule
    }
    used = {
        name for dash in shipped().values() for _, e in exprs(dash) for name in d.recorded_names(e)
    }
    assert r.ERROR_BUDGET in used and r.latency_sli("1h") in used
    assert used <= recorded, used - recorded
    assert d.metric_names(f"{r.error_sli('1h')} / {catalog.INFERENCES.name}") == [
        catalog.INFERENCES.name
    ]


def test_slo_view_draws_each_burn_rate_alert_threshold():
    """One panel per window pair of the burn-rate alerts: both windows' burn rates, the alert's
    burn factor drawn as a line, the axis reaching it; budgets left and objectives per model."""
    slo = shipped()["ortel-slo.json"]
    by_title = {p["title"]: p for p in panels(slo)}
    for what, sli in (("Error budget", r.error_sli), ("Latency budget", r.latency_sli)):
        for long, short, factor, severity in r.BURN_PAIRS:
            p = by_title[f"{what} burn {long} / {short}: {severity} above {factor:g}x"]
            assert [sli(long) in t["expr"] for t in p["targets"]] == [True, False]
            assert sli(short) in p["targets"][1]["expr"]
            custom = p["fieldConfig"]["defaults"]["custom"]
            assert custom["thresholdsStyle"] == {"mode": "dashed"}
            assert custom["axisSoftMax"] >= factor
            steps = p["fieldConfig"]["defaults"]["thresholds"]["steps"]
            assert steps[-1] == {
                "color": "red" if severity == "critical" else "orange",
                "value": factor,
            }
    for title in ("Error budget left (30d)", "Latency budget left (30d)"):
        assert by_title[title]["type"] == "stat" and by_title[title]["targets"][0]["instant"]
        assert "min" not in by_title[title]["fieldConfig"]["defaults"]  # overspent: below 0


def test_base_metric_maps_series_suffixes_by_kind():
    assert d.base_metric("ortel_inference_duration_seconds_bucket") is catalog.INFERENCE_DURATION
    assert d.base_metric("ortel_inference_latency_seconds_count") is catalog.LATENCY_QUANTILE
    assert d.base_metric("ortel_inference_latency_seconds_bucket") is None  # summary: no buckets
    assert d.base_metric("ortel_inferences_total_count") is None
    assert d.base_metric("ortel_no_such_metric") is None


def test_query_helpers_reject_what_prometheus_would_not_have():
    with pytest.raises(ValueError, match="no label 'gpu'"):
        d.sel(catalog.INFERENCES, 'gpu="0"')
    with pytest.raises(ValueError, match="no _bucket series"):
        d.sel(catalog.INFERENCES, suffix="bucket")
    with pytest.raises(ValueError, match="gauge"):
        d.rate(catalog.MEMORY_USED)
    with pytest.raises(ValueError, match="not a histogram"):
        d.quantile(0.99, catalog.LATENCY_QUANTILE)
    assert d.sel(catalog.MEMORY_USED) == 'ortel_memory_used_bytes{instance=~"$instance"}'
    assert d.sel(catalog.SLA_COMPLIANCE) == (
        'ortel_sla_compliance_ratio{instance=~"$instance",model=~"$model"}'
    )


def test_dashboards_are_sound_grafana_json():
    uids = set()
    for name, dash in shipped().items():
        assert name == f"{dash['uid']}.json"
        assert dash["uid"] not in uids and len(dash["uid"]) <= 40
        uids.add(dash["uid"])
        assert dash["schemaVersion"] == d.SCHEMA_VERSION and "ortel" in dash["tags"]
        variables = {v["name"]: v for v in dash["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["query"] == "prometheus"
        for var in ("instance", "model"):
            if var in variables:
                assert variables[var]["definition"].startswith("label_values(")
        ids = [p["id"] for p in dash["panels"]]
        assert len(ids) == len(set(ids)), name
        cells: set[tuple[int, int]] = set()
        for p in dash["panels"]:
            g = p["gridPos"]
            assert g["x"] >= 0 and g["x"] + g["w"] <= 24, (name, p["title"])
            mine = {
                (x, y)
                for x in range(g["x"], g["x"] + g["w"])
                for y in range(g["y"], g["y"] + g["h"])
            }
            assert not cells & mine, f"{name}: {p['title']!r} overlaps another panel"
            cells |= mine
        for p in panels(dash):
            assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert p["targets"] and p["description"], (name, p["title"])
            refs = [t["refId"] for t in p["targets"]]
            assert len(refs) == len(set(refs))
            for t in p["targets"]:
                used = set(re.findall(r"\$(\w+)", t["expr"]))
                assert used <= variables.keys() | BUILTIN_VARS, (name, p["title"], used)


def test_model_variable_only_where_metrics_carry_a_model():
    dashes = shipped()
    assert "model" in {v["name"] for v in dashes["ortel-overview.json"]["templating"]["list"]}
    host = {v["name"]: v for v in dashes["ortel-host.json"]["templating"]["list"]}
    assert "model" not in host and host["instance"]["multi"] is False


# --- every panel query against a real Prometheus -------------------------------------------------
def grafana_regex_escape(value: str) -> str:
    """How Grafana writes one selected value into a ``=~"$var"`` matcher for Prometheus."""
    return re.sub(r"([\\^$*+?.()|{}\[\]])", r"\\\\\1", value)


def substitute(expr: str, values: dict[str, str]) -> str:
    """``values`` holds what Grafana writes for each variable (already escaped)."""
    out = expr.replace("$__rate_interval", "30s").replace("$__range", "5m")
    for name, value in values.items():
        out = out.replace(f"${name}", value)
    return out


def as_opened(var: dict[str, Any], found: list[str], instance: str) -> str:
    """A variable's value when the dashboard opens: "All" (its allValue, written as is) where that
    is the default, else one value, regex-escaped as Grafana writes it (this daemon's instance)."""
    if var.get("includeAll") and var["current"].get("value") == ["$__all"]:
        return var["allValue"]
    assert instance in found, (var["name"], found)
    return grafana_regex_escape(instance)


def label_values(prom: Prometheus, definition: str, values: dict[str, str]) -> list[str]:
    m = re.fullmatch(r"label_values\((.+), (\w+)\)", definition)
    assert m, definition
    series, label = substitute(m.group(1), values), m.group(2)
    query = urllib.parse.urlencode({"match[]": series})
    return list(prom.api(f"/api/v1/label/{label}/values?{query}"))


def has_data(result: list[Any]) -> bool:
    return any(math.isfinite(float(r["value"][1])) for r in result)


@contextmanager
def live_sysfs(tmp: Path) -> Iterator[Path]:
    """The fixture sysfs, copied, with its energy counters (RAPL energy_uj, hwmon energyN_input,
    both µJ) rising at 5 W the whole time, as on a machine at work."""
    root = Path(shutil.copytree(FIXTURES / "sysfs", tmp / "sysfs", symlinks=True))
    counters = [
        Path(d) / f
        for d, _, names in os.walk(root)  # no symlinks followed: sysfs links loop
        for f in names
        if f == "energy_uj" or re.fullmatch(r"energy\d+_input", f)
    ]
    assert counters
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(0.25):
            for path in counters:
                tmp = path.with_name(f".{path.name}.tmp")  # atomic: never a half-written value
                tmp.write_text(f"{int(path.read_text()) + 1_250_000}\n")  # 5 W over 0.25 s
                os.replace(tmp, path)

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        yield root
    finally:
        stop.set()
        thread.join(5)


# A user's generation loop through the shim, reporting like the demo does: each decode step is an
# inference call (track) that keeps the CPU busy for a moment, each token is marked (g.token()).
GENERATIONS = """
import os, time
from ortel.instrumentation import track
from ortel.instrumentation.generation import track_generation
parent = os.getppid()
while os.getppid() == parent:
    with track_generation("demo_llm", provider="CPUExecutionProvider", prompt_tokens=12) as g:
        for _ in range(6):
            with track("demo_llm", provider="CPUExecutionProvider"):
                end = time.perf_counter() + 0.002
                while time.perf_counter() < end:
                    pass
            g.token()
    time.sleep(0.02)
"""


@pytest.mark.slow
def test_every_panel_query_returns_data(tmp_path):
    multiproc = tmp_path / "multiproc"
    multiproc.mkdir()
    with live_sysfs(tmp_path) as sysfs:
        # The demo profiles one inference a second (operator timings): the Operators panels.
        env = dict(os.environ, ORTEL_OP_SAMPLE_SECONDS="1")
        serve = OrtelServe(
            "--demo",
            "--per-core",
            "--sysfs",
            str(sysfs),
            "--multiproc-dir",
            str(multiproc),
            env=env,
        )
        env = dict(os.environ, ORTEL_MULTIPROC_DIR=str(multiproc))
        gen = subprocess.Popen([sys.executable, "-c", GENERATIONS], env=env)
        try:
            # The rules of `ortel rules`: the SLO view reads their recorded series.
            with Prometheus([serve.target], rule_files=[RULES]) as prom, serve:
                check_every_panel(prom, serve)
        finally:
            gen.terminate()
            gen.wait(10)


def check_every_panel(prom: Prometheus, serve: OrtelServe) -> None:
    prom.wait_for(f'up{{instance="{serve.target}"}} == 1', timeout=30)
    pending: dict[tuple[str, str, str], str] = {}
    absent: dict[tuple[str, str, str], str] = {}
    for name, dash in shipped().items():
        values: dict[str, str] = {}
        for var in dash["templating"]["list"]:
            if var["type"] != "query":
                continue
            deadline = time.monotonic() + 20
            while not (found := label_values(prom, var["definition"], values)):
                assert time.monotonic() < deadline, f"{name}: ${var['name']} has no values"
                time.sleep(0.5)
            values[var["name"]] = as_opened(var, found, serve.target)
        for title, expr in exprs(dash):
            target = absent if (dash["uid"], title) in HARDWARE_ABSENT else pending
            target[(name, title, expr)] = substitute(expr, values)
    deadline = time.monotonic() + 40
    while pending and time.monotonic() < deadline:
        for key, query in list(pending.items()):
            if has_data(prom.query(query)):
                del pending[key]
        time.sleep(0.5)
    assert not pending, "panels without data:\n" + "\n".join(
        f"{n} / {t}: {pending[(n, t, e)]}" for n, t, e in pending
    )
    shown = [f"{n} / {t}" for (n, t, e), q in absent.items() if has_data(prom.query(q))]
    assert not shown, f"listed as absent but they have data (update HARDWARE_ABSENT): {shown}"
    status, _, _ = http_get(f"{serve.url}/healthz")
    assert status == 200


def test_hardware_absent_list_names_real_panels():
    titles = {(dash["uid"], p["title"]) for dash in shipped().values() for p in panels(dash)}
    assert set(HARDWARE_ABSENT) <= titles


def test_provisioning_files_point_grafana_at_prometheus_and_the_dashboards():
    import yaml

    prov = DASHBOARDS / "provisioning"
    ds = yaml.safe_load((prov / "datasources" / "ortel.yaml").read_text())
    assert ds["apiVersion"] == 1
    (source,) = ds["datasources"]
    assert source["type"] == "prometheus" and source["access"] == "proxy"
    assert source["url"].startswith("http")
    boards = yaml.safe_load((prov / "dashboards" / "ortel.yaml").read_text())
    (provider,) = boards["providers"]
    assert provider["type"] == "file" and provider["options"]["path"].startswith("/")
    assert provider["allowUiUpdates"] is False  # generated files: UI edits would be lost
