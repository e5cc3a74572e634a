"""The files ortel analyze writes, and the terminal summary."""

from __future__ import annotations

import csv
import io
import json
import re
import xml.etree.ElementTree as ET

import pytest
from analysis_fixtures import write

from ortel.analysis import report
from ortel.analysis.analyze import analyze
from ortel.analysis.energy import Power
from ortel.analysis.graph import load_model
from ortel.analysis.mapping import map_graphs
from ortel.analysis.profile_run import profile
from ortel.analysis.roofline import Roof
from ortel.analysis.trace import parse_trace
from ortel.instrumentation import models


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    p = write(tmp, "mlp", models.mlp_model())
    orig = load_model(p, {"batch": (4,)})
    run = profile(
        p, orig, tmp / "prof", runs=3, min_seconds=0, opt_level="extended", measure_power=False
    )
    opt = load_model(run.optimized_path, dict(orig.input_shapes))
    a = analyze(
        orig,
        opt,
        parse_trace(run.trace_path),
        Roof(1e9, 1e9),
        Power(10, "given", "t"),
        map_graphs(orig.graph, opt.graph),
    )
    # One node the analysis cannot count, to see how unknown is written.
    a.rows[0].macs = a.rows[0].flops = None
    a.rows[0].status = "unknown_op"
    return a, tmp


def test_csvs_have_the_promised_columns_and_unknown_is_empty_not_zero(result, tmp_path):
    a, _ = result
    written = report.write_all(a, tmp_path, "mlp.onnx")
    names = {p.name for p in written}
    assert names == {
        "ops_profile.csv",
        "original_ops.csv",
        "critical_path.csv",
        "offload.csv",
        "summary.json",
        "report.html",
    }
    rows = read_csv(tmp_path / "ops_profile.csv")
    need = [
        "node",
        "op_type",
        "provider",
        "macs",
        "flops",
        "activation_bytes_read",
        "weight_bytes_read",
        "bytes_written",
        "params",
        "time_us",
        "arithmetic_intensity",
        "bound",
        "energy_j",
        "on_critical_path",
    ]
    assert set(need) <= set(rows[0]) and len(rows) == len(a.rows)
    assert rows[0]["macs"] == "" and rows[0]["status"] == "unknown_op"
    assert all(r["on_critical_path"] in ("true", "false") for r in rows)
    gemm = next(r for r in rows if r["op_type"] in ("Gemm", "FusedGemm") and r["macs"])
    assert int(gemm["macs"]) > 0 and float(gemm["time_us"]) > 0
    cp = read_csv(tmp_path / "critical_path.csv")
    assert [r["node"] for r in cp] == a.path.path
    off = read_csv(tmp_path / "offload.csv")
    assert off[-1]["kind"] == "set"


def test_summary_json_keys(result, tmp_path):
    a, _ = result
    report.write_all(a, tmp_path, "mlp.onnx", html_report=False)
    s = json.loads((tmp_path / "summary.json").read_text())
    for k in (
        "total_macs",
        "total_flops",
        "total_params",
        "unknown_ops",
        "critical_path_us",
        "serial_sum_us",
        "energy_per_inference_j",
        "power",
        "offload",
        "roof",
    ):
        assert k in s
    assert isinstance(s["unknown_ops"], list)
    assert not (tmp_path / "report.html").exists()


def test_html_is_self_contained_with_well_formed_charts(result, tmp_path):
    a, _ = result
    report.write_all(a, tmp_path, "mlp <b>&</b>.onnx")
    html = (tmp_path / "report.html").read_text()
    assert "<script" not in html and "http://" not in html and "https://" not in html
    assert "mlp &lt;b&gt;&amp;&lt;/b&gt;.onnx" in html  # names are escaped
    svgs = re.findall(r"<svg.*?</svg>", html, re.S)
    assert len(svgs) >= 3  # time, energy, roofline, gantt (roofline needs FLOPs and time)
    for s in svgs:
        ET.fromstring(s)
    for section in ("Roofline", "Critical path", "Offload candidates", "Time by operator type"):
        assert section in html


def test_terminal_summary_names_unknown_ops(result):
    from rich.console import Console

    a, _ = result
    a.summary["unknown_ops"] = ["NonMaxSuppression"]
    buf = io.StringIO()
    report.print_summary(a, Console(file=buf, width=160), top=5)
    out = buf.getvalue()
    assert "unknown ops: NonMaxSuppression" in out and "critical path" in out
    assert "By operator type" in out


def test_si_formatting():
    assert report.si(None) == "unknown" and report.si(0) == "0"
    assert report.si(4.09e9) == "4.09 G" and report.si(0.00627, "J") == "6.27 mJ"
    assert report.si(2.5e-6, "J") == "2.5 µJ" and report.us(1500) == "1.5 ms"
