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


def test_analyze_is_optional(tmp_path: Path):
    path = tmp_path / "mlp.onnx"
    path.write_bytes(mlp_model())
    p = ops.OperatorProfile(runs=1, run_seconds_mean=1e-5, trace_path=str(tmp_path / "x.json"))
    got = ops.analyze(path, p)
    assert got is None or isinstance(got, dict)
