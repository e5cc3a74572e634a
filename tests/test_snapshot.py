"""The snapshot codec: exact round trips, refusal of other formats and versions, and validation
of untrusted files (anything malformed is a SnapshotError, never another exception)."""

from __future__ import annotations

import contextlib
import copy
import json
import math
import struct
from collections.abc import Callable, Iterator

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ortel.core import catalog as c
from ortel.core import snapshot
from ortel.core.cardinality import MAX_LABEL_CHARS
from ortel.core.hist import Hist
from ortel.core.opstate import OperatorSample, OperatorState
from ortel.core.sketch import index_of
from ortel.core.snapshot import MAGIC, VERSION, Snapshot, SnapshotError, decode, encode
from ortel.core.state import GenerationState, SeriesState, Stamped, readings
from ortel.core.window import MAX_SKETCH_INDEX, N_INTS, VIOLATIONS, Window

HYPOTHESIS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NOW = 1_000.0
BOUNDS = (0.001, 0.01, 0.1, 1.0)
HEAD = struct.Struct("<8sHHI")


# --- building states and taking encodings apart ------------------------------------------------


def add_calls(w: Window, key: int, seconds: list[float], sla: float | None = None) -> None:
    for secs in seconds:
        ns = round(secs * 1e9)
        viol = int(sla is not None and secs > sla)
        w.add(key, (1, ns, viol, ns, ns), secs * secs, index_of(secs), np.array([1]))


def series(model: str = "resnet", provider: str = "cpu", calls: int = 3) -> SeriesState:
    """A plain state: ``calls`` ok calls in slice 200 (and none outside)."""
    s = SeriesState(model, provider, BOUNDS, 0.5)
    secs = [0.05 * (i + 1) for i in range(calls)]
    for x in secs:
        s.ok.counts[int(np.searchsorted(BOUNDS, x))] += 1
        s.ok.sum_ns += round(x * 1e9)
        s.ok.count += 1
    add_calls(s.window, 200, secs, s.sla_seconds)
    s.sla_violations = int(s.window.ints[:, VIOLATIONS].sum())
    return s


def rich_series() -> SeriesState:
    """Every field set: several rows, a sketch a few thousand indices wide, generation,
    operators, energy blocks, FLOPs, gauges and error types."""
    s = series()
    s.error = Hist([0, 1, 0, 2, 0], 2_500_000_000, 3)
    s.error_types = {"TimeoutError": 2, "ValueError": 1}
    s.items = 17
    s.load = Stamped(1.5, 990.0)
    s.first_inference = Stamped(0.25, 991.25)
    add_calls(s.window, 150, [1e-6, 2e-6])  # 1 µs ...
    add_calls(s.window, 199, [100.0, 3.0, 0.004], s.sla_seconds)  # ... 100 s
    add_calls(s.window, 189, [0.02])
    g = GenerationState(generated_tokens=120, prompt_tokens=30)
    g.ttft = Hist([1] + [0] * (len(c.TTFT_BUCKETS) - 1) + [2], 9_000_000_000, 3)
    g.itl.counts[2] = g.itl.count = 119
    g.itl.sum_ns = 119 * 20_000_000
    s.generation = g
    ops = OperatorState()
    ops.add(
        OperatorSample([("Conv", "cpu", 1_000), ("MatMul", "cuda", 50_000)], {"cpu": 4}, 2, 9.5)
    )
    ops.add(OperatorSample([("Conv", "cpu", 3_000)], {"cpu": 4, "cuda": 7}, 1, 12.0))
    s.operators = ops
    s.flops = 4.5e9
    s.block_energy = {("cpu", "measured"): 10.0, ("gpu", "estimated"): 2.5}
    return s


def rich_snapshot() -> Snapshot:
    return Snapshot(
        [rich_series(), series("bert", "cuda", 1), SeriesState("idle", "cpu")],
        pid=4242,
        start=987654,
        written=1_700_000_000.5,
        window_seconds=60.0,
        dropped={"model": 3, "provider": 0},
        absorbed=["ortel-1-2.snap", "ortel-3-4.snap"],
        exited=2,
    )


@contextlib.contextmanager
def int64_sketches() -> Iterator[None]:
    """Encode with the int64 sketch section (flags 0), the layout the tests below edit by hand;
    ``encode`` otherwise picks the narrowest type that holds the counts."""
    saved = snapshot.SKETCH_TYPES
    snapshot.SKETCH_TYPES = saved[:1]
    try:
        yield
    finally:
        snapshot.SKETCH_TYPES = saved


