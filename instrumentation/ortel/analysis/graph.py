"""An ONNX model as the analysis sees it: nodes, tensors with shapes and dtypes, constants.

``load_model`` reads the graph without external data (a model over the 2 GB protobuf limit
loads in the memory of its graph, not its weights), resolves dynamic dimensions (``--shape``,
else 1 with a warning), then alternates ONNX shape inference with folding of constant
subgraphs (Constant nodes, Shape of a static tensor, ConstantOfShape, Cast of a weight, …) so
that Reshape targets, computed weights and the like get known shapes. Values are computed for
small constants only; a large constant (a weight cast from float16) is marked constant with
its inferred shape but never materialised.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

MAX_FOLD_ELEMENTS = 1 << 20  # values larger than this are never materialised
SMALL_VALUE_ELEMENTS = 1024  # initializers this small always have their value loaded
FOLD_ROUNDS = 4
# Ops whose output is not a function of their inputs: never folded.
NONDETERMINISTIC = {"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike",
                    "Multinomial", "Bernoulli", "Dropout"}  # fmt: skip
CONTROL_FLOW = {"If", "Loop", "Scan"}
# ONNX TensorProto element types -> bits per element.
DTYPE_BITS = {
    1: 32, 2: 8, 3: 8, 4: 16, 5: 16, 6: 32, 7: 64, 8: 0, 9: 8, 10: 16, 11: 64, 12: 32, 13: 64,
    14: 64, 15: 128, 16: 16, 17: 8, 18: 8, 19: 8, 20: 8, 21: 4, 22: 4, 23: 4, 24: 8,
}  # fmt: skip
DTYPE_NAMES = {
    1: "float", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64",
    8: "string", 9: "bool", 10: "float16", 11: "double", 12: "uint32", 13: "uint64",
    14: "complex64", 15: "complex128", 16: "bfloat16", 17: "float8e4m3fn", 18: "float8e4m3fnuz",
    19: "float8e5m2", 20: "float8e5m2fnuz", 21: "uint4", 22: "int4", 23: "float4e2m1",
}  # fmt: skip
# Names ONNX Runtime writes in its profiles (and onnxruntime type strings) -> element types.
DTYPE_BY_NAME = {v: k for k, v in DTYPE_NAMES.items()} | {
    "float32": 1, "float64": 11, "double": 11, "half": 10, "int64_t": 7, "int32_t": 6,
    "int8_t": 3, "uint8_t": 2, "int16_t": 5, "uint16_t": 4, "uint32_t": 12, "uint64_t": 13,
    "MLFloat16": 10, "BFloat16": 16, "Float8E4M3FN": 17, "Float8E4M3FNUZ": 18, "Float8E5M2": 19,
    "Float8E5M2FNUZ": 20, "UInt4x2": 21, "Int4x2": 22, "Float4E2M1x2": 23,
}  # fmt: skip
FLOAT_TYPES = {1, 10, 11, 16, 17, 18, 19, 20, 23}

Dim = int | str | None
Shape = tuple[Dim, ...]


class ModelError(ValueError):
    """The model or a --shape argument cannot be used (a user error, reported in one line)."""


@dataclass
class TensorInfo:
    shape: Shape | None = None  # None: rank unknown
    dtype: int | None = None  # onnx TensorProto element type
    const: bool = False  # initializer, Constant output or folded
    value: np.ndarray | None = None  # small constants only

    @property
    def static_shape(self) -> tuple[int, ...] | None:
        if self.shape is None or not all(isinstance(d, int) and d >= 0 for d in self.shape):
            return None
        return tuple(int(d) for d in self.shape)  # type: ignore[arg-type]

    @property
    def numel(self) -> int | None:
        s = self.static_shape
        return None if s is None else int(np.prod(s, dtype=np.int64)) if s else 1

    @property
    def nbytes(self) -> int | None:
        n, bits = self.numel, DTYPE_BITS.get(self.dtype or 0)
        if n is None or not bits:
            return None
        return (n * bits + 7) // 8


@dataclass(eq=False)
class Node:
    name: str
    op_type: str
    domain: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any]
    subgraphs: dict[str, Graph] = field(default_factory=dict)
    index: int = 0
    folded: bool = False  # computed at load time from constants: does not run

    @property
    def label(self) -> str:
        return self.name or f"<{self.op_type} #{self.index}>"


@dataclass(eq=False)
class Graph:
    name: str
    nodes: list[Node]
    tensors: dict[str, TensorInfo]
    inputs: list[str]
    outputs: list[str]
    initializers: set[str]
    parent: Graph | None = None
    producers: dict[str, Node] = field(default_factory=dict)
    consumers: dict[str, list[Node]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for n in self.nodes:
            for t in n.outputs:
                if t:
                    self.producers[t] = n
            for t in n.inputs:
                if t:
                    self.consumers.setdefault(t, []).append(n)

    def tensor(self, name: str) -> TensorInfo:
        g: Graph | None = self
        while g is not None:
            if name in g.tensors:
                return g.tensors[name]
            g = g.parent
        return TensorInfo()

    def outer_inputs(self, node: Node) -> list[str]:
        """Tensors from this graph's scope (or outer ones) that ``node``'s subgraphs read."""
        out: list[str] = []
        for sub in node.subgraphs.values():
            local = set(sub.inputs) | sub.initializers | set(sub.producers)
            for n in sub.nodes:
                for t in [*n.inputs, *(x for s in n.subgraphs for x in sub.outer_inputs(n))]:
                    if t and t not in local and t not in out:
                        out.append(t)
        return out

    def walk(self, prefix: str = "") -> Iterator[tuple[str, Node]]:
        """Every node with its path (``loop/body_node`` for subgraph nodes), depth first."""
        for n in self.nodes:
            path = f"{prefix}{n.label}"
            yield path, n
            for sub in n.subgraphs.values():
                yield from sub.walk(path + "/")

    def tensor_names(self) -> set[str]:
        names = set(self.inputs) | set(self.outputs) | self.initializers
        for n in self.nodes:
            names.update(t for t in n.inputs if t)
            names.update(t for t in n.outputs if t)
        return names


@dataclass
class Model:
    path: Path | None
    graph: Graph
    opsets: dict[str, int]
    input_shapes: dict[str, tuple[int, ...]]  # concrete shapes the analysis assumed
    input_dtypes: dict[str, int]
    resolved_dims: dict[str, int]  # symbolic dimension -> value used
    warnings: list[str] = field(default_factory=list)
    producer: str = ""


# --- --shape arguments --------------------------------------------------------------------------
_SHAPE_RE = re.compile(r"^(?P<name>[^=]+)=(?P<dims>\d+(?:x\d+)*|)$")


def parse_shape_args(args: list[str] | tuple[str, ...]) -> dict[str, tuple[int, ...]]:
    """``NAME=1x3x224x224`` (an input's whole shape; ``NAME=`` for a scalar) or ``DIM=8`` (a
    symbolic dimension). Which of the two a name is, the model decides."""
    out: dict[str, tuple[int, ...]] = {}
    for a in args:
        m = _SHAPE_RE.match(a.strip())
        if not m:
            raise ModelError(f"bad --shape {a!r}: expected NAME=1x3x224x224 or DIM=8")
        dims = m.group("dims")
        out[m.group("name").strip()] = tuple(int(d) for d in dims.split("x")) if dims else ()
    return out


# --- loading ------------------------------------------------------------------------------------
def load_model(
    path: str | Path,
    shapes: dict[str, tuple[int, ...]] | None = None,
    *,
    default_dim: int = 1,
    fold: bool = True,
) -> Model:
    import onnx

    path = Path(path)
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except FileNotFoundError:
        raise ModelError(f"{path}: no such file") from None
    except Exception as e:  # protobuf DecodeError and friends
        raise ModelError(f"{path}: not a readable ONNX model ({type(e).__name__}: {e})") from None
    if not proto.graph.node and not proto.graph.output:
        raise ModelError(f"{path}: not an ONNX model (empty graph)")
    return analyse_proto(proto, path.parent, shapes or {}, default_dim, fold, path)


def analyse_proto(
    proto: Any,
    base_dir: Path,
    shapes: dict[str, tuple[int, ...]],
    default_dim: int = 1,
    fold: bool = True,
    path: Path | None = None,
) -> Model:

    opsets = {(o.domain or ""): o.version for o in proto.opset_import}
    warnings: list[str] = []
    work = _light_copy(proto)
    init_names = {t.name for t in proto.graph.initializer}
    input_shapes, input_dtypes, resolved = _resolve_inputs(work, init_names, shapes, default_dim)
    unresolved = sorted(k for k, v in resolved.items() if v < 0)
    for k in unresolved:
        resolved[k] = default_dim
    if unresolved:
        warnings.append(
            f"dynamic dimension(s) {', '.join(unresolved)} set to {default_dim}; "
            "pass --shape DIM=N or --shape INPUT=AxBxC to choose"
        )
    consts = _Constants(proto, base_dir)
    folded: set[int] = set()
    inferred = _infer(work, warnings)
    for _ in range(FOLD_ROUNDS if fold else 0):
        infos = _tensor_infos(inferred.graph)
        new = _fold_round(proto.graph, infos, consts, folded, opsets.get("", 17))
        if not new:
            break
        _inline_constants(work, proto.graph, folded, consts)
        inferred = _infer(work, warnings)
    if _patch_control_flow(work, inferred.graph):
        inferred = _infer(work, warnings)
    infos = _tensor_infos(inferred.graph)
    for name in consts.protos:  # small initializers' values: Loop trip counts, axes, scales
        consts.get(name, limit=SMALL_VALUE_ELEMENTS)
    for name, val in consts.values.items():
        info = infos.setdefault(name, TensorInfo())
        if info.shape is None and val is not None:
            info.shape = tuple(val.shape)
        if info.dtype is None and val is not None:
            info.dtype = _np_to_onnx(val.dtype)
    graph = _build_graph(proto.graph, infos, consts, folded, None, inferred.graph)
    return Model(
        path,
        graph,
        opsets,
        input_shapes,
        input_dtypes,
        {k: v for k, v in resolved.items()},
        warnings,
        f"{proto.producer_name} {proto.producer_version}".strip(),
    )


def _light_copy(proto: Any) -> Any:
    """The model without its large initializers (they become typed graph inputs): shape
    inference serialises the whole model, and it only needs small constants' values."""
    import onnx
    from onnx import helper

    g = proto.graph
    work = onnx.ModelProto()
    work.ir_version = proto.ir_version
    work.opset_import.extend(proto.opset_import)
    work.functions.extend(proto.functions)
    work.graph.name = g.name
    work.graph.node.extend(g.node)
    work.graph.input.extend(g.input)
    work.graph.output.extend(g.output)
    work.graph.value_info.extend(g.value_info)
    declared = {vi.name for vi in g.input}
    for t in g.initializer:
        n = int(np.prod(t.dims, dtype=np.int64))
        if n <= 4096 and t.data_location != onnx.TensorProto.EXTERNAL:
            work.graph.initializer.append(t)
        elif t.name not in declared:
            work.graph.input.append(helper.make_tensor_value_info(t.name, t.data_type, t.dims))
    return work


