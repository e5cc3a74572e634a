"""The daemon's side of multiprocess mode: merging, compaction, and surviving bad files.

A fake procfs in tmp_path decides which snapshot writers are alive: ``<procfs>/<pid>/stat`` with
the process start time (clock ticks) at field 22, as ``process_start_ticks`` reads it.
"""

from __future__ import annotations

import json
import logging
import shutil
import struct
import time
from pathlib import Path

import numpy as np
import pytest
from harness import promtool_check_metrics

from ortel.collectors.multiproc_reader import ARCHIVE, OLD_ARCHIVE, MultiprocReader
from ortel.core import catalog as c
from ortel.core import snapshot
from ortel.core.multiproc_files import instrumented_pids, process_start_ticks, snapshot_name
from ortel.core.snapshot import VERSION, Snapshot, SnapshotError
from ortel.core.state import SeriesState, Stamped, merge_all, readings
from ortel.core.window import SLICE_SECONDS, Window
from ortel.instrumentation.recorder import Recorder

ML = ("resnet", "cpu")
SLA = 0.01  # 10 ms

# Two processes' worth of calls (durations in ns), and what one process doing both would hold.
A = {"ok": [1_000_000, 2_000_000, 30_000_000], "errors": [(5_000_000, "ValueError")], "items": [4]}
B = {
    "ok": [700_000, 3_000_000, 50_000_000, 9_000_000],
    "errors": [(1_000_000, "TimeoutError"), (2_000_000, "ValueError")],
    "items": [8, 8],
}
BOTH = {k: A[k] + B[k] for k in A}


# --- fixtures and helpers ----------------------------------------------------------------------


class FakeProc:
    def __init__(self, root: Path) -> None:
        self.root = root

    def start(self, pid: int, start: int) -> None:
        d = self.root / str(pid)
        d.mkdir(parents=True, exist_ok=True)
        fields = ["S"] + ["0"] * 18 + [str(start)] + ["0"] * 30  # fields 3..21, 22, ...
        (d / "stat").write_text(f"{pid} (python3) " + " ".join(fields) + "\n")

    def exit(self, pid: int) -> None:
        shutil.rmtree(self.root / str(pid))


@pytest.fixture
def proc(tmp_path: Path) -> FakeProc:
    return FakeProc(tmp_path / "proc")


@pytest.fixture
def mdir(tmp_path: Path) -> Path:
    d = tmp_path / "multiproc"
    d.mkdir()
    return d


@pytest.fixture
def reader(mdir: Path, proc: FakeProc) -> MultiprocReader:
    proc.root.mkdir(exist_ok=True)
    return MultiprocReader(mdir, proc.root, window_seconds=60.0)


def recorded(calls: dict, now: float, model: str = "resnet", **kw) -> list[SeriesState]:
    """What a process's recorder holds after these calls, folded at ``now``."""
    rec = Recorder()
    s = rec.series(model, "cpu", sla_seconds=SLA, **kw)
    s.ok.extend(calls.get("ok", []))
    s.errors.extend(calls.get("errors", []))
    s.items.extend(calls.get("items", []))
    return rec.states(now)


def snap_of(pid: int, start: int, states: list[SeriesState], **kw) -> Snapshot:
    return Snapshot(states, pid=pid, start=start, written=time.time(), window_seconds=60.0, **kw)


def write(mdir: Path, pid: int, start: int, states: list[SeriesState], **kw) -> Path:
    path = mdir / snapshot_name(pid, start)
    snapshot.write(path, snap_of(pid, start, states, **kw))
    return path


def counts(s: SeriesState) -> dict:
    """Everything countable about a merged series (sums of squares are floats: compared apart)."""
    w = s.window.trimmed()
    return {
        "ok": s.ok,
        "error": s.error,
        "items": s.items,
        "error_types": s.error_types,
        "sla_violations": s.sla_violations,
        "keys": w.keys.tolist(),
        "slices": w.ints.tolist(),
        "sketch": (w.offset, w.sketch.tolist()) if w.sketch.size else None,
    }


def merged_counts(groups: list[list[SeriesState]]) -> list[dict]:
    return [counts(s) for s in merge_all(groups).values()]


def total(reader: MultiprocReader) -> dict:
    return counts(reader.read().series[ML])


# --- the fake procfs itself --------------------------------------------------------------------


def test_fake_procfs_start_time_is_what_process_start_ticks_reads(proc):
    proc.start(42, 987654)
    assert process_start_ticks(42, proc.root) == 987654
    assert process_start_ticks(43, proc.root) == 0


# --- live processes ----------------------------------------------------------------------------


