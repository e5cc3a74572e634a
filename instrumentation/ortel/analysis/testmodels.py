"""Real ONNX models with known costs, for the analysis tests, the benchmarks and the docs.

Every builder is deterministic (fixed seed, fixed producer) and returns the serialized
``ModelProto`` as ``bytes``. The docstrings give the hand-computed MAC counts the tests check.

- ``grouped_cnn_model``: grouped, dilated, depthwise and strided convolutions, ConvTranspose.
- ``transformer_encoder_model``: one pre-LN encoder block; weights from a Cast and a
  ConstantOfShape (constant subgraphs), a ``Constant`` node; symbolic ``batch`` and ``seq``.
- ``gpt_decoder_model``: a GPT-style decoder with a KV cache (``past_key_values.{i}.key/value``
  in, ``present.{i}.key/value`` out), causal mask, optional ``attention_mask`` input, tied-free
  LM head; also the demo model of ``ortel profile --generate`` (``python -m
  ortel.analysis.testmodels gpt.onnx``).
- ``control_flow_model``: a Loop with a constant trip count, a Loop whose trip count is an
  input, and an If.
- ``dynamic_dims_model``: symbolic dims and a Shape→Gather→Concat→Reshape chain.
- ``resnet_model``: the torchvision ResNet-18/34/50/101/152 topology with random weights, to
  check MAC and parameter counts against published figures.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

OPSET = 17
IR_VERSION = 8
PRODUCER_NAME = "ortel.analysis.testmodels"


class _Builder:
    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[Any] = []
        self.inits: list[Any] = []

    def init(self, name: str, array: np.ndarray) -> str:
        from onnx import numpy_helper

        # Not np.ascontiguousarray: it turns a 0-d array (a scalar) into shape [1].
        self.inits.append(numpy_helper.from_array(np.array(array, order="C"), name=name))
        return name

    def weight(self, name: str, shape: tuple[int, ...], fan_in: int) -> str:
        w = self.rng.standard_normal(shape, dtype=np.float32) * np.float32(math.sqrt(2 / fan_in))
        return self.init(name, w)

    def node(self, op: str, inputs: list[str], name: str, n_out: int = 1, **attrs: Any) -> Any:
        """Add a node named ``name``; its outputs are ``name`` (or ``name:0``, ``name:1``…)."""
        from onnx import helper

        outs = [name] if n_out == 1 else [f"{name}:{i}" for i in range(n_out)]
        self.nodes.append(helper.make_node(op, inputs, outs, name=name, **attrs))
        return outs[0] if n_out == 1 else outs

    def finish(self, name: str, inputs: list[Any], outputs: list[Any], opset: int = OPSET) -> bytes:
        import onnx
        from onnx import helper

        graph = helper.make_graph(self.nodes, name, inputs, outputs, initializer=self.inits)
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", opset)],
            producer_name=PRODUCER_NAME,
            producer_version="1",
        )
        model.ir_version = IR_VERSION
        onnx.checker.check_model(model)
        return model.SerializeToString()


def _vi(name: str, shape: list[Any], elem: int | None = None) -> Any:
    from onnx import TensorProto, helper

    return helper.make_tensor_value_info(name, TensorProto.FLOAT if elem is None else elem, shape)


def grouped_cnn_model(seed: int = 0) -> bytes:
    """``image [batch, 3, 32, 32]`` -> ``probabilities [batch, 10]``.

    MACs per image (outputs × input channels per group × kernel area):

    ====================  =================================  ==========
    stem   Conv 3→16 3x3 p1          16·32·32 · 3·9            442,368
    group  Conv 16→32 3x3 s2 g4 p1   32·16·16 · 4·9            294,912
    dil    Conv 32→32 3x3 d2 p2      32·16·16 · 32·9         2,359,296
    dw     Conv 32→32 3x3 g32 p1     32·16·16 · 1·9             73,728
    up     ConvTranspose 32→16 2x2 s2  (32·16·16 inputs) · 16·4  524,288
    fc     Gemm 16→10                16·10                         160
    ====================  =================================  ==========

    Total 3,694,752 MACs per image.
    """
    from onnx import TensorProto

    m = _Builder(seed)

    def conv(x: str, name: str, c_in: int, c_out: int, k: int, **attrs: Any) -> str:
        g = attrs.get("group", 1)
        w = m.weight(f"{name}.weight", (c_out, c_in // g, k, k), c_in // g * k * k)
        b = m.init(f"{name}.bias", np.zeros(c_out, np.float32))
        return m.node("Conv", [x, w, b], name, kernel_shape=[k, k], **attrs)

    x = m.node("Relu", [conv("image", "stem", 3, 16, 3, pads=[1] * 4)], "stem.relu")
    x = conv(x, "group", 16, 32, 3, group=4, strides=[2, 2], pads=[1] * 4)  # 32 x 16 x 16
    scale = m.init("bn.scale", (1 + 0.1 * m.rng.standard_normal(32)).astype(np.float32))
    bias = m.init("bn.bias", (0.1 * m.rng.standard_normal(32)).astype(np.float32))
    mean = m.init("bn.mean", (0.1 * m.rng.standard_normal(32)).astype(np.float32))
    var = m.init("bn.var", (1 + 0.1 * np.abs(m.rng.standard_normal(32))).astype(np.float32))
    x = m.node("Relu", [m.node("BatchNormalization", [x, scale, bias, mean, var], "bn")], "bn.relu")
    x = m.node("Relu", [conv(x, "dil", 32, 32, 3, dilations=[2, 2], pads=[2] * 4)], "dil.relu")
    x = m.node("Relu", [conv(x, "dw", 32, 32, 3, group=32, pads=[1] * 4)], "dw.relu")
    w = m.weight("up.weight", (32, 16, 2, 2), 32 * 4)
    x = m.node("ConvTranspose", [x, w], "up", kernel_shape=[2, 2], strides=[2, 2])  # 16 x 32 x 32
    x = m.node("MaxPool", [x], "maxpool", kernel_shape=[2, 2], strides=[2, 2])  # 16 x 16 x 16
    x = m.node("AveragePool", [x], "avgpool", kernel_shape=[2, 2], strides=[2, 2])  # 16 x 8 x 8
    x = m.node("GlobalAveragePool", [x], "gap")
    x = m.node("Flatten", [x], "flatten", axis=1)
    fw = m.weight("fc.weight", (10, 16), 16)
    fb = m.init("fc.bias", np.zeros(10, np.float32))
    x = m.node("Gemm", [x, fw, fb], "fc", transB=1)
    m.node("Softmax", [x], "probabilities", axis=-1)
    return m.finish(
        "grouped_cnn",
        [_vi("image", ["batch", 3, 32, 32], TensorProto.FLOAT)],
        [_vi("probabilities", ["batch", 10])],
    )


GROUPED_CNN_MACS = 442_368 + 294_912 + 2_359_296 + 73_728 + 524_288 + 160


def _layer_norm(m: _Builder, x: str, name: str, h: int) -> str:
    g = m.init(f"{name}.weight", np.ones(h, np.float32))
    b = m.init(f"{name}.bias", np.zeros(h, np.float32))
    return m.node("LayerNormalization", [x, g, b], name, axis=-1, epsilon=1e-5)


def _linear(m: _Builder, x: str, name: str, n_in: int, n_out: int, w: str | None = None) -> str:
    w = w or m.weight(f"{name}.weight", (n_in, n_out), n_in)
    mm = m.node("MatMul", [x, w], f"{name}.matmul")
    b = m.init(f"{name}.bias", (0.01 * m.rng.standard_normal(n_out)).astype(np.float32))
    return m.node("Add", [mm, b], name)


def _gelu(m: _Builder, x: str, name: str) -> str:
    """The exact (erf) GELU as exporters write it; ONNX Runtime fuses it into Gelu/BiasGelu."""
    sqrt2 = m.init(f"{name}.sqrt2", np.array(math.sqrt(2.0), np.float32))
    one = m.init(f"{name}.one", np.array(1.0, np.float32))
    half = m.init(f"{name}.half", np.array(0.5, np.float32))
    e = m.node("Erf", [m.node("Div", [x, sqrt2], f"{name}.div")], f"{name}.erf")
    y = m.node("Mul", [x, m.node("Add", [e, one], f"{name}.add")], f"{name}.mul")
    return m.node("Mul", [y, half], name)


def transformer_encoder_model(
    hidden: int = 64, heads: int = 4, ffn: int = 256, seed: int = 0
) -> bytes:
    """One pre-LayerNorm encoder block: ``hidden_states [batch, seq, H]`` -> same shape.

    MACs for batch B and sequence S: Q, K, V and output projections ``4·B·S·H²``, scores
    ``B·S·S·H``, context ``B·S·S·H``, feed-forward ``2·B·S·H·F``. With the defaults
    (H=64, F=256) and B=2, S=16: 524,288 + 32,768 + 32,768 + 1,048,576 = 1,638,400 MACs
    (``encoder_macs``).

    The first feed-forward weight is stored as float16 and cast (a constant subgraph), the
    second feed-forward bias comes from ConstantOfShape, the attention scale from a Constant node.
    """
    from onnx import TensorProto, helper

    hd = hidden // heads
    m = _Builder(seed)
    x = "hidden_states"
    ln1 = _layer_norm(m, x, "ln1", hidden)
    q, k, v = (_linear(m, ln1, f"attn.{p}", hidden, hidden) for p in "qkv")
    split = m.init("attn.split_shape", np.array([0, 0, heads, hd], np.int64))
    merge = m.init("attn.merge_shape", np.array([0, 0, hidden], np.int64))

    def heads_of(t: str, perm: list[int]) -> str:
        r = m.node("Reshape", [t, split], f"{t}.split")
        return m.node("Transpose", [r], f"{t}.heads", perm=perm)

    qh, kt, vh = heads_of(q, [0, 2, 1, 3]), heads_of(k, [0, 2, 3, 1]), heads_of(v, [0, 2, 1, 3])
    scores = m.node("MatMul", [qh, kt], "attn.scores")
    m.nodes.append(
        helper.make_node(
            "Constant",
            [],
            ["attn.scale"],
            name="attn.scale",
            value=helper.make_tensor("scale", TensorProto.FLOAT, [], [1.0 / math.sqrt(hd)]),
        )
    )
    scaled = m.node("Mul", [scores, "attn.scale"], "attn.scaled")
    probs = m.node("Softmax", [scaled], "attn.probs", axis=-1)
    ctx = m.node("MatMul", [probs, vh], "attn.context")
    ctx = m.node("Transpose", [ctx], "attn.context.t", perm=[0, 2, 1, 3])
    ctx = m.node("Reshape", [ctx, merge], "attn.context.merge")
    o = _linear(m, ctx, "attn.out", hidden, hidden)
    x1 = m.node("Add", [x, o], "residual1")
    ln2 = _layer_norm(m, x1, "ln2", hidden)
    w1h = m.init("ffn.up.weight_fp16", m.rng.standard_normal((hidden, ffn)).astype(np.float16))
    w1 = m.node("Cast", [w1h], "ffn.up.weight", to=TensorProto.FLOAT)
    h1 = _gelu(m, _linear(m, ln2, "ffn.up", hidden, ffn, w=w1), "ffn.gelu")
    w2 = m.weight("ffn.down.weight", (ffn, hidden), ffn)
    mm2 = m.node("MatMul", [h1, w2], "ffn.down.matmul")
    b2_shape = m.init("ffn.down.bias_shape", np.array([hidden], np.int64))
    b2 = m.node(
        "ConstantOfShape",
        [b2_shape],
        "ffn.down.bias",
        value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.01]),
    )
    h2 = m.node("Add", [mm2, b2], "ffn.down")
    m.node("Add", [x1, h2], "output")
    return m.finish(
        "transformer_encoder",
        [_vi("hidden_states", ["batch", "seq", hidden])],
        [_vi("output", ["batch", "seq", hidden])],
    )


def encoder_macs(batch: int, seq: int, hidden: int = 64, ffn: int = 256) -> int:
    b_s = batch * seq
    return 4 * b_s * hidden * hidden + 2 * b_s * seq * hidden + 2 * b_s * hidden * ffn


def gpt_decoder_model(
    layers: int = 2,
    hidden: int = 64,
    heads: int = 4,
    vocab: int = 256,
    max_positions: int = 256,
    seed: int = 0,
    attention_mask: bool = False,
) -> bytes:
    """A GPT-style decoder with a KV cache, named as Hugging Face / Optimum exports name it.

    Inputs: ``input_ids [batch, seq]`` (int64), with ``attention_mask=True`` then
    ``attention_mask [batch, total_seq]`` (int64, 0 hides a key: padding), and
    ``past_key_values.{i}.key`` and
    ``past_key_values.{i}.value`` ``[batch, heads, past_seq, head_dim]`` for each layer (an
    empty cache has ``past_seq = 0``). Outputs: ``logits [batch, seq, vocab]``,
    ``present.{i}.key`` / ``present.{i}.value`` ``[batch, heads, past_seq + seq, head_dim]``.

    Token and position embeddings (positions continue after the cache), pre-LN blocks with a
    causal mask offset by the cache length, a 4x GELU MLP, final LayerNorm, LM head. MACs: see
    ``decoder_macs``.
    """
    from onnx import TensorProto, helper

    if hidden % heads:
        raise ValueError("hidden must be a multiple of heads")
    hd = hidden // heads
    m = _Builder(seed)
    wte = m.init("wte", (0.02 * m.rng.standard_normal((vocab, hidden))).astype(np.float32))
    wpe = m.init("wpe", (0.02 * m.rng.standard_normal((max_positions, hidden))).astype(np.float32))
    emb = m.node("Gather", [wte, "input_ids"], "embed.tokens", axis=0)
    # Scalars throughout: ORT's constant deduplication can confuse a [1] index with a scalar 1.
    one = m.init("one_i64", np.array(1, np.int64))
    two = m.init("two_i64", np.array(2, np.int64))
    ids_shape = m.node("Shape", ["input_ids"], "input_ids.shape")
    past_shape = m.node("Shape", ["past_key_values.0.key"], "past.shape")
    s0 = m.node("Gather", [ids_shape, one], "seq_len", axis=0)
    p0 = m.node("Gather", [past_shape, two], "past_len", axis=0)
    t0 = m.node("Add", [p0, s0], "total_len")
    pos = m.node("Range", [p0, t0, one], "positions")
    x = m.node("Add", [emb, m.node("Gather", [wpe, pos], "embed.positions", axis=0)], "embed")
    # Causal mask [seq, total]: query i may see keys j <= past + i (Trilu with k = past).
    axes0 = m.init("axes0", np.array([0], np.int64))
    seq_1d = m.node("Unsqueeze", [s0, axes0], "seq_len.1d")
    total_1d = m.node("Unsqueeze", [t0, axes0], "total_len.1d")
    mask_shape = m.node("Concat", [seq_1d, total_1d], "mask.shape", axis=0)
    ones = m.node(
        "ConstantOfShape",
        [mask_shape],
        "mask.ones",
        value=helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0]),
    )
    allowed = m.node(
        "Cast", [m.node("Trilu", [ones, p0], "mask.tril", upper=0)], "mask", to=TensorProto.BOOL
    )
    inputs = [_vi("input_ids", ["batch", "seq"], TensorProto.INT64)]
    if attention_mask:
        # Padding: [batch, total] → [batch, 1, 1, total], and-ed with the causal [seq, total].
        keys = m.node("Cast", ["attention_mask"], "mask.keys", to=TensorProto.BOOL)
        axes12 = m.init("axes12", np.array([1, 2], np.int64))
        keys = m.node("Unsqueeze", [keys, axes12], "mask.keys.4d")
        allowed = m.node("And", [allowed, keys], "mask.padded")
        inputs.append(_vi("attention_mask", ["batch", "total_seq"], TensorProto.INT64))
    neg = m.init("mask.neg", np.array(-1e4, np.float32))
    split = m.init("split_shape", np.array([0, 0, heads, hd], np.int64))
    merge = m.init("merge_shape", np.array([0, 0, hidden], np.int64))
    scale = m.init("attn_scale", np.array(1.0 / math.sqrt(hd), np.float32))
    outputs = [_vi("logits", ["batch", "seq", vocab])]
    for i in range(layers):
        p = f"h.{i}"
        ln1 = _layer_norm(m, x, f"{p}.ln1", hidden)
        q, k, v = (_linear(m, ln1, f"{p}.attn.{n}", hidden, hidden) for n in "qkv")
        qh, kh, vh = (
            m.node(
                "Transpose",
                [m.node("Reshape", [t, split], f"{t}.split")],
                f"{t}.heads",
                perm=[0, 2, 1, 3],
            )
            for t in (q, k, v)
        )
        past_k, past_v = f"past_key_values.{i}.key", f"past_key_values.{i}.value"
        pres_k, pres_v = f"present.{i}.key", f"present.{i}.value"
        m.nodes.append(helper.make_node("Concat", [past_k, kh], [pres_k], name=pres_k, axis=2))
        m.nodes.append(helper.make_node("Concat", [past_v, vh], [pres_v], name=pres_v, axis=2))
        kt = m.node("Transpose", [pres_k], f"{p}.attn.keys_t", perm=[0, 1, 3, 2])
        s = m.node("Mul", [m.node("MatMul", [qh, kt], f"{p}.attn.scores"), scale], f"{p}.attn.sc")
        s = m.node("Where", [allowed, s, neg], f"{p}.attn.masked")
        probs = m.node("Softmax", [s], f"{p}.attn.probs", axis=-1)
        ctx = m.node("MatMul", [probs, pres_v], f"{p}.attn.context")
        ctx = m.node("Transpose", [ctx], f"{p}.attn.context.t", perm=[0, 2, 1, 3])
        ctx = m.node("Reshape", [ctx, merge], f"{p}.attn.context.merge")
        x = m.node("Add", [x, _linear(m, ctx, f"{p}.attn.out", hidden, hidden)], f"{p}.res1")
        ln2 = _layer_norm(m, x, f"{p}.ln2", hidden)
        up = _gelu(m, _linear(m, ln2, f"{p}.mlp.up", hidden, 4 * hidden), f"{p}.mlp.gelu")
        x = m.node("Add", [x, _linear(m, up, f"{p}.mlp.down", 4 * hidden, hidden)], f"{p}.res2")
        kv = ["batch", heads, "past_seq", hd]
        inputs += [_vi(past_k, kv), _vi(past_v, kv)]
        outputs += [_vi(pres_k, ["batch", heads, "total_seq", hd])]
        outputs += [_vi(pres_v, ["batch", heads, "total_seq", hd])]
    x = _layer_norm(m, x, "ln_f", hidden)
    head = m.weight("lm_head.weight", (hidden, vocab), hidden)
    m.node("MatMul", [x, head], "logits")
    return m.finish("gpt_decoder", inputs, outputs)


def decoder_macs(
    batch: int, seq: int, past: int, layers: int = 2, hidden: int = 64, vocab: int = 256
) -> int:
    b_s, total = batch * seq, past + seq
    per_layer = 4 * b_s * hidden * hidden + 2 * b_s * total * hidden + 2 * b_s * hidden * 4 * hidden
    return layers * per_layer + b_s * hidden * vocab


def control_flow_model(size: int = 16, trip_count: int = 3, seed: int = 0) -> bytes:
    """``x [1, size]`` and ``steps`` (int64 scalar) -> ``z [1, size]``.

    ``loop_fixed`` runs its body (MatMul ``size x size`` + Relu) ``trip_count`` times (a constant
    trip count); ``loop_steps`` runs a MatMul body ``steps`` times (known only at run time); the
    If multiplies by a ``size x size`` matrix when the sum is positive, else negates.
    MACs: ``size²`` per body MatMul and for the then-branch.
    """
    from onnx import TensorProto, helper

    m = _Builder(seed)
    w = m.weight("W", (size, size), size)
    w2 = m.weight("W2", (size, size), size)
    w3 = m.weight("W3", (size, size), size)
    m.init("trip_count", np.array(trip_count, np.int64))
    m.init("cond_true", np.array(True))
    m.init("zero", np.array(0.0, np.float32))

    def body(name: str, weight: str, relu: bool) -> Any:
        nodes = [
            helper.make_node("Identity", ["cond_in"], ["cond_out"], name=f"{name}.cond"),
            helper.make_node("MatMul", ["x_in", weight], [f"{name}.mm"], name=f"{name}.matmul"),
        ]
        out = f"{name}.mm"
        if relu:
            nodes.append(helper.make_node("Relu", [out], [f"{name}.out"], name=f"{name}.relu"))
            out = f"{name}.out"
        else:
            nodes.append(helper.make_node("Identity", [out], [f"{name}.out"], name=f"{name}.id"))
        return helper.make_graph(
            nodes,
            name,
            [
                helper.make_tensor_value_info("i", TensorProto.INT64, []),
                helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
                helper.make_tensor_value_info("x_in", TensorProto.FLOAT, [1, size]),
            ],
            [
                helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
                helper.make_tensor_value_info(f"{name}.out", TensorProto.FLOAT, [1, size]),
            ],
        )

    m.nodes.append(
        helper.make_node(
            "Loop",
            ["trip_count", "cond_true", "x"],
            ["loop_fixed"],
            name="loop_fixed",
            body=body("fixed_body", w, True),
        )
    )
    m.nodes.append(
        helper.make_node(
            "Loop",
            ["steps", "cond_true", "loop_fixed"],
            ["loop_steps"],
            name="loop_steps",
            body=body("steps_body", w2, False),
        )
    )
    s = m.node("ReduceSum", ["loop_steps"], "sum", keepdims=0)
    c = m.node("Greater", [s, "zero"], "positive")
    then_g = helper.make_graph(
        [helper.make_node("MatMul", ["loop_steps", w3], ["then_out"], name="then.matmul")],
        "then",
        [],
        [helper.make_tensor_value_info("then_out", TensorProto.FLOAT, [1, size])],
    )
    else_g = helper.make_graph(
        [helper.make_node("Neg", ["loop_steps"], ["else_out"], name="else.neg")],
        "else",
        [],
        [helper.make_tensor_value_info("else_out", TensorProto.FLOAT, [1, size])],
    )
    m.nodes.append(
        helper.make_node("If", [c], ["z"], name="branch", then_branch=then_g, else_branch=else_g)
    )
    return m.finish(
        "control_flow",
        [_vi("x", [1, size]), _vi("steps", [], TensorProto.INT64)],
        [_vi("z", [1, size])],
    )


def dynamic_dims_model(features: int = 32, hidden: int = 64, seed: int = 0) -> bytes:
    """``features [batch, seq, F]`` -> ``scores [batch, 10]``.

    MatMul ``F x hidden`` + bias + Relu per position, mean over ``seq``, then a flatten written
    as exporters do (Shape → Gather → Concat → Reshape, foldable once shapes are known), Gemm.
    MACs: ``batch·seq·F·hidden + batch·hidden·10``.
    """
    m = _Builder(seed)
    h = m.node("Relu", [_linear(m, "features", "proj", features, hidden)], "proj.relu")
    pooled = m.node("ReduceMean", [h], "pool", axes=[1], keepdims=1)  # [batch, 1, hidden]
    shape = m.node("Shape", [pooled], "pool.shape")
    batch = m.node("Gather", [shape, m.init("idx0", np.array([0], np.int64))], "batch", axis=0)
    target = m.node("Concat", [batch, m.init("minus1", np.array([-1], np.int64))], "target", axis=0)
    flat = m.node("Reshape", [pooled, target], "flat")
    w = m.weight("head.weight", (10, hidden), hidden)
    b = m.init("head.bias", np.zeros(10, np.float32))
    m.node("Gemm", [flat, w, b], "scores", transB=1)
    return m.finish(
        "dynamic_dims",
        [_vi("features", ["batch", "seq", features])],
        [_vi("scores", ["batch", 10])],
    )


# torchvision's ResNet family: (block, layers). Published (torchvision model zoo) figures:
# GMACs ("GFLOPS" in the zoo's table, which counts multiply-adds) and parameters.
RESNETS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
RESNET_PUBLISHED = {  # depth: (GMACs at 224x224, parameters)
    18: (1.81, 11_689_512),
    34: (3.66, 21_797_672),
    50: (4.09, 25_557_032),
    101: (7.80, 44_549_160),
    152: (11.51, 60_192_808),
}


def resnet_model(
    depth: int = 50, image_size: int = 224, classes: int = 1000, seed: int = 0
) -> bytes:
    """torchvision's ResNet (v1.5: stride on the 3x3 conv) with random weights:
    ``image [batch, 3, S, S]`` -> ``logits [batch, classes]``. Convolutions have no bias; every
    BatchNormalization carries scale, bias, mean and variance (the latter two are not
    parameters in torchvision's count)."""
    if depth not in RESNETS:
        raise ValueError(f"ResNet depth must be one of {sorted(RESNETS)}")
    kind, layers = RESNETS[depth]
    m = _Builder(seed)

    def conv_bn(x: str, name: str, c_in: int, c_out: int, k: int, stride: int, relu: bool) -> str:
        w = m.weight(f"{name}.weight", (c_out, c_in, k, k), c_in * k * k)
        y = m.node(
            "Conv", [x, w], name, kernel_shape=[k, k], strides=[stride] * 2, pads=[k // 2] * 4
        )
        bn = f"{name}.bn"
        ps = [
            m.init(f"{bn}.{p}", v.astype(np.float32))
            for p, v in (
                ("weight", np.ones(c_out)),
                ("bias", np.zeros(c_out)),
                ("running_mean", np.zeros(c_out)),
                ("running_var", np.ones(c_out)),
            )
        ]
        y = m.node("BatchNormalization", [y, *ps], bn, epsilon=1e-5)
        return m.node("Relu", [y], f"{name}.relu") if relu else y

    x = conv_bn("image", "conv1", 3, 64, 7, 2, True)
    x = m.node("MaxPool", [x], "maxpool", kernel_shape=[3, 3], strides=[2, 2], pads=[1] * 4)
    c_in = 64
    expansion = 1 if kind == "basic" else 4
    for stage, blocks in enumerate(layers):
        width = 64 * 2**stage
        for b in range(blocks):
            name = f"layer{stage + 1}.{b}"
            stride = 2 if (b == 0 and stage > 0) else 1
            if kind == "basic":
                y = conv_bn(x, f"{name}.conv1", c_in, width, 3, stride, True)
                y = conv_bn(y, f"{name}.conv2", width, width, 3, 1, False)
            else:
                y = conv_bn(x, f"{name}.conv1", c_in, width, 1, 1, True)
                y = conv_bn(y, f"{name}.conv2", width, width, 3, stride, True)
                y = conv_bn(y, f"{name}.conv3", width, width * 4, 1, 1, False)
            c_out = width * expansion
            skip = x
            if stride != 1 or c_in != c_out:
                skip = conv_bn(x, f"{name}.downsample", c_in, c_out, 1, stride, False)
            x = m.node("Relu", [m.node("Add", [y, skip], f"{name}.add")], f"{name}.relu")
            c_in = c_out
    x = m.node("Flatten", [m.node("GlobalAveragePool", [x], "avgpool")], "flatten", axis=1)
    fw = m.weight("fc.weight", (classes, c_in), c_in)
    fb = m.init("fc.bias", np.zeros(classes, np.float32))
    m.node("Gemm", [x, fw, fb], "logits", transB=1)
    return m.finish(
        f"resnet{depth}",
        [_vi("image", ["batch", 3, image_size, image_size])],
        [_vi("logits", ["batch", classes])],
    )


def save_with_external_data(model: bytes, path: Path, size_threshold: int = 1024) -> Path:
    """Write ``model`` to ``path`` with every initializer of ``size_threshold`` bytes or more in
    ``<path>.data`` (the layout of models over the 2 GB protobuf limit)."""
    import onnx

    proto = onnx.load_from_string(model)
    onnx.save_model(
        proto,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=path.name + ".data",
        size_threshold=size_threshold,
    )
    return path


def main(argv: list[str] | None = None) -> int:
    """Write the decoder (with ``attention_mask``) for ``ortel profile --generate``."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m ortel.analysis.testmodels")
    parser.add_argument("path", type=Path, help="where to write the decoder .onnx")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=64)
    args = parser.parse_args(argv)
    model = gpt_decoder_model(layers=args.layers, hidden=args.hidden, attention_mask=True)
    args.path.write_bytes(model)
    print(f"wrote {args.path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
