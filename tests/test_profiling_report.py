"""Reports: summary.json, CSV tables, summary.md and a self-contained report.html."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest

from ortel.analysis.testmodels import gpt_decoder_model
from ortel.instrumentation.models import mlp_model
from ortel.profiling.profiler import Options, profile
from ortel.profiling.report import result_samples, store_samples, write_reports
from ortel.profiling.runner import Policy
from ortel.profiling.stats import STAT_KEYS
from ortel.profiling.store import Store

FAST = Policy(min_duration=0.05, min_samples=30, warmup_window=0.01, warmup_max=0.05)


@pytest.fixture(scope="module")
def mlp_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("mlp")
    (d / "m<lp>.onnx").write_bytes(mlp_model())  # a name that must be escaped in HTML
    empty = d / "sys"
    empty.mkdir()
    o = Options(d / "m<lp>.onnx", batch_sizes=[1, 4], precisions="fp32,int8", policy=FAST,
                sysfs=empty, power_interval=0.02, op_profile_runs=3, analyze=False)  # fmt: skip
    res = profile(o, d)
    out = d / "report"
    trace = Path(res.operators.trace_path)
    files = write_reports(res.summary(), result_samples(res), out, trace)
    return res, out, files


def test_all_files_are_written(mlp_run):
    _, out, files = mlp_run
    names = {p.name for p in files}
    assert names == {
        "summary.json",
        "configurations.csv",
        "samples.csv",
        "operators.csv",
        "power.csv",
        "summary.md",
        "report.html",
        "onnxruntime_profile.json",
    }
    assert not list(out.glob(".*.tmp"))  # no temporary left behind


def test_summary_json_has_the_issues_keys(mlp_run):
    res, out, _ = mlp_run
    s = json.loads((out / "summary.json").read_text())
    for k in ("load_seconds", "first_inference_seconds", "latency_seconds",
              "throughput_per_second", "samples"):  # fmt: skip
        assert k in s
    assert list(s["latency_seconds"]) == ["p50", "p90", "p95", "p99", "p999", "mean", "stddev",
                                          "min", "max"]  # fmt: skip
    assert len(s["configurations"]) == 4
    for c in s["configurations"]:
        assert set(c["latency_seconds"]) == set(STAT_KEYS)
        assert {"load_seconds", "first_inference_seconds", "throughput_per_second",
                "samples"} <= set(c)  # fmt: skip
    assert s["samples"] == res.configs[0].phase.samples.size


def test_csv_tables_hold_every_raw_sample(mlp_run):
    res, out, _ = mlp_run
    with open(out / "samples.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    lat0 = [float(r["seconds"]) for r in rows if r["config_id"] == "0" and r["kind"] == "latency"]
    assert np.array_equal(lat0, res.configs[0].phase.samples)
    warm = [r for r in rows if r["kind"] == "warmup" and r["config_id"] == "1"]
    assert len(warm) == res.configs[1].phase.warmup_latencies.size
    with open(out / "configurations.csv", newline="") as f:
        cfgs = list(csv.DictReader(f))
    assert [c["precision"] for c in cfgs] == ["fp32", "fp32", "int8", "int8"]
    assert float(cfgs[0]["p99_seconds"]) == pytest.approx(res.summary()["latency_seconds"]["p99"])
    ops = list(csv.DictReader((out / "operators.csv").read_text().splitlines()))
    assert ops and {"node", "op_type", "share"} <= set(ops[0])


def test_html_is_self_contained_and_has_every_section(mlp_run):
    _, out, _ = mlp_run
    html = (out / "report.html").read_text()
    assert not re.search(r"https?://|<script|<link|<img|@import|url\(", html)
    titles = ("Latency histogram", "Latency CDF", "Warm-up and the start of the measured",
              "Throughput by batch size", "p99 latency by batch size", "p50 latency by precision",
              "Power (estimated)", "Time per run by operator", "Recommendations",
              "All configurations", "Memory", "Host and settings")  # fmt: skip
    for title in titles:
        assert title in html, title
    assert html.count("<svg") >= 8
    assert "m&lt;lp&gt;" in html and "m<lp>" not in html
    assert "measured phase" in html


def test_markdown_summary(mlp_run):
    _, out, _ = mlp_run
    md = (out / "summary.md").read_text()
    assert md.startswith("# ortel profile: m<lp>")
    assert "| p50 / p90 / p99 / p99.9 |" in md
    assert "## Recommendations" in md and "## Configurations" in md and "## Operators" in md
    assert "(estimated)" in md


def test_reports_from_the_store_match_the_live_ones(mlp_run, tmp_path: Path):
    res, out, _ = mlp_run
    with Store(tmp_path / "s.duckdb") as st:
        st.save(res)
        again = write_reports(st.summary(res.run_id), store_samples(st, res.run_id),
                              tmp_path / "again")  # fmt: skip
    assert {p.name for p in again} >= {"summary.json", "report.html", "samples.csv"}
    assert (tmp_path / "again" / "samples.csv").read_text() == (out / "samples.csv").read_text()
    assert json.loads((tmp_path / "again" / "summary.json").read_text()) == json.loads(
        (out / "summary.json").read_text()
    )


def test_generation_section(tmp_path: Path):
    p = tmp_path / "gpt.onnx"
    p.write_bytes(gpt_decoder_model(layers=1, attention_mask=True))
    o = Options(p, policy=FAST, power=False, op_profile=False, generate=5, prompt_len=4,
                generate_runs=2, seq_lens=[4])  # fmt: skip
    res = profile(o, tmp_path)
    write_reports(res.summary(), result_samples(res), tmp_path / "r")
    html = (tmp_path / "r" / "report.html").read_text()
    assert "Generation" in html and "Decode step latency by position" in html
    assert "No power data" in html and "no power data" in html  # section and generation card
    md = (tmp_path / "r" / "summary.md").read_text()
    assert "## Generation" in md and "time to first token" in md
    rows = list(csv.DictReader((tmp_path / "r" / "samples.csv").read_text().splitlines()))
    assert len([r for r in rows if r["kind"] == "itl" and r["config_id"] == ""]) == 2 * 4
