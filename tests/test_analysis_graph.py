"""Loading models: shapes, --shape, constant folding, control-flow bodies, external data."""

from __future__ import annotations

import tracemalloc

import numpy as np
import onnx
import pytest
from analysis_fixtures import write
from onnx import TensorProto, helper

from ortel.analysis import testmodels as tm
from ortel.analysis.graph import ModelError, load_model, parse_shape_args
from ortel.instrumentation import models


def test_parse_shape_args():
    assert parse_shape_args(["image=1x3x224x224", "seq=16", "steps="]) == {
        "image": (1, 3, 224, 224),
        "seq": (16,),
        "steps": (),
    }
    for bad in ("image", "image=1x", "=3", "a=b", "image=1,3"):
        with pytest.raises(ModelError):
            parse_shape_args([bad])


def test_dynamic_dims_default_to_one_with_a_warning(tmp_path):
    m = load_model(write(tmp_path, "dyn", tm.dynamic_dims_model()))
    assert m.input_shapes == {"features": (1, 1, 32)}
    assert m.resolved_dims == {"batch": 1, "seq": 1}
    assert any("batch, seq set to 1" in w for w in m.warnings)


def test_shapes_by_dimension_or_by_input_propagate_and_fold(tmp_path):
    p = write(tmp_path, "dyn", tm.dynamic_dims_model())
    for shapes in ({"batch": (3,), "seq": (7,)}, {"features": (3, 7, 32)}):
        m = load_model(p, shapes)
        g = m.graph
        assert m.input_shapes["features"] == (3, 7, 32) and not m.warnings
        assert g.tensor("proj.relu").static_shape == (3, 7, 64)
        # Shape -> Gather -> Concat folds once shapes are known, so Reshape's output is known.
        folded = {n.name for n in g.nodes if n.folded}
        assert folded == {"pool.shape", "batch", "target"}
        assert list(g.tensor("target").value) == [3, -1]
        assert g.tensor("flat").static_shape == (3, 64) and g.tensor("scores").static_shape == (
            3,
            10,
        )


def test_bad_shape_arguments_are_model_errors(tmp_path):
    p = write(tmp_path, "dyn", tm.dynamic_dims_model())
    cases = [
        ({"nope": (1,)}, "no such input or dimension"),
        ({"features": (3, 7)}, "rank 3"),
        ({"features": (3, 7, 16)}, "fixed at 32"),
        ({"batch": (2, 3)}, "one value"),
        ({"batch": (2,), "features": (3, 7, 32)}, "two values"),
    ]
    for shapes, msg in cases:
        with pytest.raises(ModelError, match=msg):
            load_model(p, shapes)


def test_weights_from_constant_subgraphs_are_constants(tmp_path):
    m = load_model(
        write(tmp_path, "enc", tm.transformer_encoder_model()), {"batch": (2,), "seq": (16,)}
    )
    g = m.graph
    w = g.tensor("ffn.up.weight")  # Cast of a float16 initializer
    assert w.const and w.static_shape == (64, 256) and w.dtype == TensorProto.FLOAT
    b = g.tensor("ffn.down.bias")  # ConstantOfShape
    assert b.const and b.static_shape == (64,) and np.allclose(b.value, 0.01)
    assert g.tensor("attn.scale").const  # a Constant node
    assert {n.name for n in g.nodes if n.folded} == {"attn.scale", "ffn.up.weight", "ffn.down.bias"}
    assert g.tensor("attn.context.merge").static_shape == (2, 16, 64)


def test_control_flow_bodies_get_shapes_and_trip_counts(tmp_path):
    g = load_model(write(tmp_path, "cf", tm.control_flow_model())).graph
    loop = next(n for n in g.nodes if n.name == "loop_fixed")
    body = loop.subgraphs["body"]
    assert [n.name for n in body.nodes] == [
        "fixed_body.cond",
        "fixed_body.matmul",
        "fixed_body.relu",
    ]
    assert body.tensor("fixed_body.mm").static_shape == (1, 16)
    assert body.tensor("W").const  # an outer-scope weight, seen from the body
    assert g.tensor("trip_count").value == 3
    # loop outputs get the body's shape, so nodes after the loops have shapes too
    assert g.tensor("loop_steps").static_shape == (1, 16)
    branch = next(n for n in g.nodes if n.op_type == "If")
    assert set(branch.subgraphs) == {"then_branch", "else_branch"}
    assert "loop_steps" in g.outer_inputs(branch) and "W3" in g.outer_inputs(branch)
    paths = [p for p, _ in g.walk()]
    assert "loop_fixed/fixed_body.matmul" in paths and "branch/then.matmul" in paths


def test_unreadable_models_are_model_errors(tmp_path):
    with pytest.raises(ModelError, match="no such file"):
        load_model(tmp_path / "missing.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00not a protobuf" * 10)
    with pytest.raises(ModelError):
        load_model(bad)


def test_external_data_over_2gb_loads_without_reading_the_weights(tmp_path):
    """A 3 GB embedding table in an external file (sparse: no disk used) — the graph loads in
    the memory of its structure, and its costs are known."""
    rows, dim = 7_500_000, 100
    size = rows * dim * 4
    data = tmp_path / "big.onnx.data"
    with open(data, "wb") as f:
        f.truncate(size)
    table = TensorProto(name="table", data_type=TensorProto.FLOAT, dims=[rows, dim])
    table.data_location = TensorProto.EXTERNAL
    for k, v in (("location", data.name), ("offset", "0"), ("length", str(size))):
        table.external_data.add(key=k, value=v)
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "ids"], ["emb"], name="embed", axis=0)],
        "big",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", 7])],
        [helper.make_tensor_value_info("emb", TensorProto.FLOAT, ["batch", 7, dim])],
        [table],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "big.onnx"
    onnx.save(model, str(path))
    assert path.stat().st_size < 10_000
    tracemalloc.start()
    try:
        m = load_model(path, {"batch": (2,)})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50 * 1024 * 1024
    from ortel.analysis.analyze import static_summary

    rows_, s = static_summary(m)
    assert s["total_params"] == rows * dim
    (row,) = rows_
    assert row.weight_bytes_read == 2 * 7 * dim * 4 and row.bytes_written == 2 * 7 * dim * 4


def test_saved_external_data_round_trip(tmp_path):
    p = tm.save_with_external_data(models.cnn_model(), tmp_path / "cnn.onnx")
    assert (tmp_path / "cnn.onnx.data").stat().st_size > 50_000
    m = load_model(p, {"batch": (1,)})
    assert m.graph.tensor("conv2.weight").static_shape == (32, 16, 3, 3)
    assert m.graph.tensor("logits").static_shape == (1, 10)
