"""Mergeable operator timings of sampled inferences (``ortel_operator_*``, ``ortel_graph_*``).

One ``OperatorState`` per (model, provider) series, carried in the series' snapshot under
``"operators"`` (absent when sampling is off, so older readers and snapshots are unaffected) and
merged by the daemon like everything else: histograms and sample counts add up; the graph facts
(nodes per provider, memcpy nodes) are the newest sample's. Pure Python, like ``state.py``.

Label cardinality is bounded by operator types (not node names): at most ``MAX_OP_SERIES``
(op type, provider) pairs per series, anything beyond is counted under ``op_type="other"``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from . import catalog as c
from .hist import Hist
from .readings import Reading

MAX_OP_SERIES = 256
OTHER = "other"


@dataclass
class OperatorSample:
    """What one sampled inference's profile says: (op type, provider, duration ns) per node
    execution, nodes per provider, and memcpy nodes (copies between providers)."""

    ops: list[tuple[str, str, int]]
    nodes: dict[str, int]
    memcpy: int
    at: float  # wall-clock time of the sample


@dataclass
class OperatorState:
    hists: dict[tuple[str, str], Hist] = field(default_factory=dict)
    samples: int = 0
    nodes: dict[str, int] = field(default_factory=dict)  # latest sample
    memcpy: int = 0  # latest sample
    at: float = 0.0  # when the latest sample was taken

    def _hist(self, op: str, provider: str) -> Hist:
        key = (op, provider)
        h = self.hists.get(key)
        if h is None:
            if len(self.hists) >= MAX_OP_SERIES:
                key = (OTHER, provider)
                h = self.hists.get(key)
            if h is None:
                h = self.hists[key] = Hist.empty(c.OPERATOR_DURATION.buckets or ())
        return h

    def add(self, sample: OperatorSample) -> None:
        bounds = c.OPERATOR_DURATION.buckets or ()
        for op, provider, ns in sample.ops:
            h = self._hist(op, provider)
            h.counts[_bucket(bounds, ns)] += 1
            h.sum_ns += ns
            h.count += 1
        self.samples += 1
        if sample.at >= self.at:
            self.nodes, self.memcpy, self.at = dict(sample.nodes), sample.memcpy, sample.at

    def merge(self, o: OperatorState) -> None:
        for (op, provider), h in o.hists.items():
            self._hist(op, provider).merge(h)
        self.samples += o.samples
        if o.at > self.at:
            self.nodes, self.memcpy, self.at = dict(o.nodes), o.memcpy, o.at

    def copy(self) -> OperatorState:
        return OperatorState(
            {k: h.copy() for k, h in self.hists.items()},
            self.samples,
            dict(self.nodes),
            self.memcpy,
            self.at,
        )


def _bucket(bounds: tuple[float, ...], ns: int) -> int:
    """Index of the bucket holding ``ns`` (Prometheus ``le``: a value on a bound belongs to it)."""
    lo, hi = 0, len(bounds)
    while lo < hi:
        mid = (lo + hi) // 2
        if ns <= bounds[mid] * 1e9 + 1e-6:
            hi = mid
        else:
            lo = mid + 1
    return lo


def readings(per_model: dict[str, Iterable[OperatorState]]) -> Iterator[Reading]:
    """Operator metrics of each model, merged over its series (several providers, processes)."""
    bounds = c.OPERATOR_DURATION.buckets or ()
    for model, states in per_model.items():
        merged = OperatorState()
        for st in states:
            merged.merge(st)
        if not merged.samples:
            continue
        total = sum(h.sum_ns for h in merged.hists.values())
        per_op: dict[str, int] = {}
        for (op, provider), h in sorted(merged.hists.items()):
            yield Reading(c.OPERATOR_DURATION, (model, op, provider), h.value(bounds))
            per_op[op] = per_op.get(op, 0) + h.sum_ns
        for op, ns in sorted(per_op.items()):
            yield Reading(c.OPERATOR_SHARE, (model, op), ns / total if total else 0.0)
        yield Reading(c.OPERATOR_SAMPLES, (model,), float(merged.samples))
        for provider, n in sorted(merged.nodes.items()):
            yield Reading(c.GRAPH_NODES, (model, provider), float(n))
        yield Reading(c.GRAPH_MEMCPY_NODES, (model,), float(merged.memcpy))
