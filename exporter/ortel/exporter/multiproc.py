"""Reading the multiprocess directory: every instrumented process's snapshot, merged.

Live processes' snapshots are read as they are. A process that has exited keeps its counts: its
last snapshot is merged into ``ortel-archive.json`` and then deleted (compaction), so counters never
go backwards and the directory does not grow with every short-lived worker. The archive lists the
snapshots it absorbed, so a crash between writing the archive and deleting the snapshot cannot
count it twice. The archive outlives daemon restarts (document: counters continue); a directory on
tmpfs is cleared at reboot, which Prometheus sees as an ordinary counter reset.

Label values are cleaned and capped here too (``cardinality``): many processes, each within its own
caps, can still add up to too many models. The archive is read first, so values already counted
keep their place across daemon restarts.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from ortel.core.cardinality import LabelLimiter, add_counts, parse_counts
from ortel.core.exposition import clean_label
from ortel.core.state import MAX_INT, SeriesState, merge_all
from ortel.instrumentation.multiproc import FORMAT, lock_name, lock_state, process_start_ticks

log = logging.getLogger("ortel.exporter")

SNAPSHOT_RE = re.compile(r"^ortel-(\d+)-(\d+)\.json$")
ARCHIVE = "ortel-archive.json"
MAX_FILE_BYTES = 64 * 1024 * 1024  # a snapshot this large is not ours


def instrumented_pids(directory: Path | None) -> list[int]:
    """Pids that have a snapshot file in the directory (live or not: callers check /proc)."""
    if directory is None:
        return []
    try:
        names = [p.name for p in Path(directory).iterdir()]
    except OSError:
        return []
    return sorted({int(m.group(1)) for n in names if (m := SNAPSHOT_RE.match(n))})


def _load(path: Path) -> list[SeriesState]:
    """Parse a snapshot or archive; raises ValueError on anything malformed."""
    return _parse(path)[0]


def _load_snapshot(path: Path) -> tuple[list[SeriesState], dict[str, int]]:
    """A snapshot's series and its label values dropped; raises ValueError when malformed."""
    series, doc = _parse(path)
    return series, parse_counts(doc.get("dropped"), MAX_INT)


def _parse(path: Path) -> tuple[list[SeriesState], dict]:
    """The series and the whole document (the archive's ``absorbed`` and ``exited`` live there)."""
    if path.stat().st_size > MAX_FILE_BYTES:
        raise ValueError("file too large")
    try:
        doc = json.loads(path.read_bytes())
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise ValueError("not an ortel snapshot")
        series = doc["series"]
        if not isinstance(series, list):
            raise ValueError("series must be a list")
        out = [SeriesState.from_json(s) for s in series]
        merge_all([out])  # proves the series agree with each other (same buckets per key)
        return out, doc
    except (KeyError, TypeError, AttributeError, UnicodeDecodeError, RecursionError) as e:
        raise ValueError(f"malformed snapshot ({type(e).__name__}: {e})") from None


def _load_archive(path: Path) -> tuple[list[SeriesState], set[str], int, dict[str, int]]:
    """The archive's series, the snapshot names it absorbed, how many processes it holds, and
    the label values its processes dropped."""
    series, doc = _parse(path)
    absorbed = doc.get("absorbed", [])
    if not (isinstance(absorbed, list) and all(isinstance(n, str) for n in absorbed)):
        raise ValueError("archive: absorbed must be a list of file names")
    exited = doc.get("exited", len(absorbed))  # archives written before the count was kept
    if type(exited) is not int or exited < 0:
        raise ValueError("archive: exited must be a non-negative integer")
    return series, set(absorbed), exited, parse_counts(doc.get("dropped"), MAX_INT)


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
    bad_files: list[str] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)  # label values sent to __other__
    # Live processes by pid, for energy attribution (attribution.py); not exported as metrics.
    processes: dict[int, ProcessBusy] = field(default_factory=dict)


def busy_ns(s: SeriesState) -> int:
    """Wall time inside the series' inference calls, or inside its tracked generations (first
    token plus inter-token times) where that is more: a generation loop may record only tokens,
    or also time each decode step as a call, which covers the same time."""
    calls = s.ok.sum_ns + s.error.sum_ns
    g = s.generation
    return calls if g is None else max(calls, g.ttft.sum_ns + g.itl.sum_ns)


