"""Records calls at a steady rate until killed, logging how many it made and when.

    python steady.py MODEL LOG BATCH TICK

Every TICK seconds it records BATCH calls of MODEL (provider ``cpu``), then appends
``<time.monotonic()> <calls so far>`` to LOG and flushes, so a line's count was recorded before
its time (CLOCK_MONOTONIC: the same clock in every process). Gives up after a minute.
"""

from __future__ import annotations

import sys
import time

from ortel.instrumentation import profiled

LIFETIME = 60.0


def main() -> int:
    model, log_path = sys.argv[1], sys.argv[2]
    batch, tick = int(sys.argv[3]), float(sys.argv[4])

    @profiled(model=model, provider="cpu")
    def infer() -> None:
        pass

    made = 0
    start = time.monotonic()
    with open(log_path, "a", buffering=1) as log:
        next_tick = start
        while time.monotonic() - start < LIFETIME:
            for _ in range(batch):
                infer()
            made += batch
            log.write(f"{time.monotonic():.6f} {made}\n")
            log.flush()
            next_tick += tick
            time.sleep(max(0.0, next_tick - time.monotonic()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
