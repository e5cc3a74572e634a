"""Reading the multiprocess directory: every instrumented process's snapshot, merged.

Live processes' snapshots are read as they are. A process that has exited keeps its counts: its
last snapshot is merged into the archive (``ortel-archive.snap``, same format) and then deleted
(compaction), so counters never go backwards and the directory does not grow with every
short-lived worker. The archive lists the snapshots it absorbed, so a crash between writing the
archive and deleting the snapshot cannot count it twice. The archive outlives daemon restarts
(counters continue); a directory on tmpfs is cleared at reboot, which Prometheus sees as an
ordinary counter reset. This reader is the archive's only writer, so it keeps the archive's
state in memory and reads the file again only when something else changed it; likewise it
decodes a process's snapshot again only when the file changed (an idle process leaves it alone).

Label values arrive cleaned (the shim cleans them once, when a series is made; the snapshot
decoder refuses a file whose values are not) and are capped here again (``cardinality``): many
processes, each within its own caps, can still add up to too many models. The archive is read
first, so values already counted keep their place across daemon restarts.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from ortel.core import snapshot
from ortel.core.cardinality import LabelLimiter, add_counts
from ortel.core.multiproc_files import SNAPSHOT_RE, lock_name, lock_state, process_start_ticks
from ortel.core.state import SeriesState, busy_ns, merge_all
from ortel.core.window import oldest_key

log = logging.getLogger("ortel.exporter")

ARCHIVE = "ortel-archive.snap"
OLD_ARCHIVE = "ortel-archive.json"


def _clash(known: dict[tuple[str, str], tuple[float, ...]], states: list[SeriesState]) -> str:
    """Why ``states`` cannot be merged with the series seen so far ("" if they can); else record
    their buckets. One process configured with other buckets must not take the others down."""
    for s in states:
        if known.get(s.key, s.bounds) != s.bounds:
            return f"histogram buckets of {s.model}/{s.provider} differ from other processes'"
    known.update((s.key, s.bounds) for s in states)
    return ""


@dataclass(frozen=True)
class ProcessBusy:
    """One live instrumented process's inference busy time (``busy_ns``) since it started, per
    (model, provider) as capped for the merge."""

    start: int  # process start time in clock ticks (0: unknown), from the snapshot's name
    busy_ns: dict[tuple[str, str], int]


@dataclass
class MergeResult:
    series: dict[tuple[str, str], SeriesState]
    live: int = 0
    archived: int = 0
    bad_files: list[str] = field(default_factory=list)  # skipped in this read, by name
    dropped: dict[str, int] = field(default_factory=dict)  # label values sent to __other__
    # Live processes by pid, for energy attribution (attribution.py); not exported as metrics.
    processes: dict[int, ProcessBusy] = field(default_factory=dict)


@dataclass
class _Archive:
    series: list[SeriesState] = field(default_factory=list)
    absorbed: set[str] = field(default_factory=set)
    exited: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    stat: tuple[int, int, int] | None = None  # (inode, size, mtime_ns) of the file it came from


def _stat(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


class MultiprocReader:
    def __init__(
        self,
        directory: Path,
        procfs: Path = Path("/proc"),
        window_seconds: float = 60.0,
        limiter: LabelLimiter | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.procfs = Path(procfs)
        self.window_seconds = window_seconds
        self.limiter = LabelLimiter() if limiter is None else limiter
        self._bad_seen: set[str] = set()
        self._bad_now: list[str] = []  # skipped during the read in progress
        self.bad_files_total = 0
        self._archive = _Archive()
        self._no_archive = _Archive()  # one object while there is no file: see read's merge key
        # Decoded (and label-capped) snapshots by file name, with the stat they were read at.
        self._decoded: dict[str, tuple[tuple[int, int, int], snapshot.Snapshot]] = {}
        # The last merge and what it was made of (see read); never changed once made.
        self._merge_key: list[object] = []
        self._merge_oldest = 0
        self._merged: dict[tuple[str, str], SeriesState] = {}

    def _alive(self, pid: int, start: int) -> bool:
        held = lock_state(self.directory / lock_name(pid, start))
        if held is not None:  # the writer's flock: right even across PID namespaces
            return held
        if not (self.procfs / str(pid)).exists():
            return False
        # start == 0: the writer could not read its start time; trust the pid alone.
        return start == 0 or process_start_ticks(pid, self.procfs) == start

    def _bad(self, name: str, why: str) -> None:
        self._bad_now.append(name)
        if name not in self._bad_seen:  # one line per bad file, not one per scrape
            self._bad_seen.add(name)
            self.bad_files_total += 1
            log.warning("ortel: skipping %s in %s: %s", name, self.directory, why)

    def _cap(self, states: list[SeriesState]) -> list[SeriesState]:
        """Cap the labels of freshly decoded series (renamed in place); series that end up with
        the same labels are merged. Raises ValueError when those disagree on buckets."""
        admit = self.limiter.admit
        for s in states:
            s.model = admit("model", s.model)
            s.provider = admit("provider", s.provider)
            if s.error_types:
                errs: dict[str, int] = {}
                for k, n in s.error_types.items():
                    k = admit("error_type", k)
                    errs[k] = errs.get(k, 0) + n
                s.error_types = errs
        if len({s.key for s in states}) == len(states):
            return states
        return list(merge_all([states]).values())

    def _load(self, path: Path) -> snapshot.Snapshot:
        snap = snapshot.read(path)
        snap.series = self._cap(snap.series)
        return snap

    def _snapshot(self, path: Path) -> snapshot.Snapshot:
        """A process's snapshot, decoded again only if the file changed since last time."""
        st = _stat(path)
        if st is None:
            raise FileNotFoundError(path)
        hit = self._decoded.get(path.name)
        if hit is not None and hit[0] == st:
            return hit[1]
        snap = self._load(path)
        self._decoded[path.name] = (st, snap)
        return snap

    def _dropped(self, *parts: dict[str, int]) -> dict[str, int]:
        """Dropped by the processes (snapshots, archive) plus dropped by this daemon's caps."""
        total = dict.fromkeys(self.limiter.limits, 0)
        for part in (*parts, self.limiter.dropped()):
            add_counts(total, part)
        return total

    def _read_archive(self) -> _Archive | None:
        """The archive, from memory unless the file changed; None when it cannot be read."""
        path = self.directory / ARCHIVE
        st = _stat(path)
        if st is None or st == self._archive.stat:
            return self._archive if st is not None else self._no_archive
        try:
            snap = self._load(path)
        except (OSError, ValueError) as e:
            self._bad(ARCHIVE, str(e))
            return None
        self._archive = _Archive(snap.series, set(snap.absorbed), snap.exited, snap.dropped, st)
        return self._archive

    def read(self) -> MergeResult:
        self._bad_now = []
        if (self.directory / OLD_ARCHIVE).exists():
            self._bad(OLD_ARCHIVE, "an archive of ortel 0.1's format: its counts are not merged")
        archive = self._read_archive()
        live_only = archive is None  # never overwrite an archive we cannot read
        if archive is None:
            archive = _Archive()
        try:
            names = sorted(os.listdir(self.directory))
        except OSError:
            return MergeResult({})
        live: list[list[SeriesState]] = []
        processes: dict[int, ProcessBusy] = {}
        live_dropped: dict[str, int] = {}
        dead: list[tuple[str, snapshot.Snapshot]] = []
        known: dict[tuple[str, str], tuple[float, ...]] = {}
        _clash(known, archive.series)
        for name in names:
            m = SNAPSHOT_RE.match(name)
            if not m:
                continue
            path = self.directory / name
            if name in archive.absorbed:
                _unlink(path)  # already in the archive: finish an interrupted compaction
                continue
            pid, start = int(m.group(1)), int(m.group(2))
            # Liveness first: a process found dead has written its last snapshot, whereas one
            # that exits between our read and the check could leave newer counts we would delete.
            alive = live_only or self._alive(pid, start)
            try:
                snap = self._snapshot(path)
            except FileNotFoundError:
                continue  # compacted by another reader, or removed: not a bad file
            except (OSError, ValueError) as e:
                self._bad(name, str(e))
                continue
            if why := _clash(known, snap.series):
                self._bad(name, why)
                continue
            if alive:
                live.append(snap.series)
                processes[pid] = ProcessBusy(start, {s.key: busy_ns(s) for s in snap.series})
                add_counts(live_dropped, snap.dropped)
            else:
                dead.append((name, snap))
        if dead:
            archive = self._compact(archive, dead)
        for name in set(self._decoded) - set(names):
            del self._decoded[name]
        now = time.time()
        # Idle processes leave their files alone, so their decoded snapshots are the very same
        # objects as last time: with the same archive and window, the merge would be too.
        # The key holds the objects themselves (compared by identity), so none is freed and
        # its id reused by a newer decode.
        oldest = oldest_key(now, self.window_seconds)
        key: list[object] = [archive, *live]
        last = self._merge_key
        if (
            oldest != self._merge_oldest
            or len(key) != len(last)
            or any(a is not b for a, b in zip(key, last))
        ):
            merged = merge_all([archive.series, *live])
            for s in merged.values():
                s.prune(now, self.window_seconds)
            self._merge_key, self._merge_oldest, self._merged = key, oldest, merged
        merged = self._merged
        return MergeResult(
            merged,
            live=len(live),
            archived=archive.exited,
            bad_files=self._bad_now,
            dropped=self._dropped(archive.dropped, live_dropped),
            processes=processes,
        )

    def _compact(self, archive: _Archive, dead: list[tuple[str, snapshot.Snapshot]]) -> _Archive:
        merged = merge_all([archive.series] + [snap.series for _, snap in dead])
        now = time.time()
        for s in merged.values():
            s.prune(now, self.window_seconds)
        dropped = dict(archive.dropped)
        for _, snap in dead:
            add_counts(dropped, snap.dropped)
        # Names whose files are gone need no remembering; the new ones do until deleted.
        keep = {n for n in archive.absorbed if (self.directory / n).exists()}
        keep |= {n for n, _ in dead}
        new = _Archive(list(merged.values()), keep, archive.exited + len(dead), dropped)
        path = self.directory / ARCHIVE
        snapshot.write(
            path,
            snapshot.Snapshot(
                new.series,
                written=now,
                window_seconds=self.window_seconds,
                dropped=new.dropped,
                absorbed=sorted(new.absorbed),
                exited=new.exited,
            ),
        )
        new.stat = _stat(path)
        self._archive = new
        for name, _ in dead:
            self._decoded.pop(name, None)
            _unlink(self.directory / name)
            _unlink(self.directory / (name.rsplit(".", 1)[0] + ".lock"))
        return new


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as e:
        log.warning("ortel: cannot remove %s: %s", path, e)
