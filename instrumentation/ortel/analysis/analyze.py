"""Join a trace with the graph that ran: one row per executed node, with its measured time, its
cost (MACs, FLOPs, bytes, params), roofline position, energy, critical-path membership and the
original nodes it stands for; plus a static analysis of the original model.

Shapes come from the trace (what actually ran: dynamic dimensions resolved, prepacked weights
aside), falling back to shape inference on the saved graph. A node that ran with several shapes
(a decoder's growing KV cache) is costed per shape and averaged per run. Control-flow bodies are
costed per executed iteration when their nodes are in the trace; otherwise a Loop with a
constant trip count multiplies its body, and anything else is counted once and flagged.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from . import energy as en
from . import flops as fl
from .critical_path import PathResult, critical_path
from .graph import (
    CONTROL_FLOW,
    DTYPE_BY_NAME,
    Graph,
    Model,
    Node,
    TensorInfo,
)
from .mapping import Mapping
from .offload import OffloadResult, find
from .roofline import Roof, place
from .trace import NodeStats, Signature, TraceSummary

MEMCPY_OPS = {"MemcpyFromHost", "MemcpyToHost"}
# Ops registered only in ORT's contrib domains: a node the graph lacks is looked up there.
_DOMAIN_GUESS = (fl.MS, fl.NCHWC)


@dataclass
class Options:
    accel_speedup: float = 10.0
    offload_threshold: float = 0.05
    min_intensity: float = 8.0
    pj_per_flop: float = en.DEFAULT_PJ_PER_FLOP
    pj_per_byte: float = en.DEFAULT_PJ_PER_BYTE


@dataclass
class Row:
    key: str
    node: str
    op_type: str
    domain: str
    provider: str
    parent: str | None
    family: str
    calls_per_run: float = 1.0
    time_us: float | None = None  # mean per run, inclusive of subgraph nodes
    self_time_us: float | None = None
    mean_us: float | None = None  # per call
    p50_us: float | None = None
    p90_us: float | None = None
    total_us: float | None = None
    count: int = 0
    start_us: float | None = None  # mean offset from the start of its run
    macs: float | None = 0
    flops: float | None = 0
    activation_bytes_read: float | None = None
    weight_bytes_read: float | None = None
    bytes_written: float | None = None
    params: int | None = None
    status: str = "ok"
    note: str = ""
    fused_from: list[str] = field(default_factory=list)
    shapes: str = ""
    arithmetic_intensity: float | None = None
    attainable_flops: float | None = None
    achieved_flops: float | None = None
    pct_of_roof: float | None = None
    bound: str = "unknown"
    energy_j: float | None = None
    energy_compute_j: float | None = None
    energy_data_j: float | None = None
    on_critical_path: bool = False
    share_of_latency: float | None = None

    @property
    def bytes_total(self) -> float | None:
        parts = (self.activation_bytes_read, self.weight_bytes_read, self.bytes_written)
        return None if any(p is None for p in parts) else float(sum(parts))  # type: ignore


@dataclass
class Analysis:
    rows: list[Row]
    original_rows: list[Row]
    summary: dict[str, Any]
    path: PathResult
    offload: OffloadResult
    roof: Roof
    power: en.Power | None
    by_op_type: list[dict[str, Any]]
    warnings: list[str]


# --- costing one node ---------------------------------------------------------------------------
def _info_from_sig(entry: tuple[str, tuple[int, ...]], graph_info: TensorInfo) -> TensorInfo:
    dtype, dims = entry
    return TensorInfo(
        tuple(dims),
        DTYPE_BY_NAME.get(dtype, graph_info.dtype),
        const=graph_info.const,
        value=graph_info.value,
    )


def align_inputs(node: Node, graph: Graph, sig: Signature | None) -> list[TensorInfo | None]:
    """The node's input infos, shapes from the trace where it lists them. ORT leaves out inputs
    it holds no tensor for (weights prepacked at load time): a constant input the trace skips
    keeps the graph's shape."""
    infos: list[TensorInfo | None] = [None] * len(node.inputs)
    present = [i for i, t in enumerate(node.inputs) if t]
    if sig is None:
        for i in present:
            infos[i] = graph.tensor(node.inputs[i])
        return infos
    j = 0
    for k, i in enumerate(present):
        g = graph.tensor(node.inputs[i])
        left_inputs, left_sig = len(present) - k, len(sig) - j
        take = j < len(sig) and (
            left_sig >= left_inputs or not g.const or g.static_shape == tuple(sig[j][1])
        )
        if take:
            infos[i] = _info_from_sig(sig[j], g)
            j += 1
        else:
            infos[i] = g
    return infos


