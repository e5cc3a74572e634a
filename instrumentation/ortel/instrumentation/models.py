"""Builders of small, real ONNX models used by the demo, the tests and the benchmarks.

Every builder is deterministic (fixed seed, fixed producer, no timestamps) and returns the
serialized ``ModelProto`` as ``bytes``, so the same call always yields the same bytes.  ``onnx`` is
imported inside the functions: the shim must stay importable where only onnxruntime is installed.

Regenerate the committed demo model with::

    python -m ortel.instrumentation.models --write-demo
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover - typing only
    from onnx import ModelProto, NodeProto, TensorProto

OPSET = 17
# IR 8 is what opset 17 shipped with; onnxruntime >= 1.16 loads it.
IR_VERSION = 8
PRODUCER_NAME = "ortel.models"
PRODUCER_VERSION = "1"

DEMO_MODEL_PATH = Path(__file__).parent / "data" / "demo_mlp.onnx"


def _finish(graph: Any) -> bytes:
    """Wrap ``graph`` in a checked model with fixed metadata and serialize it."""
    import onnx
    from onnx import helper

    model: ModelProto = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name=PRODUCER_NAME,
        producer_version=PRODUCER_VERSION,
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _init(name: str, array: np.ndarray) -> TensorProto:
    from onnx import numpy_helper

    return numpy_helper.from_array(np.ascontiguousarray(array, dtype=np.float32), name=name)


def _he(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int) -> np.ndarray:
    # He-scaled weights keep activations in a sane range, so outputs are not all-zero or NaN.
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)


def add_model() -> bytes:
    """One ``Add`` node: ``z = x + y`` on float32 ``[1, 16]``; the cheapest real ORT run."""
    from onnx import TensorProto, helper

    shape = [1, 16]
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "y"], ["z"], name="add")],
        "add",
        inputs=[
            helper.make_tensor_value_info("x", TensorProto.FLOAT, shape),
            helper.make_tensor_value_info("y", TensorProto.FLOAT, shape),
        ],
        outputs=[helper.make_tensor_value_info("z", TensorProto.FLOAT, shape)],
    )
    return _finish(graph)


def mlp_model(
    in_features: int = 64, hidden: int = 128, out_features: int = 10, seed: int = 0
) -> bytes:
    """The demo model: ``input [batch, in_features]`` -> 3 Gemms with Relu -> Softmax
    ``probabilities [batch, out_features]``."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(seed)
    sizes = [in_features, hidden, hidden, out_features]
    nodes: list[NodeProto] = []
    inits: list[TensorProto] = []
    x = "input"
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        w, b, y = f"fc{i}.weight", f"fc{i}.bias", f"fc{i}"
        # transB=1 stores weights as [out, in], the PyTorch Linear layout.
        inits += [_init(w, _he(rng, (n_out, n_in), n_in)), _init(b, np.zeros(n_out))]
        nodes.append(helper.make_node("Gemm", [x, w, b], [y], name=y, transB=1))
        x = y
        if i < len(sizes) - 2:
            nodes.append(helper.make_node("Relu", [y], [f"{y}.relu"], name=f"{y}.relu"))
            x = f"{y}.relu"
    nodes.append(helper.make_node("Softmax", [x], ["probabilities"], name="softmax", axis=-1))
    graph = helper.make_graph(
        nodes,
        "mlp",
        inputs=[helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", in_features])],
        outputs=[
            helper.make_tensor_value_info(
                "probabilities", TensorProto.FLOAT, ["batch", out_features]
            )
        ],
        initializer=inits,
    )
    return _finish(graph)


class _CnnBuilder:
    """Accumulates nodes and initializers so each layer is one short call."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[NodeProto] = []
        self.inits: list[TensorProto] = []

    def node(self, op: str, inputs: list[str], name: str, **attrs: Any) -> str:
        from onnx import helper

        self.nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        return name

    def conv(self, x: str, name: str, c_in: int, c_out: int, k: int, stride: int = 1) -> str:
        w, b = f"{name}.weight", f"{name}.bias"
        self.inits += [
            _init(w, _he(self.rng, (c_out, c_in, k, k), c_in * k * k)),
            _init(b, np.zeros(c_out)),
        ]
        pad = k // 2
        return self.node(
            "Conv", [x, w, b], name, kernel_shape=[k, k], strides=[stride] * 2, pads=[pad] * 4
        )

    def batchnorm(self, x: str, name: str, c: int) -> str:
        # Non-trivial running stats so the op is not folded into an identity.
        params = {
            "scale": 1.0 + 0.1 * self.rng.standard_normal(c),
            "bias": 0.1 * self.rng.standard_normal(c),
            "mean": 0.1 * self.rng.standard_normal(c),
            "var": 1.0 + 0.1 * np.abs(self.rng.standard_normal(c)),
        }
        names = [f"{name}.{k}" for k in params]
        self.inits += [_init(n, v) for n, v in zip(names, params.values(), strict=True)]
        return self.node("BatchNormalization", [x, *names], name, epsilon=1e-5)

    def relu(self, x: str) -> str:
        return self.node("Relu", [x], f"{x}.relu")


def cnn_model(seed: int = 0) -> bytes:
    """A small real CNN: ``image [batch, 3, 64, 64]`` -> ``probabilities [batch, 10]``.

    Conv+Relu, strided Conv+BN+Relu, one residual block, MaxPool, 1x1 Conv, global average
    pool, Gemm and Softmax: about 50 MFLOP, roughly a millisecond on one CPU core.
    """
    from onnx import TensorProto, helper

    m = _CnnBuilder(seed)
    x = m.relu(m.conv("image", "conv1", 3, 16, 3))  # 16 x 64 x 64
    x = m.relu(m.batchnorm(m.conv(x, "conv2", 16, 32, 3, stride=2), "bn2", 32))  # 32 x 32 x 32
    skip = x
    x = m.relu(m.conv(x, "res.conv1", 32, 32, 3))
    x = m.conv(x, "res.conv2", 32, 32, 3)
    x = m.relu(m.node("Add", [x, skip], "res.add"))
    x = m.node("MaxPool", [x], "pool", kernel_shape=[2, 2], strides=[2, 2])  # 32 x 16 x 16
    x = m.relu(m.conv(x, "conv3", 32, 64, 1))  # 64 x 16 x 16
    x = m.node("GlobalAveragePool", [x], "gap")
    x = m.node("Flatten", [x], "flatten", axis=1)  # [batch, 64]
    m.inits += [_init("fc.weight", _he(m.rng, (10, 64), 64)), _init("fc.bias", np.zeros(10))]
    x = m.node("Gemm", [x, "fc.weight", "fc.bias"], "logits", transB=1)
    m.node("Softmax", [x], "probabilities", axis=-1)
    graph = helper.make_graph(
        m.nodes,
        "cnn",
        inputs=[helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 64, 64])],
        outputs=[helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 10])],
        initializer=m.inits,
    )
    return _finish(graph)


def write_demo(path: Path = DEMO_MODEL_PATH) -> Path:
    """Write ``mlp_model()`` to ``path`` (the committed package data file by default)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(mlp_model())
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ortel.instrumentation.models")
    parser.add_argument(
        "--write-demo", action="store_true", help=f"regenerate {DEMO_MODEL_PATH.name}"
    )
    parser.add_argument("--path", type=Path, default=DEMO_MODEL_PATH, help="where to write it")
    args = parser.parse_args(argv)
    if not args.write_demo:
        parser.print_help()
        return 2
    out = write_demo(args.path)
    print(f"wrote {out} ({out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
