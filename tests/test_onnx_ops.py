from __future__ import annotations

import onnx.defs
import pytest

from ortel.collectors import onnx_ops


def test_every_onnx_name_is_a_real_op_type():
    # No typos: each ai.onnx name is an operator schema of the installed onnx.
    known = {s.name for s in onnx.defs.get_all_schemas_with_history() if s.domain == ""}
    assert onnx_ops.ONNX_OPS.issubset(known)
    assert len(onnx_ops.ONNX_OPS) >= 0.95 * len(known)  # and the list is not stale


def test_contrib_names_are_not_onnx_ones():
    assert not onnx_ops.ORT_CONTRIB_OPS & onnx_ops.ONNX_OPS


@pytest.mark.parametrize(
    "node, op_type",
    [
        ("/layer1/conv1/Conv", "Conv"),  # torch.onnx.export (dynamo off)
        ("/model/layers.0/self_attn/MatMul_1", "MatMul"),
        ("Conv_12", "Conv"),  # older torch exports, tf2onnx
        ("MatMul_3", "MatMul"),
        ("Gemm", "Gemm"),
        ("fused /conv/Conv", "Conv"),
        ("model/dense/BiasAdd:0", "unknown"),  # TensorFlow op names are not ONNX types
        ("resnetv17_relu0_fwd", "unknown"),  # lower case: not a type, not a guess
        ("node_7", "unknown"),
        ("", "unknown"),
        ("/encoder/SkipLayerNormalization", "SkipLayerNormalization"),
        ("/block/Relu_conv2", "Relu"),  # "conv2" is not a type name: the last one that is
    ],
)
def test_op_type_of(node, op_type):
    assert onnx_ops.op_type_of(node) == op_type