def _busy(pid_start: tuple[int, int], states: list[SeriesState]) -> tuple[int, ProcessBusy]:
    return pid_start[0], ProcessBusy(pid_start[1], {s.key: busy_ns(s) for s in states})


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
        self.bad_files_total = 0

    def _alive(self, pid: int, start: int) -> bool:
        held = lock_state(self.directory / lock_name(pid, start))
        if held is not None:  # the writer's flock: right even across PID namespaces
            return held
        if not (self.procfs / str(pid)).exists():
            return False
        # start == 0: the writer could not read its start time; trust the pid alone.
        return start == 0 or process_start_ticks(pid, self.procfs) == start

    def _bad(self, name: str, why: str) -> None:
        if name not in self._bad_seen:  # one line per bad file, not one per scrape
            self._bad_seen.add(name)
            self.bad_files_total += 1
            log.warning("ortel: skipping %s in %s: %s", name, self.directory, why)

    def _cap(self, states: list[SeriesState]) -> list[SeriesState]:
        """Clean and cap the labels of freshly parsed series (renamed in place); series that end
        up with the same labels are merged. Raises ValueError when those disagree on buckets."""
        admit = self.limiter.admit
        for s in states:
            s.model = admit("model", clean_label(s.model))
            s.provider = admit("provider", clean_label(s.provider))
            if s.error_types:
                errs: dict[str, int] = {}
                for k, n in s.error_types.items():
                    k = admit("error_type", clean_label(k))
                    errs[k] = errs.get(k, 0) + n
                s.error_types = errs
        if len({s.key for s in states}) == len(states):
            return states
        return list(merge_all([states]).values())

    def _load(self, path: Path) -> tuple[list[SeriesState], dict[str, int]]:
        states, dropped = _load_snapshot(path)
        return self._cap(states), dropped

    def _dropped(self, *parts: dict[str, int]) -> dict[str, int]:
        """Dropped by the processes (snapshots, archive) plus dropped by this daemon's caps."""
        total = dict.fromkeys(self.limiter.limits, 0)
        for part in (*parts, self.limiter.dropped()):
            add_counts(total, part)
        return total

    def read(self) -> MergeResult:
        archive_path = self.directory / ARCHIVE
        archive: list[SeriesState] = []
        absorbed: set[str] = set()
        exited = 0
        archive_dropped: dict[str, int] = {}
        if archive_path.exists():
            try:
                archive, absorbed, exited, archive_dropped = _load_archive(archive_path)
                archive = self._cap(archive)
            except (OSError, ValueError) as e:
                # Never overwrite an archive we cannot read: that would lose counts for good.
                self._bad(ARCHIVE, str(e))
                return self._read_live_only()
        live: list[list[SeriesState]] = []
        processes: dict[int, ProcessBusy] = {}
        live_dropped: dict[str, int] = {}
        dead: list[tuple[str, list[SeriesState]]] = []
        dead_dropped: dict[str, int] = {}
        known: dict[tuple[str, str], tuple[float, ...]] = {}
        _clash(known, archive)
        try:
            names = sorted(p.name for p in self.directory.iterdir())
        except OSError:
            return MergeResult({})
        for name in names:
            m = SNAPSHOT_RE.match(name)
            if not m:
                continue
            path = self.directory / name
            if name in absorbed:
                _unlink(path)  # already in the archive: finish an interrupted compaction
                continue
            # Liveness first: a process found dead has written its last snapshot, whereas one
            # that exits between our read and the check could leave newer counts we would delete.
            alive = self._alive(int(m.group(1)), int(m.group(2)))
            try:
                states, dropped = self._load(path)
            except (OSError, ValueError) as e:
                self._bad(name, str(e))
                continue
            if why := _clash(known, states):
                self._bad(name, why)
                continue
            if alive:
                live.append(states)
                pid, busy = _busy((int(m.group(1)), int(m.group(2))), states)
                processes[pid] = busy
                add_counts(live_dropped, dropped)
            else:
                dead.append((name, states))
                add_counts(dead_dropped, dropped)
        if dead:
            exited += len(dead)
            archive_dropped = add_counts(dict(archive_dropped), dead_dropped)
            archive = self._compact(archive_path, archive, absorbed, dead, exited, archive_dropped)
        now = time.time()
        merged = merge_all([archive, *live])
        for s in merged.values():
            s.prune(now, self.window_seconds)
        dropped = self._dropped(archive_dropped, live_dropped)
        return MergeResult(
            merged, live=len(live), archived=exited, dropped=dropped, processes=processes
        )

    def _read_live_only(self) -> MergeResult:
        groups = []
        processes: dict[int, ProcessBusy] = {}
        dropped: dict[str, int] = {}
        known: dict[tuple[str, str], tuple[float, ...]] = {}
        for name in sorted(os.listdir(self.directory)):
            if m := SNAPSHOT_RE.match(name):
                try:
                    states, more = self._load(self.directory / name)
                except (OSError, ValueError) as e:
                    self._bad(name, str(e))
                    continue
                if why := _clash(known, states):
                    self._bad(name, why)
                    continue
                groups.append(states)
                pid, busy = _busy((int(m.group(1)), int(m.group(2))), states)
                processes[pid] = busy
                add_counts(dropped, more)
        return MergeResult(
            merge_all(groups),
            live=len(groups),
            dropped=self._dropped(dropped),
            processes=processes,
        )

    def _compact(
        self,
        path: Path,
        archive: list[SeriesState],
        absorbed: set[str],
        dead: list[tuple[str, list[SeriesState]]],
        exited: int,
        dropped: dict[str, int],
    ) -> list[SeriesState]:
        merged = merge_all([archive] + [s for _, s in dead])
        now = time.time()
        for s in merged.values():
            s.prune(now, self.window_seconds)
        # Names whose files are gone need no remembering; the new ones do until deleted.
        keep = {n for n in absorbed if (self.directory / n).exists()} | {n for n, _ in dead}
        doc = {
            "format": FORMAT,
            "version": 1,
            "written": now,
            "absorbed": sorted(keep),
            "exited": exited,
            "dropped": dropped,
            "series": [s.to_json() for s in merged.values()],
        }
        tmp = self.directory / f".{ARCHIVE}.tmp"
        tmp.write_text(json.dumps(doc, separators=(",", ":")))
        os.replace(tmp, path)
        for name, _ in dead:
            _unlink(self.directory / name)
            _unlink(self.directory / (name[: -len(".json")] + ".lock"))
        return list(merged.values())


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as e:
        log.warning("ortel: cannot remove %s: %s", path, e)
