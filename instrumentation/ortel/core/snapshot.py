"""The snapshot format: the one module that writes, reads, validates and versions it.

An instrumented process hands its state to the daemon as a snapshot file; the daemon keeps the
state of exited processes in an archive of the same format. Layout (little-endian):

    magic   8 bytes  b"ORTELSNP"
    version u16      VERSION
    flags   u16      bits 0-1: the sketch section's integer type: 0 int64, 1 uint32, 2 uint16,
                     3 uint8 (the narrowest that holds the largest count); other bits 0
    meta    u32      length of the JSON document that follows
    meta    JSON     process facts, the distinct bucket bounds and, per series, its labels,
                     nanosecond sums and whatever optional parts it has
    padding          zeros up to a multiple of 8 bytes
    int64[n, 8]      per series: bounds index, window rows, sketch width, sketch offset + 10,000,
                     ok count, error count, items, SLA violations
    int64[]          every series' ok and error buckets, one after the other
    int64[]          every series' window slice keys (rows), concatenated
    int64[rows, 5]   every series' window rows: count, sum_ns, violations, min_ns, max_ns
    int[]            every series' sketch rows (rows x width each), flattened, in the type the
                     flags name, then zeros up to a multiple of 8 bytes
    float64[rows]    every series' window sums of squares

The numbers a series holds in bulk (window slices and their sketches) are raw arrays laid out by
kind across all series, so decoding a snapshot is one JSON parse of a small document plus array
views, and validating it is a few vectorised checks over the whole file, whatever the number of
series. Sketch counts are most of a file and are small numbers (a slice's calls spread over
hundreds of buckets): stored in the narrowest type that holds them, a busy host's daemon reads a
fraction of the bytes. A snapshot is untrusted input: anything malformed raises ``SnapshotError``,
and a file of another format or another version is refused, never misread.
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import catalog as c
from .cardinality import MAX_LABEL_CHARS
from .energy import DEVICES
from .hist import Hist
from .opstate import MAX_OP_SERIES, OperatorState
from .state import GenerationState, SeriesState, Stamped
from .window import COUNT, MAX_NS, MAX_SKETCH_INDEX, MIN_NS, N_INTS, VIOLATIONS, Window

MAGIC = b"ORTELSNP"
VERSION = 2
_HEAD = struct.Struct("<8sHHI")
MAX_FILE_BYTES = 64 * 1024 * 1024  # a snapshot this large is not ours
MAX_INT = 1 << 96  # counts and sums beyond this are not a real process's
MAX_ROWS = 100_000  # window slices of one series
MAX_BOUNDS = 1_000  # histogram bucket bounds of one series
# Largest array value accepted: far beyond any real count, and small enough that no sum the
# checks take (a sketch row, a histogram) can wrap around int64 and pass for another number.
MAX_ARRAY_VALUE = 1 << 47
_I8, _F8 = np.dtype("<i8"), np.dtype("<f8")
# The sketch section's type by flag code, narrowest last; FLAG_SKETCH masks the code.
SKETCH_TYPES: tuple[np.dtype, ...] = (_I8, np.dtype("<u4"), np.dtype("<u2"), np.dtype("<u1"))
FLAG_SKETCH = 0b11


class SnapshotError(ValueError):
    """The file is not a snapshot this version of ortel can read."""


@dataclass
class Snapshot:
    series: list[SeriesState]
    pid: int = 0
    start: int = 0  # process start time in clock ticks since boot, 0 if unknown
    written: float = 0.0
    window_seconds: float = 60.0
    dropped: dict[str, int] = field(default_factory=dict)  # label values sent to __other__
    # Archives only: the snapshot files already merged in, and how many processes it holds.
    absorbed: list[str] = field(default_factory=list)
    exited: int = 0


# -- writing -------------------------------------------------------------------------------------
# Per series, the integers every series has, as one int64 row of the "heads" array.
BOUNDS, ROWS, WIDTH, OFFSET, OK_COUNT, ERROR_COUNT, ITEMS, SLA_VIOLATIONS = range(8)
N_HEAD = 8


def encode(snap: Snapshot) -> bytes:
    metas: list[dict[str, Any]] = []
    bounds: dict[tuple[float, ...], int] = {}  # distinct bucket bounds, stored once
    heads: list[tuple[int, ...]] = []
    hists: list[list[int]] = []
    keys: list[np.ndarray] = []
    wints: list[np.ndarray] = []
    sketches: list[np.ndarray] = []
    sumsq: list[np.ndarray] = []
    for s in snap.series:
        w = s.window.trimmed()
        heads.append(
            (
                bounds.setdefault(s.bounds, len(bounds)),
                len(w),
                w.sketch.shape[1],
                w.offset + MAX_SKETCH_INDEX,  # stored non-negative, like every other integer
                s.ok.count,
                s.error.count,
                s.items,
                s.sla_violations,
            )
        )
        # Sums stay in JSON: integer nanoseconds may outgrow int64 in a long-lived archive.
        m: dict[str, Any] = {
            "model": s.model,
            "provider": s.provider,
            "sums": [s.ok.sum_ns, s.error.sum_ns],
        }
        if s.sla_seconds is not None:
            m["sla_seconds"] = s.sla_seconds
        if s.error_types:
            m["error_types"] = s.error_types
        if s.load is not None:
            m["load"] = [s.load.value, s.load.at]
        if s.first_inference is not None:
            m["first_inference"] = [s.first_inference.value, s.first_inference.at]
        if s.generation is not None:
            m["generation"] = _generation_out(s.generation)
        if s.operators is not None:
            m["operators"] = _operators_out(s.operators)
        if s.flops is not None:
            m["flops"] = s.flops
        if s.block_energy:
            m["block_energy"] = {f"{d}/{src}": j for (d, src), j in s.block_energy.items()}
        metas.append(m)
        hists += [s.ok.counts, s.error.counts]
        keys.append(w.keys)
        wints.append(w.ints.ravel())
        sketches.append(w.sketch.ravel())
        sumsq.append(w.sumsq)
    meta = {
        "pid": snap.pid,
        "start": snap.start,
        "written": snap.written,
        "window_seconds": snap.window_seconds,
        "dropped": snap.dropped,
        "absorbed": snap.absorbed,
        "exited": snap.exited,
        "bounds": [list(b) for b in bounds],
        "series": metas,
    }
    raw = json.dumps(meta, separators=(",", ":")).encode()
    pad = b"\0" * (-(_HEAD.size + len(raw)) % 8)
    parts = [
        np.array(heads, _I8).reshape(-1, N_HEAD),
        np.array([n for h in hists for n in h], _I8),
    ]
    for part, dtype in ((keys, _I8), (wints, _I8)):
        parts.append(_joined(part, dtype))
    sketch = _joined(sketches, _I8)
    top = int(sketch.max()) if sketch.size else 0
    code = max(i for i, t in enumerate(SKETCH_TYPES) if top <= np.iinfo(t).max)
    sketch = sketch.astype(SKETCH_TYPES[code])
    parts += [sketch, np.zeros(-sketch.nbytes % 8, np.uint8), _joined(sumsq, _F8)]
    return b"".join(
        [_HEAD.pack(MAGIC, VERSION, code, len(raw)), raw, pad, *(a.tobytes() for a in parts)]
    )


def _joined(arrays: list[np.ndarray], dtype: np.dtype) -> np.ndarray:
    return np.concatenate(arrays).astype(dtype, copy=False) if arrays else np.zeros(0, dtype)


def write(path: Path, snap: Snapshot) -> None:
    """Write atomically: a reader sees the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(encode(snap))
    os.replace(tmp, path)