def _dims(vi: Any) -> Shape | None:
    t = vi.type.tensor_type
    if not t.HasField("shape"):
        return None
    out: list[Dim] = []
    for d in t.shape.dim:
        if d.HasField("dim_value"):
            out.append(int(d.dim_value))
        elif d.HasField("dim_param"):
            out.append(d.dim_param)
        else:
            out.append(None)
    return tuple(out)


def _resolve_inputs(
    work: Any, init_names: set[str], shapes: dict[str, tuple[int, ...]], default_dim: int
) -> tuple[dict[str, tuple[int, ...]], dict[str, int], dict[str, int]]:
    """Make every graph input's shape concrete in ``work``; returns the shapes, dtypes and the
    symbolic dims with their values (-1: not given, the caller applies the default)."""
    inputs = [vi for vi in work.graph.input if vi.name not in init_names]
    names = {vi.name for vi in inputs}
    symbolic = {d for vi in inputs for d in (_dims(vi) or ()) if isinstance(d, str)}
    for k in shapes:
        if k not in names and k not in symbolic:
            known = sorted(names | symbolic)
            raise ModelError(f"--shape {k}: no such input or dimension (known: {', '.join(known)})")
    resolved: dict[str, int] = {}
    for k, v in shapes.items():
        if k in symbolic and k not in names:
            if len(v) != 1:
                raise ModelError(f"--shape {k}: a dimension takes one value, e.g. {k}=8")
            resolved[k] = v[0]
    for vi in inputs:  # a whole-input shape also tells the values of its symbolic dims
        if vi.name not in shapes:
            continue
        dims, given = _dims(vi), shapes[vi.name]
        if dims is not None and len(dims) != len(given):
            raise ModelError(
                f"--shape {vi.name}: input has rank {len(dims)}, got {len(given)} dimensions"
            )
        for d, g in zip(dims or (), given):
            if isinstance(d, int) and d != g:
                raise ModelError(f"--shape {vi.name}: dimension fixed at {d} in the model")
            if isinstance(d, str):
                if resolved.get(d, g) != g:
                    raise ModelError(f"--shape: dimension {d} given two values")
                resolved[d] = g
    out: dict[str, tuple[int, ...]] = {}
    dtypes: dict[str, int] = {}
    for vi in inputs:
        dtypes[vi.name] = vi.type.tensor_type.elem_type
        if vi.name in shapes:
            out[vi.name] = tuple(shapes[vi.name])
            continue
        dims = _dims(vi)
        if dims is None:
            raise ModelError(f"input {vi.name} has no shape in the model: pass --shape")
        concrete = []
        for i, d in enumerate(dims):
            key = d if isinstance(d, str) else f"{vi.name}[{i}]"
            if isinstance(d, int):
                concrete.append(d)
            else:
                concrete.append(resolved.setdefault(key, -1))
        out[vi.name] = tuple(default_dim if d < 0 else d for d in concrete)
    for vi in inputs:
        shape = vi.type.tensor_type.shape
        del shape.dim[:]
        for d in out[vi.name]:
            shape.dim.add().dim_value = d
    return out, dtypes, resolved


