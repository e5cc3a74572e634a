"""The critical path: the longest dependency chain through the graph, weighted by measured
node times.

With unlimited parallelism an inference cannot finish faster than its critical path; the
serial sum is what a single stream of execution pays. ``slack = serial_sum − critical_path``
is the time parallel execution (``ExecutionMode.ORT_PARALLEL``, more streams) could hide at
best, and ``serial_sum / critical_path`` the average parallelism the graph offers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass
class PathResult:
    critical_path_us: float
    serial_sum_us: float
    path: list[str]  # node keys, in execution order
    earliest_start_us: dict[str, float]  # per node, with unlimited parallelism

    @property
    def slack_us(self) -> float:
        return self.serial_sum_us - self.critical_path_us

    @property
    def parallelism(self) -> float:
        return self.serial_sum_us / self.critical_path_us if self.critical_path_us > 0 else 1.0


class CycleError(ValueError):
    pass


def critical_path(
    nodes: Sequence[str], edges: Sequence[tuple[str, str]], weight_us: Mapping[str, float]
) -> PathResult:
    """Longest path in a DAG. ``nodes`` in any order; ``edges`` (producer, consumer); a node
    without a weight counts 0. Ties keep the earlier node in ``nodes`` order."""
    order = {n: i for i, n in enumerate(nodes)}
    preds: dict[str, list[str]] = {n: [] for n in nodes}
    succs: dict[str, list[str]] = {n: [] for n in nodes}
    for a, b in edges:
        if a in preds and b in preds and a != b and a not in preds[b]:
            preds[b].append(a)
            succs[a].append(b)
    indeg = {n: len(p) for n, p in preds.items()}
    ready = sorted((n for n, d in indeg.items() if d == 0), key=order.__getitem__)
    topo: list[str] = []
    while ready:
        n = ready.pop(0)
        topo.append(n)
        for s in succs[n]:
            indeg[s] -= 1
            if indeg[s] == 0:
                ready.append(s)
        ready.sort(key=order.__getitem__)
    if len(topo) != len(nodes):
        raise CycleError("the graph has a cycle")
    finish: dict[str, float] = {}
    start: dict[str, float] = {}
    best_pred: dict[str, str | None] = {}
    for n in topo:
        p = max(preds[n], key=lambda x: (finish[x], -order[x]), default=None)
        start[n] = finish[p] if p is not None else 0.0
        best_pred[n] = p
        finish[n] = start[n] + max(0.0, float(weight_us.get(n, 0.0)))
    if not topo:
        return PathResult(0.0, 0.0, [], {})
    end = max(topo, key=lambda x: (finish[x], -order[x]))
    path = [end]
    while (p := best_pred[path[-1]]) is not None:
        path.append(p)
    path.reverse()
    serial = sum(max(0.0, float(weight_us.get(n, 0.0))) for n in nodes)
    return PathResult(finish[end], serial, path, start)