# -- reading -------------------------------------------------------------------------------------
def read(path: Path) -> Snapshot:
    """Read and validate a snapshot; raises ``SnapshotError`` (or OSError) otherwise."""
    with open(path, "rb") as f:
        # By its size: read(n) would allocate n bytes up front, whatever the file holds.
        if os.fstat(f.fileno()).st_size > MAX_FILE_BYTES:
            raise SnapshotError("file too large")
        data = f.read()
    if len(data) > MAX_FILE_BYTES:  # grew between the check and the read
        raise SnapshotError("file too large")
    return decode(data)


def version_of(data: bytes | bytearray) -> int | None:
    """The format version a file declares, or None when it is not a snapshot at all."""
    if len(data) >= _HEAD.size and data[:8] == MAGIC:
        return int(_HEAD.unpack_from(data)[1])
    if data[:1] == b"{" and b'"ortel-snapshot"' in data[:4096]:
        return 1  # the JSON snapshots of ortel 0.1
    return None


def decode(data: bytes | bytearray) -> Snapshot:
    version = version_of(data)
    if version is None:
        raise SnapshotError("not an ortel snapshot")
    if version != VERSION:
        newer = "a newer" if version > VERSION else "an older"
        raise SnapshotError(
            f"snapshot format version {version}, written by {newer} ortel; this one reads "
            f"version {VERSION}"
        )
    try:
        # The decoded windows are read-only views into immutable bytes; merging makes new arrays.
        return _decode(bytes(data) if isinstance(data, bytearray) else data)
    except SnapshotError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, RecursionError) as e:
        raise SnapshotError(f"malformed snapshot ({type(e).__name__}: {e})") from None