def split(data: bytes) -> tuple[dict, bytes]:
    """The metadata document and the raw array section of an encoding (layout per the module
    docstring: header, JSON, zero padding to 8 bytes, arrays)."""
    magic, version, flags, n = HEAD.unpack_from(data)
    assert (magic, version, flags) == (MAGIC, VERSION, 0)
    body = HEAD.size + n
    return json.loads(data[HEAD.size : body]), data[body + (-body % 8) :]


def join(meta: object, arrays: bytes, version: int = VERSION) -> bytes:
    """``split`` reversed: any metadata, the same arrays."""
    raw = json.dumps(meta, separators=(",", ":"), allow_nan=True).encode()
    pad = b"\0" * (-(HEAD.size + len(raw)) % 8)
    return HEAD.pack(MAGIC, version, 0, len(raw)) + raw + pad + arrays


def encoded(*states: SeriesState) -> bytes:
    with int64_sketches():
        return encode(Snapshot(list(states), pid=7, start=8, written=NOW))


VALID = encoded(series())
with int64_sketches():
    RICH = encode(Snapshot([rich_series(), series("bert", "cuda", 2)], pid=1, absorbed=["x"]))
VALID_META, VALID_ARRAYS = split(VALID)


def meta_edit(edit: Callable[[dict], object], data: bytes = VALID) -> bytes:
    meta, arrays = split(data)
    edit(meta)
    return join(meta, arrays)


def set_meta(path: tuple, value: object) -> bytes:
    def edit(meta: dict) -> None:
        node = meta
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = value

    return meta_edit(edit)


def with_window(keys: list[int], ints: list[list[int]], sumsq: list[float], sketch) -> bytes:
    """A state whose window holds exactly these columns (sketch offset 0), encoded as it is:
    ``encode`` does not validate."""
    s = series()
    s.window = Window(
        np.array(keys, np.int64),
        np.array(ints, np.int64).reshape(len(keys), N_INTS),
        np.array(sumsq, np.float64),
        0,
        np.array(sketch, np.int64).reshape(len(keys), -1),
    )
    return encoded(s)


def decodes_or_rejects(data: bytes) -> Snapshot | None:
    """``decode`` either raises SnapshotError or gives a snapshot that is usable throughout."""
    try:
        snap = decode(data)
    except SnapshotError:
        return None
    assert decode(encode(snap)) == snap
    for s in snap.series:
        list(readings([s], NOW))  # anything accepted must also be reportable
        s.copy().merge(s)
    return snap


# --- the helpers themselves --------------------------------------------------------------------


def test_split_and_join_reproduce_an_encoding():
    with int64_sketches():
        data = encode(rich_snapshot())
    assert join(*split(data)) == data
    assert VALID_META["pid"] == 7 and len(VALID_META["series"]) == 1
    (s,) = decode(with_window([200], [[1, 5, 0, 5, 5]], [0.0], [[1]])).series
    assert s.window.keys.tolist() == [200] and s.window.sketch.tolist() == [[1]]


@pytest.mark.parametrize(
    ("top", "code"), [(1, 3), (255, 3), (256, 2), (65_535, 2), (65_536, 1), (2**32, 0)]
)
def test_the_sketch_section_takes_the_narrowest_type_that_holds_it(top, code):
    s = series()
    s.window = Window(
        np.array([200], np.int64),
        np.array([[top + 1, 5 * (top + 1), 0, 5, 5]], np.int64),
        np.array([0.0]),
        3,
        np.array([[top, 0, 0, 1]], np.int64),  # odd widths: the section is padded to 8 bytes
    )
    data = encode(Snapshot([s], pid=7))
    assert HEAD.unpack_from(data)[2] == code
    (back,) = decode(data).series
    assert back == s and back.window.sketch.dtype == snapshot.SKETCH_TYPES[code]
    merged = back.copy()
    merged.merge(back)  # a narrow decoded sketch becomes int64 before anything adds to it
    assert merged.window.sketch.dtype == np.int64
    assert merged.window.sketch.tolist() == [[2 * top, 0, 0, 2]]


