"""What folding one ETW event costs the daemon, in Python, against a do-nothing callback.

The etw collector folds every kernel event (context switches above all: tens of thousands per
second on a busy host) in a Python callback. This times ``EventFold.add`` on the recorded event
fixtures against a callback that only counts, interleaved over rounds, and prints the median cost
per event, the ratio, and the share of one core that a given event rate would take. The pythonnet
crossing from TraceEvent into Python is not included (it needs Windows).

    python benchmarks/etw_fold.py [--rounds 15] [--events-per-second 50000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from ortel.collectors import etw
from ortel.collectors.etw_events import EtwEvent

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "etw"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--repeat", type=int, default=2000, help="passes over the fixtures per round")
    ap.add_argument("--events-per-second", type=float, default=50_000.0)
    args = ap.parse_args()

    events = [
        EtwEvent.from_json(d)
        for name in ("kernel_events.json", "ort_events.json")
        for d in json.loads((FIXTURES / name).read_text())
    ]
    sources = {"TotalCycles": (19, 4096, 2**31), "InstructionRetired": (25, 4096, 2**31)}
    pmc = etw.choose_pmc(sources)
    n = len(events) * args.repeat

    def run(callback) -> float:
        t0 = time.perf_counter()
        for _ in range(args.repeat):
            for e in events:
                callback(e)
        return (time.perf_counter() - t0) / n

    counted = [0]

    def baseline(e: EtwEvent) -> None:
        counted[0] += 1

    fold_s: list[float] = []
    base_s: list[float] = []
    for r in range(args.rounds):
        fold = etw.EventFold(pmc=pmc)
        pair = [(fold_s, fold.add), (base_s, baseline)]
        for out, cb in pair if r % 2 == 0 else reversed(pair):
            out.append(run(cb))
    fold_us = statistics.median(fold_s) * 1e6
    base_us = statistics.median(base_s) * 1e6
    ratios = [f / b for f, b in zip(fold_s, base_s)]
    print(f"events per round        {n}")
    print(f"do-nothing callback     {base_us:.3f} us/event")
    print(f"EventFold.add           {fold_us:.3f} us/event")
    print(f"ratio fold/baseline     {statistics.median(ratios):.2f}x (median of {args.rounds})")
    share = fold_us * 1e-6 * args.events_per_second
    rate = f"{args.events_per_second:,.0f} events/s"
    print(f"at {rate:<20} {share:.1%} of one core for folding alone")


if __name__ == "__main__":
    main()