def _decode(data: bytes) -> Snapshot:
    _, _, flags, meta_len = _HEAD.unpack_from(data)
    if flags & ~FLAG_SKETCH:
        raise SnapshotError(f"unknown flags {flags:#x}")
    sketch_type = SKETCH_TYPES[flags & FLAG_SKETCH]
    body = _HEAD.size + meta_len
    if body > len(data):
        raise SnapshotError("truncated")
    meta = json.loads(data[_HEAD.size : body])
    if not isinstance(meta, dict) or not isinstance(meta["series"], list):
        raise SnapshotError("metadata must be an object with a list of series")
    body += -body % 8
    metas: list[dict] = meta["series"]
    table = meta["bounds"]
    if not isinstance(table, list):
        raise SnapshotError("bounds must be a list")
    all_bounds = [_bounds(b) for b in table]
    n = len(metas)
    if len(data) < body + 8 * N_HEAD * n:
        raise SnapshotError("array section does not match the metadata")
    heads = np.frombuffer(data, _I8, N_HEAD * n, body).reshape(n, N_HEAD)
    if n and (heads.min() < 0 or heads[:, BOUNDS].max() >= len(all_bounds)):
        raise SnapshotError("series heads out of range")
    rows, widths, offsets = heads[:, ROWS], heads[:, WIDTH], heads[:, OFFSET] - MAX_SKETCH_INDEX
    if n and (
        rows.max() > MAX_ROWS
        or widths.max() > 2 * MAX_SKETCH_INDEX + 1
        or ((rows > 0) & ((widths == 0) | (offsets + widths > MAX_SKETCH_INDEX + 1))).any()
    ):
        raise SnapshotError("window shape or sketch index out of range")
    head_list = heads.tolist()
    sizes = [len(all_bounds[h[BOUNDS]]) + 1 for h in head_list]
    n_hist = 2 * sum(sizes)
    n_rows = int(rows.sum())
    n_ints = N_HEAD * n + n_hist + n_rows * (1 + N_INTS)
    n_sketch = int((rows * widths).sum())
    sketch_bytes = n_sketch * sketch_type.itemsize
    sketch_at = body + 8 * n_ints
    sumsq_at = sketch_at + sketch_bytes + (-sketch_bytes % 8)
    if len(data) != sumsq_at + 8 * n_rows:
        raise SnapshotError("array section does not match the metadata")
    if any(data[sketch_at + sketch_bytes : sumsq_at]):
        raise SnapshotError("padding after the sketch section is not zero")
    ints = np.frombuffer(data, _I8, n_ints, body)
    at = N_HEAD * n
    hists = ints[at : at + n_hist]
    at += n_hist
    keys = ints[at : at + n_rows]
    wints = ints[at + n_rows : at + n_rows * (1 + N_INTS)].reshape(n_rows, N_INTS)
    sketch = np.frombuffer(data, sketch_type, n_sketch, sketch_at)
    sumsq = np.frombuffer(data, _F8, n_rows, sumsq_at)
    _check_arrays(ints, heads, sizes, hists, keys, wints, sketch, sumsq)
    series: list[SeriesState] = []
    h = r = k = 0
    hist_list = hists.tolist()
    for m, head, nb in zip(metas, head_list, sizes):
        rows_, width = head[ROWS], head[WIDTH]
        w = Window(
            keys[r : r + rows_],
            wints[r : r + rows_],
            sumsq[r : r + rows_],
            head[OFFSET] - MAX_SKETCH_INDEX,
            sketch[k : k + rows_ * width].reshape(rows_, width),
        )
        ok, err = hist_list[h : h + nb], hist_list[h + nb : h + 2 * nb]
        series.append(_series(m, all_bounds[head[BOUNDS]], head, ok, err, w))
        h, r, k = h + 2 * nb, r + rows_, k + rows_ * width
    return Snapshot(
        series,
        pid=_int(meta["pid"], "pid"),
        start=_int(meta["start"], "start"),
        written=_num(meta["written"], "written"),
        window_seconds=_num(meta["window_seconds"], "window_seconds"),
        dropped=_counts(meta["dropped"]),
        absorbed=_names(meta["absorbed"]),
        exited=_int(meta["exited"], "exited"),
    )