def test_unknown_flags_and_dirty_padding_are_refused():
    data = encode(Snapshot([series()], pid=7))
    flags = HEAD.unpack_from(data)[2]
    assert flags != 0  # a few calls per bucket: a narrow type
    bad = bytearray(data)
    struct.pack_into("<H", bad, 10, flags | 0b100)
    with pytest.raises(SnapshotError, match="unknown flags"):
        decode(bytes(bad))
    w = decode(data).series[0].window
    assert w.sketch.nbytes % 8  # so the section is padded
    pad_end = len(data) - 8 * len(w)  # the zero padding ends where the sums of squares start
    dirty = bytearray(data)
    dirty[pad_end - 1] = 1
    with pytest.raises(SnapshotError, match="padding"):
        decode(bytes(dirty))


# --- round trips ---------------------------------------------------------------------------------


def test_a_snapshot_with_every_field_round_trips_exactly():
    snap = rich_snapshot()
    back = decode(encode(snap))
    assert back == snap
    rich = back.series[0]
    assert rich.generation == snap.series[0].generation and rich.generation is not None
    assert rich.operators == snap.series[0].operators
    assert rich.operators.hists[("MatMul", "cuda")].count == 1
    assert (rich.operators.nodes, rich.operators.memcpy, rich.operators.at) == (
        {"cpu": 4, "cuda": 7},
        1,
        12.0,
    )
    assert rich.block_energy == {("cpu", "measured"): 10.0, ("gpu", "estimated"): 2.5}
    assert (rich.flops, rich.sla_seconds, rich.items) == (4.5e9, 0.5, 17)
    assert (rich.load, rich.first_inference) == (Stamped(1.5, 990.0), Stamped(0.25, 991.25))
    assert rich.error_types == {"TimeoutError": 2, "ValueError": 1}
    assert rich.window.keys.tolist() == [150, 189, 199, 200]
    assert rich.window.sketch.shape[1] > 1800  # 1 µs ... 100 s
    assert rich.window.sumsq.tolist() == snap.series[0].window.sumsq.tolist()  # bit for bit
    assert (back.pid, back.start, back.written, back.window_seconds) == (
        4242,
        987654,
        1.7e9 + 0.5,
        60,
    )
    assert (back.dropped, back.absorbed, back.exited) == (
        {"model": 3, "provider": 0},
        ["ortel-1-2.snap", "ortel-3-4.snap"],
        2,
    )
    assert encode(back) == encode(snap)  # deterministic


def test_empty_snapshots_and_empty_windows_round_trip():
    assert decode(encode(Snapshot([]))) == Snapshot([])
    idle = SeriesState("m", "p")
    back = decode(encode(Snapshot([idle])))
    assert back.series == [idle]
    assert len(back.series[0].window) == 0 and back.series[0].window.sketch.size == 0
    assert back.series[0].generation is None and back.series[0].operators is None


def test_readings_of_a_decoded_snapshot_equal_the_originals():
    snap = rich_snapshot()
    back = decode(encode(snap))
    assert list(readings(back.series, NOW)) == list(readings(snap.series, NOW))


def test_a_window_is_encoded_trimmed():
    s = series()
    s.window.add(200, (1, 5, 0, 5, 5), 0.0, -100, np.array([0, 0, 1, 0, 0]))  # padded columns
    wide = s.window.sketch.shape[1]
    back = decode(encode(Snapshot([s]))).series[0]
    assert back == s
    assert back.window.sketch.shape[1] < wide and back.window.sketch[:, 0].any()
    assert back.window.sketch[:, -1].any()


@pytest.mark.parametrize("kind", [bytes, bytearray])
def test_merging_into_a_decoded_state_never_writes_into_the_input(kind):
    data = kind(encoded(series()))
    original = bytes(data)
    (s,) = decode(data).series
    s.merge(series())
    assert bytes(data) == original  # the caller's buffer is not the decoded state's storage
    assert s.ok.count == 6 and s.window.ints[0, 0] == 6
    assert decode(original).series == [series()]


def test_a_decoded_state_is_independent_of_a_buffer_changed_later():
    data = bytearray(encoded(series()))
    (s,) = decode(data).series
    data[len(data) - 64 :] = bytes(64)
    assert s == series()


def test_write_is_atomic_and_read_returns_what_was_written(tmp_path):
    path = tmp_path / "ortel-1-2.snap"
    snapshot.write(path, rich_snapshot())
    snapshot.write(path, rich_snapshot())  # replaces
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left
    assert snapshot.read(path) == rich_snapshot()
    assert path.read_bytes() == encode(rich_snapshot())


