"""Streaming trace parsing vs ``json.load``: time and peak memory on large ONNX Runtime profiles.

Run it from the repository root::

    python benchmarks/trace_parse.py                    # 50 MB and 200 MB traces, ~1 min
    python benchmarks/trace_parse.py --sizes 20,100 --keep /tmp/traces

A real profile is recorded first (``ortel.instrumentation.models.cnn_model``, a few runs under
ONNX Runtime's profiler); larger traces repeat its runs, timestamps shifted, until each size is
reached, written the way ONNX Runtime writes them (one event per line). Each parser runs in a
fresh subprocess, so its peak resident memory (``ru_maxrss``) is its own:

- ``json.load``: what most scripts do (the whole list of events in memory);
- ``ortel``: ``ortel.analysis.trace.parse_trace`` (streamed, aggregated per node).

Targets: ortel faster than ``json.load`` at every size, and its peak memory flat in file size
(the largest trace within 1.25x of the smallest) where ``json.load`` grows with it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort

from ortel.instrumentation import models

CHILD = r"""
import json, resource, sys, time
path, how = sys.argv[1], sys.argv[2]
t = time.perf_counter()
if how == "json.load":
    with open(path) as f:
        events = json.load(f)
    n = len(events)
else:
    from ortel.analysis.trace import parse_trace
    s = parse_trace(path, warmup_runs=0)
    n = s.report.events
dt = time.perf_counter() - t
print(json.dumps({"seconds": dt, "events": n,
                  "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def record_profile(out: Path, runs: int = 20) -> list[str]:
    """Event lines (without trailing commas) of a real profile's node and run events."""
    so = ort.SessionOptions()
    so.enable_profiling = True
    so.profile_file_prefix = str(out / "base")
    sess = ort.InferenceSession(models.cnn_model(), so, providers=["CPUExecutionProvider"])
    feeds = {"image": np.random.default_rng(0).standard_normal((1, 3, 64, 64), np.float32)}
    for _ in range(runs):
        sess.run(None, feeds)
    path = Path(sess.end_profiling())
    return [ln.rstrip().rstrip(",") for ln in path.read_text().splitlines() if ln.startswith("{")]


def synthesize(lines: list[str], path: Path, size: int) -> int:
    """Repeat the run events (shifted in time) until ``size`` bytes; returns the event count."""
    events = [json.loads(ln) for ln in lines]
    head = [e for e in events if e["name"] in ("model_loading_uri", "model_loading_array",
                                               "session_initialization")]  # fmt: skip
    body = [e for e in events if e not in head]
    span = max(e["ts"] + e["dur"] for e in body) - min(e["ts"] for e in body) + 10
    n = 0
    with open(path, "w") as f:
        f.write("[\n")
        for e in head:
            f.write(json.dumps(e) + ",\n")
            n += 1
        shift = 0
        while f.tell() < size:
            for e in body:
                e2 = dict(e, ts=e["ts"] + shift)
                f.write(json.dumps(e2) + ",\n")
                n += 1
            shift += span
        f.write(json.dumps({"cat": "Session", "name": "end", "ts": shift, "dur": 0, "ph": "X",
                            "pid": 0, "tid": 0, "args": {}}) + "\n]\n")  # fmt: skip
    return n + 1


def measure(path: Path, how: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), how], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="50,200", help="trace sizes in MB, comma-separated")
    p.add_argument("--keep", type=Path, help="write the traces here (else a temp dir)")
    p.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    args = p.parse_args(argv)
    sizes = [int(float(s) * 1e6) for s in args.sizes.split(",")]
    work = args.keep or Path(tempfile.mkdtemp(prefix="ortel-trace-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    lines = record_profile(work)
    results = []
    for size in sizes:
        path = work / f"trace-{size // 1_000_000}MB.json"
        events = synthesize(lines, path, size)
        j = measure(path, "json.load")
        o = measure(path, "ortel")
        assert j["events"] == o["events"] == events, (j, o, events)
        results.append((size, events, j, o))
    print(f"{'size':>7} {'events':>9} {'json.load s':>11} {'ortel s':>8} {'speedup':>8} "
          f"{'json.load MB':>12} {'ortel MB':>9} {'memory ratio':>12}")  # fmt: skip
    for size, events, j, o in results:
        print(f"{size / 1e6:>5.0f}MB {events:>9} {j['seconds']:>11.2f} {o['seconds']:>8.2f} "
              f"{j['seconds'] / o['seconds']:>7.2f}x {j['maxrss_mb']:>12.0f} "
              f"{o['maxrss_mb']:>9.0f} {j['maxrss_mb'] / o['maxrss_mb']:>11.1f}x")  # fmt: skip
    faster = all(j["seconds"] > o["seconds"] for _, _, j, o in results)
    flat = results[-1][3]["maxrss_mb"] <= 1.25 * results[0][3]["maxrss_mb"]
    growth = results[-1][3]["maxrss_mb"] / results[0][3]["maxrss_mb"]
    print(f"ortel faster than json.load at every size: {'PASS' if faster else 'FAIL'}")
    print(f"ortel peak memory, largest / smallest trace: {growth:.2f}x "
          f"(flat: <= 1.25x): {'PASS' if flat else 'FAIL'}")  # fmt: skip
    return 1 if args.check and not (faster and flat) else 0


if __name__ == "__main__":
    sys.exit(main())
