"""The shim's side of multiprocess mode: snapshot files the daemon can read."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ortel.collectors.multiproc_reader import MultiprocReader
from ortel.core import snapshot
from ortel.core.multiproc_files import ENV, process_start_ticks, snapshot_name
from ortel.core.state import SeriesState
from ortel.instrumentation.multiproc import SnapshotWriter
from ortel.instrumentation.recorder import Recorder, enable_multiprocess

HAS_PROC = Path("/proc/self/stat").exists()


def recorder_with(n: int, model: str = "resnet") -> Recorder:
    rec = Recorder()
    s = rec.series(model, "cpu", sla_seconds=0.001)
    s.ok.extend(range(100_000, 100_000 + n * 1000, 1000))
    s.items.extend([2] * n)
    s.errors.append((5_000, "ValueError"))
    return rec


def _load(path: Path) -> list[SeriesState]:
    return snapshot.read(path).series


def only_file(directory: Path) -> Path:
    """The one snapshot; beside it only its lock file may exist."""
    (path,) = directory.glob("*.snap")
    assert {p.name for p in directory.iterdir()} == {path.name, path.stem + ".lock"}
    return path


def test_writer_produces_a_file_the_daemon_reads(tmp_path):
    rec = recorder_with(5)
    SnapshotWriter(tmp_path)(rec)
    path = only_file(tmp_path)
    assert snapshot.version_of(path.read_bytes()) == snapshot.VERSION
    snap = snapshot.read(path)
    assert snap.pid == os.getpid() and snap.window_seconds == rec.window_seconds
    (state,) = snap.series
    assert state.key == ("resnet", "cpu")
    assert (state.ok.count, state.items, state.error_types) == (5, 10, {"ValueError": 1})
    assert state == rec.states()[0]


def test_file_name_is_pid_and_process_start_ticks(tmp_path):
    SnapshotWriter(tmp_path)(recorder_with(1))
    start = process_start_ticks()
    if HAS_PROC:
        assert start > 0
    assert only_file(tmp_path).name == snapshot_name(os.getpid(), start)
    assert snapshot_name(os.getpid(), start) == f"ortel-{os.getpid()}-{start}.snap"
    assert snapshot.read(only_file(tmp_path)).start == start


def test_rewrites_replace_the_file_and_leave_no_temporary_files(tmp_path):
    rec = recorder_with(1)
    writer = SnapshotWriter(tmp_path)
    series = rec.series("resnet", "cpu")
    for i in range(5):
        series.ok.append(1_000_000)
        writer(rec)
        assert sorted(p.name for p in tmp_path.iterdir() if p.suffix != ".lock") == [
            only_file(tmp_path).name
        ]
        (state,) = _load(only_file(tmp_path))
        assert state.ok.count == 2 + i


def test_writer_creates_its_directory(tmp_path):
    SnapshotWriter(tmp_path / "a" / "b")(recorder_with(1))
    assert only_file(tmp_path / "a" / "b").name.startswith("ortel-")


def test_process_start_ticks_is_zero_when_unknown(tmp_path):
    assert process_start_ticks(123, tmp_path) == 0
    (tmp_path / "123").mkdir()
    (tmp_path / "123" / "stat").write_text("123 (x) S 1 2\n")
    assert process_start_ticks(123, tmp_path) == 0


def test_process_start_ticks_survives_parentheses_in_the_name(tmp_path):
    (tmp_path / "9").mkdir()
    fields = ["S"] + ["0"] * 18 + ["4242"] + ["0"] * 10
    (tmp_path / "9" / "stat").write_text("9 (a) (b) c) " + " ".join(fields))
    assert process_start_ticks(9, tmp_path) == 4242


def test_enable_multiprocess_without_a_directory_raises(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    with pytest.raises(ValueError, match=ENV):
        enable_multiprocess(recorder=Recorder())


def test_enable_multiprocess_writes_on_flush(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    rec = recorder_with(3)
    writer = enable_multiprocess(tmp_path, rec)
    assert writer.directory == tmp_path
    rec.flush()
    (state,) = _load(only_file(tmp_path))
    assert state.ok.count == 3


def test_enable_multiprocess_takes_the_directory_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV, str(tmp_path / "env"))
    rec = recorder_with(1)
    assert enable_multiprocess(recorder=rec).directory == tmp_path / "env"
    rec.flush()
    assert only_file(tmp_path / "env").name.startswith(f"ortel-{os.getpid()}-")


FORK_SNIPPET = """
import os, sys
from ortel.instrumentation import RECORDER, track

for _ in range(7):
    with track("forked", provider="cpu", items=1):
        pass
RECORDER.flush()
pid = os.fork()
if pid == 0:  # the child records nothing, flushes, and leaves without atexit
    code = 1
    try:
        RECORDER.flush()
        code = 0
    finally:
        os._exit(code)
