"""One profiled pass: onnxruntime's own per-node timings and memory, for the operator section.

A separate session with ``enable_profiling`` runs a few warm-up inferences and then ``runs``
measured ones; the trace's node events are assigned to the ``model_run`` that contains them and
the warm-up runs are dropped. Profiling slows every node down a little, which is why this pass is
kept apart from the latency measurements. The trace file is kept for ``ortel analyze``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

KERNEL_SUFFIX = "_kernel_time"


@dataclass
class OpRow:
    node: str
    op_type: str
    provider: str
    calls: int
    total_seconds: float
    mean_seconds: float
    share: float  # of the summed node medians: one preempted run cannot dominate it
    median_seconds: float = 0.0
    output_bytes: int | None = None
    activation_bytes: int | None = None
    parameter_bytes: int | None = None


@dataclass
class OperatorProfile:
    runs: int  # measured runs the rows cover
    run_seconds_mean: float | None  # onnxruntime's model_run duration, mean over those runs
    nodes: list[OpRow] = field(default_factory=list)
    arena_held_bytes: int | None = None  # largest arena size seen (None: not in this trace)
    arena_peak_in_use_bytes: int | None = None
    trace_path: str | None = None
    analysis: dict[str, Any] | None = None  # from ortel.analysis, where installed

    def by_type(self) -> list[dict[str, Any]]:
        agg: dict[tuple[str, str], dict[str, Any]] = {}
        for r in self.nodes:
            a = agg.setdefault(
                (r.op_type, r.provider),
                {"op_type": r.op_type, "provider": r.provider, "nodes": 0, "total_seconds": 0.0},
            )
            a["nodes"] += 1
            a["total_seconds"] += r.median_seconds * r.calls / max(self.runs, 1)
        total = sum(a["total_seconds"] for a in agg.values()) or 1.0
        out = sorted(agg.values(), key=lambda a: -a["total_seconds"])
        for a in out:
            a["seconds_per_run"] = a.pop("total_seconds")
            a["share"] = a["seconds_per_run"] / total
        return out

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["by_type"] = self.by_type()
        return d


def _int(v: Any) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def _max(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


def parse_trace(events: Sequence[dict[str, Any]], skip_runs: int = 0) -> OperatorProfile:
    """Per-node rows from an onnxruntime profile (the list of Chrome-trace events)."""
    runs = sorted(
        (e["ts"], e["ts"] + e["dur"])
        for e in events
        if e.get("cat") == "Session" and e.get("name") == "model_run"
    )
    kept = runs[skip_runs:]
    starts = np.array([s for s, _ in kept], dtype=np.int64)
    ends = np.array([e for _, e in kept], dtype=np.int64)
    rows: dict[str, OpRow] = {}
    durs: dict[str, list[float]] = {}
    held = peak = None
    for e in events:
        name = e.get("name", "")
        if e.get("cat") != "Node" or not name.endswith(KERNEL_SUFFIX):
            continue
        ts = e["ts"]
        i = int(np.searchsorted(starts, ts, side="right")) - 1
        if i < 0 or ts > ends[i]:  # a warm-up run's node
            continue
        args = e.get("args", {})
        node = name[: -len(KERNEL_SUFFIX)]
        r = rows.get(node)
        if r is None:
            r = rows[node] = OpRow(
                node,
                args.get("op_name", "?"),
                args.get("provider", "?"),
                0,
                0.0,
                0.0,
                0.0,
                output_bytes=_int(args.get("output_size")),
                activation_bytes=_int(args.get("activation_size")),
                parameter_bytes=_int(args.get("parameter_size")),
            )
        r.calls += 1
        r.total_seconds += e["dur"] * 1e-6
        durs.setdefault(node, []).append(e["dur"] * 1e-6)
        held = _max(held, _int(args.get("mem_arena_held")))
        peak = _max(peak, _int(args.get("mem_in_use_peak")))
    for r in rows.values():
        r.mean_seconds = r.total_seconds / r.calls
        r.median_seconds = float(np.median(durs[r.node]))
    # Shares from medians: on a busy machine one preempted run would otherwise decide them.
    total = sum(r.median_seconds * r.calls for r in rows.values()) or 1.0
    for r in rows.values():
        r.share = r.median_seconds * r.calls / total
    mean_run = float(np.mean(ends - starts)) * 1e-6 if len(kept) else None
    nodes = sorted(rows.values(), key=lambda r: -r.share)
    return OperatorProfile(len(kept), mean_run, nodes, held, peak)


def profile_operators(
    make_session: Callable[[Path], Any],
    feed: dict[str, Any],
    workdir: Path,
    warmup: int = 5,
    runs: int = 20,
) -> OperatorProfile:
    """Run the profiled pass on a session from ``make_session(profile_prefix)``."""
    session = make_session(workdir / "ortel-op-profile")
    for _ in range(warmup + runs):
        session.run(None, feed)
    path = Path(session.end_profiling())
    prof = parse_trace(json.loads(path.read_text()), skip_runs=warmup)
    prof.trace_path = str(path)
    return prof


def analyze(
    model: Path,
    prof: OperatorProfile,
    workdir: Path,
    *,
    shapes: dict[str, Sequence[int]] | None = None,
    watts: float | None = None,
    power_source: str | None = None,
    threads: int | None = None,
    provider: str = "CPUExecutionProvider",
    warmup_runs: int = 0,
) -> dict[str, Any] | None:
    """``ortel analyze`` on this pass's trace, where that package is installed: MACs/FLOPs,
    roofline, critical path and offload candidates per node, with the run's own measured power.
    Returns ``{"summary": …, "html": …}``, None without ortel.analysis, ``{"error": …}`` when the
    analysis fails (it is an extra: its failure never loses the run)."""
    import importlib.util

    if importlib.util.find_spec("onnx") is None:  # the analysis extra is not installed
        return {"error": "operator analysis skipped: pip install 'ortel[analysis]'"}
    try:
        from ortel.analysis.api import analyze_trace
    except ImportError:
        return None
    if not prof.trace_path:
        return None
    power = None
    if watts:
        power = (watts, power_source or "measured", "ortel profile's power collectors")
    try:
        summary, html = analyze_trace(
            model,
            Path(prof.trace_path),
            workdir / "analysis",
            shapes=shapes,
            power=power,
            threads=threads,
            providers=[provider],
            warmup_runs=warmup_runs,
        )
    except Exception as e:  # the analysis is an extra: its failure must not lose the run
        return {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"}
    body = html.split("<body>", 1)[-1].rsplit("</body>", 1)[0]
    body = re.sub(r"<h1>.*?</h1>", "", body, count=1, flags=re.S)
    return {"summary": _json_safe(summary), "html": body}


def _json_safe(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {str(k): _json_safe(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_json_safe(x) for x in v]
    if isinstance(v, str | int | float | bool) or v is None:
        return v
    return str(v)