def align_outputs(node: Node, graph: Graph, sig: Signature | None) -> list[TensorInfo | None]:
    outs: list[TensorInfo | None] = [None] * len(node.outputs)
    present = [i for i, t in enumerate(node.outputs) if t]
    for k, i in enumerate(present):
        g = graph.tensor(node.outputs[i])
        outs[i] = _info_from_sig(sig[k], g) if sig is not None and k < len(sig) else g
    return outs


def _sig_infos(sig: Signature | None) -> list[TensorInfo | None]:
    return [] if sig is None else [_info_from_sig(e, TensorInfo()) for e in sig]


def node_cost(node: Node | None, graph: Graph | None, op_type: str, sig_in, sig_out) -> fl.Cost:
    if node is not None and graph is not None:
        op = fl.OpInfo(
            node.op_type,
            node.domain,
            node.attrs,
            align_inputs(node, graph, sig_in),
            align_outputs(node, graph, sig_out),
        )
        return fl.cost(op)
    # A node the saved graph does not have: shapes from the trace, no attributes, no constness.
    for domain in ("", *_DOMAIN_GUESS):
        if fl.lookup(domain, op_type) is not None:
            break
    op = fl.OpInfo(op_type, domain, {}, _sig_infos(sig_in), _sig_infos(sig_out))
    return fl.cost(op)


def _fmt_sig(sig: Signature | None) -> str:
    if sig is None:
        return "?"
    return " ".join("x".join(str(d) for d in dims) or "scalar" for _, dims in sig)


# --- rows from the trace ------------------------------------------------------------------------
def _match_nodes(graph: Graph | None, trace: TraceSummary) -> dict[str, Node]:
    """Trace key -> graph node: by path of names, else by op type in execution order (nodes
    without names all profile as "")."""
    if graph is None:
        return {}
    index = dict(graph.walk())
    out: dict[str, Node] = {}
    taken: set[int] = set()
    for key in trace.nodes:
        n = index.get(key)
        if n is not None:
            out[key] = n
            taken.add(id(n))
    by_scope: dict[tuple[str | None, str], list[Node]] = {}
    for path, n in index.items():
        if id(n) not in taken:
            parent = path.rsplit("/", 1)[0] if "/" in path else None
            by_scope.setdefault((parent, n.op_type), []).append(n)
    for key, st in trace.nodes.items():
        if key in out:
            continue
        pool = by_scope.get((st.parent, st.op_type), [])
        if pool and not st.name:
            out[key] = pool.pop(0)
    return out


def _graph_of(graph: Graph, key: str) -> Graph:
    """The (sub)graph that holds the node at ``key``."""
    if "/" not in key:
        return graph
    g = graph
    for part in key.split("/")[:-1]:
        owner = next((n for n in g.nodes if n.label == part), None)
        if owner is None:
            return graph
        subs = list(owner.subgraphs.values())
        leaf = key.split("/")[-1]
        g = next((s for s in subs if any(n.label == leaf for n in s.nodes)), subs[0] if subs else g)
    return g


def _accumulate(rows_cost: list[tuple[fl.Cost, float]]) -> fl.Cost:
    """Weighted sum of per-shape costs; a field unknown in any shape is unknown."""

    def total(attr: str) -> float | None:
        vals = [(getattr(c, attr), w) for c, w in rows_cost]
        if any(v is None for v, _ in vals):
            return None
        return sum(v * w for v, w in vals)  # type: ignore[operator]

    first_bad = next((c for c, _ in rows_cost if c.status not in ("ok",)), None)
    params = [c.params for c, _ in rows_cost]
    return fl.Cost(
        total("macs"),  # type: ignore[arg-type]
        total("flops"),  # type: ignore[arg-type]
        total("activation_bytes_read"),  # type: ignore[arg-type]
        total("weight_bytes_read"),  # type: ignore[arg-type]
        total("bytes_written"),  # type: ignore[arg-type]
        None if any(p is None for p in params) else max(params, default=0),  # type: ignore
        first_bad.status if first_bad else "ok",
        first_bad.note if first_bad else "",
    )


