"""Live ETW sessions through pythonnet and TraceEvent: Windows only.

Needs an elevated prompt, ``pip install 'ortel[windows]'`` and ORTEL_TEST_TRACEEVENT pointing at
Microsoft.Diagnostics.Tracing.TraceEvent.dll (docs/events.md says how to get it). Everywhere else
these tests are skipped; the event -> metric mapping and the session lifecycle run on every OS in
test_collector_etw.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from helpers import as_dict

from ortel.core import catalog as c

pytestmark = pytest.mark.skipif(
    sys.platform != "win32",
    reason="live ETW sessions exist only on Windows (mapping and lifecycle: test_collector_etw.py)",
)


@pytest.fixture
def traceevent() -> Path:
    path = os.environ.get("ORTEL_TEST_TRACEEVENT")
    if not path:
        pytest.skip("set ORTEL_TEST_TRACEEVENT to Microsoft.Diagnostics.Tracing.TraceEvent.dll")
    from ortel.collectors.etw_live import load_traceevent

    if not load_traceevent(Path(path)).is_elevated():
        pytest.skip("live ETW sessions need an elevated (Administrator) prompt")
    return Path(path)


WORKLOAD = textwrap.dedent(
    """
    import os, sys, tempfile, threading, time
    sys.stdin.readline()  # wait until the daemon's sessions run
    path = os.path.join(tempfile.mkdtemp(), "blob")
    with open(path, "wb") as f:
        f.write(os.urandom(8 << 20))
        f.flush()
        os.fsync(f.fileno())
    pages = [bytearray(4096 * 256) for _ in range(64)]  # demand-zero page faults
    threads = [threading.Thread(target=time.sleep, args=(0.01,)) for _ in range(8)]
    for t in threads: t.start()
    for t in threads: t.join()
    print("done", flush=True)
    sys.stdin.readline()
    """
)


def test_live_sessions_count_an_instrumented_process_and_stop_cleanly(traceevent):
    from ortel.collectors.etw import EtwCollector

    child = subprocess.Popen(
        [sys.executable, "-c", WORKLOAD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert child.stdin is not None and child.stdout is not None
    col = EtwCollector(traceevent, pids=lambda: [child.pid])
    try:
        list(col.collect())  # starts both sessions; the kernel rundown names running processes
        names = [s.name for s in col.sessions]
        assert all(n.startswith(f"ortel-etw-{os.getpid()}-") for n in names)
        assert col.api is not None and set(names) <= set(col.api.active_sessions())
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "done"
        time.sleep(2)  # real-time sessions deliver within a second or so
        got = as_dict(col.collect())
        child.stdin.write("\n")
        child.stdin.flush()
        child.wait(30)
    finally:
        child.kill()
        col.close()
    assert got[(c.CONTEXT_SWITCHES.name, ())] > 0
    assert got[(c.ETW_EVENTS.name, ("Windows Kernel",))] > 0
    pid = str(child.pid)

    def of_child(metric, kind):
        return [
            v for k, v in got.items() if k[0] == metric.name and k[1][0] == pid and k[1][-1] == kind
        ]

    assert sum(of_child(c.PROCESS_CTX, "voluntary") + of_child(c.PROCESS_CTX, "involuntary")) > 0
    (minor,) = of_child(c.PROCESS_FAULTS, "minor")
    assert minor >= 64 * 256 / 16  # the bytearrays' pages, touched once each (some in 64 KiB runs)
    assert set(names).isdisjoint(col.api.active_sessions())  # stopped on close


def test_live_stale_session_of_a_dead_daemon_is_stopped(traceevent):
    from ortel.collectors.etw import EtwCollector
    from ortel.collectors.etw_live import load_traceevent

    api = load_traceevent(traceevent)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], text=True,
                          capture_output=True, check=True)  # fmt: skip
    stale = f"ortel-etw-{int(dead.stdout)}-1-kernel"  # as a killed daemon would leave it
    left = api.start_session(stale, 0x1, (), lambda e: None)
    try:
        assert stale in api.active_sessions()
        col = EtwCollector(traceevent, pids=list)
        list(col.collect())
        col.close()
        assert stale not in api.active_sessions()
    finally:
        try:
            left.stop()
        except Exception:
            pass