def test_read_refuses_a_file_too_large(tmp_path, monkeypatch):
    path = tmp_path / "big.snap"
    path.write_bytes(VALID)
    monkeypatch.setattr(snapshot, "MAX_FILE_BYTES", len(VALID) - 1)
    with pytest.raises(SnapshotError, match="too large"):
        snapshot.read(path)
    monkeypatch.setattr(snapshot, "MAX_FILE_BYTES", len(VALID))
    assert snapshot.read(path).pid == 7


def test_read_of_a_missing_file_is_an_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        snapshot.read(tmp_path / "absent.snap")


def test_encode_does_not_validate():
    bad = series()
    bad.window = Window(
        np.array([200]), np.array([[1, 10, 0, 20, 10]]), np.array([0.0]), 0, np.array([[1]])
    )
    data = encode(Snapshot([bad]))  # min above max: written as it is...
    with pytest.raises(SnapshotError, match="min above max"):
        decode(data)  # ...and refused on the way in


# --- other formats and versions ------------------------------------------------------------------

V1 = json.dumps(
    {
        "format": "ortel-snapshot",
        "version": 1,
        "pid": 7,
        "start": 8,
        "written": NOW,
        "window_seconds": 60.0,
        "series": [],
    }
).encode()


def test_version_of():
    assert snapshot.version_of(VALID) == VERSION == 2
    assert snapshot.version_of(V1) == 1
    assert snapshot.version_of(b'{"series": [], "format": "ortel-snapshot"}') == 1
    assert snapshot.version_of(join(VALID_META, VALID_ARRAYS, 7)) == 7
    for data in (b"", b"{}", MAGIC, MAGIC + b"\x02\x00", b"[1, 2]", b"\x89PNG\r\n\x1a\n" * 4):
        assert snapshot.version_of(data) is None
    assert snapshot.version_of(bytearray(VALID)) == VERSION


def test_the_json_snapshots_of_ortel_0_1_are_refused_as_an_older_version():
    with pytest.raises(SnapshotError, match=r"version 1, written by an older ortel.*version 2"):
        decode(V1)


@pytest.mark.parametrize("version", [VERSION + 1, 0xFFFF])
def test_a_newer_version_is_refused(version):
    data = join(VALID_META, VALID_ARRAYS, version)
    with pytest.raises(SnapshotError, match=rf"version {version}, written by a newer ortel"):
        decode(data)


def test_an_older_binary_version_is_refused():
    with pytest.raises(SnapshotError, match="version 0, written by an older ortel"):
        decode(join(VALID_META, VALID_ARRAYS, 0))


@pytest.mark.parametrize(
    "data",
    [b"", b"{}", b"[]", b"hello", MAGIC, MAGIC + b"\x02\x00\x00\x00", b"ORTELSNQ" + VALID[8:]],
    ids=["empty", "object", "list", "text", "magic only", "short header", "wrong magic"],
)
def test_non_snapshots_are_refused(data):
    with pytest.raises(SnapshotError, match="not an ortel snapshot"):
        decode(data)


def test_snapshot_error_is_a_value_error():
    assert issubclass(SnapshotError, ValueError)


# --- structural checks ---------------------------------------------------------------------------
# Bad snapshots are made by encoding bad states (``encode`` does not validate), so each case names
# the rule it breaks whatever the layout; byte-level damage is done to a valid encoding.

WRAPS = (1 << 63) - 1
ROW = [1, 5, 0, 5, 5]  # one call of 5 ns
VALID_META_LEN = HEAD.unpack_from(VALID)[3]


def _meta_bytes(raw: bytes) -> bytes:
    pad = b"\0" * (-(HEAD.size + len(raw)) % 8)
    return HEAD.pack(MAGIC, VERSION, 0, len(raw)) + raw + pad + VALID_ARRAYS


def _edit(s: object, path: tuple, value: object) -> None:
    node = s
    for k in path[:-1]:
        node = node[k] if isinstance(k, (int, tuple)) else getattr(node, k)  # type: ignore[index]
    if isinstance(path[-1], (int, tuple)):
        node[path[-1]] = value  # type: ignore[index]
    else:
        setattr(node, path[-1], value)