def _check_arrays(
    ints: np.ndarray,
    heads: np.ndarray,
    sizes: list[int],
    hists: np.ndarray,
    keys: np.ndarray,
    wints: np.ndarray,
    sketch: np.ndarray,
    sumsq: np.ndarray,
) -> None:
    """Every array rule, over the whole file at once."""
    # Every count, key, sum and bound is non-negative; every sum of squares finite, >= 0.
    for a in (ints, sketch):
        if len(a) and a.dtype.kind == "i" and (a.min() < 0 or a.max() > MAX_ARRAY_VALUE):
            raise SnapshotError("count out of range")
    if len(sumsq) and not (np.isfinite(sumsq).all() and sumsq.min() >= 0):
        raise SnapshotError("sum of squares must be finite and non-negative")
    if not sizes:
        return
    # Histogram buckets add up to their counts.
    starts = np.cumsum([0, *[s for s in sizes for _ in (0, 1)][:-1]])
    if not np.array_equal(
        np.add.reduceat(hists, starts), heads[:, OK_COUNT : ERROR_COUNT + 1].ravel()
    ):
        raise SnapshotError("histogram count differs from its buckets")
    if not len(keys):
        return
    counts = wints[:, COUNT]
    if not (counts > 0).all():
        raise SnapshotError("a window slice without calls")
    if (wints[:, VIOLATIONS] > counts).any() or (wints[:, MIN_NS] > wints[:, MAX_NS]).any():
        raise SnapshotError("slice has more SLA violations than calls, or min above max")
    rows = heads[:, ROWS]
    widths = np.repeat(heads[:, WIDTH], rows)
    sums = np.add.reduceat(sketch, np.cumsum(widths) - widths, dtype=np.int64)
    if not np.array_equal(sums, counts):
        raise SnapshotError("slice count differs from its sketch")
    ascending = keys[1:] > keys[:-1]
    first_rows = (np.cumsum(rows) - rows)[rows > 0][1:]  # where a new series starts
    ascending[first_rows - 1] = True
    if not ascending.all():
        raise SnapshotError("window slices must ascend")


def _series(
    m: dict,
    bounds: tuple[float, ...],
    head: list[int],
    ok_counts: list[int],
    err_counts: list[int],
    w: Window,
) -> SeriesState:
    sums = m["sums"]
    if not (isinstance(sums, list) and len(sums) == 2):
        raise SnapshotError("sums must be [ok sum_ns, error sum_ns]")
    s = SeriesState(
        _label(m["model"], "model"),
        _label(m["provider"], "provider"),
        bounds,
        None,
        Hist(ok_counts, _int(sums[0], "sum_ns"), head[OK_COUNT]),
        Hist(err_counts, _int(sums[1], "sum_ns"), head[ERROR_COUNT]),
        head[ITEMS],
        {},
        head[SLA_VIOLATIONS],
        None,
        None,
        w,
    )
    # Optional parts: absent unless the process used the feature.
    if len(m) > 3:
        s.sla_seconds = _opt_num(m.get("sla_seconds"), "sla_seconds")
        s.error_types = _counts(m.get("error_types", {}))
        s.load = _stamped_in(m.get("load"))
        s.first_inference = _stamped_in(m.get("first_inference"))
        if (g := m.get("generation")) is not None:
            s.generation = _generation_in(g)
        if (ops := m.get("operators")) is not None:
            s.operators = _operators_in(ops)
        s.flops = _opt_num(m.get("flops"), "flops")
        s.block_energy = _block_energy(m.get("block_energy"))
    return s


# -- the small parts, both ways ------------------------------------------------------------------
def _int(v: object, what: str) -> int:
    if type(v) is not int or v < 0 or v > MAX_INT:
        raise SnapshotError(f"{what} must be a non-negative integer")
    return v


def _num(v: object, what: str) -> float:
    if type(v) is int and abs(v) > MAX_INT:  # math.isfinite would raise OverflowError
        raise SnapshotError(f"{what} is out of range")
    if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v) or v < 0:
        raise SnapshotError(f"{what} must be a non-negative number")
    return float(v)


def _opt_num(v: object, what: str) -> float | None:
    return None if v is None else _num(v, what)


def _label(v: object, what: str) -> str:
    # Writers store label values as the shim cleaned them (cardinality.clean_label): valid UTF-8,
    # cut to MAX_LABEL_CHARS. Anything else was not written by ortel.
    if not isinstance(v, str) or len(v) > MAX_LABEL_CHARS:
        raise SnapshotError(f"{what} must be a string of at most {MAX_LABEL_CHARS} characters")
    if not v.isascii():
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            raise SnapshotError(f"{what} is not valid UTF-8") from None
    return v


def _counts(v: object) -> dict[str, int]:
    if not isinstance(v, dict):
        raise SnapshotError("expected an object of counts")
    return {_label(k, "name"): _int(n, "count") for k, n in v.items()}


