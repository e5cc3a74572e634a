"""A small GPT-style decoder with a KV cache, as ONNX, for the tests and the demo of
``ortel profile --generate``.

Naming follows the Hugging Face / Optimum export convention, the one most decoder exports use:

    inputs   input_ids [batch, sequence_length] int64
             attention_mask [batch, total_sequence_length] int64
             past_key_values.{i}.key / .value [batch, heads, past_sequence_length, head_dim]
    outputs  logits [batch, sequence_length, vocab]
             present.{i}.key / .value [batch, heads, total_sequence_length, head_dim]

Pre-norm transformer blocks (LayerNorm, causal multi-head attention over the cache plus the new
tokens, ReLU MLP), learned position embeddings offset by the cache length. Deterministic: the
same arguments always give the same bytes.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import numpy as np

from ortel.instrumentation.models import _finish


def gpt_decoder_model(
    vocab: int = 96,
    d_model: int = 64,
    heads: int = 4,
    layers: int = 2,
    max_positions: int = 512,
    seed: int = 0,
) -> bytes:
    """Serialized ModelProto of the decoder (about 0.1 M parameters with the defaults)."""
    from onnx import TensorProto, helper, numpy_helper

    if d_model % heads:
        raise ValueError("d_model must be a multiple of heads")
    hd = d_model // heads
    rng = np.random.default_rng(seed)
    nodes: list[Any] = []
    inits: list[Any] = []

    def init(name: str, a: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(a), name=name))
        return name

    def weight(name: str, shape: tuple[int, ...], scale: float = 0.02) -> str:
        return init(name, (rng.standard_normal(shape) * scale).astype(np.float32))

    def node(op: str, inputs: list[str], out: str, **attrs: Any) -> str:
        nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def layernorm(x: str, name: str) -> str:
        s = init(f"{name}.weight", np.ones(d_model, np.float32))
        b = init(f"{name}.bias", np.zeros(d_model, np.float32))
        return node("LayerNormalization", [x, s, b], name, axis=-1, epsilon=1e-5)

    def linear(x: str, name: str, n_in: int, n_out: int, bias: bool = True) -> str:
        y = node("MatMul", [x, weight(f"{name}.weight", (n_in, n_out))], f"{name}.matmul")
        if bias:
            y = node("Add", [y, init(f"{name}.bias", np.zeros(n_out, np.float32))], name)
        return y

    i64 = lambda name, v: init(name, np.array(v, dtype=np.int64))  # noqa: E731
    one, zero = i64("const.one", 1), i64("const.zero", 0)
    split = i64("const.split", [d_model] * 3)
    to_heads = i64("const.to_heads", [0, 0, heads, hd])
    from_heads = i64("const.from_heads", [0, 0, d_model])
    axis0, axis1, axis12 = (
        i64("const.axis0", [0]),
        i64("const.axis1", [1]),
        i64("const.ax12", [1, 2]),
    )
    scale = init("const.scale", np.array(1 / math.sqrt(hd), np.float32))
    neg = init("const.neg", np.array(-1e9, np.float32))
    zf = init("const.zerof", np.array(0.0, np.float32))

    # Positions past .. past+seq-1: the cache length is dimension 2 of any past tensor.
    seq = node("Squeeze", [node("Shape", ["input_ids"], "seq.shape", start=1, end=2)], "seq")
    past = node(
        "Squeeze",
        [node("Shape", ["past_key_values.0.key"], "past.shape", start=2, end=3)],
        "past",
    )
    total = node("Add", [past, seq], "total")
    pos = node("Range", [past, total, one], "positions")
    keys = node("Range", [zero, total, one], "key_positions")
    h = node(
        "Add",
        [
            node("Gather", [weight("wte", (vocab, d_model)), "input_ids"], "tok_emb"),
            node("Gather", [weight("wpe", (max_positions, d_model)), pos], "pos_emb"),
        ],
        "embed",
    )
    # Causal and padding mask as an additive bias [batch, 1, seq, total].
    causal = node(
        "LessOrEqual",
        [node("Unsqueeze", [keys, axis0], "k_row"), node("Unsqueeze", [pos, axis1], "q_col")],
        "causal",
    )
    padding = node(
        "Unsqueeze",
        [node("Cast", ["attention_mask"], "mask.bool", to=TensorProto.BOOL), axis12],
        "mask.keys",
    )
    allowed = node("And", [causal, padding], "allowed")
    bias = node("Where", [allowed, zf, neg], "attn_bias")

    present: list[str] = []
    for i in range(layers):
        p = f"h.{i}"
        x = layernorm(h, f"{p}.ln_1")
        qkv = linear(x, f"{p}.attn.qkv", d_model, 3 * d_model)
        q, k, v = (f"{p}.attn.{n}" for n in "qkv")
        nodes.append(helper.make_node("Split", [qkv, split], [q, k, v], name=f"{p}.split", axis=-1))

        def heads_first(t: str, p: str = p) -> str:
            r = node("Reshape", [t, to_heads], f"{t}.heads")
            return node("Transpose", [r], f"{t}.bhsd", perm=[0, 2, 1, 3])

        kp = node(
            "Concat", [f"past_key_values.{i}.key", heads_first(k)], f"present.{i}.key", axis=2
        )
        vp = node(
            "Concat", [f"past_key_values.{i}.value", heads_first(v)], f"present.{i}.value", axis=2
        )
        present += [kp, vp]
        kt = node("Transpose", [kp], f"{p}.attn.kT", perm=[0, 1, 3, 2])
        scores = node("MatMul", [heads_first(q), kt], f"{p}.attn.scores")
        scores = node(
            "Add", [node("Mul", [scores, scale], f"{p}.attn.scaled"), bias], f"{p}.attn.masked"
        )
        probs = node("Softmax", [scores], f"{p}.attn.probs", axis=-1)
        ctx = node("MatMul", [probs, vp], f"{p}.attn.ctx")
        ctx = node("Transpose", [ctx], f"{p}.attn.ctx.bshd", perm=[0, 2, 1, 3])
        ctx = node("Reshape", [ctx, from_heads], f"{p}.attn.merged")
        h = node("Add", [h, linear(ctx, f"{p}.attn.proj", d_model, d_model)], f"{p}.resid1")
        x = layernorm(h, f"{p}.ln_2")
        m = node("Relu", [linear(x, f"{p}.mlp.fc", d_model, 4 * d_model)], f"{p}.mlp.relu")
        h = node("Add", [h, linear(m, f"{p}.mlp.proj", 4 * d_model, d_model)], f"{p}.resid2")
    h = layernorm(h, "ln_f")
    nodes.append(
        helper.make_node(
            "MatMul", [h, weight("lm_head", (d_model, vocab))], ["logits"], name="lm_head"
        )
    )

    f32 = TensorProto.FLOAT
    cache = ["batch", heads, "past_sequence_length", hd]
    inputs = [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence_length"]),
        helper.make_tensor_value_info(
            "attention_mask", TensorProto.INT64, ["batch", "total_sequence_length"]
        ),
    ]
    outputs = [helper.make_tensor_value_info("logits", f32, ["batch", "sequence_length", vocab])]
    for i in range(layers):
        for kind in ("key", "value"):
            inputs.append(helper.make_tensor_value_info(f"past_key_values.{i}.{kind}", f32, cache))
            outputs.append(
                helper.make_tensor_value_info(
                    f"present.{i}.{kind}", f32, ["batch", heads, "total_sequence_length", hd]
                )
            )
    graph = helper.make_graph(nodes, "gpt_decoder", inputs, outputs, initializer=inits)
    return _finish(graph)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ortel.profiling.testmodels")
    parser.add_argument("path", type=Path, help="where to write the decoder .onnx")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--d-model", type=int, default=64)
    args = parser.parse_args(argv)
    args.path.write_bytes(gpt_decoder_model(layers=args.layers, d_model=args.d_model))
    print(f"wrote {args.path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