def _state(*path_value: object, base: Callable[[], SeriesState] = series) -> bytes:
    """A state with one field changed (attributes by name, items by index or key), encoded."""
    *path, value = path_value
    s = base()
    _edit(s, tuple(path), value)
    return encoded(s)


def _rich(*path_value: object) -> bytes:
    return _state(*path_value, base=rich_series)


def _snap(**change: object) -> bytes:
    return encode(Snapshot([series()], **change))  # type: ignore[arg-type]


def _two_rows(**change: object) -> bytes:
    """Two valid slices, 199 and 200, with some columns replaced."""
    cols: dict = {"keys": [199, 200], "ints": [ROW, ROW], "sumsq": [0.0, 0.0]}
    cols["sketch"] = [[1, 0], [0, 1]]
    cols.update(change)
    return with_window(cols["keys"], cols["ints"], cols["sumsq"], cols["sketch"])


def _wide(rows: int, width: int, offset: int = 0) -> bytes:
    s = series()
    ints = np.tile(np.array(ROW, np.int64), (rows, 1))
    sketch = np.zeros((rows, width), np.int64)
    sketch[:, 0] = 1
    sketch[:, -1] += 1
    ints[:, 0] = sketch.sum(axis=1)
    s.window = Window(np.arange(rows, dtype=np.int64), ints, np.zeros(rows), offset, sketch)
    return encoded(s)


def _bad_arrays() -> dict[str, bytes]:
    return {
        "negative window key": _two_rows(keys=[-200, 200]),
        "negative sketch count": _two_rows(sketch=[[2, -1], [0, 1]]),
        "negative slice count": _two_rows(ints=[ROW, [-1, 5, 0, 5, 5]], sketch=[[1, 0], [0, -1]]),
        "negative slice sum": _two_rows(ints=[ROW, [1, -5, 0, 5, 5]]),
        "negative slice violations": _two_rows(ints=[ROW, [1, 5, -1, 5, 5]]),
        "negative slice min": _two_rows(ints=[ROW, [1, 5, 0, -5, 5]]),
        "nan sumsq": _two_rows(sumsq=[0.0, math.nan]),
        "inf sumsq": _two_rows(sumsq=[math.inf, 0.0]),
        "negative sumsq": _two_rows(sumsq=[0.0, -1e-9]),
        "keys not ascending": _two_rows(keys=[200, 199]),
        "duplicate keys": _two_rows(keys=[200, 200]),
        "slice count above its sketch": _two_rows(ints=[ROW, [2, 5, 0, 5, 5]]),
        "sketch above slice count": _two_rows(sketch=[[1, 1], [0, 1]]),
        # Sums to 1 modulo 2**64: an int64 row sum equals the count.
        "sketch row sum wraps around int64": _two_rows(sketch=[[1, 0, 0], [WRAPS, WRAPS, 3]]),
        "slice without calls": _two_rows(ints=[ROW, [0] * 5], sketch=[[1], [0]]),
        "violations above count": _two_rows(ints=[ROW, [1, 5, 2, 5, 5]]),
        "min above max": _two_rows(ints=[[1, 5, 0, 6, 5], ROW]),
        "rows beyond MAX_ROWS": _wide(snapshot.MAX_ROWS + 1, 1),
        "sketch wider than the index range": _wide(1, 2 * MAX_SKETCH_INDEX + 2, -MAX_SKETCH_INDEX),
        "sketch below the index range": _wide(2, 3, -MAX_SKETCH_INDEX - 1),
        "sketch above the index range": _wide(2, 3, MAX_SKETCH_INDEX - 1),
        "negative bucket count": _state("ok", "counts", 0, -1),
        "negative error bucket": _state("error", "counts", 4, -5),
        "ok buckets above count": _state("ok", "counts", 0, 9),
        "ok count above buckets": _state("ok", "count", 4),
        "ok count negative": _state("ok", "count", -3),
        "error buckets above count": _state("error", "counts", 0, 1),
        "ok sum negative": _state("ok", "sum_ns", -1),
        "items negative": _state("items", -1),
        "sla violations negative": _state("sla_violations", -1),
    }


