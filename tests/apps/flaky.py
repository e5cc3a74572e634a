"""Calls a model through the shim at a steady rate; fails a share of the calls on command.

    python flaky.py MODEL CONTROL

About 200 calls a second of MODEL (provider ``cpu``, an SLA target of 0.5 s it always meets).
CONTROL is a file holding the share of calls to fail, e.g. ``0.2``: then every 5th call raises,
an exact share, not a random one. The file is re-read ten times a second; missing or empty means
0. Stops when its parent dies, or after two minutes.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from ortel.instrumentation import track

LIFETIME = 120.0
BATCH, TICK = 20, 0.1


def share(control: Path) -> float:
    try:
        return float(control.read_text().strip() or 0)
    except (OSError, ValueError):
        return 0.0


def main() -> int:
    model, control = sys.argv[1], Path(sys.argv[2])
    parent, start = os.getppid(), time.monotonic()
    calls = 0
    while os.getppid() == parent and time.monotonic() - start < LIFETIME:
        fail = share(control)
        every = round(1 / fail) if fail > 0 else 0
        for _ in range(BATCH):
            calls += 1
            due = every > 0 and calls % every == 0
            try:
                with track(model, provider="cpu", sla_seconds=0.5):
                    if due:
                        raise RuntimeError("injected failure")
            except RuntimeError:
                pass
        time.sleep(TICK)
    return 0


if __name__ == "__main__":
    sys.exit(main())