def trace_rows(
    graph_model: Model | None, trace: TraceSummary, mapping: Mapping | None, original: Model | None
) -> tuple[list[Row], list[str]]:
    graph = graph_model.graph if graph_model else None
    warnings: list[str] = []
    matched = _match_nodes(graph, trace)
    missing = [k for k in trace.nodes if k not in matched]
    if graph is not None and missing:
        warnings.append(
            f"{len(missing)} traced node(s) are not in the optimized graph (was the trace made "
            f"from another model or optimization level?): {', '.join(missing[:5])}"
        )
    runs = trace.runs_measured or 1
    orig_nodes = dict(original.graph.walk()) if original else {}
    rows: list[Row] = []
    for key, st in trace.nodes.items():
        node = matched.get(key)
        g = _graph_of(graph, key) if graph is not None and node is not None else None
        parts: list[tuple[fl.Cost, float]] = []
        for (sig_in, sig_out), n in st.shapes.items():
            parts.append((node_cost(node, g, st.op_type, sig_in, sig_out), n / runs))
        if st.other_shapes and parts:  # executions past the remembered shapes: the common cost
            common = node_cost(node, g, st.op_type, *st.common_shapes)
            parts.append((common, st.other_shapes / runs))
        cost = _accumulate(parts) if parts else node_cost(node, g, st.op_type, None, None)
        domain = node.domain if node is not None else ""
        rows.append(_row(key, st, node, domain, cost, runs))
        row = rows[-1]
        row.shapes = _fmt_sig(st.common_shapes[0]) + " -> " + _fmt_sig(st.common_shapes[1])
        if mapping is not None and st.parent is None:
            row.fused_from = [
                f"{n} ({orig_nodes[n].op_type})" if n in orig_nodes else n
                for n in mapping.origin(row.node)
            ]
        elif st.parent is not None:
            row.fused_from = [key] if key in orig_nodes else []
    _control_flow(rows, graph, trace)
    return rows, warnings


def _row(key: str, st: NodeStats, node: Node | None, domain: str, cost: fl.Cost, runs: int) -> Row:
    return Row(
        key=key,
        node=st.name,
        op_type=st.op_type,
        domain=domain,
        provider=st.provider,
        parent=st.parent,
        family=fl.family(domain, st.op_type),
        calls_per_run=st.count / runs,
        time_us=st.total_us / runs,
        self_time_us=st.total_us / runs,
        mean_us=st.mean_us,
        p50_us=st.quantile_us(0.5),
        p90_us=st.quantile_us(0.9),
        total_us=st.total_us,
        count=st.count,
        start_us=st.mean_start_us,
        macs=cost.macs,
        flops=cost.flops,
        activation_bytes_read=cost.activation_bytes_read,
        weight_bytes_read=cost.weight_bytes_read,
        bytes_written=cost.bytes_written,
        params=cost.params,
        status=cost.status,
        note=cost.note,
    )


def _control_flow(rows: list[Row], graph: Graph | None, trace: TraceSummary) -> None:
    """Subgraph nodes' time is inside their parent's: parents keep it as ``time_us`` and get
    the rest as ``self_time_us``. ORT profiles every node a subgraph runs, so a parent with no
    body node in the trace ran no iteration (a Loop with trip count 0, an empty branch): it
    costs nothing, and the note gives the static cost for reference."""
    children: dict[str, list[Row]] = {}
    for r in rows:
        if r.parent is not None:
            children.setdefault(r.parent, []).append(r)
    index = dict(graph.walk()) if graph is not None else {}
    for r in rows:
        kids = children.get(r.key, [])
        if kids:
            inner = sum(k.time_us or 0.0 for k in kids)
            r.self_time_us = max((r.time_us or 0.0) - inner, 0.0)
            if r.status == "control_flow":
                r.note = f"body: {len(kids)} node(s) in the trace, costed per execution"
            continue
        node = index.get(r.key)
        if r.op_type in CONTROL_FLOW and node is not None and node.subgraphs:
            c, note = static_control_flow(node, _graph_of(graph, r.key) if graph else None)
            r.note = f"no body node in the trace: no iteration ran (static: {note}, {c.macs} MACs)"


