"""Hand this process's recorder to the daemon: snapshot files in ORTEL_MULTIPROC_DIR.

Each process that has recorded something writes its snapshot (names and locks:
``ortel.core.multiproc_files``) on every flush where its state changed, and at exit. An idle
process leaves its file alone, so the daemon need not decode it again. ``ortel.core.snapshot``
owns the format and writes atomically (temporary file, then rename): the daemon never sees a
half-written snapshot.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ortel.core.multiproc_files import hold_lock, lock_name, process_start_ticks, snapshot_name

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


class SnapshotWriter:
    """A flush hook: writes the recorder's state when it changed."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
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
