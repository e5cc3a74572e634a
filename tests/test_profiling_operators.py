"""The profiled pass: onnxruntime's trace, per node, warm-up runs left out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ortel.instrumentation.models import cnn_model, mlp_model
from ortel.profiling import operators as ops
from ortel.profiling.providers import CPU, make_session


def node(name: str, ts: int, dur: int, op: str = "Gemm", **args: str) -> dict:
    return {"cat": "Node", "name": f"{name}_kernel_time", "ts": ts, "dur": dur,
            "args": {"op_name": op, "provider": CPU, **args}}  # fmt: skip


def run(ts: int, dur: int) -> dict:
    return {"cat": "Session", "name": "model_run", "ts": ts, "dur": dur}


def test_warm_up_runs_are_dropped_and_nodes_summed():
    events = [
        run(0, 100), node("fc", 10, 90, output_size="64", mem_arena_held="4096"),
        run(200, 30), node("fc", 205, 20), node("sm", 226, 4, "Softmax"),
        run(300, 30), node("fc", 305, 22), node("sm", 327, 2, "Softmax", mem_in_use_peak="512"),
        {"cat": "Node", "name": "fc_fence_before", "ts": 304, "dur": 1},
    ]  # fmt: skip
    p = ops.parse_trace(events, skip_runs=1)
    assert p.runs == 2
    assert p.run_seconds_mean == pytest.approx(30e-6)
    by = {r.node: r for r in p.nodes}
    assert by["fc"].calls == 2 and by["fc"].total_seconds == pytest.approx(42e-6)
    assert by["sm"].mean_seconds == pytest.approx(3e-6)
    assert sum(r.share for r in p.nodes) == pytest.approx(1.0)
    assert p.nodes[0].node == "fc"  # slowest first
    assert p.arena_held_bytes is None  # only seen in the dropped warm-up run
    assert p.arena_peak_in_use_bytes == 512
    (gemm, softmax) = p.by_type()
    assert gemm["op_type"] == "Gemm" and gemm["seconds_per_run"] == pytest.approx(21e-6)
    assert softmax["share"] == pytest.approx(3 / 24)


def test_byte_sizes_and_median_land_in_their_own_fields():
    # Distinct sizes: a row built positionally after median_seconds was added to OpRow shifted
    # them by one field (output -> median, activation -> output, parameter -> activation).
    sizes = {"output_size": "11", "activation_size": "22", "parameter_size": "33"}
    events = [
        run(0, 100), node("fc", 10, 10, **sizes),
        run(100, 100), node("fc", 110, 12, **sizes),
        run(200, 100), node("fc", 210, 50, **sizes),
    ]  # fmt: skip
    (fc,) = ops.parse_trace(events).nodes
    assert (fc.output_bytes, fc.activation_bytes, fc.parameter_bytes) == (11, 22, 33)
    assert fc.calls == 3
    assert fc.median_seconds == pytest.approx(12e-6)  # not the mean (24e-6)
    assert fc.mean_seconds == pytest.approx(24e-6)
    row = ops.OperatorProfile(1, None, [fc]).to_json()["nodes"][0]
    assert (row["output_bytes"], row["activation_bytes"], row["parameter_bytes"]) == (11, 22, 33)


def test_real_profiled_pass(tmp_path: Path):
    path = tmp_path / "cnn.onnx"
    path.write_bytes(cnn_model())
    feed = {"image": np.random.default_rng(0).standard_normal((1, 3, 64, 64), np.float32)}
    p = ops.profile_operators(
        lambda prefix: make_session(path, CPU, profile_prefix=prefix)[0],
        feed, tmp_path, warmup=2, runs=5,
    )  # fmt: skip
    assert p.runs == 5
    assert Path(p.trace_path).is_file()
    assert json.loads(Path(p.trace_path).read_text())
    types = {t["op_type"] for t in p.by_type()}
    assert {"Conv", "MaxPool"} & types or any("Conv" in t for t in types)
    assert all(r.calls == 5 for r in p.nodes)
    assert sum(t["share"] for t in p.by_type()) == pytest.approx(1.0)
    d = p.to_json()
    assert d["nodes"][0]["node"] and d["by_type"]


def test_ortel_analyze_section_from_the_same_trace(tmp_path: Path, monkeypatch):
    """The profiled pass feeds ortel analyze (FLOPs, roofline, critical path) in-process."""
    pytest.importorskip("ortel.analysis.analyze")
    import os
    import socket

    from ortel.analysis import hostinfo as hi

    # The host roofline is measured once per host and cached: give this host a cached entry so
    # the test does not spend seconds measuring GEMM and memory bandwidth.
    cache = tmp_path / "hostinfo.json"
    monkeypatch.setenv(hi.CACHE_ENV, str(cache))
    info = hi.HostInfo(
        peak_flops=1e11, mem_bw=1e10, gemm_n=2048, triad_bytes=1 << 27, threads=1,
        cpu_model=hi.cpu_model(), logical_cpus=os.cpu_count() or 1,
        hostname=socket.gethostname(), numpy=np.__version__, measured_at=0.0,
    )  # fmt: skip
    hi.HostInfoCache(cache).put(info)
    path = tmp_path / "mlp.onnx"
    path.write_bytes(mlp_model())
    feed = {"input": np.ones((2, 64), np.float32)}
    p = ops.profile_operators(
        lambda prefix: make_session(path, CPU, profile_prefix=prefix)[0], feed, tmp_path,
        warmup=2, runs=5,
    )  # fmt: skip
    got = ops.analyze(path, p, tmp_path, shapes={"input": [2, 64]}, watts=7.0,
                      power_source="estimated", warmup_runs=2)  # fmt: skip
    assert got is not None and "error" not in got, got
    s = got["summary"]
    # 2 x (64x128 + 128x128 + 128x10) multiply-adds for a batch of 2.
    assert s["total_macs"] == 2 * (64 * 128 + 128 * 128 + 128 * 10)
    assert s["nodes_executed"] == 4
    assert "Roofline" in got["html"] and "<svg" in got["html"] and "<body" not in got["html"]
    json.dumps(s)  # JSON-safe for summary.json


def test_analysis_failure_is_reported_not_raised(tmp_path: Path):
    pytest.importorskip("ortel.analysis.analyze")
    path = tmp_path / "mlp.onnx"
    path.write_bytes(mlp_model())
    (tmp_path / "bad.json").write_text("[]")
    p = ops.OperatorProfile(runs=1, run_seconds_mean=None, trace_path=str(tmp_path / "bad.json"))
    got = ops.analyze(path, p, tmp_path, warmup_runs=0)
    assert got is not None and "error" in got
