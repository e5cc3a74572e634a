"""The multiprocess directory's layout: snapshot and lock file names, and liveness by flock.

Each instrumented process writes ``ortel-<pid>-<start>.snap`` (start = the process's start time
in clock ticks from /proc, so a reused pid never overwrites an older process's counts) and holds
an exclusive ``flock`` on ``ortel-<pid>-<start>.lock`` for as long as it lives (the kernel drops
it when the process ends, even on SIGKILL). A reader tells a live writer from an exited one by
trying that lock, which works across PID namespaces (containers), where the pid in the file name
means nothing in the reader's /proc. Stdlib only: the CLI and the collectors use it at import.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

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
