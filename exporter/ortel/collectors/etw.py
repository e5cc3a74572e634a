"""Windows kernel and ONNX Runtime events through ETW: the ``etw`` collector.

Two real-time ETW sessions, opened through pythonnet and Microsoft.Diagnostics.Tracing.TraceEvent
(``etw_live``, imported on Windows only):

- a kernel session (process, thread, context switch, page fault and disk I/O events, plus hardware
  counter samples where the CPU exposes them), folded into the same metric names the Linux
  collectors export: ``ortel_process_context_switches_total``, ``ortel_process_page_faults_total``,
  ``ortel_process_disk_io_bytes_total``, ``ortel_process_threads``, host totals, and the
  ``ortel_process_*`` hardware counters with ``method="sampled"``;
- a session on ONNX Runtime's own provider (Microsoft.ML.ONNXRuntime, Profiling keyword 0x100,
  Session keyword 0x1 with a capture-state request so sessions created before the daemon started
  are named): per-node timings fold into ``ortel_operator_duration_seconds{model, op_type,
  provider}``, switched on in the inference process by the session itself, without
  ``enable_profiling``.

Everything from the event to the reading is plain Python (``EtwEvent``, ``EventFold``) and is tested
with recorded event fixtures on any OS. Session lifecycle (unique names, stale sessions of a killed
daemon found and stopped, admin rights) is plain Python too, against the small ``TraceEventApi``
boundary that ``etw_live`` implements with TraceEvent.

Counters count from the moment the daemon's session started (ETW has no "since boot" totals);
Prometheus sees a daemon restart as an ordinary counter reset.
"""

from __future__ import annotations

import atexit
import bisect
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ortel.core import catalog
from ortel.core.catalog import MetricDef
from ortel.core.multiproc_files import instrumented_pids
from ortel.core.readings import HistogramValue, Reading, reading

from .base import Collector, CollectorSpec, NoDataError
from .etw_events import ORT_PROVIDER, EtwEvent, ProviderSpec
from .onnx_ops import op_type_of

log = logging.getLogger("ortel.exporter")

ORT_GUID = "3a26b1ff-7484-7484-7484-15261f42614d"
ORT_SESSION_KEYWORD = 0x1  # SessionCreation (and its capture-state rundown)
ORT_PROFILING_KEYWORD = 0x100
# ONNX Runtime reads the session's level: 5 = "basic" (per run), above 5 = "detailed" (per node).
ORT_DETAILED_LEVEL = 6

# KernelTraceEventParser.Keywords
KERNEL_KEYWORDS = {
    "Process": 0x00000001,
    "Thread": 0x00000002,
    "ContextSwitch": 0x00000010,
    "DiskIO": 0x00000100,
    "MemoryPageFaults": 0x00001000,
}
PMC_PROFILE_KEYWORD = 0x80000000  # KernelTraceEventParser.Keywords.PMCProfile


@dataclass(frozen=True)
class PmcCounter:
    metric: MetricDef
    interval: int  # events per sample we ask for


# Windows profile sources (TraceEventProfileSources.GetInfo(), `wpr -pmcsources`) and the Linux
# counter each stands for. On Intel, Linux's generic cache references/misses are the last-level
# cache's, which is what LLCReference/LLCMisses count. Windows has no read-only LLC source, so
# ortel_process_llc_loads_total and ..._llc_load_misses_total stay Linux-only.
PMC_SOURCES: dict[str, PmcCounter] = {
    "TotalCycles": PmcCounter(catalog.PROCESS_CYCLES, 1_000_000),
    "InstructionRetired": PmcCounter(catalog.PROCESS_INSTRUCTIONS, 1_000_000),
    "LLCReference": PmcCounter(catalog.PROCESS_CACHE_REFERENCES, 100_000),
    "LLCMisses": PmcCounter(catalog.PROCESS_CACHE_MISSES, 10_000),
}

SESSION_PREFIX = "ortel-etw-"
at_exit = atexit.register  # a module attribute so tests can watch it
SESSION_RE = re.compile(r"^ortel-etw-(\d+)-(\d+)-(kernel|runtime)$")

# KTHREAD_STATE of the thread being switched out (CSwitch OldThreadState). A thread that waits
# gave up the CPU (Linux's voluntary switch); one still ready or running was preempted.
_VOLUNTARY = {5, 6, 9, "Wait", "Waiting", "Transition", "WaitingForProcessInSwap"}
_INVOLUNTARY = {1, 2, 3, 7, "Ready", "Running", "Standby", "DeferredReady"}