def _bad_bytes() -> dict[str, bytes]:
    return {
        "truncated by one word": VALID[:-8],
        "truncated by one byte": VALID[:-1],
        "truncated in the metadata": VALID[: HEAD.size + 10],
        "truncated after the metadata": VALID[: HEAD.size + VALID_META_LEN],
        "truncated to the header": VALID[: HEAD.size],
        "extended by one word": VALID + bytes(8),
        "extended by one byte": VALID + b"\0",
        "metadata length beyond the file": HEAD.pack(MAGIC, VERSION, 0, len(VALID))
        + VALID[HEAD.size :],
        "metadata length short": HEAD.pack(MAGIC, VERSION, 0, VALID_META_LEN - 1)
        + VALID[HEAD.size :],
        "metadata not json": _meta_bytes(b"{nope"),
        "metadata not utf-8": _meta_bytes(b'{"series": [], "pid": "\xff\xfe"}'),
        "metadata a list": _meta_bytes(b"[]"),
        "metadata a number": _meta_bytes(b"3"),
        "metadata empty object": _meta_bytes(b"{}"),
        "deep nesting": _meta_bytes(b"[" * 100_000),
        "series not a list": set_meta(("series",), {"a": 1}),
        "series item a number": set_meta(("series", 0), 3),
        "series item a list": set_meta(("series", 0), [1, 2]),
        "one series more than the arrays": meta_edit(lambda m: m["series"].append(m["series"][0])),
        "many series, no arrays": meta_edit(lambda m: m["series"].extend([m["series"][0]] * 999)),
        "one series less than the arrays": meta_edit(lambda m: m["series"].pop()),
    }


OP_HIST = Hist.empty(c.OPERATOR_DURATION.buckets or ())
BAD_BLOCK_ENERGY = {
    "empty source": {("cpu", ""): 1.0},
    "source with a slash": {("cpu", "measured/x"): 1.0},
    "unknown source": {("cpu", "guessed"): 1.0},
    "unknown device": {("tpu", "measured"): 1.0},
    "negative joules": {("cpu", "measured"): -1.0},
    "nan joules": {("cpu", "measured"): math.nan},
    "joules a string": {("cpu", "measured"): "1"},
}


def _bad_fields() -> dict[str, bytes]:
    n_ttft, n_itl = len(c.TTFT_BUCKETS) + 1, len(c.TPOT_BUCKETS) + 1
    bad = {
        "negative pid": _snap(pid=-1),
        "pid a float": _snap(pid=7.0),
        "start a string": _snap(start="8"),
        "written nan": _snap(written=math.nan),
        "written infinite": _snap(written=math.inf),
        "written beyond float": _snap(written=10**400),
        "window seconds negative": _snap(window_seconds=-60.0),
        "dropped negative": _snap(dropped={"model": -3}),
        "dropped a list": _snap(dropped=[1]),
        "dropped label huge": _snap(dropped={"m" * 5000: 1}),
        "absorbed not a list": _snap(absorbed=5),
        "absorbed not names": _snap(absorbed=[[1], {"a": 1}]),
        "exited negative": _snap(exited=-1),
        "exited beyond the limit": _snap(exited=snapshot.MAX_INT + 1),
        "exited a bool": _snap(exited=True),
        "sla nan": _state("sla_seconds", math.nan),
        "sla negative": _state("sla_seconds", -0.5),
        "sla a string": _state("sla_seconds", "0.5"),
        "bounds empty": _state("bounds", ()),
        "bounds decreasing": _state("bounds", (1.0, 0.1, 0.01, 0.001)),
        "bounds repeated": _state("bounds", (0.001, 0.01, 0.01, 1.0)),
        "bound negative": _state("bounds", (-1.0, 0.01, 0.1, 1.0)),
        "bound nan": _state("bounds", (0.001, math.nan, 0.1, 1.0)),
        "bound a string": _state("bounds", ("0.001", 0.01, 0.1, 1.0)),
        "bound beyond float": _state("bounds", (0.001, 0.01, 0.1, 10**400)),
        "fewer bounds than buckets": _state("bounds", (0.001, 0.01, 0.1)),
        "model a number": _state("model", 7),
        "model huge": _state("model", "m" * 100_000),
        "provider huge": _state("provider", "p" * 100_000),
        "provider none": _state("provider", None),
        "error type huge": _state("error_types", {"E" * 100_000: 1}),
        "error count negative": _state("error_types", {"E": -1}),
        "error count a float": _state("error_types", {"E": 1.5}),
        "error types a list": _state("error_types", [1]),
        "load negative": _state("load", Stamped(-1.0, 5.0)),
        "load timestamp nan": _state("load", Stamped(1.0, math.nan)),
        "first inference infinite": _state("first_inference", Stamped(math.inf, 1.0)),
        "flops negative": _state("flops", -1.0),
        "flops a string": _state("flops", "4e9"),
        "flops nan": _state("flops", math.nan),
        "ttft wrong bucket count": _rich("generation", "ttft", Hist([0], 0, 0)),
        "ttft count above buckets": _rich("generation", "ttft", Hist([0] * n_ttft, 0, 1)),
        "itl bucket negative": _rich("generation", "itl", Hist([-1] + [0] * (n_itl - 1), 0, -1)),
        "itl sum negative": _rich("generation", "itl", "sum_ns", -5),
        "generated tokens negative": _rich("generation", "generated_tokens", -1),
        "prompt tokens a float": _rich("generation", "prompt_tokens", 2.5),
        "operators hist wrong buckets": _rich(
            "operators", "hists", ("Conv", "cpu"), Hist([1], 0, 1)
        ),
        "operators hist count above": _rich("operators", "hists", ("Conv", "cpu"), "count", 99),
        "operators op type huge": _rich("operators", "hists", ("x" * 5000, "cpu"), OP_HIST),
        "operators too many hists": _rich(
            "operators",
            "hists",
            {(f"op{i}", "cpu"): OP_HIST.copy() for i in range(400)},
        ),
        "operators nodes negative": _rich("operators", "nodes", {"cpu": -1}),
        "operators nodes a list": _rich("operators", "nodes", [1]),
        "operators samples negative": _rich("operators", "samples", -1),
        "operators memcpy a float": _rich("operators", "memcpy", 1.5),
        "operators at nan": _rich("operators", "at", math.nan),
    }
    for name, block in BAD_BLOCK_ENERGY.items():
        bad[f"block energy: {name}"] = _state("block_energy", block)
    return bad


