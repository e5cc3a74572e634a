"""Execution providers: which to run, and sessions on them that fail loudly, not silently.

onnxruntime quietly falls back to CPU when a provider cannot be used. A benchmark must not: a
session whose first provider is not the one asked for is a failure of that provider, reported
with its reason, and the run goes on with the others.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter_ns
from typing import Any

CPU = "CPUExecutionProvider"
# Providers that do not run the model on a local device: benchmarking them measures a network.
NOT_LOCAL = {"AzureExecutionProvider": "runs models on a remote endpoint, not a local device"}
# Short names accepted on the command line (case-insensitive).
ALIASES = {
    "cpu": CPU,
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "directml": "DmlExecutionProvider",
    "dml": "DmlExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "qnn": "QNNExecutionProvider",
    "rocm": "ROCMExecutionProvider",
    "migraphx": "MIGraphXExecutionProvider",
    "webgpu": "WebGpuExecutionProvider",
    "xnnpack": "XnnpackExecutionProvider",
    "dnnl": "DnnlExecutionProvider",
    "acl": "ACLExecutionProvider",
    "nnapi": "NnapiExecutionProvider",
}
# What a provider needs behind it to load (TensorRT hands unsupported nodes to CUDA).
FALLBACKS = {"TensorrtExecutionProvider": ["CUDAExecutionProvider"]}


class ProviderError(RuntimeError):
    """A provider could not run the model; the message says why."""


def short_name(provider: str) -> str:
    return provider.removesuffix("ExecutionProvider")


@dataclass(frozen=True)
class Selection:
    providers: list[str]  # to run, the reference (CPU when present) first
    skipped: list[tuple[str, str]]  # (provider, why) left out of "all"


def select(spec: str, available: Sequence[str] | None = None) -> Selection:
    """``all`` or a comma list of provider names or short aliases. Unknown names are an error;
    known providers missing from this onnxruntime build are kept (they fail at load, reported)."""
    import onnxruntime as ort

    available = list(ort.get_available_providers() if available is None else available)
    known = set(ort.get_all_providers()) | set(available)
    if spec.strip().lower() == "all":
        skipped = [(p, NOT_LOCAL[p]) for p in available if p in NOT_LOCAL]
        chosen = [p for p in available if p not in NOT_LOCAL]
    else:
        chosen, skipped = [], []
        for raw in filter(None, (s.strip() for s in spec.split(","))):
            name = ALIASES.get(raw.lower(), raw)
            if name not in known:
                short = ", ".join(sorted(ALIASES))
                raise ValueError(f"--providers: unknown provider {raw!r} (try all, or {short})")
            if name not in chosen:
                chosen.append(name)
    if not chosen:
        raise ValueError("--providers: no provider to run")
    chosen.sort(key=lambda p: p != CPU)  # CPU first: everything is compared against it
    return Selection(chosen, skipped)


def make_session(
    model: Path | bytes,
    provider: str,
    *,
    threads: int | None = None,
    profile_prefix: Path | None = None,
) -> tuple[Any, float]:
    """A session whose first provider is ``provider``, and the seconds it took to create (model
    load and graph compilation). Raises ProviderError with onnxruntime's reason otherwise."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
    if profile_prefix is not None:
        so.enable_profiling = True
        so.profile_file_prefix = str(profile_prefix)
    so.log_severity_level = 3  # onnxruntime's own warnings would garble the progress display
    chain = [provider, *FALLBACKS.get(provider, [])]
    if provider != CPU:
        chain.append(CPU)
    src = model if isinstance(model, bytes) else str(model)
    t0 = perf_counter_ns()
    try:
        with warnings.catch_warnings():  # a missing provider is checked for below, and said
            warnings.simplefilter("ignore")
            session = ort.InferenceSession(src, sess_options=so, providers=chain)
    except Exception as e:  # onnxruntime raises several types; all mean "cannot load here"
        raise ProviderError(_first_line(e)) from None
    seconds = (perf_counter_ns() - t0) * 1e-9
    got = session.get_providers()
    if not got or got[0] != provider:
        raise ProviderError(
            f"onnxruntime fell back to {', '.join(got) or 'nothing'} (is {short_name(provider)} "
            "installed and its device present?)"
        )
    return session, seconds


def _first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0][:500]
