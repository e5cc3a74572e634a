"""Self-profiling: generated inputs, the profile and the saved optimized graphs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from analysis_fixtures import write
from onnx import TensorProto, helper

from ortel.analysis import testmodels as tm
from ortel.analysis.graph import load_model
from ortel.analysis.profile_run import ProfileError, make_inputs, profile, save_optimized
from ortel.instrumentation import models


def test_inputs_follow_the_resolved_shapes_and_types(tmp_path):
    m = load_model(write(tmp_path, "gpt", tm.gpt_decoder_model()), {"seq": (4,), "past_seq": (2,)})
    feeds = make_inputs(m)
    assert feeds["input_ids"].dtype == np.int64 and feeds["input_ids"].shape == (1, 4)
    assert feeds["input_ids"].min() >= 1 and feeds["input_ids"].max() < 10
    assert feeds["past_key_values.1.value"].shape == (1, 4, 2, 16)
    assert feeds["past_key_values.1.value"].dtype == np.float32
    assert np.array_equal(make_inputs(m)["input_ids"], feeds["input_ids"])  # deterministic


def test_profile_runs_until_runs_and_seconds(tmp_path):
    p = write(tmp_path, "cnn", models.cnn_model())
    m = load_model(p)
    calls = []
    run = profile(
        p,
        m,
        tmp_path / "out",
        runs=3,
        warmup_runs=2,
        min_seconds=0.2,
        measure_power=False,
        progress=lambda d, r, e: calls.append((d, e)),
    )
    assert run.runs >= 3 and run.seconds >= 0.2 and calls[-1][0] == run.runs
    events = json.loads(run.trace_path.read_text())
    assert sum(e["name"] == "model_run" for e in events) == run.runs + 2
    assert run.optimized_path.is_file() and run.extended_path is not None
    assert run.power is None and run.providers == ["CPUExecutionProvider"]
    # initializers of the saved graph live in a side file: big models save too
    assert (tmp_path / "out" / "optimized.onnx.data").is_file()


def test_power_is_measured_during_the_profiled_runs(tmp_path):
    p = write(tmp_path, "cnn", models.cnn_model())
    run = profile(p, load_model(p), tmp_path / "out", runs=2, min_seconds=0.3)
    assert run.power is not None and run.power.watts > 0
    assert run.power.source in ("measured", "estimated")


def test_models_onnx_runtime_cannot_load_or_run_are_profile_errors(tmp_path):
    g = helper.make_graph(
        [helper.make_node("NoSuchOp", ["x"], ["y"], domain="my.ops")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    model = helper.make_model(
        g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("my.ops", 1)]
    )
    p = tmp_path / "custom.onnx"
    p.write_bytes(model.SerializeToString())
    with pytest.raises(ProfileError, match="cannot load"):
        profile(p, load_model(p), tmp_path / "out", runs=1, min_seconds=0, measure_power=False)
    with pytest.raises(ProfileError, match="cannot load"):
        save_optimized(p, tmp_path / "out2")