MALFORMED = {**_bad_arrays(), **_bad_bytes(), **_bad_fields()}


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_snapshots_are_refused(data):
    with pytest.raises(SnapshotError):
        decode(data)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (VALID[:-8], "array section"),
        (VALID + bytes(8), "array section"),
        (VALID[: HEAD.size + 10], "truncated"),
        (_two_rows(keys=[200, 199]), "ascend"),
        (_two_rows(sketch=[[1, 1], [0, 1]]), "sketch"),
        (_two_rows(sumsq=[0.0, math.nan]), "sum of squares"),
        (_two_rows(ints=[ROW, [1, 5, 2, 5, 5]]), "violations"),
        (_two_rows(ints=[[1, 5, 0, 6, 5], ROW]), "min above max"),
        (_state("ok", "count", 4), "histogram count"),
        (_state("model", 7), "model"),
        (_state("block_energy", {("tpu", "measured"): 1.0}), "block_energy"),
    ],
)
def test_refusals_say_what_is_wrong(data, why):
    with pytest.raises(SnapshotError, match=why):
        decode(data)


def test_the_malformations_start_from_valid_states():
    assert decode(encoded(series())).series == [series()]
    assert decode(encoded(rich_series())).series == [rich_series()]
    assert decode(_two_rows()).series[0].window.keys.tolist() == [199, 200]
    assert len(decode(_wide(3, 5)).series[0].window) == 3
    assert decode(_wide(1, 2 * MAX_SKETCH_INDEX + 1, -MAX_SKETCH_INDEX)).series  # the widest
    assert decode(_snap(pid=1, exited=snapshot.MAX_INT)).exited == snapshot.MAX_INT
    assert decode(_state("sla_seconds", None)).series[0].sla_seconds is None


def test_metadata_missing_any_key_decodes_or_is_refused():
    meta, _ = split(RICH)
    for key in list(meta):
        decodes_or_rejects(meta_edit(lambda m, k=key: m.pop(k), RICH))
    for i, m in enumerate(meta["series"]):
        for key in list(m):
            decodes_or_rejects(meta_edit(lambda m, i=i, k=key: m["series"][i].pop(k), RICH))
    with pytest.raises(SnapshotError):
        decode(meta_edit(lambda m: m.pop("series"), RICH))