def _names(v: object) -> list[str]:
    if not (isinstance(v, list) and all(isinstance(n, str) for n in v)):
        raise SnapshotError("absorbed must be a list of file names")
    return v


def _bounds(v: object) -> tuple[float, ...]:
    if not isinstance(v, list) or len(v) > MAX_BOUNDS:
        raise SnapshotError(f"bucket bounds must be a list of at most {MAX_BOUNDS}")
    bounds = tuple(_num(b, "bucket bound") for b in v)
    if not bounds or list(bounds) != sorted(set(bounds)):
        raise SnapshotError("bucket bounds must be increasing")
    return bounds


def _hist(counts: list[int], sums: object) -> Hist:
    if not (isinstance(sums, list) and len(sums) == 2):
        raise SnapshotError("histogram totals must be [sum_ns, count]")
    h = Hist(counts, _int(sums[0], "sum_ns"), _int(sums[1], "count"))
    if sum(counts) != h.count:
        raise SnapshotError("histogram count differs from its buckets")
    return h


def _hist_out(h: Hist) -> list:
    return [h.counts, h.sum_ns, h.count]


def _hist_in(v: object, n_buckets: int) -> Hist:
    if not (isinstance(v, list) and len(v) == 3 and isinstance(v[0], list)):
        raise SnapshotError("histogram must be [counts, sum_ns, count]")
    if len(v[0]) != n_buckets:
        raise SnapshotError("histogram has the wrong number of buckets")
    return _hist([_int(x, "bucket count") for x in v[0]], v[1:])


def _stamped_in(v: object) -> Stamped | None:
    if v is None:
        return None
    if not (isinstance(v, list) and len(v) == 2):
        raise SnapshotError("stamped value must be [value, at]")
    return Stamped(_num(v[0], "value"), _num(v[1], "timestamp"))


def _generation_out(g: GenerationState) -> dict:
    return {
        "ttft": _hist_out(g.ttft),
        "itl": _hist_out(g.itl),
        "tokens": [g.generated_tokens, g.prompt_tokens],
    }


def _generation_in(v: object) -> GenerationState:
    if not isinstance(v, dict):
        raise SnapshotError("generation must be an object")
    tokens = v["tokens"]
    if not (isinstance(tokens, list) and len(tokens) == 2):
        raise SnapshotError("generation tokens must be [generated, prompt]")
    return GenerationState(
        _hist_in(v["ttft"], len(c.TTFT_BUCKETS) + 1),
        _hist_in(v["itl"], len(c.TPOT_BUCKETS) + 1),
        _int(tokens[0], "generated tokens"),
        _int(tokens[1], "prompt tokens"),
    )


def _operators_out(o: OperatorState) -> dict:
    return {
        "hists": [[op, p, _hist_out(h)] for (op, p), h in sorted(o.hists.items())],
        "samples": o.samples,
        "nodes": o.nodes,
        "memcpy": o.memcpy,
        "at": o.at,
    }


def _operators_in(v: object) -> OperatorState:
    if not isinstance(v, dict):
        raise SnapshotError("operators must be an object")
    n = len(c.OPERATOR_DURATION.buckets or ()) + 1
    hists, nodes = v["hists"], v["nodes"]
    if not isinstance(hists, list) or len(hists) > MAX_OP_SERIES + 64:
        raise SnapshotError("operators: hists must be a list of [op_type, provider, histogram]")
    if not isinstance(nodes, dict) or len(nodes) > 64:
        raise SnapshotError("operators: nodes must map providers to counts")
    out = OperatorState(
        samples=_int(v["samples"], "samples"),
        nodes={_label(k, "provider"): _int(n, "node count") for k, n in nodes.items()},
        memcpy=_int(v["memcpy"], "memcpy"),
        at=_num(v["at"], "at"),
    )
    for item in hists:
        if not (isinstance(item, list) and len(item) == 3):
            raise SnapshotError("operators: hists must be a list of [op_type, provider, histogram]")
        key = (_label(item[0], "op_type"), _label(item[1], "provider"))
        out.hists[key] = _hist_in(item[2], n)
    return out


def _block_energy(v: object) -> dict[tuple[str, str], float]:
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise SnapshotError("block_energy must map device/source to joules")
    out: dict[tuple[str, str], float] = {}
    for k, j in v.items():
        device, sep, source = _label(k, "block_energy key").partition("/")
        if not sep or device not in DEVICES or source not in ("measured", "estimated"):
            raise SnapshotError(f"block_energy key {k!r} is not a device/measured|estimated")
        out[(device, source)] = _num(j, "block_energy joules")
    return out