def _infer(work: Any, warnings: list[str]) -> Any:
    import onnx

    try:
        return onnx.shape_inference.infer_shapes(work, check_type=False, data_prop=True)
    except Exception as e:  # an op schema ONNX rejects: carry on with what the model declares
        msg = f"ONNX shape inference failed ({type(e).__name__}: {str(e)[:200]}); shapes partial"
        if msg not in warnings:
            warnings.append(msg)
        return work


def _patch_control_flow(work: Any, inferred: Any) -> bool:
    """ONNX shape inference often leaves Loop and If outputs shapeless although the bodies
    declare them: give loop-carried outputs the body's output shape, and If outputs the
    branches' shape when both agree. True if ``work`` gained value_info."""
    from onnx import helper

    known = {vi.name for vi in [*inferred.value_info, *inferred.output] if _dims(vi) is not None}
    added = False
    for n in inferred.node:
        if n.op_type not in ("Loop", "If"):
            continue
        shapes: list[list[tuple[Shape | None, int]]] = []
        for a in n.attribute:
            if a.HasField("g"):
                sub = a.g
                outs = [(_dims(vi), vi.type.tensor_type.elem_type) for vi in sub.output]
                shapes.append(outs[1:] if n.op_type == "Loop" else outs)
        if not shapes:
            continue
        carried = len(n.input) - 2 if n.op_type == "Loop" else len(n.output)
        for k, name in enumerate(n.output[:carried]):
            if not name or name in known:
                continue
            cands = {s[k] for s in shapes if k < len(s)}
            if len(cands) != 1:
                continue
            ((dims, elem),) = cands
            if dims is None or not all(isinstance(d, int) for d in dims):
                continue
            work.graph.value_info.append(helper.make_tensor_value_info(name, elem, list(dims)))
            known.add(name)
            added = True
    return added