_, status = os.waitpid(pid, 0)
print(os.getpid(), pid, os.waitstatus_to_exitcode(status))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_writes_its_own_file_without_the_parents_counts(tmp_path):
    # In a fresh interpreter: the fork hook belongs to the global recorder, which tests share.
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(FORK_SNIPPET)],
        env={**os.environ, ENV: str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    parent, child, code = map(int, out.stdout.split())
    assert code == 0
    files = {snapshot.read(p).pid: p for p in tmp_path.glob("ortel-*.snap")}
    assert set(files) == {parent, child}
    assert files[child].name.startswith(f"ortel-{child}-")
    (child_state,) = _load(files[child])
    assert (child_state.ok.count, child_state.items) == (0, 0)
    (parent_state,) = _load(files[parent])
    assert (parent_state.ok.count, parent_state.items) == (7, 7)

    merged = MultiprocReader(tmp_path).read()  # both have exited by now: compacted
    assert merged.series[("forked", "cpu")].ok.count == 7
    assert merged.series[("forked", "cpu")].items == 7
    assert merged.archived == 2


def test_the_writer_holds_its_lock_until_it_exits(tmp_path):
    """Liveness by flock works across PID namespaces: the daemon tries the writer's lock."""
    from ortel.core.multiproc_files import lock_state

    code = (
        "import sys, time\n"
        "from ortel.instrumentation.multiproc import SnapshotWriter\n"
        "from ortel.instrumentation.recorder import Recorder\n"
        "rec = Recorder()\n"
        "rec.series('m').ok.append(1)\n"
        "SnapshotWriter(sys.argv[1])(rec)\n"
        "print('ready', flush=True)\n"
        "sys.stdin.readline()\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "ready"
        (lock,) = tmp_path.glob("*.lock")
        assert lock_state(lock) is True
    finally:
        child.communicate("\n", timeout=10)
    assert lock_state(lock) is False
    assert lock_state(tmp_path / "missing.lock") is None


def test_a_process_that_recorded_nothing_writes_no_file(tmp_path):
    SnapshotWriter(tmp_path)(Recorder())
    assert list(tmp_path.iterdir()) == []


def test_unchanged_state_is_not_rewritten(tmp_path):
    rec = recorder_with(1)
    writer = SnapshotWriter(tmp_path)
    writer(rec)
    path = only_file(tmp_path)
    first = path.stat().st_ino
    writer(rec)  # nothing changed: the same file
    assert path.stat().st_ino == first
    s = rec.series("resnet", "cpu")
    s.ok.append(1_000)
    writer(rec)  # a call was folded: rewritten
    second = path.stat().st_ino
    assert second != first and _load(path)[0].ok.count == 2
    s.set_load(0.5)  # changes made outside a fold count too
    writer(rec)
    assert path.stat().st_ino != second and _load(path)[0].load.value == 0.5
    rec.series("another", "cpu")
    writer(rec)  # a new series, even before its first call
    assert {s.model for s in _load(path)} == {"resnet", "another"}


def test_the_lock_is_taken_before_the_first_snapshot_exists(tmp_path):
    from ortel.core.multiproc_files import lock_state

    seen = []
    real_write = snapshot.write

    def spy(path, snap):
        seen.append(lock_state(path.with_suffix(".lock")))
        real_write(path, snap)

    rec = recorder_with(1)
    writer = SnapshotWriter(tmp_path)
    # flock conflicts between open file descriptions, so our own lock reads as held.
    try:
        snapshot.write = spy
        writer(rec)
    finally:
        snapshot.write = real_write
    assert seen == [True]


SIGNAL_IN_FOLD = """
import signal, sys
import ortel.instrumentation.recorder as r
from ortel.instrumentation.multiproc import SnapshotWriter

r.RECORDER.on_flush(SnapshotWriter(sys.argv[1]))
r.RECORDER.series("m", "cpu").ok.extend([1_000] * 500)
fold_ok = r._fold_ok


def fold_then_sigterm(*args):
    fold_ok(*args)  # folded, but not yet taken out of the buffer
    signal.raise_signal(signal.SIGTERM)  # the handler runs here, inside the fold


r._fold_ok = fold_then_sigterm
signal.signal(signal.SIGTERM, r._flush_then_die)
r.RECORDER.fold()
print("the signal was lost")
"""


@pytest.mark.skipif(not hasattr(signal, "raise_signal"), reason="needs signal.raise_signal")
def test_a_sigterm_in_the_middle_of_a_fold_counts_every_call_once(tmp_path):
    out = subprocess.run(
        [sys.executable, "-c", SIGNAL_IN_FOLD, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == -signal.SIGTERM, out.stdout + out.stderr  # died by the signal
    (state,) = _load(only_file(tmp_path))  # decodes: buckets agree with the count
    assert state.ok.count == 500 and sum(state.ok.counts) == 500
