"""The model builders produce valid, deterministic models that onnxruntime runs."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from ortel.instrumentation import models

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

BUILDERS: dict[str, Callable[[], bytes]] = {
    "add": models.add_model,
    "mlp": models.mlp_model,
    "cnn": models.cnn_model,
}


def _session(model: bytes) -> ort.InferenceSession:
    return ort.InferenceSession(model, providers=["CPUExecutionProvider"])


def _rand(*shape: int) -> np.ndarray:
    return np.random.default_rng(1).standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("name", BUILDERS)
def test_checker_passes_and_metadata_is_fixed(name: str) -> None:
    model = onnx.load_from_string(BUILDERS[name]())
    onnx.checker.check_model(model, full_check=True)
    assert model.ir_version == models.IR_VERSION
    assert [(o.domain, o.version) for o in model.opset_import] == [("", models.OPSET)]
    assert model.producer_name == models.PRODUCER_NAME


@pytest.mark.parametrize("name", BUILDERS)
def test_builders_are_deterministic(name: str) -> None:
    assert BUILDERS[name]() == BUILDERS[name]()


def test_add_model_runs() -> None:
    x, y = _rand(1, 16), np.ones((1, 16), np.float32)
    (z,) = _session(models.add_model()).run(None, {"x": x, "y": y})
    np.testing.assert_allclose(z, x + y)


@pytest.mark.parametrize("batch", [1, 4])
def test_mlp_model_runs_with_dynamic_batch(batch: int) -> None:
    sess = _session(models.mlp_model())
    assert [i.name for i in sess.get_inputs()] == ["input"]
    assert sess.get_inputs()[0].shape == ["batch", 64]
    (probs,) = sess.run(["probabilities"], {"input": _rand(batch, 64)})
    assert probs.shape == (batch, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_mlp_model_respects_sizes() -> None:
    sess = _session(models.mlp_model(in_features=8, hidden=16, out_features=3, seed=5))
    (probs,) = sess.run(None, {"input": _rand(2, 8)})
    assert probs.shape == (2, 3)


def test_mlp_seed_changes_weights() -> None:
    assert models.mlp_model(seed=0) != models.mlp_model(seed=1)


@pytest.mark.parametrize("batch", [1, 4])
def test_cnn_model_runs_with_dynamic_batch(batch: int) -> None:
    sess = _session(models.cnn_model())
    assert sess.get_inputs()[0].name == "image"
    assert sess.get_inputs()[0].shape == ["batch", 3, 64, 64]
    (probs,) = sess.run(["probabilities"], {"image": _rand(batch, 3, 64, 64)})
    assert probs.shape == (batch, 10)
    assert np.isfinite(probs).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_committed_demo_model_is_not_stale() -> None:
    # Regenerate with `python -m ortel.instrumentation.models --write-demo` if this fails.
    assert models.DEMO_MODEL_PATH.is_file()
    assert models.DEMO_MODEL_PATH.read_bytes() == models.mlp_model()
    assert models.DEMO_MODEL_PATH.stat().st_size < 200_000


def test_write_demo_cli(tmp_path) -> None:
    out = tmp_path / "nested" / "demo.onnx"
    assert models.main(["--write-demo", "--path", str(out)]) == 0
    assert out.read_bytes() == models.mlp_model()


def test_module_imports_without_onnx() -> None:
    # The shim may load this module where only onnxruntime is installed.
    import subprocess
    import sys

    code = "import sys; sys.modules['onnx'] = None; import ortel.instrumentation.models"
    subprocess.run([sys.executable, "-c", code], check=True)
