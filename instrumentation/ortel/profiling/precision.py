"""Precision variants of a model and what they cost in accuracy.

fp16: every float initializer and computation converted with onnxruntime's own converter
(``onnxruntime.transformers.float16``), inputs and outputs kept float32 so the same feeds work.
int8: onnxruntime's dynamic quantization (int8 weights, activations quantized at run time).
Accuracy is measured, never assumed: the variant's outputs on the same inputs against the fp32
reference, as the largest absolute difference and the cosine similarity.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

PRECISIONS = ("fp32", "fp16", "int8")


class PrecisionError(RuntimeError):
    """A precision variant could not be built from this model."""


def parse(spec: str) -> list[str]:
    out: list[str] = []
    for p in filter(None, (s.strip().lower() for s in spec.split(","))):
        if p not in PRECISIONS:
            raise ValueError(f"--precision: unknown precision {p!r} (choose from fp32, fp16, int8)")
        if p not in out:
            out.append(p)
    if not out:
        raise ValueError("--precision: nothing to run")
    out.sort(key=lambda p: p != "fp32")  # fp32 first: the reference
    return out


def convert(model: Path, precision: str, workdir: Path) -> Path:
    """The model file for ``precision`` (the original for fp32), written under ``workdir``."""
    if precision == "fp32":
        return model
    out = workdir / f"{model.stem}.{precision}.onnx"
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the converters log advice on the root logger
    try:
        if precision == "fp16":
            import onnx
            from onnxruntime.transformers.float16 import convert_float_to_float16

            m = onnx.load(str(model))
            m16 = convert_float_to_float16(m, keep_io_types=True)
            large = m16.ByteSize() > 1_800_000_000  # protobuf's 2 GB limit
            onnx.save_model(m16, str(out), save_as_external_data=large)
        elif precision == "int8":
            from onnxruntime.quantization import QuantType, quantize_dynamic

            quantize_dynamic(str(model), str(out), weight_type=QuantType.QInt8)
        else:
            raise PrecisionError(f"unknown precision {precision}")
    except PrecisionError:
        raise
    except Exception as e:  # converter failures are this variant's failure, not the run's
        why = (str(e).strip() or type(e).__name__).splitlines()[0][:300]
        raise PrecisionError(f"{precision} conversion failed: {why}") from None
    finally:
        root.setLevel(level)
    return out


def weight_bytes(model: Path) -> int | None:
    """Bytes of the model's initializers (its weights), None without the onnx package."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        return None
    m = onnx.load(str(model))
    total = 0
    for t in m.graph.initializer:
        total += numpy_helper.to_array(t).nbytes
    return total


def accuracy(
    reference: Sequence[np.ndarray], outputs: Sequence[np.ndarray]
) -> dict[str, float | bool | None]:
    """Largest absolute difference and lowest cosine similarity over all outputs; both None (and
    ``non_finite`` True) when the variant produced NaN or infinity where the reference did not."""
    if len(reference) != len(outputs):
        raise ValueError("different numbers of outputs")
    max_diff, cos = 0.0, 1.0
    for r, o in zip(reference, outputs):
        r64 = np.asarray(r, dtype=np.float64).ravel()
        o64 = np.asarray(o, dtype=np.float64).ravel()
        if r64.shape != o64.shape:
            raise ValueError(f"output shapes differ: {np.shape(r)} vs {np.shape(o)}")
        if not r64.size:
            continue
        if not np.isfinite(o64).all() and np.isfinite(r64).all():
            return {"max_abs_diff": None, "cosine": None, "non_finite": True}
        ok = np.isfinite(r64) & np.isfinite(o64)
        r64, o64 = r64[ok], o64[ok]
        if r64.size:
            max_diff = max(max_diff, float(np.max(np.abs(r64 - o64))))
            cos = min(cos, cosine(r64, o64))
    return {"max_abs_diff": max_diff, "cosine": cos, "non_finite": False}


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0 or nb == 0:
        return 1.0 if na == nb else 0.0
    return float(np.dot(a, b) / (na * nb))
