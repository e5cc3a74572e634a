"""Does ``ortel profile`` measure what a bare timing loop measures?

Run it from the repository root (ortel installed with the ``profile`` extra)::

    python benchmarks/profile_runner.py                 # add + mlp, ~30 s
    python benchmarks/profile_runner.py --rounds 20 --json runner.json
    python benchmarks/profile_runner.py --check         # exit 1 if a target is missed

Per model, one single-threaded session is timed three ways in interleaved blocks, the order
rotated every round so drift hits all alike:

* ``raw``        a bare loop: ``perf_counter_ns`` around ``session.run``, appended to a list;
* ``runner``     ``ortel.profiling.runner.run`` (the measured phase of ``ortel profile``, warm-up
                 kept short) with no progress display;
* ``runner+bars`` the same with the rich progress bars drawing to a (fake) terminal, as
                 ``ortel profile`` does by default.

Each round gives every variant's median latency and throughput; the table reports the median over
rounds of the ratio to the same round's ``raw``. Targets: the runner's p50 within 2% of the bare
loop's (it adds nothing inside the timed span), and with progress bars within 5% (their refresh
thread competes for the GIL four times a second; ``-q`` turns them off).

It also times ``track_generation``'s ``g.token()`` (ns per token) against an empty loop.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import statistics
import sys
import time
from time import perf_counter_ns

import numpy as np
import onnxruntime as ort

from ortel.instrumentation import models
from ortel.profiling.runner import Policy, run

P50_TARGET = 1.02
BARS_TARGET = 1.05


def session(data: bytes) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])


def raw_block(fn, seconds: float) -> tuple[float, float]:
    lat: list[int] = []
    end = perf_counter_ns() + int(seconds * 1e9)
    t_start = perf_counter_ns()
    while True:
        t0 = perf_counter_ns()
        fn()
        t1 = perf_counter_ns()
        lat.append(t1 - t0)
        if t1 >= end:
            break
    wall = (perf_counter_ns() - t_start) * 1e-9
    return float(np.median(lat)) * 1e-9, len(lat) / wall


def runner_block(fn, seconds: float, bars: bool) -> tuple[float, float]:
    policy = Policy(min_duration=seconds, min_samples=1, warmup_window=0.01, warmup_max=0.02)
    reporter = None
    if bars:
        from rich.console import Console

        from ortel.profiling.cli import RichReporter

        reporter = RichReporter()
        reporter.console = Console(file=io.StringIO(), force_terminal=True, width=100)
        reporter.progress.live.console = reporter.console
        reporter.start(1)
        reporter.config(0, "benchmark")
    try:
        r = run(fn, policy, 1, reporter.phase if reporter else None)
    finally:
        if reporter:
            reporter.stop()
    return float(np.median(r.samples)), r.throughput or 0.0


def token_ns(n: int = 200_000) -> tuple[float, float]:
    from ortel.instrumentation import track_generation
    from ortel.instrumentation.recorder import Recorder

    rec = Recorder()
    t0 = perf_counter_ns()
    for _ in range(n):
        pass
    empty = (perf_counter_ns() - t0) / n
    with track_generation(model="bench", recorder=rec) as g:
        t0 = perf_counter_ns()
        for _ in range(n):
            g.token()
        tok = (perf_counter_ns() - t0) / n
    return tok, empty


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="add,mlp")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--block-seconds", type=float, default=0.5)
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    a = ap.parse_args(argv)
    builders = {"add": models.add_model, "mlp": models.mlp_model, "cnn": models.cnn_model}
    feeds = {
        "add": {"x": np.ones((1, 16), np.float32), "y": np.ones((1, 16), np.float32)},
        "mlp": {"input": np.ones((1, 64), np.float32)},
        "cnn": {"image": np.ones((1, 3, 64, 64), np.float32)},
    }
    results = {}
    ok = True
    print(f"{'model':6} {'variant':12} {'p50':>10} {'p50 ratio':>10} {'thr ratio':>10}")
    for name in a.models.split(","):
        s = session(builders[name]())
        feed = feeds[name]
        fn = lambda s=s, feed=feed: s.run(None, feed)  # noqa: E731
        for _ in range(200):
            fn()
        sec = a.block_seconds
        variants = {
            "raw": functools.partial(raw_block, fn, sec),
            "runner": functools.partial(runner_block, fn, sec, False),
            "runner+bars": functools.partial(runner_block, fn, sec, True),
        }
        names = list(variants)
        per: dict[str, list[tuple[float, float]]] = {v: [] for v in names}
        for i in range(a.rounds):
            order = names[i % 3 :] + names[: i % 3]
            for v in order:
                per[v].append(variants[v]())
        res = {}
        for v in names:
            p50 = statistics.median(x[0] for x in per[v])
            pr = statistics.median(x[0] / r[0] for x, r in zip(per[v], per["raw"]))
            tr = statistics.median(x[1] / r[1] for x, r in zip(per[v], per["raw"]))
            res[v] = {"p50_seconds": p50, "p50_ratio": pr, "throughput_ratio": tr}
            print(f"{name:6} {v:12} {p50 * 1e6:8.2f}µs {pr:10.3f} {tr:10.3f}")
        ok &= res["runner"]["p50_ratio"] <= P50_TARGET
        ok &= res["runner+bars"]["p50_ratio"] <= BARS_TARGET
        results[name] = res
    tok, empty = token_ns()
    print(f"track_generation g.token(): {tok:.0f} ns per token (empty loop {empty:.0f} ns)")
    results["token_ns"] = tok
    print(
        f"targets: runner p50 <= {P50_TARGET}x raw, with progress bars <= {BARS_TARGET}x: "
        + ("met" if ok else "MISSED")
    )
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"results": results, "time": time.time()}, f, indent=2)
    return 0 if ok or not a.check else 1


if __name__ == "__main__":
    sys.exit(main())
