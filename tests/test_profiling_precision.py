"""Precision variants (fp16 conversion, int8 dynamic quantization) and their accuracy cost."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from ortel.instrumentation.models import add_model, cnn_model, mlp_model
from ortel.profiling import precision as prec


def test_parse_puts_fp32_first_and_dedups():
    assert prec.parse("int8,fp16,fp32,int8") == ["fp32", "int8", "fp16"]
    with pytest.raises(ValueError, match="unknown precision"):
        prec.parse("fp8")
    with pytest.raises(ValueError):
        prec.parse(",")


@pytest.fixture
def mlp(tmp_path: Path) -> Path:
    p = tmp_path / "mlp.onnx"
    p.write_bytes(mlp_model())
    return p


def test_fp32_is_the_model_itself(mlp: Path, tmp_path: Path):
    assert prec.convert(mlp, "fp32", tmp_path) == mlp


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_variants_load_run_and_stay_close(mlp: Path, tmp_path: Path, precision: str):
    out = prec.convert(mlp, precision, tmp_path)
    assert out != mlp and out.is_file()
    x = np.random.default_rng(0).standard_normal((8, 64)).astype(np.float32)
    ref = ort.InferenceSession(str(mlp)).run(None, {"input": x})
    got = ort.InferenceSession(str(out)).run(None, {"input": x})  # float32 in and out
    acc = prec.accuracy(ref, got)
    assert 0 < acc["max_abs_diff"] < 0.05
    assert 0.999 < acc["cosine"] <= 1.0
    assert acc["non_finite"] is False


def test_weight_bytes_shrink_with_precision(tmp_path: Path):
    p = tmp_path / "cnn.onnx"
    p.write_bytes(cnn_model())
    fp32 = prec.weight_bytes(p)
    fp16 = prec.weight_bytes(prec.convert(p, "fp16", tmp_path))
    int8 = prec.weight_bytes(prec.convert(p, "int8", tmp_path))
    assert fp16 < 0.6 * fp32
    assert int8 < 0.6 * fp32


def test_a_conversion_failure_is_this_variants_error(tmp_path: Path):
    p = tmp_path / "broken.onnx"
    p.write_bytes(b"garbage")
    with pytest.raises(prec.PrecisionError, match="int8 conversion failed"):
        prec.convert(p, "int8", tmp_path)


def test_quantizing_a_model_without_weights_still_gives_a_model(tmp_path: Path):
    p = tmp_path / "add.onnx"
    p.write_bytes(add_model())
    out = prec.convert(p, "int8", tmp_path)
    ort.InferenceSession(str(out))


def test_accuracy_flags_a_broken_variant():
    ref = [np.array([1.0, 2.0, 3.0])]
    assert prec.accuracy(ref, [np.array([1.0, np.nan, 3.0])])["non_finite"] is True
    drift = prec.accuracy(ref, [np.array([3.0, 2.0, 1.0])])
    assert drift["max_abs_diff"] == 2.0
    assert drift["cosine"] == pytest.approx(10 / 14)


def test_accuracy_takes_the_worst_output_and_checks_shapes():
    ref = [np.ones(4), np.array([1.0, 0.0])]
    got = [np.ones(4), np.array([0.0, 1.0])]
    assert prec.accuracy(ref, got)["cosine"] == 0.0
    with pytest.raises(ValueError):
        prec.accuracy([np.ones(3)], [np.ones(4)])


def test_cosine_of_zero_vectors():
    assert prec.cosine(np.zeros(3), np.zeros(3)) == 1.0
    assert prec.cosine(np.zeros(3), np.ones(3)) == 0.0