def _tensor_infos(g: Any) -> dict[str, TensorInfo]:
    out: dict[str, TensorInfo] = {}
    for vi in [*g.input, *g.output, *g.value_info]:
        if vi.type.HasField("tensor_type"):
            out[vi.name] = TensorInfo(_dims(vi), vi.type.tensor_type.elem_type or None)
    for t in g.initializer:
        out[t.name] = TensorInfo(tuple(int(d) for d in t.dims), t.data_type, const=True)
    return out


def _np_to_onnx(dtype: np.dtype) -> int | None:
    from onnx import helper

    try:
        return int(helper.np_dtype_to_tensor_dtype(np.dtype(dtype)))
    except Exception:
        return None


class _Constants:
    """Values of constants, loaded lazily; external data is read only for small tensors."""

    def __init__(self, proto: Any, base_dir: Path) -> None:
        self.base_dir = base_dir
        self.protos = {t.name: t for t in proto.graph.initializer}
        self.values: dict[str, np.ndarray | None] = {}
        self.const: set[str] = set(self.protos)

    def get(self, name: str, limit: int = MAX_FOLD_ELEMENTS) -> np.ndarray | None:
        if name in self.values:
            return self.values[name]
        t = self.protos.get(name)
        val = None
        if t is not None and int(np.prod(t.dims, dtype=np.int64)) > limit:
            return None  # not cached: a later, larger limit may still load it
        if t is not None:
            from onnx import numpy_helper

            try:
                val = numpy_helper.to_array(t, str(self.base_dir))
            except Exception:  # missing external file, unsupported type: shape is enough
                val = None
        self.values[name] = val
        return val

    def set(self, name: str, value: np.ndarray | None) -> None:
        self.const.add(name)
        self.values[name] = value


