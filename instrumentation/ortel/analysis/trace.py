"""ONNX Runtime profile (Chrome trace JSON) parsing: streaming, tolerant, aggregated per node.

ONNX Runtime writes one JSON array of events, one event per line: ``Session`` events
(``model_loading_uri``, ``session_initialization``, one ``model_run`` per run, written after the
run's nodes) and ``Node`` events (``<node>_kernel_time`` with ``op_name``, ``provider``, input
and output shapes). Files reach gigabytes (onnxruntime#16334), so:

- ``ortel.core.ort_trace.iter_events`` scans the file one event at a time (memory flat in file
  size; truncated files and garbled events tolerated and counted).
- ``TraceAggregator`` folds events as they stream: per node (count, total, min, max, p50/p90 from
  a 0.5 %-relative-error sketch, mean start offset in its run, the shapes it ran with), per run
  (``model_run`` durations), session events. Node events are grouped into runs by the
  ``model_run`` event that follows them, and nodes of control-flow subgraphs (If/Loop/Scan bodies,
  which ORT profiles too) are nested under their parent by time containment on the same thread:
  the key of a body node is ``loop_node/body_node``.

Stdlib only (plus ortel's pure-Python sketch).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ortel.core.ort_trace import (  # noqa: F401 - part of this module's interface
    CHUNK_CHARS,
    KERNEL_SUFFIX,
    MAX_EVENT_CHARS,
    ScanReport,
    TraceError,
    iter_events,
)
from ortel.core.sketch import LogSketch

MAX_SHAPE_SIGNATURES = 64  # distinct input shapes remembered per node
FENCE_SUFFIXES = ("_fence_before", "_fence_after")
LOAD_EVENTS = ("model_loading_uri", "model_loading_array", "model_loading_from_saved_proto")
# Ops that run subgraphs: their node events contain the subgraph's node events.
SUBGRAPH_OPS = {"If", "Loop", "Scan", "BeamSearch", "GreedySearch", "Sampling",
                "WhisperBeamSearch"}  # fmt: skip


# --- aggregation --------------------------------------------------------------------------------
Signature = tuple[tuple[str, tuple[int, ...]], ...]


def _signature(shapes: Any) -> Signature | None:
    """``[{"float": [1, 3, 224, 224]}, …]`` -> a hashable signature, or None if malformed."""
    if not isinstance(shapes, list):
        return None
    out = []
    for s in shapes:
        if not isinstance(s, dict) or len(s) != 1:
            return None
        ((dtype, dims),) = s.items()
        if not isinstance(dims, list) or not all(isinstance(d, int) for d in dims):
            return None
        out.append((str(dtype), tuple(dims)))
    return tuple(out)


@dataclass
class NodeStats:
    key: str  # "node" or "parent/node" for subgraph nodes
    name: str
    parent: str | None
    op_type: str
    provider: str
    count: int = 0
    total_us: float = 0.0
    min_us: float = float("inf")
    max_us: float = 0.0
    start_sum_us: float = 0.0  # summed offset from the start of its run
    sketch: LogSketch = field(default_factory=LogSketch)
    shapes: dict[tuple[Signature | None, Signature | None], int] = field(default_factory=dict)
    other_shapes: int = 0  # executions whose shapes were not remembered (cap reached)
    thread_ids: set[int] = field(default_factory=set)
    _last: tuple[Any, Any, Any] = (None, None, None)  # raw shapes of the last call, signature

    def add(self, dur_us: float, start_us: float, ins: Any, outs: Any, tid: Any) -> None:
        self.count += 1
        self.total_us += dur_us
        self.min_us = min(self.min_us, dur_us)
        self.max_us = max(self.max_us, dur_us)
        self.start_sum_us += start_us
        self.sketch.add(max(dur_us, 0.001) * 1e-6)
        last_in, last_out, sig = self._last
        if sig is None or ins != last_in or outs != last_out:  # shapes rarely change: compare
            sig = (_signature(ins), _signature(outs))
            self._last = (ins, outs, sig)
        if sig in self.shapes or len(self.shapes) < MAX_SHAPE_SIGNATURES:
            self.shapes[sig] = self.shapes.get(sig, 0) + 1
        else:
            self.other_shapes += 1
        if isinstance(tid, int) and len(self.thread_ids) < 64:
            self.thread_ids.add(tid)

    @property
    def mean_us(self) -> float:
        return self.total_us / self.count if self.count else 0.0

    def quantile_us(self, q: float) -> float:
        v = self.sketch.quantile(q)
        return 0.0 if v is None else v * 1e6

    @property
    def mean_start_us(self) -> float:
        return self.start_sum_us / self.count if self.count else 0.0

    @property
    def common_shapes(self) -> tuple[Signature | None, Signature | None]:
        if not self.shapes:
            return (None, None)
        return max(self.shapes.items(), key=lambda kv: kv[1])[0]


MAX_RUNS_LISTED = 10_000  # per-run durations kept in order (memory stays bounded)


@dataclass
class RunStats:
    count: int = 0
    total_us: float = 0.0
    min_us: float = float("inf")
    max_us: float = 0.0
    sketch: LogSketch = field(default_factory=LogSketch)
    durations_us: list[float] = field(default_factory=list)  # the first MAX_RUNS_LISTED

    def add(self, dur_us: float) -> None:
        if len(self.durations_us) < MAX_RUNS_LISTED:
            self.durations_us.append(dur_us)
        self.count += 1
        self.total_us += dur_us
        self.min_us = min(self.min_us, dur_us)
        self.max_us = max(self.max_us, dur_us)
        self.sketch.add(max(dur_us, 0.001) * 1e-6)

    @property
    def mean_us(self) -> float:
        return self.total_us / self.count if self.count else 0.0

    def quantile_us(self, q: float) -> float:
        v = self.sketch.quantile(q)
        return 0.0 if v is None else v * 1e6


@dataclass
class TraceSummary:
    nodes: dict[str, NodeStats]
    runs: RunStats  # measured runs (after the warm-up)
    warmup_runs_us: list[float]
    session: dict[str, float]  # "model_loading_us", "session_initialization_us"
    report: ScanReport
    warnings: list[str]
    other_events: dict[str, int]
    partial_run: bool = False  # nodes come from a run whose model_run event never came

    @property
    def runs_measured(self) -> int:
        return max(self.runs.count, 1 if self.partial_run else 0)

    def per_run(self, stats: NodeStats) -> float:
        """Executions of a node per measured run (Loop bodies: iterations)."""
        return stats.count / self.runs_measured if self.runs_measured else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "runs_measured": self.runs.count,
            "warmup_runs": len(self.warmup_runs_us),
            "run_mean_us": self.runs.mean_us,
            "run_p50_us": self.runs.quantile_us(0.5),
            "run_p90_us": self.runs.quantile_us(0.9),
            "run_min_us": self.runs.min_us if self.runs.count else None,
            "run_max_us": self.runs.max_us if self.runs.count else None,
            "warmup_runs_us": self.warmup_runs_us,
            "runs_us": self.runs.durations_us,
            "session": self.session,
            "events": self.report.events,
            "truncated": self.report.truncated,
            "garbled": self.report.garbled,
            "partial_run": self.partial_run,
            "other_events": self.other_events,
        }


class TraceAggregator:
    """Fold events one at a time; ``summary()`` at the end."""

    def __init__(self, warmup_runs: int = 1) -> None:
        self.warmup = max(0, warmup_runs)
        self.nodes: dict[str, NodeStats] = {}
        self.runs = RunStats()
        self.warmup_runs_us: list[float] = []
        self.session: dict[str, float] = {}
        self.other: dict[str, int] = {}
        self._pending: list[dict[str, Any]] = []
        self._last_warmup: tuple[dict[str, Any], list[dict[str, Any]]] | None = None
        self._completed = 0

    def add(self, ev: dict[str, Any]) -> None:
        cat, name = ev.get("cat"), ev.get("name")
        if not isinstance(name, str):
            return
        if cat == "Node":
            if name.endswith(KERNEL_SUFFIX):
                self._pending.append(ev)
            elif not name.endswith(FENCE_SUFFIXES):
                self.other["Node:" + name.rsplit("_", 1)[-1]] = (
                    self.other.get("Node:" + name.rsplit("_", 1)[-1], 0) + 1
                )
        elif cat == "Session":
            dur = _num(ev.get("dur"))
            if name == "model_run":
                self._finish_run(ev)
            elif name in LOAD_EVENTS:
                self.session["model_loading_us"] = dur
            elif name == "session_initialization":
                self.session["session_initialization_us"] = dur
        else:
            key = str(cat)
            self.other[key] = self.other.get(key, 0) + 1

    def add_all(self, events: Iterable[dict[str, Any]]) -> TraceAggregator:
        for ev in events:
            self.add(ev)
        return self

    def _finish_run(self, run: dict[str, Any]) -> None:
        nodes, self._pending = self._pending, []
        self._completed += 1
        if self._completed <= self.warmup:
            self.warmup_runs_us.append(_num(run.get("dur")))
            self._last_warmup = (run, nodes)
            return
        self.runs.add(_num(run.get("dur")))
        self._fold(nodes, _num(run.get("ts")))

    def _fold(self, events: list[dict[str, Any]], run_ts: float) -> None:
        # Parents (subgraph ops) start before and end after their children; sorting by start,
        # longest first, puts each parent just before its children.
        events.sort(key=lambda e: (_num(e.get("ts")), -_num(e.get("dur"))))
        stack: list[tuple[float, str, Any]] = []  # (end, key, tid) of open subgraph ops
        for ev in events:
            ts, dur, tid = _num(ev.get("ts")), _num(ev.get("dur")), ev.get("tid")
            while stack and ts >= stack[-1][0]:
                stack.pop()
            parent = next((k for end, k, t in reversed(stack) if t == tid), None)
            name = ev["name"][: -len(KERNEL_SUFFIX)]
            key = f"{parent}/{name}" if parent else name
            raw_args = ev.get("args")
            args = raw_args if isinstance(raw_args, dict) else {}
            op = str(args.get("op_name", "?"))
            st = self.nodes.get(key)
            if st is None:
                st = self.nodes[key] = NodeStats(
                    key, name, parent, op, str(args.get("provider", "unknown"))
                )
            st.add(
                dur,
                ts - run_ts,
                args.get("input_type_shape"),
                args.get("output_type_shape"),
                tid,
            )
            if op in SUBGRAPH_OPS:
                stack.append((ts + dur, key, tid))

    def summary(self, report: ScanReport | None = None, label: str = "trace") -> TraceSummary:
        report = report or ScanReport()
        warnings = report.warnings(label)
        partial = False
        if self._pending:
            if self.runs.count:
                warnings.append(
                    f"{label}: ignored {len(self._pending)} node events of an unfinished run"
                )
            else:
                first = min(_num(e.get("ts")) for e in self._pending)
                self._fold(self._pending, first)
                partial = True
                warnings.append(f"{label}: no complete run; used the node events of a partial run")
            self._pending = []
        if not self.runs.count and not partial and self._last_warmup is not None:
            run, nodes = self._last_warmup
            self.warmup_runs_us.pop()
            self.runs.add(_num(run.get("dur")))
            self._fold(nodes, _num(run.get("ts")))
            warnings.append(
                f"{label}: only {self._completed} run(s); measured the last one although it is "
                "a warm-up run (first runs are slower)"
            )
        self._last_warmup = None
        return TraceSummary(
            self.nodes,
            self.runs,
            self.warmup_runs_us,
            self.session,
            report,
            warnings,
            self.other,
            partial,
        )


def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return 0.0


def parse_trace(path: str | Path, warmup_runs: int = 1, progress: Any = None) -> TraceSummary:
    """Stream ``path`` into a ``TraceSummary``. ``progress(chars_read)`` is called per chunk."""
    report = ScanReport()
    agg = TraceAggregator(warmup_runs)
    last = 0
    for ev in iter_events(path, report):
        agg.add(ev)
        if progress is not None and report.chars != last:
            last = report.chars
            progress(last)
    if report.events == 0:
        raise TraceError(f"{path}: no events found")
    return agg.summary(report, str(path))