def test_validation_does_not_depend_on_what_was_decoded_before():
    """Bounds that include a bool are refused the first time, so the same bytes must be refused
    after a snapshot with bounds equal to them as numbers was decoded."""
    odd = (True, 2.0, 3.0, 4.0)
    with pytest.raises(SnapshotError):
        decode(_state("bounds", odd))
    decode(_state("bounds", (1.0, 2.0, 3.0, 4.0), base=lambda: series(calls=0)))
    with pytest.raises(SnapshotError):
        decode(_state("bounds", odd))


# --- hypothesis: whatever the bytes, a Snapshot or a SnapshotError -------------------------------

RICH_META, RICH_ARRAYS = split(RICH)


@HYPOTHESIS
@given(st.binary(max_size=4000))
def test_arbitrary_bytes_decode_or_raise_snapshot_error(data):
    decodes_or_rejects(data)


@HYPOTHESIS
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_after_a_valid_header_decode_or_raise_snapshot_error(tail):
    decodes_or_rejects(HEAD.pack(MAGIC, VERSION, 0, len(tail) // 2) + tail)
    decodes_or_rejects(RICH[: HEAD.size] + tail)


@HYPOTHESIS
@given(
    st.lists(st.tuples(st.integers(0, len(RICH) - 1), st.integers(0, 255)), min_size=1, max_size=8),
    st.integers(0, len(RICH)),
    st.binary(max_size=64),
)
def test_mutated_encodings_decode_or_raise_snapshot_error(flips, cut, extra):
    data = bytearray(RICH)
    for i, b in flips:
        data[i] = b
    decodes_or_rejects(bytes(data))
    decodes_or_rejects(RICH[:cut])
    decodes_or_rejects(RICH + extra)
    decodes_or_rejects(RICH[:cut] + extra + RICH[cut:])


@HYPOTHESIS
@given(
    st.lists(
        st.tuples(
            st.integers(0, len(RICH_ARRAYS) // 8 - 1),
            st.integers(-(1 << 63), (1 << 63) - 1) | st.floats(allow_nan=True).map(float),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_mutated_array_words_decode_or_raise_snapshot_error(edits):
    """Whole 8-byte words of the array section replaced by any int64 or float64."""
    arrays = bytearray(RICH_ARRAYS)
    for i, v in edits:
        arrays[8 * i : 8 * i + 8] = struct.pack("<q" if isinstance(v, int) else "<d", v)
    decodes_or_rejects(join(RICH_META, bytes(arrays)))


json_st = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
NASTY = [-1, -0.5, 0, 1.5, math.nan, math.inf, 10**400, True, None, "", "x" * 5000, [], {}]
value_st = st.sampled_from(NASTY) | json_st


def _paths(obj: object, prefix: tuple = ()) -> list[tuple]:
    out = [prefix] if prefix else []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, prefix + (i,))
    return out


PATHS = _paths(RICH_META)


@HYPOTHESIS
@given(st.lists(st.tuples(st.sampled_from(PATHS), st.booleans(), value_st), min_size=1, max_size=3))
def test_mutated_metadata_decodes_or_raises_snapshot_error(mutations):
    meta = copy.deepcopy(RICH_META)
    for path, delete, value in mutations:
        node = meta
        try:
            for k in path[:-1]:
                node = node[k]
            if delete:
                del node[path[-1]]
            else:
                node[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            pass  # an earlier mutation removed or replaced this path
    decodes_or_rejects(join(meta, RICH_ARRAYS))


@HYPOTHESIS
@given(json_st)
def test_random_metadata_documents_decode_or_raise_snapshot_error(meta):
    decodes_or_rejects(join(meta, RICH_ARRAYS))
    decodes_or_rejects(join({**RICH_META, "series": [meta]}, RICH_ARRAYS))


def test_the_hypothesis_seeds_are_valid():
    assert decodes_or_rejects(RICH) is not None


@pytest.mark.parametrize(
    "model", ["\udcff-not-utf8", "x" * (MAX_LABEL_CHARS + 1), 7], ids=["surrogate", "long", "int"]
)
def test_label_values_the_shim_could_not_have_written_are_refused(model):
    # The shim cleans every value once (valid UTF-8, at most MAX_LABEL_CHARS): the daemon does
    # not clean again, it refuses a file that breaks the rule.
    with pytest.raises(SnapshotError, match="model"):
        decode(set_meta(("series", 0, "model"), model))
    assert decode(set_meta(("series", 0, "model"), "é" * MAX_LABEL_CHARS)).series
