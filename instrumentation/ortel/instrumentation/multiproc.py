"""Hand this process's recorder to the daemon: atomic snapshot files in ORTEL_MULTIPROC_DIR.

Each process writes ``ortel-<pid>-<start>.json`` (start = the process's start time in clock ticks
from /proc, so a reused pid never overwrites an older process's counts) every flush interval and
at exit, by writing a hidden temporary file and renaming it over the old one: the daemon never
sees a half-written snapshot.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .recorder import Recorder

FORMAT = "ortel-snapshot"
VERSION = 1
ENV = "ORTEL_MULTIPROC_DIR"


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
    return f"ortel-{pid}-{start}.json"


class SnapshotWriter:
    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._pid = -1
        self._start = 0

    def __call__(self, recorder: Recorder) -> None:
        pid = os.getpid()
        if pid != self._pid:  # first write, or we are a forked child now
            self._pid, self._start = pid, process_start_ticks()
        doc = {
            "format": FORMAT,
            "version": VERSION,
            "pid": pid,
            "start": self._start,
            "written": time.time(),
            "window_seconds": recorder.window_seconds,
            "series": [s.to_json() for s in recorder.states()],
            "dropped": recorder.limiter.dropped(),  # label values this process sent to __other__
        }
        path = self.directory / snapshot_name(pid, self._start)
        tmp = self.directory / f".{path.name}.{threading.get_ident()}.tmp"
        tmp.write_text(json.dumps(doc, separators=(",", ":")))
        os.replace(tmp, path)


def enable_multiprocess(
    directory: str | Path | None = None, recorder: Recorder | None = None
) -> SnapshotWriter:
    """Start writing snapshots for the daemon (``ortel serve --multiproc-dir``).

    Done automatically at import when ORTEL_MULTIPROC_DIR is set.
    """
    if recorder is None:
        from .recorder import RECORDER as recorder
    directory = directory or os.environ.get(ENV)
    if not directory:
        raise ValueError(f"no multiprocess directory: pass one or set {ENV}")
    writer = SnapshotWriter(directory)
    recorder.on_flush(writer)
    return writer