# --- static analysis (no trace) -----------------------------------------------------------------
def static_control_flow(node: Node, graph: Graph | None) -> tuple[fl.Cost, str]:
    """Cost of a control-flow node's bodies without a trace: Loop × constant trip count, Scan ×
    sequence length, If: the costlier branch; flagged in the note otherwise."""
    bodies = {k: static_totals(g) for k, g in node.subgraphs.items()}
    if node.op_type == "Loop":
        body = bodies.get("body", fl.Totals())
        trip = None
        if graph is not None and node.inputs and node.inputs[0]:
            v = graph.tensor(node.inputs[0]).value
            if v is not None and v.size == 1:
                trip = int(v.reshape(-1)[0])
        if trip is not None:
            k, note = trip, f"trip count {trip} (constant)"
        else:
            k, note = 1, "trip count unknown: body counted once"
        return fl.Cost(body.macs * k, body.flops * k, status="control_flow_static"), note
    if node.op_type == "If":
        best = max(bodies.items(), key=lambda kv: kv[1].flops, default=("", fl.Totals()))
        return (
            fl.Cost(best[1].macs, best[1].flops, status="control_flow_static"),
            f"branch unknown: counted the costlier one ({best[0]})",
        )
    total = fl.Totals()
    for b in bodies.values():
        total.macs += b.macs
        total.flops += b.flops
    return fl.Cost(total.macs, total.flops), "iterations unknown: body counted once"


def static_totals(graph: Graph) -> fl.Totals:
    t = fl.Totals()
    for r in static_rows(graph):
        if r.parent is None:
            t.add(r.op_type, _as_cost(r))
    return t


def _as_cost(r: Row) -> fl.Cost:
    return fl.Cost(
        None if r.macs is None else int(r.macs),
        None if r.flops is None else int(r.flops),
        status=r.status,
    )


def static_rows(graph: Graph, prefix: str = "", parent: str | None = None) -> list[Row]:
    """One row per node of ``graph`` from inferred shapes, each control-flow node followed by
    the rows of its subgraphs (keys ``parent/child``)."""
    rows: list[Row] = []
    for n in graph.nodes:
        key = prefix + n.label
        row = Row(key, n.name, n.op_type, n.domain, "", parent, fl.family(n.domain, n.op_type))
        outs = [graph.tensor(t).static_shape for t in n.outputs if t]
        row.shapes = " ".join("x".join(map(str, s)) if s is not None else "?" for s in outs)
        rows.append(row)
        if n.folded:
            row.macs = row.flops = 0
            row.status, row.note = "folded", "constant subgraph, computed at load time"
            continue
        if n.op_type in CONTROL_FLOW and n.subgraphs:
            c, note = static_control_flow(n, graph)
            row.macs, row.flops, row.status, row.note = c.macs, c.flops, "control_flow", note
            for k, sub in n.subgraphs.items():
                for rs in static_rows(sub, key + "/", key):
                    rs.note = (rs.note + f" (in {k})").strip()
                    rows.append(rs)
            continue
        c = fl.cost(
            fl.OpInfo(
                n.op_type,
                n.domain,
                n.attrs,
                [graph.tensor(t) if t else None for t in n.inputs],
                [graph.tensor(t) if t else None for t in n.outputs],
            )
        )
        row.macs, row.flops, row.status, row.note = c.macs, c.flops, c.status, c.note
        row.activation_bytes_read = c.activation_bytes_read
        row.weight_bytes_read = c.weight_bytes_read
        row.bytes_written = c.bytes_written
        row.params = c.params
    return rows


def unique_params(graph: Graph) -> int | None:
    """Elements of every distinct constant a running node reads (int64/bool excluded):
    a weight shared by two nodes counts once."""
    seen: dict[str, int] = {}
    unknown = False
    for _, n in graph.walk():
        if n.folded or n.op_type == "Constant":
            continue
        for t in n.inputs:
            if not t or t in seen:
                continue
            info = graph.tensor(t)
            if not info.const or info.dtype in (7, 9):
                continue
            if info.numel is None:
                unknown = True
                continue
            seen[t] = info.numel
    return None if unknown and not seen else sum(seen.values())


def static_summary(model: Model) -> tuple[list[Row], dict[str, Any]]:
    rows = static_rows(model.graph)
    t = fl.Totals()
    for r in rows:
        if r.parent is None and r.status != "folded":
            t.add(r.op_type, _as_cost(r))
    unknown = sorted({r.op_type for r in rows if r.status == "unknown_op"})
    unresolved = sorted({r.key for r in rows if r.status == "unknown_shape"})
    return rows, {
        "total_macs": t.macs,
        "total_flops": t.flops,
        "total_params": unique_params(model.graph),
        "unknown_ops": unknown,
        "unresolved_nodes": unresolved,
        "nodes": sum(1 for r in rows if r.parent is None),
        "folded_nodes": [r.key for r in rows if r.status == "folded"],
        "flagged": [f"{r.key}: {r.note}" for r in rows if r.status.startswith("control_flow")],
    }


