"""Which original nodes each node of ONNX Runtime's optimized graph stands for.

ORT rewrites the graph before running it (onnxruntime#26823: the profile names nodes of a graph
the user never saw). Given the graph *before* a set of rewrites and the graph *after* (the one
ORT saves with ``optimized_model_filepath``), every after-node gets the list of before-nodes it
absorbed, and every before-node a fate: ``kept``, ``fused`` (into a named node), ``folded`` (a
constant subgraph computed at load time) or ``eliminated`` (Identity, Dropout, cancelled
transposes…).

Rules, in order:

1. **Names.** An after-node with a before-node's name stands for it; NCHWc nodes are named
   after the output *tensor* of the node they replace plus ``_nchwc``.
2. **Tensors.** Fusions keep the boundary tensors' names: walking back from an after-node's
   outputs through the before graph, every producer reached before a tensor that still exists
   after the rewrite was absorbed into it (Conv+BN+Relu → FusedConv, MatMul+Add+Gelu → BiasGelu);
   no-ops and constant subgraphs met on the way are left to rule 3.
3. **Constants and no-ops.** Leftover nodes computable from constants were folded; Identity and
   Dropout were eliminated.
4. **Upstream fusion** (NCHWc only: its tensors are renamed, so rule 2 cannot see it). A
   leftover Add/Sum/activation went into the node that produces its input, preferring a producer
   whose output has no other consumer (ORT fuses the residual Add into the convolution whose
   result is used only there).

``map_graphs`` does one hop; ``compose`` chains hops (original → extended → layout).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .graph import CONTROL_FLOW, NONDETERMINISTIC, Graph, Node

NCHWC_SUFFIX = "_nchwc"
NO_OP = {"Identity", "Dropout"}
UPSTREAM_FUSABLE = {"Add", "Sum", "Relu", "Sigmoid", "Tanh", "Clip", "LeakyRelu", "HardSigmoid",
                    "HardSwish"}  # fmt: skip


@dataclass
class Mapping:
    absorbed: dict[str, list[str]]  # after-node label -> before-node labels (itself included)
    fate: dict[str, str]  # before-node label -> "kept" | "fused:<after>" | "folded" | "eliminated"
    inserted: list[str] = field(default_factory=list)  # after-nodes with no before-node

    def origin(self, after_label: str) -> list[str]:
        return self.absorbed.get(after_label, [])


def _consts(g: Graph) -> set[str]:
    """Tensors that are constants in ``g``: initializers and everything computed only from them."""
    known = set(g.initializers) | {t for t, info in g.tensors.items() if info.const}
    for n in g.nodes:  # topological order
        ins = [t for t in n.inputs if t]
        if n.op_type in CONTROL_FLOW or n.op_type in NONDETERMINISTIC:
            continue
        if n.op_type == "Constant" or (ins and all(t in known for t in ins)) or n.folded:
            known.update(t for t in n.outputs if t)
    return known


def map_graphs(before: Graph, after: Graph, upstream: bool = False) -> Mapping:
    by_name = {n.name: n for n in before.nodes if n.name}
    claim: dict[int, Node] = {}  # id(before node) -> after node
    absorbed: dict[int, list[Node]] = {id(a): [] for a in after.nodes}

    def take(b: Node, a: Node) -> bool:
        if id(b) in claim:
            return claim[id(b)] is a
        claim[id(b)] = a
        absorbed[id(a)].append(b)
        return True

    # 1. names
    for a in after.nodes:
        b = None
        if a.name.endswith(NCHWC_SUFFIX):
            b = before.producers.get(a.name[: -len(NCHWC_SUFFIX)])
        if b is None and a.name in by_name:
            b = by_name[a.name]
        if b is not None and id(b) not in claim:
            take(b, a)
    # 2. tensors: walk back from the outputs until a tensor that still exists after the rewrite.
    # No-ops and constant subgraphs are not walked into: their outputs vanish because they were
    # eliminated or folded (rule 3), not fused.
    after_tensors = after.tensor_names()
    consts = _consts(before)
    for a in after.nodes:
        own = {t for t in a.outputs if t}
        stack = [t for t in a.outputs if t and t in before.producers]
        seen: set[str] = set()
        while stack:
            t = stack.pop()
            if t in seen:
                continue
            seen.add(t)
            b = before.producers.get(t)
            if b is None or (id(b) in claim and claim[id(b)] is not a):
                continue
            if b.op_type in NO_OP or b.folded or all(x in consts for x in b.outputs if x):
                continue
            take(b, a)
            for i in b.inputs:
                if i and i not in own and i not in after_tensors and i in before.producers:
                    stack.append(i)
    # 3. constants and no-ops, 4. upstream fusion
    fate: dict[str, str] = {}
    for b in before.nodes:  # topological order: a producer is decided before its consumers
        if id(b) in claim:
            continue
        outs = [t for t in b.outputs if t]
        if b.folded or b.op_type == "Constant" or (outs and all(t in consts for t in outs)):
            fate[b.label] = "folded"
            continue
        if b.op_type in NO_OP:
            fate[b.label] = "eliminated"
            continue
        if upstream and b.op_type in UPSTREAM_FUSABLE:
            owner = _upstream_owner(before, b, claim)
            if owner is not None:
                take(b, owner)
                continue
        fate[b.label] = "eliminated"
    out: dict[str, list[str]] = {}
    inserted = []
    for a in after.nodes:
        nodes = absorbed[id(a)]
        order = {id(n): i for i, n in enumerate(before.nodes)}
        out[a.label] = [n.label for n in sorted(nodes, key=lambda n: order[id(n)])]
        if not nodes:
            inserted.append(a.label)
        for n in nodes:
            fate[n.label] = "kept" if len(nodes) == 1 else f"fused:{a.label}"
    return Mapping(out, fate, inserted)


def _upstream_owner(before: Graph, b: Node, claim: dict[int, Node]) -> Node | None:
    candidates: list[tuple[int, int, Node]] = []
    for pos, t in enumerate(x for x in b.inputs if x):
        p = before.producers.get(t)
        if p is None or id(p) not in claim:
            continue
        sole = len(before.consumers.get(t, [])) == 1
        candidates.append((0 if sole else 1, pos, claim[id(p)]))
    return min(candidates, key=lambda c: (c[0], c[1]))[2] if candidates else None


def compose(first: Mapping, second: Mapping) -> Mapping:
    """original → middle (``first``) then middle → final (``second``): original → final."""
    absorbed: dict[str, list[str]] = {}
    for final, middles in second.absorbed.items():
        names: list[str] = []
        for m in middles:
            names.extend(x for x in first.absorbed.get(m, [m]) if x not in names)
        absorbed[final] = names
    fate = dict(first.fate)
    for final, names in absorbed.items():
        for n in names:
            fate[n] = "kept" if len(names) == 1 else f"fused:{final}"
    for middle, f in second.fate.items():
        if f in ("folded", "eliminated"):
            for n in first.absorbed.get(middle, []):
                fate[n] = f
    inserted = [a for a, names in absorbed.items() if not names]
    return Mapping(absorbed, fate, inserted)


def map_models(original: Graph, optimized: Graph, extended: Graph | None = None) -> Mapping:
    """Original → optimized, through ORT's extended-level graph when there is one (its rewrites
    and the layout ones are mapped in two steps: each is easier to follow than both at once)."""
    if extended is None:
        return map_graphs(original, optimized)
    return compose(map_graphs(original, extended), map_graphs(extended, optimized, upstream=True))