# TraceEvent's Memory/* page fault events (kernel keyword MemoryPageFaults).
_MINOR_FAULTS = {"Memory/TransitionFault", "Memory/DemandZeroFault", "Memory/CopyOnWrite"}
_MINOR_FAULTS |= {"Memory/GuardMemory"}
_MAJOR_FAULTS = {"Memory/HardMemory"}  # a hard page fault: the page was read from disk


@dataclass
class _Proc:
    name: str | None = None
    seen: bool = False  # a process/thread start or rundown event named it: its counts are complete
    ctx: dict[str, int] = field(default_factory=lambda: {"voluntary": 0, "involuntary": 0})
    faults: dict[str, int] = field(default_factory=lambda: {"minor": 0, "major": 0})
    disk: dict[str, int] = field(default_factory=lambda: {"read": 0, "write": 0})
    threads: set[int] = field(default_factory=set)
    pmc: dict[int, int] = field(default_factory=dict)  # profile source id -> samples
    sessions: dict[int, str] = field(default_factory=dict)  # ORT sessionId -> modelGraphName
    previous: tuple[float, float] | None = None  # (instructions, cycles) at the last readings()


@dataclass
class _Hist:
    counts: list[int]
    sum: float = 0.0
    count: int = 0


def _int(v: Any) -> int:
    return int(v)