def _fold_round(
    g: Any, infos: dict[str, TensorInfo], consts: _Constants, folded: set[int], opset: int
) -> bool:
    """Mark nodes computable from constants; evaluate small ones. True if anything changed."""
    from onnx import numpy_helper

    changed = False
    for i, n in enumerate(g.node):
        if i in folded or n.op_type in CONTROL_FLOW or n.op_type in NONDETERMINISTIC:
            continue
        if n.domain not in ("", "ai.onnx"):
            continue
        ins = [t for t in n.input if t]
        if n.op_type == "Constant":
            value = None
            for a in n.attribute:
                if a.name == "value":
                    value = numpy_helper.to_array(a.t)
                elif a.name in ("value_float", "value_int"):
                    value = np.array(a.f if a.name == "value_float" else a.i)
                elif a.name in ("value_floats", "value_ints"):
                    value = np.array(list(a.floats) if a.name == "value_floats" else list(a.ints))
            consts.set(n.output[0], value)
            folded.add(i)
            changed = True
            continue
        if n.op_type in ("Shape", "Size") and ins:
            s = infos.get(ins[0], TensorInfo()).static_shape
            if s is None:
                continue
            if n.op_type == "Size":
                val = np.array(int(np.prod(s, dtype=np.int64)), np.int64)
            else:
                start, end = 0, len(s)
                for a in n.attribute:
                    if a.name == "start":
                        start = a.i
                    elif a.name == "end":
                        end = a.i
                val = np.array(s[slice(start, end)], np.int64)
            consts.set(n.output[0], val)
            folded.add(i)
            changed = True
            continue
        if not all(t in consts.const for t in ins):
            continue
        values = {t: consts.get(t) for t in ins}
        outs = [t for t in n.output if t]
        big = any((infos.get(t, TensorInfo()).numel or 0) > MAX_FOLD_ELEMENTS for t in outs) or any(
            v is None for v in values.values()
        )
        results: list[np.ndarray | None] = [None] * len(outs)
        if not big:
            results = _evaluate(n, values, opset) or results
        for t, v in zip(outs, results):
            consts.set(t, v if v is None or v.size <= MAX_FOLD_ELEMENTS else None)
        folded.add(i)
        changed = True
    return changed