# --- the whole analysis -------------------------------------------------------------------------
def _dag(graph: Graph | None, keys: list[str]) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """Edges between top-level nodes (``keys``) through their tensors, control-flow nodes'
    outer-scope reads included."""
    if graph is None:
        return [], {}
    label_of = {n.label: n for n in graph.nodes}
    producers: dict[str, str] = {}
    for n in graph.nodes:
        for t in n.outputs:
            if t:
                producers[t] = n.label
    edges: list[tuple[str, str]] = []
    for k in keys:
        node = label_of.get(k)
        if node is None:
            continue
        reads = [t for t in node.inputs if t] + graph.outer_inputs(node)
        for t in reads:
            p = producers.get(t)
            if p is not None and p != k:
                edges.append((p, k))
    return edges, producers


def analyze(
    original: Model | None,
    optimized: Model | None,
    trace: TraceSummary,
    roof: Roof,
    power: en.Power | None,
    mapping: Mapping | None = None,
    opts: Options | None = None,
) -> Analysis:
    opts = opts or Options()
    warnings = list(trace.warnings)
    rows, w = trace_rows(optimized, trace, mapping, original)
    warnings += w
    graph = optimized.graph if optimized else None
    top = [r for r in rows if r.parent is None]
    top_keys = [r.key for r in top]
    if graph is not None:  # graph order is a topological order: keep it for ties and reports
        order = {n.label: i for i, n in enumerate(graph.nodes)}
        top_keys.sort(key=lambda k: order.get(k, len(order)))
    edges, _ = _dag(graph, top_keys)
    weights = {r.key: r.time_us or 0.0 for r in top}
    path = critical_path(top_keys, edges, weights)
    on_path = set(path.path)
    serial = path.serial_sum_us
    wall = trace.runs.mean_us or serial
    for r in rows:
        r.on_critical_path = r.key in on_path
        if serial > 0 and r.time_us is not None:
            r.share_of_latency = (r.self_time_us or 0.0) / serial
        seconds = None if r.self_time_us is None else r.self_time_us * 1e-6
        pt = place(
            None if r.flops is None else int(r.flops),
            None if r.bytes_total is None else int(r.bytes_total),
            seconds,
            roof,
        )
        r.arithmetic_intensity, r.attainable_flops = pt.arithmetic_intensity, pt.attainable_flops
        r.achieved_flops, r.pct_of_roof, r.bound = pt.achieved_flops, pt.pct_of_roof, pt.bound
        if r.status == "control_flow":
            r.bound = "control_flow"
        r.energy_j = en.joules(power, seconds)
        r.energy_compute_j, r.energy_data_j = en.split(
            None if r.flops is None else int(r.flops),
            None if r.bytes_total is None else int(r.bytes_total),
            opts.pj_per_flop,
            opts.pj_per_byte,
        )
    total_energy = en.joules(power, wall * 1e-6)
    node_energy = en.joules(power, serial * 1e-6)
    succ: dict[str, list[str]] = {}
    preds: dict[str, int] = {}
    for a, b in edges:
        succ.setdefault(a, []).append(b)
        preds[b] = preds.get(b, 0) + 1
    ordered_top = sorted(top, key=lambda r: top_keys.index(r.key))
    offload = find(
        ordered_top,  # type: ignore[arg-type]
        succ,
        preds,
        serial,
        node_energy,
        opts.accel_speedup,
        opts.offload_threshold,
        opts.min_intensity,
    )
    by_type = _by_op_type(rows, serial)
    orig_rows, orig_summary = static_summary(original) if original else ([], {})
    summary = _summary(rows, trace, path, offload, roof, power, total_energy, wall, opts)
    summary["original_model"] = orig_summary
    summary["total_params"] = (
        orig_summary.get("total_params")
        if original
        else (unique_params(graph) if graph is not None else None)
    )
    if optimized is not None:
        summary["optimized_total_params"] = unique_params(optimized.graph)
    if mapping is not None:
        summary["constant_folded_nodes"] = sorted(
            k for k, f in mapping.fate.items() if f == "folded"
        )
        summary["eliminated_nodes"] = sorted(
            k for k, f in mapping.fate.items() if f == "eliminated"
        )
        summary["inserted_nodes"] = mapping.inserted
    summary["warnings"] = warnings
    return Analysis(rows, orig_rows, summary, path, offload, roof, power, by_type, warnings)