def test_two_live_processes_sum_exactly(mdir, proc, reader):
    now = time.time()
    proc.start(101, 5000)
    proc.start(102, 6000)
    write(mdir, 101, 5000, recorded(A, now))
    write(mdir, 102, 6000, recorded(B, now))
    (expected,) = recorded(BOTH, now)

    result = reader.read()
    assert (result.live, result.archived, result.bad_files) == (2, 0, [])
    merged = result.series[ML]
    assert counts(merged) == counts(expected)
    assert merged.ok.count == 7 and merged.error.count == 3 and merged.items == 20
    assert merged.error_types == {"ValueError": 2, "TimeoutError": 1}
    assert merged.sla_violations == 2  # 30 ms and 50 ms against 10 ms
    assert len(merged.window) == 1
    assert merged.window.sumsq.tolist() == pytest.approx(expected.window.sumsq.tolist(), rel=1e-12)

    got = {(r.metric.name, r.labels): r.value for r in readings([merged], now)}
    want = {(r.metric.name, r.labels): r.value for r in readings([expected], now)}
    q = (c.LATENCY_QUANTILE.name, ML)
    assert got[q].quantiles == want[q].quantiles and got[q].count == 7
    assert got[(c.WINDOW_INFERENCES.name, ML)] == 7.0
    assert got[(c.LATENCY_MIN.name, ML)] == pytest.approx(0.0007)
    assert got[(c.LATENCY_MAX.name, ML)] == pytest.approx(0.05)
    assert got[(c.SLA_COMPLIANCE.name, ("resnet",))] == pytest.approx(5 / 7)
    # Per live process, inference busy time (ok + error), for energy attribution.
    busy_a = sum(A["ok"]) + sum(d for d, _ in A["errors"])
    busy_b = sum(B["ok"]) + sum(d for d, _ in B["errors"])
    assert {pid: (p.start, p.busy_ns) for pid, p in result.processes.items()} == {
        101: (5000, {ML: busy_a}),
        102: (6000, {ML: busy_b}),
    }
    proc.exit(102)
    assert set(reader.read().processes) == {101}  # an exited process is compacted, not live


def test_reading_is_repeatable_and_leaves_live_files_alone(mdir, proc, reader):
    now = time.time()
    proc.start(101, 5000)
    path = write(mdir, 101, 5000, recorded(A, now))
    first = total(reader)
    assert total(reader) == first
    assert path.exists() and not (mdir / ARCHIVE).exists()


def test_the_merge_is_reused_only_while_nothing_it_depends_on_changed(
    mdir, proc, reader, monkeypatch
):
    now = time.time()
    proc.start(101, 5000)
    write(mdir, 101, 5000, recorded(A, now))
    proc.start(102, 5000)
    write(mdir, 102, 5000, recorded(A, now))
    first = reader.read()
    assert reader.read().series is first.series  # idle processes: the same merge
    write(mdir, 102, 5000, recorded(B, now))  # a busy process rewrote its file (a new inode)
    second = reader.read()
    assert second.series is not first.series
    assert second.series[ML].ok.count == len(A["ok"]) + len(B["ok"])
    # The window moved on: merged again, so slices that left it are pruned.
    later = now + SLICE_SECONDS * 20
    monkeypatch.setattr(time, "time", lambda: later)
    third = reader.read()
    assert third.series is not second.series
    assert third.series[ML].ok.count == second.series[ML].ok.count
    assert len(third.series[ML].window) == 0


def test_different_models_stay_apart(mdir, proc, reader):
    now = time.time()
    proc.start(101, 5000)
    proc.start(102, 6000)
    write(mdir, 101, 5000, recorded(A, now))
    write(mdir, 102, 6000, recorded(B, now, model="bert"))
    series = reader.read().series
    assert series[ML].ok.count == 3 and series[("bert", "cpu")].ok.count == 4


# --- exited processes: compaction --------------------------------------------------------------


def test_an_exited_process_is_compacted_and_counters_do_not_go_back(mdir, proc, reader):
    now = time.time()
    proc.start(101, 5000)
    proc.start(102, 6000)
    a = write(mdir, 101, 5000, recorded(A, now))
    write(mdir, 102, 6000, recorded(B, now))
    before = total(reader)

    proc.exit(101)
    result = reader.read()
    assert counts(result.series[ML]) == before
    assert (result.live, result.archived) == (1, 1)
    assert not a.exists()
    archive = snapshot.read(mdir / ARCHIVE)
    assert archive.absorbed == [a.name] and archive.exited == 1
    assert snapshot.version_of((mdir / ARCHIVE).read_bytes()) == VERSION

    for _ in range(2):  # and on every later read
        result = reader.read()
        assert counts(result.series[ML]) == before
        assert (result.live, result.archived) == (1, 1)


def test_exited_count_keeps_growing_over_successive_compactions(mdir, proc, reader):
    now = time.time()
    for pid in (101, 102, 103):
        proc.start(pid, pid * 10)
        write(mdir, pid, pid * 10, recorded(A, now))
    before = total(reader)
    for n, pid in enumerate((101, 102, 103), start=1):
        proc.exit(pid)
        for _ in range(2):
            result = reader.read()
            assert (result.live, result.archived) == (3 - n, n)
            assert counts(result.series[ML]) == before