def _evaluate(node: Any, values: dict[str, np.ndarray | None], opset: int) -> list | None:
    from onnx.reference import ReferenceEvaluator

    try:
        ev = ReferenceEvaluator(node, opsets={"": opset})
        return [np.asarray(v) for v in ev.run(None, values)]
    except Exception:  # an op the reference cannot run: constant, value unknown
        return None


def _inline_constants(work: Any, g: Any, folded: set[int], consts: _Constants) -> None:
    """Rebuild ``work``'s top graph: folded nodes whose outputs have values become
    initializers, so shape inference and data propagation see them."""
    from onnx import numpy_helper

    inputs = {vi.name: vi for vi in work.graph.input}
    keep = []
    new_inits = []
    have = {t.name for t in work.graph.initializer}
    for i, n in enumerate(g.node):
        outs = [t for t in n.output if t]
        if i in folded and all(consts.values.get(t) is not None for t in outs):
            for t in outs:
                if t not in have:
                    new_inits.append(numpy_helper.from_array(np.asarray(consts.values[t]), t))
                    have.add(t)
            continue
        keep.append(n)
    del work.graph.node[:]
    work.graph.node.extend(keep)
    work.graph.initializer.extend(new_inits)
    # value_info of the replaced outputs would now clash with the initializers' own types.
    vis = [vi for vi in work.graph.value_info if vi.name not in have]
    del work.graph.value_info[:]
    work.graph.value_info.extend(vis)
    del inputs


def _attr_value(a: Any) -> Any:
    from onnx import AttributeProto, helper, numpy_helper

    if a.type == AttributeProto.TENSOR:
        return numpy_helper.to_array(a.t)
    if a.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS):
        return None  # subgraphs are built separately
    v = helper.get_attribute_value(a)
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, list):
        return [x.decode("utf-8", "replace") if isinstance(x, bytes) else x for x in v]
    return v


def _build_graph(
    g: Any,
    infos: dict[str, TensorInfo],
    consts: _Constants | None,
    folded: set[int],
    parent: Graph | None,
    inferred: Any,
) -> Graph:
    inferred_nodes = {(n.name, n.op_type, tuple(n.output)): n for n in inferred.node}
    graph = Graph(
        g.name,
        [],
        infos,
        [vi.name for vi in g.input],
        [vi.name for vi in g.output],
        {t.name for t in g.initializer},
        parent,
    )
    if consts is not None:
        for name in consts.const:
            info = infos.setdefault(name, TensorInfo())
            info.const = True
            v = consts.values.get(name)
            if v is not None:
                info.value = v
    for name in graph.initializers:
        infos.setdefault(name, TensorInfo()).const = True
    nodes: list[Node] = []
    for i, n in enumerate(g.node):
        node = Node(
            n.name,
            n.op_type,
            "" if n.domain == "ai.onnx" else n.domain,
            list(n.input),
            list(n.output),
            {a.name: _attr_value(a) for a in n.attribute},
            index=i,
            folded=i in folded,
        )
        twin = inferred_nodes.get((n.name, n.op_type, tuple(n.output)), n)
        for a in n.attribute:
            subs = [a.g] if a.HasField("g") else list(a.graphs)
            twin_attr = next((x for x in twin.attribute if x.name == a.name), a)
            twin_subs = [twin_attr.g] if twin_attr.HasField("g") else list(twin_attr.graphs)
            for j, (sg, tg) in enumerate(zip(subs, twin_subs)):
                key = a.name if len(subs) == 1 else f"{a.name}[{j}]"
                node.subgraphs[key] = _build_graph(sg, _tensor_infos(tg), None, set(), graph, tg)
        nodes.append(node)
    graph.nodes = nodes
    graph.__post_init__()
    return graph
