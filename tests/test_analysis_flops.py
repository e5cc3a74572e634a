"""Per-op cost formulas against hand-computed counts."""

from __future__ import annotations

import pytest

from ortel.analysis import flops as fl
from ortel.analysis.graph import TensorInfo

F32, I8, I64, F16 = 1, 3, 7, 10


def t(*shape: int, dtype: int = F32, const: bool = False) -> TensorInfo:
    return TensorInfo(tuple(shape), dtype, const)


def op(op_type, ins, outs, domain="", **attrs) -> fl.Cost:
    return fl.cost(fl.OpInfo(op_type, domain, attrs, list(ins), list(outs)))


def test_conv_grouped_dilated_strided():
    # 16 -> 32 channels, 3x3, 4 groups, stride 2 on 32x32 -> 16x16 outputs
    c = op(
        "Conv",
        [t(1, 16, 32, 32), t(32, 4, 3, 3, const=True), t(32, const=True)],
        [t(1, 32, 16, 16)],
        group=4,
        strides=[2, 2],
        pads=[1] * 4,
    )
    assert c.macs == 32 * 16 * 16 * 4 * 9 and c.flops == 2 * c.macs
    # dilation changes the output size only: the MACs per output stay C_in/g x k x k
    c = op(
        "Conv",
        [t(2, 32, 16, 16), t(32, 32, 3, 3, const=True)],
        [t(2, 32, 16, 16)],
        dilations=[2, 2],
        pads=[2] * 4,
    )
    assert c.macs == 2 * 32 * 16 * 16 * 32 * 9
    assert c.activation_bytes_read == 2 * 32 * 16 * 16 * 4
    assert c.weight_bytes_read == 32 * 32 * 9 * 4 and c.params == 32 * 32 * 9
    assert c.bytes_written == 2 * 32 * 16 * 16 * 4
    dw = op("Conv", [t(1, 32, 16, 16), t(32, 1, 3, 3, const=True)], [t(1, 32, 16, 16)], group=32)
    assert dw.macs == 32 * 16 * 16 * 9


def test_conv_transpose_counts_per_input_element():
    c = op(
        "ConvTranspose",
        [t(1, 32, 16, 16), t(32, 16, 2, 2, const=True)],
        [t(1, 16, 32, 32)],
        strides=[2, 2],
    )
    assert c.macs == 32 * 16 * 16 * 16 * 4


def test_gemm_and_matmul_batched():
    a, b = t(8, 64), t(64, 10, const=True)
    assert op("Gemm", [a, b, t(10, const=True)], [t(8, 10)]).macs == 8 * 10 * 64
    # transA: A is [K, M]; K = numel(A) / M either way
    assert op("Gemm", [t(64, 8), b], [t(8, 10)], transA=1).macs == 8 * 10 * 64
    assert (
        op("MatMul", [t(2, 4, 16, 8), t(2, 4, 8, 16)], [t(2, 4, 16, 16)]).macs
        == 2 * 4 * 16 * 16 * 8
    )
    # broadcast of B over the batch, and a 1-D A
    assert op("MatMul", [t(3, 5, 7), t(7, 2, const=True)], [t(3, 5, 2)]).macs == 3 * 5 * 2 * 7
    assert op("MatMul", [t(7), t(7, 2)], [t(2)]).macs == 14


def test_ort_fused_ops():
    ms, nc = fl.MS, fl.NCHWC
    x, w, b = t(1, 16, 8, 8), t(32, 16, 3, 3, const=True), t(32, const=True)
    out = t(1, 32, 8, 8)
    macs = 32 * 64 * 16 * 9
    c = op("FusedConv", [x, w, b], [out], ms, activation="Relu")
    assert c.macs == macs and c.flops == 2 * macs + 32 * 64
    c = op("Conv", [x, w, b, t(1, 32, 8, 8)], [out], nc, activation="Sigmoid")
    assert c.macs == macs and c.flops == 2 * macs + 4 * 32 * 64 + 32 * 64  # sigmoid + sum
    c = op("FusedGemm", [t(4, 8), t(8, 6, const=True)], [t(4, 6)], ms, activation="Relu")
    assert c.macs == 4 * 6 * 8 and c.flops == 2 * c.macs + 24
    c = op("FusedMatMul", [t(2, 8, 4), t(2, 8, 5)], [t(2, 4, 5)], ms, transA=1, alpha=0.5)
    assert c.macs == 2 * 4 * 5 * 8 and c.flops == 2 * c.macs + 2 * 4 * 5


