"""``ortel analyze`` and ``ortel hostinfo`` as a user runs them."""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys

import pytest
from analysis_fixtures import image, record_trace, write

from ortel.analysis import hostinfo as h
from ortel.analysis import testmodels as tm
from ortel.exporter.cli import main
from ortel.instrumentation import models

ROOFS = ["--peak-flops", "5e10", "--mem-bw", "1e10"]
FAST = ["--runs", "2", "--min-seconds", "0"]


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    for name in list(os.environ):
        if name.startswith("ORTEL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def run(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    out, err = capsys.readouterr()
    return e.value.code, out, err


def test_analyze_profiles_the_model_and_writes_everything(tmp_path, capsys):
    model = write(tmp_path, "gcnn", tm.grouped_cnn_model())
    out = tmp_path / "out"
    code, stdout, stderr = run(
        [
            "analyze",
            str(model),
            "--shape",
            "batch=2",
            "--out",
            str(out),
            *ROOFS,
            *FAST,
            "--power-w",
            "15",
        ],
        capsys,
    )
    assert code == 0, stderr
    s = json.loads((out / "summary.json").read_text())
    assert s["total_macs"] == 2 * tm.GROUPED_CNN_MACS and s["unknown_ops"] == []
    assert s["power"]["source"] == "given" and s["roof"]["source"] == "given"
    assert s["input_shapes"] == {"image": [2, 3, 32, 32]} and s["profiled"]["runs"] == 2
    for f in ("ops_profile.csv", "critical_path.csv", "offload.csv", "report.html"):
        assert (out / f).is_file()
    assert "Where the time goes" in stdout and "unknown ops: none" in stdout
    assert "critical path" in stdout and "offload:" in stdout
    assert "wrote " in stderr and "Traceback" not in stderr


def test_analyze_an_existing_trace_with_env_options(tmp_path, capsys, monkeypatch):
    model = write(tmp_path, "cnn", models.cnn_model())
    opt = tmp_path / "cnn_opt.onnx"
    trace = record_trace(model, image(), tmp_path, runs=4, optimized=opt)
    monkeypatch.setenv("ORTEL_ANALYZE_PEAK_FLOPS", "5e10")
    monkeypatch.setenv("ORTEL_ANALYZE_MEM_BW", "1e10")
    monkeypatch.setenv("ORTEL_ANALYZE_OUT", str(tmp_path / "o"))
    code, stdout, stderr = run(
        ["analyze", str(model), "--trace", str(trace), "--optimized-model", str(opt), "--quiet"],
        capsys,
    )
    assert code == 0, stderr
    s = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert s["total_macs"] == 25_887_360 and s["trace"]["runs_measured"] == 3
    assert s["power"]["source"] == "estimated"  # not profiled here and no --power-w
    assert stdout == ""
    rows = read_csv(tmp_path / "o" / "ops_profile.csv")
    fused = next(r for r in rows if r["node"] == "bn2.relu_nchwc")["fused_from"]
    assert fused == "conv2 (Conv); bn2 (BatchNormalization); bn2.relu (Relu)"


def test_a_truncated_trace_is_analysed_with_a_warning(tmp_path, capsys):
    model = write(tmp_path, "cnn", models.cnn_model())
    trace = record_trace(model, image(), tmp_path, runs=4)
    raw = trace.read_bytes()
    trace.write_bytes(raw[: int(len(raw) * 0.8)])
    code, _, stderr = run(
        [
            "analyze",
            str(model),
            "--trace",
            str(trace),
            "--out",
            str(tmp_path / "o"),
            *ROOFS,
            "--quiet",
        ],
        capsys,
    )
    assert code == 0, stderr
    assert "ortel: warning:" in stderr and "truncated" in stderr


@pytest.mark.parametrize(
    "args,message",
    [
        (["MISSING.onnx"], "no such model file"),
        (["MODEL", "--shape", "nope=3"], "no such input or dimension"),
        (["MODEL", "--shape", "image=1x3"], "rank 4"),
        (["MODEL", "--shape", "image=1xx3"], "bad --shape"),
        (["MODEL", "--trace", "MISSING.json"], "no such file"),
        (["MODEL", "--trace", "NOTJSON"], "--trace"),
        (["MODEL", "--peak-flops", "-1"], "peak-flops"),
        (["MODEL", "--opt-level", "max"], "opt-level"),
        (["GARBAGE"], "not a readable ONNX model"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, message):
    model = write(tmp_path, "cnn", models.cnn_model())
    notjson = tmp_path / "x.json"
    notjson.write_text("hello")
    garbage = tmp_path / "g.onnx"
    garbage.write_bytes(b"\x00\x01garbage" * 5)
    sub = {
        "MODEL": str(model),
        "MISSING.onnx": str(tmp_path / "m.onnx"),
        "MISSING.json": str(tmp_path / "m.json"),
        "NOTJSON": str(notjson),
        "GARBAGE": str(garbage),
    }
    argv = ["analyze", *[sub.get(a, a) for a in args], "--out", str(tmp_path / "o"), *FAST]
    code, _, err = run(argv, capsys)
    assert code == 2
    lines = [ln for ln in err.splitlines() if ln.startswith("ortel: error:")]
    assert len(lines) == 1 and message in lines[0], err
    assert "Traceback" not in err


def test_a_model_onnx_runtime_cannot_run_says_so(tmp_path, capsys):
    from onnx import TensorProto, helper

    g = helper.make_graph(
        [helper.make_node("Custom", ["x"], ["y"], domain="my.ops")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    m = helper.make_model(
        g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("my.ops", 1)]
    )
    p = tmp_path / "custom.onnx"
    p.write_bytes(m.SerializeToString())
    code, _, err = run(["analyze", str(p), "--out", str(tmp_path / "o"), *FAST], capsys)
    assert code == 2 and "cannot load the model" in err and "--trace" in err


def test_hostinfo_reads_the_cache(tmp_path, capsys):
    cache = tmp_path / "hi.json"
    info = h.HostInfo(
        1.5e11,
        2.5e10,
        2048,
        1 << 27,
        2,
        h.cpu_model(),
        os.cpu_count(),
        socket.gethostname(),
        "2",
        0.0,
    )
    h.HostInfoCache(cache).put(info)
    code, out, _ = run(["hostinfo", "--cache", str(cache)], capsys)
    assert code == 0 and "150 GFLOP/s" in out and "25 GB/s" in out and "cached" in out
    code, out, _ = run(["hostinfo", "--cache", str(cache), "--json"], capsys)
    doc = json.loads(out)
    assert doc["peak_flops"] == 1.5e11 and doc["source"] == "cached"


def test_the_commands_are_listed_and_the_package_imports_nothing_heavy():
    code = (
        "import sys, ortel.analysis, ortel.exporter.cli as c;"
        "assert not {'onnx', 'onnxruntime', 'numpy'} & set(sys.modules), sorted(sys.modules);"
        "print(c.cli.list_commands(None))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "'analyze'" in out.stdout and "'hostinfo'" in out.stdout


def test_without_the_analysis_extra_it_says_what_to_install(tmp_path, monkeypatch, capsys):
    import importlib.util

    from ortel.exporter.cli import main
    from ortel.instrumentation.models import add_model

    model = tmp_path / "add.onnx"
    model.write_bytes(add_model())
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "onnx" else real(n, *a)
    )
    with pytest.raises(SystemExit) as exit_:
        main(["analyze", str(model), "--out", str(tmp_path / "out")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'ortel[analysis]'" in err
