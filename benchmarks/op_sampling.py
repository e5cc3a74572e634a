"""Cost of live operator sampling (``ORTEL_OP_SAMPLE_SECONDS``) on a CNN's throughput.

Run it from the repository root::

    python benchmarks/op_sampling.py                   # ~30 s, sampling every 1 s
    python benchmarks/op_sampling.py --interval 10 --seconds 120
    python benchmarks/op_sampling.py --check           # exit 1 if the target is missed

Target: throughput with sampling on stays within 3% of sampling off (ratio >= 0.97).

Method: two instrumented sessions of ``ortel.instrumentation.models.cnn_model`` with the same
options (ONNX Runtime's default threads), one with ``op_sample_seconds=INTERVAL``. Rounds
alternate which variant goes first; each variant runs back-to-back inferences for a block of
``--block`` seconds. A sample's background work (a profiling session, two runs, parsing) belongs
to the "on" variant: its block ends only when the sampler is idle again, and that wait counts in
its time, so nothing leaks into the "off" blocks. Reported: total inferences / total time per
variant (every sample's cost included), their ratio, and the median and IQR of per-round ratios.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

import numpy as np
import onnxruntime as ort

from ortel.instrumentation import models
from ortel.instrumentation.recorder import Recorder
from ortel.instrumentation.session import instrument_session

TARGET = 0.97


def session(model: bytes, threads: int) -> Any:
    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])


def block(
    sess: Any, feeds: dict[str, np.ndarray], seconds: float, sampler: Any
) -> tuple[int, float]:
    n = 0
    t0 = time.perf_counter()
    end = t0 + seconds
    while time.perf_counter() < end:
        sess.run(None, feeds)
        n += 1
    if sampler is not None:
        sampler.wait_idle(60)  # the sample this block triggered is this block's cost
    return n, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--interval", type=float, default=1.0, help="seconds between samples")
    p.add_argument("--seconds", type=float, default=30.0, help="total duration")
    p.add_argument("--block", type=float, default=0.5, help="seconds per variant per round")
    p.add_argument("--threads", type=int, default=0, help="intra-op threads (0: ORT default)")
    p.add_argument("--check", action="store_true", help=f"exit 1 if ratio < {TARGET}")
    args = p.parse_args(argv)

    model = models.cnn_model()
    feeds = {"image": np.random.default_rng(0).standard_normal((1, 3, 64, 64), np.float32)}
    off = instrument_session(session(model, args.threads), "cnn_off", recorder=Recorder())
    on = instrument_session(
        session(model, args.threads),
        "cnn_on",
        recorder=Recorder(),
        op_sample_seconds=args.interval,
    )
    sampler = on._ortel_op_sampler
    for s in (off, on):  # warm-up: arenas, caches, the first-call path of the shim
        block(s, feeds, 1.0, None)
    totals = {"off": [0, 0.0], "on": [0, 0.0]}
    ratios = []
    rounds = max(2, int(args.seconds / (2 * args.block)))
    for r in range(rounds):
        per: dict[str, float] = {}
        order = [("off", off, None), ("on", on, sampler)]
        for name, sess, smp in order if r % 2 == 0 else order[::-1]:
            n, dt = block(sess, feeds, args.block, smp)
            totals[name][0] += n
            totals[name][1] += dt
            per[name] = n / dt
        ratios.append(per["on"] / per["off"])
    thr = {k: n / t for k, (n, t) in totals.items()}
    ratio = thr["on"] / thr["off"]
    q1, med, q3 = statistics.quantiles(ratios, n=4)
    print(
        f"model cnn (ortel.instrumentation.models), onnxruntime {ort.__version__}, interval "
        f"{args.interval:g} s, {rounds} rounds of {args.block:g} s per variant"
    )
    print(f"{'variant':<8} {'inferences':>10} {'seconds':>8} {'per second':>11}")
    for k in ("off", "on"):
        n, t = totals[k]
        print(f"{k:<8} {n:>10} {t:>8.2f} {thr[k]:>11.1f}")
    per_sample = sampler.cpu_seconds / max(sampler.samples, 1)
    print(
        f"samples taken: {sampler.samples} (errors {sampler.errors}); sampler thread CPU "
        f"{per_sample * 1e3:.1f} ms per sample = {100 * per_sample / args.interval:.2f}% of one "
        f"core at this interval"
    )
    print(f"throughput ratio on/off: {ratio:.4f} (per-round median {med:.4f}, "
          f"IQR [{q1:.4f}, {q3:.4f}])")  # fmt: skip
    ok = ratio >= TARGET
    print(f"target: on/off >= {TARGET}: {'PASS' if ok else 'FAIL'}")
    sampler.close()
    return 1 if args.check and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