def _by_op_type(rows: Iterable[Row], serial: float) -> list[dict[str, Any]]:
    agg: dict[str, dict[str, Any]] = {}
    for r in rows:
        a = agg.setdefault(
            r.op_type,
            dict(
                op_type=r.op_type,
                nodes=0,
                time_us=0.0,
                energy_j=0.0,
                macs=0.0,
                flops=0.0,
                unknown=False,
            ),  # fmt: skip
        )
        a["nodes"] += 1
        a["time_us"] += r.self_time_us or 0.0
        if r.energy_j is not None:
            a["energy_j"] += r.energy_j
        if r.macs is None or r.flops is None:
            a["unknown"] = True
        else:
            a["macs"] += r.macs
            a["flops"] += r.flops
    out = sorted(agg.values(), key=lambda a: -a["time_us"])
    for a in out:
        a["share_of_latency"] = a["time_us"] / serial if serial > 0 else None
    return out


def _summary(
    rows: list[Row],
    trace: TraceSummary,
    path: PathResult,
    offload: OffloadResult,
    roof: Roof,
    power: en.Power | None,
    total_energy: float | None,
    wall_us: float,
    opts: Options,
) -> dict[str, Any]:
    macs = flops = 0.0
    partial = False
    unknown: dict[str, int] = {}
    unresolved: list[str] = []
    compute_j = data_j = 0.0
    for r in rows:
        if r.status == "unknown_op":
            unknown[r.op_type] = unknown.get(r.op_type, 0) + 1
        elif r.status == "unknown_shape":
            unresolved.append(r.key)
        if r.macs is None or r.flops is None:
            partial = True
        else:
            macs += r.macs
            flops += r.flops
        compute_j += r.energy_compute_j or 0.0
        data_j += r.energy_data_j or 0.0
    providers: dict[str, int] = {}
    for r in rows:
        providers[r.provider] = providers.get(r.provider, 0) + 1
    return {
        "total_macs": round(macs),
        "total_flops": round(flops),
        "totals_partial": partial,
        "unknown_ops": sorted(unknown),
        "unknown_op_nodes": unknown,
        "unresolved_nodes": unresolved,
        "nodes_executed": len(rows),
        "nodes_per_provider": providers,
        "memcpy_nodes": sum(1 for r in rows if r.op_type in MEMCPY_OPS),
        "critical_path_us": path.critical_path_us,
        "serial_sum_us": path.serial_sum_us,
        "parallelism_slack_us": path.slack_us,
        "parallelism": path.parallelism,
        "critical_path": path.path,
        "run_wall_us": wall_us,
        "framework_overhead_us": max(wall_us - path.serial_sum_us, 0.0),
        "trace": trace.to_json(),
        "roof": {
            "peak_flops": roof.peak_flops,
            "mem_bw_bytes_per_s": roof.mem_bw,
            "ridge_flops_per_byte": roof.ridge,
            "source": roof.source,
        },
        "power": None if power is None else power.to_json(),
        "energy_per_inference_j": total_energy,
        "energy_model": {
            "pj_per_flop": opts.pj_per_flop,
            "pj_per_byte": opts.pj_per_byte,
            "compute_j": compute_j,
            "data_movement_j": data_j,
            "source": "Horowitz, ISSCC 2014 (45 nm): doi:10.1109/ISSCC.2014.6757323",
        },
        "offload": {
            "accel_speedup": offload.accel_speedup,
            "threshold": offload.threshold,
            "min_intensity": offload.min_intensity,
            "candidates": [c.name for c in offload.candidates],
            "eligible_chains": offload.eligible,
            "groups": [
                {
                    "op_type": g.op_type,
                    "chains": g.chains,
                    "share_of_latency": g.share_time,
                    "share_of_energy": g.share_energy,
                    "speedup_latency": g.speedup_latency,
                    "speedup_energy": g.speedup_energy,
                }
                for g in offload.groups
            ],
            "set_share_of_latency": offload.set_share_time,
            "set_share_of_energy": offload.set_share_energy,
            "set_speedup_latency": offload.set_speedup_latency,
            "set_speedup_energy": offload.set_speedup_energy,
        },
        "achieved_flops": flops / (wall_us * 1e-6) if wall_us > 0 else None,
    }
