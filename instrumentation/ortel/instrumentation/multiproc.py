"""Hand this process's recorder to the daemon: snapshot files in ORTEL_MULTIPROC_DIR.

Each process that has recorded something writes ``ortel-<pid>-<start>.snap`` (start = the
process's start time in clock ticks from /proc, so a reused pid never overwrites an older
process's counts) on every flush where its state changed, and at exit. An idle process leaves its
file alone, so the daemon need not decode it again.
``ortel.core.snapshot`` owns the format and writes atomically (temporary file, then rename): the
daemon never sees a half-written snapshot.

Liveness: the writer holds an exclusive ``flock`` on ``ortel-<pid>-<start>.lock`` for as long as
it lives (the kernel drops it when the process ends, even on SIGKILL). The daemon tells a live
writer from an exited one by trying that lock, which works across PID namespaces (containers),
where the pid in the file name means nothing in the daemon's /proc.
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import threading

    from ortel.core.cardinality import LabelLimiter
    from ortel.core.state import SeriesState


class Recorder(Protocol):
    """What the writer needs of a recorder (recorder.py's, without importing it)."""

    _lock: threading.RLock
    changes: int
    window_seconds: float
    limiter: LabelLimiter

    @property
    def has_series(self) -> bool: ...

    def fold(self, now: float | None = None) -> None: ...

    def states(self, now: float | None = None) -> list[SeriesState]: ...


ENV = "ORTEL_MULTIPROC_DIR"
# .json: the snapshots of ortel 0.1, matched so that readers report them rather than ignore them.
SNAPSHOT_RE = re.compile(r"^ortel-(\d+)-(\d+)\.(?:snap|json)$")


def process_start_ticks(pid: int | str = "self", procfs: str | Path = "/proc") -> int:
    """Start time of a process in clock ticks since boot (/proc/PID/stat field 22), 0 if unknown."""
    try:
        raw = (Path(procfs) / str(pid) / "stat").read_bytes()
    except OSError:
        return 0
    try:
        return int(raw[raw.rindex(b")") + 2 :].split()[19])
    except (ValueError, IndexError):
        return 0


def snapshot_name(pid: int, start: int) -> str:
    return f"ortel-{pid}-{start}.snap"


def lock_name(pid: int, start: int) -> str:
    return f"ortel-{pid}-{start}.lock"


def instrumented_pids(directory: Path | None) -> list[int]:
    """Pids that have a snapshot file in the directory (live or not: callers check /proc)."""
    if directory is None:
        return []
    try:
        names = [p.name for p in Path(directory).iterdir()]
    except OSError:
        return []
    return sorted({int(m.group(1)) for n in names if (m := SNAPSHOT_RE.match(n))})


def hold_lock(path: Path) -> int | None:
    """Open and exclusively lock ``path``; the fd must stay open for the process's lifetime."""
    if sys.platform == "win32":  # no flock: the daemon falls back to checking the pid
        return None
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def lock_state(path: Path) -> bool | None:
    """True if a live process holds the lock, False if nobody does, None if there is no lock
    file (an old writer, or a platform without flock)."""
    if sys.platform == "win32":
        return None
    import fcntl

    try:
        # Read-only is enough for flock, and works when the daemon runs as another user.
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return None
    finally:
        os.close(fd)  # also releases the lock if we took it
    return False


class SnapshotWriter:
    """A flush hook: writes the recorder's state when it changed."""

    def __init__(self, directory: str | Path) -> None:
        # Imported here, not at first write: a SIGTERM flush racing the flusher thread's first
        # write would otherwise find the module half imported.
        from ortel.core import snapshot

        self._snapshot = snapshot
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._pid = -1
        self._start = 0
        self._lock_fd: int | None = None
        self._changes = -1

    def __call__(self, recorder: Recorder) -> None:
        # Under the recorder's lock: a flush at exit and the background flush never interleave,
        # so an older state can never replace a newer one. (After fork the child's recorder has
        # a fresh lock, so a lock the parent's flusher held at the fork cannot block it.)
        with recorder._lock:
            pid = os.getpid()
            now = time.time()
            recorder.fold(now)
            if pid == self._pid:
                if recorder.changes == self._changes:
                    return
            else:  # first write, or we are a forked child now
                if self._lock_fd is not None:
                    # The parent's lock fd, inherited: closing our copy leaves the parent's lock
                    # held by the parent alone, so its exit is seen even while we live.
                    os.close(self._lock_fd)
                    self._lock_fd = None
                if not recorder.has_series:
                    return  # nothing recorded: no file, not counted as an instrumented process
                self._pid, self._start = pid, process_start_ticks()
                # Lock before the first snapshot exists, so the daemon never sees it unlocked.
                self._lock_fd = hold_lock(self.directory / lock_name(pid, self._start))
            snapshot = self._snapshot
            states = recorder.states(now)
            self._changes = recorder.changes
            snap = snapshot.Snapshot(
                states,
                pid=pid,
                start=self._start,
                written=now,
                window_seconds=recorder.window_seconds,
                dropped=recorder.limiter.dropped(),  # label values this process sent to __other__
            )
            snapshot.write(self.directory / snapshot_name(pid, self._start), snap)
