"""Optimized-graph nodes traced back to the original nodes they absorbed (real ORT rewrites)."""

from __future__ import annotations

import numpy as np
import pytest
from analysis_fixtures import write
from onnx import TensorProto, helper

from ortel.analysis import testmodels as tm
from ortel.analysis.graph import load_model
from ortel.analysis.mapping import compose, map_graphs
from ortel.analysis.profile_run import save_optimized
from ortel.instrumentation import models


def optimized(tmp_path, name, model, shapes=None):
    p = write(tmp_path, name, model)
    opt, ext = save_optimized(p, tmp_path / name)
    orig = load_model(p, shapes)
    shapes = dict(orig.input_shapes)
    return orig, load_model(opt, shapes), ext and load_model(ext, shapes)


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    return optimized(tmp_path_factory.mktemp("cnn"), "cnn", models.cnn_model())


def test_nchwc_graph_maps_through_the_extended_one(cnn):
    orig, final, ext = cnn
    assert ext is not None  # the CPU EP rewrote convolutions to NCHWc here
    m = compose(map_graphs(orig.graph, ext.graph), map_graphs(ext.graph, final.graph, True))
    assert m.origin("bn2.relu_nchwc") == ["conv2", "bn2", "bn2.relu"]  # Conv+BN+Relu
    assert m.origin("conv1.relu_nchwc") == ["conv1", "conv1.relu"]
    # NCHWc fuses the residual Add and its Relu into the convolution that feeds only it
    assert m.origin("res.conv2_nchwc") == ["res.conv2", "res.add", "res.add.relu"]
    assert m.origin("flatten") == ["flatten"] and m.origin("logits") == ["logits"]
    assert m.inserted == ["ReorderOutput"]  # a layout change, no original node
    assert m.fate["bn2"] == "fused:bn2.relu_nchwc" and m.fate["logits"] == "kept"
    every = {n for names in m.absorbed.values() for n in names}
    assert every == {n.name for n in orig.graph.nodes}  # nothing lost


def test_single_hop_without_layout_rewrite(tmp_path):
    orig, final, ext = optimized(
        tmp_path, "enc", tm.transformer_encoder_model(), {"batch": (2,), "seq": (8,)}
    )
    assert ext is None
    m = map_graphs(orig.graph, final.graph)
    gelu = next(n.label for n in final.graph.nodes if n.op_type == "BiasGelu")
    assert m.origin(gelu) == [
        "ffn.up",
        "ffn.gelu.div",
        "ffn.gelu.erf",
        "ffn.gelu.add",
        "ffn.gelu.mul",
        "ffn.gelu",
    ]
    scores = next(n.label for n in final.graph.nodes if n.op_type == "FusedMatMul")
    assert m.origin(scores) == ["attn.scores", "attn.scaled"]
    for folded in (
        "ffn.up.weight",
        "ffn.down.bias",
        "attn.scale",
    ):  # Cast, ConstantOfShape, Constant
        assert m.fate[folded] == "folded"


def test_identity_is_eliminated_and_constants_fold(tmp_path):
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 4], np.eye(4, dtype=np.float32).ravel())
    shape = helper.make_tensor("s", TensorProto.INT64, [2], [1, 4])
    bias = helper.make_tensor("b", TensorProto.FLOAT, [4], [1.0, 2.0, 3.0, 4.0])
    g = helper.make_graph(
        [
            helper.make_node("Identity", ["x"], ["xi"], name="ident"),
            helper.make_node("Reshape", ["b", "s"], ["w2"], name="const_reshape"),
            helper.make_node("MatMul", ["xi", "w"], ["y"], name="mm"),
            helper.make_node("Add", ["y", "w2"], ["z"], name="add"),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 4])],
        [w, shape, bias],
    )
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    orig, final, _ = optimized(tmp_path, "small", model.SerializeToString())
    m = map_graphs(orig.graph, final.graph)
    assert m.fate["ident"] == "eliminated" and m.fate["const_reshape"] == "folded"
    (gemm,) = final.graph.nodes  # MatMul + Add -> Gemm
    assert m.origin(gemm.label) == ["mm", "add"] and m.fate["mm"] == f"fused:{gemm.label}"
