"""Profile a model with ONNX Runtime: generated inputs, the profiler on, the optimized graph saved.

The session runs with ``enable_profiling`` and ``optimized_model_filepath`` (initializers of the
saved graph go to an external file, so a model over 2 GB saves too): the trace's node names are
the saved graph's. Where the layout optimizer (NCHWc) renamed tensors, a second, extended-level
graph is saved so fused nodes can be traced back to the original ones (see ``mapping.py``).
Warm-up runs come first; measured runs continue until both ``runs`` and ``min_seconds`` are
reached, with the power collectors sampling throughout.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .energy import Power, PowerMeter
from .graph import Model

LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC",
          "extended": "ORT_ENABLE_EXTENDED", "layout": "ORT_ENABLE_LAYOUT",
          "all": "ORT_ENABLE_ALL"}  # fmt: skip
MAX_RUNS = 100_000
NP_DTYPES = {1: np.float32, 2: np.uint8, 3: np.int8, 4: np.uint16, 5: np.int16, 6: np.int32,
             7: np.int64, 9: np.bool_, 10: np.float16, 11: np.float64, 12: np.uint32,
             13: np.uint64}  # fmt: skip


class ProfileError(RuntimeError):
    """ONNX Runtime could not load or run the model."""


@dataclass
class ProfileRun:
    trace_path: Path
    optimized_path: Path
    extended_path: Path | None
    power: Power | None
    runs: int
    warmup_runs: int
    seconds: float
    providers: list[str]
    threads: int
    opt_level: str


def make_inputs(model: Model, seed: int = 0) -> dict[str, np.ndarray]:
    """One array per graph input, in the shapes the analysis resolved: floats from a standard
    normal, integers in [1, 10) (valid for any vocabulary or index, and a trip count or a
    length of 0 would run nothing), booleans at random."""
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    for name, shape in model.input_shapes.items():
        code = model.input_dtypes.get(name, 1)
        dtype = NP_DTYPES.get(code)
        if dtype is None:
            raise ProfileError(f"input {name}: cannot generate values of ONNX type {code}")
        if np.issubdtype(dtype, np.floating):
            feeds[name] = rng.standard_normal(shape).astype(dtype)
        elif dtype is np.bool_:
            feeds[name] = rng.random(shape) < 0.5
        else:
            feeds[name] = rng.integers(1, 10, size=shape).astype(dtype)
    return feeds


def _options(level: str, threads: int | None, out: Path, name: str, profile: bool) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, LEVELS[level])
    so.optimized_model_filepath = str(out / name)
    # Weights of the saved graph in a side file: the .onnx stays small (and can exceed 2 GB).
    so.add_session_config_entry(
        "session.optimized_model_external_initializers_file_name", name + ".data"
    )
    so.add_session_config_entry(
        "session.optimized_model_external_initializers_min_size_in_bytes", "1024"
    )
    so.log_severity_level = 3  # the NCHWc "hardware specific" warning is expected here
    if threads:
        so.intra_op_num_threads = threads
    if profile:
        so.enable_profiling = True
        so.profile_file_prefix = str(out / "ort_profile")
    return so


def _has_nchwc(path: Path) -> bool:
    import onnx

    try:
        m = onnx.load(str(path), load_external_data=False)
    except Exception:
        return False
    return any(n.domain == "com.microsoft.nchwc" for n in m.graph.node)


def profile(
    model_path: Path,
    model: Model,
    out: Path,
    *,
    runs: int = 10,
    warmup_runs: int = 1,
    min_seconds: float = 1.0,
    opt_level: str = "all",
    threads: int | None = None,
    providers: Sequence[str] | None = None,
    measure_power: bool = True,
    sysfs: Path = Path("/sys"),
    procfs: Path = Path("/proc"),
    progress: Callable[[int, int, float], None] | None = None,
) -> ProfileRun:
    """Run ``model_path`` under the profiler. ``progress(done, runs, elapsed)`` per run."""
    import onnxruntime as ort

    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("ort_profile*.json"):
        stale.unlink()
    providers = list(providers or ["CPUExecutionProvider"])
    so = _options(opt_level, threads, out, "optimized.onnx", True)
    try:
        sess = ort.InferenceSession(str(model_path), so, providers=providers)
    except Exception as e:
        raise ProfileError(f"ONNX Runtime cannot load the model: {_short(e)}") from None
    feeds = make_inputs(model)
    n_threads = threads or os.cpu_count() or 1
    meter = PowerMeter(sysfs, procfs, threads=n_threads) if measure_power else None
    done = 0
    t0 = time.perf_counter()
    try:
        for _ in range(warmup_runs):
            sess.run(None, feeds)
        if meter is not None:
            meter.start()
        t0 = time.perf_counter()
        while done < MAX_RUNS:
            sess.run(None, feeds)
            done += 1
            elapsed = time.perf_counter() - t0
            if progress is not None:
                progress(done, runs, elapsed)
            if done >= runs and elapsed >= min_seconds:
                break
    except Exception as e:
        raise ProfileError(f"ONNX Runtime cannot run the model: {_short(e)}") from None
    finally:
        if meter is not None:
            meter.stop()
    seconds = time.perf_counter() - t0
    trace = Path(sess.end_profiling())
    optimized = out / "optimized.onnx"
    extended = bridge_graph(model_path, optimized, out, threads, providers)
    return ProfileRun(
        trace,
        optimized,
        extended,
        meter.power() if meter is not None else None,
        done,
        warmup_runs,
        seconds,
        sess.get_providers(),
        n_threads,
        opt_level,
    )


def bridge_graph(
    model_path: Path,
    optimized: Path,
    out: Path,
    threads: int | None = None,
    providers: Sequence[str] | None = None,
) -> Path | None:
    """The extended-level graph, when ``optimized`` has NCHWc nodes (renamed tensors): the
    bridge that lets fused nodes be traced back to the original ones."""
    import onnxruntime as ort

    if not _has_nchwc(optimized):
        return None
    out.mkdir(parents=True, exist_ok=True)
    try:
        ort.InferenceSession(
            str(model_path),
            _options("extended", threads, out, "optimized_extended.onnx", False),
            providers=list(providers or ["CPUExecutionProvider"]),
        )
    except Exception as e:
        raise ProfileError(f"ONNX Runtime cannot load the model: {_short(e)}") from None
    return out / "optimized_extended.onnx"


def save_optimized(
    model_path: Path,
    out: Path,
    opt_level: str = "all",
    threads: int | None = None,
    providers: Sequence[str] | None = None,
) -> tuple[Path, Path | None]:
    """Only the optimized graph(s), for a trace recorded elsewhere."""
    import onnxruntime as ort

    out.mkdir(parents=True, exist_ok=True)
    providers = list(providers or ["CPUExecutionProvider"])
    try:
        so = _options(opt_level, threads, out, "optimized.onnx", False)
        ort.InferenceSession(str(model_path), so, providers=providers)
    except Exception as e:
        raise ProfileError(f"ONNX Runtime cannot load the model: {_short(e)}") from None
    optimized = out / "optimized.onnx"
    return optimized, bridge_graph(model_path, optimized, out, threads, providers)


def _short(e: BaseException) -> str:
    msg = str(e).strip().splitlines()
    return (msg[0] if msg else type(e).__name__)[:300]