def test_attention_ops():
    b, s, h, heads = 2, 16, 64, 4
    c = op(
        "Attention",
        [t(b, s, h), t(h, 3 * h, const=True), t(3 * h, const=True)],
        [t(b, s, h)],
        fl.MS,
        num_heads=heads,
    )
    proj = b * s * h * 3 * h
    core = b * heads * s * s * (h // heads) * 2
    assert c.macs == proj + core and c.flops == 2 * (proj + core) + 5 * b * heads * s * s
    # MultiHeadAttention with a KV cache of 10: 26 keys
    c = op(
        "MultiHeadAttention",
        [t(b, s, h), t(b, s, h), t(b, s, h)],
        [t(b, s, h), t(b, heads, 26, 16), t(b, heads, 26, 16)],
        fl.MS,
        num_heads=heads,
    )
    assert c.macs == b * heads * s * 26 * 32
    c = op(
        "GroupQueryAttention",
        [t(1, 1, 64), t(1, 1, 32), t(1, 1, 32)],
        [t(1, 1, 64), t(1, 2, 9, 16), t(1, 2, 9, 16)],
        fl.MS,
        num_heads=4,
        kv_num_heads=2,
    )
    assert c.macs == 1 * 4 * 1 * 9 * 32


def test_quantized_ops():
    x, w = t(1, 8, 10, 10, dtype=2), t(16, 8, 3, 3, dtype=I8, const=True)
    sc, zp = t(dtype=F32, const=True), t(dtype=2, const=True)
    out = t(1, 16, 8, 8, dtype=2)
    c = op("QLinearConv", [x, sc, zp, w, sc, zp, sc, zp], [out])
    assert c.macs == 16 * 64 * 8 * 9 and c.weight_bytes_read >= 16 * 8 * 9
    assert op("ConvInteger", [x, w], [t(1, 16, 8, 8, dtype=6)]).macs == 16 * 64 * 72
    a, bq = t(4, 32, dtype=2), t(32, 8, dtype=I8, const=True)
    assert op("MatMulInteger", [a, bq], [t(4, 8, dtype=6)]).macs == 4 * 8 * 32
    assert op("QLinearMatMul", [a, sc, zp, bq, sc, zp, sc, zp], [t(4, 8, dtype=2)]).macs == 1024
    nbits = op(
        "MatMulNBits",
        [t(1, 5, 64), t(32, 2, 16, dtype=2, const=True)],
        [t(1, 5, 32)],
        fl.MS,
        K=64,
        N=32,
        bits=4,
        block_size=32,
    )
    assert nbits.macs == 5 * 32 * 64
    assert nbits.weight_bytes_read == 32 * 2 * 16  # the packed bytes, not K x N floats


def test_einsum_and_rnn():
    c = op("Einsum", [t(2, 3, 4), t(2, 4, 5)], [t(2, 3, 5)], equation="bij,bjk->bik")
    assert c.macs == 2 * 3 * 4 * 5
    c = op("Einsum", [t(6, 2, 3, 4), t(6, 2, 4, 5)], [t(6, 2, 3, 5)], equation="...ij,...jk->...ik")
    assert c.macs == 12 * 3 * 4 * 5
    seq, batch, n_in, hid = 5, 2, 8, 16
    c = op(
        "LSTM",
        [t(seq, batch, n_in), t(1, 4 * hid, n_in, const=True), t(1, 4 * hid, hid, const=True)],
        [t(seq, 1, batch, hid)],
    )
    assert c.macs == seq * batch * 4 * hid * (n_in + hid)


def test_elementwise_normalisation_pooling_reductions():
    x = t(2, 8, 4, 4)
    n = 2 * 8 * 4 * 4
    assert op("Add", [x, t(8, 1, 1, const=True)], [x]) == fl.Cost(
        0, n, n * 4, 8 * 4, n * 4, 8, "ok", ""
    )
    assert op("Sigmoid", [x], [x]).flops == 4 * n
    assert op("Softmax", [x], [x]).flops == 5 * n
    assert op("LayerNormalization", [x, t(4, const=True), t(4, const=True)], [x]).flops == 7 * n
    assert op("BatchNormalization", [x, *[t(8, const=True)] * 4], [x]).flops == 2 * n
    assert op("MaxPool", [x], [t(2, 8, 2, 2)], kernel_shape=[2, 2]).flops == 4 * 2 * 8 * 4
    assert op("AveragePool", [x], [t(2, 8, 2, 2)], kernel_shape=[2, 2]).flops == 5 * 64
    assert op("GlobalAveragePool", [x], [t(2, 8, 1, 1)]).flops == n + 16
    assert op("ReduceMean", [x], [t(2, 8, 1, 1)]).flops == n + 16
    assert op("Sum", [x, x, x], [x]).flops == 2 * n
    assert op("Resize", [x], [t(2, 8, 8, 8)], mode="nearest").flops == 0
    assert op("Resize", [x], [t(2, 8, 8, 8)], mode="linear").flops == 2 * 4 * 2 * 8 * 64
    assert op("Gelu", [x], [x], fl.MS).flops == 5 * n


def test_data_movement_ops_count_bytes_only():
    x = t(4, 16)
    for name in ("Concat", "Transpose", "Reshape", "Split", "Identity", "Cast"):
        c = op(name, [x], [x])
        assert c.macs == 0 and c.flops == 0 and c.bytes_written == 256 and c.status == "ok"
    # An embedding lookup reads the selected rows, not the whole table.
    table = t(50000, 64, const=True)
    g = op("Gather", [table, t(1, 7, dtype=I64)], [t(1, 7, 64)], axis=0)
    assert g.weight_bytes_read == 7 * 64 * 4 and g.activation_bytes_read == 7 * 8
    assert g.params == 50000 * 64  # still the model's parameters
    assert op("Shape", [x], [t(2, dtype=I64)]).activation_bytes_read == 0


def test_unknown_is_never_zero():
    c = op("NonMaxSuppression", [t(1, 100, 4), t(1, 1, 100)], [t(10, 3, dtype=I64)])
    assert c.status == "unknown_op" and c.macs is None and c.flops is None
    assert c.activation_bytes_read == 100 * 4 * 4 + 100 * 4  # bytes still known
    c = op("CustomThing", [t(3)], [t(3)], "my.domain")
    assert c.status == "unknown_op"
    c = op(
        "Conv",
        [TensorInfo(("batch", 3, 8, 8), F32), t(4, 3, 3, 3, const=True)],
        [TensorInfo(("batch", 4, 6, 6), F32)],
    )
    assert c.status == "unknown_shape" and c.macs is None and c.activation_bytes_read is None


def test_params_skip_int64_and_bool_constants():
    c = op("Reshape", [t(4, 16), t(2, dtype=I64, const=True)], [t(64)])
    assert c.params == 0 and c.weight_bytes_read == 16
    w16 = op("MatMul", [t(4, 8, dtype=F16), t(8, 8, dtype=F16, const=True)], [t(4, 8, dtype=F16)])
    assert w16.params == 64 and w16.weight_bytes_read == 128


def test_every_op_family_the_issue_names_has_a_formula():
    named = {
        "": "Conv ConvTranspose Gemm MatMul QLinearConv QLinearMatMul MatMulInteger ConvInteger "
        "BatchNormalization InstanceNormalization LayerNormalization MaxPool AveragePool "
        "GlobalAveragePool Add Mul Relu Sigmoid ReduceMean ReduceSum Softmax Resize Gather Concat "
        "Split Transpose Reshape",
        fl.MS: "FusedConv FusedGemm FusedMatMul Attention MultiHeadAttention QLinearAdd",
        fl.NCHWC: "Conv MaxPool GlobalAveragePool ReorderInput ReorderOutput",
    }
    for domain, ops in named.items():
        for name in ops.split():
            assert fl.lookup(domain, name) is not None, (domain, name)
    assert fl.family("", "Conv") == "conv" and fl.family(fl.MS, "Attention") == "attention"
    assert fl.family("", "Relu") == "elementwise" and fl.family("", "TopK") == "other"


@pytest.mark.parametrize("name", ["If", "Loop", "Scan"])
def test_control_flow_has_no_own_cost(name):
    assert op(name, [t(1)], [t(1)]).status == "control_flow"