class EventFold:
    """Folds events into counters; thread-safe (events arrive on TraceEvent's thread)."""

    def __init__(
        self,
        pmc: Mapping[int, tuple[str, int]] | None = None,
        models: Callable[[int], set[str]] | None = None,
        operator_metric: MetricDef | None = None,
    ) -> None:
        self.pmc = dict(pmc or {})  # profile source id -> (source name, sampling interval)
        self.models = models or (lambda pid: set())
        self.op_metric = operator_metric or catalog.OPERATOR_DURATION
        self._lock = threading.Lock()
        self.procs: dict[int, _Proc] = {}
        self.host_ctx = 0
        self.host_faults = {"minor": 0, "major": 0}
        self.disks: dict[str, dict[str, int]] = {}
        self.events: dict[str, int] = {}
        self.ops: dict[tuple[str, str, str], _Hist] = {}
        self.malformed = 0
        self.nodes_without_time = 0  # per-node events in cycles (QNN HTP), not durations

    # -- events --------------------------------------------------------------------------------
    def add(self, e: EtwEvent) -> None:
        with self._lock:
            self.events[e.provider] = self.events.get(e.provider, 0) + 1
            try:
                if e.provider == ORT_PROVIDER:
                    self._runtime(e)
                else:
                    self._kernel(e)
            except (KeyError, ValueError, TypeError):
                self.malformed += 1

    def _proc(self, pid: int) -> _Proc:
        p = self.procs.get(pid)
        if p is None:
            p = self.procs[pid] = _Proc()
        return p

    def _kernel(self, e: EtwEvent) -> None:
        name, p = e.name, e.payload
        if name == "Thread/CSwitch":
            self.host_ctx += 1
            state = p["OldThreadState"]
            kind = "voluntary" if state in _VOLUNTARY else ""
            kind = kind or ("involuntary" if state in _INVOLUNTARY else "")
            old = self.procs.get(_int(p["OldProcessID"]))
            if kind and old is not None:
                old.ctx[kind] += 1
        elif name in _MINOR_FAULTS or name in _MAJOR_FAULTS:
            kind = "minor" if name in _MINOR_FAULTS else "major"
            self.host_faults[kind] += 1
            proc = self.procs.get(e.pid)
            if proc is not None:
                proc.faults[kind] += 1
        elif name in ("DiskIO/Read", "DiskIO/Write"):
            direction = "read" if name == "DiskIO/Read" else "write"
            size = _int(p["TransferSize"])
            d = self.disks.setdefault(
                f"PhysicalDrive{_int(p['DiskNumber'])}",
                {"read": 0, "write": 0, "read_ops": 0, "write_ops": 0},
            )
            d[direction] += size
            d[direction + "_ops"] += 1
            proc = self.procs.get(e.pid)
            if proc is not None:
                proc.disk[direction] += size
        elif name in ("Process/Start", "Process/DCStart"):
            pid = _int(p.get("ProcessID", e.pid))
            if name == "Process/Start" or pid not in self.procs:
                self.procs[pid] = _Proc()  # a new process (a reused pid starts from zero)
            proc = self.procs[pid]
            proc.name = str(p.get("ImageFileName") or proc.name or "") or None
            proc.seen = True
        elif name == "Process/Stop":
            self.procs.pop(_int(p.get("ProcessID", e.pid)), None)
        elif name in ("Thread/Start", "Thread/DCStart"):
            proc = self._proc(e.pid)
            proc.threads.add(e.tid)
            proc.seen = True
        elif name == "Thread/Stop":
            proc = self.procs.get(e.pid)
            if proc is not None:
                proc.threads.discard(e.tid)
        elif name == "PerfInfo/PMCSample":
            source = _int(p["ProfileSource"])
            proc = self.procs.get(e.pid)
            if source in self.pmc and proc is not None:
                proc.pmc[source] = proc.pmc.get(source, 0) + 1

    def _runtime(self, e: EtwEvent) -> None:
        p = e.payload
        if e.name == "SessionCreation":
            self._proc(e.pid).sessions[_int(p.get("sessionId", -1))] = str(
                p.get("modelGraphName", "")
            )
        elif e.name == "QNNProfilingEvent":
            if str(p.get("Message", "")).strip() != "NODE":
                return  # EXECUTE, INIT, ...: whole-graph phases, not operators
            if str(p.get("Unit of Measurement", "")).strip() != "US":
                self.nodes_without_time += 1  # the HTP backend counts cycles per node
                return
            seconds = float(p["Value"]) / 1e6
            node = str(p.get("Event Identifier", ""))
            node = node.split(":", 1)[0].split(" (", 1)[0]  # "conv1:OpId_5 (cycles)" -> "conv1"
            self._observe(self._model(e.pid), op_type_of(node), "QNNExecutionProvider", seconds)

    def _model(self, pid: int) -> str:
        """The instrumented process's model label if it has exactly one, else the one model graph
        ONNX Runtime announced for that process, else "unknown"."""
        names = self.models(pid)
        if len(names) == 1:
            return next(iter(names))
        proc = self.procs.get(pid)
        graphs = {g for g in proc.sessions.values() if g} if proc else set()
        return next(iter(graphs)) if len(graphs) == 1 else "unknown"

    def _observe(self, model: str, op_type: str, provider: str, seconds: float) -> None:
        bounds = self.op_metric.buckets or ()
        h = self.ops.get((model, op_type, provider))
        if h is None:
            h = self.ops[(model, op_type, provider)] = _Hist([0] * (len(bounds) + 1))
        h.counts[bisect.bisect_left(bounds, seconds)] += 1  # le: the first bound >= the value
        h.sum += seconds
        h.count += 1

    # -- readings ------------------------------------------------------------------------------
    def readings(
        self, targets: Sequence[tuple[int, str]], lost: Mapping[str, int] | None = None
    ) -> list[Reading]:
        with self._lock:
            out: list[Reading] = []
            for pid, role in targets:
                proc = self.procs.get(pid)
                if proc is not None and proc.seen:
                    out += self._process(pid, role, proc)
            out.append(reading(catalog.CONTEXT_SWITCHES, self.host_ctx))
            for kind, n in self.host_faults.items():
                out.append(reading(catalog.PAGE_FAULTS, n, type=kind))
            for device, d in sorted(self.disks.items()):
                for direction in ("read", "write"):
                    lb = {"device": device, "direction": direction}
                    out.append(reading(catalog.DISK_IO, d[direction], **lb))
                    out.append(reading(catalog.DISK_OPERATIONS, d[direction + "_ops"], **lb))
            for provider, n in sorted(self.events.items()):
                out.append(reading(catalog.ETW_EVENTS, n, provider=provider))
            for session, n in sorted((lost or {}).items()):
                out.append(reading(catalog.ETW_EVENTS_LOST, n, session=session))
            bounds = tuple(self.op_metric.buckets or ())
            for (model, op_type, provider), h in sorted(self.ops.items()):
                value = HistogramValue(bounds, tuple(h.counts), h.sum, h.count)
                out.append(
                    reading(self.op_metric, value, model=model, op_type=op_type, provider=provider)
                )
            return out

    def _process(self, pid: int, role: str, proc: _Proc) -> list[Reading]:
        pl = {"pid": str(pid), "name": proc.name or "unknown", "role": role}
        out = [reading(catalog.PROCESS_CTX, n, type=k, **pl) for k, n in proc.ctx.items()]
        out += [reading(catalog.PROCESS_FAULTS, n, type=k, **pl) for k, n in proc.faults.items()]
        out += [
            reading(catalog.PROCESS_DISK_IO, n, direction=k, **pl) for k, n in proc.disk.items()
        ]
        out.append(reading(catalog.PROCESS_THREADS, len(proc.threads), **pl))
        totals: dict[str, float] = {}
        for source, (name, interval) in sorted(self.pmc.items()):
            counter = PMC_SOURCES.get(name)
            if counter is None:
                continue
            # Sampling: one event every `interval` occurrences, so the total is an estimate.
            total = float(proc.pmc.get(source, 0) * interval)
            totals[name] = total
            out.append(reading(counter.metric, total, method="sampled", **pl))
        if "InstructionRetired" in totals and "TotalCycles" in totals:
            now = (totals["InstructionRetired"], totals["TotalCycles"])
            if proc.previous is not None and now[1] > proc.previous[1]:
                ipc = (now[0] - proc.previous[0]) / (now[1] - proc.previous[1])
                out.append(reading(catalog.PROCESS_IPC, ipc, method="sampled", **pl))
            proc.previous = now
        return out


