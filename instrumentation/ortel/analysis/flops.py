"""Cost of one node: MACs, FLOPs, bytes moved, parameters.

Definitions (``docs/analysis.md`` has the table of every formula):

- **MACs**: multiply-accumulates of the op's matrix/convolution part (Conv, ConvTranspose,
  Gemm, MatMul, Einsum, attention, RNNs and their fused and quantized forms). 0 for other ops.
- **FLOPs**: ``2 × MACs`` for those ops, plus the arithmetic the op performs element-wise
  (fused activations, the softmax inside attention, normalisations, element-wise ops,
  reductions, pooling), counting each add, multiply, compare or transcendental as one.
  Bias additions of Conv/Gemm/MatMul are not counted (the convention of published counts).
  Integer ops count integer operations the same way.
- **Bytes**: activation bytes read (non-constant inputs), weight bytes read (constant inputs:
  initializers, Constant nodes, folded constant subgraphs), bytes written (outputs); Gather
  and Slice read only what they select. **Params**: elements of constant inputs, except int64
  and bool ones (shapes, axes, indices).

Unknown is never 0: an op type without a formula gets ``macs = flops = None`` and status
``unknown_op``; a known op whose shapes are not known gets status ``unknown_shape``.

The registry maps ``(domain, op_type)`` to a function of an ``OpInfo``; add one with
``@register("Op")`` (``domain=`` for contrib ops).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .graph import DTYPE_BITS, TensorInfo

MS = "com.microsoft"
NCHWC = "com.microsoft.nchwc"


@dataclass
class OpInfo:
    op_type: str
    domain: str
    attrs: dict[str, Any]
    inputs: list[TensorInfo | None]  # aligned with the node's inputs; None: optional, absent
    outputs: list[TensorInfo | None]

    def shape(self, i: int, out: bool = False) -> tuple[int, ...] | None:
        ts = self.outputs if out else self.inputs
        t = ts[i] if i < len(ts) else None
        return None if t is None else t.static_shape

    def numel(self, i: int, out: bool = False) -> int | None:
        ts = self.outputs if out else self.inputs
        t = ts[i] if i < len(ts) else None
        return None if t is None else t.numel

    def has(self, i: int) -> bool:
        return i < len(self.inputs) and self.inputs[i] is not None


@dataclass
class Cost:
    macs: int | None = 0
    flops: int | None = 0
    activation_bytes_read: int | None = None
    weight_bytes_read: int | None = None
    bytes_written: int | None = None
    params: int | None = None
    status: str = "ok"  # ok | unknown_op | unknown_shape | control_flow | folded
    note: str = ""

    @property
    def bytes_total(self) -> int | None:
        parts = (self.activation_bytes_read, self.weight_bytes_read, self.bytes_written)
        return None if any(p is None for p in parts) else sum(parts)  # type: ignore[arg-type]


class ShapeUnknown(Exception):
    """A formula needs a shape that is not known."""


@dataclass
class Formula:
    fn: Callable[[OpInfo], tuple[int, int]]  # -> (macs, flops)
    bytes_fn: Callable[[OpInfo], tuple[int, int, int]] | None = None  # (act, weight, written)
    # compute | elementwise | normalization | reduction | data (0 FLOPs by definition)
    kind: str = "compute"


REGISTRY: dict[tuple[str, str], Formula] = {}
CONTROL_FLOW = {"If", "Loop", "Scan"}
REGULAR_KINDS = {"matmul", "conv", "attention", "rnn"}  # offload-friendly families
FAMILY: dict[tuple[str, str], str] = {}


def register(
    *ops: str,
    domain: str | tuple[str, ...] = "",
    bytes_fn: Callable[[OpInfo], tuple[int, int, int]] | None = None,
    kind: str = "compute",
    family: str | None = None,
) -> Callable[[Callable[[OpInfo], tuple[int, int]]], Callable[[OpInfo], tuple[int, int]]]:
    domains = (domain,) if isinstance(domain, str) else domain

    def deco(fn: Callable[[OpInfo], tuple[int, int]]) -> Callable[[OpInfo], tuple[int, int]]:
        for d in domains:
            for op in ops:
                REGISTRY[(d, op)] = Formula(fn, bytes_fn, kind)
                if family:
                    FAMILY[(d, op)] = family
        return fn

    return deco


def lookup(domain: str, op_type: str) -> Formula | None:
    return REGISTRY.get(("" if domain == "ai.onnx" else domain, op_type))


def family(domain: str, op_type: str) -> str:
    """matmul | conv | attention | rnn | elementwise | normalization | reduction | data |
    compute (other arithmetic) | other (no formula)."""
    d = "" if domain == "ai.onnx" else domain
    if (d, op_type) in FAMILY:
        return FAMILY[(d, op_type)]
    f = REGISTRY.get((d, op_type))
    return "other" if f is None else f.kind


# --- helpers -------------------------------------------------------------------------------------
def _req(v: Any) -> Any:
    if v is None:
        raise ShapeUnknown
    return v


def _prod(xs: Any) -> int:
    return int(math.prod(int(x) for x in xs))


def _out(op: OpInfo, i: int = 0) -> int:
    return _req(op.numel(i, out=True))


def _in(op: OpInfo, i: int = 0) -> int:
    return _req(op.numel(i))


def _ishape(op: OpInfo, i: int) -> tuple[int, ...]:
    return _req(op.shape(i))


def _oshape(op: OpInfo, i: int = 0) -> tuple[int, ...]:
    return _req(op.shape(i, out=True))


# Element-wise cost per output element of fused activations (ORT's "activation" attribute).
ACTIVATION_FLOPS = {"Relu": 1, "LeakyRelu": 2, "Sigmoid": 4, "Tanh": 1, "Clip": 2,
                    "HardSigmoid": 4, "HardSwish": 5, "Gelu": 5, "QuickGelu": 5}  # fmt: skip


# --- matrix and convolution ops ------------------------------------------------------------------
def _conv_macs(op: OpInfo, x: int = 0, w: int = 1) -> int:
    # outputs × (input channels per group × kernel area) = prod(out) × prod(W[1:])
    return _out(op) * _prod(_ishape(op, w)[1:])


@register("Conv", family="conv")
def _conv(op: OpInfo) -> tuple[int, int]:
    m = _conv_macs(op)
    return m, 2 * m


@register("FusedConv", "NhwcFusedConv", domain=MS, family="conv")
@register("Conv", domain=NCHWC, family="conv")
def _fused_conv(op: OpInfo) -> tuple[int, int]:
    m = _conv_macs(op)
    extra = 0
    act = op.attrs.get("activation")
    if act:
        extra += ACTIVATION_FLOPS.get(str(act), 1) * _out(op)
    if op.has(3):  # Sum input: the residual add fused into the convolution
        extra += _out(op)
    return m, 2 * m + extra


@register("NhwcConv", domain=MS, family="conv")
def _nhwc_conv(op: OpInfo) -> tuple[int, int]:
    # NHWC weight is [M, kH, kW, C/g]: prod(W[1:]) is still channels-per-group × kernel area.
    m = _conv_macs(op)
    return m, 2 * m


@register("ConvTranspose", family="conv")
def _conv_transpose(op: OpInfo) -> tuple[int, int]:
    # every input element meets (output channels per group × kernel area) weights
    m = _in(op, 0) * _prod(_ishape(op, 1)[1:])
    return m, 2 * m


@register("QLinearConv", family="conv")
def _qlinear_conv(op: OpInfo) -> tuple[int, int]:
    m = _conv_macs(op, 0, 3)
    return m, 2 * m


@register("ConvInteger", family="conv")
def _conv_integer(op: OpInfo) -> tuple[int, int]:
    m = _conv_macs(op, 0, 1)
    return m, 2 * m


def _k_last(op: OpInfo, a: int = 0, trans: bool = False) -> int:
    s = _ishape(op, a)
    if len(s) == 1:
        return s[0]
    return s[-2] if trans else s[-1]


@register("MatMul", "MatMulInteger", family="matmul")
@register("MatMulIntegerToFloat", "DynamicQuantizeMatMul", "TransposeMatMul", domain=MS,
          family="matmul")  # fmt: skip
def _matmul(op: OpInfo) -> tuple[int, int]:
    m = _out(op) * _k_last(op, 0, bool(op.attrs.get("transA", 0)))
    return m, 2 * m


@register("FusedMatMul", domain=MS, family="matmul")
def _fused_matmul(op: OpInfo) -> tuple[int, int]:
    m = _out(op) * _k_last(op, 0, bool(op.attrs.get("transA", 0)))
    return m, 2 * m + (0 if float(op.attrs.get("alpha", 1.0)) == 1.0 else _out(op))


@register("QLinearMatMul", family="matmul")
def _qlinear_matmul(op: OpInfo) -> tuple[int, int]:
    m = _out(op) * _k_last(op, 0)
    return m, 2 * m


@register("MatMulNBits", "MatMulBnb4", domain=MS, family="matmul")
def _matmul_nbits(op: OpInfo) -> tuple[int, int]:
    k = int(op.attrs.get("K") or _k_last(op, 0))
    m = _out(op) * k
    return m, 2 * m


def _gemm_macs(op: OpInfo, a: int) -> int:
    out = _oshape(op)
    rows = out[0] if out else 1
    return _out(op) * (_in(op, a) // max(rows, 1))  # K = numel(A) / M, whatever transA says


@register("Gemm", family="matmul")
def _gemm(op: OpInfo) -> tuple[int, int]:
    m = _gemm_macs(op, 0)
    return m, 2 * m


@register("FusedGemm", domain=MS, family="matmul")
def _fused_gemm(op: OpInfo) -> tuple[int, int]:
    m = _gemm_macs(op, 0)
    act = op.attrs.get("activation")
    return m, 2 * m + (ACTIVATION_FLOPS.get(str(act), 1) * _out(op) if act else 0)


@register("QGemm", domain=MS, family="matmul")
def _qgemm(op: OpInfo) -> tuple[int, int]:
    m = _gemm_macs(op, 0)
    return m, 2 * m


_EINSUM_TERM = re.compile(r"[a-zA-Z]|\.\.\.")


@register("Einsum", family="matmul")
def _einsum(op: OpInfo) -> tuple[int, int]:
    eq = str(op.attrs.get("equation", "")).replace(" ", "")
    lhs = eq.split("->")[0].split(",")
    sizes: dict[str, int] = {}
    for term, i in zip(lhs, range(len(op.inputs))):
        shape = _ishape(op, i)
        letters = _EINSUM_TERM.findall(term)
        if "..." in letters:
            k = letters.index("...")
            n_ell = len(shape) - (len(letters) - 1)
            ell = shape[k : k + n_ell]
            sizes["..."] = max(sizes.get("...", 1), _prod(ell))
            dims = list(shape[:k]) + [0] + list(shape[k + n_ell :])
        else:
            dims = list(shape)
        for letter, d in zip(letters, dims):
            if letter != "...":
                sizes[letter] = max(sizes.get(letter, 1), int(d))
    m = _prod(sizes.values())
    if len(lhs) == 1:  # a single operand: a transpose, trace or reduction
        return 0, m
    return m, 2 * m


# --- attention ----------------------------------------------------------------------------------
def _attention_core(batch: int, heads: int, q_len: int, kv_len: int, qk_dim: int, v_dim: int):
    macs = batch * heads * q_len * kv_len * (qk_dim + v_dim)
    softmax = 5 * batch * heads * q_len * kv_len
    return macs, softmax


@register("Attention", domain=MS, family="attention")
def _attention(op: OpInfo) -> tuple[int, int]:
    # input [B, S, Din], weights [Din, Dq + Dk + Dv], past [2, B, N, P, H]
    b, s, d_in = _ishape(op, 0)
    w = _ishape(op, 1)
    heads = int(op.attrs.get("num_heads", 1))
    sizes = op.attrs.get("qkv_hidden_sizes") or [w[1] // 3] * 3
    dq, _, dv = (int(x) for x in sizes)
    past = op.shape(4) if op.has(4) else None
    kv_len = s + (past[3] if past and len(past) == 5 else 0)
    proj = b * s * d_in * w[1]
    core, soft = _attention_core(b, heads, s, kv_len, dq // heads, dv // heads)
    return proj + core, 2 * (proj + core) + soft


@register("MultiHeadAttention", "DecoderMaskedMultiHeadAttention", domain=MS, family="attention")
def _mha(op: OpInfo) -> tuple[int, int]:
    q = _ishape(op, 0)
    heads = int(op.attrs.get("num_heads", 1))
    b, s = q[0], q[1]
    if len(q) == 5:  # packed QKV [B, S, N, 3, H]
        dq = dv = q[2] * q[4]
        kv_len = s
    else:
        dq = q[2]
        k = op.shape(1) if op.has(1) else None
        if k is None:
            kv_len, dv = s, dq
        elif len(k) == 3:
            kv_len = k[1]
            v = op.shape(2) if op.has(2) else None
            dv = v[2] if v is not None and len(v) == 3 else dq
        else:  # [B, N, L, H]: keys already split into heads
            kv_len, dv = k[2], k[1] * k[3]
        present = op.shape(1, out=True) if len(op.outputs) > 1 else None
        if present is not None and len(present) == 4:
            kv_len = present[2]
        elif op.has(6):
            past = op.shape(6)
            if past is not None and len(past) == 4:
                kv_len += past[2]
    core, soft = _attention_core(b, heads, s, kv_len, dq // heads, dv // heads)
    return core, 2 * core + soft


@register("GroupQueryAttention", domain=MS, family="attention")
def _gqa(op: OpInfo) -> tuple[int, int]:
    q = _ishape(op, 0)
    heads = int(op.attrs.get("num_heads", 1))
    b, s = q[0], q[1]
    kv_heads = int(op.attrs.get("kv_num_heads", heads))
    k = op.shape(1) if op.has(1) else None
    head = q[2] // (heads + 2 * kv_heads) if k is None else q[2] // heads  # packed QKV
    present = op.shape(1, out=True) if len(op.outputs) > 1 else None
    kv_len = present[2] if present is not None and len(present) == 4 else s
    core, soft = _attention_core(b, heads, s, kv_len, head, head)
    return core, 2 * core + soft


# --- recurrent ----------------------------------------------------------------------------------
def _rnn(gates: int, pointwise: int) -> Callable[[OpInfo], tuple[int, int]]:
    def fn(op: OpInfo) -> tuple[int, int]:
        seq, batch, n_in = _ishape(op, 0)
        if op.attrs.get("layout", 0):
            batch, seq = seq, batch
        w = _ishape(op, 1)  # [dirs, gates*H, input]
        dirs, hidden = w[0], w[1] // gates
        m = seq * batch * dirs * gates * hidden * (n_in + hidden)
        return m, 2 * m + seq * batch * dirs * hidden * pointwise

    return fn


# per hidden unit per step: LSTM 3 sigmoids + 2 tanh + 3 mul + 1 add + gate bias adds (8)
register("LSTM", family="rnn")(_rnn(4, 3 * 4 + 2 + 4 + 8))
register("GRU", family="rnn")(_rnn(3, 2 * 4 + 1 + 5 + 6))
register("RNN", family="rnn")(_rnn(1, 1 + 2))


def _words(text: str) -> list[str]:
    return text.split()


# --- element-wise -------------------------------------------------------------------------------
ELEMENTWISE: dict[str, int] = {
    # one operation per output element
    **dict.fromkeys(
        _words(
            """
            Add Sub Mul Div Neg Abs Relu Sign Floor Ceil Round Reciprocal Sqrt Exp Log Erf
            Sin Cos Tan Asin Acos Atan Sinh Cosh Asinh Acosh Atanh Tanh Pow Mod BitShift
            Equal Greater Less GreaterOrEqual LessOrEqual And Or Xor Not IsNaN IsInf Where
            ThresholdedRelu BitwiseAnd BitwiseOr BitwiseXor BitwiseNot
            """
        ),
        1,
    ),
    "PRelu": 2,
    "LeakyRelu": 2,
    "Clip": 2,
    "Elu": 3,
    "Selu": 4,
    "Celu": 4,
    "Softplus": 3,
    "Softsign": 3,
    "Sigmoid": 4,
    "HardSigmoid": 4,
    "HardSwish": 5,
    "Mish": 5,
    "Shrink": 2,
    "Gelu": 5,
}
ELEMENTWISE_MS: dict[str, int] = {
    "Gelu": 5,  # x * 0.5 * (1 + erf(x / sqrt 2))
    "BiasGelu": 6,
    "FastGelu": 9,  # tanh approximation
    "QuickGelu": 5,  # x * sigmoid(alpha x)
    "BiasAdd": 2,  # input + bias + skip
    "BiasSplitGelu": 7,
    "QLinearAdd": 4,  # dequantise both, add, requantise (counted per output element)
    "QLinearMul": 4,
    "QLinearSigmoid": 6,
    "QLinearLeakyRelu": 4,
}


def _elementwise(per: int) -> Callable[[OpInfo], tuple[int, int]]:
    def fn(op: OpInfo) -> tuple[int, int]:
        return 0, per * _out(op)

    return fn


for _op, _n in ELEMENTWISE.items():
    register(_op, kind="elementwise")(_elementwise(_n))
for _op, _n in ELEMENTWISE_MS.items():
    register(_op, domain=MS, kind="elementwise")(_elementwise(_n))


@register("Sum", "Max", "Min", "Mean", kind="elementwise")
def _variadic(op: OpInfo) -> tuple[int, int]:
    n = sum(1 for t in op.inputs if t is not None)
    return 0, max(n - 1, 1) * _out(op) + (_out(op) if op.op_type == "Mean" else 0)


@register("QuantizeLinear", "DequantizeLinear", kind="elementwise")
@register("QuantizeLinear", "DequantizeLinear", domain=MS, kind="elementwise")
def _quant(op: OpInfo) -> tuple[int, int]:
    return 0, 2 * _out(op)  # scale and zero point


@register("DynamicQuantizeLinear", kind="elementwise")
def _dyn_quant(op: OpInfo) -> tuple[int, int]:
    return 0, 4 * _in(op)  # min, max, scale, round


# --- normalisation, softmax, reductions, pooling -------------------------------------------------
def _per_input(per: int) -> Callable[[OpInfo], tuple[int, int]]:
    def fn(op: OpInfo) -> tuple[int, int]:
        return 0, per * _in(op)

    return fn


register("BatchNormalization", kind="normalization")(_per_input(2))  # folded scale and shift
register("LayerNormalization", "InstanceNormalization", "GroupNormalization",
         kind="normalization")(_per_input(7))  # fmt: skip
register("LayerNormalization", "SimplifiedLayerNormalization", domain=MS,
         kind="normalization")(_per_input(7))  # fmt: skip
register("RMSNormalization", kind="normalization")(_per_input(4))
register("SkipLayerNormalization", domain=MS, kind="normalization")(_per_input(9))
register("SkipSimplifiedLayerNormalization", domain=MS, kind="normalization")(_per_input(6))
register("LpNormalization", kind="normalization")(_per_input(3))
register("MeanVarianceNormalization", kind="normalization")(_per_input(5))
register("Softmax", "LogSoftmax", kind="reduction")(_per_input(5))
register("BiasSoftmax", domain=MS, kind="reduction")(_per_input(6))
register("Hardmax", "CumSum", "ArgMax", "ArgMin", "ReduceSum", "ReduceMax", "ReduceMin",
         "ReduceProd", "ReduceLogSum", "NonZero", kind="reduction")(_per_input(1))  # fmt: skip
register("ReduceSumSquare", "ReduceL1", "ReduceL2", "ReduceLogSumExp",
         kind="reduction")(_per_input(2))  # fmt: skip


@register("ReduceMean", kind="reduction")
def _reduce_mean(op: OpInfo) -> tuple[int, int]:
    return 0, _in(op) + _out(op)


@register("RotaryEmbedding", domain=MS, kind="elementwise")
def _rotary(op: OpInfo) -> tuple[int, int]:
    return 0, 3 * _in(op)  # x·cos + rotate(x)·sin


def _kernel_area(op: OpInfo) -> int:
    k = op.attrs.get("kernel_shape")
    if not k:
        raise ShapeUnknown
    return _prod(k)


@register("MaxPool", kind="reduction")
@register("MaxPool", "AveragePool", domain=NCHWC, kind="reduction")
@register("NhwcMaxPool", domain=MS, kind="reduction")
def _pool(op: OpInfo) -> tuple[int, int]:
    per = _kernel_area(op) + (1 if op.op_type == "AveragePool" else 0)
    return 0, per * _out(op)


@register("AveragePool", "LpPool", kind="reduction")
@register("QLinearAveragePool", domain=MS, kind="reduction")
def _avg_pool(op: OpInfo) -> tuple[int, int]:
    return 0, (_kernel_area(op) + 1) * _out(op)


@register("GlobalAveragePool", kind="reduction")
@register("GlobalAveragePool", domain=NCHWC, kind="reduction")
@register("QLinearGlobalAveragePool", domain=MS, kind="reduction")
def _gap(op: OpInfo) -> tuple[int, int]:
    return 0, _in(op) + _out(op)


@register("GlobalMaxPool", "GlobalLpPool", kind="reduction")
@register("GlobalMaxPool", domain=NCHWC, kind="reduction")
def _gmp(op: OpInfo) -> tuple[int, int]:
    return 0, _in(op)


@register("Resize", "Upsample", kind="elementwise")
@register("Upsample", domain=NCHWC, kind="elementwise")
def _resize(op: OpInfo) -> tuple[int, int]:
    mode = str(op.attrs.get("mode", "nearest"))
    if mode == "nearest":
        return 0, 0
    s_in, s_out = _ishape(op, 0), _oshape(op)
    d = sum(1 for a, b in zip(s_in, s_out) if a != b) or 1
    taps = (4 if mode == "cubic" else 2) ** d
    return 0, 2 * taps * _out(op)


# --- data movement (0 FLOPs, bytes only) ---------------------------------------------------------
def _zero(op: OpInfo) -> tuple[int, int]:
    return 0, 0


def _gather_bytes(op: OpInfo) -> tuple[int, int, int]:
    """Gather reads the rows it selects (plus the indices), not the whole table."""
    out = op.outputs[0]
    read = _req(out.nbytes if out else None)
    idx = op.inputs[1] if len(op.inputs) > 1 else None
    idx_bytes = (idx.nbytes or 0) if idx is not None else 0
    data = op.inputs[0]
    if data is not None and data.const:
        return idx_bytes, read, read
    return read + idx_bytes, 0, read


def _slice_bytes(op: OpInfo) -> tuple[int, int, int]:
    out = op.outputs[0]
    n = _req(out.nbytes if out else None)
    data = op.inputs[0]
    return (0, n, n) if data is not None and data.const else (n, 0, n)


def _shape_bytes(op: OpInfo) -> tuple[int, int, int]:
    out = op.outputs[0]
    return 0, 0, (out.nbytes or 0) if out else 0  # metadata only


DATA_OPS = _words(
    """
    Concat Split Transpose Reshape Flatten Squeeze Unsqueeze Identity Expand Tile Pad
    DepthToSpace SpaceToDepth Cast CastLike ConstantOfShape Range EyeLike Trilu OneHot
    ScatterND ScatterElements GatherElements GatherND Compress ReverseSequence Dropout
    Optional OptionalGetElement OptionalHasElement SequenceAt SequenceConstruct
    SequenceEmpty SplitToSequence ConcatFromSequence
    """
)
for _op in DATA_OPS:
    register(_op, kind="data")(_zero)
register("Gather", kind="data", bytes_fn=_gather_bytes)(_zero)
register("Slice", kind="data", bytes_fn=_slice_bytes)(_zero)
register("Shape", "Size", kind="data", bytes_fn=_shape_bytes)(_zero)
register("ReorderInput", "ReorderOutput", domain=NCHWC, kind="data")(_zero)
register("MemcpyFromHost", "MemcpyToHost", kind="data")(_zero)
register("QLinearConcat", "GatherBlockQuantized", domain=MS, kind="data")(_zero)


# --- putting it together -------------------------------------------------------------------------
def _default_bytes(op: OpInfo) -> tuple[int | None, int | None, int | None]:
    act = weight = 0
    for t in op.inputs:
        if t is None:
            continue
        n = t.nbytes
        if n is None:
            act = weight = None  # type: ignore[assignment]
            break
        if t.const:
            weight += n
        else:
            act += n
    written: int | None = 0
    for t in op.outputs:
        if t is None:
            continue
        n = t.nbytes
        if n is None:
            written = None
            break
        written += n  # type: ignore[operator]
    return act, weight, written


def params_of(op: OpInfo) -> int | None:
    total = 0
    for t in op.inputs:
        if t is None or not t.const or t.dtype in (7, 9):  # int64 and bool: shapes, axes, masks
            continue
        n = t.numel
        if n is None:
            return None
        total += n
    return total


def cost(op: OpInfo) -> Cost:
    """The node's cost; never raises for a known op with unknown shapes (status says so)."""
    if op.op_type in CONTROL_FLOW and op.domain in ("", "ai.onnx"):
        return Cost(0, 0, *_default_bytes(op), params_of(op), "control_flow")
    formula = lookup(op.domain, op.op_type)
    act, weight, written = _default_bytes(op)
    params = params_of(op)
    if formula is not None and formula.bytes_fn is not None:
        try:
            act, weight, written = formula.bytes_fn(op)
        except ShapeUnknown:
            act = weight = written = None
    if formula is None:
        return Cost(None, None, act, weight, written, params, "unknown_op", "no formula")
    try:
        macs, flops = formula.fn(op)
    except (ShapeUnknown, ValueError, IndexError, TypeError, ZeroDivisionError):
        return Cost(None, None, act, weight, written, params, "unknown_shape", "shape unknown")
    return Cost(int(macs), int(flops), act, weight, written, params)


def dtype_bits(dtype: int | None) -> int:
    return DTYPE_BITS.get(dtype or 0, 0)


@dataclass
class Totals:
    macs: int = 0
    flops: int = 0
    params: int = 0
    unknown_ops: dict[str, int] = field(default_factory=dict)  # op type -> node count
    unknown_shape: dict[str, int] = field(default_factory=dict)

    def add(self, op_type: str, c: Cost, weight: float = 1.0) -> None:
        if c.status == "unknown_op":
            self.unknown_ops[op_type] = self.unknown_ops.get(op_type, 0) + 1
        elif c.status == "unknown_shape":
            self.unknown_shape[op_type] = self.unknown_shape.get(op_type, 0) + 1
        if c.macs is not None:
            self.macs += int(round(c.macs * weight))
        if c.flops is not None:
            self.flops += int(round(c.flops * weight))
