"""Counters never go backwards: across instrumented processes that exit, crash and start again,
and across daemon restarts on the same multiprocess directory. Real processes throughout: real
onnxruntime workers writing snapshots, a real ``ortel serve`` merging them, scraped over HTTP.

What a restart does (docs/reliability.md): an exited or killed process's last snapshot is compacted
into ``ortel-archive.json`` and stays counted; a new daemon starts from that archive. Counts a
killed process recorded after its last snapshot (at most one flush interval, 1 s) are lost.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from harness import OrtelServe, http_get
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.slow

WORKER = textwrap.dedent(
    """
    import sys, time
    import numpy as np, onnxruntime as ort
    from ortel.instrumentation import instrument_session
    from ortel.instrumentation.models import add_model
    from ortel.instrumentation.recorder import RECORDER

    calls, hold = int(sys.argv[1]), sys.argv[2] == "hold"
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    s = instrument_session(ort.InferenceSession(add_model(), so), "add")
    x = np.ones((1, 16), np.float32)
    for _ in range(calls):
        s.run(None, {"x": x, "y": x})
    if hold:  # flush now, then wait to be killed: no exit-time flush will happen
        RECORDER.flush()
        print("ready", flush=True)
        time.sleep(600)
    """
)


def env_for(mdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORTEL_")}
    env["ORTEL_MULTIPROC_DIR"] = str(mdir)
    return env


def run_worker(mdir: Path, calls: int) -> None:
    subprocess.run(
        [sys.executable, "-c", WORKER, str(calls), "exit"],
        env=env_for(mdir),
        check=True,
        timeout=60,
    )


def start_holding_worker(mdir: Path, calls: int) -> subprocess.Popen[str]:
    p = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(calls), "hold"],
        env=env_for(mdir),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    return p


class Counts:
    """Scrapes ``ortel_inferences_total{status="ok"}`` (all models) and remembers every value."""

    def __init__(self) -> None:
        self.seen: list[float] = []

    def scrape(self, url: str) -> float:
        status, _, body = http_get(f"{url}/metrics")
        assert status == 200
        total = 0.0
        for fam in text_string_to_metric_families(body):
            for s in fam.samples:
                if s.name == "ortel_inferences_total" and s.labels.get("status") == "ok":
                    total += s.value
        self.seen.append(total)
        return total

    def wait_for(self, url: str, want: float, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while self.scrape(url) != want:
            assert time.monotonic() < deadline, f"count {self.seen[-1]}, want {want}"
            time.sleep(0.1)

    def hold_for(self, url: str, want: float, seconds: float) -> None:
        """The count stays exactly ``want`` for ``seconds`` of scrapes."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            assert self.scrape(url) == want
            time.sleep(0.1)

    def never_went_back(self) -> bool:
        return all(b >= a for a, b in zip(self.seen, self.seen[1:]))


def daemon(mdir: Path) -> OrtelServe:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORTEL_")}
    return OrtelServe(
        "--collectors", "inference", "--multiproc-dir", str(mdir), "--interval", "0.2", env=env
    )


def test_instrumented_processes_exiting_crashing_and_restarting(tmp_path: Path) -> None:
    mdir = tmp_path / "mp"
    c = Counts()
    with daemon(mdir) as url:
        run_worker(mdir, 100)  # exits normally: final snapshot at exit
        c.wait_for(url, 100)
        held = start_holding_worker(mdir, 50)
        try:
            c.wait_for(url, 150)
        finally:
            held.send_signal(signal.SIGKILL)  # a crash: no exit-time flush
            held.wait(10)
        c.hold_for(url, 150, 1.5)  # compacted from its last snapshot, not lost, not doubled
        run_worker(mdir, 30)  # the "restarted" worker
        c.wait_for(url, 180)
        c.hold_for(url, 180, 0.5)
    assert c.never_went_back(), c.seen
    names = sorted(p.name for p in mdir.iterdir())
    assert names == ["ortel-archive.snap"]  # every exited process compacted away


def test_daemon_restarts_continue_from_the_archive(tmp_path: Path) -> None:
    mdir = tmp_path / "mp"
    c = Counts()
    run_worker(mdir, 100)
    with daemon(mdir) as url:
        c.wait_for(url, 100)
    run_worker(mdir, 50)  # finished while no daemon ran: its snapshot waits in the directory
    held = start_holding_worker(mdir, 25)  # alive across the restart
    try:
        with daemon(mdir) as url:
            c.wait_for(url, 175)
            held.send_signal(signal.SIGKILL)
            held.wait(10)
            c.hold_for(url, 175, 1.0)
        with daemon(mdir) as url:  # and once more, everything now in the archive
            c.wait_for(url, 175)
            c.hold_for(url, 175, 0.5)
    finally:
        if held.poll() is None:
            held.kill()
            held.wait(10)
    assert c.never_went_back(), c.seen