# -- the TraceEvent boundary -------------------------------------------------------------------


class EtwSession(Protocol):
    name: str

    def events_lost(self) -> int: ...

    def failure(self) -> BaseException | None:
        """Why the event-processing thread stopped, None while it runs."""

    def stop(self) -> None: ...


class TraceEventApi(Protocol):
    """What the collector needs from TraceEvent; ``etw_live.LiveApi`` implements it."""

    def is_elevated(self) -> bool: ...

    def active_sessions(self) -> list[str]: ...

    def stop_session(self, name: str) -> None: ...

    def process_start(self, pid: int) -> int | None:
        """The process's creation time (any fixed unit), 0 if it runs but that is unknown, None
        if no such process runs."""

    def profile_sources(self) -> dict[str, tuple[int, int, int]]:
        """Hardware counter sources: name -> (id, min interval, max interval)."""

    def set_profile_sources(self, ids: Sequence[int], intervals: Sequence[int]) -> None: ...

    def start_session(
        self,
        name: str,
        kernel_keywords: int,
        providers: Sequence[ProviderSpec],
        on_event: Callable[[EtwEvent], None],
    ) -> EtwSession: ...


def session_names(pid: int, start: int) -> tuple[str, str]:
    """Unique per daemon process: a pid with its creation time never names two processes."""
    base = f"{SESSION_PREFIX}{pid}-{start}"
    return base + "-kernel", base + "-runtime"


def stale_sessions(names: Iterable[str], process_start: Callable[[int], int | None]) -> list[str]:
    """ortel sessions whose daemon is gone (no such pid, or the pid is another process now).
    ETW sessions outlive the process that started them, so a killed daemon leaves them running."""
    out = []
    for name in names:
        m = SESSION_RE.match(name)
        if not m:
            continue
        pid, start = int(m.group(1)), int(m.group(2))
        now = process_start(pid)
        if now is None or (now != 0 and start != 0 and now != start):
            out.append(name)
    return out


def choose_pmc(sources: Mapping[str, tuple[int, int, int]]) -> dict[int, tuple[str, int]]:
    """The profile sources we count, by id, with their interval clamped to what the CPU allows."""
    out: dict[int, tuple[str, int]] = {}
    for name, counter in PMC_SOURCES.items():
        if name in sources:
            sid, low, high = sources[name]
            out[sid] = (name, max(low, min(high, counter.interval)) if high else counter.interval)
    return out


def snapshot_models(directory: Path | None, ttl: float = 1.0) -> Callable[[int], set[str]]:
    """pid -> the model labels in that process's snapshot files (cached ``ttl`` seconds), so ETW
    operator timings carry the same model label as everything the shim records."""
    cache: dict[int, tuple[float, set[str]]] = {}

    def models(pid: int) -> set[str]:
        if directory is None:
            return set()
        now = time.monotonic()
        hit = cache.get(pid)
        if hit is not None and now - hit[0] < ttl:
            return hit[1]
        from ortel.core import snapshot  # numpy: not at import, the CLI starts without it

        found: set[str] = set()
        for path in Path(directory).glob(f"ortel-{pid}-*.snap"):
            try:
                found |= {s.model for s in snapshot.read(path).series}
            except (OSError, ValueError):
                continue  # foreign or unreadable file: the multiproc reader reports those
        cache[pid] = (now, found)
        return found

    return models