def test_archive_survives_a_new_reader(mdir, proc, reader):
    now = time.time()
    proc.start(101, 5000)
    write(mdir, 101, 5000, recorded(A, now))
    before = total(reader)
    proc.exit(101)
    reader.read()
    fresh = MultiprocReader(mdir, proc.root, 60.0)  # a daemon restart
    result = fresh.read()
    assert counts(result.series[ML]) == before and result.archived == 1


def test_interrupted_compaction_does_not_double_count(mdir, proc, reader):
    now = time.time()
    proc.start(101, 5000)
    proc.start(102, 6000)
    states_a = recorded(A, now)
    a = write(mdir, 101, 5000, states_a)
    write(mdir, 102, 6000, recorded(B, now))
    before = total(reader)

    proc.exit(101)
    reader.read()
    write(mdir, 101, 5000, states_a)  # as if the daemon died between archive write and delete
    assert snapshot.read(mdir / ARCHIVE).absorbed == [a.name]

    result = MultiprocReader(mdir, proc.root, 60.0).read()
    assert counts(result.series[ML]) == before
    assert result.archived == 1
    assert not a.exists()


def test_a_reused_pid_is_a_new_process(mdir, proc, reader):
    now = time.time()
    proc.start(101, 5000)
    old = write(mdir, 101, 5000, recorded(A, now))
    assert total(reader) == counts(recorded(A, now)[0])

    proc.start(101, 7000)  # the old process died and the pid came back for another one
    result = reader.read()
    assert (result.live, result.archived) == (0, 1)
    assert not old.exists()

    new = write(mdir, 101, 7000, recorded(B, now))
    assert new != old
    result = reader.read()
    assert (result.live, result.archived) == (1, 1)
    assert counts(result.series[ML]) == counts(recorded(BOTH, now)[0])
    assert new.exists()


def test_unknown_start_time_trusts_the_pid(mdir, proc, reader):
    now = time.time()
    proc.start(101, 5000)
    write(mdir, 101, 0, recorded(A, now))  # the writer could not read its start time
    assert reader.read().live == 1
    proc.exit(101)
    assert reader.read().archived == 1


def test_counts_written_just_before_exit_are_not_lost(mdir, proc, reader, monkeypatch):
    """A process that writes its last snapshot and exits while the daemon reads the directory."""
    now = time.time()
    proc.start(101, 5000)
    write(mdir, 101, 5000, recorded(A, now))
    reader.read()
    alive = reader._alive

    def exits_meanwhile(pid: int, start: int) -> bool:
        write(mdir, 101, 5000, recorded(BOTH, now))  # the final, larger snapshot
        proc.exit(101)
        return alive(pid, start)

    monkeypatch.setattr(reader, "_alive", exits_meanwhile)
    result = reader.read()
    monkeypatch.undo()
    assert counts(result.series[ML]) == counts(recorded(BOTH, now)[0])
    assert counts(reader.read().series[ML]) == counts(recorded(BOTH, now)[0])


def test_old_window_slices_are_pruned_but_totals_kept(mdir, proc, reader):
    proc.start(101, 5000)
    write(mdir, 101, 5000, recorded(A, time.time() - 3600))
    merged = reader.read().series[ML]
    assert len(merged.window) == 0 and merged.window.stats(0).count == 0
    assert merged.ok.count == 3


# --- bad files ---------------------------------------------------------------------------------


HEAD = struct.Struct("<8sHHI")  # the snapshot header (see ortel.core.snapshot)


def _bytes(states: list[SeriesState] | None = None, **kw) -> bytes:
    states = recorded(A, time.time()) if states is None else states
    return snapshot.encode(snap_of(900, 1, states, **kw))


def _with(**change) -> bytes:
    """A's state with fields replaced, encoded as it is (``encode`` does not validate)."""
    (s,) = recorded(A, time.time())
    for k, v in change.items():
        setattr(s, k, v)
    return _bytes([s])


def _meta_only(raw: bytes) -> bytes:
    return HEAD.pack(snapshot.MAGIC, VERSION, 0, len(raw)) + raw + b"\0" * (-len(raw) % 8)


def _bad_window() -> bytes:
    w = Window(np.array([1]), np.array([[1, 10, 0, 20, 10]]), np.array([0.0]), 0, np.array([[1]]))
    return _with(window=w)  # min above max


def v1_json(pid: int = 900) -> bytes:
    """A snapshot of ortel 0.1 (JSON)."""
    doc = {"format": "ortel-snapshot", "version": 1, "pid": pid, "start": 1, "series": []}
    return json.dumps(doc).encode()


