"""The etw collector: event -> metric mapping on recorded event fixtures (any OS), and the session
lifecycle against a fake at the TraceEvent boundary (the live sessions: tests/test_etw_live.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import FIXTURES, as_dict

from ortel.collectors import etw
from ortel.collectors.base import CollectorOptions, NoDataError
from ortel.collectors.etw_events import KERNEL_PROVIDER, ORT_PROVIDER, EtwEvent
from ortel.core import catalog as c
from ortel.core import snapshot
from ortel.core.readings import HistogramValue
from ortel.core.state import SeriesState
from ortel.instrumentation.multiproc import SnapshotWriter
from ortel.instrumentation.recorder import Recorder

KERNEL = [
    EtwEvent.from_json(d) for d in json.loads((FIXTURES / "etw/kernel_events.json").read_text())
]
ORT = [EtwEvent.from_json(d) for d in json.loads((FIXTURES / "etw/ort_events.json").read_text())]
DAEMON, WORKER = 5000, 6120
TARGETS = [(DAEMON, "daemon"), (WORKER, "instrumented")]
# TraceEventProfileSources.GetInfo() on an Intel host: name -> (id, min interval, max interval).
SOURCES = {
    "Timer": (0, 1221, 1_000_000),
    "BranchMispredictions": (11, 4096, 2**31 - 1),
    "TotalCycles": (19, 4096, 2**31 - 1),
    "InstructionRetired": (25, 4096, 2**31 - 1),
    "LLCMisses": (27, 1024, 2**31 - 1),
}
PMC = etw.choose_pmc(SOURCES)


def fold_of(events, models=None) -> etw.EventFold:
    f = etw.EventFold(pmc=PMC, models=models)
    for e in events:
        f.add(e)
    return f


def series(pid, name, role, vol, invol, minor, major, rd, wr, threads, cycles, instr, misses):
    pl = (str(pid), name, role)
    return {
        (c.PROCESS_CTX.name, pl + ("voluntary",)): vol,
        (c.PROCESS_CTX.name, pl + ("involuntary",)): invol,
        (c.PROCESS_FAULTS.name, pl + ("minor",)): minor,
        (c.PROCESS_FAULTS.name, pl + ("major",)): major,
        (c.PROCESS_DISK_IO.name, pl + ("read",)): rd,
        (c.PROCESS_DISK_IO.name, pl + ("write",)): wr,
        (c.PROCESS_THREADS.name, pl): threads,
        (c.PROCESS_CYCLES.name, pl + ("sampled",)): cycles,
        (c.PROCESS_INSTRUCTIONS.name, pl + ("sampled",)): instr,
        (c.PROCESS_CACHE_MISSES.name, pl + ("sampled",)): misses,
    }


# Counted by hand from tests/fixtures/etw/kernel_events.json (see its README).
WORKER_SERIES = series(
    WORKER, "python.exe", "instrumented", 3, 3, 5, 2, 196608, 4096, 4, 3e6, 5e6, 2e4
)
DAEMON_SERIES = series(DAEMON, "python.exe", "daemon", 1, 0, 1, 0, 0, 0, 2, 0.0, 0.0, 0.0)
HOST = {
    (c.CONTEXT_SWITCHES.name, ()): 12,
    (c.PAGE_FAULTS.name, ("minor",)): 7,
    (c.PAGE_FAULTS.name, ("major",)): 2,
    (c.DISK_IO.name, ("PhysicalDrive0", "read")): 196608,
    (c.DISK_OPERATIONS.name, ("PhysicalDrive0", "read")): 2,
    (c.DISK_IO.name, ("PhysicalDrive0", "write")): 4096,
    (c.DISK_OPERATIONS.name, ("PhysicalDrive0", "write")): 1,
    (c.DISK_IO.name, ("PhysicalDrive1", "read")): 0,
    (c.DISK_OPERATIONS.name, ("PhysicalDrive1", "read")): 0,
    (c.DISK_IO.name, ("PhysicalDrive1", "write")): 8192,
    (c.DISK_OPERATIONS.name, ("PhysicalDrive1", "write")): 1,
    (c.ETW_EVENTS.name, (KERNEL_PROVIDER,)): len(KERNEL),
}


# -- event -> metric mapping -------------------------------------------------------------------


def test_kernel_events_fold_into_the_linux_metric_names():
    got = as_dict(fold_of(KERNEL).readings(TARGETS))
    assert got == {**DAEMON_SERIES, **WORKER_SERIES, **HOST}


def test_the_same_names_as_the_linux_collectors():
    # What makes "how many context switches / page faults / cache misses did my inference process
    # cause" one query on both systems: the process collector's and perf collector's metrics.
    names = {r.metric.name for r in fold_of(KERNEL).readings(TARGETS)}
    assert {
        c.PROCESS_CTX.name,
        c.PROCESS_FAULTS.name,
        c.PROCESS_DISK_IO.name,
        c.PROCESS_CACHE_MISSES.name,
        c.CONTEXT_SWITCHES.name,
        c.PAGE_FAULTS.name,
    } <= names


@pytest.mark.parametrize(
    "state, kind",
    [
        (5, "voluntary"),  # Waiting
        (6, "voluntary"),  # Transition (waiting, stack paged out)
        ("Wait", "voluntary"),  # the enum's name, as TraceEvent prints it
        (1, "involuntary"),  # Ready: preempted
        (2, "involuntary"),  # Running: switched out at quantum end
        (3, "involuntary"),  # Standby
        (7, "involuntary"),  # DeferredReady
        (4, None),  # Terminated: the thread is gone, not switched
        (0, None),  # Initialized
    ],
)
def test_context_switch_kind_from_the_old_thread_state(state, kind):
    start = EtwEvent(KERNEL_PROVIDER, "Process/DCStart", 10, -1, {"ProcessID": 10})
    switch = EtwEvent(
        KERNEL_PROVIDER,
        "Thread/CSwitch",
        0,
        0,
        {"OldProcessID": 10, "OldThreadState": state},
    )
    got = as_dict(fold_of([start, switch]).readings([(10, "instrumented")]))
    ctx = {k[1][-1]: v for k, v in got.items() if k[0] == c.PROCESS_CTX.name}
    expected = {"voluntary": 0, "involuntary": 0}
    if kind:
        expected[kind] = 1
    assert ctx == expected
    assert got[(c.CONTEXT_SWITCHES.name, ())] == 1


def test_process_we_never_saw_start_is_unknown_not_zero():
    got = as_dict(fold_of(KERNEL).readings([(4242, "instrumented")]))
    assert not any(k[0].startswith("ortel_process_") for k in got)


def test_stopped_process_is_dropped_and_a_reused_pid_starts_from_zero():
    got = as_dict(fold_of(KERNEL).readings([(7000, "instrumented")]))
    pl = ("7000", "conhost.exe", "instrumented")  # cmd.exe stopped; conhost.exe got its pid
    assert got[(c.PROCESS_CTX.name, pl + ("voluntary",))] == 0
    assert got[(c.PROCESS_THREADS.name, pl)] == 0


def test_without_pmc_sources_no_hardware_counters():
    f = etw.EventFold(pmc={})
    for e in KERNEL:
        f.add(e)
    names = {r.metric.name for r in f.readings(TARGETS)}
    assert c.PROCESS_CYCLES.name not in names and c.PROCESS_CTX.name in names


def test_sampled_ipc_over_the_interval():
    f = fold_of(KERNEL)
    f.readings(TARGETS)  # the first reading has no interval yet
    sample = {"InstructionPointer": 1, "ThreadID": 6124, "ProcessorNumber": 0}
    for source, n in ((19, 2), (25, 3)):  # +2e6 cycles, +3e6 instructions
        for _ in range(n):
            f.add(
                EtwEvent(
                    KERNEL_PROVIDER,
                    "PerfInfo/PMCSample",
                    WORKER,
                    6124,
                    {**sample, "ProfileSource": source},
                )
            )
    got = as_dict(f.readings(TARGETS))
    pl = (str(WORKER), "python.exe", "instrumented", "sampled")
    assert got[(c.PROCESS_IPC.name, pl)] == pytest.approx(1.5)


def test_choose_pmc_clamps_intervals_to_what_the_cpu_allows():
    assert etw.choose_pmc(SOURCES) == {
        19: ("TotalCycles", 1_000_000),
        25: ("InstructionRetired", 1_000_000),
        27: ("LLCMisses", 10_000),
    }
    assert etw.choose_pmc({"LLCMisses": (27, 65536, 2**31 - 1)}) == {27: ("LLCMisses", 65536)}
    assert etw.choose_pmc({"Timer": (0, 1221, 1_000_000)}) == {}  # a VM: no counters


def test_malformed_events_are_counted_not_raised():
    f = etw.EventFold()
    f.add(EtwEvent(KERNEL_PROVIDER, "Thread/CSwitch", 0, 0, {"OldThreadState": 5}))
    f.add(EtwEvent(KERNEL_PROVIDER, "DiskIO/Read", 0, 0, {"DiskNumber": "C:"}))
    assert f.malformed == 2


def op_hist(got, model, op_type, provider="QNNExecutionProvider") -> HistogramValue:
    return got[(c.OPERATOR_DURATION.name, (model, op_type, provider))]


def test_ort_node_timings_fold_into_operator_histograms():
    got = as_dict(fold_of(KERNEL + ORT).readings(TARGETS))
    # No snapshot names the model: ONNX Runtime's own SessionCreation does (the graph name).
    conv = op_hist(got, "torch_jit", "Conv")
    assert conv.count == 2 and conv.sum == pytest.approx(599e-6)
    bounds = c.OPERATOR_DURATION.buckets
    assert conv.bounds == bounds and len(conv.counts) == len(bounds) + 1
    # 287 µs and 312 µs both fall in the (281 µs, 500 µs] bucket.
    assert conv.counts[bounds.index(0.0005)] == 2 and sum(conv.counts) == 2
    assert op_hist(got, "torch_jit", "Relu").sum == pytest.approx(9e-6)
    assert op_hist(got, "torch_jit", "Gemm").count == 1
    assert op_hist(got, "torch_jit", "Add").count == 1
    assert op_hist(got, "torch_jit", "unknown").sum == pytest.approx(55e-6)  # "node_7"
    # Another, uninstrumented process: its own graph name.
    assert op_hist(got, "mobilenet_v2", "MatMul").count == 1
    ops = {k[1] for k in got if k[0] == c.OPERATOR_DURATION.name}
    assert len(ops) == 6  # EXECUTE, the queue wait and the node counted in cycles are not ops
    assert got[(c.ETW_EVENTS.name, (ORT_PROVIDER,))] == len(ORT)


def test_cycle_counted_nodes_are_not_durations():
    f = fold_of(ORT)
    assert f.nodes_without_time == 1


def test_the_instrumented_process_model_label_wins(tmp_path):
    # The shim's snapshot names the model "resnet50": ETW timings use the same label as the
    # shim's own metrics rather than ONNX Runtime's graph name.
    rec = Recorder()
    rec.series("resnet50", "QNNExecutionProvider").ok.append(1_000_000)
    SnapshotWriter(tmp_path)(rec)
    (snap,) = tmp_path.glob("ortel-*.snap")
    snap.rename(snap.with_name(f"ortel-{WORKER}-{snap.name.split('-')[2]}"))
    got = as_dict(fold_of(ORT, models=etw.snapshot_models(tmp_path)).readings(TARGETS))
    assert op_hist(got, "resnet50", "Conv").count == 2
    assert not any(k[1][0] == "torch_jit" for k in got if k[0] == c.OPERATOR_DURATION.name)


def test_model_is_unknown_when_a_process_runs_several(tmp_path):
    second = EtwEvent(
        ORT_PROVIDER,
        "SessionCreation",
        WORKER,
        6124,
        {"sessionId": 2, "modelGraphName": "bert"},
    )
    got = as_dict(fold_of([ORT[0], second, *ORT[2:]]).readings(TARGETS))
    assert op_hist(got, "unknown", "Conv").count == 2


def test_snapshot_models_ignores_broken_files(tmp_path):
    (tmp_path / f"ortel-{WORKER}-1.snap").write_text("{not a snapshot")
    (tmp_path / f"ortel-{WORKER}-2.snap").write_bytes(b"ORTELSNP\x02\x00")  # truncated
    good = snapshot.Snapshot([SeriesState("a", "cpu")], pid=WORKER, start=3)
    snapshot.write(tmp_path / f"ortel-{WORKER}-3.snap", good)
    assert etw.snapshot_models(tmp_path)(WORKER) == {"a"}
    assert etw.snapshot_models(None)(WORKER) == set()


# -- session lifecycle, against a fake at the TraceEvent boundary ------------------------------


class FakeSession:
    def __init__(self, api, name, kernel_keywords, providers, on_event) -> None:
        self.api, self.name = api, name
        self.kernel_keywords, self.providers, self.on_event = kernel_keywords, providers, on_event
        self.lost = 0
        self.error: BaseException | None = None
        self.stopped = False

    def events_lost(self) -> int:
        return self.lost

    def failure(self):
        return self.error

    def stop(self) -> None:
        self.stopped = True
        if self.name in self.api.active:
            self.api.active.remove(self.name)


class FakeTraceEvent:
    """Stands in for etw_live.LiveApi: the machine's ETW sessions and processes as TraceEvent
    reports them. ``processes`` maps pid -> creation time (0: runs, creation time unknown)."""

    def __init__(self, elevated=True, active=(), processes=None, sources=None) -> None:
        self.elevated = elevated
        self.active = list(active)
        self.processes = {DAEMON: 1337, **(processes or {})}
        self.sources = SOURCES if sources is None else sources
        self.stopped: list[str] = []
        self.sessions: list[FakeSession] = []
        self.pmc_set = None
        self.pmc_error: Exception | None = None
        self.fail_start: str | None = None

    def is_elevated(self) -> bool:
        return self.elevated

    def active_sessions(self) -> list[str]:
        return list(self.active)

    def stop_session(self, name: str) -> None:
        self.stopped.append(name)
        self.active.remove(name)

    def process_start(self, pid: int):
        return self.processes.get(pid)

    def profile_sources(self):
        return dict(self.sources)

    def set_profile_sources(self, ids, intervals) -> None:
        if self.pmc_error:
            raise self.pmc_error
        self.pmc_set = (list(ids), list(intervals))

    def start_session(self, name, kernel_keywords, providers, on_event):
        if name in self.active:
            raise OSError(183, "ERROR_ALREADY_EXISTS")  # what ETW answers for a taken name
        if self.fail_start and name.endswith(self.fail_start):
            raise OSError(5, "ERROR_ACCESS_DENIED")
        s = FakeSession(self, name, kernel_keywords, providers, on_event)
        self.active.append(name)
        self.sessions.append(s)
        return s

    def emit(self, events) -> None:
        """Deliver events the way ETW does: kernel ones to the kernel session, the rest to the
        session that enabled their provider."""
        for e in events:
            kind = "-kernel" if e.provider == KERNEL_PROVIDER else "-runtime"
            (s,) = [s for s in self.sessions if not s.stopped and s.name.endswith(kind)]
            s.on_event(e)


def collector(api, pids=(WORKER,), platform="win32") -> etw.EtwCollector:
    return etw.EtwCollector(
        Path("TraceEvent.dll"), pids=lambda: pids, api=api, platform=platform, self_pid=DAEMON
    )


@pytest.fixture(autouse=True)
def _no_atexit(monkeypatch):
    registered = []
    monkeypatch.setattr(etw, "at_exit", registered.append)
    return registered


def test_not_windows_is_no_data():
    col = etw.EtwCollector(None, pids=list, platform="linux")
    with pytest.raises(NoDataError, match="only on Windows"):
        list(col.collect())


def test_no_traceevent_assembly_is_no_data_saying_how():
    col = etw.EtwCollector(None, pids=list, platform="win32")
    with pytest.raises(NoDataError, match="--etw-traceevent"):
        list(col.collect())


def test_missing_pythonnet_is_no_data_saying_how(monkeypatch, tmp_path):
    import builtins

    real_import = builtins.__import__

    def no_clr(name, *a, **kw):
        if name == "clr":
            raise ImportError("No module named 'clr'")
        return real_import(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_clr)
    dll = tmp_path / "Microsoft.Diagnostics.Tracing.TraceEvent.dll"
    dll.write_bytes(b"MZ")
    col = etw.EtwCollector(dll, pids=list, platform="win32")
    with pytest.raises(NoDataError, match=r"pip install 'ortel\[windows\]'"):
        list(col.collect())


def test_admin_rights_are_detected_with_a_clear_message():
    api = FakeTraceEvent(elevated=False)
    with pytest.raises(NoDataError, match="Administrator"):
        list(collector(api).collect())
    assert api.sessions == []


def test_sessions_are_unique_per_daemon_and_enable_what_is_needed(_no_atexit):
    api = FakeTraceEvent()
    col = collector(api)
    list(col.collect())
    kernel, runtime = api.sessions
    assert (kernel.name, runtime.name) == (
        "ortel-etw-5000-1337-kernel",
        "ortel-etw-5000-1337-runtime",
    )
    assert kernel.kernel_keywords == 0x1 | 0x2 | 0x10 | 0x100 | 0x1000 | etw.PMC_PROFILE_KEYWORD
    assert kernel.providers == ()
    (ort,) = runtime.providers
    assert ort.guid == "3a26b1ff-7484-7484-7484-15261f42614d"
    assert ort.keywords == 0x100 | 0x1 and ort.level > 5 and ort.capture_state
    assert api.pmc_set == ([19, 25, 27], [1_000_000, 1_000_000, 10_000])
    assert _no_atexit == [col.close]  # stopped at exit: ETW sessions outlive their process


def test_events_flow_to_readings():
    api = FakeTraceEvent()
    col = collector(api)
    list(col.collect())
    api.emit(KERNEL + ORT)
    api.sessions[0].lost = 17
    got = as_dict(col.collect())
    assert {k: got[k] for k in WORKER_SERIES} == WORKER_SERIES
    assert {k: got[k] for k in DAEMON_SERIES} == DAEMON_SERIES
    assert op_hist(got, "torch_jit", "Conv").count == 2
    assert got[(c.ETW_EVENTS_LOST.name, ("ortel-etw-5000-1337-kernel",))] == 17
    assert got[(c.ETW_EVENTS_LOST.name, ("ortel-etw-5000-1337-runtime",))] == 0


def test_stale_sessions_of_a_killed_daemon_are_stopped():
    api = FakeTraceEvent(
        active=[
            "ortel-etw-111-5-kernel",  # pid 111 no longer runs
            "ortel-etw-111-5-runtime",
            "ortel-etw-222-9-kernel",  # another daemon, alive: not ours to stop
            "ortel-etw-333-1-runtime",  # pid 333 now belongs to another process
            "ortel-etw-444-7-kernel",  # a protected process: start unknown, assume alive
            "NT Kernel Logger",
            "Circular Kernel Context Logger",
        ],
        processes={222: 9, 333: 2, 444: 0},
    )
    list(collector(api).collect())
    assert sorted(api.stopped) == [
        "ortel-etw-111-5-kernel",
        "ortel-etw-111-5-runtime",
        "ortel-etw-333-1-runtime",
    ]
    assert "NT Kernel Logger" in api.active and "ortel-etw-222-9-kernel" in api.active


def test_own_leftover_sessions_are_replaced():
    api = FakeTraceEvent(active=["ortel-etw-5000-1337-kernel"])
    list(collector(api).collect())
    assert api.stopped == ["ortel-etw-5000-1337-kernel"]
    assert [s.name for s in api.sessions][0] == "ortel-etw-5000-1337-kernel"


def test_close_stops_both_sessions():
    api = FakeTraceEvent()
    col = collector(api)
    list(col.collect())
    col.close()
    assert all(s.stopped for s in api.sessions) and not [
        n for n in api.active if n.startswith("ortel-")
    ]


def test_a_failed_session_is_reported_then_restarted():
    api = FakeTraceEvent()
    col = collector(api)
    list(col.collect())
    api.sessions[1].error = RuntimeError("the session stopped (stopped by another tool?)")
    with pytest.raises(RuntimeError, match="runtime stopped"):
        list(col.collect())
    assert all(s.stopped for s in api.sessions)
    list(col.collect())  # crash recovery: fresh sessions with the same unique names
    assert len(api.sessions) == 4 and not any(s.stopped for s in api.sessions[2:])


def test_half_started_sessions_are_stopped():
    api = FakeTraceEvent()
    api.fail_start = "-runtime"
    with pytest.raises(OSError):
        list(collector(api).collect())
    (kernel,) = api.sessions
    assert kernel.stopped and not api.active


def test_busy_pmu_counts_without_hardware_counters():
    api = FakeTraceEvent()
    api.pmc_error = RuntimeError("profile sources in use")
    col = collector(api)
    list(col.collect())
    assert api.sessions[0].kernel_keywords & etw.PMC_PROFILE_KEYWORD == 0
    api.emit(KERNEL)
    names = {k[0] for k in as_dict(col.collect())}
    assert c.PROCESS_CYCLES.name not in names and c.PROCESS_CTX.name in names


def test_vm_without_pmc_sources():
    api = FakeTraceEvent(sources={"Timer": (0, 1221, 1_000_000)})
    list(collector(api).collect())
    assert api.pmc_set is None
    assert api.sessions[0].kernel_keywords & etw.PMC_PROFILE_KEYWORD == 0


def test_stale_session_rules():
    alive = {10: 100, 11: 0}.get
    names = ["ortel-etw-10-100-kernel", "ortel-etw-10-99-kernel", "ortel-etw-11-5-runtime"]
    names += ["ortel-etw-12-1-kernel", "ortel-etw-x-1-kernel", "ortel-etw-10-100-other"]
    assert etw.stale_sessions(names, alive) == ["ortel-etw-10-99-kernel", "ortel-etw-12-1-kernel"]


def test_spec(tmp_path):
    assert etw.SPEC.name == "etw"
    dll = tmp_path / "TraceEvent.dll"
    col = etw.SPEC.factory(CollectorOptions(etw_traceevent=dll, multiproc_dir=tmp_path))
    assert isinstance(col, etw.EtwCollector) and col.traceevent == dll
    assert list(col.pids()) == []


def test_traceevent_option_flag_env_and_file(tmp_path, monkeypatch):
    from ortel.exporter.cli import main
    from ortel.exporter.config import OPTIONS, build_settings

    dll = tmp_path / "Microsoft.Diagnostics.Tracing.TraceEvent.dll"
    dll.write_bytes(b"MZ")
    params = {o.name: o.default for o in OPTIONS} | {"etw_traceevent": dll}
    assert build_settings(params).options.etw_traceevent == dll
    monkeypatch.setenv("ORTEL_ETW_TRACEEVENT", str(tmp_path / "missing.dll"))
    with pytest.raises(SystemExit) as e:
        main(["serve", "--check-config"])
    assert e.value.code == 2


def test_missing_traceevent_file_is_one_line_and_exit_2(tmp_path):
    import subprocess
    import sys

    missing = tmp_path / "TraceEvent.dll"
    r = subprocess.run(
        [sys.executable, "-m", "ortel.exporter", "serve", "--check-config"]
        + ["--etw-traceevent", str(missing)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "does not exist" in r.stderr, r.stderr