class EtwCollector(Collector):
    name = "etw"

    def __init__(
        self,
        traceevent: Path | None,
        pids: Callable[[], Iterable[int]],
        multiproc_dir: Path | None = None,
        api: TraceEventApi | None = None,
        platform: str = sys.platform,
        self_pid: int | None = None,
    ) -> None:
        self.traceevent = traceevent
        self.pids = pids
        self.multiproc_dir = multiproc_dir
        self.api = api
        self.platform = platform
        self.self_pid = self_pid if self_pid is not None else os.getpid()
        self.sessions: list[EtwSession] = []
        self.fold: EventFold | None = None
        self._atexit = False

    def _load_api(self) -> TraceEventApi:
        if self.api is not None:
            return self.api
        if self.platform != "win32":
            raise NoDataError("ETW exists only on Windows")
        if self.traceevent is None:
            raise NoDataError(
                "no TraceEvent assembly: point --etw-traceevent at "
                "Microsoft.Diagnostics.Tracing.TraceEvent.dll (see docs/events.md)"
            )
        from .etw_live import load_traceevent  # pythonnet: Windows only

        self.api = load_traceevent(self.traceevent)
        return self.api

    def start(self) -> None:
        api = self._load_api()
        if not api.is_elevated():
            raise NoDataError(
                "ETW kernel and provider sessions need Administrator rights: run `ortel serve` "
                "from an elevated prompt, or as a service under an account in the Administrators "
                "group"
            )
        active = api.active_sessions()
        for name in stale_sessions(active, api.process_start):
            log.warning("etw: stopping session %s left behind by a daemon that is gone", name)
            api.stop_session(name)
        kernel_name, runtime_name = session_names(
            self.self_pid, api.process_start(self.self_pid) or 0
        )
        for name in (kernel_name, runtime_name):
            if name in active:  # ours, from an earlier start that failed half-way
                api.stop_session(name)
        pmc = choose_pmc(api.profile_sources())
        if pmc:
            try:
                api.set_profile_sources(list(pmc), [iv for _, iv in pmc.values()])
            except Exception as e:  # the PMU is busy or virtualised away: count without it
                log.info("etw: no hardware counter sampling: %s", e)
                pmc = {}
        fold = EventFold(pmc=pmc, models=snapshot_models(self.multiproc_dir))
        keywords = sum(KERNEL_KEYWORDS.values()) | (PMC_PROFILE_KEYWORD if pmc else 0)
        runtime = ProviderSpec(
            ORT_GUID,
            ORT_DETAILED_LEVEL,
            ORT_PROFILING_KEYWORD | ORT_SESSION_KEYWORD,
            capture_state=True,
        )
        sessions: list[EtwSession] = []
        try:
            sessions.append(api.start_session(kernel_name, keywords, (), fold.add))
            sessions.append(api.start_session(runtime_name, 0, (runtime,), fold.add))
        except BaseException:
            for s in sessions:
                s.stop()
            raise
        self.sessions, self.fold = sessions, fold
        if not self._atexit:  # ETW sessions outlive the process: never leave ours behind
            at_exit(self.close)
            self._atexit = True
        log.info("etw: sessions %s and %s started", kernel_name, runtime_name)

    def collect(self) -> Iterator[Reading]:
        if not self.sessions:
            self.start()
        for s in self.sessions:
            err = s.failure()
            if err is not None:
                self.close()  # the next collect starts fresh sessions
                raise RuntimeError(f"ETW session {s.name} stopped: {err}")
        assert self.fold is not None
        targets = [(self.self_pid, "daemon")]
        targets += [(p, "instrumented") for p in sorted(set(self.pids())) if p != self.self_pid]
        lost = {s.name: s.events_lost() for s in self.sessions}
        yield from self.fold.readings(targets, lost)

    def close(self) -> None:
        sessions, self.sessions = self.sessions, []
        for s in sessions:
            try:
                s.stop()
            except Exception as e:  # stopping is best effort; the next start cleans up stale ones
                log.warning("etw: could not stop session %s: %s", s.name, e)


SPEC = CollectorSpec(
    name="etw",
    enabled_by_default=True,
    factory=lambda o: EtwCollector(
        o.etw_traceevent,
        pids=lambda: instrumented_pids(o.multiproc_dir),
        multiproc_dir=o.multiproc_dir,
    ),
    help="Windows only: context switches, page faults, disk I/O, threads and hardware counter "
    "samples of the daemon and instrumented processes, and ONNX Runtime per-operator timings, "
    "from live ETW sessions (pythonnet + TraceEvent, --etw-traceevent; Administrator).",
)
