"""Helpers shared by the ``test_analysis_*`` modules: write test models, record real profiles."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write(tmp: Path, name: str, model: bytes) -> Path:
    p = tmp / f"{name}.onnx"
    p.write_bytes(model)
    return p


def record_trace(
    model: bytes | Path,
    feeds: dict[str, np.ndarray],
    out: Path,
    runs: int = 3,
    level: str = "ORT_ENABLE_ALL",
    optimized: Path | None = None,
) -> Path:
    """Run ``model`` ``runs`` times under ONNX Runtime's profiler; the profile's path."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.enable_profiling = True
    so.profile_file_prefix = str(out / "prof")
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    so.log_severity_level = 3
    if optimized is not None:
        so.optimized_model_filepath = str(optimized)
    src = str(model) if isinstance(model, Path) else model
    sess = ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])
    for _ in range(runs):
        sess.run(None, feeds)
    return Path(sess.end_profiling())


def image(shape: tuple[int, ...] = (1, 3, 64, 64)) -> dict[str, np.ndarray]:
    return {"image": np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
