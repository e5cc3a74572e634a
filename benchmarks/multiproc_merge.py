"""What the daemon spends merging the multiprocess directory, next to an earlier design.

Builds the same workload twice — ``--processes`` instrumented processes × ``--models`` models,
each with a full minute of 5-second window slices of lognormal latencies — once with this
checkout and once with the ortel at ``--baseline`` (default: the last commit before the binary
snapshot format, extracted with ``git archive`` into a temporary directory), each in its own
subprocess. Each side writes its snapshots with its own writer, then times its own inference
collector's ``collect()`` (read every snapshot, validate, merge, produce readings) over
``--rounds`` rounds, interleaving the two sides, and prints the median per sample, the ratio, the
directory's size and what one process's snapshot write costs. By default every snapshot changes
between samples (busy processes: nothing decoded before can be reused); ``--idle`` leaves them
alone (idle processes, whose writers do not rewrite unchanged state).

    python benchmarks/multiproc_merge.py            # 16 processes x 25 models
    python benchmarks/multiproc_merge.py --processes 64 --models 5

Target: this checkout's sample ≤ 10 ms at 16 × 25.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASELINE = "a35bb18"  # JSON snapshots, one dict sketch per slice, validated field by field

WORKER = r"""
import json, os, statistics, sys, time
from pathlib import Path
import numpy as np
from ortel.instrumentation.recorder import Recorder
from ortel.instrumentation.multiproc import SnapshotWriter
try:  # where the collectors lived before they became a layer of their own
    from ortel.exporter.collectors.inference import InferenceCollector
except ImportError:
    from ortel.collectors.inference import InferenceCollector

args = json.loads(sys.argv[1])
work = Path(args["dir"])
mdir, procfs = work / "mp", work / "proc"
mdir.mkdir(parents=True)
rng = np.random.default_rng(args["seed"])
now = time.time()
write_s = []
for p in range(args["processes"]):
    pid = 400_000 + p
    (procfs / str(pid)).mkdir(parents=True)
    fields = ["S"] + ["0"] * 18 + ["1"] + ["0"] * 30  # start time: 1 tick
    (procfs / str(pid) / "stat").write_text(f"{pid} (python3) " + " ".join(fields) + "\n")
    rec = Recorder()
    for m in range(args["models"]):
        s = rec.series(f"model-{m:02d}", "CPUExecutionProvider")
        median = 0.0005 * (100 ** (m / max(1, args["models"] - 1)))  # 0.5 ms ... 50 ms
        for k in range(args["slices"]):
            d = rng.lognormal(np.log(median), args["sigma"], args["calls"]) * 1e9
            s.ok.extend(d.astype(np.int64).tolist())
            rec.fold(now - 5.0 * (args["slices"] - 1 - k))
    writer = SnapshotWriter(mdir)
    t = time.perf_counter()
    writer(rec)
    write_s.append(time.perf_counter() - t)
    for f in list(mdir.iterdir()):
        if f.name.startswith(f"ortel-{os.getpid()}-"):
            if f.suffix == ".lock":
                f.unlink()
            else:
                f.rename(mdir / f"ortel-{pid}-1{f.suffix}")
col = InferenceCollector(mdir, procfs)
list(col.collect())  # warm-up
size = sum(f.stat().st_size for f in mdir.iterdir())
print(json.dumps({"ready": True, "bytes": size, "write_ms": 1e3 * statistics.median(write_s)}),
      flush=True)
snaps = [f for f in mdir.iterdir() if f.suffix in (".snap", ".json")]
for tick, line in enumerate(sys.stdin, 1):
    if args["busy"]:  # every process wrote since the last sample: nothing can be reused
        for f in snaps:
            os.utime(f, ns=(tick * 10**9, tick * 10**9))
    t = time.perf_counter()
    out = list(col.collect())
    dt = time.perf_counter() - t
    n = col.latest.series[("model-00", "CPUExecutionProvider")].ok.count
    print(json.dumps({"ms": dt * 1e3, "readings": len(out), "calls": n}), flush=True)
"""


def extract(rev: str, dest: Path) -> Path:
    blob = subprocess.run(
        ["git", "archive", rev, "instrumentation", "exporter"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=BytesIO(blob)) as tar:
        tar.extractall(dest, filter="data")
    return dest


class Side:
    def __init__(self, name: str, tree: Path, work: Path, params: dict) -> None:
        self.name = name
        # instrumentation/ and exporter/ together make the ``ortel`` namespace package.
        path = os.pathsep.join([str(tree / "instrumentation"), str(tree / "exporter")])
        env = {**os.environ, "PYTHONPATH": path}
        env.pop("ORTEL_MULTIPROC_DIR", None)
        cfg = json.dumps({**params, "dir": str(work / name)})
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WORKER, cfg],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.info = self._line()
        self.times: list[float] = []
        self.readings = self.calls = 0

    def _line(self) -> dict:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"{self.name}: worker failed (exit {self.proc.wait()})")
        return json.loads(line)

    def sample(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        r = self._line()
        self.times.append(r["ms"])
        self.readings, self.calls = r["readings"], r["calls"]

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--processes", type=int, default=16)
    ap.add_argument("--models", type=int, default=25)
    ap.add_argument("--slices", type=int, default=12, help="5-s slices per series (12 = 60 s)")
    ap.add_argument("--calls", type=int, default=200, help="calls per slice per series")
    ap.add_argument("--sigma", type=float, default=0.3, help="lognormal spread of latencies")
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--baseline", default=BASELINE, help="git revision to compare with")
    ap.add_argument("--idle", action="store_true", help="snapshots unchanged between samples")
    a = ap.parse_args()
    params = {
        "processes": a.processes,
        "models": a.models,
        "slices": a.slices,
        "calls": a.calls,
        "sigma": a.sigma,
        "seed": 7,
        "busy": not a.idle,
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        base_tree = extract(a.baseline, work / "baseline-tree")
        sides = [Side("baseline", base_tree, work, params), Side("this", ROOT, work, params)]
        for i in range(a.rounds):
            for s in sides if i % 2 == 0 else sides[::-1]:
                s.sample()
        for s in sides:
            s.close()
    base, this = sides
    assert base.calls == this.calls, "the two sides did not merge the same calls"
    print(
        f"{a.processes} processes x {a.models} models, {a.slices} slices x {a.calls} calls, "
        f"sigma {a.sigma}, {'idle' if a.idle else 'busy'} processes; "
        f"median of {a.rounds} interleaved samples"
    )
    print(f"{'':<10}{'collect ms':>12}{'p90 ms':>10}{'dir KiB':>10}{'write ms':>10}{'series':>9}")
    for s in sides:
        t = sorted(s.times)
        print(
            f"{s.name:<10}{statistics.median(t):>12.2f}{t[int(0.9 * (len(t) - 1))]:>10.2f}"
            f"{s.info['bytes'] / 1024:>10.0f}{s.info['write_ms']:>10.2f}{s.readings:>9}"
        )
    ratio = statistics.median(this.times) / statistics.median(base.times)
    print(f"this / baseline: {ratio:.3f}x  (baseline = {a.baseline})")
    ok = statistics.median(this.times) <= 10.0
    print(f"target <= 10 ms per sample at 16 x 25: {'met' if ok else 'MISSED'}")


if __name__ == "__main__":
    main()