def newer(data: bytes) -> bytes:
    return HEAD.pack(snapshot.MAGIC, VERSION + 1, 0, HEAD.unpack_from(data)[3]) + data[HEAD.size :]


GOOD = _bytes()
GARBAGE = {
    "empty": b"",
    "truncated": GOOD[: len(GOOD) // 2],
    "extended": GOOD + bytes(8),
    "not a snapshot": b"[1, 2, 3]",
    "wrong magic": b"ORTELSNQ" + GOOD[8:],
    "version 1 json": v1_json(),
    "newer version": newer(GOOD),
    "metadata not an object": _meta_only(b"[1, 2]"),
    "metadata not utf-8": _meta_only(b'{"series": "\xff\xfe"}'),
    "deep nesting": _meta_only(b"[" * 100_000),
    "negative count": _with(items=-4),
    "nan": _with(sla_seconds=float("nan")),
    "huge label": _with(model="m" * 200_000),
    "min above max": _bad_window(),
    "negative stamp": _with(load=Stamped(-1.0, 1.0)),
}


def test_garbage_files_are_skipped_counted_and_logged_once_each(mdir, proc, reader, caplog):
    caplog.set_level(logging.WARNING, logger="ortel.exporter")
    now = time.time()
    proc.start(101, 5000)
    write(mdir, 101, 5000, recorded(A, now))
    names = []
    for pid, data in enumerate(GARBAGE.values(), start=200):
        proc.start(pid, 1)  # alive, or they would be compacted (and never are: they are bad)
        name = snapshot_name(pid, 1)
        (mdir / name).write_bytes(data)
        names.append(name)
    directory = mdir / snapshot_name(300, 1)
    directory.mkdir()
    names.append(directory.name)

    for _ in range(3):
        result = reader.read()
        assert counts(result.series[ML]) == counts(recorded(A, now)[0])
        assert set(result.series) == {ML}
        assert result.live == 1
    assert reader.bad_files_total == len(names)
    logged = [r.getMessage() for r in caplog.records if r.name == "ortel.exporter"]
    for name in names:
        assert sum(name in m for m in logged) == 1, name
    assert len(logged) == len(names)
    assert all((mdir / n).exists() for n in names)  # skipped, not deleted


@pytest.mark.parametrize("data", GARBAGE.values(), ids=GARBAGE.keys())
def test_the_garbage_is_garbage_to_the_codec(data):
    with pytest.raises(SnapshotError):
        snapshot.decode(data)


def test_other_format_versions_are_refused_logged_once_and_counted(mdir, proc, reader, caplog):
    caplog.set_level(logging.WARNING, logger="ortel.exporter")
    now = time.time()
    proc.start(101, 5000)
    proc.start(102, 6000)
    proc.start(201, 1)
    proc.start(202, 1)
    write(mdir, 101, 5000, recorded(A, now))
    write(mdir, 102, 6000, recorded(B, now))
    old = mdir / "ortel-201-1.json"  # named as ortel 0.1 named its snapshots
    old.write_bytes(v1_json(201))
    future = mdir / snapshot_name(202, 1)
    future.write_bytes(newer(snapshot.encode(snap_of(202, 1, recorded(BOTH, now)))))
    for _ in range(3):
        result = reader.read()
        assert counts(result.series[ML]) == counts(recorded(BOTH, now)[0])  # A and B only
        assert result.live == 2 and set(result.processes) == {101, 102}
        assert sorted(result.bad_files) == sorted([old.name, future.name])  # every read
    assert reader.bad_files_total == 2  # logged and counted once each
    logged = [r.getMessage() for r in caplog.records if r.name == "ortel.exporter"]
    assert len(logged) == 2
    (about_old,) = [m for m in logged if old.name in m]
    (about_future,) = [m for m in logged if future.name in m]
    assert "version 1" in about_old and "older" in about_old
    assert f"version {VERSION + 1}" in about_future and "newer" in about_future
    assert instrumented_pids(mdir) == [101, 102, 201, 202]

    proc.exit(101)  # a compaction beside them neither takes them in nor counts them again
    proc.exit(201)
    proc.exit(202)
    result = reader.read()
    assert counts(result.series[ML]) == counts(recorded(BOTH, now)[0])
    assert (result.live, result.archived) == (1, 1)
    assert old.exists() and future.exists()  # left for a person to look at
    assert reader.bad_files_total == 2


def test_a_dead_process_with_a_bad_file_does_not_block_compaction(mdir, proc, reader):
    now = time.time()
    proc.start(101, 5000)
    a = write(mdir, 101, 5000, recorded(A, now))
    (mdir / snapshot_name(102, 1)).write_bytes(b"{")  # pid 102 is not alive
    before = total(reader)
    proc.exit(101)
    result = reader.read()
    assert counts(result.series[ML]) == before and result.archived == 1
    assert not a.exists() and (mdir / snapshot_name(102, 1)).exists()
    assert reader.bad_files_total == 1


@pytest.mark.parametrize("alive", [True, False], ids=["live", "exited"])
def test_a_process_with_other_buckets_is_skipped_not_fatal(mdir, proc, reader, alive):
    now = time.time()
    proc.start(101, 5000)
    proc.start(102, 6000)
    write(mdir, 101, 5000, recorded(A, now))
    odd = write(mdir, 102, 6000, recorded(B, now, buckets=(0.001, 0.1)))
    if not alive:
        proc.exit(102)
    for _ in range(2):
        result = reader.read()
        assert counts(result.series[ML]) == counts(recorded(A, now)[0])
    assert reader.bad_files_total == 1 and odd.exists()


# --- the archive -------------------------------------------------------------------------------


BAD_ARCHIVES = {
    "truncated": GOOD[:-8],
    "not a snapshot": b"garbage",
    "version 1 json": v1_json(0),
    "newer version": newer(snapshot.encode(Snapshot([], absorbed=["x"]))),
    "absorbed not a list": snapshot.encode(Snapshot([], absorbed=5)),
    "absorbed not names": snapshot.encode(Snapshot([], absorbed=[[1], {"a": 1}])),
    "negative exited": snapshot.encode(Snapshot([], exited=-1)),
}


@pytest.mark.parametrize("data", BAD_ARCHIVES.values(), ids=BAD_ARCHIVES.keys())
def test_an_unreadable_archive_is_never_overwritten(mdir, proc, reader, data, caplog):
    caplog.set_level(logging.WARNING, logger="ortel.exporter")
    now = time.time()
    (mdir / ARCHIVE).write_bytes(data)
    proc.start(101, 5000)
    proc.start(102, 6000)
    write(mdir, 101, 5000, recorded(A, now))
    b = write(mdir, 102, 6000, recorded(B, now))
    proc.exit(102)  # would be compacted, but not into an archive we cannot read

    for _ in range(2):
        result = reader.read()
        assert counts(result.series[ML]) == counts(recorded(BOTH, now)[0])
    assert (mdir / ARCHIVE).read_bytes() == data
    assert b.exists()
    assert reader.bad_files_total == 1
    assert sum(ARCHIVE in r.getMessage() for r in caplog.records) == 1


def test_an_old_json_archive_is_reported_once_and_not_merged(mdir, proc, reader, caplog):
    caplog.set_level(logging.WARNING, logger="ortel.exporter")
    now = time.time()
    (mdir / OLD_ARCHIVE).write_bytes(v1_json(0))
    proc.start(101, 5000)
    write(mdir, 101, 5000, recorded(A, now))
    for _ in range(3):
        result = reader.read()
        assert counts(result.series[ML]) == counts(recorded(A, now)[0])
        assert result.archived == 0
    assert reader.bad_files_total == 1
    assert sum(OLD_ARCHIVE in r.getMessage() for r in caplog.records) == 1
    proc.exit(101)  # compaction writes the new archive beside the old one, untouched
    assert reader.read().archived == 1
    assert (mdir / OLD_ARCHIVE).read_bytes() == v1_json(0) and (mdir / ARCHIVE).exists()


def _compacted_a(mdir: Path, proc: FakeProc, reader: MultiprocReader, now: float) -> None:
    """Process 101 ran A and exited: its counts are in the archive."""
    proc.start(101, 5000)
    write(mdir, 101, 5000, recorded(A, now))
    reader.read()
    proc.exit(101)
    assert reader.read().archived == 1


def test_an_archive_replaced_by_someone_else_is_read_again(mdir, proc, reader):
    now = time.time()
    _compacted_a(mdir, proc, reader, now)
    proc.start(102, 6000)
    write(mdir, 102, 6000, recorded(A, now))
    assert reader.read().series[ML].ok.count == 2 * len(A["ok"])
    # Another archive (say, restored from a backup) replaces ours.
    other = Snapshot(recorded(B, now), written=now, absorbed=[], exited=7, dropped={"model": 2})
    snapshot.write(mdir / ARCHIVE, other)
    result = reader.read()
    assert result.archived == 7 and result.dropped["model"] == 2
    (expected,) = merged_counts([recorded(B, now), recorded(A, now)])
    assert counts(result.series[ML]) == expected


def test_an_archive_rewritten_in_place_is_read_again(mdir, proc, reader):
    now = time.time()
    _compacted_a(mdir, proc, reader, now)
    path = mdir / ARCHIVE
    inode = path.stat().st_ino
    with open(path, "r+b") as f:  # same inode, other contents (and size)
        f.truncate(0)
        f.write(snapshot.encode(Snapshot(recorded(BOTH, now), written=now, exited=3)))
    assert path.stat().st_ino == inode
    result = reader.read()
    assert result.archived == 3
    assert counts(result.series[ML]) == counts(recorded(BOTH, now)[0])


def test_an_unchanged_archive_is_not_read_again(mdir, proc, reader, monkeypatch):
    now = time.time()
    _compacted_a(mdir, proc, reader, now)
    reads: list[str] = []
    real = snapshot.read

    def counting(path):
        reads.append(Path(path).name)
        return real(path)

    monkeypatch.setattr(snapshot, "read", counting)
    for _ in range(3):
        result = reader.read()
        assert counts(result.series[ML]) == counts(recorded(A, now)[0]) and result.archived == 1
    assert ARCHIVE not in reads
    fresh = MultiprocReader(mdir, proc.root, 60.0)  # a new reader has no copy in memory
    assert fresh.read().archived == 1 and reads == [ARCHIVE]


def test_a_deleted_archive_is_not_resurrected_from_memory(mdir, proc, reader):
    now = time.time()
    _compacted_a(mdir, proc, reader, now)
    (mdir / ARCHIVE).unlink()
    result = reader.read()
    assert result.archived == 0 and ML not in result.series


def test_an_archive_that_is_a_directory_is_left_alone(mdir, proc, reader):
    now = time.time()
    (mdir / ARCHIVE).mkdir()
    proc.start(101, 5000)
    write(mdir, 101, 5000, recorded(A, now))
    assert total(reader) == counts(recorded(A, now)[0])
    assert (mdir / ARCHIVE).is_dir() and reader.bad_files_total == 1


# --- names -------------------------------------------------------------------------------------


def test_files_not_named_like_snapshots_are_ignored(mdir, proc, reader):
    now = time.time()
    proc.start(101, 5000)
    write(mdir, 101, 5000, recorded(A, now))
    others = [
        "notes.txt",
        "ortel-abc-1.json",
        "ortel-1-2.json.bak",
        "ortel-1-2.snap.bak",
        "ortel-1-2.JSON",
        "ortel-1-2.SNAP",
        "ortel-1-2.snp",
        "ortel-archive.snap.bak",
        "xortel-1-2.json",
        "ortel-1.json",
        f".{snapshot_name(101, 5000)}.140213.tmp",  # a writer's temporary file
        f".{ARCHIVE}.tmp",
    ]
    for name in others:
        (mdir / name).write_text("garbage")
    result = reader.read()
    assert counts(result.series[ML]) == counts(recorded(A, now)[0])
    assert result.live == 1 and reader.bad_files_total == 0
    assert all((mdir / n).exists() for n in others)


def test_a_missing_directory_reads_as_empty(tmp_path, proc):
    result = MultiprocReader(tmp_path / "absent", proc.root).read()
    assert result.series == {} and result.live == 0


def test_instrumented_pids(mdir, tmp_path):
    for name in ("ortel-12-5.snap", "ortel-12-9.snap", "ortel-3-1.snap", "ortel-7-1.json"):
        (mdir / name).write_text("{}")
    for name in (ARCHIVE, OLD_ARCHIVE, "x.snap", "ortel-8-1.lock", ".ortel-44-1.snap.1.tmp"):
        (mdir / name).write_text("{}")
    assert instrumented_pids(mdir) == [3, 7, 12]
    assert instrumented_pids(None) == []
    assert instrumented_pids(tmp_path / "absent") == []


# --- label caps and hostile label values across processes ---------------------------------------


def models_of(result) -> dict[str, int]:
    return {s.model: s.ok.count for s in result.series.values()}


def test_many_processes_within_their_caps_are_capped_together(mdir, proc, tmp_path):
    from ortel.core.cardinality import OTHER, LabelLimiter

    now = time.time()
    reader = MultiprocReader(mdir, proc.root, 60.0, LabelLimiter({"model": 4}))
    for pid in (101, 102):
        proc.start(pid, 5000 + pid)
        states = []
        for i in range(3):
            states += recorded(A, now, model=f"p{pid}-m{i}")
        write(mdir, pid, 5000 + pid, states)
    result = reader.read()
    got = models_of(result)
    assert len(got) == 5 and got[OTHER] == 2 * len(A["ok"])
    assert sum(got.values()) == 6 * len(A["ok"])  # nothing lost, only relabelled
    assert result.dropped["model"] == 2
    errs = sum(sum(s.error_types.values()) for s in result.series.values())
    assert errs == 6 * len(A["errors"])


def test_values_already_counted_keep_their_names_across_a_daemon_restart(mdir, proc):
    from ortel.core.cardinality import OTHER, LabelLimiter

    now = time.time()
    proc.start(101, 5000)
    write(mdir, 101, 5000, recorded(A, now, model="early"))
    first = MultiprocReader(mdir, proc.root, 60.0, LabelLimiter({"model": 1}))
    first.read()
    proc.exit(101)  # compacted into the archive under its own name
    assert set(models_of(first.read())) == {"early"}
    proc.start(102, 6000)  # a newcomer after the restart sorts before "early"...
    write(mdir, 102, 6000, recorded(B, now, model="a-late"))
    restarted = MultiprocReader(mdir, proc.root, 60.0, LabelLimiter({"model": 1}))
    got = models_of(restarted.read())
    assert got == {"early": len(A["ok"]), OTHER: len(B["ok"])}  # ...but the archive is first


def test_shim_drops_are_summed_across_processes_and_survive_compaction(mdir, proc, reader):
    now = time.time()
    for pid, n in ((101, 3), (102, 4)):
        proc.start(pid, 5000)
        states = recorded(A, now, model=f"m{pid}")
        write(mdir, pid, 5000, states, dropped={"model": n, "error_type": 1})
    assert reader.read().dropped == {
        "model": 7,
        "provider": 0,
        "error_type": 2,
        "op_type": 0,
    }
    proc.exit(101)
    proc.exit(102)
    again = reader.read()
    assert again.dropped["model"] == 7 and again.dropped["error_type"] == 2  # from the archive
    assert MultiprocReader(mdir, proc.root).read().dropped["model"] == 7  # and after a restart


def test_a_malformed_dropped_field_makes_the_file_bad(mdir, proc, reader):
    now = time.time()
    proc.start(101, 5000)
    write(mdir, 101, 5000, recorded(A, now))
    proc.start(102, 5000)
    write(mdir, 102, 5000, recorded(B, now, model="other"), dropped={"model": -3})
    result = reader.read()
    assert set(result.series) == {ML} and reader.bad_files_total == 1


HOSTILE_MODELS = [
    'say "hi"',
    "line\nbreak",
    "back\\slash",
    "\udcff\udcfe-not-utf8",
    "\udcfd\udcfe-not-utf8",  # cleans to the same value as the one above: merged, not lost
    "x" * 1000,
    "x" * 999 + "y",  # cut to the same 256 characters as the one above
    "{}=,# HELP",
    "",
]


def test_hostile_label_values_from_snapshots_expose_cleanly(mdir, proc, reader):
    from prometheus_client.exposition import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from ortel.core.state import readings as state_readings
    from ortel.exporter.http import _Families

    now = time.time()
    for pid, model in enumerate(HOSTILE_MODELS, start=300):
        proc.start(pid, 1)
        write(mdir, pid, 1, recorded(A, now, model=model))
    result = reader.read()
    assert reader.bad_files_total == 0
    assert sum(s.ok.count for s in result.series.values()) == len(HOSTILE_MODELS) * len(A["ok"])
    assert len(result.series) == len(HOSTILE_MODELS) - 2  # the two merged pairs
    body = generate_latest(_Families(lambda: state_readings(result.series.values(), now)))
    text = body.decode("utf-8")  # valid UTF-8 throughout
    total = 0.0
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == c.INFERENCES.name and s.labels["status"] == "ok":
                total += s.value
    assert total == len(HOSTILE_MODELS) * len(A["ok"])  # every count survives the round trip
    lint = promtool_check_metrics(text)
    assert lint.returncode == 0, lint.stderr


# --- property-based: whatever lands in the directory, good counts stay exact --------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

PROPERTY_SETTINGS = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
GOOD_OTHER = snapshot.encode(snap_of(2, 1, recorded(B, time.time(), model="other")))


def _decoded(data: bytes) -> Snapshot | None:
    try:
        return snapshot.decode(data)
    except SnapshotError:
        return None


def _survives(tmp: Path, hostile: bytes, archive: bool = False) -> None:
    """One good live process plus ``hostile`` as another live process's snapshot (or as the
    archive): reading never raises, the good process's counts are exactly there, and a file the
    codec refuses contributes nothing."""
    fake = FakeProc(tmp / "proc")
    d = tmp / "mp"
    d.mkdir()
    now = time.time()
    fake.start(1, 1)
    fake.start(2, 1)
    write(d, 1, 1, recorded(A, now))
    (d / (ARCHIVE if archive else snapshot_name(2, 1))).write_bytes(hostile)
    decoded = _decoded(hostile)
    r = MultiprocReader(d, fake.root)
    for _ in range(2):
        result = r.read()
        if decoded is None:
            assert set(result.series) == {ML}, "a refused file's series were counted"
            assert counts(result.series[ML]) == counts(recorded(A, now)[0])
            assert (result.live, result.archived) == (1, 0)
            assert r.bad_files_total == 1
            assert result.dropped == dict.fromkeys(result.dropped, 0)
        elif ML not in {s.key for s in decoded.series}:
            assert counts(result.series[ML]) == counts(recorded(A, now)[0])
    if archive and decoded is None:
        assert (d / ARCHIVE).read_bytes() == hostile  # never overwritten


@PROPERTY_SETTINGS
@given(cut=st.integers(0, len(GOOD_OTHER) - 1), archive=st.booleans())
def test_property_truncated_snapshots(tmp_path_factory, cut, archive):
    _survives(tmp_path_factory.mktemp("t"), GOOD_OTHER[:cut], archive)


@PROPERTY_SETTINGS
@given(extra=st.binary(min_size=1, max_size=64), archive=st.booleans())
def test_property_extended_snapshots(tmp_path_factory, extra, archive):
    _survives(tmp_path_factory.mktemp("e"), GOOD_OTHER + extra, archive)


@PROPERTY_SETTINGS
@given(
    flips=st.lists(
        st.tuples(st.integers(0, len(GOOD_OTHER) - 1), st.integers(0, 255)), min_size=1, max_size=8
    ),
    archive=st.booleans(),
)
def test_property_corrupted_bytes(tmp_path_factory, flips, archive):
    data = bytearray(GOOD_OTHER)
    for i, b in flips:
        data[i] = b
    _survives(tmp_path_factory.mktemp("c"), bytes(data), archive)


@PROPERTY_SETTINGS
@given(
    words=st.lists(
        st.tuples(
            st.integers(0, len(GOOD_OTHER) // 8 - 1),
            st.integers(-(1 << 63), (1 << 63) - 1) | st.floats(allow_nan=True).map(float),
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_property_corrupted_words(tmp_path_factory, words):
    """Aligned 8-byte words replaced by any int64 or float64: numbers the arrays could hold."""
    data = bytearray(GOOD_OTHER)
    for i, v in words:
        data[8 * i : 8 * i + 8] = struct.pack("<q" if isinstance(v, int) else "<d", v)
    _survives(tmp_path_factory.mktemp("w"), bytes(data))


@PROPERTY_SETTINGS
@given(data=st.binary(max_size=2000))
def test_property_random_bytes(tmp_path_factory, data):
    _survives(tmp_path_factory.mktemp("r"), data)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**100), 2**100) | st.floats() | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)


def _split(data: bytes) -> tuple[dict, bytes, int]:
    """Metadata, array section and flags (the sketch section's type) of an encoding."""
    _, _, flags, n = HEAD.unpack_from(data)
    body = HEAD.size + n
    return json.loads(data[HEAD.size : body]), data[body + (-body % 8) :], flags


def _join(meta: object, arrays: bytes, flags: int) -> bytes:
    raw = json.dumps(meta, allow_nan=True).encode()
    pad = b"\0" * (-(HEAD.size + len(raw)) % 8)
    return HEAD.pack(snapshot.MAGIC, VERSION, flags, len(raw)) + raw + pad + arrays


@PROPERTY_SETTINGS
@given(
    path=st.lists(
        st.sampled_from(["series", 0, "model", "sums", "bounds", "dropped", "absorbed", "pid"]),
        max_size=4,
    ),
    value=json_values,
    archive=st.booleans(),
)
def test_property_metadata_with_a_value_replaced_anywhere(tmp_path_factory, path, value, archive):
    meta, arrays, flags = _split(GOOD_OTHER)
    node = meta
    for key in path[:-1]:
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            break
    if path:
        try:
            node[path[-1]] = value
        except (IndexError, TypeError):
            pass
    _survives(tmp_path_factory.mktemp("j"), _join(meta, arrays, flags), archive)


def test_the_property_seed_is_a_valid_snapshot(tmp_path):
    assert _decoded(GOOD_OTHER) is not None
    assert _join(*_split(GOOD_OTHER)) != b"" and _decoded(_join(*_split(GOOD_OTHER)))
    _survives(tmp_path, GOOD_OTHER)


def test_a_locked_snapshot_is_live_even_when_its_pid_is_not_in_procfs(tmp_path):
    """A writer in another PID namespace (a container): its pid means nothing in the daemon's
    /proc, but its flock says it is alive, so its counts are not compacted twice."""
    import os

    from ortel.instrumentation.multiproc import SnapshotWriter
    from ortel.instrumentation.recorder import Recorder

    d = tmp_path / "mp"
    rec = Recorder()
    rec.series("m", "cpu").ok.extend([1000] * 3)
    writer = SnapshotWriter(d)
    writer(rec)
    for p in list(d.iterdir()):  # pretend the pid is namespace-local: 424242 is not in procfs
        p.rename(d / p.name.replace(f"ortel-{os.getpid()}-", "ortel-424242-"))
    empty_procfs = tmp_path / "proc"
    empty_procfs.mkdir()
    reader = MultiprocReader(d, empty_procfs)
    assert reader.read().live == 1
    assert any(p.suffix == ".snap" and p.name.startswith("ortel-424242") for p in d.iterdir())
    os.close(writer._lock_fd)  # the writer exits
    result = reader.read()
    assert result.live == 0 and result.series[("m", "cpu")].ok.count == 3
    assert not any(p.name.startswith("ortel-424242") for p in d.iterdir())
