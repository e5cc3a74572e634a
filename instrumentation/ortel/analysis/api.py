"""The narrow entry point for other ortel packages: analyse a profile ORT already recorded.

``ortel profile`` records an ONNX Runtime trace of its own measured pass; this turns it into the
``ortel analyze`` summary and HTML report without the caller knowing how the graphs are loaded,
mapped and costed. onnx and onnxruntime load only when it runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .analyze import analyze
from .energy import Power
from .graph import load_model
from .hostinfo import HostInfoCache, host_info
from .mapping import map_models
from .profile_run import save_optimized
from .report import render_html
from .roofline import Roof
from .trace import parse_trace


def analyze_trace(
    model_path: Path,
    trace_path: Path,
    workdir: Path,
    *,
    shapes: dict[str, Sequence[int]] | None = None,
    power: Power | tuple[float, str, str] | None = None,
    threads: int | None = None,
    providers: Sequence[str] = ("CPUExecutionProvider",),
    warmup_runs: int = 0,
    hostinfo_cache: HostInfoCache | None = None,
    title: str | None = None,
) -> tuple[dict[str, Any], str]:
    """``(summary, html)`` of ``ortel analyze`` for ``trace_path``, a profile of ``model_path``.

    ``power`` is a ``Power`` or ``(watts, source, detail)``; None leaves energy unknown. The
    roofline is the host's, measured once and cached (``ortel hostinfo``). The optimized graph is
    saved under ``workdir``. Errors propagate: the caller decides whether they are fatal.
    """
    original = load_model(model_path, {k: tuple(v) for k, v in (shapes or {}).items()})
    opt_path, ext_path = save_optimized(model_path, workdir, "all", threads, list(providers))
    optimized = load_model(opt_path, dict(original.input_shapes))
    extended = load_model(ext_path, dict(original.input_shapes)) if ext_path else None
    mapping = map_models(original.graph, optimized.graph, extended.graph if extended else None)
    trace = parse_trace(trace_path, warmup_runs=warmup_runs)
    info, how = host_info(hostinfo_cache)
    roof = Roof(info.peak_flops, info.mem_bw, how)
    if isinstance(power, tuple):
        power = Power(*power)
    a = analyze(original, optimized, trace, roof, power, mapping)
    return a.summary, render_html(a, title or Path(model_path).name)
